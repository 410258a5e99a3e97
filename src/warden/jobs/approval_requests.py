"""Tenants' approval requests and their decisions, with separation of duties.

A tenant's ``admin`` or ``train`` key requests an approval (:meth:`ApprovalDesk.submit`): a purpose,
datasets of its dataset service as ``name:version`` (admission resolves each to the content hash of
that stored version, so an approval never covers other bytes under the same name), a run budget,
an expiry, the runtimes and GPUs a job may use, and whether the data may hold direct identifiers.
It is ``pending`` until an ``approve`` key decides it: one of the same tenant, or an operator-wide
one (bound to no tenant). The state machine::

    pending ──approve──► approved ──revoke──► revoked
       ├──reject───► rejected
       └──withdraw─► withdrawn        (by the tenant's admin or train keys)

Anything else is refused: deciding or withdrawing what is no longer pending (or has expired)
is ``ApprovalNotPending``, revoking what was never approved ``ApprovalNotApproved``; revoking a
revoked approval answers it unchanged. The principal that requested an approval can never approve
or reject it (``SelfApproval``): key ids are compared, and for JWT principals their ``jwt:<sub>``,
so the same subject is refused whatever scope its next token carries. Every transition is one
conditional UPDATE, so two deciders racing on one request cannot both win.

A tenant's callers see only their tenant's approvals; another tenant's id is ``ApprovalNotFound``,
exactly as a missing one. Operator-wide approvers and operators see every approval, the host's
(``warden approval create``) among them. Operator ``admin`` keys may read and revoke, never
approve or reject: a decision is a data-protection officer's, so an operator who must decide
issues itself an operator-wide ``approve`` key (``warden key create --operator --scope approve``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, and_, or_, select

from warden.errors import ApprovalNotPending, Forbidden, InvalidArgument, SelfApproval
from warden.jobs.approvals import (
    ApprovalService,
    ApprovalState,
    ApprovalView,
    DatasetRef,
    Decision,
    check_limits,
    check_purpose,
    find,
    new_row,
    transition,
    view_of,
)
from warden.storage.tables import Approval, ApprovalDatasetRef
from warden.tenancy.principal import REQUEST_SCOPES, Principal
from warden.tenancy.service import NAME_PATTERN

MAX_DATASET_REFS: Final = 13
"""At most this many datasets per request, so that every ``name:version`` fits one audit record."""
MAX_DATASET_VERSION: Final = 2**31 - 1
MAX_RUNTIMES: Final = 16
MAX_RUNS: Final = 1_000_000
MAX_GPUS: Final = 64
MAX_REASON: Final = 500
MAX_EXPIRES_TEXT: Final = 64
_DURATION: Final = re.compile(r"(\d{1,9})([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class RequestTerms:
    """What a tenant asks to be allowed, as validated by :func:`request_terms`."""

    purpose: str
    datasets: tuple[DatasetRef, ...]
    max_runs: int
    expires_at: datetime
    runtimes: tuple[str, ...] | None = None
    max_gpus: int = 0
    allow_identifiers: bool = False


def parse_dataset_ref(text: str) -> DatasetRef:
    """``name:version``: a dataset name as models are named, and a version from 1; ``InvalidArgument`` otherwise."""
    name, colon, version = text.partition(":")
    digits = version.isascii() and version.isdigit() and len(version) <= 10
    if not colon or not NAME_PATTERN.fullmatch(name) or not digits or not 1 <= int(version) <= MAX_DATASET_VERSION:
        raise InvalidArgument(
            f"dataset {text[:80]!r} is not name:version (a name of 1-63 of a-z 0-9 _ -, and a version from 1)"
        )
    return DatasetRef(name, int(version))


def parse_expiry(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (no offset: UTC) or a duration from ``now`` (``90d``, ``12h``, ``4w``), as the CLI's
    ``--expires`` reads it; ``InvalidArgument`` otherwise."""
    text = text.strip()
    if len(text) > MAX_EXPIRES_TEXT:
        raise InvalidArgument(f"expires: at most {MAX_EXPIRES_TEXT} characters")
    try:
        duration = _DURATION.fullmatch(text)
        if duration is not None:
            return now + timedelta(**{_UNITS[duration[2]]: int(duration[1])})
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"expires: {text!r} is neither an ISO 8601 time (2026-11-22T10:00:00Z) nor a duration (30d, 12h)"
        ) from None
    except OverflowError:
        raise InvalidArgument(f"expires: {text!r} is too far ahead") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def request_terms(
    now: datetime,
    *,
    purpose: str,
    datasets: Sequence[str],
    max_runs: int,
    expires: str,
    runtimes: Sequence[str] | None = None,
    max_gpus: int = 0,
    allow_identifiers: bool = False,
) -> RequestTerms:
    """Validate a request's terms; ``InvalidArgument`` names the first that is wrong."""
    check_purpose(purpose)
    if not datasets:
        raise InvalidArgument("a request needs at least one dataset")
    if len(datasets) > MAX_DATASET_REFS:
        raise InvalidArgument(f"a request names at most {MAX_DATASET_REFS} datasets")
    refs = tuple(parse_dataset_ref(text) for text in datasets)
    if len(set(refs)) != len(refs):
        raise InvalidArgument("a dataset is named twice")
    if isinstance(max_runs, bool) or not 1 <= max_runs <= MAX_RUNS:
        raise InvalidArgument(f"max_runs must be 1 to {MAX_RUNS}, got {max_runs}")
    expires_at = parse_expiry(expires, now)
    check_limits(now, expires_at, max_runs)
    if runtimes is not None:
        if len(runtimes) > MAX_RUNTIMES:
            raise InvalidArgument(f"a request names at most {MAX_RUNTIMES} runtimes")
        for name in runtimes:
            if not NAME_PATTERN.fullmatch(name):
                raise InvalidArgument(f"runtime {name[:80]!r} is not a name (1-63 of a-z 0-9 _ -)")
        if len(set(runtimes)) != len(runtimes):
            raise InvalidArgument("a runtime is named twice")
    if isinstance(max_gpus, bool) or not 0 <= max_gpus <= MAX_GPUS:
        raise InvalidArgument(f"max_gpus must be 0 to {MAX_GPUS}, got {max_gpus}")
    return RequestTerms(
        purpose=purpose,
        datasets=refs,
        max_runs=max_runs,
        expires_at=expires_at,
        runtimes=tuple(runtimes) if runtimes is not None else None,
        max_gpus=max_gpus,
        allow_identifiers=allow_identifiers,
    )


