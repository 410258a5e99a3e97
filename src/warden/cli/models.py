"""``warden model …``: push, list, show and remove a tenant's detection models (ONNX); batching and run-time caps."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from warden.cli.common import AsJson, audited, console, emit_json, iso, opened, os_user, read_bounded, short_time
from warden.errors import InvalidArgument
from warden.registry import (
    CANARY,
    RUN_CAP_FLOOR_MS,
    RUN_CAP_MULTIPLE,
    BatchSettings,
    ModelView,
    VersionView,
    parse_reference,
)
from warden.registry.service import MAX_MARKER
from warden.tenancy import check_name

model_app = typer.Typer(help="Push, list and remove a tenant's ONNX detection models.", no_args_is_help=True)

Tenant = Annotated[str, typer.Argument(help="Tenant owning the models.", show_default=False)]
MaxBatchSize = Annotated[
    int | None,
    typer.Option(
        metavar="N", help="Batch up to N images of concurrent requests per run (default: off on CPU, 8 on GPU)."
    ),
]
MaxQueueDelay = Annotated[
    float | None,
    typer.Option(metavar="MS", help="How long a request may wait for its batch to fill (default: 0 on CPU, 2 on GPU)."),
]


def model_record(model: ModelView) -> dict[str, Any]:
    """A model as ``model list --json`` prints it: versions oldest first, and its aliases."""
    return {
        "name": model.name,
        "versions": [
            {
                "version": v.version,
                "sha256": v.sha256,
                "size_bytes": v.size_bytes,
                "created_at": iso(v.created_at),
                "max_batch_size": v.batching.max_batch_size,
                "max_queue_delay_ms": v.batching.max_queue_delay_ms,
                "measured_run_ms": v.measured_run_ms,
                "run_cap_ms": v.run_cap_ms,
                "effective_run_cap_ms": v.effective_run_cap_ms,
                "run_cap_source": v.run_cap_source,
            }
            for v in model.versions
        ],
        "aliases": {alias: {"version": a.version, "weight": a.weight} for alias, a in sorted(model.aliases.items())},
    }


@model_app.command("push")
def push(
    ctx: typer.Context,
    tenant: Tenant,
    name: Annotated[str, typer.Argument(help="Model name: 1-63 of a-z 0-9 _ -.", show_default=False)],
    path: Annotated[Path, typer.Argument(help="Self-contained ONNX detection model file.", show_default=False)],
    alias: Annotated[
        str | None, typer.Option(metavar="stable|canary", help="Point this alias at the new version.")
    ] = None,
    canary_weight: Annotated[
        int | None, typer.Option(metavar="PERCENT", help="With --alias canary: its share of requests, 0-100.")
    ] = None,
    max_batch_size: MaxBatchSize = None,
    max_queue_delay_ms: MaxQueueDelay = None,
    as_json: AsJson = False,
) -> None:
    """Validate a model file and store it as the next version of NAME."""
    batching = BatchSettings(max_batch_size, max_queue_delay_ms)
    with opened(ctx) as services:
        tenant_id = services.tenants.tenant_id(tenant)
        check_name("model", name)
        batching.check({})
        data = read_bounded(path, services.settings.max_model_bytes, "WARDEN_MAX_MODEL_BYTES", "model")
        with _busy(as_json, f"validating {path.name}"):
            pushed = services.registry.push(
                tenant_id, name, data, alias=alias, canary_weight=canary_weight, batching=batching
            )
        target = f"{tenant}/{name}"
        audited(
            services, "model.push", target, version=pushed.version, sha256=pushed.sha256, bytes=len(data), alias=alias
        )
    if as_json:
        emit_json({"name": pushed.name, "version": pushed.version, "sha256": pushed.sha256})
        return
    pointed = f", now {alias}" if alias is not None else ""
    console().print(f"Pushed {pushed.name} version {pushed.version}{pointed} (sha256 {pushed.sha256}).", markup=False)


@model_app.command("list")
def list_(ctx: typer.Context, tenant: Tenant, as_json: AsJson = False) -> None:
    """List a tenant's models with their versions and aliases (``model show`` has each version's run-time cap)."""
    with opened(ctx) as services:
        models = services.registry.list_models(services.tenants.tenant_id(tenant))
    if as_json:
        emit_json([model_record(m) for m in models])
        return
    table = Table(title=f"{len(models)} models of tenant {tenant!r}", title_justify="left")
    for column in ("model", "version", "aliases", "sha256", "bytes", "created"):
        table.add_column(column, justify="right" if column in ("version", "bytes") else "left")
    for model in models:
        for v in model.versions:
            created = short_time(v.created_at)
            table.add_row(model.name, str(v.version), _aliases(model, v), v.sha256[:12], str(v.size_bytes), created)
    console().print(table)


@model_app.command("show")
def show(
    ctx: typer.Context,
    tenant: Tenant,
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Show one model: each version with its batching, the run measured at upload and its run-time cap."""
    with opened(ctx) as services:
        model = services.registry.get_model(services.tenants.tenant_id(tenant), name)
        max_run_ms = services.registry.max_run_ms
    if as_json:
        emit_json(model_record(model))
        return
    out = console()
    for v in model.versions:
        aliases = _aliases(model, v)
        size = "server default" if v.batching.max_batch_size is None else str(v.batching.max_batch_size)
        delay = "server default" if v.batching.max_queue_delay_ms is None else f"{v.batching.max_queue_delay_ms:g} ms"
        measured = (
            "not measured (pushed before runs were)"
            if v.measured_run_ms is None
            else (f"{_ms(v.measured_run_ms)}, the slowest run at upload (black, white, noise, photo)")
        )
        lines = [
            f"{model.name} version {v.version}" + (f" ({aliases})" if aliases else ""),
            f"  sha256    {v.sha256}",
            f"  bytes     {v.size_bytes}",
            f"  created   {short_time(v.created_at)}",
            f"  batching  max batch {size}, max queue delay {delay}",
            f"  measured  {measured}",
            f"  run cap   {_run_cap_label(v, max_run_ms)}",
        ]
        out.print("\n".join(lines), markup=False)


