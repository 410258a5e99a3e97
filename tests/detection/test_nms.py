"""Greedy NMS: torchvision semantics (score order, suppression only above the threshold, no +1 areas)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.detection.nms import nms

BoxList = Sequence[tuple[float, float, float, float]]


def run(boxes: BoxList, scores: Sequence[float], iou: float) -> list[int]:
    kept = nms(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(scores, dtype=np.float32),
        iou,
    )
    assert kept.dtype == np.intp
    return [int(i) for i in kept]


def reference_nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> list[int]:
    """Textbook O(n^2) greedy NMS, written independently of the module under test."""

    def overlap(a: int, b: int) -> float:
        ax1, ay1, ax2, ay2 = (float(v) for v in boxes[a])
        bx1, by1, bx2, by2 = (float(v) for v in boxes[b])
        inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        # torchvision divides 0 by 0 here; NaN is never above the threshold, so nothing is suppressed.
        return inter / union if union > 0 else float("nan")

    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # sorted() is stable
    kept: list[int] = []
    for i in order:
        if all(not overlap(k, i) > iou for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "expected"),
    [
        pytest.param([], [], 0.5, [], id="empty input"),
        pytest.param([(0, 0, 10, 10)], [0.3], 0.5, [0], id="single box"),
        pytest.param(
            [(0, 0, 10, 10), (20, 20, 30, 30)], [0.4, 0.9], 0.5, [1, 0], id="no overlap keeps all, best first"
        ),
        pytest.param(
            [(0, 0, 10, 10), (10, 0, 20, 10)],
            [0.9, 0.8],
            0.0,
            [0, 1],
            id="touching edges are IoU 0, kept at 0",
        ),
        pytest.param([(0, 0, 10, 10), (0, 0, 10, 10)], [0.4, 0.9], 0.99, [1], id="full overlap keeps the better"),
        # [0,3]x[0,1] and [1,4]x[0,1]: intersection 2, union 4, IoU exactly 0.5.
        pytest.param([(0, 0, 3, 1), (1, 0, 4, 1)], [0.9, 0.8], 0.5, [0, 1], id="IoU equal to threshold kept"),
        pytest.param([(0, 0, 3, 1), (1, 0, 4, 1)], [0.9, 0.8], 0.49, [0], id="IoU just above threshold suppressed"),
        # [0,5]x[0,1] and [3,8]x[0,1]: intersection 2, union 8, IoU exactly 0.25.
        pytest.param([(0, 0, 5, 1), (3, 0, 8, 1)], [0.9, 0.8], 0.25, [0, 1], id="IoU 0.25 at 0.25 kept"),
        pytest.param([(0, 0, 5, 1), (3, 0, 8, 1)], [0.9, 0.8], 0.24, [0], id="IoU 0.25 at 0.24 suppressed"),
        # Areas without +1: [0,1]x[0,1] in [0,2]x[0,1] is IoU 1/2 (with +1 it would be 4/6).
        pytest.param([(0, 0, 2, 1), (0, 0, 1, 1)], [0.9, 0.8], 0.6, [0, 1], id="areas carry no plus one"),
        pytest.param([(5, 5, 5, 5), (5, 5, 5, 5)], [0.9, 0.8], 0.0, [0, 1], id="identical zero-area boxes both kept"),
        pytest.param([(0, 0, 10, 10), (5, 5, 5, 5)], [0.9, 0.8], 0.0, [0, 1], id="zero-area box inside a box kept"),
        pytest.param([(0, 0, 10, 10), (0, 0, 10, 10)], [0.5, 0.5], 0.5, [0], id="score tie keeps earlier index"),
        pytest.param(
            [(50, 50, 60, 60), (0, 0, 10, 10), (0, 0, 10, 10)],
            [0.5, 0.5, 0.5],
            0.5,
            [0, 1],
            id="score ties keep index order",
        ),
        pytest.param(
            [(0, 0, 10, 10), (1, 0, 11, 10), (2, 0, 12, 10)],
            [0.9, 0.8, 0.7],
            0.7,
            [0, 2],
            id="suppressed box does not suppress others",
        ),
    ],
)
def test_when_boxes_overlap_then_nms_keeps_the_expected_indices(
    boxes: BoxList, scores: list[float], iou: float, expected: list[int]
) -> None:
    assert run(boxes, scores, iou) == expected


def test_when_a_box_is_suppressed_then_its_index_is_never_returned() -> None:
    boxes = [(0, 0, 10, 10), (0, 0, 10, 9), (100, 100, 110, 110)]
    assert run(boxes, [0.9, 0.95, 0.1], 0.5) == [1, 2]


@st.composite
def box_sets(draw: st.DrawFn) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    n = draw(st.integers(min_value=0, max_value=25))
    coords = st.integers(min_value=0, max_value=20)
    sides = st.integers(min_value=0, max_value=12)
    boxes = []
    for _ in range(n):
        x, y, w, h = draw(coords), draw(coords), draw(sides), draw(sides)
        boxes.append((x, y, x + w, y + h))
    # Few distinct scores, so ties in score are common.
    scores = [draw(st.integers(min_value=0, max_value=8)) / 8 for _ in range(n)]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(scores, dtype=np.float32)


@settings(max_examples=200, deadline=None)
@given(data=box_sets(), iou=st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0]))
def test_when_compared_with_a_reference_greedy_nms_then_results_agree(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]], iou: float
) -> None:
    boxes, scores = data
    assert [int(i) for i in nms(boxes, scores, iou)] == reference_nms(boxes, scores, iou)
