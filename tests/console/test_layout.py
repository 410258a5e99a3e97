"""Usable: every control labelled, everything reachable by keyboard with a visible focus, readable at 390 px wide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import NARROW, PHOTO, Tab, shoot

ADMIN_VIEWS = ["Tenants", "Keys", "Models", "Usage", "Audit"]
TENANT_VIEWS = ["Models", "Usage", "Try a model"]
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(control => control.labels.length === 0 && !control.getAttribute('aria-label'))
    .map(control => control.outerHTML)"""
FOCUSED = """() => {
    const element = document.activeElement;
    const style = getComputedStyle(element);
    return {tag: element.tagName.toLowerCase(), text: (element.innerText || '').trim(), outline: style.outlineStyle};
}"""


WIDE_ELEMENTS = """
[...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth)
  .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
  .slice(0, 8)
  .concat([document.documentElement.scrollWidth, window.innerWidth, location.hash])
"""
"""What sticks out on the right, for the failure message."""


def overflow(page: Page) -> int:
    """How far the page is wider than the window (0: nothing to scroll sideways)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return width


def tab_through(page: Page, presses: int) -> list[dict[str, Any]]:
    """Press Tab ``presses`` times; what had the focus after each press."""
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED))
    return seen


@pytest.mark.parametrize(("key", "views"), [("operator", ADMIN_VIEWS), ("alpha_detect", TENANT_VIEWS)])
def test_every_control_of_every_view_has_a_label(console: Callable[..., Tab], key: str, views: list[str]) -> None:
    tab = console()
    tab.sign_in(getattr(tab.server, key))
    for view in views:
        tab.go(view)
        tab.page.wait_for_load_state("networkidle")
        assert tab.page.evaluate(UNLABELLED) == [], f"unlabelled controls in {view}"


def test_the_views_are_reached_and_used_by_keyboard_with_a_visible_focus(console: Callable[..., Tab]) -> None:
    tab = console()
    tab.sign_in(tab.server.operator)
    tab.page.reload()  # the focus starts at the top of the page
    expect(tab.page.locator("#tenant-list article").first).to_be_visible()
    seen = tab_through(tab.page, 9)
    assert [item["text"] for item in seen[:8]] == ["Skip to content", *ADMIN_VIEWS, "Sign out", ""]
    assert seen[7]["tag"] == "input"  # then the first control of the view: the new tenant's name
    assert {item["outline"] for item in seen} == {"solid"}, seen

    tab.page.keyboard.press("Shift+Tab")
    for _ in range(5):  # back to the "Keys" link
        tab.page.keyboard.press("Shift+Tab")
    assert tab.page.evaluate(FOCUSED)["text"] == "Keys"
    tab.page.keyboard.press("Enter")
    heading = tab.page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Keys")
    expect(heading).to_be_focused()  # the focus follows to the new view
    expect(tab.page.locator("#key-list table")).to_be_visible()
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate(FOCUSED)["tag"] == "select"


def test_the_admin_views_are_readable_at_390_px_wide(console: Callable[..., Tab]) -> None:
    tab = console(viewport=NARROW)
    tab.sign_in(tab.server.operator)
    for view in ADMIN_VIEWS:
        tab.go(view)
        tab.page.wait_for_load_state("networkidle")
        excess = overflow(tab.page)
        wide = tab.page.evaluate(WIDE_ELEMENTS) if excess > 0 else []
        assert excess <= 0, f"{view} scrolls sideways at 390 px: {wide}"
        if view == "Tenants":
            shoot(tab.page, "narrow")
    expect(tab.page.get_by_role("button", name="Sign out")).to_be_in_viewport()


def test_try_a_model_is_readable_at_390_px_wide_with_the_boxes_on_the_image(console: Callable[..., Tab]) -> None:
    tab = console(viewport=NARROW)
    tab.sign_in(tab.server.alpha_detect)
    tab.go("Try a model")
    tab.page.get_by_label("Model", exact=True).select_option("fall")
    tab.page.get_by_label("Image", exact=True).set_input_files(PHOTO)
    tab.page.get_by_role("button", name="Detect").click()
    image = tab.page.locator("#try-image")
    expect(image).to_be_visible()
    expect(tab.page.locator("#try-overlay g.det").first).to_be_attached()
    shown = image.bounding_box()
    layer = tab.page.locator("#try-overlay").bounding_box()
    assert shown is not None
    assert layer is not None
    assert shown["width"] <= NARROW["width"]
    assert layer == pytest.approx(shown, abs=0.5)  # the boxes are drawn over the image, at its scale
    assert overflow(tab.page) <= 0
    shoot(tab.page, "narrow-try-a-model", full_page=True)
