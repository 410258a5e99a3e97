"""``warden tenant …``: create, list, suspend, resume and delete tenants."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from warden.cli.common import ABORTED, AsJson, audited, confirm, console, emit_json, fail, iso, opened, short_time
from warden.tenancy import Quota, TenantView
from warden.tenancy.quota import QUOTA_FIELDS

tenant_app = typer.Typer(help="Create, list, suspend, resume and delete tenants.", no_args_is_help=True)

TenantName = Annotated[str, typer.Argument(help="Tenant name: 1-63 of a-z 0-9 _ -.", show_default=False)]


Rps = Annotated[float | None, typer.Option("--rps", min=0, help="Requests per second (0: unlimited).")]
Burst = Annotated[int | None, typer.Option("--burst", min=0, help="Requests allowed in a burst above the rate.")]
Concurrency = Annotated[
    int | None, typer.Option("--max-concurrency", min=0, help="Requests running at once (0: unlimited).")
]
Queue = Annotated[int | None, typer.Option("--max-queue", min=0, help="Requests waiting at once (0: unlimited).")]
Weight = Annotated[float | None, typer.Option("--weight", min=0.001, help="Fair-share weight when busy (default 1).")]
ImageBytes = Annotated[
    int | None, typer.Option("--max-image-bytes", min=0, help="Largest image in bytes (0: server limit).")
]
ImagePixels = Annotated[
    int | None, typer.Option("--max-image-pixels", min=0, help="Largest image in pixels (0: server limit).")
]
Daily = Annotated[int | None, typer.Option("--daily-requests", min=0, help="Requests per UTC day.")]
Isolation = Annotated[str | None, typer.Option("--isolation", metavar="shared|dedicated", help="Share workers?")]


def tenant_record(tenant: TenantView) -> dict[str, Any]:
    """A tenant as ``--json`` prints it: name, status, creation time and quota."""
    return {
        "name": tenant.name,
        "status": tenant.status,
        "created_at": iso(tenant.created_at),
        "quota": tenant.quota.to_dict(),
    }


def _quota_changes(options: dict[str, Any]) -> dict[str, Any]:
    """The quota fields a command was given (its other parameters and unset options left out)."""
    return {name: options[name] for name in QUOTA_FIELDS if options.get(name) is not None}


@tenant_app.command("create")
def create(
    ctx: typer.Context,
    name: TenantName,
    rps: Rps = None,
    burst: Burst = None,
    max_concurrency: Concurrency = None,
    max_queue: Queue = None,
    weight: Weight = None,
    max_image_bytes: ImageBytes = None,
    max_image_pixels: ImagePixels = None,
    daily_requests: Daily = None,
    isolation: Isolation = None,
    as_json: AsJson = False,
) -> None:
    """Create a tenant (active), with an optional quota."""
    changes = _quota_changes(locals())
    with opened(ctx) as services:
        tenant = services.tenants.create_tenant(name, Quota().updated(changes))
        audited(services, "tenant.create", name, **changes)
    _show(tenant, as_json, "Created")


@tenant_app.command("update")
def update(
    ctx: typer.Context,
    name: TenantName,
    rps: Rps = None,
    burst: Burst = None,
    max_concurrency: Concurrency = None,
    max_queue: Queue = None,
    weight: Weight = None,
    max_image_bytes: ImageBytes = None,
    max_image_pixels: ImagePixels = None,
    daily_requests: Daily = None,
    isolation: Isolation = None,
    as_json: AsJson = False,
) -> None:
    """Change a tenant's quota (0 clears a limit); effective from its next request."""
    changes = _quota_changes(locals())
    with opened(ctx) as services:
        tenant = services.tenants.update_quota(name, changes)
        audited(services, "quota.update", name, **changes)
    _show(tenant, as_json, "Updated")


@tenant_app.command("show")
def show(ctx: typer.Context, name: TenantName, as_json: AsJson = False) -> None:
    """Show a tenant with its quota."""
    with opened(ctx) as services:
        tenant = services.tenants.get_tenant(name)
    if as_json:
        emit_json(tenant_record(tenant))
        return
    table = Table(title=f"tenant {tenant.name} ({tenant.status})", title_justify="left", show_header=False)
    for key, value in tenant.quota.to_dict().items():
        table.add_row(key, "unlimited" if value is None else str(value))
    console().print(table)


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
        audited(services, "tenant.suspend", name)
    _show(tenant, as_json, "Suspended")


@tenant_app.command("resume")
def resume(ctx: typer.Context, name: TenantName, as_json: AsJson = False) -> None:
    """Resume a suspended tenant (status active)."""
    with opened(ctx) as services:
        tenant = services.tenants.set_status(name, "active")
        audited(services, "tenant.resume", name)
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
        erased, freed = services.delete_tenant(name)
        audited(services, "tenant.delete", name, blobs_removed=len(freed), objects_erased=erased)
    if as_json:
        emit_json({"name": name, "deleted": True, "blobs_removed": len(freed)})
    else:
        console().print(f"Deleted tenant {name!r}; {len(freed)} model blobs removed.", markup=False)


def _show(tenant: TenantView, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(tenant_record(tenant))
    else:
        console().print(f"{verb} tenant {tenant.name!r} (status {tenant.status}).", markup=False)
