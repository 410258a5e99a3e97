"""The ``podman`` and ``docker`` job backends: the bwrap sandbox's rules as one ``{engine} run`` command.

:func:`build_command` turns a :class:`ContainerJob` into the argv::

    {engine} run --rm --name NAME --network none --cap-drop ALL --security-opt no-new-privileges
      --security-opt seccomp=PROFILE.json --read-only --tmpfs /tmp:rw,noexec,nosuid,size=N --user 65534:65534
      --memory N --memory-swap N --pids-limit N [--cpus C] [--ulimit cpu=S:S] [--ulimit fsize=N:N]
      [GPU options] -v HOST:/input/NAME:ro ... -v OUTPUT:/output:rw --workdir /output -e PATH=... ...
      [-e NVIDIA_VISIBLE_DEVICES=void] --env-file FILE IMAGE@sha256:... CMD...

GPUs (:func:`gpu_run_args`): with an ``nvidia.com/gpu`` CDI spec in ``/etc/cdi`` or ``/var/run/cdi`` (``nvidia-ctk
cdi generate``), each leased device is ``--device nvidia.com/gpu=ID`` (the spec must name the device: ``0`` under
nvidia-ctk's index naming, ``GPU-…`` under its UUID naming), for podman and for docker (25 and later, with the
daemon's ``cdi`` feature on). Without a spec, docker gets ``--gpus device=ID`` (several: ``--gpus
'"device=0,1"'``, the quotes keeping docker's CSV parser from splitting the list) through the NVIDIA runtime, and
podman is refused (``gpu_unavailable``, ``no_cdi``): podman reaches NVIDIA GPUs only through CDI. Every job that
does not use ``--gpus`` also gets ``NVIDIA_VISIBLE_DEVICES=void``: CUDA base images set that variable to ``all``,
and where the NVIDIA runtime is the engine's default it would otherwise hand a job without GPUs every GPU of the
machine (with ``--gpus`` the daemon sets the variable to the leased devices itself).

The job's own environment goes through ``--env-file``, a 0600 file in a private 0700 directory removed after
the run, so no value appears on the engine's command line (a dry run prints ``--env NAME``: the engine then
takes the value from the environment of whoever runs the printed command). An env file holds one variable a
line, so a value with a newline is refused for these backends.

Limits the engines cannot express for a bind mount are Warden's: the log limit is counted as the output is
pumped (past it the container is killed), and the output limit is ``--ulimit fsize`` (no single file past it)
plus a watcher that sums the output directory every quarter second and kills the container past the bytes or
entries limit. Unlike bwrap's tmpfs this is not a hard bound: a job can write for up to one interval past it.

``--memory-swap`` equal to ``--memory`` means no swap beyond the limit. The seccomp profile is the denylist of
:mod:`warden.jobs.seccomp` written in the engines' JSON format by :func:`seccomp_profile` (default allow, the
denied calls answered ``EPERM``, ``socket`` refused unless its family is ``AF_UNIX``, namespace flags of ``clone``
refused, ``clone3``/``openat2`` answered ``ENOSYS``, set-id modes refused, only the native architecture listed so
foreign system-call tables are refused by the runtime). It replaces the engine's own default profile, which
allows less in some places (``personality`` arguments, for instance) and more in others (any socket family);
Warden chooses its own so that every backend refuses the same calls. The wall-clock timeout is Warden's: the
engines have none, so :class:`ContainerSandbox` stops the container with ``{engine} kill`` at the deadline.

The job's uid must be able to write ``/output``. Rootless podman maps the calling user to the job's uid
(``--userns keep-id:uid=U,gid=G``, podman 4.3 or later), so the outputs belong to the caller. Warden running as
root hands the output directory to the job's uid and gid before the run. A non-root caller of docker cannot, so
the output directory is opened to everyone (mode 0777) for the run: keep its parent directory private.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from warden.errors import InvalidArgument, SandboxUnavailable
from warden.jobs import seccomp
from warden.jobs.gpu_driver import CDI_DIRS, CDI_KIND, cdi_gpu_names
from warden.jobs.gpus import GpuDevice, GpuUnavailable, GpuUnavailableReason, check_gpu_env
from warden.jobs.images import ImageRef, check_allowed
from warden.jobs.outputs import tree_usage
from warden.jobs.sandbox import DEFAULT_ENV, SandboxResult, SandboxSpec, Sink
from warden.jobs.streams import LogBudget

__all__ = [
    "ContainerJob",
    "ContainerSandbox",
    "Engine",
    "build_command",
    "gpu_run_args",
    "prepare_output_dir",
    "quoted",
    "rootless_podman",
    "seccomp_profile",
    "write_seccomp_profile",
]

_ARCHITECTURES: Final = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "arm64": "SCMP_ARCH_AARCH64"}
_KILL_GRACE_SECONDS: Final = 10.0
_WATCH_SECONDS: Final = 0.25
_SIGKILLED: Final = 128 + 9


class Engine(StrEnum):
    """The container engines Warden can drive; both take the same ``run`` options."""

    PODMAN = "podman"
    DOCKER = "docker"


def _errno_rule(names: Sequence[str], code: int, args: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": code}
    if args:
        rule["args"] = list(args)
    return rule


def _masked(index: int, bit: int) -> dict[str, Any]:
    return {"index": index, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}


def seccomp_profile(machine: str | None = None) -> dict[str, Any]:
    """The sandbox's seccomp denylist in the docker/OCI JSON format, for ``--security-opt seccomp=FILE``.

    Argument conditions within one rule are all required (AND), so each flag or bit that is refused gets its own
    rule. ``machine`` (``platform.machine()`` by default) picks the one architecture listed.
    """
    arch = _ARCHITECTURES.get((machine or platform.machine()).lower())
    if arch is None:
        raise SandboxUnavailable(f"no seccomp architecture known for {machine or platform.machine()}")
    rules = [_errno_rule([name for names in seccomp.DENIED.values() for name in names], errno.EPERM)]
    rules.append(_errno_rule(["socket"], errno.EPERM, [{"index": 0, "value": socket.AF_UNIX, "op": "SCMP_CMP_NE"}]))
    rules += [
        _errno_rule(["clone"], errno.EPERM, [_masked(0, flag)]) for flag in seccomp.CLONE_NAMESPACE_FLAGS.values()
    ]
    rules.append(_errno_rule(sorted(seccomp.NOT_IMPLEMENTED), errno.ENOSYS))
    for name, position in seccomp.SET_ID_MODE_ARGUMENT.items():
        rules += [_errno_rule([name], errno.EPERM, [_masked(position, bit)]) for bit in (0o4000, 0o2000)]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": rules}


def write_seccomp_profile(directory: Path) -> Path:
    """Write the profile to ``directory/warden-seccomp-<sha256 prefix>.json`` (named by content) and return it."""
    text = json.dumps(seccomp_profile(), indent=2, sort_keys=True) + "\n"
    path = directory / f"warden-seccomp-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    directory.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class ContainerJob:
    """One job for a container engine: the image, the command, its inputs, output, environment and limits.

    Host paths are made absolute; nothing is required to exist, so a dry run can print the command before any
    directory is made. ``environment`` is the job's whole environment (``DEFAULT_ENV`` and the job's own).
    """

    engine: Engine
    image: ImageRef
    command: Sequence[str]
    output_dir: Path
    seccomp_profile: Path
    inputs: Sequence[tuple[Path, str]] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    memory_bytes: int | None = 2 * 1024**3
    pids: int | None = 256
    cpu_seconds: int | None = None
    cpus: float | None = None
    tmp_bytes: int = 256 * 1024**2
    uid: int = 65534
    gid: int = 65534
    name: str = field(default_factory=lambda: f"warden-job-{uuid.uuid4().hex[:12]}")
    keep_id: bool = False
    """Podman only: map the calling user to the job's uid and gid (``--userns keep-id``), for rootless podman."""
    max_output_bytes: int | None = None
    """The largest file the job may write (``--ulimit fsize``); the total is watched by :class:`ContainerSandbox`."""
    env_file: Path | None = None
    """Where the job's own variables were written for ``--env-file``; None: ``--env NAME`` (a dry run)."""
    gpus: Sequence[str] = ()
    """The leased devices' names (``0``, ``GPU-…``, ``MIG-…``)."""
    cdi_names: frozenset[str] | None = None
    """The device names of the host's ``nvidia.com/gpu`` CDI spec; None: there is none (:func:`gpu_run_args`)."""

    def __post_init__(self) -> None:
        if not self.command:
            raise InvalidArgument("the job needs a command")
        if self.uid <= 0 or self.gid <= 0:
            raise InvalidArgument("the job must run as an unprivileged uid and gid, not 0")
        for name, limit in (("memory", self.memory_bytes), ("pids", self.pids), ("cpu seconds", self.cpu_seconds)):
            if limit is not None and limit <= 0:
                raise InvalidArgument(f"the {name} limit must be positive")
        if self.cpus is not None and self.cpus <= 0:
            raise InvalidArgument("--cpus must be positive")
        if self.max_output_bytes is not None and self.max_output_bytes <= 0:
            raise InvalidArgument("the output limit must be positive")
        check_gpu_env(self.env)
        for key, value in self.env.items():
            if "\n" in value or "\r" in value:
                raise InvalidArgument(f"environment variable {key}: a container env file cannot hold a line break")
        for host, _ in (*self.inputs, (self.output_dir, "output")):
            if any(character in str(host) for character in ":,\0"):
                raise InvalidArgument(f"the host path {host} cannot be mounted: it holds ':' or ','")

    @classmethod
    def from_spec(cls, spec: SandboxSpec, engine: Engine, image: ImageRef, profile: Path, **extra: Any) -> ContainerJob:
        """The container equivalent of a bwrap ``SandboxSpec`` (the runtime paths do not apply: the image has them)."""
        return cls(
            engine=engine,
            image=image,
            command=list(spec.command),
            output_dir=spec.output_dir,
            seccomp_profile=profile,
            inputs=list(spec.inputs),
            env=dict(spec.env),
            memory_bytes=spec.memory_bytes,
            pids=spec.pids,
            cpu_seconds=spec.cpu_seconds,
            tmp_bytes=spec.tmp_bytes,
            uid=spec.uid,
            gid=spec.gid,
            keep_id=rootless_podman(engine),
            max_output_bytes=spec.output_bytes,
            gpus=[device.id for device in spec.gpus],
            **extra,
        )


