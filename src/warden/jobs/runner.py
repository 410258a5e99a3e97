"""Run one training job end to end: admit it, audit its start, run it in the sandbox, hash what it wrote, audit its end.

The output directory is the controlled area: it must be empty (or not exist yet), and it receives what the job
wrote to ``/output`` (bwrap copies it out of the sandbox's bounded tmpfs after the run; the container backends
bind it). Only regular files and directories are released: links, FIFOs, sockets, devices and extra hard-link
names are left out and listed in the manifest with ``released: false`` (links with their target string). What
Warden itself keeps about the run (the job's stdout and stderr, and the manifest hashing every output file) goes
beside it, in ``OUTPUT.job/`` (mode 0700, files 0600), outside the job's reach, so a job cannot rewrite its own
record. The manifest names the job's environment variables, never their values.

A job stopped at its output or log limit ends with status ``limit_exceeded`` (the manifest's ``status`` and
``limit_exceeded``, the ``job.end`` audit event, and exit status 122 from :attr:`JobReport.exit_status`).

Two audit events frame the run: ``job.start`` once admission took a run (so a crash mid-job still leaves a trace)
and ``job.end`` with the exit status and the outputs' hashes. Inputs are hashed again after the run; one that
changed while it ran (after admission checked it) fails the run loudly.

The sandbox is bwrap by default, or a :class:`~warden.jobs.containers.ContainerSandbox` (podman, docker) running
the same spec in a container pinned by digest; the manifest and the audit events name the backend and the image.
The ``kubernetes`` backend runs nothing here: :func:`issue_manifest` admits the job (taking one run of the
approval, as a run does), audits ``job.manifest`` and returns the Job manifest for the cluster to run.
:func:`container_dry_run` and :func:`manifest_dry_run` build the same command or manifest without admission: a
dry run neither checks nor spends the approval, writes no output, and audits nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Final

from warden.audit import AuditEvent, AuditLog
from warden.errors import InvalidArgument, SandboxUnavailable, WardenError
from warden.jobs.admission import Admission, Input, Scan, admit
from warden.jobs.approvals import ApprovalService, content_sha256
from warden.jobs.containers import (
    ContainerJob,
    ContainerSandbox,
    Engine,
    build_command,
    rootless_podman,
    write_seccomp_profile,
)
from warden.jobs.images import ImageRef
from warden.jobs.kubernetes import KubernetesInput, KubernetesJob, build_manifest, manifest_yaml
from warden.jobs.outputs import OutputFile, hash_outputs, remove_specials, restrict_output
from warden.jobs.sandbox import BwrapSandbox, SandboxResult, SandboxSpec, Sink, check_env

__all__ = [
    "LIMIT_EXIT_STATUS",
    "InputChanged",
    "JobReport",
    "JobRequest",
    "JobStatus",
    "KubernetesTarget",
    "OutputFile",
    "check_output",
    "container_dry_run",
    "hash_outputs",
    "issue_manifest",
    "manifest_dry_run",
    "prepare_output",
    "record_dir",
    "restrict_output",
    "run_job",
]

RECORD_SUFFIX: Final = ".job"
LIMIT_EXIT_STATUS: Final = 122
"""What ``warden job run`` exits with when the job was stopped at its output or log limit."""
_AUDIT_VALUE_CHARS: Final = 1000


class JobStatus(StrEnum):
    """How a run ended, as the manifest, the ``job.end`` audit event and ``--json`` name it."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OOM_KILLED = "oom_killed"
    LIMIT_EXCEEDED = "limit_exceeded"


class InputChanged(WardenError):
    """An input's content changed between admission and the end of the run: the run proves nothing about it."""

    code = "input_changed"


@dataclass(frozen=True)
class JobRequest:
    """What to run, on what, under which approval and limits."""

    approval_id: str
    inputs: Sequence[Input]
    output_dir: Path
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    memory_bytes: int | None = 2 * 1024**3
    pids: int | None = 256
    cpu_seconds: int | None = None
    timeout_seconds: float | None = 3600.0
    extra_ro_paths: Sequence[Path] = ()
    max_output_bytes: int = 1024**3
    max_log_bytes: int | None = 64 * 1024**2


