"""Try a model: the boxes drawn over a real photo are the API's answer for that image, the slider
re-filters them without a new request, the image is not kept, and the audit trail finds the request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.console.conftest import PHOTO, Tab, shoot
from warden.samples import SAMPLE_IMAGE

DETECT_PATH = "/v1/models/fall/detect"
TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def api_answer(tab: Tab, photo: Path, conf: float) -> dict[str, Any]:
    """The API's answer for the same image, asked by a plain HTTP client with the same key."""
    with tab.server.api(tab.server.alpha_detect) as client:
        answer = client.post(
            DETECT_PATH,
            params={"conf": conf},
            content=photo.read_bytes(),
            headers={"Content-Type": TYPES[photo.suffix]},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def api_detections(tab: Tab, photo: Path, conf: float) -> list[dict[str, Any]]:
    """The boxes of :func:`api_answer`."""
    detections: list[dict[str, Any]] = api_answer(tab, photo, conf)["detections"]
    return detections


def drawn(tab: Tab) -> list[dict[str, Any]]:
    """The boxes on the page: SVG coordinates (image pixels), the label, and where they appear on screen."""
    script = """() => {
        const image = document.querySelector('#try-image').getBoundingClientRect();
        return [...document.querySelectorAll('#try-overlay g.det')].map(group => {
            const rect = group.querySelector('rect');
            const screen = rect.getBoundingClientRect();
            const number = name => Number(rect.getAttribute(name));
            return {
                box: [number('x'), number('y'), number('x') + number('width'), number('y') + number('height')],
                score: Number(group.dataset.score),
                label: group.querySelector('text').textContent,
                screen: [screen.left - image.left, screen.top - image.top, screen.right - image.left,
                         screen.bottom - image.top],
                shown: [image.width, image.height],
            };
        });
    }"""
    boxes: list[dict[str, Any]] = tab.page.evaluate(script)
    return boxes


def assert_same_boxes(page_boxes: list[dict[str, Any]], api_boxes: list[dict[str, Any]], size: tuple[int, int]) -> None:
    """Same count, same order, same coordinates (in image pixels and, scaled, on screen), same labels."""
    assert len(page_boxes) == len(api_boxes)
    for on_page, expected in zip(page_boxes, api_boxes, strict=True):
        assert on_page["box"] == pytest.approx(expected["box"], abs=1e-3)
        assert on_page["score"] == pytest.approx(expected["score"], abs=1e-6)
        assert on_page["label"] == f"{expected['class_name']} {expected['score']:.2f}"
        scale_x, scale_y = on_page["shown"][0] / size[0], on_page["shown"][1] / size[1]
        x1, y1, x2, y2 = expected["box"]
        on_screen = [x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y]
        assert on_page["screen"] == pytest.approx(on_screen, abs=2.0)


@pytest.mark.parametrize("photo", [PHOTO, SAMPLE_IMAGE], ids=["astronaut_1280x720", "sample"])
def test_the_boxes_drawn_are_the_api_answer_and_the_slider_refilters_without_a_new_request(
    console: Callable[..., Tab], photo: Path
) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_detect)
    tab.go("Try a model")
    tab.page.get_by_label("Model", exact=True).select_option("fall")
    tab.page.get_by_label("Image", exact=True).set_input_files(photo)
    with tab.page.expect_response(lambda r: DETECT_PATH in r.url) as detect:
        tab.page.get_by_role("button", name="Detect").click()
    assert detect.value.status == 200
    assert "conf=0.01" in detect.value.url
    expect(tab.page.locator("#try-request-id")).to_have_text(detect.value.headers["x-request-id"])
    answer = api_answer(tab, photo, 0.01)
    all_found = answer["detections"]
    width, height = answer["width"], answer["height"]
    assert tab.page.evaluate("document.querySelector('#try-image').naturalWidth") == width
    assert any(found["score"] > 0.25 for found in all_found), "the fall model should find something in this photo"

    expect(tab.page.locator("#try-conf")).to_have_value("0.25")
    assert_same_boxes(drawn(tab), api_detections(tab, photo, 0.25), (width, height))
    if photo == PHOTO:
        shoot(tab.page, "try-a-model", full_page=True)

    sent = len(tab.watch.requests)
    for conf in ("0.05", "0.5", "0.01"):
        tab.page.get_by_label("Minimum confidence").fill(conf)
        expect(tab.page.locator("#try-conf-value")).to_have_text(f"{float(conf):.2f}")
        expected = api_detections(tab, photo, float(conf))
        expect(tab.page.locator("#try-count")).to_have_text(
            f"{len(expected)} of {len(all_found)} detections above {float(conf):.2f}"
        )
        assert_same_boxes(drawn(tab), expected, (width, height))
        expect(tab.page.locator("#try-detections tbody tr")).to_have_count(len(expected))
    assert len(tab.watch.requests) == sent, "moving the slider must not send a request"
    assert tab.watch.api_requests(DETECT_PATH) == 1


def test_the_image_is_released_when_the_view_closes(console: Callable[..., Tab]) -> None:
    tab = console()
    tab.sign_in(tab.server.alpha_detect)
    tab.go("Try a model")
    tab.page.get_by_label("Image", exact=True).set_input_files(SAMPLE_IMAGE)
    tab.page.get_by_role("button", name="Detect").click()
    image = tab.page.locator("#try-image")
    expect(image).to_be_visible()
    source = image.get_attribute("src")
    assert source is not None
    assert source.startswith(f"blob:{tab.server.url}/")
    readable = """url => new Promise(resolve => {
        const probe = new Image();
        probe.onload = () => resolve(true);
        probe.onerror = () => resolve(false);
        probe.src = url;
    })"""
    assert tab.page.evaluate(readable, source) is True
    tab.go("Models")
    tab.watch.tolerate("net::ERR_FILE_NOT_FOUND")  # the probe below, of a URL that no longer exists
    assert tab.page.evaluate(readable, source) is False  # the object URL was revoked


def test_the_audit_view_finds_the_request_by_its_id(console: Callable[..., Tab]) -> None:
    tenant = console()
    tenant.sign_in(tenant.server.alpha_detect)
    tenant.go("Try a model")
    tenant.page.get_by_label("Model", exact=True).select_option("fall")
    tenant.page.get_by_label("Image", exact=True).set_input_files(PHOTO)
    tenant.page.get_by_role("button", name="Detect").click()
    request_id = tenant.page.locator("#try-request-id").inner_text()
    assert len(request_id) >= 16

    operator = console()
    operator.sign_in(operator.server.operator)
    operator.go("Audit")
    rows = operator.page.locator("#audit-results tbody tr")
    expect(rows.first).to_be_visible()  # the first page has arrived: it cannot replace the search's answer
    operator.page.get_by_label("Request id").fill(request_id)
    operator.page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[1:8] == ["request", "alpha", "POST /v1/models/{name}/detect", "fall v1", "200", "ok", "—"]
    assert cells[8] == request_id
    export = operator.page.locator("#audit-export").get_attribute("href") or ""
    assert export.startswith("/admin/audit/export?")
    assert f"request_id={request_id}" in export
