"""``warden dataset …``: push (de-identified on ingestion, encrypted at rest), list, show and erase a tenant's datasets.

The same :class:`~warden.datasets.DatasetService` as ``/v1/datasets``; the actor of every change is the
operating-system user, recorded in the audit trail with the hashes and row counts, never a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from warden.cli.common import (
    ABORTED,
    AsJson,
    audited,
    confirm,
    console,
    emit_json,
    fail,
    opened,
    os_user,
    read_bounded,
    short_time,
)
from warden.datasets.views import DatasetVersionView, DatasetView
from warden.privacy.tables import detect_format
from warden.registry import parse_reference

dataset_app = typer.Typer(
    help="Push, list and erase a tenant's datasets (de-identified on ingestion, encrypted at rest).",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Argument(help="Tenant owning the datasets.", show_default=False)]
Name = Annotated[str, typer.Argument(help="Dataset name: 1-63 of a-z 0-9 _ -.", show_default=False)]


@dataset_app.command("push")
def push(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    path: Annotated[Path, typer.Argument(help="CSV, JSON Lines, Parquet or text file.", show_default=False)],
    fmt: Annotated[
        str | None, typer.Option("--format", metavar="csv|jsonl|parquet|text", help="Default: from the suffix.")
    ] = None,
    policy: Annotated[str, typer.Option(help="De-identification policy (auto: scan, then the safe default).")] = "auto",
    as_json: AsJson = False,
) -> None:
    """De-identify a file under the tenant's key and store the result, encrypted, as the next version of NAME."""
    with opened(ctx) as services:
        chosen = fmt if fmt is not None else detect_format(path).value
        tenant_id = services.tenants.tenant_id(tenant)
        data = read_bounded(path, services.settings.max_dataset_bytes, "WARDEN_MAX_DATASET_BYTES", "dataset")
        pushed = services.datasets.push(tenant_id, name, data, chosen, policy, actor=os_user())
        del data
        audited(
            services,
            "dataset.push",
            f"{tenant}/{name}",
            version=pushed.version,
            sha256=pushed.sha256,
            source_sha256=pushed.source_sha256,
            rows=pushed.rows,
            bytes=pushed.size_bytes,
            key_id=pushed.key_id,
        )
    if as_json:
        emit_json(pushed.to_dict())
        return
    console().print(
        f"Pushed {name} version {pushed.version}: {pushed.rows} rows de-identified ({pushed.policy}), "
        f"stored encrypted (sha256 {pushed.sha256}).",
        markup=False,
    )


@dataset_app.command("list")
def list_(ctx: typer.Context, tenant: Tenant, as_json: AsJson = False) -> None:
    """List a tenant's datasets with their versions (erased ones included, marked)."""
    with opened(ctx) as services:
        datasets = services.datasets.list(services.tenants.tenant_id(tenant))
    if as_json:
        emit_json([d.to_dict() for d in datasets])
        return
    _table(datasets)


@dataset_app.command("show")
def show(ctx: typer.Context, tenant: Tenant, name: Name, as_json: AsJson = False) -> None:
    """One dataset's versions with their hashes, rows and de-identification report."""
    with opened(ctx) as services:
        dataset = services.datasets.get(services.tenants.tenant_id(tenant), name)
    if as_json:
        emit_json(dataset.to_dict())
        return
    _table([dataset])


@dataset_app.command("delete")
def delete(
    ctx: typer.Context,
    tenant: Tenant,
    reference: Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="A dataset, or one of its versions.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: AsJson = False,
) -> None:
    """Erase a dataset version (or every version): its data key is destroyed, so no copy can be decrypted."""
    name, version = parse_reference(reference)
    with opened(ctx) as services:
        tenant_id = services.tenants.tenant_id(tenant)
        services.datasets.get(tenant_id, name)
        shown = name if version is None else f"{name} version {version}"
        if not yes and not confirm(f"Erase {shown} of tenant {tenant!r}? This cannot be undone."):
            fail(ABORTED, f"{shown} was not erased (confirm, or pass --yes)")
        erased = services.datasets.delete(tenant_id, name, version, actor=os_user())
        audited(
            services,
            "dataset.delete",
            f"{tenant}/{name}",
            versions=",".join(str(v.version) for v in erased),
            sha256=",".join(v.sha256 for v in erased),
        )
    if as_json:
        emit_json([v.to_dict() for v in erased])
        return
    console().print(f"Erased {shown}: {len(erased)} version(s); their keys are destroyed.", markup=False)


def _table(datasets: list[DatasetView]) -> None:
    table = Table("dataset", "version", "rows", "format", "sha256", "created", "state")
    for dataset in datasets:
        for v in dataset.versions:
            table.add_row(dataset.name, str(v.version), str(v.rows), v.format, v.sha256[:12], *_when(v))
    console().print(table)


def _when(v: DatasetVersionView) -> tuple[str, str]:
    state = "stored" if v.erased_at is None else f"erased {short_time(v.erased_at)}"
    return short_time(v.created_at), state
