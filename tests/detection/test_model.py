"""DetectionModel on small graphs of every output layout, with boxes known in advance."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from onnx import TensorProto
from PIL import Image

from tests.detection.graphs import (
    OBJECTNESS,
    Box,
    anchor_based_rows,
    anchor_free_rows,
    end_to_end_rows,
    yolo_graph,
)
from warden.detection import DetectionModel, Layout
from warden.errors import InvalidArgument, InvalidModel, UnsupportedModel

NAMES = {0: "cat", 1: "dog", 2: "bird"}
META = {"names": str(NAMES), "task": "detect", "stride": "32", "imgsz": "[64, 64]"}
ANCHORS_64 = 8 * 8 + 4 * 4 + 2 * 2
BOXES = [Box(32, 32, 20, 10, 1, 0.9), Box(40, 40, 10, 10, 2, 0.6), Box(12, 50, 6, 6, 0, 0.3)]

# A 128x64 image letterboxes into 64x64 at gain 0.5 with 16 px of padding above and below.
WIDE = (64, 128)


def to_original(box: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box.xyxy
    return (
        min(max(x1 / 0.5, 0), 128),
        min(max((y1 - 16) / 0.5, 0), 64),
        min(max(x2 / 0.5, 0), 128),
        min(max((y2 - 16) / 0.5, 0), 64),
    )


def graph_for(layout: Layout, boxes: Sequence[Box] = BOXES, **kwargs: object) -> bytes:
    build: dict[Layout, Callable[[], npt.NDArray[np.float32]]] = {
        Layout.ANCHOR_FREE: lambda: anchor_free_rows(boxes, 3, ANCHORS_64),
        Layout.ANCHOR_BASED: lambda: anchor_based_rows(boxes, 3, 3 * ANCHORS_64),
        Layout.END_TO_END: lambda: end_to_end_rows(boxes, 10),
    }
    meta = dict(META)
    if layout is Layout.END_TO_END:
        meta["end2end"] = "True"
    return yolo_graph(build[layout](), metadata=meta, **kwargs)  # type: ignore[arg-type]


def black(height: int, width: int) -> npt.NDArray[np.uint8]:
    return np.zeros((height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", list(Layout))
def test_when_each_layout_is_loaded_then_it_is_recognised_and_boxes_map_back(layout: Layout) -> None:
    model = DetectionModel.load(graph_for(layout))
    assert model.info.layout is layout
    found = model.detect(black(*WIDE), conf=0.25)
    assert found.width == 128
    assert found.height == 64
    assert [d.class_name for d in found] == ["dog", "bird", "cat"]
    np.testing.assert_allclose(found.scores, [0.9, 0.6, 0.3], atol=1e-6)
    np.testing.assert_allclose(found.boxes, [to_original(b) for b in BOXES], atol=1e-4)


@pytest.mark.parametrize("layout", list(Layout))
def test_when_conf_equals_a_score_then_that_candidate_is_dropped(layout: Layout) -> None:
    model = DetectionModel.load(graph_for(layout, [Box(32, 32, 20, 10, 0, 0.5)]))
    assert len(model.detect(black(64, 64), conf=0.5)) == 0
    assert len(model.detect(black(64, 64), conf=0.4999)) == 1


@pytest.mark.parametrize("layout", [Layout.ANCHOR_FREE, Layout.ANCHOR_BASED])
def test_when_boxes_of_one_class_overlap_then_nms_keeps_the_best(layout: Layout) -> None:
    overlapping = [Box(32, 32, 20, 20, 0, 0.9), Box(33, 32, 20, 20, 0, 0.8), Box(33, 32, 20, 20, 1, 0.7)]
    model = DetectionModel.load(graph_for(layout, overlapping))
    found = model.detect(black(64, 64))
    assert found.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.7], atol=1e-6)
    assert len(model.detect(black(64, 64), iou=0.95)) == 3


@pytest.mark.parametrize("layout", list(Layout))
def test_when_max_det_and_classes_are_given_then_they_limit_the_answer(layout: Layout) -> None:
    model = DetectionModel.load(graph_for(layout))
    assert len(model.detect(black(64, 64), max_det=2)) == 2
    assert model.detect(black(64, 64), classes=[0, 2]).class_ids.tolist() == [2, 0]


def test_when_scores_are_objectness_times_class_then_v5_multiplies_them() -> None:
    rows = anchor_based_rows([Box(32, 32, 20, 10, 0, 0.5)], 3, 3 * ANCHORS_64)
    rows[0, 4] = 0.2  # objectness 0.2 x class score 0.625 = 0.125, under the threshold
    model = DetectionModel.load(yolo_graph(rows, metadata=META))
    assert len(model.detect(black(64, 64), conf=0.25)) == 0
    found = model.detect(black(64, 64), conf=0.1)
    np.testing.assert_allclose(found.scores, [0.2 * 0.5 / OBJECTNESS], atol=1e-6)


def test_when_a_two_class_v8_model_has_a_six_then_it_is_not_mistaken_for_end_to_end() -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 2, ANCHORS_64)
    model = DetectionModel.load(yolo_graph(rows, metadata={"names": "{0: 'a', 1: 'b'}"}))
    assert model.info.layout is Layout.ANCHOR_FREE
    assert model.detect(black(64, 64)).class_ids.tolist() == [1]


def test_when_the_model_has_no_metadata_then_the_shapes_decide_and_classes_get_default_names() -> None:
    model = DetectionModel.load(yolo_graph(anchor_free_rows(BOXES, 3, ANCHORS_64)))
    assert model.info.layout is Layout.ANCHOR_FREE
    assert model.info.names == ("class0", "class1", "class2")
    assert [d.class_name for d in model.detect(black(64, 64))] == ["class1", "class2", "class0"]


def test_when_labels_are_given_then_they_override_the_names() -> None:
    model = DetectionModel.load(graph_for(Layout.ANCHOR_FREE), labels=["x", "y", "z"])
    assert model.detect(black(64, 64)).to_dicts()[0]["class_name"] == "y"
    with pytest.raises(InvalidArgument, match="labels name 2 classes but the model predicts 3"):
        DetectionModel.load(graph_for(Layout.ANCHOR_FREE), labels=["x", "y"])


def test_when_the_batch_is_dynamic_then_several_images_run_in_one_call_in_order() -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 0, 0.5)], 3, ANCHORS_64)
    graph = yolo_graph(rows, input_shape=("batch", 3, 64, 64), brightness_at=(4, 0), metadata=META)
    model = DetectionModel.load(graph)
    assert model.info.batch is None
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    batch = model.prepare([black(64, 64), white, black(64, 64)])
    assert batch.tensor.shape == (3, 3, 64, 64)
    found = model.detect([black(64, 64), white, black(64, 64)])
    assert [float(f.scores[0]) for f in found] == pytest.approx([0.5, 1.5, 0.5], abs=1e-6)
    two_at_a_time = DetectionModel.load(graph, max_batch=2)
    assert two_at_a_time.batch_capacity == 2
    found = two_at_a_time.detect([white, black(64, 64), white])
    assert [float(f.scores[0]) for f in found] == pytest.approx([1.5, 0.5, 1.5], abs=1e-6)


def test_when_the_batch_is_fixed_above_one_then_a_short_batch_is_padded() -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 0, 0.5)], 3, ANCHORS_64)
    model = DetectionModel.load(yolo_graph(rows, input_shape=(2, 3, 64, 64), brightness_at=(4, 0), metadata=META))
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    assert model.prepare([white]).tensor.shape == (2, 3, 64, 64)
    found = model.detect([white, black(64, 64), white])
    assert [float(f.scores[0]) for f in found] == pytest.approx([1.5, 0.5, 1.5], abs=1e-6)


def test_when_a_batch_one_model_gets_several_images_then_each_runs_alone() -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 0, 0.5)], 3, ANCHORS_64)
    model = DetectionModel.load(yolo_graph(rows, brightness_at=(4, 0), metadata=META))
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    found = model.detect([white, black(64, 64)])
    assert [float(f.scores[0]) for f in found] == pytest.approx([1.5, 0.5], abs=1e-6)


def test_when_the_model_takes_float16_then_the_input_is_half_precision() -> None:
    rows = anchor_free_rows(BOXES, 3, ANCHORS_64)
    graph = yolo_graph(rows, input_type=TensorProto.FLOAT16, output_type=TensorProto.FLOAT16, metadata=META)
    model = DetectionModel.load(graph)
    assert model.info.input_dtype is np.float16
    assert model.prepare([black(64, 64)]).tensor.dtype == np.float16
    found = model.detect(black(*WIDE))
    np.testing.assert_allclose(found.boxes, [to_original(b) for b in BOXES], atol=0.1)
    np.testing.assert_allclose(found.scores, [0.9, 0.6, 0.3], atol=1e-3)


def test_when_height_and_width_are_dynamic_then_imgsz_and_rect_letterbox_apply() -> None:
    rows = anchor_free_rows(BOXES, 3, ANCHORS_64)
    shape = ("batch", 3, "height", "width")
    graph = yolo_graph(rows, input_shape=shape, output_shape=("batch", 7, "anchors"), metadata=META)
    model = DetectionModel.load(graph)
    assert model.info.dynamic_hw
    assert model.info.input_hw == (64, 64)
    # One image (or images of one shape): padded only up to a multiple of the stride.
    assert model.prepare([black(64, 128)]).tensor.shape == (1, 3, 32, 64)
    # Mixed shapes: every image letterboxed to the full square.
    assert model.prepare([black(64, 128), black(64, 64)]).tensor.shape == (2, 3, 64, 64)
    bigger = DetectionModel.load(graph, imgsz=128)
    assert bigger.prepare([black(64, 64)]).tensor.shape == (1, 3, 128, 128)
    with pytest.raises(InvalidArgument, match="multiples of the stride"):
        DetectionModel.load(graph, imgsz=100)


def test_when_imgsz_contradicts_a_fixed_input_then_loading_fails() -> None:
    with pytest.raises(InvalidArgument, match="differs from the model's fixed input"):
        DetectionModel.load(graph_for(Layout.ANCHOR_FREE), imgsz=640)


@pytest.mark.parametrize(
    ("task", "message"),
    [("segment", "instance segmentation"), ("pose", "pose estimation"), ("classify", "classification")],
)
def test_when_the_task_is_not_detection_then_loading_is_refused(task: str, message: str) -> None:
    rows = anchor_free_rows(BOXES, 3, ANCHORS_64)
    with pytest.raises(UnsupportedModel, match=message):
        DetectionModel.load(yolo_graph(rows, metadata={**META, "task": task}))


def test_when_the_layout_is_unknown_then_the_error_names_the_shape() -> None:
    rows = np.zeros((7, 7), dtype=np.float32)
    with pytest.raises(UnsupportedModel, match=r"\[1, 7, 7\]"):
        DetectionModel.load(yolo_graph(rows))


def test_when_the_model_has_several_outputs_then_it_is_refused() -> None:
    rows = anchor_free_rows(BOXES, 3, ANCHORS_64)
    with pytest.raises(UnsupportedModel, match="has 2"):
        DetectionModel.load(yolo_graph(rows, metadata=META, extra_outputs=1))


def test_when_the_file_is_missing_or_not_onnx_then_invalid_model(tmp_path: object) -> None:
    with pytest.raises(InvalidModel, match="no model file"):
        DetectionModel.load("/nonexistent/model.onnx")
    with pytest.raises(InvalidModel, match="ONNX Runtime cannot load"):
        DetectionModel.load(b"this is not a protobuf")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf": 1.5}, "conf"),
        ({"conf": float("nan")}, "conf"),
        ({"iou": -0.1}, "iou"),
        ({"max_det": 0}, "max_det"),
    ],
)
def test_when_thresholds_are_out_of_range_then_invalid_argument(kwargs: dict[str, float], message: str) -> None:
    model = DetectionModel.load(graph_for(Layout.ANCHOR_FREE))
    with pytest.raises(InvalidArgument, match=message):
        model.detect(black(64, 64), **kwargs)  # type: ignore[arg-type]


def test_when_inputs_are_bytes_numpy_or_pil_then_they_give_the_same_answer() -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 0, 0.5)], 3, ANCHORS_64)
    model = DetectionModel.load(yolo_graph(rows, brightness_at=(4, 0), metadata=META))
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    as_bytes = model.detect(buffer.getvalue())
    as_pil = model.detect(Image.fromarray(rgb))
    as_bgr = model.detect(np.ascontiguousarray(rgb[..., ::-1]))
    assert float(as_bytes.scores[0]) == pytest.approx(0.5 + 1 / 3, abs=1e-6)
    assert as_bytes.to_dicts() == as_pil.to_dicts() == as_bgr.to_dicts()


@pytest.mark.parametrize("device", ["cpu", " CPU ", "auto", "AUTO"])
def test_when_the_device_name_has_any_case_then_it_loads_on_cpu(device: str) -> None:
    model = DetectionModel.load(graph_for(Layout.ANCHOR_FREE), device=device)
    assert model.info.providers[-1] == "CPUExecutionProvider"