def check_reason(reason: str | None, *, required: bool) -> str | None:
    """A decision's reason: 1-500 characters of text without control characters; required to reject."""
    if reason is None or not reason.strip():
        if required:
            raise InvalidArgument("a reason is required")
        return None
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"the reason is {len(reason)} characters long; at most {MAX_REASON} are allowed")
    if any(ord(c) < 32 and c not in "\t\n" for c in reason):
        raise InvalidArgument("the reason must not hold control characters")
    return reason


def _requester(caller: Principal) -> int:
    if caller.tenant_id is None or caller.scope not in REQUEST_SCOPES:
        raise Forbidden("approval requests need a tenant's key with the 'admin' or 'train' scope")
    return caller.tenant_id


def _approver(caller: Principal) -> int | None:
    """The tenant an approver decides for (``None``: every tenant, for an operator-wide one)."""
    if not caller.is_approver:
        raise Forbidden("deciding approvals needs a key with the 'approve' scope")
    return caller.tenant_id


def _overseer(caller: Principal) -> int | None:
    """The tenant a reader of the approvals inbox, or a revoker, acts for: approvers and operators."""
    if not (caller.is_approver or caller.is_operator):
        raise Forbidden("this needs a key with the 'approve' scope, or an operator's admin key")
    return caller.tenant_id


