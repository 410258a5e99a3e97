"""The console's files, read as shipped: every module the page imports is served, and no file uses a sink that
would parse data as HTML or script, or keep anything in browser storage (these run without a browser)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from warden.api.console import _ASSETS

ASSETS = resources.files("warden.api").joinpath("console_assets")
SCRIPTS = sorted(entry.name for entry in ASSETS.iterdir() if entry.name.endswith(".js"))
IMPORT = re.compile(r"""^import\s[^;]*?from\s+"\./([^"]+)";""", re.MULTILINE | re.DOTALL)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
"""The one URL in the scripts: a name, never fetched."""
FORBIDDEN = [
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    'setTimeout("',
    "localStorage",
    "sessionStorage",
    "document.cookie",
    "http://",
    "https://",
    ".style.",
    '"style"',
]


def test_every_file_of_the_console_is_served_and_nothing_else_is() -> None:
    shipped = {entry.name for entry in ASSETS.iterdir() if entry.is_file()}
    assert shipped - {"index.html"} == set(_ASSETS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_module_a_script_imports_is_a_served_asset(name: str) -> None:
    imported = IMPORT.findall(ASSETS.joinpath(name).read_text())
    assert set(imported) <= set(_ASSETS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_parses_data_as_markup_runs_strings_or_uses_browser_storage(name: str) -> None:
    lines = ASSETS.joinpath(name).read_text().replace(f'"{SVG_NAMESPACE}"', "SVG").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("//"))
    assert [word for word in FORBIDDEN if word in code] == []


def test_the_page_has_no_inline_script_style_or_handler_and_loads_only_its_own_files() -> None:
    page = ASSETS.joinpath("index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert "<style" not in page
    assert re.findall(r"\s(on[a-z]+|style)=", page) == []
    assert re.findall(r"""(?:src|href)="([^"#][^"]*)""", page) == [
        "data:,",
        "/console/assets/app.css",
        "/console/assets/app.js",
    ]
