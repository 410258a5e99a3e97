"""``warden init`` (the first operator key) and ``warden key …``: issue, list and revoke API keys.

A key's secret is printed once, when it is issued, and never again: listings
show only the public key id.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from warden.cli.common import AsJson, audited, console, emit_json, fail, iso, opened, short_time
from warden.errors import Conflict, InvalidArgument
from warden.tenancy import IssuedKey, KeyView, Scope

key_app = typer.Typer(help="Issue, list and revoke API keys (secrets are shown once).", no_args_is_help=True)

_NOT_SHOWN_AGAIN = "Store it now: it will not be shown again."


def key_record(key: KeyView) -> dict[str, Any]:
    """A key as ``key list --json`` prints it: never its secret."""
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "scope": key.scope.value,
        "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
    }


def init(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Initialise the data directory (database, server secret) and print an operator admin key, once.

    Refused with ``conflict`` when an unrevoked operator key exists already.
    """
    with opened(ctx) as services:
        if services.tenants.has_operator_key():
            raise Conflict(
                f"{services.settings.data_dir} is already initialised (an operator key exists); "
                "issue tenant keys with 'warden key create'"
            )
        issued = services.tenants.create_key(None, Scope.ADMIN)
        audited(services, "key.create", "operator", scope=Scope.ADMIN.value, key_id=issued.key_id)
        where = services.settings.data_dir
    if as_json:
        emit_json({"admin_key": issued.key})
        return
    out = console()
    out.print(f"Initialised {where}.", markup=False)
    out.print(f"Operator admin key (id {issued.key_id}). {_NOT_SHOWN_AGAIN}", markup=False)
    out.print(issued.key, markup=False)


@key_app.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Argument(help="Tenant the key belongs to (none with --operator).", show_default=False)
    ] = None,
    scope: Annotated[
        str,
        typer.Option(
            metavar="detect|admin|train|approve",
            help="detect: run detections; admin: manage the tenant; train: request approvals (a data scientist); "
            "approve: decide approval requests (a data-protection officer).",
        ),
    ] = Scope.DETECT.value,
    operator: Annotated[
        bool,
        typer.Option(
            "--operator", help="A key bound to no tenant: --scope admin (an operator) or approve (every tenant's)."
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Issue an API key for a tenant (or, with --operator, one bound to no tenant) and print it, once."""
    if operator == (tenant is not None):
        fail(InvalidArgument.code, "give a TENANT, or --operator for a key bound to no tenant (not both)")
    with opened(ctx) as services:
        issued = services.tenants.create_key(tenant, _scope(scope))
        audited(services, "key.create", tenant or "operator", scope=scope, key_id=issued.key_id)
    _show_issued(issued, tenant, scope, as_json)


@key_app.command("list")
def list_(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Argument(help="Tenant whose keys to list; omitted: the operator keys.", show_default=False)
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List a tenant's API keys, oldest first: ids, scopes and dates, never secrets."""
    with opened(ctx) as services:
        keys = services.tenants.list_keys(tenant)
    if as_json:
        emit_json([key_record(k) for k in keys])
        return
    owner = f"tenant {tenant!r}" if tenant is not None else "operators"
    table = Table(title=f"{len(keys)} API keys of {owner}", title_justify="left")
    for column in ("key id", "scope", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.key_id, key.scope.value, short_time(key.created_at), short_time(key.revoked_at))
    console().print(table)


@key_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Public id of the key (as in 'key list').", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Revoke an API key (idempotent): it is refused from its next request on."""
    with opened(ctx) as services:
        key = services.tenants.revoke_key(key_id)
        audited(services, "key.revoke", key_id)
    if as_json:
        emit_json(key_record(key))
    else:
        owner = f"tenant {key.tenant!r}" if key.tenant is not None else "an operator"
        console().print(f"Revoked key {key.key_id} of {owner} at {short_time(key.revoked_at)}.", markup=False)


def _scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        choices = ", ".join(s.value for s in Scope)
        raise InvalidArgument(f"scope must be one of {choices}, got {value!r}") from None


def _show_issued(issued: IssuedKey, tenant: str | None, scope: str, as_json: bool) -> None:
    if as_json:
        emit_json({"key": issued.key, "key_id": issued.key_id})
        return
    out = console()
    owner = f"tenant {tenant!r}" if tenant is not None else "no tenant (operator-wide)"
    out.print(f"API key for {owner} (id {issued.key_id}, scope {scope}). {_NOT_SHOWN_AGAIN}", markup=False)
    out.print(issued.key, markup=False)
