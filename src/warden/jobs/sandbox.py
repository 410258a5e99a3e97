"""The ``bwrap`` job sandbox: a job runs with no network, no capabilities and nothing of the host but what it is given.

``BwrapSandbox.run(spec, stdout_sink, stderr_sink)`` starts the job under Debian's ``bubblewrap`` with:

- new user, PID, IPC, UTS, mount, network and (where possible) cgroup namespaces (``--unshare-all
  --unshare-user``), no further user namespaces (``--disable-userns``), an unprivileged uid/gid, every capability
  dropped (``--cap-drop ALL``), its own session (``--new-session``: no TIOCSTI into the caller's terminal), killed
  with its parent (``--die-with-parent``);
- a root that is an empty tmpfs holding only the runtime's read-only paths (``/usr`` and its merged-``/usr``
  links, ``/etc/alternatives``, ``/etc/ld.so.cache``, plus any ``extra_ro_paths`` such as a virtual environment),
  a fresh ``/proc`` (remounted read-only, so no sysctl can be written), a minimal read-only ``/dev``, private ``/tmp``
  and ``/dev/shm`` tmpfs of bounded size, every input bound read-only at ``/input/NAME``, ``/output`` a tmpfs of
  ``output_bytes`` (no host path is writable at all; :mod:`warden.jobs.outputs` copies the regular files out once
  the job is gone), and the root then remounted read-only;
- an environment holding only ``PATH``, ``HOME``, ``LANG`` and what the spec gives (``--clearenv``), passed as
  ``--setenv`` options through ``--args FD`` (a memfd), so no value appears in any process's command line;
- for a job leased GPUs (``SandboxSpec.gpus``), only its own ``/dev/nvidiaN`` (and MIG capability nodes), the
  driver's control nodes and libraries, and ``CUDA_VISIBLE_DEVICES`` naming its devices by UUID (see
  :mod:`warden.jobs.bwrap_args`; :class:`~warden.jobs.gpu_driver.GpuHost` reads the driver); a job without GPUs
  gets exactly the argv it got before GPUs existed;
- the seccomp denylist of ``warden.jobs.seccomp`` (``--seccomp FD``, a memfd). bwrap sets
  ``PR_SET_NO_NEW_PRIVS`` before loading it, which the kernel requires of an unprivileged filter: the job shows
  ``NoNewPrivs: 1`` in ``/proc/self/status`` and the suite checks it;
- Landlock as a second layer where the kernel has it (``LANDLOCK_TRAMPOLINE``, run by Debian's ``/usr/bin/python3``
  inside the sandbox just before the job): only ``/output``, ``/tmp`` and ``/dev/shm`` writable, no TCP bind or
  connect (ABI 4+), no signals or abstract sockets across the sandbox (ABI 6+), no ptrace-style access to the
  sandbox's init; ``SandboxResult.landlock_abi`` says which ABI confined the job (0: layer not applied);
- memory and pids limits from ``warden.jobs.limits`` (cgroups, else rlimits), CPU seconds as ``RLIMIT_CPU``, and a
  wall-clock timeout after which bwrap, the job's whole PID namespace and its cgroups are killed;
- an output limit (bytes and entries of the ``/output`` tmpfs, watched while the job runs) and a log limit (stdout
  and stderr together, counted as they are copied): past either the job is killed and the result names the limit
  in ``limit_exceeded`` (``output_bytes``, ``output_files``, ``log_bytes``).

stdout and stderr are handed to the sinks chunk by chunk as the job writes them, up to the log limit. The result
carries the exact argv for the audit record. The preexec hook that joins the cgroups runs between fork and exec; it
only opens, writes and calls setrlimit.

When Warden runs as root, the job's uid maps to host root (bwrap's user namespace maps the caller's uid): the job
still holds no capability in any namespace and sees only its binds, ``/proc`` is read-only so no host sysctl can be
written, and the seccomp filter refuses set-id modes, but the files it writes to ``/output`` are owned by root.
Run Warden as an unprivileged service user where possible.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from warden.errors import InvalidArgument, SandboxUnavailable
from warden.jobs import seccomp
from warden.jobs.bwrap_args import GpuMounts, build_argv, env_args, landlock_wrapper, runtime_args
from warden.jobs.gpus import GpuDevice, check_gpu_env
from warden.jobs.landlock import LANDLOCK_PYTHON, LANDLOCK_TRAMPOLINE, landlock_abi
from warden.jobs.limits import JobLimits, create_limits
from warden.jobs.outputs import OutputArea, Withheld
from warden.jobs.streams import LogBudget

if TYPE_CHECKING:
    from warden.jobs.gpu_driver import GpuHost

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_RUNTIME_PATHS",
    "LANDLOCK_PYTHON",
    "LANDLOCK_TRAMPOLINE",
    "BwrapSandbox",
    "SandboxResult",
    "SandboxSpec",
    "SandboxUnavailable",
    "Sink",
    "build_argv",
    "check_env",
    "env_args",
    "landlock_abi",
    "python_runtime_paths",
]

Sink = Callable[[bytes], None]
"""Receives the job's output, one chunk at a time, in the order the job wrote it."""

