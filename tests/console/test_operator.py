"""The operator's views: tenants with quotas edited in place, keys shown once, model uploads, usage charts, audit."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.console.conftest import PHOTO, Tab, shoot


def new_tenant(tab: Tab) -> str:
    """Create a tenant from the Tenants view; its name."""
    name = f"t-{secrets.token_hex(4)}"
    tab.page.get_by_label("New tenant name").fill(name)
    tab.page.get_by_role("button", name="Create tenant").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Created tenant {name}.")
    return name


def test_an_operator_creates_a_tenant_edits_its_quota_in_place_and_suspends_and_resumes_it(
    console: Callable[..., Tab],
) -> None:
    tab = console()
    tab.sign_in(tab.server.operator)
    name = new_tenant(tab)
    card = tab.page.locator(f"article[data-tenant='{name}']")
    expect(card.locator(".badge")).to_have_text("active")

    card.get_by_role("button", name="Edit quota").click()
    card.get_by_label("Requests per second").fill("5")
    card.get_by_label("Burst (requests)").fill("10")
    card.get_by_label("Fair-share weight").fill("2")
    card.get_by_label("Requests per day").fill("1000")
    card.get_by_role("button", name="Save quota").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Saved the quota of {name}.")
    expect(card.locator("dd[data-field='rps']")).to_have_text("5")
    expect(card.locator("dd[data-field='weight']")).to_have_text("2")
    expect(card.locator("dd[data-field='max_queue']")).to_have_text("no limit")
    with tab.server.api(tab.server.operator) as api:
        quota = api.get(f"/admin/tenants/{name}").json()["quota"]
        assert (quota["rps"], quota["burst"], quota["weight"], quota["daily_requests"]) == (5, 10, 2, 1000)

        card.get_by_role("button", name="Edit quota").click()  # an emptied limit is cleared
        card.get_by_label("Requests per day").fill("")
        card.get_by_role("button", name="Save quota").click()
        expect(card.locator("dd[data-field='daily_requests']")).to_have_text("no limit")
        assert api.get(f"/admin/tenants/{name}").json()["quota"]["daily_requests"] is None

        tab.watch.expect("PATCH", f"/admin/tenants/{name}", 400)
        card.get_by_role("button", name="Edit quota").click()  # the API's refusal is shown with its code
        card.get_by_label("Fair-share weight").fill("0")
        card.get_by_role("button", name="Save quota").click()
        expect(tab.page.get_by_role("alert")).to_contain_text("invalid_argument")
        card.get_by_role("button", name="Cancel").click()

        card.get_by_role("button", name="Suspend").click()
        expect(card.locator(".badge")).to_have_text("suspended")
        assert api.get(f"/admin/tenants/{name}").json()["status"] == "suspended"
        shoot(tab.page, "tenants", full_page=True)
        card.get_by_role("button", name="Resume").click()
        expect(card.locator(".badge")).to_have_text("active")
        assert api.get(f"/admin/tenants/{name}").json()["status"] == "active"

        card.get_by_role("button", name="Delete").click()
        card.get_by_role("button", name=f"Delete {name} and its keys and models").click()
        expect(card).to_have_count(0)
        assert api.get(f"/admin/tenants/{name}").status_code == 404


def test_a_new_key_is_shown_once_with_a_copy_button_and_not_again(console: Callable[..., Tab]) -> None:
    tab = console(permissions=["clipboard-read", "clipboard-write"])
    tab.sign_in(tab.server.operator)
    name = new_tenant(tab)
    tab.go("Keys")
    tab.choose_tenant(name, loaded="#key-list")
    expect(tab.page.locator("#key-list")).to_have_text(f"{name} has no keys yet.")
    tab.page.get_by_label("Scope").select_option("detect")
    tab.page.get_by_role("button", name="Create key").click()
    shown = tab.page.locator("#new-key")
    expect(shown).to_be_visible()
    key = shown.inner_text()
    assert key.startswith("wdn_")
    key_id = key.split("_")[1]
    expect(tab.page.locator("#key-list tbody tr")).to_have_count(1)
    expect(tab.page.locator("#key-list tbody tr td").first).to_have_text(key_id)
    tab.page.get_by_role("button", name="Copy key").click()
    expect(tab.page.get_by_role("status")).to_have_text("Copied the key to the clipboard.")
    assert tab.page.evaluate("navigator.clipboard.readText()") == key
    shoot(tab.page, "keys")
    with tab.server.api(key) as client:  # the key shown is a working key of the new tenant
        assert client.get("/v1/models").json() == {"models": []}

    tab.go("Models")
    tab.go("Keys")
    expect(tab.page.locator("#key-list tbody tr")).to_have_count(1)
    expect(tab.page.locator("#new-key")).to_have_count(0)
    assert key not in tab.page.content()
    assert tab.page.evaluate("localStorage.length + sessionStorage.length") == 0

    tab.page.get_by_role("button", name="Revoke").click()
    tab.page.get_by_role("button", name=f"Revoke {key_id}").click()
    expect(tab.page.locator("#key-list tbody tr td").nth(3)).to_contain_text("revoked")
    with tab.server.api(key) as client:
        assert client.get("/v1/models").status_code == 401


def test_a_model_is_uploaded_from_the_page_with_progress_and_its_aliases_are_set(
    console: Callable[..., Tab], fall_model_file: Path
) -> None:
    tab = console()
    tab.sign_in(tab.server.operator)
    name = new_tenant(tab)
    tab.go("Models")
    tab.choose_tenant(name, loaded="#model-list")
    expect(tab.page.locator("#model-list")).to_have_text(f"{name} has no models yet.")
    tab.page.get_by_label("ONNX file").set_input_files(str(fall_model_file))
    expect(tab.page.get_by_label("Model name")).to_have_value("best_fp16")  # proposed from the file name
    tab.page.get_by_label("Model name").fill("fall")
    tab.page.get_by_label("Point alias").select_option("stable")
    tab.page.get_by_role("button", name="Upload model").click()
    expect(tab.page.get_by_role("status")).to_contain_text("Uploaded fall v1")
    expect(tab.page.locator("#upload-progress")).to_have_js_property("value", 100)
    expect(tab.page.locator("#upload-percent")).to_have_text(" 100%")
    card = tab.page.locator("article[data-model='fall']")
    expect(card.locator(".aliases")).to_have_text("stable → v1")
    expect(card.locator("tbody tr")).to_have_count(1)
    digest = hashlib.sha256(fall_model_file.read_bytes()).hexdigest()
    expect(card.locator("tbody tr td code")).to_have_attribute("title", digest)

    card.get_by_label("Alias", exact=True).select_option("canary")
    card.get_by_label("Canary weight (%)").fill("20")
    card.get_by_role("button", name="Set alias").click()
    card = tab.page.locator("article[data-model='fall']")
    expect(card.locator(".aliases")).to_have_text("stable → v1, canary → v1 (20% of requests)")
    shoot(tab.page, "models", full_page=True)
    with tab.server.api(tab.server.operator) as api:
        (listed,) = api.get(f"/admin/tenants/{name}/models").json()
    assert listed["versions"][0]["sha256"] == digest
    assert listed["aliases"] == {"stable": {"version": 1, "weight": 0}, "canary": {"version": 1, "weight": 20}}


def detect(client: httpx.Client, model: str) -> int:
    """Send the photo to ``model`` of the client's tenant; the status of the answer."""
    answer = client.post(
        f"/v1/models/{model}/detect", content=PHOTO.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    return answer.status_code


def alpha_usage(tab: Tab) -> tuple[int, int, int]:
    """Alpha's requests, answered requests and ``model_not_found`` refusals over the usage window, from the API."""
    with tab.server.api(tab.server.operator) as api:
        buckets = api.get("/admin/usage", params={"tenant": "alpha"}).json()["tenants"]["alpha"]
    return (
        sum(bucket["requests"] for bucket in buckets),
        sum(bucket["ok"] for bucket in buckets),
        sum(bucket["refusals"].get("model_not_found", 0) for bucket in buckets),
    )


def test_usage_is_charted_per_tenant_with_refusals_by_reason(console: Callable[..., Tab]) -> None:
    tab = console()
    with tab.server.api(tab.server.alpha_detect) as client:
        # A refusal is answered before its audit record is written; an answered request waits for its own,
        # and records are written in order. So every count read below follows an answered request.
        assert detect(client, "fall") == 200
        before = alpha_usage(tab)
        assert detect(client, "absent") == 404
        assert detect(client, "fall") == 200
        assert detect(client, "fall") == 200
    requests, answered, refused = alpha_usage(tab)
    assert (requests - before[0], answered - before[1], refused - before[2]) == (3, 2, 1)  # inference only

    tab.sign_in(tab.server.operator)
    tab.go("Usage")
    tab.choose_tenant("alpha", loaded="#usage-updated")
    section = tab.page.locator(".usage-tenant[data-tenant='alpha']")
    expect(tab.page.locator(".usage-tenant")).to_have_count(1)
    figures = section.locator("figure")
    expect(figures.locator("figcaption")).to_have_text(
        ["Requests per minute", "Refusals by reason", "Latency of answered requests", "Queue right now"]
    )
    requests_chart = figures.nth(0).locator("svg")
    expect(requests_chart).to_have_attribute(
        "aria-label", f"Requests per minute: answered {answered}, refused or failed {requests - answered}"
    )
    expect(figures.nth(1).locator(".legend")).to_contain_text(f"model_not_found: {refused}")
    assert figures.nth(0).locator("rect.bar").count() >= 1
    assert figures.nth(2).locator("path.line").count() + figures.nth(2).locator("circle.dot").count() >= 2
    expect(figures.nth(3).locator("svg")).to_have_attribute("aria-label", "Queue right now: running 0, queued 0")
    shoot(tab.page, "usage", full_page=True)


def test_the_audit_view_filters_pages_exports_and_verifies(console: Callable[..., Tab]) -> None:
    tab = console()
    with tab.server.api(tab.server.alpha_detect) as client:
        for _ in range(30):  # more than one page of 25
            assert client.post("/v1/models/absent/detect", content=b"x").status_code == 404
    tab.sign_in(tab.server.operator)
    tab.go("Audit")
    expect(tab.page.locator("#audit-results tbody tr").first).to_be_visible()

    tab.page.get_by_label("Tenant", exact=True).select_option("alpha")
    tab.page.get_by_label("Outcome").select_option("error")
    tab.page.get_by_label("Per page").select_option("25")
    tab.page.get_by_role("button", name="Search").click()
    rows = tab.page.locator("#audit-results tbody tr")
    expect(rows.first).to_be_visible()
    outcomes = rows.locator("td:nth-child(7)").all_inner_texts()
    assert outcomes
    assert set(outcomes) == {"error"}
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"alpha"}

    expect(rows).to_have_count(25)
    first_page = rows.locator("td:nth-child(9)").all_inner_texts()
    expect(tab.page.get_by_role("button", name="Previous page")).to_be_disabled()
    tab.page.get_by_role("button", name="Next page").click()
    expect(tab.page.locator("#audit-results caption")).to_have_text("Audit records, page 2")
    second_page = rows.locator("td:nth-child(9)").all_inner_texts()
    assert second_page
    assert not set(second_page) & set(first_page)
    tab.page.get_by_role("button", name="Previous page").click()
    expect(tab.page.locator("#audit-results caption")).to_have_text("Audit records, page 1")
    assert rows.locator("td:nth-child(9)").all_inner_texts() == first_page

    tab.page.get_by_label("Outcome").select_option("")
    tab.page.get_by_label("Kind").select_option("request")
    tab.page.get_by_role("button", name="Search").click()
    expect(tab.page.locator("#audit-results caption")).to_have_text("Audit records, page 1")

    with tab.page.expect_download() as download:
        tab.page.locator("#audit-export").click()
    lines = download.value.path().read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    assert {record["event"]["tenant"] for record in records} == {"alpha"}
    assert {record["event"]["kind"] for record in records} == {"request"}

    tab.page.get_by_role("button", name="Verify audit chains").click()
    expect(tab.page.locator("#verify-result")).to_contain_text("The audit trail verifies")
    expect(tab.page.locator("#verify-result tbody tr").first).to_contain_text("verifies")
    shoot(tab.page, "audit", full_page=True)
