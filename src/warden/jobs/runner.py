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
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from warden.jobs.gpu_driver import CDI_DIRS, cdi_gpu_names
from warden.jobs.gpus import GpuDevice, GpuPool, Lease
from warden.jobs.images import ImageRef
from warden.jobs.kubernetes import GPU_RESOURCE, KubernetesInput, KubernetesJob, build_manifest, manifest_yaml
from warden.jobs.outputs import OutputFile, hash_outputs, remove_specials, restrict_output
from warden.jobs.report import LIMIT_EXIT_STATUS, JobReport, JobStatus
from warden.jobs.sandbox import BwrapSandbox, SandboxSpec, Sink, check_env

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
_AUDIT_VALUE_CHARS: Final = 1000


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
    gpus: int = 0


_NO_POOL = GpuPool((), note="WARDEN_JOB_GPUS is empty: this machine lends no GPU to jobs")


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
    gpu_pool: GpuPool | None = None,
    job_id: str | None = None,
    gpu_wait: float | None = 0.0,
) -> JobReport:
    """Admit, run and record one job; raises ``ApprovalRefused`` (nothing run) or ``InputChanged`` (after the run).

    A job asking for GPUs takes a lease of ``request.gpus`` devices from ``gpu_pool`` before admission, and the
    backend checks it can give them (so a busy pool, ``gpus_busy`` after ``gpu_wait`` seconds, or a device it cannot
    reach, ``gpu_unavailable``, never spends a run); the lease is given back however the run ends.
    """
    box = sandbox or BwrapSandbox()
    if not box.available():
        raise SandboxUnavailable(f"the {_backend(box)} sandbox cannot run here: {box.unavailable_reason()}")
    check_output(request.output_dir)  # before admission, so a mistake here never spends one of the approval's runs
    check_env(request.env)
    pool = gpu_pool or _NO_POOL
    with pool.acquire(request.gpus, job_id or f"job-{secrets.token_hex(8)}", timeout=gpu_wait) as lease:
        box.check_gpus(lease.devices)  # a device this backend cannot give is refused before a run is spent
        parent = request.output_dir.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        snapshot = Path(tempfile.mkdtemp(prefix=".warden-inputs-", dir=parent))
        try:
            # The job reads private copies: what admission hashed and scanned is exactly what the job sees,
            # whatever happens to the originals meanwhile (a swap during the run and back again would go unseen).
            inputs = [Input(_snapshot(i.path, snapshot / i.name), i.name) for i in request.inputs]
            admission = admit(approvals, request.approval_id, inputs, scan=scan)
            return _run_admitted(
                request, admission, box, audit=audit, actor=actor, stdout=stdout, stderr=stderr, lease=lease
            )
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
    lease: Lease,
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
        gpus=lease.devices,
    )
    backend, image, gpus = _backend(box), _image(box), ",".join(lease.device_ids) or None
    started = {"command": _json(spec.command), "limits": _json(_limits(request)), "backend": backend, "image": image}
    _record(
        audit, "job.start", admission, actor, {**started, "env": ",".join(sorted(request.env)) or None, "gpus": gpus}
    )
    try:
        with _private(record / "stdout.log") as out_log, _private(record / "stderr.log") as err_log:
            result = box.run(spec, _tee(out_log.write, stdout), _tee(err_log.write, stderr))
    except BaseException as exc:  # the run never finished: still close its record
        _record(audit, "job.end", admission, actor, {"error": type(exc).__name__, "backend": backend, "gpus": gpus})
        raise
    withheld = [w.as_output() for w in (*result.withheld, *remove_specials(request.output_dir))]
    restrict_output(request.output_dir)
    outputs = sorted(hash_outputs(request.output_dir) + withheld, key=lambda o: o.path)
    report = JobReport(
        admission, result, outputs, record, actor, backend, image, sorted(request.env), spec.output_bytes,
        spec.log_bytes, lease.device_ids,
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
            "gpus": gpus,
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
    request: JobRequest, engine: Engine, image: ImageRef, seccomp_dir: Path, *, cpus: float | None = None,
    gpus: Sequence[GpuDevice] = (), cdi_dirs: Sequence[Path] = CDI_DIRS,
) -> list[str]:  # fmt: skip
    """The ``{engine} run`` argv a run of ``request`` would use; writes only the seccomp profile, admits nothing.

    ``gpus`` are the devices to show (a dry run leases none: a run gets whichever are free then).
    """
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
        gpus=[device.id for device in gpus],
        cdi_names=cdi_gpu_names(cdi_dirs) if gpus else None,
    )
    return build_command(job)


@dataclass(frozen=True)
class KubernetesTarget:
    """Where a Kubernetes job runs: its name and namespace, the claims holding its data, its CPU share, its TTL.

    ``claims`` maps an input's name to the PersistentVolumeClaim holding it (default: a claim of the same name);
    ``gpu_resource`` is the device plugin's resource the job's GPUs are asked as (``nvidia.com/gpu`` or a MIG one).
    """

    name: str
    output_claim: str
    claims: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    cpus: float = 1.0
    ttl_seconds: int = 86400
    gpu_resource: str = GPU_RESOURCE


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
        gpus=request.gpus,
        gpu_resource=target.gpu_resource,
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
    if request.gpus:  # the cluster's device plugin picks the devices; the record says how many and of what
        details["gpus"] = f"{request.gpus} {target.gpu_resource}"
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
        "gpus": request.gpus,
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
