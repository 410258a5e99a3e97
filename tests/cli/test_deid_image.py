"""``warden deid image``: faces hidden, metadata gone, a manifest per run, audited where a data dir is in use."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from tests.cli.conftest import Warden, graph, one_error_line
from warden.privacy.images import find_metadata

DATA = Path(__file__).parents[1] / "detection" / "data"
ASTRONAUT = DATA / "astronaut.png"
ROCKET = DATA / "rocket.jpg"


def manifests(out_dir: Path) -> list[Path]:
    """The manifests a run left in ``out_dir``."""
    return sorted(out_dir.glob("warden-deid-images-*.manifest.json"))


def test_when_a_photo_has_a_face_then_it_is_hidden_and_counted_in_the_manifest(warden: Warden, tmp_path: Path) -> None:
    out_dir = tmp_path / "clean"
    answer = warden.json("deid", "image", ASTRONAUT, ROCKET, "--out-dir", out_dir)
    by_name = {image["name"]: image for image in answer["images"]}
    assert by_name["astronaut.png"]["faces"] == 1
    assert by_name["rocket.jpg"]["faces"] == 0
    assert answer["faces"] == 1
    assert answer["detector"]["name"] == "centerface"
    assert answer["audit"].startswith("manifest only")
    [written] = manifests(out_dir)
    assert json.loads(written.read_text())["images"] == answer["images"]
    for name in ("astronaut.png", "rocket.jpg"):
        assert find_metadata((out_dir / name).read_bytes()) == frozenset()
    assert by_name["rocket.jpg"]["metadata_removed"], "the rocket photo carries a comment and an ICC profile"


def test_when_an_image_fails_then_the_run_stops_and_the_manifest_lists_what_was_written(
    warden: Warden, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    out_dir = tmp_path / "clean"
    result = warden("deid", "image", ROCKET, bad, "--out-dir", out_dir)
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: invalid_image: ")
    assert (out_dir / "rocket.jpg").exists()
    assert not (out_dir / "bad.png").exists()
    [written] = manifests(out_dir)
    manifest = json.loads(written.read_text())
    assert [image["name"] for image in manifest["images"]] == ["rocket.jpg"]
    assert manifest["error"]["code"] == "invalid_image"


def test_an_operator_supplied_yolo_model_finds_the_faces(warden: Warden, tmp_path: Path) -> None:
    model = tmp_path / "faces.onnx"
    model.write_bytes(graph())  # one box centred at (32, 32), 20x10 pixels, class "dog", in a 64x64 input
    photo = tmp_path / "photo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(buffer, format="PNG")
    photo.write_bytes(buffer.getvalue())
    answer = warden.json(
        "deid", "image", photo, "--out-dir", tmp_path / "clean", "--face-model", model, "--face-class", "dog"
    )
    assert answer["detector"]["name"] == "yolo"
    assert answer["images"][0]["faces"] == 1


def test_an_unknown_face_class_is_refused_naming_the_model_classes(warden: Warden, tmp_path: Path) -> None:
    model = tmp_path / "faces.onnx"
    model.write_bytes(graph())
    result = warden("deid", "image", ROCKET, "--out-dir", tmp_path / "o", "--face-model", model, "--face-class", "x")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("warden: error: invalid_argument: ")
    assert "cat, dog, bird" in line


def test_with_an_initialised_data_directory_the_run_is_audited(warden: Warden, tmp_path: Path) -> None:
    assert warden("init").exit_code == 0
    answer = warden.json("deid", "image", ROCKET, "--out-dir", tmp_path / "clean")
    assert answer["audit"] == "audit log"
    entries = warden.json("audit", "query")
    [event] = [e["event"] for e in entries if e["event"].get("action") == "deid.image"]
    assert event["target"] == "clean"
    assert event["details"]["faces"] == 0


def test_a_min_score_of_one_is_a_usage_error(warden: Warden, tmp_path: Path) -> None:
    result = warden("deid", "image", ROCKET, "--out-dir", tmp_path / "o", "--min-score", "1")
    assert result.exit_code == 2
