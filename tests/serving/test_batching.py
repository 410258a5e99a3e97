"""``detect_many``: several requests through shared ONNX runs answer exactly as each request alone.

A spy on ``DetectionModel.infer`` (our own method) records the batch of every
ONNX Runtime call, showing when requests were stacked together and when not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from tests.detection.graphs import Box, Dim, anchor_free_rows, yolo_graph
from tests.detection.images import encode, gradient
from tests.registry import hostile
from warden.detection import DetectionModel, Detections, ImageLimits, decode_image
from warden.detection.runs import RunControl
from warden.errors import DeadlineExceeded, InvalidArgument, InvalidImage
from warden.samples import SAMPLE_IMAGE
from warden.serving.batching import DetectRequest, detect_many

META = {"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "task": "detect", "stride": "32", "imgsz": "[64, 64]"}
ANCHORS_64 = 8 * 8 + 4 * 4 + 2 * 2
# Three boxes; the input's mean brightness is added to the first one's score, so every image answers differently.
BOXES = [Box(32, 32, 20, 10, 1, 0.3), Box(40, 40, 10, 10, 2, 0.6), Box(12, 50, 6, 6, 0, 0.45)]
LIMITS = ImageLimits()


def graph(input_shape: Sequence[Dim]) -> bytes:
    rows = anchor_free_rows(BOXES, 3, ANCHORS_64)
    output = (input_shape[0], 7, "anchors") if isinstance(input_shape[2], str) else None
    return yolo_graph(rows, input_shape=input_shape, output_shape=output, brightness_at=(5, 0), metadata=META)


DYNAMIC_BATCH = ("batch", 3, 64, 64)
DYNAMIC_ALL = ("batch", 3, "height", "width")
FIXED_ONE = (1, 3, 64, 64)
FIXED_TWO = (2, 3, 64, 64)


def png(height: int, width: int, shift: int = 0) -> bytes:
    return encode(Image.fromarray(((gradient(height, width).astype(np.int64) + shift) % 256).astype(np.uint8)), "PNG")


def request(images: list[bytes], conf: float = 0.25, iou: float = 0.7, max_det: int = 300) -> DetectRequest:
    return DetectRequest(images=images, limits=LIMITS, conf=conf, iou=iou, max_det=max_det)


def varied_requests() -> list[DetectRequest]:
    """Requests of different image sizes, numbers of images and thresholds."""
    return [
        request([png(48, 64)], conf=0.25),
        request([png(48, 64, 40), png(48, 64, 90)], conf=0.5),
        request([png(64, 128), png(30, 50, 7), png(64, 64, 200)], conf=0.1, iou=0.3),
        request([png(48, 64, 120)], conf=0.7, max_det=1),
        request([png(64, 128, 11)], conf=0.35),
    ]


def alone(model: DetectionModel, req: DetectRequest) -> list[Detections]:
    """What the request answers when it runs by itself through the model's own pipeline."""
    rgbs = [decode_image(data, req.limits) for data in req.images]
    return model.detect_rgb(rgbs, conf=req.conf, iou=req.iou, max_det=req.max_det)


def assert_same(got: list[Detections], expected: list[Detections]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.width, mine.height, mine.names) == (theirs.width, theirs.height, theirs.names)
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        np.testing.assert_array_equal(mine.scores, theirs.scores)
        np.testing.assert_array_equal(mine.class_ids, theirs.class_ids)
        assert mine.to_dicts() == theirs.to_dicts()


