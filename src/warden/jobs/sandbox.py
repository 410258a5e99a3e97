"""The ``bwrap`` job sandbox: a job runs with no network, no capabilities and nothing of the host but what it is given.

``BwrapSandbox.run(spec, stdout_sink, stderr_sink)`` starts the job under Debian's ``bubblewrap`` with:

- new user, PID, IPC, UTS, mount, network and (where possible) cgroup namespaces (``--unshare-all
  --unshare-user``), no further user namespaces (``--disable-userns``), an unprivileged uid/gid, every capability
  dropped (``--cap-drop ALL``), its own session (``--new-session``: no TIOCSTI into the caller's terminal), killed
  with its parent (``--die-with-parent``);
- a root that is an empty tmpfs holding only the runtime's read-only paths (``/usr`` and its merged-``/usr``
  links, ``/etc/alternatives``, ``/etc/ld.so.cache``, plus any ``extra_ro_paths`` such as a virtual environment),
  a fresh ``/proc`` (remounted read-only, so no sysctl can be written), a minimal read-only ``/dev``, private ``/tmp``
  and ``/dev/shm`` tmpfs of bounded size, every input bound read-only at ``/input/NAME``, the output directory bound
  read-write at ``/output`` (the only host path it can write), and the root then remounted read-only;
- an environment holding only ``PATH``, ``HOME``, ``LANG`` and what the spec gives (``--clearenv``);
- the seccomp denylist of ``warden.jobs.seccomp`` (``--seccomp FD``, a memfd). bwrap sets
  ``PR_SET_NO_NEW_PRIVS`` before loading it, which the kernel requires of an unprivileged filter: the job shows
  ``NoNewPrivs: 1`` in ``/proc/self/status`` and the suite checks it;
- Landlock as a second layer where the kernel has it (``LANDLOCK_TRAMPOLINE``, run by Debian's ``/usr/bin/python3``
  inside the sandbox just before the job): only ``/output``, ``/tmp`` and ``/dev/shm`` writable, no TCP bind or
  connect (ABI 4+), no signals or abstract sockets across the sandbox (ABI 6+), no ptrace-style access to the
  sandbox's init; ``SandboxResult.landlock_abi`` says which ABI confined the job (0: layer not applied);
- memory and pids limits from ``warden.jobs.limits`` (cgroups, else rlimits), CPU seconds as ``RLIMIT_CPU``, and a
  wall-clock timeout after which bwrap, the job's whole PID namespace and its cgroups are killed.

stdout and stderr are handed to the sinks chunk by chunk as the job writes them. The result carries the exact argv
for the audit record. The preexec hook that joins the cgroups runs between fork and exec; it only opens, writes
and calls setrlimit.

When Warden runs as root, the job's uid maps to host root (bwrap's user namespace maps the caller's uid): the job
still holds no capability in any namespace and sees only its binds, ``/proc`` is read-only so no host sysctl can be
written, and the seccomp filter refuses set-id modes, but the files it writes to ``/output`` are owned by root.
Run Warden as an unprivileged service user where possible.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from typing import Final

from warden.errors import InvalidArgument, SandboxUnavailable
from warden.jobs import seccomp
from warden.jobs.limits import JobLimits, create_limits

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_RUNTIME_PATHS",
    "BwrapSandbox",
    "SandboxResult",
    "SandboxSpec",
    "SandboxUnavailable",
    "Sink",
    "check_env",
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
_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture

LANDLOCK_PYTHON = "/usr/bin/python3"
"""The interpreter that runs the Landlock trampoline inside the sandbox (Debian's, under the read-only /usr)."""

LANDLOCK_TRAMPOLINE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
sep = sys.argv.index("--")
writable, command = sys.argv[1:sep], sys.argv[sep + 1 :]
abi = libc.syscall(444, None, 0, 1)
if abi > 0:
    fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    net, scoped = (3 if abi >= 4 else 0), (3 if abi >= 6 else 0)
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    ruleset = libc.syscall(444, attr, 8 if abi < 4 else 16 if abi < 6 else 24, 0)
    if ruleset < 0:
        sys.exit(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
    def allow(path, rights):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneath(rights, fd)
        if libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) < 0:
            sys.exit(f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
        os.close(fd)
    allow("/", 1 | 4 | 8)
    allow("/dev", 1 | 2 | 4 | 8 | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0))
    for path in writable:
        allow(path, fs)
    if libc.prctl(38, 1, 0, 0, 0) < 0 or libc.syscall(446, ruleset, 0) < 0:
        sys.exit(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    os.close(ruleset)
os.execvp(command[0], command)
"""
"""Runs inside the sandbox before the job: everything visible is readable and executable, only ``/output``,
``/tmp`` and ``/dev/shm`` (arguments before ``--``) are writable, ``/dev`` nodes may be written, TCP bind and
connect are refused (ABI 4+), and abstract UNIX sockets and signals cannot leave the sandbox (ABI 6+)."""


def check_env(env: Mapping[str, str]) -> None:
    """Refuse an environment variable whose name is not a shell name or whose value holds a NUL."""
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key) or "\0" in value:
            raise InvalidArgument(f"environment variable {key!r} is not a valid name and value")


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
    read-write at ``/output``, the job's working directory. Limits left at None are not applied.
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
    uid: int = 65534
    gid: int = 65534
    runtime_paths: Sequence[Path] = DEFAULT_RUNTIME_PATHS
    extra_ro_paths: Sequence[Path] = ()
    hostname: str = "warden-job"
    landlock: bool = True

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

    @property
    def ok(self) -> bool:
        """The job ran to completion and exited 0."""
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


def _runtime_args(paths: Sequence[Path]) -> list[str]:
    """bwrap arguments recreating each existing runtime path: a link as a link, anything else bound read-only."""
    args: list[str] = []
    for path in paths:
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it has none (or the LSM is not enabled)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = int(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, 1))  # LANDLOCK_CREATE_RULESET_VERSION
    return max(version, 0)


def _landlock_wrapper(spec: SandboxSpec) -> list[str]:
    """The trampoline that confines the job with Landlock before exec; empty when that layer is off or impossible."""
    runtime = {Path(p) for p in spec.runtime_paths}
    if not spec.landlock or landlock_abi() == 0 or Path("/usr") not in runtime or not Path(LANDLOCK_PYTHON).exists():
        return []
    return [LANDLOCK_PYTHON, "-I", "-S", "-c", LANDLOCK_TRAMPOLINE, "/output", "/tmp", "/dev/shm", "--"]  # noqa: S108


_SCRATCH: Final = ("/tmp", "/dev/shm")  # noqa: S108 - private tmpfs inside the sandbox, not the host's


def build_argv(spec: SandboxSpec, bwrap: str, seccomp_fd: int) -> list[str]:
    """The exact bwrap command line for ``spec``, reading the seccomp program from ``seccomp_fd``."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(spec.uid),
        "--gid",
        str(spec.gid),
        "--hostname",
        spec.hostname,
    ]
    paths = [Path(p) for p in (*spec.runtime_paths, *spec.extra_ro_paths)]
    # A runtime under /tmp (a virtual environment in a CI checkout there) is bound after the private /tmp is
    # mounted, or the tmpfs would hide it.
    late = [p for p in paths if any(p.is_relative_to(scratch) for scratch in _SCRATCH)]
    argv += _runtime_args([p for p in paths if p not in late])
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for scratch in _SCRATCH:
        argv += ["--size", str(spec.tmp_bytes), "--tmpfs", scratch]
    argv += _runtime_args(late)
    for host, name in spec.inputs:
        argv += ["--ro-bind", str(Path(host).resolve()), f"/input/{name}"]
    argv += ["--bind", str(Path(spec.output_dir).resolve()), "/output", "--chdir", "/output"]
    # /proc read-only: bwrap leaves /proc/sys writable, and a job whose uid maps to host root could write host
    # sysctls such as kernel.core_pattern through it. Then the root itself, once every mount point exists.
    argv += ["--remount-ro", "/proc", "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv"]
    for key, value in spec.environment().items():
        argv += ["--setenv", key, value]
    argv += ["--seccomp", str(seccomp_fd), "--", *_landlock_wrapper(spec), *spec.command]
    return argv


@functools.cache
def _probe(bwrap: str) -> str | None:
    """None when bwrap can build a sandbox here; otherwise why not."""
    try:
        seccomp.compile_filter()
    except (seccomp.SeccompUnavailable, OSError) as exc:
        return str(exc)
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    argv += [*_runtime_args(list(DEFAULT_RUNTIME_PATHS)), "--proc", "/proc", "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)  # noqa: S603 - fixed argv
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        return f"{bwrap} cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


class BwrapSandbox:
    """Runs a ``SandboxSpec`` under bubblewrap.

    ``bwrap`` is the executable (found on PATH by default); ``use_cgroups=False`` forces the rlimit fallback.
    """

    def __init__(self, bwrap: str | None = None, *, use_cgroups: bool = True) -> None:
        self._bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self._use_cgroups = use_cgroups

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
        program = seccomp.compile_filter()
        limits = create_limits(spec.memory_bytes, spec.pids, spec.cpu_seconds, use_cgroups=self._use_cgroups)
        seccomp_fd = os.memfd_create("warden-seccomp", os.MFD_CLOEXEC)
        try:
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            argv = build_argv(spec, self._bwrap, seccomp_fd)
            started = datetime.now(UTC)
            process = subprocess.Popen(  # noqa: S603 - argv built above from a validated spec
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(seccomp_fd,),
                env={"PATH": os.defpath},
                start_new_session=True,
                preexec_fn=limits.enter_child,  # noqa: PLW1509 - joins cgroups and sets rlimits before exec
            )
        except subprocess.SubprocessError as exc:  # the preexec hook failed: a cgroup refused the job
            limits.release()
            raise SandboxUnavailable(f"the job could not be started in its cgroups: {exc}") from exc
        except BaseException:
            limits.release()
            raise
        finally:
            os.close(seccomp_fd)
        try:
            timed_out = _pump(process, spec.timeout_seconds, stdout_sink, stderr_sink, limits)
            returncode = process.wait()
            ended = datetime.now(UTC)
            oom_killed = limits.oom_killed()
        finally:
            _kill(process, limits)
            limits.release()
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
            landlock_abi=landlock_abi() if _landlock_wrapper(spec) else 0,
        )


def _kill(process: subprocess.Popen[bytes], limits: JobLimits) -> None:
    """SIGKILL bwrap's process group (its sandbox dies with it) and everything in the job's cgroups."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    limits.kill_all()


def _pump(
    process: subprocess.Popen[bytes],
    timeout: float | None,
    stdout_sink: Sink,
    stderr_sink: Sink,
    limits: JobLimits,
) -> bool:
    """Forward output to the sinks until the job ends; kill it at the deadline. True when it timed out."""
    if process.stdout is None or process.stderr is None:  # pragma: no cover - Popen was given PIPEs
        raise RuntimeError("the job's output pipes are missing")
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout_sink)
        selector.register(process.stderr, selectors.EVENT_READ, stderr_sink)
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                if timed_out:  # the kill's grace period is over too: stop reading
                    break
                timed_out = True
                _kill(process, limits)
                deadline = time.monotonic() + _KILL_GRACE_SECONDS
                continue
            for key, _ in selector.select(wait):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data(chunk)
                else:
                    selector.unregister(key.fileobj)
    process.stdout.close()
    process.stderr.close()
    if not timed_out and deadline is not None:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(process, limits)
    return timed_out
