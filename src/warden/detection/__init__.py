"""Detection runtime: any YOLO ONNX export, predicting exactly as Ultralytics does, on untrusted images.

A pure library: no web framework, no database. The public surface is ``__all__``.
"""

from warden.detection.image import DEFAULT_LIMITS, ImageInput, ImageLimits, RGBImage, decode_image, to_rgb
from warden.detection.layouts import Layout
from warden.detection.model import DetectionModel, ModelInfo, PreparedBatch
from warden.detection.results import Detection, Detections

__all__ = [
    "DEFAULT_LIMITS",
    "Detection",
    "DetectionModel",
    "Detections",
    "ImageInput",
    "ImageLimits",
    "Layout",
    "ModelInfo",
    "PreparedBatch",
    "RGBImage",
    "decode_image",
    "to_rgb",
]