class Runs:
    """Records the batch size (rows) of every ONNX Runtime call a model makes."""

    def __init__(self, model: DetectionModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        self.shapes: list[tuple[int, ...]] = []
        real = model.infer

        def spy(tensor: npt.NDArray[np.floating], **limits: Any) -> npt.NDArray[np.float32]:
            self.rows.append(int(tensor.shape[0]))
            self.shapes.append(tuple(tensor.shape))
            return real(tensor, **limits)

        monkeypatch.setattr(model, "infer", spy)

    def clear(self) -> None:
        self.rows.clear()
        self.shapes.clear()


@pytest.mark.parametrize("shape", [DYNAMIC_BATCH, DYNAMIC_ALL, FIXED_ONE, FIXED_TWO], ids=str)
@pytest.mark.parametrize("max_batch", [16, 2])
def test_many_requests_together_answer_exactly_as_each_alone(shape: Sequence[Dim], max_batch: int) -> None:
    model = DetectionModel.load(graph(shape), max_batch=max_batch)
    requests = varied_requests()
    expected = [alone(model, r) for r in requests]
    outcomes = detect_many(model, requests)
    for got, wanted in zip(outcomes, expected, strict=True):
        assert not isinstance(got, BaseException), got
        assert_same(got, wanted)
    # The graphs tell images apart: the answers are not all the same.
    assert len({float(d.scores.max()) for result in expected for d in result}) > 3


def test_the_real_fall_model_answers_exactly_as_alone_and_never_stacks(
    fall_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = DetectionModel.load(fall_model_file)
    assert model.info.batch == 1
    photo = SAMPLE_IMAGE
    requests = [
        request([photo.read_bytes()], conf=0.25),
        request([png(48, 64), photo.read_bytes()], conf=0.05),
        request([photo.read_bytes()], conf=0.6, iou=0.5),
    ]
    expected = [alone(model, r) for r in requests]
    runs = Runs(model, monkeypatch)
    outcomes = detect_many(model, requests)
    for got, wanted in zip(outcomes, expected, strict=True):
        assert not isinstance(got, BaseException), got
        assert_same(got, wanted)
    assert runs.rows == [1, 1, 1, 1]  # one run per image, as alone


def test_a_dynamic_batch_stacks_every_request_into_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))
    runs = Runs(model, monkeypatch)
    requests = varied_requests()
    detect_many(model, requests)
    assert runs.rows == [sum(len(r.images) for r in requests)]  # 8 images of 5 requests, one call


def test_stacked_runs_stay_within_the_batch_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH), max_batch=4)
    runs = Runs(model, monkeypatch)
    sizes = [1, 2, 3, 1, 4, 2]
    detect_many(model, [request([png(48, 64, n)] * size) for n, size in enumerate(sizes)])
    # Requests are never split across runs: 1+2, then 3+1, then 4, then 2.
    assert runs.rows == [3, 4, 4, 2]
    assert all(rows <= model.batch_capacity for rows in runs.rows)


def test_a_request_larger_than_the_capacity_is_split_as_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH), max_batch=4)
    runs = Runs(model, monkeypatch)
    big = request([png(48, 64, n) for n in range(6)])
    small = request([png(48, 64, 99)])
    expected = [alone(model, big), alone(model, small)]
    runs.clear()
    outcomes = detect_many(model, [big, small])
    assert runs.rows == [4, 3]  # the big request's chunks of 4 and 2; the small one joins the second
    for got, wanted in zip(outcomes, expected, strict=True):
        assert_same(got, wanted)  # type: ignore[arg-type]


def test_tensors_of_different_shapes_run_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_ALL))
    runs = Runs(model, monkeypatch)
    requests = [request([png(48, 64)]), request([png(64, 128)]), request([png(48, 64, 5)]), request([png(64, 128, 9)])]
    detect_many(model, requests)
    # Wide images letterbox (rect) to 32x64, the 4:3 ones to 64x64: one run per shape, two rows each.
    assert sorted(runs.shapes) == [(2, 3, 32, 64), (2, 3, 64, 64)]


@pytest.mark.parametrize("shape", [FIXED_ONE, FIXED_TWO], ids=str)
def test_a_fixed_batch_never_stacks_requests(shape: Sequence[Dim], monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(shape))
    runs = Runs(model, monkeypatch)
    requests = [request([png(48, 64)]), request([png(48, 64, 1)]), request([png(48, 64, 2), png(48, 64, 3)])]
    detect_many(model, requests)
    fixed = shape[0]
    assert all(rows == fixed for rows in runs.rows)
    # Batch 1: one run per image; batch 2: one run per request, the single images padded.
    assert len(runs.rows) == (4 if fixed == 1 else 3)


def test_an_undecodable_image_fails_only_its_request(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))
    runs = Runs(model, monkeypatch)
    good = [request([png(48, 64)], conf=0.2), request([png(64, 128, 3)], conf=0.4)]
    broken = request([png(48, 64, 1), b"\x89PNG\r\n\x1a\nnot really a png"])
    expected = [alone(model, r) for r in good]
    runs.clear()
    outcomes = detect_many(model, [good[0], broken, good[1]])
    assert isinstance(outcomes[1], InvalidImage)
    assert_same(outcomes[0], expected[0])  # type: ignore[arg-type]
    assert_same(outcomes[2], expected[1])  # type: ignore[arg-type]
    assert runs.rows == [2]  # the broken request's good image never ran


