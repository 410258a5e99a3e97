"""The GPUs jobs may use: ``WARDEN_JOB_GPUS`` parsed, and a pool that gives each job its own devices exclusively.

``WARDEN_JOB_GPUS`` is empty (no GPUs), ``auto``, or a comma-separated list of devices:

- an index, ``0``, ``1``: NVML's numbering, the one ``nvidia-smi`` and ``docker --gpus device=N`` use (PCI bus
  order; CUDA's own default order, fastest first, may differ, which is one reason the sandbox names devices to CUDA
  by UUID);
- a GPU UUID, ``GPU-8f2e41c3-…`` (the full 8-4-4-4-12 form: CUDA accepts a unique prefix, Warden does not, so that
  no entry can name two devices);
- a MIG device UUID, ``MIG-…`` (driver R470 and later), or the older ``MIG-GPU-<uuid>/<gi>/<ci>``.

``auto`` asks NVML (the optional ``nvidia-ml-py`` package, ``import pynvml``) for every GPU, listing a GPU in MIG
mode as its MIG devices; where the package or the driver is missing the pool is empty and says why
(:attr:`GpuPool.note`), and a job asking for a GPU is refused with that reason. Every bad entry is refused with
:class:`InvalidGpuList` (code ``invalid_gpu_list``) and a :class:`GpuListProblem` naming the entry.

:class:`GpuPool` hands out devices: ``acquire(n, job_id)`` returns a :class:`Lease` of ``n`` devices no other job
holds, ``release`` (or leaving the lease's ``with`` block) gives them back. Two refusals are distinct, because
they call for different answers:

- ``gpus_unsatisfiable`` (:class:`GpusUnsatisfiable`): the job asks for more devices than the pool holds at all;
  waiting cannot help, the request is wrong.
- ``gpus_busy`` (:class:`GpusBusy`): the pool holds enough, but other jobs hold them now. ``acquire`` refuses at
  once by default (``timeout=0``, what ``warden job run`` does), or waits up to ``timeout`` seconds (``None``: as
  long as it takes) for a release. Waiters are not served in order: a queue that must be fair decides who asks.

The pool is thread-safe (one lock; a condition for waiters). With ``lock_dir`` it is also exclusive across the
processes of one machine: each device held is an ``flock`` on ``lock_dir/<device>.lock``, so two ``warden job
run`` processes never share a GPU, and a process that dies releases its devices with its descriptors.

What a multi-replica service needs beyond this, and this module does not build: a lease in the shared database
(one row per device: holder job, replica, expiry renewed by a heartbeat, taken with ``SELECT … FOR UPDATE SKIP
LOCKED`` or a conditional ``UPDATE``), so that replicas scheduling onto the same machine's devices agree, and a
reaper that frees the devices of a replica that stopped renewing (its jobs end ``lost``). The flock here is what
keeps one machine honest; a database lease is what would keep a cluster of schedulers honest.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final

from warden.errors import Conflict, InvalidArgument, SandboxUnavailable

__all__ = [
    "RESERVED_ENV",
    "Discovery",
    "GpuDevice",
    "GpuKind",
    "GpuListProblem",
    "GpuPool",
    "GpuUnavailable",
    "GpuUnavailableReason",
    "GpusBusy",
    "GpusUnsatisfiable",
    "InvalidGpuList",
    "Lease",
    "ReservedGpuEnv",
    "check_gpu_env",
    "parse_gpu_list",
]

_UUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GPU_UUID: Final = re.compile(rf"GPU-({_UUID})")
_MIG_UUID: Final = re.compile(rf"MIG-({_UUID})")
_LEGACY_MIG_UUID: Final = re.compile(rf"MIG-GPU-({_UUID})/(\d{{1,3}})/(\d{{1,3}})")
_MAX_INDEX: Final = 254  # the driver's device minors end there (255 is /dev/nvidiactl)
_POLL_SECONDS: Final = 0.1  # how often a waiter looks again at devices another process may have freed

RESERVED_ENV: Final = frozenset(
    {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"}
)
"""Variables a job may not set: Warden sets the first two to the job's devices, and with the NVIDIA container
runtime as an engine's default, ``NVIDIA_VISIBLE_DEVICES=all`` (or the MIG ones) would hand a job every GPU."""


class GpuListProblem(StrEnum):
    """What is wrong with an entry of ``WARDEN_JOB_GPUS``; the values are stable."""

    EMPTY_ENTRY = "empty_entry"
    NEGATIVE_INDEX = "negative_index"
    INDEX_OUT_OF_RANGE = "index_out_of_range"
    MALFORMED_UUID = "malformed_uuid"
    MALFORMED_ENTRY = "malformed_entry"
    DUPLICATE = "duplicate"
    AUTO_NOT_ALONE = "auto_not_alone"


class InvalidGpuList(InvalidArgument):
    """An entry of ``WARDEN_JOB_GPUS`` is not a device: ``problem`` says what is wrong, ``entry`` which one."""

    code = "invalid_gpu_list"

    def __init__(self, problem: GpuListProblem, entry: str, message: str) -> None:
        super().__init__(f"{problem.value}: WARDEN_JOB_GPUS entry {entry!r}: {message}")
        self.problem = problem
        self.entry = entry


