"""Running several detect requests of one model version as shared ONNX Runtime calls.

Each image is decoded and letterboxed on its own, one at a time (at most one image's
pixels exist at once), exactly as it would be alone (so batching never changes an
answer); tensors of the same shape are then
stacked into runs of at most the model's batch capacity, and each request's rows
are postprocessed with its own thresholds. A request whose image fails to decode
fails alone; the others still run. A shared run stops only when every request in it
has given up (deadline passed, client gone) or it passes the version's run-time cap;
a request that gave up while the others' run went on is answered with why it gave up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from warden.detection import DetectionModel, Detections, ImageLimits, decode_image
from warden.detection.letterbox import PAD_VALUE, letterbox, to_tensor
from warden.detection.model import PreparedBatch, check_thresholds
from warden.detection.runs import DISCONNECT, RunControl
from warden.errors import ClientDisconnected, DeadlineExceeded


@dataclass(slots=True)
class StageTimes:
    """Seconds a request spent queued, decoding, letterboxing (preprocess), and in the model and postprocessing.

    ``stage`` is where the request is now (``queue``, ``decode``, ``preprocess``, ``inference``,
    ``postprocess``): what an audit record names when the request is cut short.
    """

    queue: float = 0.0
    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    stage: str = "queue"

    def server_timing(self) -> str:
        """The W3C ``Server-Timing`` header value, in milliseconds."""
        return ", ".join(
            f"{name};dur={seconds * 1000:.3f}"
            for name, seconds in (
                ("queue", self.queue),
                ("decode", self.decode),
                ("preprocess", self.preprocess),
                ("inference", self.inference),
            )
        )


@dataclass(slots=True)
class DetectRequest:
    """One request's images (still encoded) and its detection parameters."""

    images: list[bytes]
    limits: ImageLimits
    conf: float
    iou: float
    max_det: int
    times: StageTimes = field(default_factory=StageTimes)
    submitted: float = field(default_factory=time.perf_counter)
    control: RunControl = field(default_factory=RunControl)


@dataclass(slots=True)
class _Chunk:
    owner: int
    prepared: PreparedBatch
    raw: np.ndarray | None = None
    stopped: BaseException | None = None


def detect_many(
    model: DetectionModel, requests: Sequence[DetectRequest], cap: float | None = None
) -> list[list[Detections] | BaseException]:
    """Detect every request's images with as few model runs as shapes and batch capacity allow.

    ``cap``: the version's run-time cap, seconds per image of a run (``None``: uncapped).
    """
    outcomes: list[list[Detections] | BaseException] = [[] for _ in requests]
    chunks: list[_Chunk] = []
    for index, request in enumerate(requests):
        try:
            check_thresholds(request.conf, request.iou, request.max_det)
            chunks.extend(_Chunk(index, prepared) for prepared in _prepare_each(model, request))
        except Exception as exc:
            outcomes[index] = exc
    for request in requests:
        request.times.stage = "inference"
    started = time.perf_counter()
    try:
        _infer(model, chunks, [request.control for request in requests], cap)
    except Exception as exc:
        return [exc if not isinstance(o, BaseException) else o for o in outcomes]
    shared = time.perf_counter() - started
    now = time.monotonic()
    for index, request in enumerate(requests):
        gave_up = request.control.given_up(now)
        if gave_up is not None and not isinstance(outcomes[index], BaseException):
            outcomes[index] = _gave_up(gave_up)
    for chunk in chunks:
        request = requests[chunk.owner]
        if chunk.stopped is not None and not isinstance(outcomes[chunk.owner], BaseException):
            outcomes[chunk.owner] = chunk.stopped
        outcome = outcomes[chunk.owner]
        if isinstance(outcome, BaseException) or chunk.raw is None:
            continue
        request.times.stage = "postprocess"
        begun = time.perf_counter()
        try:
            outcome.extend(
                model.postprocess(
                    chunk.raw, chunk.prepared, conf=request.conf, iou=request.iou, max_det=request.max_det
                )
            )
        except Exception as exc:
            outcomes[chunk.owner] = exc
        request.times.inference += time.perf_counter() - begun
    for index, request in enumerate(requests):
        if not isinstance(outcomes[index], BaseException):
            request.times.inference += shared
    return outcomes