DEFAULT_RUNTIME_PATHS: tuple[Path, ...] = (
    Path("/usr"),
    Path("/bin"),
    Path("/sbin"),
    Path("/lib"),
    Path("/lib64"),
    Path("/lib32"),
    Path("/libx32"),
    Path("/etc/alternatives"),
    Path("/etc/ld.so.cache"),
)
"""What a shell or Python job needs of the host: binaries, libraries, Debian's alternatives, the linker cache.

Paths missing on the host are skipped; symbolic links (merged ``/usr``) are recreated as links."""

DEFAULT_ENV: Mapping[str, str] = MappingProxyType(
    {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}  # noqa: S108 - the job's own tmpfs
)
"""The environment every job starts with; ``SandboxSpec.env`` adds to it and may override it."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KILL_GRACE_SECONDS = 5.0
_WATCH_SECONDS = 0.05  # how often the /output tmpfs's use is read while the job runs


def check_env(env: Mapping[str, str]) -> None:
    """Refuse an environment variable whose name is not a shell name or whose value holds a NUL, and one that
    selects GPUs (``gpu_env_reserved``: Warden sets those to the job's own devices)."""
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key) or "\0" in value:
            raise InvalidArgument(f"environment variable {key!r} is not a valid name and value")
    check_gpu_env(env)


def python_runtime_paths(prefix: str | Path, base_prefix: str | Path) -> tuple[Path, ...]:
    """The paths to add to ``extra_ro_paths`` for a Python interpreter or virtual environment.

    Pass ``sys.prefix`` and ``sys.base_prefix`` of the interpreter the job will run (they are equal outside a
    virtual environment); paths under ``/usr`` are already bound.
    """
    paths = []
    for candidate in (Path(prefix).resolve(), Path(base_prefix).resolve()):
        if candidate not in paths and not candidate.is_relative_to("/usr"):
            paths.append(candidate)
    return tuple(paths)