class GpusUnsatisfiable(InvalidArgument):
    """A job asks for more GPUs than the pool holds at all: no wait can satisfy it."""

    code = "gpus_unsatisfiable"


class GpusBusy(Conflict):
    """The pool holds enough GPUs for the job, but other jobs hold them now."""

    code = "gpus_busy"


class ReservedGpuEnv(InvalidArgument):
    """A job tried to set a variable that selects GPUs (``NVIDIA_VISIBLE_DEVICES`` and the like)."""

    code = "gpu_env_reserved"


class GpuUnavailableReason(StrEnum):
    """Why a backend cannot give a job the devices it was leased; the values are stable."""

    UNRESOLVED = "unresolved"
    NODE_MISSING = "node_missing"
    NO_CDI = "no_cdi"
    NOT_IN_CDI = "not_in_cdi"
    MIG_MODE = "mig_mode"


class GpuUnavailable(SandboxUnavailable):
    """A backend cannot give the job its devices; ``reason`` says which step failed (:class:`GpuUnavailableReason`)."""

    code = "gpu_unavailable"

    def __init__(self, reason: GpuUnavailableReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


class GpuKind(StrEnum):
    """How a device is named: by index, by GPU UUID, or by MIG device UUID."""

    INDEX = "index"
    GPU_UUID = "gpu_uuid"
    MIG_UUID = "mig_uuid"


@dataclass(frozen=True)
class GpuDevice:
    """One device of the pool, by its canonical name (``0``, ``GPU-…`` or ``MIG-…``, hex digits in lower case)."""

    id: str
    kind: GpuKind

    @property
    def index(self) -> int | None:
        """The device's index, for a device named by index."""
        return int(self.id) if self.kind is GpuKind.INDEX else None


def check_gpu_env(env: Mapping[str, str]) -> None:
    """Refuse a job environment that sets a variable selecting GPUs (:data:`RESERVED_ENV`)."""
    reserved = sorted(RESERVED_ENV & set(env))
    if reserved:
        raise ReservedGpuEnv(
            f"{', '.join(reserved)} may not be set by a job: Warden chooses its devices (use --gpus N)"
        )


def _device(entry: str) -> GpuDevice:
    """One entry as a device, or the refusal naming what is wrong with it."""
    if entry.isdigit():
        if int(entry) > _MAX_INDEX:
            raise InvalidGpuList(GpuListProblem.INDEX_OUT_OF_RANGE, entry, f"an index is 0 to {_MAX_INDEX}")
        return GpuDevice(str(int(entry)), GpuKind.INDEX)
    if entry.startswith("-") and entry[1:].isdigit():
        raise InvalidGpuList(GpuListProblem.NEGATIVE_INDEX, entry, "an index is 0 or more")
    if match := _GPU_UUID.fullmatch(entry):
        return GpuDevice(f"GPU-{match.group(1).lower()}", GpuKind.GPU_UUID)
    if match := _MIG_UUID.fullmatch(entry):
        return GpuDevice(f"MIG-{match.group(1).lower()}", GpuKind.MIG_UUID)
    if match := _LEGACY_MIG_UUID.fullmatch(entry):
        gpu, instance, compute = match.groups()
        return GpuDevice(f"MIG-GPU-{gpu.lower()}/{int(instance)}/{int(compute)}", GpuKind.MIG_UUID)
    if entry[:4].upper() in {"GPU-", "MIG-"}:
        raise InvalidGpuList(
            GpuListProblem.MALFORMED_UUID, entry, "a UUID is GPU- or MIG- and 8-4-4-4-12 hex digits, whole"
        )
    raise InvalidGpuList(
        GpuListProblem.MALFORMED_ENTRY, entry, "not an index (0), a GPU UUID (GPU-…), a MIG UUID (MIG-…) or auto"
    )


@dataclass(frozen=True)
class Discovery:
    """What NVML listed: the devices, and where there are none, why (no package, no driver, no GPU)."""

    devices: tuple[GpuDevice, ...]
    note: str | None = None


def parse_gpu_list(text: str, discover: Callable[[], Discovery] | None = None) -> Discovery:
    """The devices ``WARDEN_JOB_GPUS`` names, in the order given; ``auto`` calls ``discover`` (not given: syntax only,
    and ``auto`` yields no devices). Raises :class:`InvalidGpuList` for the first bad entry."""
    stripped = text.strip()
    if not stripped:
        return Discovery((), "WARDEN_JOB_GPUS is empty: this machine lends no GPU to jobs")
    entries = [entry.strip() for entry in stripped.split(",")]
    if any(entry.lower() == "auto" for entry in entries):
        if len(entries) > 1:
            raise InvalidGpuList(GpuListProblem.AUTO_NOT_ALONE, "auto", "auto stands alone, or list the devices")
        return discover() if discover is not None else Discovery((), "auto: not discovered yet")
    devices: list[GpuDevice] = []
    for entry in entries:
        if not entry:
            raise InvalidGpuList(GpuListProblem.EMPTY_ENTRY, text, "an entry between commas is empty")
        device = _device(entry)
        if device in devices:
            raise InvalidGpuList(GpuListProblem.DUPLICATE, entry, f"device {device.id} is listed twice")
        devices.append(device)
    return Discovery(tuple(devices))


@dataclass(frozen=True)
class Lease:
    """The devices one job holds; give them back with :meth:`release` or by leaving a ``with`` block."""

    job_id: str
    devices: tuple[GpuDevice, ...]
    _pool: GpuPool | None = field(default=None, repr=False, compare=False)

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The devices' names, as the manifest and the audit record list them."""
        return tuple(device.id for device in self.devices)

    def release(self) -> None:
        """Give the devices back to the pool (again: nothing happens)."""
        if self._pool is not None:
            self._pool.release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


class GpuPool:
    """Hands each job its own devices, never one another job holds (see the module docstring for the refusals)."""

    def __init__(self, devices: Sequence[GpuDevice], *, lock_dir: Path | None = None, note: str | None = None) -> None:
        if len(set(devices)) != len(devices):
            raise InvalidArgument("a GPU pool lists each device once")
        self.devices: tuple[GpuDevice, ...] = tuple(devices)
        self.note = note
        """Why the pool is empty (no devices configured, NVML missing), for the refusal of a job asking for one."""
        self._lock_dir = lock_dir
        self._condition = threading.Condition()
        self._held: dict[GpuDevice, str] = {}  # device -> job id
        self._files: dict[str, list[int]] = {}  # job id -> flock descriptors
        if lock_dir is not None:
            lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def holders(self) -> dict[str, str]:
        """Which job holds each held device (by device name)."""
        with self._condition:
            return {device.id: job for device, job in self._held.items()}

    def free(self) -> tuple[GpuDevice, ...]:
        """The devices no job of this process holds now."""
        with self._condition:
            return tuple(device for device in self.devices if device not in self._held)

    def check(self, count: int) -> None:
        """Refuse a count no wait can satisfy: negative, or more than the pool holds (``gpus_unsatisfiable``)."""
        if count < 0:
            raise InvalidArgument("a job asks for 0 or more GPUs")
        if count > len(self.devices):
            why = f" ({self.note})" if self.note else ""
            raise GpusUnsatisfiable(
                f"the job asks for {count} GPU(s) and this machine lends {len(self.devices)} to jobs{why}"
            )

    def acquire(self, count: int, job_id: str, *, timeout: float | None = 0.0) -> Lease:
        """``count`` devices for ``job_id``, the first free ones in the pool's order.

        Raises :class:`GpusUnsatisfiable` when the pool holds fewer than ``count`` devices, :class:`GpusBusy` when
        they are not free within ``timeout`` seconds (0: refuse at once; None: wait as long as it takes).
        """
        self.check(count)
        if count == 0:
            return Lease(job_id, (), None)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            if job_id in self._held.values():
                raise Conflict(f"job {job_id} holds GPUs already: one lease per job")
            while True:
                taken, free = self._take(count, job_id)
                if taken is not None:
                    return Lease(job_id, taken, self)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise GpusBusy(
                        f"the job asks for {count} GPU(s); {free} of this machine's {len(self.devices)} are free "
                        "now (other jobs hold the rest): try again when one ends"
                    )
                # Another process's release wakes nobody here: look again every so often.
                wait = _POLL_SECONDS if self._lock_dir is not None else remaining
                self._condition.wait(wait if remaining is None or wait is None else min(wait, remaining))

    def release(self, lease: Lease) -> None:
        """Give a lease's devices back and wake the waiters; a lease released before is ignored."""
        with self._condition:
            mine = [d for d in lease.devices if self._held.get(d) == lease.job_id]
            if not mine:
                return
            for device in mine:
                del self._held[device]
            for fd in self._files.pop(lease.job_id, []):
                os.close(fd)  # closing the descriptor drops its flock
            self._condition.notify_all()

    def _take(self, count: int, job_id: str) -> tuple[tuple[GpuDevice, ...] | None, int]:
        """Under the lock: the first ``count`` devices free here and (with ``lock_dir``) in every other process,
        or None and how many were free."""
        taken: list[GpuDevice] = []
        files: list[int] = []
        for device in self.devices:
            if len(taken) == count:
                break
            if device in self._held:
                continue
            if self._lock_dir is not None:
                fd = _flock(self._lock_dir / f"{_lock_name(device)}.lock")
                if fd is None:
                    continue
                files.append(fd)
            taken.append(device)
        if len(taken) < count:
            for fd in files:
                os.close(fd)
            return None, len(taken)
        for device in taken:
            self._held[device] = job_id
        if files:
            self._files[job_id] = files
        return tuple(taken), count


def _lock_name(device: GpuDevice) -> str:
    return "gpu-" + device.id.replace("/", "_")


def _flock(path: Path) -> int | None:
    """An exclusive flock on ``path`` (created 0600), or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
