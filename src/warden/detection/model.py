"""``DetectionModel``: a YOLO ONNX export behind an ONNX Runtime session, predicting as Ultralytics does.

The pipeline has three public stages so that servers and benchmarks can time and
schedule them separately: :meth:`DetectionModel.prepare` (letterbox into a
tensor), :meth:`DetectionModel.infer` (ONNX Runtime) and
:meth:`DetectionModel.postprocess` (decode, NMS, map back). :meth:`DetectionModel.detect`
runs all three, decoding images first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from warden.detection.image import DEFAULT_LIMITS, ImageInput, ImageLimits, RGBImage, to_rgb
from warden.detection.layouts import Layout, anchor_counts, check_output, decode, detect_layout
from warden.detection.letterbox import letterbox, scale_boxes, to_tensor
from warden.detection.metadata import ModelMetadata, load_labels, parse_metadata
from warden.detection.providers import check_active, providers_for
from warden.detection.results import Detections
from warden.detection.runs import RunControl, stoppable_run
from warden.detection.session import open_session, ort_message
from warden.errors import ClientDisconnected, DeadlineExceeded, InvalidArgument, InvalidModel, UnsupportedModel

DEFAULT_IMGSZ: Final = 640
DEFAULT_MAX_BATCH: Final = 16
MAX_DETECTIONS: Final = 10_000
DEFAULT_MEMORY_LIMIT: Final = 4 * 1024**3
"""Bytes one session's ONNX Runtime arena may hold (its working memory for runs), unless the caller says."""
MAX_INPUT_SIDE: Final = 8192
"""Largest input height or width a model may declare (or ask for through ``imgsz``)."""
MAX_FIXED_BATCH: Final = 256
"""Largest fixed batch a model may declare (every call pads up to it)."""
MAX_CLASSES: Final = 10_000
"""Most classes a model may predict."""
_P6_STRIDES: Final = (8, 16, 32, 64)
_P5_STRIDES: Final = (8, 16, 32)
_FLOAT_TYPES: Final[dict[str, type[np.floating]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What Warden learnt about a model at load time."""

    input_name: str
    output_name: str
    input_dtype: type[np.floating]
    input_hw: tuple[int, int]
    dynamic_hw: bool
    batch: int | None
    layout: Layout
    num_classes: int | None
    names: tuple[str, ...]
    stride: int
    providers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Letterboxed images as one input tensor, with the original ``(h, w)`` of each real image."""

    tensor: npt.NDArray[np.floating]
    original_shapes: tuple[tuple[int, int], ...]


class DetectionModel:
    """A loaded YOLO detection model; thread-safe (ONNX Runtime sessions are)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        info: ModelInfo,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._session = session
        self.info = info
        self.limits = limits
        self.batch_capacity = info.batch or max_batch
        """Images per ONNX Runtime call: the model's fixed batch, else ``max_batch``."""

    @classmethod
    def load(
        cls,
        model: str | Path | bytes,
        device: str = "cpu",
        threads: int | None = None,
        *,
        imgsz: int | tuple[int, int] | None = None,
        labels: Path | Sequence[str] | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_batch: int = DEFAULT_MAX_BATCH,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> DetectionModel:
        """Open an ONNX export (a path or its bytes) on ``device`` and recognise its layout.

        ``imgsz`` applies to models with dynamic height and width (default: the
        export's metadata, else 640); ``labels`` overrides the class names;
        ``max_batch`` bounds one call's batch for models with a dynamic batch;
        ``memory_limit`` caps, in bytes, what the session's runs may allocate and
        the input tensor one call may build. A model given as bytes cannot read any
        file: ONNX Runtime looks for external data in an empty folder of Warden's.
        """
        if threads is not None and threads < 1:
            raise InvalidArgument(f"threads must be at least 1, got {threads}")
        if max_batch < 1:
            raise InvalidArgument(f"max_batch must be at least 1, got {max_batch}")
        if memory_limit < 1:
            raise InvalidArgument(f"memory_limit must be at least 1 byte, got {memory_limit}")
        device = device.strip().lower()
        providers = providers_for(device, ort.get_available_providers())
        session = open_session(model, providers, threads, memory_limit)
        check_active(device, providers, session.get_providers())
        metadata = parse_metadata(session.get_modelmeta().custom_metadata_map)
        names = _resolve_labels(labels)
        info = _inspect(session, metadata, names, imgsz)
        _check_input_bytes(info, max_batch, memory_limit)
        return cls(session, info, limits, max_batch)

    @overload
    def detect(
        self,
        images: ImageInput,
        conf: float = ...,
        iou: float = ...,
        max_det: int = ...,
        classes: Sequence[int] | None = ...,
    ) -> Detections: ...
    @overload
    def detect(
        self,
        images: list[ImageInput] | tuple[ImageInput, ...],
        conf: float = ...,
        iou: float = ...,
        max_det: int = ...,
        classes: Sequence[int] | None = ...,
    ) -> list[Detections]: ...
    def detect(
        self,
        images: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
    ) -> Detections | list[Detections]:
        """Detect objects in one image or a list of them (encoded bytes, BGR numpy arrays, PIL images).

        Returns one :class:`Detections` for one image, a list for a list. Raises
        ``InvalidImage`` for the first image that cannot be decoded.
        """
        if isinstance(images, list | tuple):
            rgbs = [to_rgb(image, self.limits) for image in images]
            return self.detect_rgb(rgbs, conf=conf, iou=iou, max_det=max_det, classes=classes)
        return self.detect_rgb([to_rgb(images, self.limits)], conf=conf, iou=iou, max_det=max_det, classes=classes)[0]

    def detect_rgb(
        self,
        rgbs: Sequence[RGBImage],
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
    ) -> list[Detections]:
        """Detect objects in already-decoded RGB images, batching as the model allows."""
        check_thresholds(conf, iou, max_det)
        wanted = None if classes is None else frozenset(int(c) for c in classes)
        results: list[Detections] = []
        for start in range(0, len(rgbs), self.batch_capacity):
            batch = self.prepare(rgbs[start : start + self.batch_capacity])
            raw = self.infer(batch.tensor)
            results.extend(self.postprocess(raw, batch, conf=conf, iou=iou, max_det=max_det, classes=wanted))
        return results

    def prepare(self, rgbs: Sequence[RGBImage]) -> PreparedBatch:
        """Letterbox RGB images into one input tensor (padded with blank images up to a fixed batch)."""
        info = self.info
        shapes = tuple((int(rgb.shape[0]), int(rgb.shape[1])) for rgb in rgbs)
        rect = info.dynamic_hw and len(set(shapes)) == 1
        boxed = [letterbox(rgb, info.input_hw, auto=rect, stride=info.stride) for rgb in rgbs]
        if info.batch is not None and len(boxed) < info.batch:
            blank = np.full_like(boxed[0], 114)
            boxed.extend([blank] * (info.batch - len(boxed)))
        return PreparedBatch(to_tensor(boxed, info.input_dtype), shapes)

    def check_input(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.floating]:
        """Validate a caller-built input tensor against the model's input and cast it to the input's type.

        For pass-through callers (Triton-style clients sending ``images`` themselves);
        raises ``InvalidArgument`` naming the expected shape.
        """
        info = self.info
        spatial: tuple[int | None, int | None] = (None, None) if info.dynamic_hw else info.input_hw
        expected = [info.batch, 3, *spatial]
        shown = "[" + ", ".join("-1" if d is None else str(d) for d in expected) + "]"
        if tensor.ndim != 4 or any(e is not None and e != got for e, got in zip(expected, tensor.shape, strict=True)):
            raise InvalidArgument(f"input {info.input_name!r} must have shape {shown}, got {list(tensor.shape)}")
        if not all(tensor.shape) or (info.batch is None and tensor.shape[0] > self.batch_capacity):
            raise InvalidArgument(f"input {info.input_name!r} has an empty or oversized batch: {list(tensor.shape)}")
        if tensor.dtype not in (np.float32, np.float16):
            raise InvalidArgument(f"input {info.input_name!r} must be FP32 or FP16, got {tensor.dtype}")
        return np.ascontiguousarray(tensor, dtype=info.input_dtype)

    def infer(
        self,
        tensor: npt.NDArray[np.floating],
        *,
        controls: Sequence[RunControl] = (),
        cap: float | None = None,
    ) -> npt.NDArray[np.float32]:
        """Run the session on one input tensor and return its detection output as float32.

        The run stops when every request in ``controls`` has given up (deadline, client gone)
        or after ``cap`` seconds per image (per call for a fixed-batch model), raising
        ``DeadlineExceeded`` or ``ClientDisconnected`` (see :mod:`warden.detection.runs`).
        Any other failure of ONNX Runtime's (a shape it cannot compute, memory over the
        session's limit) is an ``InvalidModel`` whose message is free of addresses.
        """
        images = 1 if self.info.batch is not None else max(int(tensor.shape[0]), 1)
        try:
            (output,) = stoppable_run(
                self._session, {self.info.input_name: tensor}, controls, None if cap is None else cap * images
            )
        except (DeadlineExceeded, ClientDisconnected):
            raise
        except Exception as exc:  # ONNX Runtime raises its own untyped errors from kernels.
            raise InvalidModel(f"ONNX Runtime failed running the model: {ort_message(exc)}") from None
        raw = np.asarray(output, dtype=np.float32)
        check_output(raw, self.info.layout, self.info.num_classes)
        return raw

    def postprocess(
        self,
        raw: npt.NDArray[np.float32],
        batch: PreparedBatch,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: frozenset[int] | None = None,
    ) -> list[Detections]:
        """Turn a raw output into detections in each original image's pixels."""
        input_hw = (int(batch.tensor.shape[2]), int(batch.tensor.shape[3]))
        results = []
        for index, shape in enumerate(batch.original_shapes):
            found = decode(raw[index], self.info.layout, conf=conf, iou=iou, max_det=max_det, classes=classes)
            scale_boxes(found.boxes, input_hw, shape)
            results.append(
                Detections(
                    width=shape[1],
                    height=shape[0],
                    boxes=found.boxes,
                    scores=found.scores,
                    class_ids=found.class_ids,
                    names=self.info.names,
                )
            )
        return results


def _resolve_labels(labels: Path | Sequence[str] | None) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, Path):
        return load_labels(labels)
    names = tuple(str(n) for n in labels)
    if not names:
        raise InvalidArgument("labels must name at least one class")
    return names


def _inspect(
    session: ort.InferenceSession,
    metadata: ModelMetadata,
    labels: tuple[str, ...] | None,
    imgsz: int | tuple[int, int] | None,
) -> ModelInfo:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise UnsupportedModel(f"expected one image input, the model has {len(inputs)}")
    (image_input,) = inputs
    shape = [d if isinstance(d, int) else None for d in image_input.shape]
    if len(shape) != 4 or shape[1] not in (3, None):
        raise UnsupportedModel(f"expected an image input [B, 3, H, W], got {image_input.shape}")
    dtype = _FLOAT_TYPES.get(image_input.type)
    if dtype is None:
        raise UnsupportedModel(f"expected a float or float16 image input, got {image_input.type}")
    if len(outputs) != 1:
        listed = ", ".join(o.name for o in outputs)
        raise UnsupportedModel(
            f"expected one detection output, the model has {len(outputs)} ({listed}); "
            "segmentation and other multi-output models are not detection models"
        )
    if shape[0] is not None and not 1 <= shape[0] <= MAX_FIXED_BATCH:
        raise UnsupportedModel(f"the model's fixed batch is {shape[0]}; at most {MAX_FIXED_BATCH} is served")
    stride = metadata.stride or 32
    input_hw, dynamic_hw = _input_size(shape[2], shape[3], imgsz, metadata, stride)
    strides = _P6_STRIDES if stride == 64 else _P5_STRIDES
    hint = metadata.names or labels
    out_shape = [d if isinstance(d, int) else None for d in outputs[0].shape]
    layout, num_classes = detect_layout(
        out_shape,
        None if hint is None else len(hint),
        anchor_counts(input_hw, strides),
        metadata.end2end,
    )
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise UnsupportedModel(f"the model predicts {num_classes} classes; at most {MAX_CLASSES} are served")
    names = labels or metadata.names or tuple(f"class{i}" for i in range(num_classes or 0))
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        raise InvalidArgument(f"the labels name {len(labels)} classes but the model predicts {num_classes}")
    return ModelInfo(
        input_name=image_input.name,
        output_name=outputs[0].name,
        input_dtype=dtype,
        input_hw=input_hw,
        dynamic_hw=dynamic_hw,
        batch=shape[0],
        layout=layout,
        num_classes=num_classes,
        names=names,
        stride=stride,
        providers=tuple(session.get_providers()),
    )


def _input_size(
    height: int | None,
    width: int | None,
    imgsz: int | tuple[int, int] | None,
    metadata: ModelMetadata,
    stride: int,
) -> tuple[tuple[int, int], bool]:
    wanted = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    for side in (height, width, *(wanted or ()), *(metadata.imgsz or ())):
        if side is not None and side > MAX_INPUT_SIDE:
            raise UnsupportedModel(f"the model's input side {side} is larger than {MAX_INPUT_SIDE} pixels")
    if height is not None and width is not None:
        if wanted is not None and wanted != (height, width):
            raise InvalidArgument(f"imgsz {list(wanted)} differs from the model's fixed input [{height}, {width}]")
        return (height, width), False
    size = wanted or metadata.imgsz or (DEFAULT_IMGSZ, DEFAULT_IMGSZ)
    if any(s <= 0 or s % stride for s in size):
        raise InvalidArgument(f"imgsz {list(size)} must be positive multiples of the stride {stride}")
    return (size[0], size[1]), True


def _check_input_bytes(info: ModelInfo, max_batch: int, memory_limit: int) -> None:
    """Refuse a model whose input tensor for one call would be larger than the memory limit, before building one."""
    height, width = info.input_hw
    batch = info.batch or max_batch
    size = batch * 3 * height * width * np.dtype(info.input_dtype).itemsize
    if size > memory_limit:
        raise UnsupportedModel(
            f"one call's input [{batch}, 3, {height}, {width}] takes {size} bytes, more than the memory limit "
            f"of {memory_limit}"
        )


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """Refuse a confidence or IoU threshold outside [0, 1], or a non-positive ``max_det``."""
    if not 0.0 <= conf <= 1.0:
        raise InvalidArgument(f"conf must be between 0 and 1, got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise InvalidArgument(f"iou must be between 0 and 1, got {iou}")
    if not 1 <= max_det <= MAX_DETECTIONS:
        raise InvalidArgument(f"max_det must be between 1 and {MAX_DETECTIONS}, got {max_det}")
