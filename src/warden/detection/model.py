"""``DetectionModel``: a YOLO ONNX export behind an ONNX Runtime session, predicting as Ultralytics does.

The pipeline has three public stages so that servers and benchmarks can time and
schedule them separately: :meth:`DetectionModel.prepare` (letterbox into a
tensor), :meth:`DetectionModel.infer` (ONNX Runtime) and
:meth:`DetectionModel.postprocess` (decode, NMS, map back). :meth:`DetectionModel.detect`
runs all three, decoding images first.
"""

from __future__ import annotations

import atexit
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import _pybind_state as _ort_capi

from warden.detection.image import DEFAULT_LIMITS, ImageInput, ImageLimits, RGBImage, to_rgb
from warden.detection.layouts import Layout, anchor_counts, check_output, decode, detect_layout
from warden.detection.letterbox import letterbox, scale_boxes, to_tensor
from warden.detection.metadata import ModelMetadata, load_labels, parse_metadata
from warden.detection.providers import CUDA, check_active, providers_for
from warden.detection.results import Detections
from warden.errors import InvalidArgument, InvalidModel, UnsupportedModel

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
MAX_FUNCTION_NODES: Final = 100_000
"""Most nodes ONNX Runtime may create inlining a model's local functions."""
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
        session = _open_session(model, providers, threads, memory_limit)
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

    def infer(self, tensor: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Run the session on one input tensor and return its detection output as float32.

        Any failure of ONNX Runtime's (a shape it cannot compute, memory over the
        session's limit) is an ``InvalidModel`` whose message is free of addresses.
        """
        try:
            (output,) = self._session.run(None, {self.info.input_name: tensor})
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


def session_options(threads: int | None) -> ort.SessionOptions:
    """ONNX Runtime options for one model run at a time: full graph optimisation, sequential, quiet logs.

    ``threads`` caps the intra-op thread pool (None: ONNX Runtime's default, one per core).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def ort_operator_domains() -> frozenset[str]:
    """Every operator domain this ONNX Runtime build has a schema or a kernel in (its contrib domains included)."""
    schemas = (schema.domain for schema in _ort_capi.get_all_operator_schema())
    return frozenset({*schemas, *(kernel.domain for kernel in _ort_capi.get_all_opkernel_def())})


def ort_message(exc: BaseException) -> str:
    """ONNX Runtime's error as one short line a tenant may read: no heap addresses, C++ signatures or host paths."""
    text = str(exc).strip()
    if "bfc_arena" in text or "bad_alloc" in text or "Failed to allocate" in text:
        return "the model asked for more memory than the session's limit allows"
    line = text.splitlines()[0] if text else type(exc).__name__
    line = _ORT_SOURCE.sub(" ", line)
    line = _ORT_SIGNATURE.sub(" ", line)
    line = _HEX.sub("<address>", line)
    line = _PATH.sub("<path>", line)
    line = " ".join(line.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


_ORT_SOURCE: Final = re.compile(r"/?(?:[\w.-]+/)*[\w.-]+\.(?:cc|cpp|h):\d+\s*")
_ORT_SIGNATURE: Final = re.compile(r"(?:[\w*&]+\s+)?(?:onnxruntime|onnx|std)::[\w:~]+\([^)]*(?:\)|$)(?:\s*const)?\s*")
_HEX: Final = re.compile(r"0x[0-9a-fA-F]+")
_PATH: Final = re.compile(r"(?<![\w.])/(?:[^\s\"',:]+/?)+")
_MAX_MESSAGE: Final = 300


def _open_session(
    model: str | Path | bytes,
    providers: list[tuple[str, dict[str, object]]],
    threads: int | None,
    memory_limit: int,
) -> ort.InferenceSession:
    options = _hardened_options(threads, from_bytes=isinstance(model, bytes))
    source: str | bytes
    if isinstance(model, bytes):
        source = model
    else:
        path = Path(model)
        if not path.is_file():
            raise InvalidModel(f"no model file at {path}")
        source = str(path)
    names = [name for name, _ in providers]
    provider_options = [_capped(name, opts, memory_limit) for name, opts in providers]
    try:
        with _ARENA_LOCK:
            # The arena registered last is the one a new session takes: one per session, with its own cap.
            ort.create_and_register_allocator(_CPU_ARENA, ort.OrtArenaCfg({"max_mem": memory_limit}))
            return ort.InferenceSession(
                source,
                sess_options=options,
                providers=names,
                provider_options=provider_options,
                disabled_optimizers=_DISABLED_OPTIMIZERS,
            )
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad models.
        raise InvalidModel(f"ONNX Runtime cannot load the model: {ort_message(exc)}") from None


_ARENA_LOCK: Final = threading.Lock()
"""Held from registering a session's arena until ONNX Runtime has taken it, which it does at the start of
``initialize_session``, not in the constructor (measured: an arena registered between the two is the one used), and
``InferenceSession()`` runs both in one call; function inlining and optimisation come after, inside the same call
(4**7 graph copies: constructor 0.40 s, initialisation 9.88 s). So the lock covers the whole load, and what bounds
its hold is the upload walk: function expansion and copied bytes, dense tensor sizes and message counts are checked
before any session is made (serving loads only validated blobs; operators' own files are trusted)."""
_CPU_ARENA: Final = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
_DISABLED_OPTIMIZERS: Final = ["ConstantFolding"]
"""Folding runs at load, outside the arena and its cap: a folded ConstantOfShape could take gigabytes.

Exports are folded already (the fall model's optimised graph is the same 219 nodes with it off)."""


def _hardened_options(threads: int | None, *, from_bytes: bool) -> ort.SessionOptions:
    options = session_options(threads)
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.add_session_config_entry("session.function_expansion_node_limit", str(MAX_FUNCTION_NODES))
    if from_bytes:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(_empty_folder()))
    return options


def _capped(provider: str, options: dict[str, object], memory_limit: int) -> dict[str, object]:
    if provider == CUDA and "gpu_mem_limit" not in options:
        return {**options, "gpu_mem_limit": str(memory_limit)}
    return options


_FOLDER_LOCK: Final = threading.Lock()
_EMPTY: list[Path] = []


def _empty_folder() -> Path:
    """A private empty folder of this process's, where ONNX Runtime looks for the external data of bytes.

    Made again should anything (a /tmp cleaner, another user) remove it or put something in it.
    """
    with _FOLDER_LOCK:
        if not _EMPTY or not _private_and_empty(_EMPTY[-1]):
            folder = Path(tempfile.mkdtemp(prefix="warden-no-external-data-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _EMPTY.append(folder)
        return _EMPTY[-1]


def _private_and_empty(folder: Path) -> bool:
    try:
        info = folder.lstat()
        return stat.S_ISDIR(info.st_mode) and not stat.S_IMODE(info.st_mode) & 0o077 and not any(folder.iterdir())
    except OSError:
        return False


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
