"""docs/security.md is a standing review: every test it cites exists, and every setting it names is real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warden.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).parents[1]
DOC = (ROOT / "docs" / "security.md").read_text()
_CITATION = re.compile(r"`(?P<file>[\w/]+\.py)?::(?P<test>\w+)`")
_SETTING = re.compile(rf"`({ENV_PREFIX}[A-Z_]+)")


def _citations() -> list[tuple[str, str]]:
    """``(file, test)`` for every ``file::test`` in the doc; a bare ``::test`` continues the row's last file."""
    found: list[tuple[str, str]] = []
    for line in DOC.splitlines():
        current: str | None = None
        for match in _CITATION.finditer(line):
            current = match["file"] or current
            assert current is not None, f"a bare ::{match['test']} with no file before it: {line}"
            found.append((current, match["test"]))
    return found


CITATIONS = _citations()


def test_the_doc_cites_tests() -> None:
    assert len(CITATIONS) >= 40


@pytest.mark.parametrize(("file", "test"), CITATIONS, ids=[f"{f}::{t}" for f, t in CITATIONS])
def test_every_cited_test_exists(file: str, test: str) -> None:
    source = ROOT / "tests" / file
    assert source.is_file(), f"{file} does not exist"
    assert re.search(rf"^(?:async )?def {test}\(", source.read_text(), re.MULTILINE), f"{file} has no {test}"


@pytest.mark.parametrize("name", sorted(set(_SETTING.findall(DOC))))
def test_every_named_setting_exists(name: str) -> None:
    assert name.removeprefix(ENV_PREFIX).lower() in Settings.model_fields
