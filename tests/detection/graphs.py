"""Small YOLO-shaped ONNX graphs built with ``onnx.helper``, with known outputs.

Each graph emits a constant set of raw rows in one of the output layouts, plus
the mean pixel value of its input added to one chosen score, so tests can tell
the images of a batch apart. Boxes are given in model-input pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

Dim = int | str


@dataclass(frozen=True)
class Box:
    """One logical detection in model-input pixels: centre, size, class and score."""

    cx: float
    cy: float
    w: float
    h: float
    class_id: int
    score: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.cx - self.w / 2, self.cy - self.h / 2, self.cx + self.w / 2, self.cy + self.h / 2)


def anchor_free_rows(boxes: Sequence[Box], num_classes: int, anchors: int) -> npt.NDArray[np.float32]:
    """YOLOv8/11 rows ``[4+nc, N]``: box then class scores, no objectness."""
    rows = np.zeros((4 + num_classes, anchors), dtype=np.float32)
    for i, b in enumerate(boxes):
        rows[:4, i] = (b.cx, b.cy, b.w, b.h)
        rows[4 + b.class_id, i] = b.score
    return rows


OBJECTNESS = 0.8


def anchor_based_rows(boxes: Sequence[Box], num_classes: int, anchors: int) -> npt.NDArray[np.float32]:
    """YOLOv5/7 rows ``[N, 5+nc]``: box, objectness, class scores (score = objectness x class)."""
    rows = np.zeros((anchors, 5 + num_classes), dtype=np.float32)
    for i, b in enumerate(boxes):
        rows[i, :5] = (b.cx, b.cy, b.w, b.h, OBJECTNESS)
        rows[i, 5 + b.class_id] = b.score / OBJECTNESS
    return rows


def end_to_end_rows(boxes: Sequence[Box], slots: int) -> npt.NDArray[np.float32]:
    """End-to-end rows ``[K, 6]``: x1, y1, x2, y2, score, class id (zero rows pad to K)."""
    rows = np.zeros((slots, 6), dtype=np.float32)
    for i, b in enumerate(boxes):
        rows[i] = (*b.xyxy, b.score, b.class_id)
    return rows


def yolo_graph(
    rows: npt.NDArray[np.float32],
    *,
    input_shape: Sequence[Dim] = (1, 3, 64, 64),
    output_shape: Sequence[Dim] | None = None,
    input_type: int = TensorProto.FLOAT,
    output_type: int = TensorProto.FLOAT,
    brightness_at: tuple[int, int] | None = None,
    metadata: Mapping[str, str] | None = None,
    extra_outputs: int = 0,
) -> bytes:
    """Serialise a graph whose single output is ``rows`` broadcast over the batch.

    With ``brightness_at`` the input's mean value (in [0, 1]) is added to that
    element of every image's rows.
    """
    nodes = []
    source = "images"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["images"], ["images_f"], to=TensorProto.FLOAT))
        source = "images_f"
    mask = np.zeros((1, *rows.shape), dtype=np.float32)
    if brightness_at is not None:
        mask[(0, *brightness_at)] = 1.0
    initializers = [
        numpy_helper.from_array(rows[None].astype(np.float32), "rows"),
        numpy_helper.from_array(mask, "mask"),
        numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "shape3"),
    ]
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean4", "shape3"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "mask"], ["lit"]),
        helper.make_node("Add", ["rows", "lit"], ["raw"]),
    ]
    if output_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["raw"], ["output0"], to=output_type))
    else:
        nodes.append(helper.make_node("Identity", ["raw"], ["output0"]))
    batch = input_shape[0]
    outputs = [helper.make_tensor_value_info("output0", output_type, output_shape or [batch, *rows.shape])]
    for k in range(extra_outputs):
        nodes.append(helper.make_node("Identity", ["mean4"], [f"extra{k}"]))
        outputs.append(helper.make_tensor_value_info(f"extra{k}", TensorProto.FLOAT, ["batch", 1, 1, 1]))
    graph = helper.make_graph(
        nodes,
        "yolo_test",
        [helper.make_tensor_value_info("images", input_type, list(input_shape))],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="warden-tests")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()