def rootless_podman(engine: Engine) -> bool:
    """Whether ``engine`` is podman run by a user other than root (then the caller is mapped to the job's uid)."""
    return engine is Engine.PODMAN and os.geteuid() != 0


def prepare_output_dir(job: ContainerJob) -> None:
    """Let the job's uid write the output directory: hand it over as root, open it to all for non-root docker."""
    if job.keep_id and job.engine is Engine.PODMAN:
        return
    if os.geteuid() == 0:
        os.chown(job.output_dir, job.uid, job.gid)
    else:
        job.output_dir.chmod(0o777)  # the job's uid is no one on the host; see the module docstring


def gpu_run_args(engine: Engine, devices: Sequence[str], cdi_names: frozenset[str] | None) -> list[str]:
    """The ``run`` options giving a container exactly ``devices``: CDI where the host has a spec, else docker's
    ``--gpus``; podman without CDI, or a device the spec does not name, is refused (``gpu_unavailable``)."""
    if not devices:
        return []
    regenerate = "generate the spec with: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    if cdi_names is not None:
        missing = [device for device in devices if device not in cdi_names]
        if missing:
            raise GpuUnavailable(
                GpuUnavailableReason.NOT_IN_CDI,
                f"the {CDI_KIND} CDI spec names no device {', '.join(missing)} (it names "
                f"{', '.join(sorted(cdi_names)) or 'none'}); {regenerate} (--device-name-strategy=uuid for UUIDs)",
            )
        return [arg for device in devices for arg in ("--device", f"{CDI_KIND}={device}")]
    if engine is Engine.PODMAN:
        where = " or ".join(str(d) for d in CDI_DIRS)
        raise GpuUnavailable(
            GpuUnavailableReason.NO_CDI,
            f"podman reaches NVIDIA GPUs only through CDI and no {CDI_KIND} spec is in {where}: {regenerate}",
        )
    listed = ",".join(devices)
    return ["--gpus", f"device={listed}" if len(devices) == 1 else f'"device={listed}"']


