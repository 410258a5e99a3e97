"""``warden tenant …``: create, list, suspend, resume and delete tenants."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from warden.cli.common import ABORTED, AsJson, confirm, console, emit_json, fail, iso, opened, short_time
from warden.tenancy import TenantView

tenant_app = typer.Typer(help="Create, list, suspend, resume and delete tenants.", no_args_is_help=True)

TenantName = Annotated[str, typer.Argument(help="Tenant name: 1-63 of a-z 0-9 _ -.", show_default=False)]


def tenant_record(tenant: TenantView) -> dict[str, Any]:
    """A tenant as ``--json`` prints it."""
    return {"name": tenant.name, "status": tenant.status, "created_at": iso(tenant.created_at)}


@tenant_app.command("create")
def create(ctx: typer.Context, name: TenantName, as_json: AsJson = False) -> None:
    """Create a tenant (active)."""
    with opened(ctx) as services:
        tenant = services.tenants.create_tenant(name)
    _show(tenant, as_json, "Created")


@tenant_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List every tenant, by name."""
    with opened(ctx) as services:
        tenants = services.tenants.list_tenants()
    if as_json:
        emit_json([tenant_record(t) for t in tenants])
        return
    table = Table(title=f"{len(tenants)} tenants", title_justify="left")
    for column in ("name", "status", "created"):
        table.add_column(column)
    for tenant in tenants:
        table.add_row(tenant.name, tenant.status, short_time(tenant.created_at))
    console().print(table)


@tenant_app.command("suspend")
def suspend(ctx: typer.Context, name: TenantName, as_json: AsJson = False) -> None:
    """Suspend a tenant: its keys are refused from its next request on."""
    with opened(ctx) as services:
        tenant = services.tenants.set_status(name, "suspended")
    _show(tenant, as_json, "Suspended")


@tenant_app.command("resume")
def resume(ctx: typer.Context, name: TenantName, as_json: AsJson = False) -> None:
    """Resume a suspended tenant (status active)."""
    with opened(ctx) as services:
        tenant = services.tenants.set_status(name, "active")
    _show(tenant, as_json, "Resumed")


@tenant_app.command("delete")
def delete(
    ctx: typer.Context,
    name: TenantName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")] = False,
    as_json: AsJson = False,
) -> None:
    """Delete a tenant with its keys and models, then the model blobs nobody else uses."""
    with opened(ctx) as services:
        services.tenants.get_tenant(name)
        question = f"Delete tenant {name!r} with all its API keys and models? This cannot be undone."
        if not yes and not confirm(question):
            fail(ABORTED, f"tenant {name!r} was not deleted (confirm, or pass --yes)")
        services.tenants.delete_tenant(name)
        freed = services.registry.collect_garbage()
    if as_json:
        emit_json({"name": name, "deleted": True, "blobs_removed": len(freed)})
    else:
        console().print(f"Deleted tenant {name!r}; {len(freed)} model blobs removed.", markup=False)


def _show(tenant: TenantView, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(tenant_record(tenant))
    else:
        console().print(f"{verb} tenant {tenant.name!r} (status {tenant.status}).", markup=False)
