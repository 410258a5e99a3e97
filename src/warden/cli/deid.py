"""``warden deid …``: scan files for personal data, de-identify them by policy, hide faces in images.

Every run writes a manifest beside its output (hashes, policy, counts; no personal
data). When a Warden data directory is in use (``--data-dir``, ``WARDEN_DATA_DIR``,
or an initialised ``./warden-data``), the run is also recorded in its audit log;
otherwise the manifest is the record, and the command says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from warden import __version__
from warden.cli.common import AsJson, audited, console, data_dir, describe, emit_json, fail
from warden.errors import InvalidArgument, WardenError
from warden.privacy.apply import ApplyReport
from warden.privacy.deid import Deidentifier
from warden.privacy.faces import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_SCORE,
    FaceDetector,
    YoloFaceDetector,
    default_face_detector,
)
from warden.privacy.images import ImageReport, Mode, deidentify_images
from warden.privacy.keys import DeidKey
from warden.privacy.policy import Policy
from warden.privacy.scan import ScanReport
from warden.services import open_services
from warden.settings import load_settings

DEFAULT_MAX_SUPPRESSED: Final = 0.05

deid_app = typer.Typer(
    help="De-identify tables, text and images before any training job sees them.", no_args_is_help=True
)

KeyFile = Annotated[
    Path | None,
    typer.Option("--key-file", help="Secret for hash, encrypt and date_shift (see 'warden deid keygen')."),
]
NationalIds = Annotated[
    list[str] | None,
    typer.Option("--national-id", metavar="SCHEME", help="National-id scheme to look for (repeat); default: all."),
]
NoNer = Annotated[
    bool, typer.Option("--no-ner", help="Skip the NER pipeline (person names and addresses in free text).")
]


@contextmanager
def _reported(audit: tuple[typer.Context, str, str] | None = None) -> Iterator[None]:
    """Turn a domain or file error into the one-line failure every command gives.

    With ``audit`` (context, action, target), a failed run is recorded too, with its error code only: an
    attempt on personal data leaves a trace whether or not it succeeded.
    """
    try:
        yield
    except (WardenError, OSError) as exc:
        code, message = describe(exc)
        if audit is not None:
            ctx, action, target = audit
            _audit(ctx, action, target, {"outcome": "failed", "error": code})
        fail(code, message)


def _progress(enabled: bool, *, files: bool = False) -> Progress:
    """A progress bar on stderr, only when stderr is a terminal (never mixed into piped or captured output)."""
    err = Console(stderr=True)
    columns = () if files else (DownloadColumn(), TimeRemainingColumn())
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        *columns,
        console=err,
        transient=True,
        disable=not (enabled and err.is_terminal),
    )


@deid_app.command("scan")
def scan(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet, JSON Lines or text file.", show_default=False)],
    sample_rows: Annotated[int, typer.Option(min=1, help="Cells per column run through the detectors.")] = 2000,
    national_ids: NationalIds = None,
    no_ner: NoNer = False,
    as_json: AsJson = False,
) -> None:
    """Profile a file: entities per column, direct and quasi-identifiers, and the smallest group size k."""
    with _reported():
        deid = Deidentifier(national_ids=national_ids, ner=not no_ner)
        with _progress(not as_json) as bar:
            task = bar.add_task("scanning", total=file.stat().st_size)
            report = deid.scan(
                file, sample_rows=sample_rows, progress=lambda done, _t: bar.update(task, completed=done)
            )
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_scan(report)


def _print_scan(report: ScanReport) -> None:
    out = console()
    table = Table(title=escape(f"{report.path.name}: {report.rows} rows ({report.format.value})"))
    for header in ("column", "flag", "entities (cells with / scanned, confidence)", "examples"):
        table.add_column(header)
    for column in report.columns:
        flag = (
            f"direct: {column.direct.value}"
            if column.direct
            else f"quasi: {column.quasi.value}"
            if column.quasi
            else ""
        )
        entities = ", ".join(
            f"{e.value} {p.cells}/{column.scanned} ({p.confidence:.2f})" for e, p in sorted(column.entities.items())
        )
        examples = "; ".join(x for p in column.entities.values() for x in p.examples[:1])
        table.add_row(escape(column.name), flag, entities or "-", escape(examples) or "-")
    out.print(table)
    if report.quasi_identifiers:
        out.print(escape(f"quasi-identifiers: {', '.join(report.quasi_identifiers)}; smallest group k = {report.k}"))
    else:
        out.print("no quasi-identifiers found")


@deid_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, Parquet, JSON Lines or text file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output file (same format).", show_default=False)],
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="Policy YAML naming an operator per column.")
    ] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Apply safe defaults to every column the scan flags.")] = False,
    key_file: KeyFile = None,
    k: Annotated[
        int | None, typer.Option("--k", min=2, help="With --auto: generalise or suppress quasi-identifiers to k.")
    ] = None,
    max_suppressed: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="With --k: at most this share of rows suppressed.")
    ] = DEFAULT_MAX_SUPPRESSED,
    national_ids: NationalIds = None,
    no_ner: NoNer = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default: 1 below 32 MiB, else one per core, at most 8)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """De-identify FILE into --out by a policy (or --auto), with a manifest beside the output."""
    if (policy_file is None) == (not auto):
        fail(InvalidArgument.code, "give exactly one of --policy FILE or --auto")
    if k is not None and not auto:
        fail(InvalidArgument.code, "--k goes with --auto; in a policy file, use k_anonymity")
    if max_suppressed != DEFAULT_MAX_SUPPRESSED and k is None:
        fail(InvalidArgument.code, "--max-suppressed goes with --k")
    if national_ids and policy_file is not None:
        fail(
            InvalidArgument.code, "with --policy, name the schemes in the policy file (national_ids), not --national-id"
        )
    with _reported((ctx, "deid.apply", out.name)):
        key = DeidKey.load(key_file) if key_file is not None else None
        deid = Deidentifier(key=key, national_ids=national_ids, ner=not no_ner)
        with _progress(not as_json) as bar:
            task = bar.add_task("de-identifying", total=file.stat().st_size)

            def step(done: int, _total: int) -> None:
                bar.update(task, completed=done)

            if auto:
                result = deid.auto(
                    file, out, k=k, max_suppressed=max_suppressed, progress=step, overwrite=overwrite, workers=workers
                )
                report, policy = result.applied, result.policy
            else:
                assert policy_file is not None  # noqa: S101 - checked above
                policy = Policy.load(policy_file)
                report = deid.apply(file, out, policy, progress=step, overwrite=overwrite, workers=workers)
    audit = _audit(ctx, "deid.apply", report.output.name, _audit_details(report))
    if as_json:
        emit_json({**report.manifest(policy), "manifest_path": str(report.manifest_path), "audit": audit})
    else:
        _print_apply(report, audit, k)


def _audit_details(report: ApplyReport) -> dict[str, Any]:
    return {
        "input_sha256": report.input_sha256,
        "output_sha256": report.output_sha256,
        "policy_sha256": report.policy_sha256,
        "key_id": report.key_id,
        "rows": report.rows,
        "entities": json.dumps(report.entity_counts(), sort_keys=True),
    }


def _audit(ctx: typer.Context, action: str, target: str, details: dict[str, Any]) -> str:
    """Record the run in the data directory's audit log when one is in use; say where the record is."""
    settings = load_settings(data_dir=data_dir(ctx))
    if settings.database_url is None and not (settings.data_dir / "warden.db").exists():
        return "manifest only (no Warden data directory here)"
    try:
        services = open_services(settings)
    except (WardenError, OSError, SQLAlchemyError) as exc:
        fail(*describe(exc))
    try:
        audited(services, action, target, **details)
    except (WardenError, OSError, SQLAlchemyError) as exc:
        fail(*describe(exc))
    finally:
        services.close()
    return "audit log"