@dataclass(frozen=True)
class SandboxSpec:
    """One job to run: its command, what it may read and write, and its limits.

    ``inputs`` are ``(host path, name)`` pairs bound read-only at ``/input/NAME``; ``output_dir`` is bound
    read-write at ``/output``, the job's working directory. Limits left at None are not applied. ``gpus`` are the
    devices the job was leased (:class:`~warden.jobs.gpus.GpuPool`); each backend gives it those and no other.
    """

    command: Sequence[str]
    output_dir: Path
    inputs: Sequence[tuple[Path, str]] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    memory_bytes: int | None = 2 * 1024**3
    pids: int | None = 256
    cpu_seconds: int | None = None
    timeout_seconds: float | None = 3600.0
    tmp_bytes: int = 256 * 1024**2
    output_bytes: int = 1024**3
    output_entries: int = 100_000
    log_bytes: int | None = 64 * 1024**2
    uid: int = 65534
    gid: int = 65534
    runtime_paths: Sequence[Path] = DEFAULT_RUNTIME_PATHS
    extra_ro_paths: Sequence[Path] = ()
    hostname: str = "warden-job"
    landlock: bool = True
    gpus: Sequence[GpuDevice] = ()

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(arg, str) and "\0" not in arg for arg in self.command):
            raise InvalidArgument("the job needs a command: a non-empty list of strings without NUL")
        if not Path(self.output_dir).is_dir():
            raise InvalidArgument(f"output directory {self.output_dir} does not exist or is not a directory")
        names = [name for _, name in self.inputs]
        for host, name in self.inputs:
            if not _NAME.fullmatch(name) or name in {".", ".."}:
                raise InvalidArgument(f"input name {name!r} must be letters, digits, '.', '_' or '-'")
            if not Path(host).exists():
                raise InvalidArgument(f"input {host} does not exist")
        if len(set(names)) != len(names):
            raise InvalidArgument("input names must be unique")
        check_env(self.env)
        for name, limit in (("memory", self.memory_bytes), ("pids", self.pids), ("cpu seconds", self.cpu_seconds)):
            if limit is not None and limit <= 0:
                raise InvalidArgument(f"the {name} limit must be positive")
        if self.tmp_bytes <= 0:
            raise InvalidArgument("the size of /tmp must be positive")
        if self.output_bytes <= 0 or self.output_entries <= 0:
            raise InvalidArgument("the output limits (bytes and entries) must be positive")
        if self.log_bytes is not None and self.log_bytes <= 0:
            raise InvalidArgument("the log limit must be positive")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise InvalidArgument("the timeout must be positive")
        if self.uid <= 0 or self.gid <= 0:
            raise InvalidArgument("the job must run as an unprivileged uid and gid, not 0")
        for path in (*self.runtime_paths, *self.extra_ro_paths):
            if not Path(path).is_absolute():
                raise InvalidArgument(f"runtime path {path} must be absolute")

    def environment(self) -> dict[str, str]:
        """The job's whole environment: the defaults, then the spec's own variables."""
        return {**DEFAULT_ENV, **self.env}


@dataclass(frozen=True)
class SandboxResult:
    """How a job ended, for the caller and the audit record.

    ``exit_code`` is the job's status as bwrap reports it; bwrap reports a job killed by signal N as 128 + N, as a
    shell does, and ``signal`` holds N then (or the signal that ended bwrap itself, e.g. on timeout).
    ``limit_exceeded`` names the output or log limit the job was stopped at; ``withheld`` lists what of its output
    was not released (links, special files, extra hard-link names, what did not fit).
    """

    argv: tuple[str, ...]
    exit_code: int | None
    signal: int | None
    timed_out: bool
    oom_killed: bool
    started: datetime
    ended: datetime
    limits: Mapping[str, str]  # limit name → mechanism that enforced it (cgroup-v1, cgroup-v2, rlimit)
    landlock_abi: int = 0  # the Landlock ABI the job was confined with; 0 when that layer was not applied
    limit_exceeded: str | None = None
    withheld: tuple[Withheld, ...] = ()

    @property
    def ok(self) -> bool:
        """The job ran to completion within its limits and exited 0."""
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed and self.limit_exceeded is None


