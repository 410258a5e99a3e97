"""Drivers for the administrative commands: ``warden`` run in-process on a fresh data directory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.backends import BACKENDS, database_url
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.cli.main import app
from warden.services import Services, open_services
from warden.settings import ENV_PREFIX, load_settings

NAMES = "{0: 'cat', 1: 'dog', 2: 'bird'}"


def graph(score: float = 0.9) -> bytes:
    """A small valid detection model; different scores give different bytes."""
    return yolo_graph(anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84), metadata={"names": NAMES})


@dataclass(frozen=True)
class Warden:
    """Runs ``warden --data-dir DIR …`` in-process and opens the same services to check what it did."""

    data_dir: Path

    def __call__(self, *args: str | Path, stdin: str | None = None) -> Result:
        """Run a command; the result keeps stdout, stderr and the exit code apart."""
        return CliRunner().invoke(app, ["--data-dir", str(self.data_dir), *map(str, args)], input=stdin)

    def json(self, *args: str | Path) -> Any:
        """Run a command with ``--json``, require success and one line of JSON, and parse it."""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        assert len(result.stdout.splitlines()) == 1
        return json.loads(result.stdout)

    @contextmanager
    def services(self) -> Iterator[Services]:
        """The services over the same data directory and database the commands use."""
        opened = open_services(load_settings(data_dir=self.data_dir))
        try:
            yield opened
        finally:
            opened.close()


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``WARDEN_*`` variable, so only what a test sets is configured."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def warden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warden:
    """``warden`` on a fresh data directory with the embedded SQLite default."""
    clean_environment(monkeypatch)
    return Warden(tmp_path / "data")


@pytest.fixture(params=BACKENDS)
def warden_on_each_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Warden]:
    """``warden`` on a fresh data directory: the SQLite default, then PostgreSQL via ``WARDEN_DATABASE_URL``."""
    clean_environment(monkeypatch)
    if request.param == "sqlite":
        yield Warden(tmp_path / "data")
        return
    with database_url(request.param, tmp_path) as url:
        monkeypatch.setenv("WARDEN_DATABASE_URL", url)
        yield Warden(tmp_path / "data")


def one_error_line(result: Result) -> str:
    """The single error line a failed command must print, with nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