class ApprovalDesk:
    """Requests, inboxes and decisions over an :class:`~warden.jobs.approvals.ApprovalService`, each checked
    against the calling principal (see the module docstring for who may do what)."""

    def __init__(self, approvals: ApprovalService) -> None:
        self._approvals = approvals
        self._db = approvals.db

    def now(self) -> datetime:
        """The current time, as the approvals' clock tells it."""
        return self._approvals.now()

    def submit(self, caller: Principal, terms: RequestTerms) -> ApprovalView:
        """Record ``caller``'s request for its tenant: ``pending``, requested by its key id (or ``jwt:<sub>``)."""
        tenant_id = _requester(caller)
        row = new_row(
            self._approvals.now(),
            tenant_id=tenant_id,
            purpose=terms.purpose,
            created_by=caller.key_id,
            expires_at=terms.expires_at,
            max_runs=terms.max_runs,
            allow_identifiers=terms.allow_identifiers,
            state=Decision.PENDING.value,
            requested_by=caller.key_id,
            requested_by_kind=caller.authenticator,
            runtimes=list(terms.runtimes) if terms.runtimes is not None else None,
            max_gpus=terms.max_gpus,
            dataset_refs=[
                ApprovalDatasetRef(position=n, name=d.name, version=d.version) for n, d in enumerate(terms.datasets)
            ],
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()
            return view_of(row)

    def mine(self, caller: Principal, state: ApprovalState | None = None) -> list[ApprovalView]:
        """The requests of ``caller``'s tenant (in ``state``, when given), oldest first."""
        return self._list(_requester(caller), state, every=False)

    def show_mine(self, caller: Principal, approval_id: str) -> ApprovalView:
        """One request of ``caller``'s tenant; another tenant's answers ``ApprovalNotFound`` like a missing one."""
        tenant_id = _requester(caller)
        with self._db.session() as session:
            return view_of(find(session, approval_id, tenant_id))

    def inbox(self, caller: Principal, state: ApprovalState | None = None) -> list[ApprovalView]:
        """What an approver (or an operator) oversees, in ``state`` when given (``pending``: the inbox)."""
        tenant_id = _overseer(caller)
        return self._list(tenant_id, state, every=tenant_id is None)

    def show(self, caller: Principal, approval_id: str) -> ApprovalView:
        """One approval an approver (or an operator) oversees."""
        tenant_id = _overseer(caller)
        with self._db.session() as session:
            return view_of(find(session, approval_id, tenant_id))

    def withdraw(self, caller: Principal, approval_id: str) -> ApprovalView:
        """Withdraw a pending request of ``caller``'s tenant (by any of its admin or train keys)."""
        tenant_id = _requester(caller)
        return self._end_pending(caller, approval_id, tenant_id, Decision.WITHDRAWN, None)

    def approve(self, caller: Principal, approval_id: str, reason: str | None = None) -> ApprovalView:
        """Approve a pending request; never by the principal that requested it (``SelfApproval``)."""
        tenant_id = _approver(caller)
        checked = check_reason(reason, required=False)
        return self._end_pending(caller, approval_id, tenant_id, Decision.APPROVED, checked)

    def reject(self, caller: Principal, approval_id: str, reason: str) -> ApprovalView:
        """Reject a pending request, with a reason (required); never by the principal that requested it."""
        tenant_id = _approver(caller)
        checked = check_reason(reason, required=True)
        return self._end_pending(caller, approval_id, tenant_id, Decision.REJECTED, checked)

    def revoke(self, caller: Principal, approval_id: str, reason: str | None = None) -> ApprovalView:
        """Revoke an approved approval (approvers and operators); no job starts under it again."""
        tenant_id = _overseer(caller)
        checked = check_reason(reason, required=False)
        return self._approvals.revoke(approval_id, by=caller.key_id, reason=checked, tenant_id=tenant_id)

    def _list(self, tenant_id: int | None, state: ApprovalState | None, *, every: bool) -> list[ApprovalView]:
        query = select(Approval).order_by(Approval.created_at, Approval.id)
        if not every:
            query = query.where(Approval.tenant_id == tenant_id)
        if state is not None:
            query = query.where(state_condition(state, self._approvals.now()))
        with self._db.session() as session:
            return [view_of(row) for row in session.scalars(query)]

    def _end_pending(
        self, caller: Principal, approval_id: str, tenant_id: int | None, to: Decision, reason: str | None
    ) -> ApprovalView:
        """Move a pending, unexpired request to ``to`` by one conditional UPDATE; explain a refusal after."""
        now = self._approvals.now()
        deciding = to is not Decision.WITHDRAWN
        conditions = [
            Approval.state == Decision.PENDING.value,
            or_(Approval.expires_at.is_(None), Approval.expires_at > now),
        ]
        if deciding:
            conditions.append(Approval.requested_by != caller.key_id)
        values = {"state": to.value, "decided_by": caller.key_id, "decided_at": now, "reason": reason}
        with self._db.session() as session:
            changed, row = transition(session, approval_id, tenant_id, conditions, values)
            if deciding and row.requested_by == caller.key_id:
                raise SelfApproval(f"approval {row.id} was requested by this principal; another approver must decide")
            if not changed:
                raise ApprovalNotPending(f"approval {row.id} is {view_of(row).state(now).value}, not pending")
            return view_of(row)


def state_condition(state: ApprovalState, now: datetime) -> ColumnElement[bool]:
    """The SQL condition of approvals in ``state`` at ``now`` (as :meth:`ApprovalView.state` derives it)."""
    expired = and_(Approval.expires_at.is_not(None), Approval.expires_at <= now)
    live = or_(Approval.expires_at.is_(None), Approval.expires_at > now)
    used_up = and_(Approval.max_runs.is_not(None), Approval.runs_used >= Approval.max_runs)
    approved = and_(Approval.state == Decision.APPROVED.value, Approval.revoked_at.is_(None))
    conditions: dict[ApprovalState, ColumnElement[bool]] = {
        ApprovalState.PENDING: and_(Approval.state == Decision.PENDING.value, live),
        ApprovalState.REJECTED: Approval.state == Decision.REJECTED.value,
        ApprovalState.WITHDRAWN: Approval.state == Decision.WITHDRAWN.value,
        ApprovalState.REVOKED: or_(Approval.state == Decision.REVOKED.value, Approval.revoked_at.is_not(None)),
        ApprovalState.EXPIRED: and_(or_(Approval.state == Decision.PENDING.value, approved), expired),
        ApprovalState.EXHAUSTED: and_(approved, live, used_up),
        ApprovalState.ACTIVE: and_(approved, live, ~used_up),
    }
    return conditions[state]
