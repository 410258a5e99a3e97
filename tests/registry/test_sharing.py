"""Marking model bytes shareable across tenants: the registry's mark, the operator's route, and its existence rule.

Over real SQLite and PostgreSQL; the routes through the in-process app. A tenant (admin key
or not) gets the same 403 whatever digest it names, existing, unknown or malformed, so it
cannot learn whether some bytes are held by anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import tiny_graph
from warden.api import create_app
from warden.audit import AuditFilter
from warden.errors import InvalidArgument, NotFound
from warden.services import Services
from warden.tenancy import Scope

UNKNOWN = "f" * 64


@dataclass(frozen=True)
class Held:
    """Tenants ``alpha`` and ``beta`` holding the same bytes as model ``m``; ``digest`` names them."""

    services: Services
    digest: str
    alpha: int
    beta: int


@pytest.fixture
def held(services: Services) -> Held:
    tenants, registry = services.tenants, services.registry
    for name in ("alpha", "beta"):
        tenants.create_tenant(name)
    alpha, beta = tenants.tenant_id("alpha"), tenants.tenant_id("beta")
    digest = registry.push(alpha, "m", tiny_graph(0.9)).sha256
    registry.push(beta, "m", tiny_graph(0.9))
    return Held(services, digest, alpha, beta)


def test_by_default_identical_bytes_resolve_unshared(held: Held) -> None:
    registry = held.services.registry
    assert not registry.resolve(held.alpha, "m").shared
    assert not registry.resolve(held.beta, "m").shared


def test_a_mark_makes_every_tenants_version_of_those_bytes_shared_and_unsharing_undoes_it(held: Held) -> None:
    registry = held.services.registry
    registry.resolve(held.alpha, "m")  # cached before the mark: the mark clears the cache
    view = registry.share(held.digest, "0123456789ab")
    assert (view.sha256, view.marked_by) == (held.digest, "0123456789ab")
    assert registry.resolve(held.alpha, "m").shared
    assert registry.resolve(held.beta, "m", 1).shared
    assert registry.share(held.digest, "someone-else").marked_by == "0123456789ab"  # idempotent: first mark kept
    assert registry.unshare(held.digest) is True
    assert not registry.resolve(held.alpha, "m").shared
    assert registry.unshare(held.digest) is False  # idempotent


@pytest.mark.parametrize(
    "digest",
    ["", "f" * 63, "F" * 64, "g" * 64, "f" * 65, " " + "f" * 63, "f" * 64 + "\n", "ｆ" * 64, "f" * 2000],
    ids=["empty", "short", "capitals", "not hex", "long", "space", "newline", "full-width", "huge"],
)
def test_a_digest_that_is_not_64_lowercase_hex_digits_is_invalid(held: Held, digest: str) -> None:
    registry = held.services.registry
    for act in (lambda: registry.share(digest, "op"), lambda: registry.unshare(digest)):
        with pytest.raises(InvalidArgument, match="64 lowercase hex digits") as refused:
            act()
        assert len(refused.value.message) < 200


def test_bytes_nobody_holds_cannot_be_marked(held: Held) -> None:
    with pytest.raises(NotFound, match="no model version holds"):
        held.services.registry.share(UNKNOWN, "op")
    with pytest.raises(NotFound):
        held.services.registry.unshare(UNKNOWN)


@pytest.mark.parametrize("marked_by", ["", "x" * 129])
def test_the_marker_is_named_in_1_to_128_characters(held: Held, marked_by: str) -> None:
    with pytest.raises(InvalidArgument, match="1-128 characters"):
        held.services.registry.share(held.digest, marked_by)


def test_when_the_last_version_of_marked_bytes_goes_then_the_mark_goes_with_the_blob(held: Held) -> None:
    registry = held.services.registry
    registry.share(held.digest, "op")
    registry.remove(held.alpha, "m")
    assert registry.resolve(held.beta, "m").shared  # beta still holds them: still marked
    registry.remove(held.beta, "m")
    assert held.digest not in registry.blobs.digests()
    registry.push(held.alpha, "again", tiny_graph(0.9))  # pushed afresh: not shared until marked again
    assert not registry.resolve(held.alpha, "again").shared


# --- the operator's routes ---


@dataclass(frozen=True)
class Routes:
    """A client over the held bytes with an operator key, and the tenant keys that must learn nothing."""

    client: TestClient
    held: Held
    operator: str
    alpha_admin: str
    alpha_detect: str


@pytest.fixture
def routes(held: Held) -> Iterator[Routes]:
    tenants = held.services.tenants
    with TestClient(create_app(held.services)) as client:
        yield Routes(
            client=client,
            held=held,
            operator=tenants.create_key(None, Scope.ADMIN).key,
            alpha_admin=tenants.create_key("alpha", Scope.ADMIN).key,
            alpha_detect=tenants.create_key("alpha", Scope.DETECT).key,
        )


def call(routes: Routes, method: str, digest: str, key: str | None) -> tuple[int, str, str]:
    """(status, error code or '', request id) of one call of the route."""
    request_id = uuid.uuid4().hex
    headers = {"X-Request-ID": request_id, **({"Authorization": f"Bearer {key}"} if key is not None else {})}
    answer = routes.client.request(method, f"/admin/blobs/{digest}/shared", headers=headers)
    code = answer.json()["error"]["code"] if answer.status_code >= 400 else ""
    return answer.status_code, code, request_id


def test_the_operator_shares_and_unshares_and_each_change_is_audited(routes: Routes) -> None:
    services, digest = routes.held.services, routes.held.digest
    answer = routes.client.put(f"/admin/blobs/{digest}/shared", headers={"Authorization": f"Bearer {routes.operator}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["sha256"], body["shared"], body["marked_by"]) == (digest, True, routes.operator.split("_")[1])
    assert services.registry.resolve(routes.held.beta, "m").shared
    status, _, request_id = call(routes, "DELETE", digest, routes.operator)
    assert status == 200
    assert not services.registry.resolve(routes.held.beta, "m").shared
    assert services.audit.flush(timeout=30)
    actions = [(e.event.action, e.event.target, e.event.status) for e in services.audit.scan(AuditFilter(kind="admin"))]
    assert ("blob.share", digest, 200) in actions
    assert ("blob.unshare", digest, 200) in actions
    (entry,) = list(services.audit.scan(AuditFilter(request_id=request_id)))
    assert entry.event.details["removed"] is True


@pytest.mark.parametrize(
    ("digest", "status", "code"), [(UNKNOWN, 404, "not_found"), ("f" * 63, 400, "invalid_argument")]
)
def test_the_operator_learns_of_unknown_or_malformed_digests(
    routes: Routes, digest: str, status: int, code: str
) -> None:
    for method in ("PUT", "DELETE"):
        assert call(routes, method, digest, routes.operator)[:2] == (status, code)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("who", ["alpha_admin", "alpha_detect"])
def test_a_tenant_gets_the_same_403_whatever_digest_it_names(routes: Routes, method: str, who: str) -> None:
    key = getattr(routes, who)
    answers = {call(routes, method, digest, key)[:2] for digest in (routes.held.digest, UNKNOWN, "f" * 63, "x")}
    assert answers == {(403, "forbidden")}
    assert not routes.held.services.registry.resolve(routes.held.alpha, "m").shared


def test_without_a_credential_the_route_is_401(routes: Routes) -> None:
    assert call(routes, "PUT", routes.held.digest, None)[:2] == (401, "unauthenticated")


def test_a_tenants_refused_attempt_is_audited(routes: Routes) -> None:
    status, _, request_id = call(routes, "PUT", routes.held.digest, routes.alpha_admin)
    assert status == 403
    services = routes.held.services
    assert services.audit.flush(timeout=30)
    (entry,) = list(services.audit.scan(AuditFilter(request_id=request_id)))
    assert (entry.event.action, entry.event.tenant, entry.event.status) == ("blob.share", "alpha", 403)