@dataclass
class JobReport:
    """What happened: the admission, the sandbox's result, the outputs, and where the record was written."""

    admission: Admission
    result: SandboxResult
    outputs: list[OutputFile]
    record_dir: Path
    actor: str
    backend: str = "bwrap"
    image: str | None = None
    env_names: Sequence[str] = ()
    max_output_bytes: int | None = None
    max_log_bytes: int | None = None

    @property
    def status(self) -> JobStatus:
        """How the run ended; a limit the job was stopped at comes first, whatever its exit status then was."""
        if self.result.limit_exceeded is not None:
            return JobStatus.LIMIT_EXCEEDED
        if self.result.timed_out:
            return JobStatus.TIMED_OUT
        if self.result.oom_killed:
            return JobStatus.OOM_KILLED
        return JobStatus.OK if self.result.exit_code == 0 else JobStatus.FAILED

    @property
    def exit_status(self) -> int:
        """The status ``warden job run`` exits with: the job's own, 124 after a timeout (as ``timeout`` does), 122
        when it was stopped at its output or log limit."""
        if self.result.limit_exceeded is not None:
            return LIMIT_EXIT_STATUS
        if self.result.timed_out:
            return 124
        return self.result.exit_code if self.result.exit_code is not None else 1

    def exit_description(self) -> str:
        """How the job ended, in a few words (``exited 0``, ``killed by signal 9``, ``timed out``)."""
        if self.result.limit_exceeded is not None:
            return f"stopped: limit_exceeded ({self.result.limit_exceeded})"
        if self.result.timed_out:
            return "timed out"
        if self.result.oom_killed:
            return "killed: out of memory"
        if self.result.signal is not None:
            return f"killed by signal {self.result.signal}"
        return f"exited {self.result.exit_code}"

    def manifest(self) -> dict[str, Any]:
        """The run's manifest: approval, purpose, inputs and outputs with their hashes, command, limits, status.

        The environment appears by name only (``env``); ``argv`` never holds a value (bwrap reads them from a
        descriptor, the container engines from a private file).
        """
        approval = self.admission.approval
        return {
            "warden_job": 1,
            "actor": self.actor,
            "approval": approval.id,
            "purpose": approval.purpose,
            "inputs": [{"name": i.name, "sha256": i.sha256} for i in self.admission.inputs],
            "not_scanned": self.admission.not_scanned,
            "backend": self.backend,
            "image": self.image,
            "argv": list(self.result.argv),
            "env": sorted(self.env_names),
            "limits": dict(self.result.limits),
            "max_output_bytes": self.max_output_bytes,
            "max_log_bytes": self.max_log_bytes,
            "status": self.status.value,
            "limit_exceeded": self.result.limit_exceeded,
            "started": self.result.started.isoformat(),
            "ended": self.result.ended.isoformat(),
            "exit_code": self.result.exit_code,
            "signal": self.result.signal,
            "timed_out": self.result.timed_out,
            "oom_killed": self.result.oom_killed,
            "landlock_abi": self.result.landlock_abi,
            "outputs": [
                {
                    "path": o.path,
                    "kind": o.kind,
                    "sha256": o.sha256,
                    "size": o.size,
                    "link_target": o.link_target,
                    "error": o.error,
                    "released": o.released,
                }
                for o in self.outputs
            ],
        }


def check_output(output_dir: Path) -> None:
    """Refuse an output that is not an empty directory (or absent), or whose record directory exists already."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise InvalidArgument(f"the output {output_dir} must be an empty directory or not exist yet")
    if record_dir(output_dir).exists():
        raise InvalidArgument(
            f"{record_dir(output_dir)} exists: it holds an earlier run's record; choose another output"
        )


def prepare_output(output_dir: Path) -> Path:
    """Create the (checked) output directory and the record directory beside it; return the record directory."""
    check_output(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = record_dir(output_dir)
    record.mkdir(mode=0o700)
    os.chmod(record, 0o700)  # exactly, whatever the umask
    return record


def record_dir(output_dir: Path) -> Path:
    """Where Warden keeps a run's logs and manifest: ``OUTPUT.job`` beside the output directory."""
    resolved = output_dir.resolve()
    return resolved.with_name(resolved.name + RECORD_SUFFIX)


def run_job(
    request: JobRequest,
    *,
    approvals: ApprovalService,
    audit: AuditLog,
    actor: str,
    sandbox: BwrapSandbox | ContainerSandbox | None = None,
    scan: Scan | None = None,
    stdout: Sink | None = None,
    stderr: Sink | None = None,
) -> JobReport:
    """Admit, run and record one job; raises ``ApprovalRefused`` (nothing run) or ``InputChanged`` (after the run)."""
    box = sandbox or BwrapSandbox()
    if not box.available():
        raise SandboxUnavailable(f"the {_backend(box)} sandbox cannot run here: {box.unavailable_reason()}")
    check_output(request.output_dir)  # before admission, so a mistake here never spends one of the approval's runs
    check_env(request.env)
    parent = request.output_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    snapshot = Path(tempfile.mkdtemp(prefix=".warden-inputs-", dir=parent))
    try:
        # The job reads private copies: what admission hashed and scanned is exactly what the job sees, whatever
        # happens to the originals meanwhile (a swap during the run and back again would otherwise go unseen).
        inputs = [Input(_snapshot(i.path, snapshot / i.name), i.name) for i in request.inputs]
        admission = admit(approvals, request.approval_id, inputs, scan=scan)
        return _run_admitted(request, admission, box, audit=audit, actor=actor, stdout=stdout, stderr=stderr)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def _snapshot(source: Path, target: Path) -> Path:
    """A private read-only copy of an input (a file, or a directory without links; admission refuses links)."""
    if source.is_symlink():
        return source  # admission refuses it, naming the input as given
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    elif source.exists():
        shutil.copy2(source, target)
    else:
        return source  # admission reports it unreadable
    return target


