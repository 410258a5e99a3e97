"""The page's own security: another tenant's data stays out of reach, tenant-supplied text is only ever text,
and state changes need the session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.console.conftest import MARKUP, MARKUP_NAMES, Tab
from warden.samples import SAMPLE_IMAGE

TRY_PATHS = {"/console", "/console/session", "/v1/models", "/v1/models/markup/detect"}
"""What the page asks for in the test below, besides its own assets."""


def test_a_tenant_admin_sees_only_its_own_tenant_and_is_refused_another_tenant_s_data(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_admin)
    assert tab.nav() == ["Tenant", "Keys", "Models", "Usage", "Audit"]
    expect(tab.page.locator("#session-who")).to_have_text("Tenant alpha · admin key")
    expect(tab.page.locator("#tenant-list article")).to_have_count(1)
    expect(tab.page.locator("#tenant-list article")).to_have_attribute("data-tenant", "alpha")
    expect(tab.page.get_by_label("New tenant name")).to_have_count(0)  # operators only
    expect(tab.page.get_by_role("button", name="Edit quota")).to_have_count(0)
    expect(tab.page.get_by_role("button", name="Suspend")).to_have_count(0)

    for view in ("Keys", "Models", "Usage", "Audit"):
        tab.go(view)
        expect(tab.page.locator("#tenant-select")).to_have_count(0)  # nothing to choose: its own tenant only
        if view != "Audit":
            expect(tab.page.locator("#tenant-name")).to_have_text("alpha")
    expect(tab.page.get_by_role("button", name="Verify audit chains")).to_have_count(0)
    expect(tab.page.locator("#audit-results tbody tr").first).to_be_visible()
    assert set(tab.page.locator("#audit-results tbody td:nth-child(3)").all_inner_texts()) <= {"alpha", "—"}
    assert "beta" not in tab.page.locator("body").inner_text()

    for path in ("/admin/tenants/beta/models", "/admin/tenants/beta/keys", "/admin/tenants/beta"):
        tab.watch.expect("GET", path, 404)
        answer = tab.fetch("GET", path)
        assert answer["status"] == 404
        assert answer["body"]["error"]["code"] == "tenant_not_found"
    tab.watch.expect("GET", "/admin/audit", 404)
    assert tab.fetch("GET", "/admin/audit?tenant=beta")["body"]["error"]["code"] == "tenant_not_found"
    tab.watch.expect("POST", "/admin/tenants/beta/keys", 404)
    assert tab.fetch("POST", "/admin/tenants/beta/keys", csrf=True, json={"scope": "admin"})["status"] == 404
    tab.watch.expect("POST", "/admin/audit/verify", 403)
    assert tab.fetch("POST", "/admin/audit/verify", csrf=True)["body"]["error"]["code"] == "forbidden"
    assert [tenant["name"] for tenant in tab.fetch("GET", "/admin/tenants")["body"]] == ["alpha"]


def test_a_detect_session_is_refused_the_admin_api_and_state_changes_without_the_csrf_token(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_detect)
    tab.watch.expect("GET", "/admin/tenants", 403)
    assert tab.fetch("GET", "/admin/tenants")["body"]["error"]["code"] == "forbidden"
    tab.watch.expect("POST", "/v1/models/fall/detect", 403)
    refused = tab.fetch("POST", "/v1/models/fall/detect")
    assert refused["status"] == 403
    assert refused["body"]["error"]["code"] == "csrf_failed"
    tab.watch.expect("DELETE", "/console/session", 403)
    assert tab.fetch("DELETE", "/console/session")["body"]["error"]["code"] == "csrf_failed"
    expect(tab.page.locator("#session-who")).to_be_visible()  # still signed in


def test_class_names_holding_markup_are_shown_as_text_and_inject_nothing(console: Callable[..., Tab]) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_detect)
    tab.go("Try a model")
    tab.page.get_by_label("Model", exact=True).select_option("markup")
    tab.page.get_by_label("Image", exact=True).set_input_files(SAMPLE_IMAGE)
    tab.page.get_by_role("button", name="Detect").click()
    labels = tab.page.locator("#try-overlay g.det text")
    expect(labels).to_have_count(2)
    assert labels.all_text_contents() == [f"{MARKUP} 0.90", f"{MARKUP_NAMES[1]} 0.60"]
    names = tab.page.locator("#try-detections .class-name")
    assert names.all_text_contents() == [MARKUP, MARKUP_NAMES[1]]
    assert names.all_inner_texts() == [MARKUP, MARKUP_NAMES[1]]  # what a person sees
    result = tab.page.locator("#try-result")
    expect(result.locator("img")).to_have_count(1)  # the photo; the labels made no element of their own
    expect(result.locator("img")).to_have_attribute("id", "try-image")
    expect(result.locator("b")).to_have_count(0)
    expect(tab.page.locator("[onerror]")).to_have_count(0)
    requested = {urlsplit(url).path for url in tab.watch.requests if url.startswith(f"{tab.server.url}/")}
    unexpected = {path for path in requested - TRY_PATHS if not path.startswith("/console/assets/")}
    assert not unexpected, f"requests the page never makes (an injected <img src=x> asks for /x): {unexpected}"
