"""``warden approval …``: record, list and revoke the approvals training jobs run under.

An approval is a declared purpose over datasets (see :mod:`warden.jobs.approvals`);
``warden job run --approval ID`` is admitted only under an active one. One created here is an
operator's approval: bound to no tenant, over datasets named by content hash, approved at once
by ``cli:<user>``. Tenants' requests arrive over the API (``POST /v1/approvals``) and are decided
there by an ``approve`` key; ``list`` shows them all, with their tenant, state and requester.
Creating and revoking are audited administrative actions (``approval.create``, ``approval.revoke``)
with the id, the purpose and the datasets' hashes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.markup import escape
from rich.table import Table

from warden.cli.common import AsJson, audited, console, emit_json, iso, opened, os_user, parse_moment, short_time
from warden.errors import InvalidArgument
from warden.jobs.approval_requests import check_reason
from warden.jobs.approvals import HOST_KIND, ApprovalView

approval_app = typer.Typer(
    help="Record, list and revoke approvals: a declared purpose over hashed datasets, for training jobs.",
    no_args_is_help=True,
)

ApprovalId = Annotated[str, typer.Argument(help="The approval's id (apr_…).", show_default=False)]
_PURPOSE_CELL: Final = 60


def approval_record(approval: ApprovalView, now: datetime | None = None) -> dict[str, Any]:
    """An approval as ``--json`` prints it, with its state now."""
    return {
        "id": approval.id,
        "tenant": approval.tenant,
        "state": approval.state(now or datetime.now(UTC)).value,
        "purpose": approval.purpose,
        "datasets": [{"path": d.path, "sha256": d.sha256} for d in approval.datasets],
        "dataset_refs": [str(d) for d in approval.dataset_refs],
        "created_at": iso(approval.created_at),
        "created_by": approval.created_by,
        "requested_by": approval.requested_by,
        "requested_by_kind": approval.requested_by_kind,
        "decided_by": approval.decided_by,
        "decided_at": iso(approval.decided_at),
        "reason": approval.reason,
        "expires_at": iso(approval.expires_at),
        "max_runs": approval.max_runs,
        "runs_used": approval.runs_used,
        "runtimes": list(approval.runtimes) if approval.runtimes is not None else None,
        "max_gpus": approval.max_gpus,
        "revoked_at": iso(approval.revoked_at),
        "revoked_by": approval.revoked_by,
        "revoke_reason": approval.revoke_reason,
        "allow_identifiers": approval.allow_identifiers,
    }


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``--expires``: an ISO 8601 time (no offset: UTC) or a duration from now (``90d``, ``12h``, ``4w``)."""
    return parse_moment("--expires", text, ahead=True, now=now)


@approval_app.command("create")
def create(
    ctx: typer.Context,
    purpose: Annotated[
        str, typer.Option("--purpose", help="What the data is processed for (1-500 characters).", show_default=False)
    ],
    dataset: Annotated[
        list[Path],
        typer.Option("--dataset", help="A file or directory it covers (repeat for more).", show_default=False),
    ],
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="When it lapses: ISO 8601 (no offset: UTC) or a duration (90d).", metavar="ISO"),
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", help="How many jobs may run under it (default: no limit).")
    ] = None,
    allow_identifiers: Annotated[
        bool,
        typer.Option("--allow-identifiers", help="The data may hold direct identifiers (skip the admission scan)."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Record an approval for a purpose over datasets (hashed now) and print its id."""
    with opened(ctx) as services:
        expires_at = parse_expiry(expires) if expires is not None else None
        for path in dataset:
            if not path.exists() and not path.is_symlink():
                raise InvalidArgument(f"--dataset {path}: no such file or directory")
        try:
            approval = services.approvals.create(
                purpose,
                dataset,
                created_by=os_user(),
                expires_at=expires_at,
                max_runs=max_runs,
                allow_identifiers=allow_identifiers,
            )
        except OSError as exc:
            raise InvalidArgument(f"--dataset {exc.filename or ''}: {exc.strerror or exc}") from None
        audited(
            services,
            "approval.create",
            approval.id,
            purpose=approval.purpose,
            datasets=",".join(d.sha256 for d in approval.datasets),
            dataset_count=len(approval.datasets),
            expires_at=iso(approval.expires_at),
            max_runs=approval.max_runs,
            allow_identifiers=approval.allow_identifiers,
            state=approval.decision.value,
            decided_by=approval.decided_by,
        )
    if as_json:
        emit_json(approval_record(approval))
        return
    out = console()
    out.print(f"Created approval {approval.id}", markup=False)
    for item in approval.datasets:
        out.print(f"  {item.sha256}  {item.path}", markup=False)


@approval_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List every approval, oldest first: its tenant (none: the host's), state and requester.

    The state is pending, rejected or withdrawn as decided, or for an approved one active, revoked,
    expired or exhausted.
    """
    with opened(ctx) as services:
        approvals = services.approvals.list_approvals()
    now = datetime.now(UTC)
    if as_json:
        emit_json([approval_record(a, now) for a in approvals])
        return
    table = Table(title=f"{len(approvals)} approvals", title_justify="left")
    for column in ("id", "tenant", "state", "requester", "runs", "expires", "purpose"):
        table.add_column(column, no_wrap=column in ("id", "requester"))  # ids whole, to be copied
    for a in approvals:
        runs = f"{a.runs_used}/{a.max_runs}" if a.max_runs is not None else str(a.runs_used)
        purpose = a.purpose if len(a.purpose) <= _PURPOSE_CELL else a.purpose[: _PURPOSE_CELL - 1] + "…"
        row = (a.tenant or "-", a.state(now).value, a.requested_by, runs, short_time(a.expires_at), purpose)
        table.add_row(a.id, *(escape(cell) for cell in row))
    console().print(table)


@approval_app.command("revoke")
def revoke(
    ctx: typer.Context,
    approval_id: ApprovalId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with the revocation).")] = None,
    as_json: AsJson = False,
) -> None:
    """Revoke an approved approval (idempotent): no job starts under it again; running ones are not stopped."""
    with opened(ctx) as services:
        checked = check_reason(reason, required=False)
        approval = services.approvals.revoke(approval_id, by=f"{HOST_KIND}:{os_user()}", reason=checked)
        audited(
            services,
            "approval.revoke",
            approval.id,
            purpose=approval.purpose,
            datasets=",".join(d.sha256 for d in approval.datasets),
            runs_used=approval.runs_used,
            reason=checked,
            approval_tenant=approval.tenant,
        )
    if as_json:
        emit_json(approval_record(approval))
    else:
        console().print(f"Revoked approval {approval.id} at {short_time(approval.revoked_at)}.", markup=False)
