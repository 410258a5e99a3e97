"""The real fall-detection model answers exactly as Ultralytics' own ``predict`` on real photos.

Expected values come from ``data/ultralytics_fall.json``, computed once with
Ultralytics in a throwaway environment (see its ``how_made``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from warden.detection import DetectionModel

DATA = Path(__file__).with_name("data")
FIXTURE = json.loads((DATA / "ultralytics_fall.json").read_text())
BOX_TOLERANCE_PX = 1.0
SCORE_TOLERANCE = 0.002
CASES = [
    pytest.param(image, key, conf, id=f"{image['file']}@{conf}")
    for image in FIXTURE["images"]
    for key, conf in (("detections", 0.25), ("detections_conf_0.05", 0.05))
]


def test_the_fixture_was_made_with_the_installed_model(fall_model_file: Path) -> None:
    assert hashlib.sha256(fall_model_file.read_bytes()).hexdigest() == FIXTURE["model"]["sha256"]
    assert sum(len(image["detections"]) for image in FIXTURE["images"]) >= 5


@pytest.mark.parametrize(("image", "key", "conf"), CASES)
def test_detections_equal_ultralytics(fall_model: DetectionModel, image: dict[str, Any], key: str, conf: float) -> None:
    found = fall_model.detect((DATA / image["file"]).read_bytes(), conf=conf)
    expected = image[key]
    assert (found.width, found.height) == (image["width"], image["height"])
    assert [d.class_name for d in found] == [e["class_name"] for e in expected]
    for got, want in zip(found, expected, strict=True):
        assert got.class_id == want["class_id"]
        assert got.score == pytest.approx(want["score"], abs=SCORE_TOLERANCE)
        assert got.box == pytest.approx(tuple(want["box"]), abs=BOX_TOLERANCE_PX)


def test_a_list_of_photos_gives_the_same_answers_as_one_by_one(fall_model: DetectionModel) -> None:
    files = [(DATA / image["file"]).read_bytes() for image in FIXTURE["images"][:3]]
    together = fall_model.detect(files)
    alone = [fall_model.detect(data) for data in files]
    assert [d.to_dicts() for d in together] == [d.to_dicts() for d in alone]
