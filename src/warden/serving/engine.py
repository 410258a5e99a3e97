"""The serving engine every front end drives: admission, fair scheduling, resident sessions, detection.

``/v1``, ``/v2`` and tests all call the same methods. A request is admitted (rate,
daily cap) before its body is read; its decode and inference then run as one job
on the fair scheduler, on a session borrowed from the residency manager, so
one tenant's flood waits in its own queue instead of everyone's. Every model run is
stoppable (:mod:`warden.detection.runs`): it ends when the request's deadline passes, its
client leaves, or the run passes its version's run-time cap, and its worker is free at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from warden.detection import DetectionModel, Detections, ImageLimits
from warden.detection.model import DEFAULT_MEMORY_LIMIT
from warden.detection.providers import CPU, providers_for
from warden.detection.runs import RunControl
from warden.registry import BlobStore, ResolvedModel
from warden.serving.admission import Admission
from warden.serving.batching import DetectRequest, StageTimes, detect_many
from warden.serving.residency import Residency
from warden.serving.scheduler import Batching, Scheduler, TenantShare
from warden.tenancy import DEDICATED, Principal

T = TypeVar("T")

GPU_BATCH_SIZE: Final = 8
"""Images per run for a dynamic-batch model on a GPU provider when its version does not say."""
GPU_QUEUE_DELAY_MS: Final = 2.0
"""How long a request waits for its batch to fill on a GPU provider when its version does not say."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the engine uses the machine: workers, ONNX Runtime threads per session, device, memory budget.

    ``headroom``: shared workers kept free for other tenants while more than one is active (``None``:
    the scheduler's automatic choice, one when there are two workers or more).
    ``session_memory_limit``: bytes each session's runs may allocate (``WARDEN_SESSION_MEMORY_LIMIT``).
    ``max_run_ms``: the longest any run may take, per image (``WARDEN_MAX_RUN_MS``), the warm-up run of a
    session loaded for serving included.
    """

    workers: int = max(1, os.cpu_count() or 1)
    threads: int | None = 1
    device: str = "cpu"
    memory_budget: int | None = None
    headroom: int | None = None
    session_memory_limit: int = DEFAULT_MEMORY_LIMIT
    max_run_ms: float = 10_000.0


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
        self.scheduler = Scheduler(options.workers, headroom=options.headroom)
        self.residency: Residency[DetectionModel] = Residency(self._load, options.memory_budget)
        self.gpu = providers_for(options.device, ort.get_available_providers())[0][0] != CPU
        """Whether sessions run on a GPU provider (where batching is on unless a version says otherwise)."""
        self._closed = False

    def admit(self, caller: Principal, images: int | None = None) -> None:
        """Refuse at once a caller over its rate or daily cap, or whose queue is full (before its body is read).

        With ``images`` (once the body of an admitted request is read): count the images after the
        first against the rate too, so that a request of N images costs what N requests would.
        """
        if images is not None:
            self.admission.charge(caller, images - 1)
            return
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
        control = RunControl(deadline)
        request = DetectRequest(
            images, self.image_limits(caller), conf, iou, max_det, times or StageTimes(), control=control
        )
        size, delay = self.batching(resolved)
        if size > 1:
            return await self._run_batched(caller, resolved, request, size, delay, deadline=deadline)
        cap = self.run_cap(resolved)

        def work(model: DetectionModel) -> list[Detections]:
            (outcome,) = detect_many(model, [request], cap)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return await self._run(
            caller, resolved, work, deadline=deadline, cost=len(images), times=request.times, control=control
        )

    def run_cap(self, resolved: ResolvedModel) -> float:
        """Seconds one image's run of the version may take: its run-time cap, within ``WARDEN_MAX_RUN_MS``."""
        return min(resolved.run_cap_ms, self._options.max_run_ms) / 1000

    def batching(self, resolved: ResolvedModel) -> tuple[int, float]:
        """The version's ``(max_batch_size, max_queue_delay_seconds)``: its own settings, else the device's default.

        Off (size 1) on CPU unless the version asks, on for GPU providers; never for a fixed-batch model.
        """
        if resolved.info.get("batch") is not None:
            return 1, 0.0
        settings = resolved.batching
        size = settings.max_batch_size or (GPU_BATCH_SIZE if self.gpu else 1)
        delay = settings.max_queue_delay_ms
        if delay is None:
            delay = GPU_QUEUE_DELAY_MS if self.gpu else 0.0
        return size, delay / 1000

    async def infer_raw(
        self,
        caller: Principal,
        resolved: ResolvedModel,
        tensor: npt.NDArray[Any],
        deadline: float | None = None,
        times: StageTimes | None = None,
    ) -> npt.NDArray[np.float32]:
        """Run a caller-built input tensor (Triton-style pass-through) and return the raw output."""
        control, cap, noted = RunControl(deadline), self.run_cap(resolved), times or StageTimes()

        def work(model: DetectionModel) -> npt.NDArray[np.float32]:
            checked = model.check_input(tensor)
            noted.stage = "inference"
            begun = time.perf_counter()
            try:
                return model.infer(checked, controls=[control], cap=cap)
            finally:
                noted.inference = time.perf_counter() - begun

        return await self._run(
            caller, resolved, work, deadline=deadline, cost=tensor.shape[0], times=noted, control=control
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
        control: RunControl | None = None,
    ) -> T:
        quota = caller.quota
        dedicated = caller.tenant_name if quota.isolation == DEDICATED else None
        submitted = time.perf_counter()

        owner = _owner(caller, resolved)

        def job() -> T:
            if times is not None:
                times.queue = time.perf_counter() - submitted
                times.stage = "load"  # the session may have to be loaded first
            with self.residency.use(resolved.sha256, owner) as model:
                return work(model)

        share = _share(caller, dedicated)
        run = self.scheduler.run(_tenant_key(caller), job, share=share, deadline=deadline, cost=max(cost, 1.0))
        return await _stopping_on_cancel(run, control)

    async def _run_batched(
        self,
        caller: Principal,
        resolved: ResolvedModel,
        request: DetectRequest,
        size: int,
        delay: float,
        *,
        deadline: float | None,
    ) -> list[Detections]:
        dedicated = caller.tenant_name if caller.quota.isolation == DEDICATED else None
        owner = _owner(caller, resolved)

        cap = self.run_cap(resolved)

        def run(requests: Sequence[DetectRequest]) -> list[list[Detections] | BaseException]:
            started = time.perf_counter()
            for queued in requests:
                queued.times.queue = started - queued.submitted
                queued.times.stage = "load"
            with self.residency.use(resolved.sha256, owner) as model:
                return detect_many(model, requests, cap)

        # Requests batch together only when they would share a session anyway.
        policy = Batching(key=(resolved.sha256, owner), max_size=size, max_delay=delay, run=run)
        batched = self.scheduler.run_batched(
            _tenant_key(caller),
            request,
            policy,
            share=_share(caller, dedicated),
            deadline=deadline,
            cost=max(len(request.images), 1),
        )
        found: list[Detections] = await _stopping_on_cancel(batched, request.control)
        return found

    def _load(self, digest: str) -> tuple[DetectionModel, int]:
        data = self._blobs.read(digest)
        options = self._options
        model = DetectionModel.load(
            data,
            device=options.device,
            threads=options.threads,
            limits=self.limits,
            memory_limit=options.session_memory_limit,
        )
        height, width = model.info.input_hw
        blank = model.prepare([np.zeros((height, width, 3), dtype=np.uint8)])
        model.infer(blank.tensor, cap=options.max_run_ms / 1000)  # warm-up run before serving, stoppable too
        return model, len(data)


async def _stopping_on_cancel(work: Awaitable[T], control: RunControl | None) -> T:
    """Await ``work``; if the awaiting task is cancelled (its client left), stop the run made for it too."""
    try:
        return await work
    except asyncio.CancelledError:
        if control is not None:
            control.cancel()
        raise


def _tenant_key(caller: Principal) -> str:
    return caller.tenant_name or "operator"


NO_TENANT: Final = "(operator)"
"""The owner of sessions borrowed by a caller of no tenant (never a tenant name: those have no parentheses)."""


def _owner(caller: Principal, resolved: ResolvedModel) -> str | None:
    """Whose session serves ``caller``: its tenant's own, or (``None``) the one every tenant shares.

    Shared only for bytes the registry says may be (``resolved.shared``) and never for a dedicated
    tenant, so a tenant's first request is not faster because another tenant holds the same bytes.
    """
    if resolved.shared and caller.quota.isolation != DEDICATED:
        return None
    return caller.tenant_name if caller.tenant_name is not None else NO_TENANT


def _share(caller: Principal, dedicated: str | None) -> TenantShare:
    quota = caller.quota
    return TenantShare(
        weight=quota.weight,
        max_concurrency=quota.max_concurrency,
        max_queue=quota.max_queue,
        dedicated=dedicated is not None,
    )
