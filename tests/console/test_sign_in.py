"""Signing in to the console with a key: what each kind of key sees, and that the key is kept nowhere."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from tests.console.conftest import Tab, shoot
from warden.api.console import CONTENT_SECURITY_POLICY

ADMIN_VIEWS = ["Tenants", "Keys", "Models", "Usage", "Audit"]
TENANT_VIEWS = ["Models", "Usage", "Try a model"]


def test_the_sign_in_page_is_served_under_the_strict_policy_and_takes_a_key_from_the_keyboard(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.watch.expect("GET", "/console/session", 401)
    answer = tab.page.goto(f"{tab.server.url}/console")
    assert answer is not None
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    key_field = tab.page.get_by_label("API key")
    expect(key_field).to_be_focused()
    expect(key_field).to_have_attribute("type", "password")
    shoot(tab.page, "sign-in")
    tab.page.keyboard.type(tab.server.operator)
    tab.page.keyboard.press("Enter")
    expect(tab.page.locator("#session-who")).to_have_text("Operator · admin key")


def test_when_an_operator_signs_in_then_the_admin_views_are_offered_and_the_key_is_kept_nowhere(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.sign_in(tab.server.operator)
    key = tab.server.operator
    assert tab.nav() == ADMIN_VIEWS
    expect(tab.page.locator("#key")).to_have_count(0)
    assert key not in tab.page.content()
    assert key not in tab.page.url
    assert tab.page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert tab.page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    (cookie,) = tab.page.context.cookies()
    assert cookie["name"] == "warden_session"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert key not in cookie["value"]
    assert not any(key in url for url in tab.watch.requests)

    tab.page.reload()  # the session outlives a reload: the page asks the server who it is
    expect(tab.page.locator("#session-who")).to_have_text("Operator · admin key")
    assert tab.nav() == ADMIN_VIEWS

    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(tab.page.get_by_role("status")).to_have_text("You have signed out.")
    assert tab.page.context.cookies() == []
    tab.page.reload()
    expect(tab.page.get_by_label("API key")).to_be_visible()


def test_when_a_detect_key_signs_in_then_only_its_own_models_usage_and_try_are_offered(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_detect)
    assert tab.nav() == TENANT_VIEWS
    expect(tab.page.locator("#session-who")).to_have_text("Tenant alpha · detect key")
    cards = tab.page.locator("#model-list article")
    expect(cards).to_have_count(2)
    assert sorted(cards.evaluate_all("cards => cards.map(card => card.dataset.model)")) == ["fall", "markup"]
    shoot(tab.page, "tenant-models")

    tab.page.goto(f"{tab.server.url}/console#/tenants")  # an admin view's address falls back to the first view
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Models")

    tab.go("Usage")
    sections = tab.page.locator(".usage-tenant")
    expect(sections).to_have_count(1)
    assert sections.get_attribute("data-tenant") == "alpha"
    assert tab.watch.api_requests("/v1/usage") >= 1
    assert tab.watch.api_requests("/admin/usage") == 0


def test_a_wrong_key_is_refused_and_the_page_shows_the_error_code_and_message(console: Callable[..., Tab]) -> None:
    tab = console()
    tab.watch.expect("GET", "/console/session", 401)
    tab.watch.expect("POST", "/console/session", 401)
    tab.page.goto(f"{tab.server.url}/console")
    tab.page.get_by_label("API key").fill("wdn_000000000000_" + "x" * 43)
    tab.page.get_by_role("button", name="Sign in").click()
    alert = tab.page.get_by_role("alert")
    expect(alert).to_contain_text("unauthenticated")
    expect(alert).to_contain_text("invalid API key")
    expect(tab.page.get_by_label("API key")).to_have_value("")  # the key left the form at once


def test_when_the_key_is_revoked_then_the_next_call_takes_the_page_back_to_sign_in(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    with tab.server.api(tab.server.operator) as operator:
        issued = operator.post("/admin/tenants/alpha/keys", json={"scope": "detect"}).json()
        tab.sign_in(issued["key"])
        expect(tab.page.locator("#model-list article")).to_have_count(2)
        assert operator.delete(f"/admin/keys/{issued['key_id']}").status_code == 200
    tab.watch.expect("GET", "/v1/usage", 401)
    tab.page.get_by_role("link", name="Usage").click()
    alert = tab.page.get_by_role("alert")
    expect(alert).to_contain_text("unauthenticated")
    expect(alert).to_contain_text("Sign in again")
    expect(tab.page.get_by_label("API key")).to_be_visible()
    expect(tab.page.locator("#nav")).to_be_hidden()
