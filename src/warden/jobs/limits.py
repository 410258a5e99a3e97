"""Resource limits for a sandboxed job: cgroups where the caller may create them, rlimits otherwise.

A job gets its own cgroup per controller, created *below the cgroup Warden itself runs in* (so whatever limits the
operator put on Warden still bound its jobs) and named ``warden-job-<token>``:

- cgroup v2 (one unified hierarchy): ``memory.max`` (+ ``memory.swap.max`` = 0) and ``pids.max``; the OOM count is
  ``oom_kill`` in ``memory.events``; ``cgroup.kill`` ends every process at once. Used only where the caller's cgroup
  already enables ``memory``/``pids`` in its ``cgroup.subtree_control`` (a delegated subtree); Warden does not
  rearrange the hierarchy to enable them.
- cgroup v1 (one hierarchy per controller): ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes`` where swap
  accounting exists) and ``pids.max``; the OOM count is ``oom_kill`` in ``memory.oom_control``.

The job's first process joins its cgroups between fork and exec (``JobLimits.enter_child``), so nothing it starts is
ever outside them. Where a controller cannot be used (not mounted, not writable, v2 controller not delegated), its
limit falls back to an rlimit: ``RLIMIT_AS`` for memory (address space, a stricter and coarser bound than resident
memory) and ``RLIMIT_NPROC`` for pids (counted per host user, and ignored by the kernel for root). CPU seconds are
always ``RLIMIT_CPU`` (SIGXCPU at the soft limit, SIGKILL one second later). Core dumps are off (``RLIMIT_CORE`` 0).
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from warden.errors import SandboxUnavailable

__all__ = ["CGROUP_V1", "CGROUP_V2", "RLIMIT", "JobLimits", "create_limits"]

CGROUP_V1 = "cgroup-v1"
CGROUP_V2 = "cgroup-v2"
RLIMIT = "rlimit"

_PROC_SELF = Path("/proc/self")


@dataclass(frozen=True)
class _Hierarchy:
    """Where the calling process sits in the hierarchy that holds one controller."""

    version: str
    directory: Path  # the caller's own cgroup directory in that hierarchy


def _mounts(proc: Path) -> list[tuple[str, Path, str, set[str]]]:
    """``(fstype, mount point, mount root, super options)`` of every cgroup mount, from mountinfo."""
    found = []
    for line in (proc / "mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in {"cgroup", "cgroup2"}:
            continue
        mount_point = fields[4].replace("\\040", " ")
        found.append((tail[0], Path(mount_point), fields[3], set(tail[2].split(","))))
    return found


def _join(mount_point: Path, mount_root: str, path: str) -> Path | None:
    """The directory of cgroup ``path`` under a mount whose root is ``mount_root``; None when not visible."""
    root = mount_root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    return mount_point / path[len(root) :].lstrip("/")


def _hierarchies(proc: Path = _PROC_SELF) -> dict[str, _Hierarchy]:
    """The hierarchy holding each of ``memory`` and ``pids`` for the calling process (v1 preferred where bound)."""
    try:
        memberships = (proc / "cgroup").read_text().splitlines()
        mounts = _mounts(proc)
    except OSError:
        return {}
    found: dict[str, _Hierarchy] = {}
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers:  # v1: one line per hierarchy, named by its controllers
            for fstype, mount_point, mount_root, options in mounts:
                if fstype == "cgroup" and set(controllers.split(",")) <= options:
                    directory = _join(mount_point, mount_root, path)
                    for name in ("memory", "pids"):
                        if name in options and directory is not None:
                            found[name] = _Hierarchy(CGROUP_V1, directory)
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers:
            continue
        for fstype, mount_point, mount_root, _options in mounts:
            if fstype != "cgroup2":
                continue
            directory = _join(mount_point, mount_root, path)
            if directory is None:
                continue
            try:
                # Only controllers enabled for the caller's children can limit a child cgroup.
                available = set((directory / "cgroup.subtree_control").read_text().split())
            except OSError:
                continue
            for name in ("memory", "pids"):
                if name in available:
                    found.setdefault(name, _Hierarchy(CGROUP_V2, directory))
    return found


@dataclass
class _JobCgroup:
    """One controller's cgroup for one job."""

    controller: str
    version: str
    directory: Path

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, until it is empty (a fork bomb may still be forking)."""
        kill_file = self.directory / "cgroup.kill"
        if self.version == CGROUP_V2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for _ in range(200):
            try:
                pids = [int(pid) for pid in (self.directory / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for lack of memory."""
        name = "memory.events" if self.version == CGROUP_V2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):  # a cgroup already gone, or a kernel without the counter
            for line in (self.directory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Delete the cgroup once its processes are gone (their exit is asynchronous, hence the retries)."""
        for _ in range(100):
            try:
                self.directory.rmdir()
            except FileNotFoundError:
                return
            except OSError:
                self.kill_all()
                time.sleep(0.01)
            else:
                return


def _write(path: Path, value: int | str) -> None:
    path.write_text(str(value))


def _create(controller: str, hierarchy: _Hierarchy, token: str, limit: int) -> _JobCgroup | None:
    """The job's cgroup for one controller with its limit set; None where the hierarchy will not have one.

    Controllers that share a hierarchy (every one in v2, co-mounted ones in v1) share the job's directory.
    """
    directory = hierarchy.directory / f"warden-job-{token}"
    created = True
    try:
        directory.mkdir(mode=0o755)
    except FileExistsError:
        created = False  # made a moment ago for the other controller of the same hierarchy
    except OSError:
        return None
    cgroup = _JobCgroup(controller, hierarchy.version, directory)
    try:
        if controller == "memory" and hierarchy.version == CGROUP_V1:
            _write(directory / "memory.limit_in_bytes", limit)
            if (directory / "memory.memsw.limit_in_bytes").exists():
                _write(directory / "memory.memsw.limit_in_bytes", limit)
        elif controller == "memory":
            _write(directory / "memory.max", limit)
            if (directory / "memory.swap.max").exists():
                _write(directory / "memory.swap.max", 0)
        else:
            _write(directory / "pids.max", limit)
    except OSError:  # e.g. v2 controller present in the parent but not enabled for its children
        if created:
            cgroup.remove()
        return None
    return cgroup


@dataclass
class JobLimits:
    """The limits of one job: its cgroups, its rlimits, and which mechanism enforces each limit."""

    cgroups: list[_JobCgroup] = field(default_factory=list)
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)  # (resource, soft, hard)
    mechanisms: dict[str, str] = field(default_factory=dict)

    def enter_child(self) -> None:
        """Run in the child between fork and exec: join the cgroups, then lower the rlimits.

        Only async-signal-safe-ish work happens here (open/write/close and setrlimit), as a preexec hook requires.
        """
        pid = str(os.getpid()).encode()
        for procs in self._procs_files:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        for which, soft, hard in self.rlimits:
            resource.setrlimit(which, (soft, hard))

    @property
    def _procs_files(self) -> list[str]:
        return list(dict.fromkeys(str(cgroup.directory / "cgroup.procs") for cgroup in self.cgroups))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the job for exceeding its memory cgroup."""
        return any(c.oom_kills() > 0 for c in self.cgroups if c.controller == "memory")

    def kill_all(self) -> None:
        """SIGKILL every process left in the job's cgroups."""
        for cgroup in self.cgroups:
            cgroup.kill_all()

    def release(self) -> None:
        """Kill what is left and delete the job's cgroups."""
        for cgroup in self.cgroups:
            cgroup.kill_all()
            cgroup.remove()


def create_limits(
    memory_bytes: int | None,
    pids: int | None,
    cpu_seconds: int | None,
    *,
    use_cgroups: bool = True,
    proc: Path = _PROC_SELF,
) -> JobLimits:
    """Create the cgroups for one job (where possible) and list the rlimits that stand in for the rest."""
    limits = JobLimits(rlimits=[(resource.RLIMIT_CORE, 0, 0)])
    hierarchies = _hierarchies(proc) if use_cgroups else {}
    token = secrets.token_hex(8)
    wanted = {"memory": (memory_bytes, resource.RLIMIT_AS), "pids": (pids, resource.RLIMIT_NPROC)}
    for controller, (value, fallback) in wanted.items():
        if value is None:
            continue
        hierarchy = hierarchies.get(controller)
        cgroup = _create(controller, hierarchy, token, value) if hierarchy is not None else None
        if cgroup is not None:
            limits.cgroups.append(cgroup)
            limits.mechanisms[controller] = cgroup.version
        else:
            if controller == "pids" and os.geteuid() == 0:
                limits.release()
                raise SandboxUnavailable(
                    "the pids limit needs a writable pids cgroup when Warden runs as root: the kernel exempts "
                    "root from RLIMIT_NPROC, so the fallback would enforce nothing (run Warden as a service user, "
                    "delegate a cgroup to it, or pass no pids limit)"
                )
            limits.rlimits.append((fallback, value, value))
            limits.mechanisms[controller] = RLIMIT
    if cpu_seconds is not None:
        limits.rlimits.append((resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1))
        limits.mechanisms["cpu_seconds"] = RLIMIT
    return limits