@pytest.mark.parametrize(
    ("conf", "iou", "max_det", "message"),
    [(1.5, 0.7, 300, "conf"), (-0.1, 0.7, 300, "conf"), (0.25, 2.0, 300, "iou"), (0.25, 0.7, 0, "max_det")],
)
def test_a_bad_threshold_fails_only_its_request(
    conf: float, iou: float, max_det: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))
    good = [request([png(48, 64)]), request([png(48, 64, 50)], conf=0.5)]
    expected = [alone(model, r) for r in good]
    runs = Runs(model, monkeypatch)
    outcomes = detect_many(model, [good[0], request([png(48, 64, 9)], conf, iou, max_det), good[1]])
    assert isinstance(outcomes[1], InvalidArgument)
    assert message in str(outcomes[1])
    assert_same(outcomes[0], expected[0])  # type: ignore[arg-type]
    assert_same(outcomes[2], expected[1])  # type: ignore[arg-type]
    assert runs.rows == [2]


def test_when_the_model_fails_every_live_request_gets_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))

    def broken(tensor: npt.NDArray[np.floating], **limits: Any) -> npt.NDArray[np.float32]:
        raise RuntimeError("the session died")

    monkeypatch.setattr(model, "infer", broken)
    outcomes = detect_many(model, [request([png(48, 64)]), request([png(48, 64)], conf=3.0), request([png(48, 64)])])
    assert [type(o) for o in outcomes] == [RuntimeError, InvalidArgument, RuntimeError]


def test_no_requests_and_requests_without_images(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))
    runs = Runs(model, monkeypatch)
    assert detect_many(model, []) == []
    assert detect_many(model, [request([]), request([])]) == [[], []]
    assert runs.rows == []


def test_each_request_gets_its_own_stage_times(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DetectionModel.load(graph(DYNAMIC_BATCH))
    requests = [request([png(48, 64)]), request([b"junk"]), request([png(48, 64, 1)])]
    detect_many(model, requests)
    assert requests[0].times is not requests[2].times
    assert requests[0].times.decode > 0
    assert requests[0].times.inference > 0
    assert requests[1].times.inference == 0  # the failed request spent nothing in the model


def spinner_requests(*controls: RunControl) -> list[DetectRequest]:
    secret = np.zeros((64, 64, 3), dtype=np.uint8)
    secret[0, 0] = (*hostile.SECRET_PIXEL, 0)
    image = encode(Image.fromarray(secret), "PNG")
    return [
        DetectRequest(images=[image], limits=LIMITS, conf=0.25, iou=0.7, max_det=300, control=control)
        for control in controls
    ]


def test_a_shared_run_is_answered_to_those_still_waiting_and_not_to_one_that_gave_up() -> None:
    model = DetectionModel.load(hostile.spinning("secret", 200_000, dynamic_batch=True))  # a fraction of a second
    first, second = detect_many(model, spinner_requests(RunControl(time.monotonic() - 1), RunControl()))
    assert isinstance(first, DeadlineExceeded)
    assert first.stage == "inference"
    assert not isinstance(second, BaseException)
    assert len(second[0]) == 1


def test_runs_of_requests_that_all_gave_up_are_not_made_and_fail_no_one_else() -> None:
    model = DetectionModel.load(hostile.spinning("secret", 200_000))  # a fixed batch: one run per request
    first, second = detect_many(model, spinner_requests(RunControl(time.monotonic() - 1), RunControl()))
    assert isinstance(first, DeadlineExceeded)
    assert not isinstance(second, BaseException)


def test_a_shared_run_past_its_cap_fails_every_request_in_it() -> None:
    model = DetectionModel.load(hostile.spinning("secret", 1e12, dynamic_batch=True))
    requests = spinner_requests(RunControl(), RunControl())
    outcomes = detect_many(model, requests, cap=0.1)
    assert all(isinstance(o, DeadlineExceeded) and o.cause == "run_cap" for o in outcomes)
    assert [r.times.stage for r in requests] == ["inference", "inference"]