def _run_admitted(
    request: JobRequest,
    admission: Admission,
    box: BwrapSandbox | ContainerSandbox,
    *,
    audit: AuditLog,
    actor: str,
    stdout: Sink | None,
    stderr: Sink | None,
) -> JobReport:
    record = prepare_output(request.output_dir)
    spec = SandboxSpec(
        command=list(request.command),
        output_dir=request.output_dir,
        inputs=[(i.path, i.name) for i in admission.inputs],
        env=dict(request.env),
        memory_bytes=request.memory_bytes,
        pids=request.pids,
        cpu_seconds=request.cpu_seconds,
        timeout_seconds=request.timeout_seconds,
        extra_ro_paths=list(request.extra_ro_paths),
        output_bytes=request.max_output_bytes,
        log_bytes=request.max_log_bytes,
    )
    backend, image = _backend(box), _image(box)
    started = {"command": _json(spec.command), "limits": _json(_limits(request)), "backend": backend, "image": image}
    _record(audit, "job.start", admission, actor, {**started, "env": ",".join(sorted(request.env)) or None})
    try:
        with _private(record / "stdout.log") as out_log, _private(record / "stderr.log") as err_log:
            result = box.run(spec, _tee(out_log.write, stdout), _tee(err_log.write, stderr))
    except BaseException as exc:  # the run never finished: still close its record
        _record(audit, "job.end", admission, actor, {"error": type(exc).__name__, "backend": backend})
        raise
    withheld = [w.as_output() for w in (*result.withheld, *remove_specials(request.output_dir))]
    restrict_output(request.output_dir)
    outputs = sorted(hash_outputs(request.output_dir) + withheld, key=lambda o: o.path)
    report = JobReport(
        admission, result, outputs, record, actor, backend, image, sorted(request.env), spec.output_bytes,
        spec.log_bytes,
    )  # fmt: skip
    with _private(record / "manifest.json") as handle:
        handle.write((json.dumps(report.manifest(), indent=2) + "\n").encode())
    changed = [i.name for i in admission.inputs if content_sha256(i.path) != i.sha256]
    outputs_sha256 = hashlib.sha256((record / "manifest.json").read_bytes()).hexdigest()
    _record(
        audit,
        "job.end",
        admission,
        actor,
        {
            "exit_code": result.exit_code,
            "signal": result.signal,
            "timed_out": int(result.timed_out),
            "oom_killed": int(result.oom_killed),
            "status": report.status.value,
            "limit_exceeded": result.limit_exceeded,
            "withheld_outputs": len(withheld) or None,
            "started": result.started.isoformat(),
            "ended": result.ended.isoformat(),
            "outputs": len(report.outputs),
            "unhashed_outputs": sum(1 for o in report.outputs if o.error) or None,
            "manifest_sha256": outputs_sha256,
            "inputs_changed": ",".join(changed) or None,
            "backend": backend,
        },
    )
    if changed:
        raise InputChanged(f"input {', '.join(changed)} changed while the job ran; its outputs prove nothing about it")
    return report


