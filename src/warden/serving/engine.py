"""The serving engine every front end drives: admission, fair scheduling, resident sessions, detection.

``/v1``, ``/v2`` and tests all call the same methods. A request is admitted (rate,
daily cap) before its body is read; its decode and inference then run as one job
on the fair scheduler, on a session borrowed from the residency manager, so
one tenant's flood waits in its own queue instead of everyone's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from warden.detection import DetectionModel, Detections, ImageLimits, decode_image
from warden.registry import BlobStore, ResolvedModel
from warden.serving.admission import Admission
from warden.serving.residency import Residency
from warden.serving.scheduler import Scheduler, TenantShare
from warden.tenancy import DEDICATED, Principal

T = TypeVar("T")


@dataclass(slots=True)
class StageTimes:
    """Seconds a request spent queued, decoding and in the model (pre- and postprocessing included)."""

    queue: float = 0.0
    decode: float = 0.0
    inference: float = 0.0

    def server_timing(self) -> str:
        """The W3C ``Server-Timing`` header value, in milliseconds."""
        return ", ".join(
            f"{name};dur={seconds * 1000:.3f}"
            for name, seconds in (("queue", self.queue), ("decode", self.decode), ("inference", self.inference))
        )


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the engine uses the machine: workers, ONNX Runtime threads per session, device, memory budget."""

    workers: int = max(1, os.cpu_count() or 1)
    threads: int | None = 1
    device: str = "cpu"
    memory_budget: int | None = None


class DetectionEngine:
    """Admits, schedules and runs detections; owns the scheduler's workers and the resident sessions."""

    def __init__(
        self,
        blobs: BlobStore,
        limits: ImageLimits,
        admission: Admission,
        options: EngineOptions = EngineOptions(),
    ) -> None:
        self.limits = limits
        self.admission = admission
        self._blobs = blobs
        self._options = options
        self.scheduler = Scheduler(options.workers)
        self.residency: Residency[DetectionModel] = Residency(self._load, options.memory_budget)
        self._closed = False

    def admit(self, caller: Principal) -> None:
        """Refuse at once a caller over its rate or daily cap, or whose queue is full (before its body is read)."""
        self.scheduler.ensure_room(_tenant_key(caller), caller.quota.max_queue)
        self.admission.admit(caller)

    def image_limits(self, caller: Principal) -> ImageLimits:
        """The server's image limits, tightened by the caller's quota."""
        quota = caller.quota
        return ImageLimits(
            max_bytes=min(self.limits.max_bytes, quota.max_image_bytes or self.limits.max_bytes),
            max_pixels=min(self.limits.max_pixels, quota.max_image_pixels or self.limits.max_pixels),
        )

    async def detect(
        self,
        caller: Principal,
        resolved: ResolvedModel,
        images: list[bytes],
        *,
        conf: float,
        iou: float,
        max_det: int,
        deadline: float | None = None,
        times: StageTimes | None = None,
    ) -> list[Detections]:
        """Decode and detect ``images`` with the resolved version, as one fairly scheduled job."""
        limits = self.image_limits(caller)
        spent = times or StageTimes()

        def work(model: DetectionModel) -> list[Detections]:
            start = time.perf_counter()
            rgbs = [decode_image(data, limits) for data in images]
            decoded = time.perf_counter()
            found = model.detect_rgb(rgbs, conf=conf, iou=iou, max_det=max_det)
            spent.decode, spent.inference = decoded - start, time.perf_counter() - decoded
            return found

        return await self._run(caller, resolved, work, deadline=deadline, cost=len(images), times=spent)

    async def infer_raw(
        self, caller: Principal, resolved: ResolvedModel, tensor: npt.NDArray[Any], deadline: float | None = None
    ) -> npt.NDArray[np.float32]:
        """Run a caller-built input tensor (Triton-style pass-through) and return the raw output."""
        return await self._run(
            caller,
            resolved,
            lambda model: model.infer(model.check_input(tensor)),
            deadline=deadline,
            cost=tensor.shape[0],
        )

    async def warm(self, caller: Principal, resolved: ResolvedModel) -> None:
        """Make sure the version's session is loaded (readiness)."""
        await self._run(caller, resolved, lambda _: None, deadline=None, cost=1.0)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Stop the workers and flush the admission counters (idempotent)."""
        if not self._closed:
            self._closed = True
            self.scheduler.close()
            self.admission.close()

    async def _run(
        self,
        caller: Principal,
        resolved: ResolvedModel,
        work: Callable[[DetectionModel], T],
        *,
        deadline: float | None,
        cost: float,
        times: StageTimes | None = None,
    ) -> T:
        quota = caller.quota
        dedicated = caller.tenant_name if quota.isolation == DEDICATED else None
        submitted = time.perf_counter()

        def job() -> T:
            if times is not None:
                times.queue = time.perf_counter() - submitted
            with self.residency.use(resolved.sha256, dedicated) as model:
                return work(model)

        share = TenantShare(
            weight=quota.weight,
            max_concurrency=quota.max_concurrency,
            max_queue=quota.max_queue,
            dedicated=dedicated is not None,
        )
        return await self.scheduler.run(_tenant_key(caller), job, share=share, deadline=deadline, cost=max(cost, 1.0))

    def _load(self, digest: str) -> tuple[DetectionModel, int]:
        data = self._blobs.read(digest)
        model = DetectionModel.load(
            data, device=self._options.device, threads=self._options.threads, limits=self.limits
        )
        height, width = model.info.input_hw
        model.detect_rgb([np.zeros((height, width, 3), dtype=np.uint8)])  # warm-up run before serving
        return model, len(data)


def _tenant_key(caller: Principal) -> str:
    return caller.tenant_name or "operator"