def build_command(job: ContainerJob, executable: str | None = None) -> list[str]:
    """The exact ``{engine} run`` argv for ``job`` (``executable`` defaults to the engine's name)."""
    argv = [executable or job.engine.value, "run", "--rm", "--name", job.name, "--network", "none"]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    argv += ["--security-opt", f"seccomp={Path(job.seccomp_profile).absolute()}", "--read-only"]
    argv += ["--tmpfs", f"/tmp:rw,noexec,nosuid,nodev,size={job.tmp_bytes}"]  # noqa: S108 - the container's own
    argv += ["--user", f"{job.uid}:{job.gid}"]
    if job.keep_id and job.engine is Engine.PODMAN:
        argv += ["--userns", f"keep-id:uid={job.uid},gid={job.gid}"]
    if job.memory_bytes is not None:
        argv += ["--memory", str(job.memory_bytes), "--memory-swap", str(job.memory_bytes)]
    if job.pids is not None:
        argv += ["--pids-limit", str(job.pids)]
    if job.cpus is not None:
        argv += ["--cpus", f"{job.cpus:g}"]
    if job.cpu_seconds is not None:
        argv += ["--ulimit", f"cpu={job.cpu_seconds}:{job.cpu_seconds}"]
    if job.max_output_bytes is not None:
        argv += ["--ulimit", f"fsize={job.max_output_bytes}:{job.max_output_bytes}"]
    argv += gpu_run_args(job.engine, job.gpus, job.cdi_names)
    for host, name in job.inputs:
        argv += ["--volume", f"{Path(host).absolute()}:/input/{name}:ro"]
    argv += ["--volume", f"{Path(job.output_dir).absolute()}:/output:rw", "--workdir", "/output"]
    for key, value in DEFAULT_ENV.items():
        if key not in job.env:
            argv += ["--env", f"{key}={value}"]
    if not job.gpus or job.cdi_names is not None:  # with --gpus, the daemon sets it to the leased devices
        argv += ["--env", "NVIDIA_VISIBLE_DEVICES=void"]
    if job.env_file is not None and job.env:
        argv += ["--env-file", str(Path(job.env_file).absolute())]
    elif job.env:
        for key in job.env:
            argv += ["--env", key]
    return [*argv, job.image.pinned, *job.command]


