"""The command line beside tenants' approval requests: approver and train keys, and listing requests with the host's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.cli.conftest import Warden
from warden.cli.approvals import parse_expiry as cli_expiry
from warden.jobs.approval_requests import ApprovalDesk, parse_expiry, request_terms
from warden.storage.tables import utcnow
from warden.tenancy import Principal, Scope


def pending_request(warden: Warden, tenant: str = "bank") -> tuple[str, str]:
    """A pending request of ``tenant`` by a new train key; its id and the key id."""
    with warden.services() as services:
        issued = services.tenants.create_key(tenant, Scope.TRAIN)
        scientist: Principal = services.tenants.authenticate(issued.key)
        terms = request_terms(utcnow(), purpose="fraud model v3", datasets=["tx:2"], max_runs=2, expires="30d")
        return ApprovalDesk(services.approvals).submit(scientist, terms).id, issued.key_id


def test_an_operator_issues_an_operator_wide_approve_key_and_init_still_sees_no_operator(warden: Warden) -> None:
    issued = warden.json("key", "create", "--operator", "--scope", "approve")
    with warden.services() as services:
        principal = services.tenants.authenticate(issued["key"])
        assert (principal.tenant_id, principal.scope, principal.is_operator) == (None, Scope.APPROVE, False)
        assert not services.tenants.has_operator_key()  # an approver's key is no operator's: init may still run
    listed = warden.json("key", "list")
    assert [(k["key_id"], k["tenant"], k["scope"]) for k in listed] == [(issued["key_id"], None, "approve")]
    assert "admin_key" in warden.json("init")


@pytest.mark.parametrize("scope", ["train", "approve"])
def test_a_tenant_key_of_the_new_scopes_is_issued(warden: Warden, scope: str) -> None:
    warden.json("tenant", "create", "bank")
    issued = warden.json("key", "create", "bank", "--scope", scope)
    with warden.services() as services:
        principal = services.tenants.authenticate(issued["key"])
    assert (principal.tenant_name, principal.scope.value) == ("bank", scope)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["key", "create", "--operator", "--scope", "detect"], id="operator detect key"),
        pytest.param(["key", "create", "--operator", "--scope", "train"], id="operator train key"),
        pytest.param(["key", "create", "bank", "--operator", "--scope", "approve"], id="tenant and operator"),
        pytest.param(["key", "create", "--scope", "approve"], id="neither tenant nor operator"),
        pytest.param(["key", "create", "bank", "--scope", "dpo"], id="unknown scope"),
    ],
)
def test_a_key_the_scopes_do_not_allow_is_a_usage_error(warden: Warden, args: list[str]) -> None:
    warden.json("tenant", "create", "bank")
    result = warden(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("warden: error: invalid_argument: ")
    assert warden.json("key", "list") == []


def test_list_shows_each_approvals_tenant_state_and_requester(warden: Warden, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    warden.json("tenant", "create", "bank")
    approval_id, key_id = pending_request(warden)
    [listed] = warden.json("approval", "list")
    assert (listed["id"], listed["tenant"], listed["state"]) == (approval_id, "bank", "pending")
    assert (listed["requested_by"], listed["requested_by_kind"], listed["decided_by"]) == (key_id, "api_key", None)
    assert (listed["dataset_refs"], listed["datasets"], listed["max_runs"]) == (["tx:2"], [], 2)
    table = warden("approval", "list")
    assert table.exit_code == 0
    for cell in (approval_id, "bank", "pending", key_id):
        assert cell in table.stdout


def test_the_host_cannot_revoke_a_request_nobody_approved(warden: Warden) -> None:
    warden.json("tenant", "create", "bank")
    approval_id, _ = pending_request(warden)
    result = warden("approval", "revoke", approval_id)
    assert result.exit_code == 1
    assert result.stderr.startswith("warden: error: approval_not_approved: ")
    assert warden.json("approval", "list")[0]["state"] == "pending"


@pytest.mark.parametrize(
    "text", ["30d", "12h", "4w", "90m", "45s", "2030-01-02T03:04:05Z", "2030-01-02T03:04:05", "2030-01-02T05:04+02:00"]
)
def test_a_request_reads_its_expiry_as_the_cli_reads_expires(text: str) -> None:
    now = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
    assert parse_expiry(text, now) == cli_expiry(text, now=now)