def _print_apply(report: ApplyReport, audit: str, asked_k: int | None) -> None:
    out = console()
    table = Table(title=escape(f"{report.input.name} → {report.output.name}: {report.rows} rows"))
    for header in ("column", "operator", "changed", "invalid", "entities"):
        table.add_column(header)
    for name, result in report.columns.items():
        entities = ", ".join(f"{e} {n}" for e, n in sorted(result.stats.entities.items()))
        table.add_row(escape(name), result.op, str(result.stats.changed), str(result.stats.invalid), entities or "-")
    out.print(table)
    if report.k_anonymity is not None:
        k = report.k_anonymity
        levels = ", ".join(f"{c}: {lvl}" for c, lvl in k.levels.items())
        out.print(
            escape(
                f"k-anonymity k={k.k}: smallest group {k.min_group_before} → {k.min_group_after}; "
                f"{k.suppressed_rows} of {k.rows} rows suppressed; {levels}"
            )
        )
    elif asked_k is not None:
        out.print(f"k-anonymity: the scan found no quasi-identifiers, so --k {asked_k} changed nothing")
    out.print(escape(f"manifest: {report.manifest_path}; recorded in: {audit}"))


@deid_app.command("image")
def image(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="JPEG, PNG or WebP files.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the cleaned images go.", show_default=False)],
    mode: Annotated[Mode, typer.Option(help="How faces are hidden.")] = Mode.BLUR,
    face_model: Annotated[
        Path | None, typer.Option("--face-model", help="A YOLO ONNX face model to use instead of CenterFace.")
    ] = None,
    face_class: Annotated[
        str | None, typer.Option("--face-class", help="With --face-model: the class that is a face (default: all).")
    ] = None,
    min_score: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="Faces scoring at least this are hidden.")
    ] = DEFAULT_MIN_SCORE,
    margin: Annotated[
        float, typer.Option(min=0.0, max=2.0, help="Widen each face box by this share of its size.")
    ] = DEFAULT_MARGIN,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N], tensorrt[:N] or auto.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    as_json: AsJson = False,
) -> None:
    """Hide faces and strip EXIF/XMP/GPS metadata from images; a manifest records the faces per image.

    The first image that fails stops the run; the manifest still lists the images already written.
    """
    started = datetime.now(UTC)
    reports: list[ImageReport] = []
    with _reported((ctx, "deid.image", out_dir.name)):
        detector: FaceDetector = (
            default_face_detector(device=device)
            if face_model is None
            else YoloFaceDetector(face_model, class_name=face_class, device=device)
        )

        def done(report: ImageReport) -> None:
            reports.append(report)
            bar.advance(task)

        with _progress(not as_json and len(images) > 1, files=True) as bar:
            task = bar.add_task("hiding faces", total=len(images))
            try:
                deidentify_images(
                    images,
                    out_dir,
                    detector=detector,
                    mode=mode,
                    margin=margin,
                    min_score=min_score,
                    overwrite=overwrite,
                    on_image=done,
                )
            except (WardenError, OSError) as exc:
                if reports:
                    _image_manifest(out_dir, started, detector, mode, reports, error=describe(exc))
                raise
        manifest, manifest_path = _image_manifest(out_dir, started, detector, mode, reports)
    details = {"images": len(reports), "faces": manifest["faces"], "manifest": manifest_path.name}
    audit = _audit(ctx, "deid.image", str(out_dir.name), details)
    if as_json:
        emit_json({**manifest, "manifest_path": str(manifest_path), "audit": audit})
        return
    out = console()
    table = Table(title=escape(f"{len(reports)} images → {out_dir}"))
    for header in ("image", "faces", "metadata removed"):
        table.add_column(header)
    for r in reports:
        table.add_row(escape(r.name), str(r.face_count), ", ".join(k.value for k in r.metadata_removed) or "-")
    out.print(table)
    out.print(escape(f"manifest: {manifest_path}; recorded in: {audit}"))


def _image_manifest(
    out_dir: Path,
    started: datetime,
    detector: FaceDetector,
    mode: Mode,
    reports: list[ImageReport],
    error: tuple[str, str] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Write the run's manifest into ``out_dir`` (also after a failure, for the images already written)."""
    manifest: dict[str, Any] = {
        "warden_deid_images": 1,
        "warden_version": __version__,
        "detector": {"name": detector.name, "version": detector.version},
        "mode": mode.value,
        "images": [r.to_dict() for r in reports],
        "faces": sum(r.face_count for r in reports),
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "error": None if error is None else {"code": error[0], "message": error[1]},
    }
    path = out_dir / f"warden-deid-images-{started.strftime('%Y%m%dT%H%M%S%fZ')}.manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest, path


@deid_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="New key file (never replaced; mode 0600).", show_default=False)],
) -> None:
    """Write a new random de-identification key; keep it apart from the data it pseudonymises."""
    with _reported():
        key = DeidKey.generate()
        try:
            key.save(out)
        except FileExistsError:
            fail(InvalidArgument.code, f"{out} exists; a key file is never replaced")
    console().print(escape(f"key {key.key_id} written to {out}"))
