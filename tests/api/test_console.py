"""The console's page and session: a key is exchanged for an HttpOnly cookie, state changes need the CSRF token."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.api.conftest import World, tiny_graph
from warden.api.app import create_app
from warden.api.console import CONTENT_SECURITY_POLICY
from warden.samples import SAMPLE_IMAGE
from warden.storage import ConsoleSession
from warden.tenancy import Authenticator, Scope


@pytest.fixture
def browser(world: World) -> TestClient:
    """A client with its own cookie jar, over the world's app (as a second browser would be)."""
    return TestClient(world.client.app, base_url="http://testserver")


def sign_in(client: TestClient, key: str) -> str:
    """Sign in; the session's CSRF token."""
    answer = client.post("/console/session", json={"key": key})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf"])


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/assets/app.js", "/console/assets/app.css"])
def test_the_page_and_its_assets_are_served_under_a_strict_content_security_policy(
    browser: TestClient, path: str
) -> None:
    answer = browser.get(path)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_asset_is_not_found(browser: TestClient) -> None:
    assert browser.get("/console/assets/../app.py").status_code == 404
    assert browser.get("/console/assets/other.js").json()["error"]["code"] == "not_found"


def test_signing_in_sets_an_httponly_strict_cookie_that_is_not_the_key(world: World, browser: TestClient) -> None:
    answer = browser.post("/console/session", json={"key": world.alpha_admin})
    assert answer.status_code == 200
    body = answer.json()
    assert body["tenant"] == "alpha"
    assert body["scope"] == "admin"
    assert body["operator"] is False
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("warden_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure
    assert world.alpha_admin not in cookie
    assert world.alpha_admin.split("_")[1] not in cookie  # not even the key id
    assert answer.headers["cache-control"] == "no-store"


def test_over_https_the_cookie_is_secure(world: World) -> None:
    secure = TestClient(world.client.app, base_url="https://testserver")
    assert "Secure" in secure.post("/console/session", json={"key": world.alpha_admin}).headers["set-cookie"]


@pytest.mark.parametrize("key", ["", "wdn_000000000000_" + "x" * 43, "not a key"])
def test_a_bad_key_gets_no_session(browser: TestClient, key: str) -> None:
    answer = browser.post("/console/session", json={"key": key})
    assert answer.status_code in (400, 401)
    assert "set-cookie" not in answer.headers


def test_the_cookie_authenticates_reads_and_the_session_tells_its_csrf_token_after_a_reload(
    world: World, browser: TestClient
) -> None:
    csrf = sign_in(browser, world.alpha_admin)
    assert browser.get("/console/session").json()["csrf"] == csrf
    models = browser.get("/admin/tenants/alpha/models")
    assert models.status_code == 200
    assert {m["name"] for m in models.json()} >= {"fall", "tiny"}


def test_the_cookie_is_held_to_the_same_authorisation_as_the_key(world: World, browser: TestClient) -> None:
    sign_in(browser, world.alpha_admin)
    assert browser.get("/admin/tenants/beta/models").json()["error"]["code"] == "tenant_not_found"
    assert browser.get("/admin/tenants").json() == [browser.get("/admin/tenants/alpha").json()]
    assert (
        browser.post(
            "/admin/audit/verify", headers={"X-CSRF-Token": browser.get("/console/session").json()["csrf"]}
        ).status_code
        == 403
    )


def test_a_state_change_without_the_csrf_token_is_refused(world: World, browser: TestClient) -> None:
    csrf = sign_in(browser, world.operator)
    name = f"t-{secrets.token_hex(4)}"
    refused = browser.post("/admin/tenants", json={"name": name})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    wrong = browser.post("/admin/tenants", json={"name": name}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.json()["error"]["code"] == "csrf_failed"
    made = browser.post("/admin/tenants", json={"name": name}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201


def test_a_detect_key_session_runs_detections_with_the_csrf_token(world: World, browser: TestClient) -> None:
    csrf = sign_in(browser, world.alpha_detect)
    image = SAMPLE_IMAGE.read_bytes()
    answer = browser.post(
        "/v1/models/tiny/detect", content=image, headers={"Content-Type": "image/jpeg", "X-CSRF-Token": csrf}
    )
    assert answer.status_code == 200, answer.text
    assert browser.get("/admin/tenants").json()["error"]["code"] == "forbidden"  # a detect key is no admin


def test_signing_out_ends_the_session_everywhere(world: World, browser: TestClient) -> None:
    csrf = sign_in(browser, world.alpha_admin)
    token = browser.cookies["warden_session"]
    assert browser.delete("/console/session").json()["error"]["code"] == "csrf_failed"
    out = browser.delete("/console/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert "warden_session=" in out.headers["set-cookie"]
    replay = TestClient(world.client.app, cookies={"warden_session": token})  # a copied cookie is dead too
    assert replay.get("/console/session").json()["error"]["code"] == "unauthenticated"
    assert replay.get("/admin/tenants/alpha/models").status_code == 401


def test_revoking_the_key_or_suspending_the_tenant_ends_its_sessions(world: World, browser: TestClient) -> None:
    name = f"t-{secrets.token_hex(4)}"
    world.services.tenants.create_tenant(name)
    world.services.registry.push(world.services.tenants.tenant_id(name), "tiny", tiny_graph(0.5))
    issued = world.services.tenants.create_key(name, Scope.ADMIN)
    sign_in(browser, issued.key)
    assert browser.get(f"/admin/tenants/{name}/models").status_code == 200
    world.services.tenants.set_status(name, "suspended")
    assert browser.get(f"/admin/tenants/{name}/models").json()["error"]["code"] == "forbidden"
    world.services.tenants.set_status(name, "active")
    assert browser.get(f"/admin/tenants/{name}/models").status_code == 200
    world.services.tenants.revoke_key(issued.key_id)
    assert browser.get(f"/admin/tenants/{name}/models").json()["error"]["code"] == "unauthenticated"
    assert browser.get("/console/session").status_code == 401


def test_a_bearer_key_beside_a_cookie_wins_and_needs_no_csrf_token(world: World, browser: TestClient) -> None:
    sign_in(browser, world.alpha_detect)
    name = f"t-{secrets.token_hex(4)}"
    made = browser.post("/admin/tenants", json={"name": name}, headers={"Authorization": f"Bearer {world.operator}"})
    assert made.status_code == 201


def test_signing_in_again_ends_the_session_the_browser_held(world: World, browser: TestClient) -> None:
    sign_in(browser, world.alpha_admin)
    first = browser.cookies["warden_session"]
    sign_in(browser, world.alpha_detect)
    assert browser.cookies["warden_session"] != first
    replay = TestClient(world.client.app, cookies={"warden_session": first})
    assert replay.get("/console/session").status_code == 401


def test_a_replica_serving_other_tenants_refuses_the_sign_in_and_stores_nothing(world: World) -> None:
    settings = world.services.settings.model_copy(update={"serve_tenants": ["beta"]})
    services = replace(world.services, settings=settings)
    services = replace(
        services,
        authenticator=Authenticator(world.services.tenants, served=frozenset(settings.serve_tenants or [])),
    )
    before = _sessions(world)
    with TestClient(create_app(services, world.client.app.state.engine)) as client:
        refused = client.post("/console/session", json={"key": world.alpha_admin})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_not_served"
    assert "set-cookie" not in refused.headers
    assert _sessions(world) == before


def _sessions(world: World) -> int:
    with world.services.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ConsoleSession)) or 0)