def _prepare_each(model: DetectionModel, request: DetectRequest) -> list[PreparedBatch]:
    """The request's images as input batches, decoded one at a time: at most one image's pixels exist at once.

    Each decoded image is at once shrunk to the model's input size (:func:`letterbox` with stride 1 pads
    nothing) and its pixels dropped; the batches are then padded exactly as
    :meth:`DetectionModel.prepare` pads the same images (a second letterbox of a fitted image resizes
    nothing), so the answers are those of the model's own pipeline.
    """
    info = model.info
    shapes: list[tuple[int, int]] = []
    fitted: list[npt.NDArray[np.uint8]] = []
    for data in request.images:
        begun = time.perf_counter()
        request.times.stage = "decode"
        rgb = decode_image(data, request.limits)
        decoded = time.perf_counter()
        request.times.stage = "preprocess"
        shapes.append((int(rgb.shape[0]), int(rgb.shape[1])))
        fitted.append(letterbox(rgb, info.input_hw, auto=True, stride=1))
        del rgb
        request.times.decode += decoded - begun
        request.times.preprocess += time.perf_counter() - decoded
    begun = time.perf_counter()
    batches = []
    capacity = model.batch_capacity
    for at in range(0, len(fitted), capacity):
        group = shapes[at : at + capacity]
        rect = info.dynamic_hw and len(set(group)) == 1
        boxed = [letterbox(image, info.input_hw, auto=rect, stride=info.stride) for image in fitted[at : at + capacity]]
        if info.batch is not None and len(boxed) < info.batch:
            boxed.extend([np.full_like(boxed[0], PAD_VALUE)] * (info.batch - len(boxed)))
        batches.append(PreparedBatch(to_tensor(boxed, info.input_dtype), tuple(group)))
    request.times.preprocess += time.perf_counter() - begun
    return batches


def _gave_up(reason: str) -> BaseException:
    if reason == DISCONNECT:
        return ClientDisconnected("the client disconnected while the model ran", stage="inference")
    return DeadlineExceeded("the deadline passed while the model ran", stage="inference")


def _infer(model: DetectionModel, chunks: list[_Chunk], controls: list[RunControl], cap: float | None) -> None:
    """Fill each chunk's raw output, stacking chunks of equal tensor shape up to the batch capacity."""
    by_shape: dict[tuple[int, ...], list[_Chunk]] = {}
    for chunk in chunks:
        by_shape.setdefault(tuple(chunk.prepared.tensor.shape[1:]), []).append(chunk)
    capacity = model.batch_capacity
    for group in by_shape.values():
        run: list[_Chunk] = []
        rows = 0
        for chunk in group:
            size = chunk.prepared.tensor.shape[0]
            if run and (rows + size > capacity or model.info.batch is not None):  # a fixed batch never stacks
                _run(model, run, controls, cap)
                run, rows = [], 0
            run.append(chunk)
            rows += size
        if run:
            _run(model, run, controls, cap)


def _run(model: DetectionModel, run: list[_Chunk], controls: list[RunControl], cap: float | None) -> None:
    tensors = [chunk.prepared.tensor for chunk in run]
    waiting = [controls[owner] for owner in dict.fromkeys(chunk.owner for chunk in run)]
    try:
        raw = model.infer(tensors[0] if len(tensors) == 1 else np.concatenate(tensors), controls=waiting, cap=cap)
    except (DeadlineExceeded, ClientDisconnected) as stopped:  # this run's requests only: the others run on
        for chunk in run:
            chunk.stopped = stopped
        return
    offset = 0
    for chunk in run:
        size = chunk.prepared.tensor.shape[0]
        chunk.raw = raw[offset : offset + size]
        offset += size
