"""Fixtures shared by the job tests: the services over a fresh data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import clean_environment
from warden.services import Services, open_services
from warden.settings import load_settings


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """The state services (approvals, audit) over a fresh SQLite data directory, closed after the test."""
    clean_environment(monkeypatch)
    opened = open_services(load_settings(data_dir=tmp_path / "wd"))
    try:
        yield opened
    finally:
        opened.close()
