"""Approval requests over HTTP: a tenant asks (``/v1/approvals``), someone else decides (``/admin/approvals``).

Through the shared world of tests/api/conftest.py (SQLite and PostgreSQL): ``alpha`` and ``beta``
each get a ``train`` and an ``approve`` key, ``beta`` an admin key, and there is an operator-wide
approver. Each test makes its own requests, so their order does not matter.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from tests.api.conftest import World
from warden.api import create_app
from warden.audit import AuditEvent, AuditFilter
from warden.tenancy import Authenticator, JwtVerifier, Scope

ISSUER = "https://idp.bank.example/"


@dataclass(frozen=True)
class Cast:
    """The world and its keys by role."""

    world: World
    keys: dict[str, str]

    def key_id(self, who: str) -> str:
        return self.keys[who].split("_")[1]

    def call(self, who: str, method: str, path: str, body: object = None) -> httpx.Response:
        """Send a request as ``who`` (a key's role, or ``none``), with a JSON body when given."""
        headers = {"X-Request-ID": uuid.uuid4().hex}
        if who != "none":
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        client = self.world.client
        if body is None:
            return client.request(method, path, headers=headers)
        return client.request(method, path, headers=headers, json=body)

    def request(self, who: str = "alpha_train", **changes: Any) -> dict[str, Any]:
        """A new request of ``who``'s tenant; it must be created (201, pending)."""
        answer = self.call(who, "POST", "/v1/approvals", request_body(**changes))
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        assert created["state"] == "pending"
        return created

    def audited(self, answer: httpx.Response) -> AuditEvent:
        """The audit record of the request that got ``answer``."""
        audit = self.world.services.audit
        assert audit.flush(timeout=30)
        [entry] = list(audit.scan(AuditFilter(request_id=answer.headers["x-request-id"])))
        return entry.event


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": "fraud model v3 on 2026 card transactions",
        "datasets": ["transactions:2", "chargebacks:1"],
        "max_runs": 3,
        "expires": "30d",
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def cast(world: World) -> Cast:
    tenants = world.services.tenants
    made = {
        "alpha_train": tenants.create_key("alpha", Scope.TRAIN),
        "alpha_approve": tenants.create_key("alpha", Scope.APPROVE),
        "beta_train": tenants.create_key("beta", Scope.TRAIN),
        "beta_approve": tenants.create_key("beta", Scope.APPROVE),
        "beta_admin": tenants.create_key("beta", Scope.ADMIN),
        "operator_approve": tenants.create_key(None, Scope.APPROVE),
    }
    keys = {name: issued.key for name, issued in made.items()} | {
        "alpha_admin": world.alpha_admin,
        "alpha_detect": world.alpha_detect,
        "beta_detect": world.beta_detect,
        "operator": world.operator,
    }
    return Cast(world, keys)


# --- the flow -------------------------------------------------------------------------------------------------


def test_a_scientist_requests_and_the_tenants_officer_approves_over_http(cast: Cast) -> None:
    created = cast.request(runtimes=["torch-2-5"], max_gpus=1)
    assert created["tenant"] == "alpha"
    assert (created["datasets"], created["hashed_datasets"]) == (["transactions:2", "chargebacks:1"], [])
    assert (created["requested_by"], created["requested_by_kind"]) == (cast.key_id("alpha_train"), "api_key")
    assert (created["runtimes"], created["max_gpus"], created["max_runs"], created["runs_used"]) == (
        ["torch-2-5"],
        1,
        3,
        0,
    )
    assert (created["decided_by"], created["allow_identifiers"]) == (None, False)
    inbox = cast.call("alpha_approve", "GET", "/admin/approvals?state=pending").json()
    assert created["id"] in [a["id"] for a in inbox]
    assert {a["tenant"] for a in inbox} == {"alpha"}

    approved = cast.call("alpha_approve", "POST", f"/admin/approvals/{created['id']}/approve", {"reason": "DPIA 41"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["decided_by"]) == ("active", cast.key_id("alpha_approve"))
    assert approved.json()["reason"] == "DPIA 41"
    seen = cast.call("alpha_train", "GET", f"/v1/approvals/{created['id']}").json()
    assert seen == approved.json()
    assert created["id"] not in [
        a["id"] for a in cast.call("alpha_approve", "GET", "/admin/approvals?state=pending").json()
    ]
    # What admission takes a run from: the approved request, by its id.
    assert cast.world.services.approvals.consume(created["id"]).runs_used == 1

    record = cast.audited(approved)
    assert (record.action, record.target, record.key_id, record.tenant) == (
        "approval.approve",
        created["id"],
        cast.key_id("alpha_approve"),
        "alpha",
    )
    assert (record.status, record.details["reason"], record.details["state"]) == (200, "DPIA 41", "active")
    assert record.details["requested_by"] == cast.key_id("alpha_train")


def test_the_request_is_audited_with_its_requester_and_terms(cast: Cast) -> None:
    answer = cast.call("alpha_admin", "POST", "/v1/approvals", request_body(allow_identifiers=True))
    assert answer.status_code == 201, answer.text
    record = cast.audited(answer)
    assert (record.action, record.target, record.key_id) == (
        "approval.request",
        answer.json()["id"],
        cast.key_id("alpha_admin"),
    )
    details = record.details
    assert (details["datasets"], details["dataset_count"], details["max_runs"]) == (
        "transactions:2,chargebacks:1",
        2,
        3,
    )
    assert (details["allow_identifiers"], details["state"], details["expires_at"]) == (
        True,
        "pending",
        answer.json()["expires_at"],
    )


def test_the_requesting_admin_key_cannot_approve_its_own_request(cast: Cast) -> None:
    created = cast.request("alpha_admin")
    for action in ("approve", "reject"):
        answer = cast.call("alpha_admin", "POST", f"/admin/approvals/{created['id']}/{action}", {"reason": "mine"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (403, "forbidden")
    assert cast.call("alpha_admin", "GET", f"/v1/approvals/{created['id']}").json()["state"] == "pending"


def test_a_rejection_needs_a_reason(cast: Cast) -> None:
    created = cast.request()
    path = f"/admin/approvals/{created['id']}/reject"
    for body in ({}, {"reason": None}, {"reason": "   "}):
        answer = cast.call("alpha_approve", "POST", path, body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_argument"), body
    rejected = cast.call("alpha_approve", "POST", path, {"reason": "identifiers not minimised"})
    assert (rejected.status_code, rejected.json()["state"]) == (200, "rejected")
    assert rejected.json()["reason"] == "identifiers not minimised"
    record = cast.audited(rejected)
    assert (record.action, record.key_id, record.details["reason"]) == (
        "approval.reject",
        cast.key_id("alpha_approve"),
        "identifiers not minimised",
    )


def test_withdraw_and_revoke_are_audited_with_their_actor_and_reason(cast: Cast) -> None:
    withdrawn = cast.call("alpha_train", "POST", f"/v1/approvals/{cast.request()['id']}/withdraw")
    assert (withdrawn.status_code, withdrawn.json()["state"]) == (200, "withdrawn")
    assert withdrawn.json()["decided_by"] == cast.key_id("alpha_train")
    record = cast.audited(withdrawn)
    assert (record.action, record.key_id, record.details["state"]) == (
        "approval.withdraw",
        cast.key_id("alpha_train"),
        "withdrawn",
    )

    approval = cast.request()["id"]
    cast.call("operator_approve", "POST", f"/admin/approvals/{approval}/approve", {})
    revoked = cast.call("operator", "POST", f"/admin/approvals/{approval}/revoke", {"reason": "breach reported"})
    assert (revoked.status_code, revoked.json()["state"]) == (200, "revoked")
    assert (revoked.json()["revoked_by"], revoked.json()["revoke_reason"]) == (
        cast.key_id("operator"),
        "breach reported",
    )
    assert revoked.json()["decided_by"] == cast.key_id("operator_approve")
    record = cast.audited(revoked)
    assert (record.action, record.key_id, record.details["reason"], record.details["approval_tenant"]) == (
        "approval.revoke",
        cast.key_id("operator"),
        "breach reported",
        "alpha",
    )


@pytest.mark.parametrize(
    ("before", "action", "status", "code"),
    [
        ("approved", "approve", 409, "approval_not_pending"),
        ("approved", "reject", 409, "approval_not_pending"),
        ("approved", "withdraw", 409, "approval_not_pending"),
        ("pending", "revoke", 409, "approval_not_approved"),
        ("withdrawn", "approve", 409, "approval_not_pending"),
        ("rejected", "revoke", 409, "approval_not_approved"),
    ],
)
def test_a_change_the_state_does_not_allow_is_a_409_with_its_code(
    cast: Cast, before: str, action: str, status: int, code: str
) -> None:
    approval = cast.request()["id"]
    if before == "approved":
        cast.call("alpha_approve", "POST", f"/admin/approvals/{approval}/approve", {})
    if before == "rejected":
        cast.call("alpha_approve", "POST", f"/admin/approvals/{approval}/reject", {"reason": "no"})
    if before == "withdrawn":
        cast.call("alpha_train", "POST", f"/v1/approvals/{approval}/withdraw")
    if action == "withdraw":
        answer = cast.call("alpha_train", "POST", f"/v1/approvals/{approval}/withdraw")
    else:
        answer = cast.call("alpha_approve", "POST", f"/admin/approvals/{approval}/{action}", {"reason": "r"})
    assert (answer.status_code, answer.json()["error"]["code"], answer.headers["x-error-code"]) == (status, code, code)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"datasets": ["transactions"]}, "name:version"),
        ({"datasets": ["transactions:0"]}, "name:version"),
        ({"datasets": ["tx:1", "tx:1"]}, "named twice"),
        ({"datasets": []}, "datasets"),
        ({"max_runs": 0}, "max_runs"),
        ({"max_runs": "3"}, "max_runs"),
        ({"expires": "2020-01-01T00:00:00Z"}, "not in the future"),
        ({"expires": "soon"}, "expires"),
        ({"runtimes": ["Torch 2"]}, "not a name"),
        ({"max_gpus": 65}, "max_gpus"),
        ({"allow_identifiers": "yes"}, "allow_identifiers"),
        ({"tenant": "beta"}, "tenant"),
        ({"purpose": ""}, "purpose"),
    ],
)
def test_a_bad_request_is_refused_and_nothing_is_recorded(cast: Cast, changes: dict[str, Any], field: str) -> None:
    before = len(cast.call("beta_train", "GET", "/v1/approvals").json())
    answer = cast.call("beta_train", "POST", "/v1/approvals", request_body(**changes))
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_argument")
    assert field in answer.json()["error"]["message"]
    assert len(cast.call("beta_train", "GET", "/v1/approvals").json()) == before


# --- who may do what -------------------------------------------------------------------------------------------

ROUTES = {
    "request": ("POST", "/v1/approvals"),
    "list": ("GET", "/v1/approvals"),
    "show": ("GET", "/v1/approvals/{id}"),
    "withdraw": ("POST", "/v1/approvals/{id}/withdraw"),
    "inbox": ("GET", "/admin/approvals?state=pending"),
    "show (admin)": ("GET", "/admin/approvals/{id}"),
    "approve": ("POST", "/admin/approvals/{id}/approve"),
    "reject": ("POST", "/admin/approvals/{id}/reject"),
    "revoke": ("POST", "/admin/approvals/{id}/revoke"),
    "detect": ("POST", "/v1/models/tiny/detect"),
    "list models": ("GET", "/v1/models"),
    "tenant": ("GET", "/admin/tenants/alpha"),
    "keys": ("GET", "/admin/tenants/alpha/keys"),
    "issue key": ("POST", "/admin/tenants/alpha/keys"),
    "models": ("GET", "/admin/tenants/alpha/models"),
    "audit": ("GET", "/admin/audit"),
    "usage": ("GET", "/admin/usage"),
}
ALLOWED = {
    "alpha_train": {"request", "list", "show", "withdraw"},
    "alpha_admin": {"request", "list", "show", "withdraw", "tenant", "keys", "issue key", "models", "audit", "usage"},
    "alpha_approve": {"inbox", "show (admin)", "approve", "reject", "revoke"},
    "operator_approve": {"inbox", "show (admin)", "approve", "reject", "revoke"},
    "operator": {"inbox", "show (admin)", "revoke", "tenant", "keys", "issue key", "models", "audit", "usage"},
    "alpha_detect": {"detect", "list models"},
}
BODIES: dict[str, object] = {
    "request": request_body(),
    "approve": {},
    "reject": {"reason": "no"},
    "revoke": {},
    "issue key": {"scope": "detect"},
}


@pytest.mark.parametrize(("who", "route"), [(who, route) for who in ALLOWED for route in ROUTES], ids=str)
def test_each_scope_reaches_exactly_its_routes(cast: Cast, who: str, route: str) -> None:
    method, path = ROUTES[route]
    approval = cast.request()["id"]
    if route == "revoke":
        cast.call("alpha_approve", "POST", f"/admin/approvals/{approval}/approve", {})
    path = path.format(id=approval)
    if route == "detect":  # a body that is no image: 400 once the key is let through
        headers = {"Authorization": f"Bearer {cast.keys[who]}", "Content-Type": "image/jpeg"}
        answer = cast.world.client.post(path, content=b"\xff\xd8", headers=headers)
    else:
        answer = cast.call(who, method, path, BODIES.get(route))
    if route in ALLOWED[who]:
        expected = {"request": 201, "issue key": 201, "detect": 400}.get(route, 200)
        assert answer.status_code == expected, answer.text
    else:
        assert (answer.status_code, answer.json()["error"]["code"]) == (403, "forbidden"), answer.text


def test_a_tenant_admin_issues_train_keys_but_only_an_operator_issues_approve_keys(cast: Cast) -> None:
    for scope, status in (("train", 201), ("approve", 403)):
        answer = cast.call("alpha_admin", "POST", "/admin/tenants/alpha/keys", {"scope": scope})
        assert answer.status_code == status, answer.text
    issued = cast.call("operator", "POST", "/admin/tenants/alpha/keys", {"scope": "approve"})
    assert issued.status_code == 201
    assert cast.world.services.tenants.authenticate(issued.json()["key"]).scope is Scope.APPROVE


# --- isolation -------------------------------------------------------------------------------------------------

FOREIGN = [
    ("beta_train", "GET", "/v1/approvals/{id}", None),
    ("beta_admin", "POST", "/v1/approvals/{id}/withdraw", None),
    ("beta_approve", "GET", "/admin/approvals/{id}", None),
    ("beta_approve", "POST", "/admin/approvals/{id}/approve", {}),
    ("beta_approve", "POST", "/admin/approvals/{id}/reject", {"reason": "no"}),
    ("beta_approve", "POST", "/admin/approvals/{id}/revoke", {}),
]


@pytest.mark.parametrize(("who", "method", "path", "body"), FOREIGN, ids=[f"{f[0]} {f[2]}" for f in FOREIGN])
def test_another_tenants_approval_answers_exactly_like_a_missing_one(
    cast: Cast, who: str, method: str, path: str, body: object
) -> None:
    theirs = cast.request()["id"]
    if path.endswith("revoke"):
        cast.call("alpha_approve", "POST", f"/admin/approvals/{theirs}/approve", {})
    missing = "apr_" + uuid.uuid4().hex[:16]
    foreign = cast.call(who, method, path.format(id=theirs), body)
    absent = cast.call(who, method, path.format(id=missing), body)
    assert (foreign.status_code, foreign.headers["x-error-code"]) == (404, "approval_not_found")
    assert (absent.status_code, absent.headers["x-error-code"]) == (404, "approval_not_found")
    assert foreign.text.replace(theirs, "ID") == absent.text.replace(missing, "ID")
    assert "alpha" not in foreign.text
    assert theirs not in json.dumps(cast.call(who.replace("admin", "train"), "GET", "/v1/approvals").json())
    shown = cast.call("alpha_train", "GET", f"/v1/approvals/{theirs}").json()
    assert shown["state"] == ("active" if path.endswith("revoke") else "pending")


def test_an_operator_wide_approver_sees_and_decides_every_tenants_requests(cast: Cast) -> None:
    alpha, beta = cast.request("alpha_train")["id"], cast.request("beta_train")["id"]
    inbox = {
        a["id"]: a["tenant"] for a in cast.call("operator_approve", "GET", "/admin/approvals?state=pending").json()
    }
    assert (inbox[alpha], inbox[beta]) == ("alpha", "beta")
    assert alpha not in [a["id"] for a in cast.call("beta_approve", "GET", "/admin/approvals").json()]
    decided = cast.call("operator_approve", "POST", f"/admin/approvals/{beta}/approve", {"reason": "group DPO"})
    assert (decided.status_code, decided.json()["decided_by"]) == (200, cast.key_id("operator_approve"))
    record = cast.audited(decided)
    assert (record.tenant, record.details["approval_tenant"]) == (None, "beta")


# --- JWT principals --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any]]:
    """An app over the world's services that trusts one identity provider, and its signing key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks: Path = tmp_path_factory.mktemp("idp") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k"}]}))
    tenants = world.services.tenants
    verifier = JwtVerifier.from_files(
        tenants,
        issuer=ISSUER,
        audience=None,
        jwks_file=jwks,
        public_key_file=None,
        algorithms=["RS256"],
        max_lifetime_seconds=3600,
        tenant_claim="tenant",
        scope_claim="scope",
    )
    app = create_app(dataclasses.replace(world.services, authenticator=Authenticator(tenants, verifier)))
    with TestClient(app) as client:
        yield client, key


def token(key: Any, sub: str, scope: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "tenant": "alpha", "scope": scope, "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='RS256', headers={'kid': 'k'})}"}


def test_a_jwt_subject_cannot_decide_its_own_request_whatever_scope_its_next_token_has(
    idp: tuple[TestClient, Any],
) -> None:
    client, key = idp
    asked = client.post("/v1/approvals", json=request_body(), headers=token(key, "alice@bank", "train"))
    assert asked.status_code == 201, asked.text
    assert (asked.json()["requested_by"], asked.json()["requested_by_kind"]) == ("jwt:alice@bank", "jwt")
    path = f"/admin/approvals/{asked.json()['id']}"
    for action, body in (("approve", {}), ("reject", {"reason": "mine"})):
        refused = client.post(f"{path}/{action}", json=body, headers=token(key, "alice@bank", "approve train"))
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "self_approval"), refused.text
    approved = client.post(f"{path}/approve", json={}, headers=token(key, "dpo@bank", "approve"))
    assert (approved.status_code, approved.json()["decided_by"]) == (200, "jwt:dpo@bank")


@pytest.mark.parametrize(
    ("scope", "request_status", "inbox_status"),
    [("train", 201, 403), ("approve", 403, 200), ("admin train approve", 201, 403), ("detect", 403, 403)],
)
def test_a_jwt_acts_with_one_scope_the_first_of_admin_approve_train(
    idp: tuple[TestClient, Any], scope: str, request_status: int, inbox_status: int
) -> None:
    client, key = idp
    headers = token(key, "carol@bank", scope)
    assert client.post("/v1/approvals", json=request_body(), headers=headers).status_code == request_status
    assert client.get("/admin/approvals", headers=headers).status_code == inbox_status