def _private(path: Path) -> BinaryIO:
    """A new file only its owner can read (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _backend(box: BwrapSandbox | ContainerSandbox) -> str:
    return box.engine.value if isinstance(box, ContainerSandbox) else "bwrap"


def _image(box: BwrapSandbox | ContainerSandbox) -> str | None:
    return box.image.pinned if isinstance(box, ContainerSandbox) else None


def container_dry_run(
    request: JobRequest, engine: Engine, image: ImageRef, seccomp_dir: Path, *, cpus: float | None = None
) -> list[str]:
    """The ``{engine} run`` argv a run of ``request`` would use; writes only the seccomp profile, admits nothing."""
    job = ContainerJob(
        engine=engine,
        image=image,
        command=list(request.command),
        output_dir=request.output_dir.absolute(),
        seccomp_profile=write_seccomp_profile(seccomp_dir),
        inputs=[(i.path.absolute(), i.name) for i in request.inputs],
        env=dict(request.env),
        memory_bytes=request.memory_bytes,
        pids=request.pids,
        cpu_seconds=request.cpu_seconds,
        cpus=cpus,
        keep_id=rootless_podman(engine),
        max_output_bytes=request.max_output_bytes,
    )
    return build_command(job)


@dataclass(frozen=True)
class KubernetesTarget:
    """Where a Kubernetes job runs: its name and namespace, the claims holding its data, its CPU share, its TTL.

    ``claims`` maps an input's name to the PersistentVolumeClaim holding it (default: a claim of the same name).
    """

    name: str
    output_claim: str
    claims: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    cpus: float = 1.0
    ttl_seconds: int = 86400


def _kubernetes_job(
    request: JobRequest,
    image: ImageRef,
    target: KubernetesTarget,
    *,
    approval_id: str,
    purpose: str,
    hashes: list[tuple[str, str]],
) -> KubernetesJob:
    unknown = sorted(set(target.claims) - {name for name, _ in hashes})
    if unknown:
        raise InvalidArgument(f"--claim names no input: {', '.join(unknown)}")
    return KubernetesJob(
        name=target.name,
        image=image,
        command=list(request.command),
        approval_id=approval_id,
        purpose=purpose,
        output_claim=target.output_claim,
        inputs=[KubernetesInput(name, digest, target.claims.get(name, name)) for name, digest in hashes],
        env=dict(request.env),
        namespace=target.namespace,
        memory_bytes=request.memory_bytes or 2 * 1024**3,
        log_bytes=request.max_log_bytes or 64 * 1024**2,
        max_output_bytes=request.max_output_bytes,
        cpus=target.cpus,
        timeout_seconds=request.timeout_seconds or 3600.0,
        ttl_seconds=target.ttl_seconds,
    )


def manifest_dry_run(request: JobRequest, image: ImageRef, target: KubernetesTarget) -> dict[str, Any]:
    """The Job manifest a run of ``request`` would issue, with the inputs' hashes; neither checks nor admits."""
    hashes = [(i.name, content_sha256(i.path)) for i in request.inputs]
    purpose = "(dry run: approval not checked)"
    job = _kubernetes_job(request, image, target, approval_id=request.approval_id, purpose=purpose, hashes=hashes)
    return build_manifest(job)


def issue_manifest(
    request: JobRequest,
    image: ImageRef,
    target: KubernetesTarget,
    *,
    approvals: ApprovalService,
    audit: AuditLog,
    actor: str,
    scan: Scan | None = None,
) -> dict[str, Any]:
    """Admit ``request`` (taking one run of its approval), audit ``job.manifest`` and return the Job manifest.

    Warden does not apply the manifest: the caller hands it to the cluster (``kubectl apply -f``).
    """
    admission = admit(approvals, request.approval_id, list(request.inputs), scan=scan)
    hashes = [(i.name, i.sha256) for i in admission.inputs]
    job = _kubernetes_job(
        request, image, target, approval_id=admission.approval.id, purpose=admission.purpose, hashes=hashes
    )
    manifest = build_manifest(job)
    digest = hashlib.sha256(manifest_yaml(manifest).encode()).hexdigest()
    details = {"backend": "kubernetes", "image": image.pinned, "job": target.name, "manifest_sha256": digest}
    _record(audit, "job.manifest", admission, actor, {**details, "command": _json(list(request.command))})
    return manifest


def _limits(request: JobRequest) -> dict[str, Any]:
    return {
        "memory_bytes": request.memory_bytes,
        "pids": request.pids,
        "cpu_seconds": request.cpu_seconds,
        "timeout_seconds": request.timeout_seconds,
        "max_output_bytes": request.max_output_bytes,
        "max_log_bytes": request.max_log_bytes,
    }


def _json(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= _AUDIT_VALUE_CHARS else text[: _AUDIT_VALUE_CHARS - 1] + "…"


def _record(audit: AuditLog, action: str, admission: Admission, actor: str, details: dict[str, Any]) -> None:
    inputs = ",".join(f"{i.name}={i.sha256}" for i in admission.inputs)
    event = AuditEvent.admin(
        action,
        admission.approval.id,
        authenticator="cli",
        details={
            "os_user": actor,
            "purpose": admission.purpose[:_AUDIT_VALUE_CHARS],
            "inputs": inputs[:_AUDIT_VALUE_CHARS],
            "backend": "bwrap",  # overridden by the caller's details for other backends
            **details,
        },
    )
    audit.record(event).result(timeout=60)


def _tee(first: Callable[[bytes], object], second: Sink | None) -> Sink:
    def both(chunk: bytes) -> None:
        first(chunk)
        if second is not None:
            second(chunk)

    return both