def quoted(argv: Sequence[str]) -> str:
    """The argv as one shell-quoted line: what ``--dry-run`` prints and ``policy check --docker-run`` reads."""
    return shlex.join(argv)


class ContainerSandbox:
    """Runs a ``SandboxSpec`` in a podman or docker container built by :func:`build_command`.

    ``seccomp_dir`` is where the seccomp profile is written (Warden's data directory); ``executable`` overrides
    the engine found on PATH; an image that ``allowlist`` (non-empty) does not allow raises ``ImageRefused``;
    ``cdi_dirs`` are where a job with GPUs looks for the ``nvidia.com/gpu`` CDI spec.
    """

    def __init__(self, engine: Engine, image: ImageRef, seccomp_dir: Path, *, cpus: float | None = None,
                 executable: str | None = None, allowlist: Sequence[str] = (),
                 cdi_dirs: Sequence[Path] = CDI_DIRS) -> None:  # fmt: skip
        check_allowed(image, allowlist)
        self.engine = engine
        self.image = image
        self._seccomp_dir = seccomp_dir
        self._cpus = cpus
        self._executable = executable or shutil.which(engine.value)
        self._cdi_dirs = tuple(cdi_dirs)

    def unavailable_reason(self) -> str | None:
        """None when the engine is on PATH and answers ``{engine} info``; otherwise a sentence saying why not."""
        if self._executable is None:
            return f"{self.engine.value} not found on PATH: install it, or use --dry-run to print the command"
        return _probe(self._executable)

    def available(self) -> bool:
        """Whether the engine's executable is present."""
        return self.unavailable_reason() is None

    def check_gpus(self, devices: Sequence[GpuDevice]) -> None:
        """Refuse (``gpu_unavailable``) devices this engine cannot be given here, before anything is admitted."""
        if devices:
            gpu_run_args(self.engine, [d.id for d in devices], cdi_gpu_names(self._cdi_dirs))

    def job(self, spec: SandboxSpec, env_file: Path | None = None) -> ContainerJob:
        """The container job for ``spec``, with the seccomp profile written."""
        profile = write_seccomp_profile(self._seccomp_dir)
        cdi = cdi_gpu_names(self._cdi_dirs) if spec.gpus else None
        return ContainerJob.from_spec(
            spec, self.engine, self.image, profile, cpus=self._cpus, env_file=env_file, cdi_names=cdi
        )

    def run(self, spec: SandboxSpec, stdout_sink: Sink, stderr_sink: Sink) -> SandboxResult:
        """Run the job to its end (or its timeout or a limit), streaming its output to the sinks."""
        if self._executable is None:
            raise SandboxUnavailable(str(self.unavailable_reason()))
        private = Path(tempfile.mkdtemp(prefix="warden-env-"))  # 0700
        try:
            job = self.job(spec, _write_env_file(private / "job.env", spec.env))
            prepare_output_dir(job)
            return self._run(job, spec, build_command(job, self._executable), (stdout_sink, stderr_sink))
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def _run(self, job: ContainerJob, spec: SandboxSpec, argv: list[str], sinks: tuple[Sink, Sink]) -> SandboxResult:
        started = datetime.now(UTC)
        process = subprocess.Popen(  # noqa: S603 - argv built from a validated spec
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        budget = LogBudget(spec.log_bytes)
        pumps = [
            threading.Thread(target=_pump, args=(stream, sink, budget), daemon=True)
            for stream, sink in ((process.stdout, sinks[0]), (process.stderr, sinks[1]))
        ]
        for pump in pumps:
            pump.start()
        timed_out, exceeded = self._watch(process, job, spec, budget)
        for pump in pumps:
            pump.join(timeout=_KILL_GRACE_SECONDS)
        exceeded = exceeded or ("log_bytes" if budget.exceeded else None) or _output_exceeded(job.output_dir, spec)
        returncode = process.returncode
        signal_number = returncode - 128 if returncode > 128 else None  # the engines report signal N as 128 + N
        return SandboxResult(
            argv=tuple(argv),
            exit_code=returncode if returncode >= 0 else None,
            signal=signal_number if returncode >= 0 else -returncode,
            timed_out=timed_out,
            oom_killed=returncode == _SIGKILLED and not timed_out and exceeded is None,  # the OOM killer's SIGKILL
            started=started,
            ended=datetime.now(UTC),
            limits=MappingProxyType({"memory": job.engine.value, "pids": job.engine.value, "cpu": job.engine.value}),
            limit_exceeded=exceeded,
        )

    def _watch(
        self, process: subprocess.Popen[bytes], job: ContainerJob, spec: SandboxSpec, budget: LogBudget
    ) -> tuple[bool, str | None]:
        """Wait for the container, stopping it at the deadline or past a limit; whether it timed out, which limit."""
        deadline = None if spec.timeout_seconds is None else time.monotonic() + spec.timeout_seconds
        timed_out, exceeded = False, None
        while process.poll() is None:
            exceeded = "log_bytes" if budget.exceeded else _output_exceeded(job.output_dir, spec)
            if exceeded is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            wait = _WATCH_SECONDS if deadline is None else min(_WATCH_SECONDS, max(deadline - time.monotonic(), 0))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        if process.poll() is None:
            subprocess.run([str(self._executable), "kill", job.name], capture_output=True, check=False, timeout=30)  # noqa: S603
            try:
                process.wait(timeout=_KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return timed_out, exceeded


def _write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """The job's own variables, one ``KEY=VALUE`` a line, in a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in env.items())
    return path


def _output_exceeded(output_dir: Path, spec: SandboxSpec) -> str | None:
    allocated, entries = tree_usage(output_dir)
    if allocated > spec.output_bytes:
        return "output_bytes"
    return "output_files" if entries > spec.output_entries else None


@functools.cache
def _probe(executable: str) -> str | None:
    """None when ``executable info`` succeeds (a docker client with no daemon fails it); otherwise why not."""
    try:
        done = subprocess.run([executable, "info"], capture_output=True, timeout=30, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{executable} could not run: {exc}"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"]
        return f"{executable} info failed: {lines[-1]}"
    return None


def _pump(stream: Any, sink: Sink, budget: LogBudget) -> None:
    with stream:
        while chunk := stream.read1(65536):
            if kept := budget.take(chunk):
                sink(kept)