@model_app.command("batching")
def batching_(
    ctx: typer.Context,
    tenant: Tenant,
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="One version.", show_default=False)],
    max_batch_size: MaxBatchSize = None,
    max_queue_delay_ms: MaxQueueDelay = None,
    as_json: AsJson = False,
) -> None:
    """Set a version's dynamic batching; an option left out goes back to the server's choice."""
    batching = BatchSettings(max_batch_size, max_queue_delay_ms)
    with opened(ctx) as services:
        name, version = parse_reference(reference)
        if version is None:
            raise InvalidArgument(f"name a version: {name}:VERSION")
        services.registry.set_batching(services.tenants.tenant_id(tenant), name, version, batching)
        audited(
            services,
            "model.batching",
            f"{tenant}/{name}",
            version=version,
            max_batch_size=max_batch_size,
            max_queue_delay_ms=max_queue_delay_ms,
        )
    if as_json:
        emit_json(
            {
                "name": name,
                "version": version,
                "max_batch_size": max_batch_size,
                "max_queue_delay_ms": max_queue_delay_ms,
            }
        )
        return
    size = "server default" if max_batch_size is None else str(max_batch_size)
    delay = "server default" if max_queue_delay_ms is None else f"{max_queue_delay_ms:g} ms"
    console().print(f"Batching of {name} version {version}: max batch {size}, max queue delay {delay}.", markup=False)


