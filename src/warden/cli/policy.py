"""``warden policy check``: least-privilege checks of Kubernetes manifests, compose files, Dockerfiles and
``docker run`` command lines.

Exit status: ``0`` when no finding is an error (warnings allowed), ``1`` when any is, and ``2``
when the command cannot check what it was given: a wrong command line, a file that cannot be
read (``invalid_argument``), or one that is not a manifest, compose file or Dockerfile
(``unsupported_file``). Each such failure is one line on stderr, ``warden: error: <code>: <message>``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from warden import __version__
from warden.cli.common import EXIT_FAILED, EXIT_USAGE, emit_json
from warden.errors import InvalidArgument, WardenError
from warden.policy import Profile, Severity, as_json, as_sarif, as_text, check_all

policy_app = typer.Typer(
    help="Check container and Kubernetes configuration against least-privilege rules.", no_args_is_help=True
)


class OutputFormat(StrEnum):
    """How findings are printed."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def _fail(code: str, message: str) -> NoReturn:
    typer.echo(f"warden: error: {code}: {' '.join(message.split())}", err=True)
    raise typer.Exit(EXIT_USAGE)


@policy_app.command("check")
def check(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            show_default=False, help="Kubernetes manifests (multi-document YAML), compose files and Dockerfiles."
        ),
    ] = None,
    docker_run: Annotated[
        list[str] | None,
        typer.Option("--docker-run", metavar="CMD", help="A 'docker run …' or 'podman run …' command line (repeat)."),
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.TEXT,
    profile: Annotated[
        Profile, typer.Option("--profile", help="restricted: every rule; baseline: Pod Security baseline and Warden's.")
    ] = Profile.RESTRICTED,
) -> None:
    """Check FILEs and --docker-run command lines; exit 1 when any finding is an error."""
    paths, commands = files or [], docker_run or []
    if not paths and not commands:
        _fail(InvalidArgument.code, "give at least one FILE or --docker-run command")
    try:
        findings = check_all(paths, commands, profile)
    except WardenError as exc:
        _fail(exc.code, exc.message)
    if output_format is OutputFormat.JSON:
        emit_json(as_json(findings, profile))
    elif output_format is OutputFormat.SARIF:
        typer.echo(json.dumps(as_sarif(findings, __version__), indent=2))
    else:
        typer.echo(as_text(findings))
    if any(finding.severity is Severity.ERROR for finding in findings):
        raise typer.Exit(EXIT_FAILED)
