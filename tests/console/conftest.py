"""The console in a real browser: a real ``warden serve`` on a free port, Debian's Chromium driven by Playwright.

Every page opened here is watched: the test fails if the page logs a script error, throws, asks
any host but the server for anything, or is refused by the API in a way the test did not expect.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.audit.test_server_crash import WARDEN, wait_ready
from tests.cli.test_serve import free_port, interrupt
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PHOTO = Path(__file__).resolve().parents[1] / "detection" / "data" / "astronaut_1280x720.jpg"
MARKUP = "<img src=x onerror=window.pwned=1>"
"""A class name that would run script if the page ever parsed labels as HTML."""
MARKUP_NAMES = (MARKUP, "<b>bold</b>", "bird")
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 390, "height": 844}
_RESOURCE_FAILURE = "Failed to load resource: the server responded with a status of "


def markup_model() -> bytes:
    """A small detection model whose class names are HTML, with two known boxes (classes 0 and 1)."""
    rows = anchor_free_rows([Box(32, 30, 40, 24, 0, 0.9), Box(16, 48, 14, 10, 1, 0.6)], 3, 84)
    names = "{" + ", ".join(f"{i}: {name!r}" for i, name in enumerate(MARKUP_NAMES)) + "}"
    return yolo_graph(rows, metadata={"names": names, "task": "detect"})


@dataclass(frozen=True)
class Server:
    """A running ``warden serve``: tenant ``alpha`` (models ``fall`` and ``markup``), ``beta`` (``beta-only``)."""

    url: str
    operator: str
    alpha_admin: str
    alpha_detect: str

    def api(self, key: str) -> httpx.Client:
        """An HTTP client calling the server with ``key``, as any program would."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; never a browser downloaded by Playwright.

    Package-scoped: Playwright's sync API runs an event loop on this thread while it is open, so it
    must be closed before the rest of the suite (whose tests call ``asyncio.run``) goes on.
    """
    if not CHROMIUM.exists():
        pytest.skip(
            f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium)"
        )
    expect.set_options(timeout=15_000)  # the machine running the suite may be busy
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, fall_model_file: Path) -> Iterator[Server]:
    """Provision tenants, models and keys, then run ``warden serve`` over that data directory."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    services = open_services(Settings(data_dir=data_dir))
    try:
        tenants, registry = services.tenants, services.registry
        for name in ("alpha", "beta"):
            tenants.create_tenant(name)
        registry.push(tenants.tenant_id("alpha"), "fall", fall_model_file.read_bytes())
        registry.push(tenants.tenant_id("alpha"), "markup", markup_model())
        registry.push(tenants.tenant_id("beta"), "beta-only", markup_model())
        keys = {
            "operator": tenants.create_key(None, Scope.ADMIN).key,
            "alpha_admin": tenants.create_key("alpha", Scope.ADMIN).key,
            "alpha_detect": tenants.create_key("alpha", Scope.DETECT).key,
        }
    finally:
        services.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WARDEN_DATA_DIR": str(data_dir), "WARDEN_CACHE_SECONDS": "0"}
    log = (data_dir.parent / "serve.log").open("wb")
    process = subprocess.Popen([str(WARDEN), "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        try:
            wait_ready(url, process)
        except AssertionError as exc:
            log.flush()
            raise AssertionError(f"{exc}; its log:\n{(data_dir.parent / 'serve.log').read_text()}") from None
        yield Server(url=url, **keys)
    finally:
        interrupt(process)
        log.close()


@dataclass
class Watch:
    """What one page did: its requests, its refused responses, its console errors and uncaught exceptions."""

    origin: str
    requests: list[str] = field(default_factory=list)
    refused: list[tuple[str, str, int]] = field(default_factory=list)
    console_errors: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    expected: set[tuple[str, str, int]] = field(default_factory=set)
    tolerated: list[str] = field(default_factory=list)

    def expect(self, method: str, path: str, status: int) -> None:
        """A refusal this test provokes on purpose (``path`` without the query string)."""
        self.expected.add((method, path, status))

    def tolerate(self, fragment: str) -> None:
        """A console error this test provokes on purpose (the message contains ``fragment``)."""
        self.tolerated.append(fragment)

    def on_response(self, response: Response) -> None:
        """Note a refused answer (status 400 and up)."""
        if response.status >= 400:
            self.refused.append((response.request.method, urlsplit(response.url).path, response.status))

    def on_dialog(self, dialog: Dialog) -> None:
        """The console never opens alert, confirm or prompt dialogs: one opening is a failure."""
        self.page_errors.append(f"unexpected dialog: {dialog.message}")
        dialog.dismiss()

    def api_requests(self, path: str) -> int:
        """How many requests went to ``path`` (any method, any query)."""
        return sum(1 for url in self.requests if urlsplit(url).path == path)

    def check(self) -> None:
        """No foreign host, no script error, no uncaught exception, no refusal the test did not expect."""
        foreign = [
            url
            for url in self.requests
            if not (url.startswith(f"{self.origin}/") or url.startswith(f"blob:{self.origin}/") or url == "data:,")
        ]
        assert not foreign, f"requests to other hosts: {foreign}"
        assert not self.page_errors, f"uncaught exceptions: {self.page_errors}"
        scripts = [
            m.text
            for m in self.console_errors
            if not m.text.startswith(_RESOURCE_FAILURE) and not any(part in m.text for part in self.tolerated)
        ]
        assert not scripts, f"console errors: {scripts}"
        refused_urls = {path for _, path, _ in self.refused}
        logged = [urlsplit(m.location["url"]).path for m in self.console_errors if m.text.startswith(_RESOURCE_FAILURE)]
        assert set(logged) <= refused_urls, f"resource errors without a refused response: {logged}"
        unexpected = [r for r in self.refused if r not in self.expected]
        assert not unexpected, f"unexpected refusals: {unexpected}"


@dataclass
class Tab:
    """One browser context with one watched page of the console."""

    page: Page
    watch: Watch
    server: Server

    def sign_in(self, key: str) -> None:
        """Open the console and sign in with ``key`` through the form, as a person would."""
        self.watch.expect("GET", "/console/session", 401)  # the page asks first whether it is signed in
        self.page.goto(f"{self.server.url}/console")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.locator("#session-who").wait_for()

    def go(self, view: str) -> None:
        """Follow the navigation link of ``view`` (its visible name) and wait for the view's heading."""
        self.page.get_by_role("navigation", name="Views").get_by_role("link", name=view, exact=True).click()
        self.page.get_by_role("heading", level=1, name=view).wait_for()

    def choose_tenant(self, name: str, *, loaded: str) -> None:
        """Choose ``name`` in the view's tenant chooser once the view's first answer has filled ``loaded``.

        The console does not drop an answer that arrives after a newer choice: choosing before the
        first tenant's data has arrived could leave that tenant's data on the page.
        """
        expect(self.page.locator(loaded)).not_to_be_empty()
        self.page.get_by_label("Tenant", exact=True).select_option(name)

    def nav(self) -> list[str]:
        """The names of the views offered."""
        return self.page.locator("#nav a").all_inner_texts()

    def fetch(self, method: str, path: str, *, csrf: bool = False, json: Any = None) -> dict[str, Any]:
        """Call the API from inside the page, with the session cookie (and the CSRF token when asked)."""
        script = """async ([method, path, csrf, json]) => {
            const headers = {};
            if (csrf) {
                const session = await (await fetch('/console/session')).json();
                headers['X-CSRF-Token'] = session.csrf;
            }
            let body;
            if (json !== null) {
                headers['Content-Type'] = 'application/json';
                body = JSON.stringify(json);
            }
            const answer = await fetch(path, {method, headers, body});
            return {status: answer.status, body: await answer.json()};
        }"""
        result: dict[str, Any] = self.page.evaluate(script, [method, path, csrf, json])
        return result


def shoot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot under test-artifacts/console/ as a small palette PNG (docs/console.md shows them)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    with Image.open(io.BytesIO(page.screenshot(full_page=full_page))) as shot:
        shot.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(target, optimize=True)
    return target


@pytest.fixture
def console(browser: Browser, server: Server) -> Iterator[Callable[..., Tab]]:
    """Open watched tabs (``console(viewport=...)``); each is checked and closed after the test."""
    tabs: list[Tab] = []
    contexts = []

    def open_tab(viewport: ViewportSize | None = None, permissions: list[str] | None = None) -> Tab:
        context = browser.new_context(viewport=viewport or WIDE, permissions=permissions or [])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        watch = Watch(origin=server.url)
        page.on("request", lambda request: watch.requests.append(request.url))
        page.on("response", watch.on_response)
        page.on("console", lambda message: watch.console_errors.append(message) if message.type == "error" else None)
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        page.on("dialog", watch.on_dialog)
        tab = Tab(page=page, watch=watch, server=server)
        tabs.append(tab)
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    for tab in tabs:
        tab.watch.check()