@model_app.command("run-cap")
def run_cap(
    ctx: typer.Context,
    tenant: Tenant,
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="One version.", show_default=False)],
    ms: Annotated[
        float | None,
        typer.Option(
            "--ms", metavar="MS", help="Stop a run of this version after MS milliseconds (at most WARDEN_MAX_RUN_MS)."
        ),
    ] = None,
    auto: Annotated[
        bool, typer.Option("--auto", help="Go back to the cap derived from the runs measured at upload.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Operator: set a version's run-time cap (--ms), or go back to the one derived from its upload (--auto)."""
    with opened(ctx) as services:
        if (ms is not None) == auto:
            raise InvalidArgument("give one of --ms MS or --auto")
        name, version = parse_reference(reference)
        if version is None:
            raise InvalidArgument(f"name a version: {name}:VERSION")
        tenant_id = services.tenants.tenant_id(tenant)
        services.registry.set_run_cap(tenant_id, name, version, ms)
        audited(services, "model.run_cap", f"{tenant}/{name}", version=version, run_cap_ms=ms)
        [view] = [v for v in services.registry.get_model(tenant_id, name).versions if v.version == version]
        max_run_ms = services.registry.max_run_ms
    if as_json:
        emit_json(
            {
                "name": name,
                "version": version,
                "run_cap_ms": view.run_cap_ms,
                "effective_run_cap_ms": view.effective_run_cap_ms,
                "run_cap_source": view.run_cap_source,
            }
        )
        return
    console().print(f"Run-time cap of {name} version {version}: {_run_cap_label(view, max_run_ms)}.", markup=False)


@model_app.command("rm")
def rm(
    ctx: typer.Context,
    tenant: Tenant,
    reference: Annotated[
        str, typer.Argument(metavar="NAME[:VERSION]", help="A model, or one version of it.", show_default=False)
    ],
    as_json: AsJson = False,
) -> None:
    """Remove a model (every version) or one version, and the blobs nobody uses any more."""
    with opened(ctx) as services:
        name, version = parse_reference(reference)
        services.registry.remove(services.tenants.tenant_id(tenant), name, version)
        audited(services, "model.remove", f"{tenant}/{name}", version=version)
    if as_json:
        emit_json({"name": name, "version": version, "removed": True})
        return
    what = f"version {version}" if version is not None else "all versions"
    console().print(f"Removed model {name} ({what}).", markup=False)


Digest = Annotated[str, typer.Argument(metavar="SHA256", help="The model bytes' sha256 (model list shows it).")]


@model_app.command("share")
def share(ctx: typer.Context, digest: Digest, as_json: AsJson = False) -> None:
    """Operator: let one session of these bytes serve every tenant that pushed them (a public model).

    Without the mark each tenant loads its own session of identical bytes, so that a fast first
    request does not tell a tenant that another holds the same model.
    """
    with opened(ctx) as services:
        view = services.registry.share(digest, f"cli:{os_user()}"[:MAX_MARKER])
        audited(services, "blob.share", digest)
    if as_json:
        emit_json(
            {"sha256": view.sha256, "shared": True, "marked_by": view.marked_by, "marked_at": iso(view.marked_at)}
        )
        return
    console().print(f"Sessions of {digest} now serve every tenant that pushed it.", markup=False)


@model_app.command("unshare")
def unshare(ctx: typer.Context, digest: Digest, as_json: AsJson = False) -> None:
    """Operator: each tenant loads its own session of these bytes again (from its next request on)."""
    with opened(ctx) as services:
        removed = services.registry.unshare(digest)
        audited(services, "blob.unshare", digest, removed=removed)
    if as_json:
        emit_json({"sha256": digest, "shared": False, "removed": removed})
        return
    console().print(f"Sessions of {digest} serve one tenant each.", markup=False)


def _busy(as_json: bool, message: str) -> contextlib.AbstractContextManager[object]:
    if as_json:
        return contextlib.nullcontext()
    return Console(stderr=True).status(message)


def _aliases(model: ModelView, v: VersionView) -> str:
    return " ".join(_alias_label(name, a.weight) for name, a in sorted(model.aliases.items()) if a.version == v.version)


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.2g} ms"


def _run_cap_label(v: VersionView, max_run_ms: int) -> str:
    """The effective cap and where it comes from, in words."""
    cap = _ms(v.effective_run_cap_ms)
    if v.run_cap_source == "set":
        lowered = f", lowered to WARDEN_MAX_RUN_MS ({max_run_ms} ms)" if v.effective_run_cap_ms != v.run_cap_ms else ""
        return f"{cap}, set by an operator{lowered}"
    if v.run_cap_source == "derived":
        return (
            f"{cap}, derived: {RUN_CAP_MULTIPLE:g} x measured, at least {RUN_CAP_FLOOR_MS:g} ms, "
            f"at most WARDEN_MAX_RUN_MS ({max_run_ms} ms)"
        )
    return f"{cap}, WARDEN_MAX_RUN_MS (never measured)"


def _alias_label(alias: str, weight: int) -> str:
    return f"{alias} ({weight}%)" if alias == CANARY else alias