@functools.cache
def _probe(bwrap: str) -> str | None:
    """None when bwrap can build a sandbox here; otherwise why not."""
    try:
        seccomp.compile_filter()
    except (seccomp.SeccompUnavailable, OSError) as exc:
        return str(exc)
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    argv += [*runtime_args(list(DEFAULT_RUNTIME_PATHS)), "--proc", "/proc", "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)  # noqa: S603 - fixed argv
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        return f"{bwrap} cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


class BwrapSandbox:
    """Runs a ``SandboxSpec`` under bubblewrap.

    ``bwrap`` is the executable (found on PATH by default); ``use_cgroups=False`` forces the rlimit fallback;
    ``gpu_host`` is the driver a job with GPUs gets its devices from (default: this machine's, asked only then).
    """

    def __init__(self, bwrap: str | None = None, *, use_cgroups: bool = True, gpu_host: GpuHost | None = None) -> None:
        self._bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self._use_cgroups = use_cgroups
        self._gpu_host = gpu_host

    def gpu_mounts(self, spec: SandboxSpec) -> GpuMounts | None:
        """The device nodes, libraries and variables of the spec's GPUs; None for a job without GPUs."""
        if not spec.gpus:
            return None
        covered = [Path(p) for p in (*spec.runtime_paths, *spec.extra_ro_paths)]
        return self._host().mounts(spec.gpus, covered=covered)

    def check_gpus(self, devices: Sequence[GpuDevice]) -> None:
        """Refuse (``gpu_unavailable``) devices this host cannot give a job, before anything is admitted."""
        if devices:
            self._host().mounts(devices)

    def _host(self) -> GpuHost:
        if self._gpu_host is None:
            from warden.jobs.gpu_driver import GpuHost  # noqa: PLC0415 - the driver is read only for GPU jobs

            self._gpu_host = GpuHost()
        return self._gpu_host

    def unavailable_reason(self) -> str | None:
        """None when the sandbox can run here; otherwise a sentence saying what is missing."""
        if shutil.which(self._bwrap) is None:
            return f"{self._bwrap} not found: install Debian's bubblewrap (apt-get install bubblewrap)"
        return _probe(self._bwrap)

    def available(self) -> bool:
        """Whether bwrap is present and user namespaces and seccomp are usable."""
        return self.unavailable_reason() is None

    def run(self, spec: SandboxSpec, stdout_sink: Sink, stderr_sink: Sink) -> SandboxResult:
        """Run the job to its end (or its timeout), streaming its output to the sinks."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise SandboxUnavailable(reason)
        gpu = self.gpu_mounts(spec)
        program = seccomp.compile_filter()
        limits = create_limits(spec.memory_bytes, spec.pids, spec.cpu_seconds, use_cgroups=self._use_cgroups)
        seccomp_fd, env_fd = _memfd("warden-seccomp", program), _memfd("warden-env", env_args(spec, gpu))
        info_read, info_write = os.pipe()
        block_read, block_write = os.pipe()
        child_ends = (seccomp_fd, env_fd, info_write, block_read)
        try:
            argv = build_argv(spec, self._bwrap, seccomp_fd, env_fd, info_fd=info_write, block_fd=block_read, gpu=gpu)
            started = datetime.now(UTC)
            process = subprocess.Popen(  # noqa: S603 - argv built above from a validated spec
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=child_ends,
                env={"PATH": os.defpath},
                start_new_session=True,
                preexec_fn=limits.enter_child,  # noqa: PLW1509 - joins cgroups and sets rlimits before exec
            )
        except BaseException as exc:
            limits.release()
            os.close(info_read)
            os.close(block_write)
            if isinstance(exc, subprocess.SubprocessError):  # the preexec hook failed: a cgroup refused the job
                raise SandboxUnavailable(f"the job could not be started in its cgroups: {exc}") from exc
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        area: OutputArea | None = None
        try:
            area = _attach(process, info_read, block_write, spec)
            budget = LogBudget(spec.log_bytes)
            timed_out, exceeded = _pump(
                process, spec.timeout_seconds, (stdout_sink, stderr_sink), limits=limits, budget=budget, area=area
            )
            returncode = process.wait()
            ended = datetime.now(UTC)
            oom_killed = limits.oom_killed()
        except BaseException:
            if area is not None:
                area.close()
            raise
        finally:
            _kill(process, limits)
            limits.release()
        withheld, exceeded = _release(area, spec, exceeded)
        exit_code: int | None = returncode if returncode >= 0 else None
        signal_number: int | None = -returncode if returncode < 0 else None
        if returncode > 128 and returncode - 128 in signal.valid_signals():
            signal_number = returncode - 128
        return SandboxResult(
            argv=tuple(argv),
            exit_code=exit_code,
            signal=signal_number,
            timed_out=timed_out,
            oom_killed=oom_killed,
            started=started,
            ended=ended,
            limits=MappingProxyType(dict(limits.mechanisms)),
            landlock_abi=landlock_abi() if landlock_wrapper(spec) else 0,
            limit_exceeded=exceeded,
            withheld=withheld,
        )


def _release(
    area: OutputArea | None, spec: SandboxSpec, exceeded: str | None
) -> tuple[tuple[Withheld, ...], str | None]:
    """Copy the output out once the job and everything it started are gone; what was withheld, and the limit hit."""
    if area is None:
        return (), exceeded
    try:
        exceeded = exceeded or area.exceeded()
        released, over = area.release(Path(spec.output_dir))
        return tuple(released), exceeded or ("output_bytes" if over else None)
    finally:
        area.close()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _attach(process: subprocess.Popen[bytes], info_read: int, block_write: int, spec: SandboxSpec) -> OutputArea | None:
    """Open the sandbox's /output while bwrap waits, then let the job start; None when bwrap failed before that.

    A bwrap that fails to build the sandbox exits with its own message on stderr, which the pump then forwards.
    """
    try:
        try:
            area: OutputArea | None = OutputArea.attach(process, info_read, spec.output_bytes, spec.output_entries)
        except OSError as exc:
            if process.poll() is None:
                raise SandboxUnavailable(f"the sandbox's /output could not be opened from the host: {exc}") from exc
            area = None
        with contextlib.suppress(OSError):  # bwrap may be gone already
            os.write(block_write, b"g")
        return area
    finally:
        os.close(info_read)
        os.close(block_write)


def _kill(process: subprocess.Popen[bytes], limits: JobLimits) -> None:
    """SIGKILL bwrap's process group (its sandbox dies with it) and everything in the job's cgroups."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    limits.kill_all()


def _pump(
    process: subprocess.Popen[bytes],
    timeout: float | None,
    sinks: tuple[Sink, Sink],
    *,
    limits: JobLimits,
    budget: LogBudget,
    area: OutputArea | None,
) -> tuple[bool, str | None]:
    """Forward output to the sinks until the job ends; kill it at the deadline or past a limit.

    Returns whether it timed out and which limit it passed (``log_bytes``, ``output_bytes``, ``output_files``).
    """
    if process.stdout is None or process.stderr is None:  # pragma: no cover - Popen was given PIPEs
        raise RuntimeError("the job's output pipes are missing")
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out, exceeded, stopping = False, None, False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, sinks[0])
        selector.register(process.stderr, selectors.EVENT_READ, sinks[1])
        while selector.get_map():
            if not stopping and area is not None and (exceeded := area.exceeded()) is not None:
                stopping = True
            elif deadline is not None and deadline - time.monotonic() <= 0:
                if stopping:  # the kill's grace period is over too: stop reading
                    break
                timed_out = stopping = True
            else:
                wait = None if deadline is None else deadline - time.monotonic()
                if area is not None and not stopping:
                    wait = _WATCH_SECONDS if wait is None else min(wait, _WATCH_SECONDS)
                for key, _ in selector.select(wait):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif kept := budget.take(chunk):
                        key.data(kept)
                if not budget.exceeded or stopping:
                    continue
                exceeded = "log_bytes"
                stopping = True
            _kill(process, limits)
            deadline = time.monotonic() + _KILL_GRACE_SECONDS
    process.stdout.close()
    process.stderr.close()
    if not timed_out and deadline is not None:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = exceeded is None
            _kill(process, limits)
    return timed_out, exceeded
