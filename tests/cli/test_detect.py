"""``warden detect`` end to end: JSON lines, tables, annotated copies, and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from warden.cli.main import app
from warden.detection import DetectionModel

DATA = Path(__file__).parents[1] / "detection" / "data"
PHOTOS = [DATA / "astronaut.png", DATA / "camera.png", DATA / "astronaut_1280x720.jpg"]
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["detect", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_when_json_is_asked_then_each_image_is_one_line_equal_to_the_library(
    fall_model_file: Path, fall_model: DetectionModel
) -> None:
    code, out, err = invoke("--model", fall_model_file, "--json", "--conf", "0.05", *PHOTOS)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in PHOTOS]
    for line, photo in zip(lines, PHOTOS, strict=True):
        assert list(line) == ["image", "width", "height", "detections"]
        expected = fall_model.detect(photo.read_bytes(), conf=0.05)
        assert (line["width"], line["height"]) == (expected.width, expected.height)
        assert line["detections"] == expected.to_dicts()
        assert all(list(d) == ["box", "score", "class_id", "class_name"] for d in line["detections"])
        scores = [d["score"] for d in line["detections"]]
        assert scores == sorted(scores, reverse=True)
    assert sum(len(line["detections"]) for line in lines) > 3


def test_when_one_image_is_bad_then_the_others_are_still_processed_and_the_exit_code_says_so(
    fall_model_file: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PHOTOS[2].read_bytes()[:5000])
    missing = tmp_path / "missing.png"
    code, out, err = invoke("--model", fall_model_file, "--json", PHOTOS[0], broken, missing, PHOTOS[1])
    assert code == 1
    assert [json.loads(line)["image"] for line in out.splitlines()] == [str(PHOTOS[0]), str(PHOTOS[1])]
    errors = err.strip().splitlines()
    assert errors == [
        f"warden: error: {broken}: invalid_image: truncated: " + errors[0].split(": truncated: ")[1],
        f"warden: error: {missing}: unreadable: No such file or directory",
    ]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--device", "cuda:0"], "device_unavailable"),
        (["--imgsz", "320"], "invalid_argument"),
    ],
)
def test_when_the_model_cannot_run_as_asked_then_exit_2_with_one_line(
    fall_model_file: Path, extra: list[str], needle: str
) -> None:
    code, out, err = invoke("--model", fall_model_file, *extra, PHOTOS[0])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert needle in err


def test_when_the_model_file_is_not_onnx_then_exit_2(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("not a model")
    code, _, err = invoke("--model", fake, PHOTOS[0])
    assert code == 2
    assert f"warden: error: {fake}: invalid_model:" in err


@pytest.mark.parametrize("option", [["--conf", "1.5"], ["--iou", "-1"], ["--max-det", "0"]])
def test_when_an_option_is_out_of_range_then_it_is_a_usage_error(fall_model_file: Path, option: list[str]) -> None:
    code, _, err = invoke("--model", fall_model_file, *option, PHOTOS[0])
    assert code == 2
    assert option[0] in err


def test_when_no_json_is_asked_then_a_readable_table_is_printed(fall_model_file: Path) -> None:
    code, out, _ = invoke("--model", fall_model_file, PHOTOS[0])
    assert code == 0
    assert f"{PHOTOS[0]} (512x512): 2 detections" in out
    assert "Normal" in out


def test_when_labels_are_given_then_they_name_the_classes(fall_model_file: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("upright\nfallen\n")
    code, out, _ = invoke("--model", fall_model_file, "--labels", labels, "--json", PHOTOS[0])
    assert code == 0
    assert {d["class_name"] for d in json.loads(out)["detections"]} <= {"upright", "fallen"}


def test_when_save_dir_is_given_then_annotated_copies_are_written(fall_model_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "annotated"
    twin = tmp_path / "astronaut.png"
    shutil.copy(PHOTOS[0], twin)
    code, _, _ = invoke("--model", fall_model_file, "--save-dir", out_dir, PHOTOS[0], twin)
    assert code == 0
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["astronaut-1.png", "astronaut.png"]
    original = np.asarray(Image.open(PHOTOS[0]).convert("RGB"))
    drawn = np.asarray(Image.open(out_dir / "astronaut.png").convert("RGB"))
    assert drawn.shape == original.shape
    assert (drawn != original).any(axis=2).mean() > 0.005  # boxes and labels were drawn


def test_when_many_images_are_given_then_all_are_answered(fall_model_file: Path) -> None:
    many = [DATA / "chelsea.png"] * 9
    code, out, _ = invoke("--model", fall_model_file, "--json", *many)
    assert code == 0
    assert len(out.splitlines()) == 9


def test_the_installed_console_script_runs_and_reports_errors_with_exit_codes(fall_model_file: Path) -> None:
    warden = Path(sys.executable).with_name("warden")
    ok = subprocess.run(
        [warden, "detect", "--model", fall_model_file, "--json", PHOTOS[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["width"] == 512
    bad = subprocess.run(
        [warden, "detect", "--model", "/nonexistent.onnx", PHOTOS[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "warden: error: /nonexistent.onnx: invalid_model: no model file at /nonexistent.onnx"
