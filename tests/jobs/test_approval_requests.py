"""Tenants' approval requests: their terms, who may decide them, the state machine, and races, on both backends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.backends import BACKENDS, database_url
from warden.errors import (
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalRefusal,
    ApprovalRefused,
    Forbidden,
    InvalidArgument,
    SelfApproval,
    WardenError,
)
from warden.jobs.approval_requests import (
    MAX_DATASET_REFS,
    ApprovalDesk,
    RequestTerms,
    parse_dataset_ref,
    parse_expiry,
    request_terms,
)
from warden.jobs.approvals import ApprovalService, ApprovalState, DatasetRef, Decision
from warden.storage import Database
from warden.tenancy import Principal, Scope, TenantService

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the service."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Desk:
    """The desk over a migrated database with tenants ``bank`` and ``other``, its clock, and principals."""

    desk: ApprovalDesk
    approvals: ApprovalService
    clock: Clock
    tenants: dict[str, int]

    def key(self, tenant: str | None, scope: Scope, key_id: str, authenticator: str = "api_key") -> Principal:
        tenant_id = self.tenants[tenant] if tenant is not None else None
        return Principal(tenant_id, tenant, key_id, scope, authenticator)


@pytest.fixture(params=BACKENDS)
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    with database_url(request.param, tmp_path) as url:
        db = Database(url)
        db.migrate()
        try:
            tenants = TenantService(db, b"s" * 32)
            for name in ("bank", "other"):
                tenants.create_tenant(name)
            clock = Clock()
            approvals = ApprovalService(db, clock)
            ids = {name: tenants.tenant_id(name) for name in ("bank", "other")}
            yield Desk(ApprovalDesk(approvals), approvals, clock, ids)
        finally:
            db.close()


def terms(**changes: object) -> RequestTerms:
    values: dict[str, object] = {
        "purpose": "fraud model v3",
        "datasets": ["transactions:2", "customers:1"],
        "max_runs": 3,
        "expires": "30d",
    }
    values.update(changes)
    return request_terms(T0, **values)  # type: ignore[arg-type]


def scientist(d: Desk, tenant: str = "bank") -> Principal:
    return d.key(tenant, Scope.TRAIN, "5c1e0000000a" if tenant == "bank" else "5c1e0000000b")


def officer(d: Desk, tenant: str | None = "bank") -> Principal:
    return d.key(tenant, Scope.APPROVE, {"bank": "d9000000000a", "other": "d9000000000b", None: "d900000000ff"}[tenant])


# --- terms ----------------------------------------------------------------------------------------------------


def test_when_terms_are_valid_then_they_are_kept_as_given() -> None:
    made = terms(runtimes=["torch-2-5"], max_gpus=2, allow_identifiers=True)
    assert made.datasets == (DatasetRef("transactions", 2), DatasetRef("customers", 1))
    assert (made.max_runs, made.expires_at, made.runtimes, made.max_gpus) == (
        3,
        T0 + timedelta(days=30),
        ("torch-2-5",),
        2,
    )
    assert made.allow_identifiers


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"purpose": " "}, "must not be empty", id="blank purpose"),
        pytest.param({"datasets": []}, "at least one dataset", id="no dataset"),
        pytest.param({"datasets": [f"d{n}:1" for n in range(MAX_DATASET_REFS + 1)]}, "at most", id="too many"),
        pytest.param({"datasets": ["tx:1", "tx:1"]}, "named twice", id="twice"),
        pytest.param({"datasets": ["tx"]}, "name:version", id="no version"),
        pytest.param({"datasets": ["tx:0"]}, "name:version", id="version 0"),
        pytest.param({"datasets": ["tx:-1"]}, "name:version", id="negative version"),
        pytest.param({"datasets": ["tx:2147483648"]}, "name:version", id="version past int32"),
        pytest.param({"datasets": ["tx:²"]}, "name:version", id="other digits"),
        pytest.param({"datasets": ["Tx:1"]}, "name:version", id="uppercase name"),
        pytest.param({"datasets": ["../tx:1"]}, "name:version", id="path"),
        pytest.param({"max_runs": 0}, "max_runs", id="zero runs"),
        pytest.param({"max_runs": 1_000_001}, "max_runs", id="too many runs"),
        pytest.param({"expires": "yesterday"}, "neither", id="not a time"),
        pytest.param({"expires": "2026-12-08T08:00:00Z"}, "not in the future", id="past"),
        pytest.param({"expires": "0s"}, "not in the future", id="now"),
        pytest.param({"expires": "999999999w"}, "too far", id="overflow"),
        pytest.param({"runtimes": ["Torch"]}, "not a name", id="bad runtime"),
        pytest.param({"runtimes": ["a", "a"]}, "named twice", id="runtime twice"),
        pytest.param({"max_gpus": -1}, "max_gpus", id="negative gpus"),
        pytest.param({"max_gpus": 65}, "max_gpus", id="too many gpus"),
    ],
)
def test_when_a_term_is_wrong_then_invalid_argument_names_it(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        terms(**changes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12h", T0 + timedelta(hours=12)),
        ("4w", T0 + timedelta(weeks=4)),
        ("2027-01-01T00:00:00", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T02:00:00+02:00", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_an_expiry_is_an_iso_time_or_a_duration_as_the_cli_reads_it(text: str, expected: datetime) -> None:
    assert parse_expiry(text, T0) == expected


def test_a_dataset_reference_prints_as_it_was_written() -> None:
    assert str(parse_dataset_ref("transactions_2026:12")) == "transactions_2026:12"


# --- the flow -----------------------------------------------------------------------------------------------


def test_when_a_scientist_requests_and_the_officer_approves_then_it_admits_runs(desk: Desk) -> None:
    asked = desk.desk.submit(scientist(desk), terms(runtimes=["torch"], max_gpus=1))
    assert (asked.tenant, asked.decision, asked.state(T0)) == ("bank", Decision.PENDING, ApprovalState.PENDING)
    assert (asked.requested_by, asked.requested_by_kind, asked.decided_by) == ("5c1e0000000a", "api_key", None)
    assert [str(d) for d in asked.dataset_refs] == ["transactions:2", "customers:1"]
    assert asked.datasets == ()
    with pytest.raises(ApprovalRefused) as refused:
        desk.approvals.consume(asked.id)
    assert refused.value.reason is ApprovalRefusal.NOT_APPROVED

    desk.clock.now = T0 + timedelta(hours=1)
    approved = desk.desk.approve(officer(desk), asked.id, "minimised data, DPIA 2026-41")
    assert (approved.state(desk.clock.now), approved.decided_by) == (ApprovalState.ACTIVE, "d9000000000a")
    assert (approved.decided_at, approved.reason) == (T0 + timedelta(hours=1), "minimised data, DPIA 2026-41")
    assert (approved.runtimes, approved.max_gpus, approved.max_runs) == (("torch",), 1, 3)
    assert desk.approvals.consume(asked.id).runs_used == 1
    assert [a.id for a in desk.desk.mine(scientist(desk), ApprovalState.ACTIVE)] == [asked.id]


def test_when_the_inbox_is_read_then_each_approver_sees_its_tenants_pending_requests(desk: Desk) -> None:
    bank = desk.desk.submit(scientist(desk), terms())
    desk.clock.now = T0 + timedelta(seconds=1)
    other = desk.desk.submit(scientist(desk, "other"), terms())
    assert [a.id for a in desk.desk.inbox(officer(desk), ApprovalState.PENDING)] == [bank.id]
    assert [a.id for a in desk.desk.inbox(officer(desk, "other"), ApprovalState.PENDING)] == [other.id]
    everyone = desk.desk.inbox(officer(desk, None), ApprovalState.PENDING)
    assert [a.id for a in everyone] == [bank.id, other.id]
    operator = desk.key(None, Scope.ADMIN, "0pe000000000")
    assert [a.id for a in desk.desk.inbox(operator)] == [bank.id, other.id]
    desk.desk.approve(officer(desk), bank.id)
    assert desk.desk.inbox(officer(desk), ApprovalState.PENDING) == []
    assert [a.id for a in desk.desk.inbox(officer(desk), ApprovalState.ACTIVE)] == [bank.id]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("approve", "requested by this principal"),
        ("reject", "requested by this principal"),
    ],
)
def test_when_the_same_jwt_subject_decides_its_own_request_then_self_approval(
    desk: Desk, action: str, message: str
) -> None:
    asked = desk.desk.submit(desk.key("bank", Scope.TRAIN, "jwt:alice", "jwt"), terms())
    same = desk.key("bank", Scope.APPROVE, "jwt:alice", "jwt")
    with pytest.raises(SelfApproval, match=message) as refused:
        getattr(desk.desk, action)(same, asked.id, "looks fine")
    assert refused.value.code == "self_approval"
    assert desk.approvals.get(asked.id).decision is Decision.PENDING
    approved = desk.desk.approve(desk.key("bank", Scope.APPROVE, "jwt:bob", "jwt"), asked.id)
    assert approved.decided_by == "jwt:bob"


@pytest.mark.parametrize(
    ("scope", "tenant", "allowed"),
    [
        (Scope.ADMIN, "bank", {"submit", "mine", "withdraw"}),
        (Scope.TRAIN, "bank", {"submit", "mine", "withdraw"}),
        (Scope.DETECT, "bank", set()),
        (Scope.APPROVE, "bank", {"inbox", "approve", "reject", "revoke"}),
        (Scope.APPROVE, None, {"inbox", "approve", "reject", "revoke"}),
        (Scope.ADMIN, None, {"inbox", "revoke"}),
    ],
)
def test_each_scope_may_do_only_its_part(desk: Desk, scope: Scope, tenant: str | None, allowed: set[str]) -> None:
    caller = desk.key(tenant, scope, "ca11e7000000")
    calls: dict[str, Callable[[str], object]] = {
        "submit": lambda _: desk.desk.submit(caller, terms()),
        "mine": lambda _: desk.desk.mine(caller),
        "inbox": lambda _: desk.desk.inbox(caller),
        "withdraw": lambda a: desk.desk.withdraw(caller, a),
        "approve": lambda a: desk.desk.approve(caller, a),
        "reject": lambda a: desk.desk.reject(caller, a, "no"),
        "revoke": lambda a: desk.desk.revoke(caller, a),
    }
    done = set()
    for name, call in calls.items():
        target = desk.desk.submit(scientist(desk), terms()).id
        if name == "revoke":
            desk.desk.approve(officer(desk), target)
        try:
            call(target)
        except Forbidden:
            continue
        done.add(name)
    assert done == allowed


@pytest.mark.parametrize(
    "action", ["show_mine", "withdraw", "show", "approve", "reject", "revoke"], ids=lambda action: action
)
def test_another_tenants_request_is_not_found_exactly_like_a_missing_one(desk: Desk, action: str) -> None:
    theirs = desk.desk.submit(scientist(desk, "other"), terms())
    if action == "revoke":
        desk.desk.approve(officer(desk, "other"), theirs.id)
    caller = officer(desk) if action in ("show", "approve", "reject", "revoke") else scientist(desk)
    arguments = ("a reason",) if action == "reject" else ()
    missing = "apr_" + "x" * 16
    answers = []
    for approval_id in (theirs.id, missing):
        with pytest.raises(ApprovalNotFound) as caught:
            getattr(desk.desk, action)(caller, approval_id, *arguments)
        answers.append((caught.value.code, caught.value.message.replace(approval_id, "ID")))
    assert answers[0] == answers[1] == ("approval_not_found", "no approval with id 'ID'")
    assert desk.approvals.get(theirs.id).state(T0) is (
        ApprovalState.ACTIVE if action == "revoke" else ApprovalState.PENDING
    )


def test_a_rejection_needs_a_reason_and_keeps_it(desk: Desk) -> None:
    asked = desk.desk.submit(scientist(desk), terms())
    for reason in ("", "  \n"):
        with pytest.raises(InvalidArgument, match="reason is required"):
            desk.desk.reject(officer(desk), asked.id, reason)
    assert desk.approvals.get(asked.id).decision is Decision.PENDING
    rejected = desk.desk.reject(officer(desk), asked.id, "identifiers not minimised")
    assert (rejected.decision, rejected.reason, rejected.decided_by) == (
        Decision.REJECTED,
        "identifiers not minimised",
        "d9000000000a",
    )


# --- the state machine ----------------------------------------------------------------------------------------

STARTS = {
    "pending": ApprovalState.PENDING,
    "active": ApprovalState.ACTIVE,
    "rejected": ApprovalState.REJECTED,
    "withdrawn": ApprovalState.WITHDRAWN,
    "revoked": ApprovalState.REVOKED,
    "expired pending": ApprovalState.EXPIRED,
    "expired": ApprovalState.EXPIRED,
    "exhausted": ApprovalState.EXHAUSTED,
}


def start_in(d: Desk, start: str) -> str:
    """A request of ``bank`` brought into ``start``; the clock left where the state holds."""
    asked = d.desk.submit(scientist(d), terms(max_runs=1, expires="1d")).id
    if start in ("active", "revoked", "expired", "exhausted"):
        d.desk.approve(officer(d), asked)
    if start == "rejected":
        d.desk.reject(officer(d), asked, "no")
    if start == "withdrawn":
        d.desk.withdraw(scientist(d), asked)
    if start == "revoked":
        d.desk.revoke(officer(d), asked, "breach")
    if start == "exhausted":
        d.approvals.consume(asked)
    if start in ("expired pending", "expired"):
        d.clock.now = T0 + timedelta(days=1)
    return asked


NOT_PENDING = ApprovalNotPending.code
NOT_APPROVED = ApprovalNotApproved.code
TRANSITIONS = {
    # start: (approve, reject, withdraw, revoke) -> the state it leads to, or the refusal's code
    "pending": ("active", "rejected", "withdrawn", NOT_APPROVED),
    "active": (NOT_PENDING, NOT_PENDING, NOT_PENDING, "revoked"),
    "rejected": (NOT_PENDING, NOT_PENDING, NOT_PENDING, NOT_APPROVED),
    "withdrawn": (NOT_PENDING, NOT_PENDING, NOT_PENDING, NOT_APPROVED),
    "revoked": (NOT_PENDING, NOT_PENDING, NOT_PENDING, "revoked"),
    "expired pending": (NOT_PENDING, NOT_PENDING, NOT_PENDING, NOT_APPROVED),
    "expired": (NOT_PENDING, NOT_PENDING, NOT_PENDING, "revoked"),
    "exhausted": (NOT_PENDING, NOT_PENDING, NOT_PENDING, "revoked"),
}
ACTIONS = ("approve", "reject", "withdraw", "revoke")


@pytest.mark.parametrize(
    ("start", "action", "expected"),
    [(start, action, TRANSITIONS[start][n]) for start in STARTS for n, action in enumerate(ACTIONS)],
    ids=[f"{start} --{action}" for start in STARTS for action in ACTIONS],
)
def test_the_state_machine(desk: Desk, start: str, action: str, expected: str) -> None:
    approval_id = start_in(desk, start)
    before = desk.approvals.get(approval_id)
    assert before.state(desk.clock.now) is STARTS[start]
    caller = scientist(desk) if action == "withdraw" else officer(desk)
    arguments = () if action == "withdraw" else ("a reason",)
    call = getattr(desk.desk, action)
    if expected not in {state.value for state in ApprovalState}:
        with pytest.raises(WardenError) as refused:
            call(caller, approval_id, *arguments)
        assert refused.value.code == expected
        assert desk.approvals.get(approval_id) == before  # a refusal changes nothing
        return
    after = call(caller, approval_id, *arguments)
    assert after.state(desk.clock.now).value == expected
    assert desk.approvals.get(approval_id) == after


def test_a_revoked_approval_keeps_its_first_revocation(desk: Desk) -> None:
    approval_id = start_in(desk, "revoked")
    first = desk.approvals.get(approval_id)
    desk.clock.now = T0 + timedelta(hours=2)
    again = desk.desk.revoke(officer(desk, None), approval_id, "again")
    assert (again.revoked_at, again.revoked_by, again.revoke_reason) == (first.revoked_at, "d9000000000a", "breach")


def test_when_two_approvers_race_then_exactly_one_decision_wins(desk: Desk) -> None:
    asked = desk.desk.submit(scientist(desk), terms()).id
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        caller = desk.key("bank" if n % 2 else None, Scope.APPROVE, f"d9{n:010d}")
        barrier.wait()
        try:
            if n % 3:
                desk.desk.approve(caller, asked)
            else:
                desk.desk.reject(caller, asked, "no")
            outcome = "won"
        except ApprovalNotPending:
            outcome = "not pending"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["not pending"] * 5 + ["won"]
    assert desk.approvals.get(asked).decision in (Decision.APPROVED, Decision.REJECTED)


def test_a_host_approval_is_an_operators_approved_from_the_start(desk: Desk, tmp_path: Path) -> None:
    data = tmp_path / "tx.csv"
    data.write_text("amount\n1\n")
    made = desk.approvals.create("host training", [data], created_by="root")
    assert (made.tenant, made.decision, made.requested_by, made.decided_by) == (
        None,
        Decision.APPROVED,
        "cli:root",
        "cli:root",
    )
    assert (made.requested_by_kind, made.decided_at) == ("cli", T0)
    assert made.id not in [a.id for a in desk.desk.inbox(officer(desk))]  # a tenant's approver sees its own only
    with pytest.raises(ApprovalNotFound):
        desk.desk.show(officer(desk), made.id)
    assert desk.desk.show(officer(desk, None), made.id) == made
