"""``warden job run``: a training job under an approval, in the hardened sandbox, streamed and audited.

The job's stdout and stderr are streamed as it writes them (to stderr with ``--json``, so that stdout holds only
the report) and kept in ``OUTPUT.job/`` with the manifest. The command exits with the job's own status, 124
after a timeout; a refusal (approval, inputs, output directory, sandbox) is one error line and exit 1 or 2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer

from warden.cli.common import emit_json, opened, os_user
from warden.errors import InvalidArgument
from warden.jobs.admission import parse_input
from warden.jobs.runner import JobReport, JobRequest, run_job

job_app = typer.Typer(help="Run training jobs under an approval, in a sandbox without network or privileges.")

_SIZE: Final = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?")
_SIZE_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION: Final = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*([smhd]?)")
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Backend(StrEnum):
    """Where the job runs; ``bwrap`` (Debian's bubblewrap) needs no container engine."""

    BWRAP = "bwrap"


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


def _stream(to_stderr: bool) -> Callable[[bytes], None]:
    target = sys.stderr.buffer if to_stderr else sys.stdout.buffer

    def write(chunk: bytes) -> None:
        target.write(chunk)
        target.flush()

    return write


@job_app.command("run")
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The job's command, after --.", show_default=False)],
    approval: Annotated[str, typer.Option("--approval", help="The approval the job runs under.", show_default=False)],
    inputs: Annotated[
        list[str], typer.Option("--input", metavar="PATH[:NAME]", help="Approved input, read-only at /input/NAME.")
    ],
    output: Annotated[Path, typer.Option("--output", help="Empty directory, the job's only writable place.")],
    backend: Annotated[Backend, typer.Option(help="Sandbox backend.")] = Backend.BWRAP,
    memory: Annotated[str, typer.Option(help="Memory limit (2G, 512M).")] = "2G",
    pids: Annotated[int, typer.Option(min=1, help="Most processes and threads at once.")] = 256,
    cpu_seconds: Annotated[int | None, typer.Option(min=1, help="CPU time limit in seconds.")] = None,
    timeout: Annotated[str, typer.Option(help="Wall-clock limit (1h, 30m, 90s).")] = "1h",
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="K=V", help="Environment variable (repeat).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON on stdout.")] = False,
) -> None:
    """Run CMD under an approval: inputs read-only, no network, no privileges, limits, everything audited."""
    del backend  # one backend so far; the option names it so that scripts stay valid as others arrive
    with opened(ctx) as services:
        request = JobRequest(
            approval_id=approval,
            inputs=[parse_input(item) for item in inputs],
            output_dir=output,
            command=command,
            env=parse_env(env or []),
            memory_bytes=parse_size("--memory", memory),
            pids=pids,
            cpu_seconds=cpu_seconds,
            timeout_seconds=parse_duration("--timeout", timeout),
        )
        report: JobReport = run_job(
            request,
            approvals=services.approvals,
            audit=services.audit,
            actor=os_user(),
            stdout=_stream(as_json),
            stderr=_stream(True),
        )
    if as_json:
        emit_json({**report.manifest(), "record": str(report.record_dir)})
    else:
        ended = f"warden: job {report.exit_description()}; {len(report.outputs)} output files"
        typer.echo(f"{ended}; record in {report.record_dir}", err=True)
    if report.exit_status:
        raise typer.Exit(report.exit_status)
