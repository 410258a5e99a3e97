"""``warden job run``: a training job under an approval, in the hardened sandbox, streamed and audited.

The job's stdout and stderr are streamed as it writes them (to stderr with ``--json``, so that stdout holds only
the report) and kept in ``OUTPUT.job/`` with the manifest. What reaches the terminal is escaped (control
characters but newline and tab, and bidi overrides, shown as ``\x1b`` and the like: a job's output cannot drive
the operator's terminal); the stored logs keep the raw bytes. ``--max-output`` and ``--max-log`` (defaults
``WARDEN_JOB_MAX_OUTPUT_BYTES``, ``WARDEN_JOB_MAX_LOG_BYTES``) bound what the job may write; a job stopped at
either ends ``limit_exceeded``. The command exits with the job's own status, 124 after a timeout, 122 after a
limit; a refusal (approval, inputs, output directory, sandbox) is one error line and exit 1 or 2.

``--backend podman|docker`` runs the same job in a container (``--image``, pinned by digest, required) and
``--backend kubernetes`` issues a Job manifest instead of running anything (to ``--manifest-out`` or stdout): the
approval's run is taken when the manifest is issued, and the inputs are PersistentVolumeClaims (``--claim``,
``--output-claim``). ``--dry-run`` prints the container command (shell-quoted) or the manifest and exits 0
without admission: it neither checks nor spends the approval, writes no output and audits nothing. Images must
be on ``WARDEN_JOB_IMAGE_ALLOWLIST`` when that is set, dry run or not.

``--gpus N`` gives the job N GPUs of ``WARDEN_JOB_GPUS``, its own for the run: the lease is taken before admission
and refused at once when the machine lends fewer (``gpus_unsatisfiable``) or the others hold them now
(``gpus_busy``: try again when a job ends), so neither spends a run; leases are ``flock``s under
``DATA_DIR/gpu-leases``, shared by every ``warden job run`` of the machine. A container dry run shows the first N
devices (a run gets whichever are free). For ``kubernetes`` the cluster's device plugin picks the devices: the
Job asks for N of ``--gpu-resource`` (``nvidia.com/gpu``, or a MIG resource such as ``nvidia.com/mig-1g.5gb``).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer

from warden.cli.common import emit_json, opened, os_user
from warden.errors import InvalidArgument
from warden.jobs.admission import parse_input
from warden.jobs.containers import ContainerSandbox, Engine, quoted
from warden.jobs.gpu_driver import gpu_pool
from warden.jobs.gpus import GpuPool
from warden.jobs.images import ImageRef, check_allowed, parse_image
from warden.jobs.kubernetes import GPU_RESOURCE, manifest_yaml
from warden.jobs.runner import (
    JobReport,
    JobRequest,
    KubernetesTarget,
    check_output,
    container_dry_run,
    issue_manifest,
    manifest_dry_run,
    run_job,
)
from warden.jobs.streams import TerminalEscaper
from warden.services import Services

job_app = typer.Typer(help="Run training jobs under an approval, in a sandbox without network or privileges.")

_SIZE: Final = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?")
_SIZE_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION: Final = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*([smhd]?)")
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Backend(StrEnum):
    """Where the job runs; ``bwrap`` (Debian's bubblewrap) needs no container engine."""

    BWRAP = "bwrap"
    PODMAN = "podman"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


def parse_size(option: str, text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB`` or a byte count, as bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"{option}: {text!r} is not a size such as 2G, 512M or 1073741824")
    value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if value <= 0:
        raise InvalidArgument(f"{option}: the size must be positive")
    return value


def parse_duration(option: str, text: str) -> float:
    """``1h``, ``30m``, ``90s``, ``2d`` or seconds, as seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"{option}: {text!r} is not a duration such as 1h, 30m or 90s")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if value <= 0:
        raise InvalidArgument(f"{option}: the duration must be positive")
    return value


def parse_env(items: list[str]) -> dict[str, str]:
    """``K=V`` pairs; a key given twice is a mistake, not a silent override."""
    env: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise InvalidArgument(f"--env {item!r}: use K=V")
        if key in env:
            raise InvalidArgument(f"--env {key} is given twice")
        env[key] = value
    return env


def parse_claims(items: list[str]) -> dict[str, str]:
    """``NAME=CLAIM`` pairs: the PersistentVolumeClaim holding the input named NAME."""
    claims: dict[str, str] = {}
    for item in items:
        name, equals, claim = item.partition("=")
        if not equals or not name or not claim:
            raise InvalidArgument(f"--claim {item!r}: use NAME=CLAIM")
        if name in claims:
            raise InvalidArgument(f"--claim {name} is given twice")
        claims[name] = claim
    return claims


def _check_options(
    backend: Backend, image: str | None, dry_run: bool, output: Path | None, gpu_resource: str | None
) -> None:
    """Refuse options that do not fit the backend, before anything is opened."""
    if gpu_resource is not None and backend is not Backend.KUBERNETES:
        raise InvalidArgument("--gpu-resource applies to the kubernetes backend")
    if backend is Backend.BWRAP:
        for given, option in ((image, "--image"), (dry_run or None, "--dry-run")):
            if given is not None:
                raise InvalidArgument(f"{option} applies to the podman, docker and kubernetes backends")
    elif image is None:
        raise InvalidArgument(f"the {backend.value} backend needs --image NAME@sha256:<digest>")
    if backend is not Backend.KUBERNETES and output is None:
        raise InvalidArgument(f"the {backend.value} backend needs --output DIR")


def _pool(services: Services, gpus: int) -> GpuPool | None:
    """The machine's GPU pool (``WARDEN_JOB_GPUS``, leases under ``DATA_DIR/gpu-leases``), for a job asking GPUs."""
    if not gpus:
        return None
    settings = services.settings
    pool = gpu_pool(settings.job_gpus, lock_dir=settings.data_dir / "gpu-leases")
    pool.check(gpus)
    return pool


def _image(services: Services, reference: str) -> ImageRef:
    image = parse_image(reference)
    check_allowed(image, services.settings.job_image_allowlist)
    return image


class _Echo:
    """Shows one of the job's streams on the terminal, escaped (see :class:`~warden.jobs.streams.TerminalEscaper`)."""

    def __init__(self, to_stderr: bool) -> None:
        self._target = sys.stderr if to_stderr else sys.stdout
        self._escaper = TerminalEscaper()

    def __call__(self, chunk: bytes) -> None:
        self._write(self._escaper.feed(chunk))

    def close(self) -> None:
        """Show what the stream left half-written (an incomplete UTF-8 sequence)."""
        self._write(self._escaper.flush())

    def _write(self, text: str) -> None:
        if text:
            self._target.buffer.write(text.encode("utf-8", "backslashreplace"))
            self._target.flush()


@job_app.command("run")
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The job's command, after --.", show_default=False)],
    approval: Annotated[str, typer.Option("--approval", help="The approval the job runs under.", show_default=False)],
    inputs: Annotated[
        list[str], typer.Option("--input", metavar="PATH[:NAME]", help="Approved input, read-only at /input/NAME.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", help="Empty directory, the job's only writable place (not kubernetes).")
    ] = None,
    backend: Annotated[Backend, typer.Option(help="Sandbox backend.")] = Backend.BWRAP,
    image: Annotated[
        str | None, typer.Option(metavar="NAME@sha256:DIGEST", help="Image (podman, docker, kubernetes).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command or manifest; no admission, nothing run.")
    ] = False,
    manifest_out: Annotated[
        Path | None, typer.Option("--manifest-out", help="Write the kubernetes manifest here (default stdout).")
    ] = None,
    cpus: Annotated[float | None, typer.Option(min=0.001, help="CPU share (podman, docker; kubernetes: 1).")] = None,
    claims: Annotated[
        list[str] | None,
        typer.Option("--claim", metavar="NAME=CLAIM", help="Kubernetes: the claim holding input NAME."),
    ] = None,
    output_claim: Annotated[str, typer.Option(help="Kubernetes: the claim mounted at /output.")] = "warden-output",
    namespace: Annotated[str | None, typer.Option(help="Kubernetes: the Job's namespace.")] = None,
    memory: Annotated[str, typer.Option(help="Memory limit (2G, 512M).")] = "2G",
    pids: Annotated[int, typer.Option(min=1, help="Most processes and threads at once.")] = 256,
    cpu_seconds: Annotated[int | None, typer.Option(min=1, help="CPU time limit in seconds.")] = None,
    timeout: Annotated[str, typer.Option(help="Wall-clock limit (1h, 30m, 90s).")] = "1h",
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="K=V", help="Environment variable (repeat).")
    ] = None,
    max_output: Annotated[
        str | None,
        typer.Option("--max-output", help="Most bytes written to /output (512M; WARDEN_JOB_MAX_OUTPUT_BYTES)."),
    ] = None,
    max_log: Annotated[
        str | None, typer.Option("--max-log", help="Most bytes of stdout and stderr (16M; WARDEN_JOB_MAX_LOG_BYTES).")
    ] = None,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs for the job alone (of WARDEN_JOB_GPUS).")] = 0,
    gpu_resource: Annotated[
        str | None,
        typer.Option(help="Kubernetes: the device plugin's resource (nvidia.com/gpu; nvidia.com/mig-1g.5gb …)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON on stdout.")] = False,
) -> None:
    """Run CMD under an approval: inputs read-only, no network, no privileges, limits, everything audited."""
    with opened(ctx) as services:
        _check_options(backend, image, dry_run, output, gpu_resource)
        settings = services.settings
        request = JobRequest(
            approval_id=approval,
            inputs=[parse_input(item) for item in inputs],
            output_dir=output or Path("/output"),
            command=command,
            env=parse_env(env or []),
            memory_bytes=parse_size("--memory", memory),
            pids=pids,
            cpu_seconds=cpu_seconds,
            timeout_seconds=parse_duration("--timeout", timeout),
            max_output_bytes=parse_size("--max-output", max_output) if max_output else settings.job_max_output_bytes,
            max_log_bytes=parse_size("--max-log", max_log) if max_log else settings.job_max_log_bytes,
            gpus=gpus,
        )
        ref = _image(services, image) if image is not None else None
        if backend is Backend.KUBERNETES and ref is not None:
            target = KubernetesTarget(
                name=f"warden-job-{secrets.token_hex(6)}",
                output_claim=output_claim,
                claims=parse_claims(claims or []),
                namespace=namespace,
                cpus=cpus or 1.0,
                gpu_resource=gpu_resource or GPU_RESOURCE,
            )
            if dry_run:
                manifest = manifest_dry_run(request, ref, target)
            else:
                manifest = issue_manifest(
                    request, ref, target, approvals=services.approvals, audit=services.audit, actor=os_user()
                )
            _emit_manifest(manifest, manifest_out, as_json=as_json, issued=not dry_run)
            return
        pool = _pool(services, gpus)
        if ref is not None and dry_run:
            check_output(request.output_dir)
            shown = pool.devices[:gpus] if pool is not None else ()
            argv = container_dry_run(
                request, Engine(backend.value), ref, services.settings.data_dir / "seccomp", cpus=cpus, gpus=shown
            )
            if as_json:
                answer = {"backend": backend.value, "image": ref.pinned, "argv": argv, "command": quoted(argv)}
                emit_json({**answer, "gpus": [device.id for device in shown]})
            else:
                typer.echo(quoted(argv))
            return
        sandbox = None
        if ref is not None:
            sandbox = ContainerSandbox(Engine(backend.value), ref, services.settings.data_dir / "seccomp", cpus=cpus)
        echoes = _Echo(as_json), _Echo(True)
        try:
            report: JobReport = run_job(
                request,
                approvals=services.approvals,
                audit=services.audit,
                actor=os_user(),
                sandbox=sandbox,
                stdout=echoes[0],
                stderr=echoes[1],
                gpu_pool=pool,
            )
        finally:
            for echo in echoes:
                echo.close()
    if as_json:
        emit_json({**report.manifest(), "record": str(report.record_dir)})
    else:
        withheld = sum(1 for o in report.outputs if not o.released)
        ended = f"warden: job {report.exit_description()}; {len(report.outputs) - withheld} output files"
        if withheld:
            ended += f", {withheld} withheld (links or special files, listed in the manifest)"
        if report.gpus:
            ended += f"; GPUs {', '.join(report.gpus)}"
        typer.echo(f"{ended}; record in {report.record_dir}", err=True)
    if report.exit_status:
        raise typer.Exit(report.exit_status)


def _emit_manifest(manifest: dict[str, object], path: Path | None, *, as_json: bool, issued: bool) -> None:
    """Write the manifest to ``path`` (YAML, or JSON with ``--json``) or print it on stdout."""
    text = json.dumps(manifest, indent=2) + "\n" if as_json else manifest_yaml(manifest)
    if path is None:
        typer.echo(text, nl=False)
    else:
        path.write_text(text, encoding="utf-8")
    if issued:
        where = str(path) if path is not None else "-"
        typer.echo(f"warden: job manifest issued; apply it with: kubectl apply -f {where}", err=True)
