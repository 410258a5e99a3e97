"""``warden sbom``: a CycloneDX SBOM of the running environment (and the registered models), or an offline
check of an environment or SBOM against an OSV export.

Two runs, one command: ``--out FILE`` writes the document; ``--check-vulns OSV_FILE`` matches
PyPI components against the export and lists the vulnerabilities at or above ``--severity``.
A vulnerability whose severity the export does not give (no CVSS v3/v4 vector, no
``database_specific.severity``) counts as at the threshold, whatever the threshold: the
check fails closed.

Exit status: ``0`` when the SBOM was written, or no vulnerability is at or above the
threshold; ``1`` when one is; ``2`` when the command could not do what was asked: a wrong
command line or an unreadable file (``invalid_argument``), an OSV export or SBOM that does not
parse as one (``unsupported_file``), a data directory or database that cannot be used, or an
output file that cannot be written (``io_error``, ``database_error``). Each such failure is one
line on stderr, ``warden: error: <code>: <message>``.
"""

from __future__ import annotations

from enum import StrEnum
from importlib.metadata import distributions
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from warden.cli.common import EXIT_FAILED, EXIT_USAGE, data_dir, describe, emit_json
from warden.errors import InvalidArgument, WardenError
from warden.sbom import (
    SPEC_VERSION,
    ModelRecord,
    OsvDatabase,
    SbomFormat,
    Severity,
    VulnerabilityMatch,
    add_models,
    environment_bom,
    environment_packages,
    registered_models,
    sbom_packages,
    serialize,
)
from warden.services import open_services
from warden.settings import load_settings


class Threshold(StrEnum):
    """The least severity that fails ``--check-vulns``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def sbom(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write a CycloneDX SBOM of this environment to FILE.")
    ] = None,
    models: Annotated[
        bool, typer.Option("--models", help="With --out: add every tenant's registered models, with their sha256.")
    ] = False,
    output_format: Annotated[SbomFormat, typer.Option("--format", help="With --out: the encoding.")] = SbomFormat.JSON,
    check_vulns: Annotated[
        Path | None,
        typer.Option(
            "--check-vulns",
            metavar="OSV_FILE",
            help="Check PyPI components against an offline OSV export: a record, an array, a directory or a zip.",
        ),
    ] = None,
    severity: Annotated[
        Threshold,
        typer.Option(
            "--severity",
            help="With --check-vulns: exit 1 on a vulnerability at or above this (unknown severity counts as at it).",
        ),
    ] = Threshold.HIGH,
    sbom_file: Annotated[
        Path | None,
        typer.Option(
            "--sbom", metavar="FILE", help="With --check-vulns: check this CycloneDX JSON SBOM, not this environment."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one line of JSON on stdout instead of text.")] = False,
) -> None:
    """Write a CycloneDX SBOM (--out), or check components against an OSV export (--check-vulns); exit 1 on a match."""
    if (out is None) == (check_vulns is None):
        _fail(InvalidArgument.code, "give either --out FILE (write an SBOM) or --check-vulns OSV_FILE (check one)")
    if models and out is None:
        _fail(InvalidArgument.code, "--models adds the registered models to the SBOM written with --out")
    if sbom_file is not None and check_vulns is None:
        _fail(InvalidArgument.code, "--sbom names the SBOM that --check-vulns checks")
    try:
        if out is not None:
            _write_sbom(ctx, out, output_format, with_models=models, as_json=as_json)
        elif check_vulns is not None and _check(check_vulns, sbom_file, Severity(severity.value), as_json=as_json):
            raise typer.Exit(EXIT_FAILED)
    except (WardenError, OSError, SQLAlchemyError) as exc:
        _fail(*describe(exc))


def _write_sbom(ctx: typer.Context, out: Path, output_format: SbomFormat, *, with_models: bool, as_json: bool) -> None:
    bom = environment_bom(distributions())
    records = _models(ctx) if with_models else []
    add_models(bom, records)
    _write(out, serialize(bom, output_format))
    if as_json:
        emit_json(
            {
                "out": str(out),
                "format": output_format.value,
                "spec_version": SPEC_VERSION.to_version(),
                "serial_number": bom.serial_number.urn,
                "packages": len(bom.components) - len(records),
                "models": len(records),
            }
        )
        return
    packages = len(bom.components) - len(records)
    with_what = f" and {len(records)} model versions" if with_models else ""
    spec = SPEC_VERSION.to_version()
    typer.echo(f"Wrote {out}: CycloneDX {spec} {output_format.value}, {packages} packages{with_what}.")


def _models(ctx: typer.Context) -> list[ModelRecord]:
    services = open_services(load_settings(data_dir=data_dir(ctx)))
    try:
        return registered_models(services.tenants, services.registry)
    finally:
        services.close()


def _write(path: Path, text: str) -> None:
    """Write a fresh file beside ``path``, then move it into place: no half-written SBOM is ever there."""
    scratch = path.with_name(f".{path.name}.partial")
    try:
        scratch.write_text(text, encoding="utf-8")
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)


def _check(osv: Path, sbom_file: Path | None, threshold: Severity, *, as_json: bool) -> bool:
    """Print the matches at or above ``threshold``; whether there were any."""
    database = OsvDatabase.load(osv)
    packages = sbom_packages(sbom_file) if sbom_file is not None else environment_packages(distributions())
    matches = database.match(packages)
    failing = [m for m in matches if m.severity.meets(threshold)]
    below = len(matches) - len(failing)
    if as_json:
        emit_json(
            {
                "threshold": threshold.value,
                "packages": len(packages),
                "records": database.record_count,
                "matches": [m.as_json() for m in failing],
                "below_threshold": below,
            }
        )
        return bool(failing)
    for match in failing:
        typer.echo(_line(match))
    hidden = f"; {below} below it not shown" if below else ""
    typer.echo(
        f"{len(failing)} vulnerabilities at or above {threshold.value} in {len(packages)} packages "
        f"({database.record_count} OSV records{hidden})"
    )
    return bool(failing)


def _line(match: VulnerabilityMatch) -> str:
    aliases = f" ({', '.join(match.aliases)})" if match.aliases else ""
    fixed = f", fixed in {match.fixed}" if match.fixed else ", no fixed version known"
    summary = f": {match.summary}" if match.summary else ""
    return f"{match.id}{aliases} {match.package} {match.version} [{match.severity.value}{fixed}]{summary}"


def _fail(code: str, message: str) -> NoReturn:
    typer.echo(f"warden: error: {code}: {' '.join(message.split())}", err=True)
    raise typer.Exit(EXIT_USAGE)
