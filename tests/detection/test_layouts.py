"""Output layouts: recognising them from shapes and metadata, checking outputs, and decoding rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from warden.detection.layouts import (
    MAX_NMS_CANDIDATES,
    Candidates,
    Dim,
    Layout,
    anchor_counts,
    check_output,
    decode,
    detect_layout,
)
from warden.errors import UnsupportedModel

A640 = anchor_counts((640, 640))
NO_ANCHORS: frozenset[int] = frozenset()


# --- anchor_counts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_hw", "strides", "expected"),
    [
        pytest.param((640, 640), (8, 16, 32), {8400, 25200}, id="640 P5"),
        pytest.param((640, 640), (8, 16, 32, 64), {8500, 25500}, id="640 P6"),
        pytest.param((480, 640), (8, 16, 32), {6300, 18900}, id="480x640 dynamic export"),
        pytest.param((100, 100), (8, 16, 32), {13 * 13 + 7 * 7 + 4 * 4, 3 * (13 * 13 + 7 * 7 + 4 * 4)}, id="ceil"),
        pytest.param((None, 640), (8, 16, 32), set(), id="dynamic height"),
        pytest.param((640, None), (8, 16, 32), set(), id="dynamic width"),
    ],
)
def test_when_input_size_is_known_then_anchor_counts_are_grid_cells_and_three_anchors_each(
    input_hw: tuple[Dim, Dim], strides: tuple[int, ...], expected: set[int]
) -> None:
    assert anchor_counts(input_hw, strides) == frozenset(expected)


def test_when_no_strides_are_given_then_anchor_counts_uses_p5_strides() -> None:
    assert anchor_counts((640, 640)) == {8400, 25200}


# --- detect_layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "num_classes", "anchors", "end2end", "expected"),
    [
        pytest.param([1, 84, 8400], 80, A640, None, (Layout.ANCHOR_FREE, 80), id="v8 80 classes"),
        pytest.param([1, 84, 8400], None, A640, None, (Layout.ANCHOR_FREE, 80), id="v8 nc from shape"),
        pytest.param([1, 84, 8400], 80, A640, False, (Layout.ANCHOR_FREE, 80), id="v8 end2end False"),
        pytest.param([1, 6, 8400], 2, A640, None, (Layout.ANCHOR_FREE, 2), id="v8 2 classes"),
        pytest.param([1, 6, 8400], None, A640, None, (Layout.ANCHOR_FREE, 2), id="v8 2 classes nc unknown"),
        pytest.param([1, 6, 8400], None, NO_ANCHORS, None, (Layout.ANCHOR_FREE, 2), id="v8 2 cls no anchors"),
        pytest.param([1, 6, 6300], None, anchor_counts((480, 640)), None, (Layout.ANCHOR_FREE, 2), id="v8 480x640"),
        pytest.param([1, 25200, 85], 80, A640, None, (Layout.ANCHOR_BASED, 80), id="v5 80 classes"),
        pytest.param([1, 25200, 85], None, A640, None, (Layout.ANCHOR_BASED, 80), id="v5 nc from shape"),
        pytest.param([1, 25200, 6], 1, A640, None, (Layout.ANCHOR_BASED, 1), id="v5 1 class"),
        pytest.param([1, 25200, 6], None, A640, None, (Layout.ANCHOR_BASED, 1), id="v5 1 class nc unknown"),
        pytest.param([1, 300, 6], 2, A640, None, (Layout.END_TO_END, 2), id="e2e 2 classes no metadata"),
        pytest.param([1, 300, 6], 1, A640, True, (Layout.END_TO_END, 1), id="e2e 1 class end2end metadata"),
        # Regressions: a 1-class end-to-end export without metadata was called ambiguous.
        pytest.param([1, 300, 6], 1, A640, None, (Layout.END_TO_END, 1), id="e2e 1 class no metadata"),
        pytest.param([1, 300, 6], None, A640, None, (Layout.END_TO_END, None), id="e2e nc unknown no metadata"),
        pytest.param([1, 300, 6], None, A640, True, (Layout.END_TO_END, None), id="e2e nc unknown"),
        pytest.param([None, None, 6], 80, NO_ANCHORS, True, (Layout.END_TO_END, 80), id="e2e dynamic"),
        pytest.param([None, 84, None], 80, NO_ANCHORS, None, (Layout.ANCHOR_FREE, 80), id="v8 dynamic"),
        pytest.param([None, 84, None], None, NO_ANCHORS, None, (Layout.ANCHOR_FREE, 80), id="v8 dynamic no nc"),
        pytest.param([None, None, 85], 80, NO_ANCHORS, None, (Layout.ANCHOR_BASED, 80), id="v5 dynamic"),
        pytest.param([None, None, 85], None, NO_ANCHORS, None, (Layout.ANCHOR_BASED, 80), id="v5 dynamic no nc"),
    ],
)
def test_when_shape_and_metadata_fit_one_layout_then_it_is_chosen_with_its_class_count(
    shape: list[Dim],
    num_classes: int | None,
    anchors: frozenset[int],
    end2end: bool | None,
    expected: tuple[Layout, int | None],
) -> None:
    assert detect_layout(shape, num_classes, anchors, end2end) == expected


@pytest.mark.parametrize(
    ("shape", "num_classes", "anchors", "end2end", "described"),
    [
        pytest.param([84, 8400], 80, A640, None, "[84, 8400]", id="rank 2"),
        pytest.param([1, 1, 84, 8400], 80, A640, None, "[1, 1, 84, 8400]", id="rank 4"),
        pytest.param([1, 84, 8400], 80, A640, True, "[1, 84, 8400]", id="end2end metadata on a v8 shape"),
        pytest.param([1, 84, 8400], 2, A640, None, "[1, 84, 8400]", id="class count fits no dimension"),
        pytest.param([1, 3, 8400], None, A640, None, "[1, 3, 8400]", id="too few channels"),
        pytest.param([1, 25200, 4], None, A640, None, "[1, 25200, 4]", id="too few columns"),
        pytest.param([None, None, None], None, NO_ANCHORS, None, "[?, ?, ?]", id="fully dynamic"),
        pytest.param([1, 300, 6], None, NO_ANCHORS, None, "[1, 300, 6]", id="v5 or e2e, nothing to decide"),
    ],
)
def test_when_no_single_layout_fits_then_unsupported_model_names_the_shape(
    shape: list[Dim],
    num_classes: int | None,
    anchors: frozenset[int],
    end2end: bool | None,
    described: str,
) -> None:
    with pytest.raises(UnsupportedModel) as caught:
        detect_layout(shape, num_classes, anchors, end2end)
    assert described in str(caught.value)


def test_when_a_two_class_v8_shape_is_seen_then_it_is_never_end_to_end() -> None:
    for num_classes in (2, None):
        for anchors in (A640, NO_ANCHORS):
            layout, _ = detect_layout([1, 6, 8400], num_classes, anchors)
            assert layout is not Layout.END_TO_END


# --- check_output --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "layout", "num_classes"),
    [
        pytest.param((1, 6, 8400), Layout.ANCHOR_FREE, 2, id="v8 2 classes"),
        pytest.param((2, 7, 6300), Layout.ANCHOR_FREE, None, id="v8 classes unknown"),
        pytest.param((1, 25200, 6), Layout.ANCHOR_BASED, 1, id="v5 1 class"),
        pytest.param((1, 18900, 9), Layout.ANCHOR_BASED, None, id="v5 classes unknown"),
        pytest.param((1, 300, 6), Layout.END_TO_END, 80, id="e2e"),
        pytest.param((4, 17, 6), Layout.END_TO_END, None, id="e2e dynamic K"),
    ],
)
def test_when_output_fits_its_layout_then_check_output_accepts_it(
    shape: tuple[int, ...], layout: Layout, num_classes: int | None
) -> None:
    check_output(np.zeros(shape, dtype=np.float32), layout, num_classes)


@pytest.mark.parametrize(
    ("shape", "layout", "num_classes"),
    [
        pytest.param((1, 7, 8400), Layout.ANCHOR_FREE, 2, id="v8 wrong channels"),
        pytest.param((6, 8400), Layout.ANCHOR_FREE, 2, id="v8 rank 2"),
        pytest.param((1, 25200, 7), Layout.ANCHOR_BASED, 1, id="v5 wrong columns"),
        pytest.param((25200, 6), Layout.ANCHOR_BASED, None, id="v5 rank 2"),
        pytest.param((1, 300, 7), Layout.END_TO_END, None, id="e2e wrong columns"),
        pytest.param((1, 1, 300, 6), Layout.END_TO_END, None, id="e2e rank 4"),
    ],
)
def test_when_output_does_not_fit_its_layout_then_check_output_names_shape_and_layout(
    shape: tuple[int, ...], layout: Layout, num_classes: int | None
) -> None:
    with pytest.raises(UnsupportedModel) as caught:
        check_output(np.zeros(shape, dtype=np.float32), layout, num_classes)
    assert str(list(shape)) in str(caught.value)
    assert layout.value in str(caught.value)


# --- decode --------------------------------------------------------------------------------------


def anchor_free(rows: Sequence[tuple[float, ...]]) -> npt.NDArray[np.float32]:
    """One image's v8 output ``[4+nc, N]`` from rows ``(cx, cy, w, h, score_0, ...)``."""
    return np.asarray(rows, dtype=np.float32).T.copy()


def anchor_based(rows: Sequence[tuple[float, ...]]) -> npt.NDArray[np.float32]:
    """One image's v5 output ``[N, 5+nc]`` from rows ``(cx, cy, w, h, objectness, score_0, ...)``."""
    return np.asarray(rows, dtype=np.float32)


def as_lists(found: Candidates) -> tuple[list[list[float]], list[float], list[int]]:
    return found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist()


def decode_all(
    output: npt.NDArray[np.float32],
    layout: Layout,
    *,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: frozenset[int] | None = None,
) -> Candidates:
    return decode(output, layout, conf=conf, iou=iou, max_det=max_det, classes=classes)


def test_when_v8_rows_are_decoded_then_boxes_are_xyxy_and_best_class_wins() -> None:
    output = anchor_free([(10, 20, 4, 6, 0.3, 0.7), (100, 100, 10, 10, 0.0, 0.0)])
    found = decode_all(output, Layout.ANCHOR_FREE)
    assert found.boxes.dtype == np.float32
    assert found.class_ids.dtype == np.int64
    assert found.boxes.tolist() == [[8, 17, 12, 23]]
    assert found.scores.tolist() == pytest.approx([0.7])
    assert found.class_ids.tolist() == [1]


@pytest.mark.parametrize(
    ("score", "kept"),
    [
        pytest.param(0.5, False, id="equal to conf dropped"),
        pytest.param(float(np.nextafter(np.float32(0.5), np.float32(1))), True, id="just above conf kept"),
        pytest.param(float(np.nextafter(np.float32(0.5), np.float32(0))), False, id="just below conf dropped"),
    ],
)
def test_when_the_best_class_score_is_at_conf_then_it_must_be_strictly_greater(score: float, kept: bool) -> None:
    output = anchor_free([(10, 10, 4, 4, score, 0.1)])
    found = decode_all(output, Layout.ANCHOR_FREE, conf=0.5)
    assert len(found.scores) == int(kept)


def test_when_v5_rows_are_decoded_then_score_is_objectness_times_class_score() -> None:
    output = anchor_based([(10, 20, 4, 6, 0.8, 0.25, 0.75)])
    found = decode_all(output, Layout.ANCHOR_BASED)
    assert found.boxes.tolist() == [[8, 17, 12, 23]]
    assert found.scores.tolist() == pytest.approx([0.6])
    assert found.class_ids.tolist() == [1]


@pytest.mark.parametrize(
    ("objectness", "class_score", "kept"),
    [
        pytest.param(0.5, 1.0, False, id="objectness equal to conf dropped"),
        pytest.param(1.0, 0.5, False, id="product equal to conf dropped"),
        pytest.param(0.8, 0.7, True, id="product above conf kept"),
        pytest.param(0.4, 1.0, False, id="objectness below conf dropped"),
    ],
)
def test_when_v5_scores_meet_conf_then_both_objectness_and_product_must_exceed_it(
    objectness: float, class_score: float, kept: bool
) -> None:
    output = anchor_based([(10, 10, 4, 4, objectness, class_score)])
    found = decode_all(output, Layout.ANCHOR_BASED, conf=0.5)
    assert len(found.scores) == int(kept)


def test_when_nothing_passes_conf_then_decode_returns_empty_arrays_of_the_right_shape() -> None:
    found = decode_all(anchor_free([(10, 10, 4, 4, 0.1, 0.2)]), Layout.ANCHOR_FREE)
    assert found.boxes.shape == (0, 4)
    assert found.scores.shape == (0,)
    assert found.class_ids.shape == (0,)


def test_when_an_output_has_no_rows_then_decode_returns_nothing() -> None:
    found = decode_all(np.zeros((6, 0), dtype=np.float32), Layout.ANCHOR_FREE)
    assert found.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("classes", "expected_ids"),
    [
        pytest.param(None, [0, 1, 2], id="no filter"),
        pytest.param(frozenset({1}), [1], id="one class"),
        pytest.param(frozenset({0, 2}), [0, 2], id="two classes"),
        pytest.param(frozenset({7}), [], id="absent class"),
        pytest.param(frozenset(), [], id="empty filter keeps nothing"),
    ],
)
@pytest.mark.parametrize("layout", [Layout.ANCHOR_FREE, Layout.ANCHOR_BASED, Layout.END_TO_END])
def test_when_classes_are_given_then_only_those_classes_are_kept(
    layout: Layout, classes: frozenset[int] | None, expected_ids: list[int]
) -> None:
    # Three disjoint boxes, one per class, scores 0.9, 0.8, 0.7.
    centres = [(10, 10), (50, 50), (90, 90)]
    scores = [0.9, 0.8, 0.7]
    if layout is Layout.ANCHOR_FREE:
        onehot = np.eye(3) * np.asarray(scores)[:, None]
        output = anchor_free([(x, y, 4, 4, *s) for (x, y), s in zip(centres, onehot, strict=True)])
    elif layout is Layout.ANCHOR_BASED:
        output = anchor_based(
            [(x, y, 4, 4, s, *np.eye(3)[i]) for i, ((x, y), s) in enumerate(zip(centres, scores, strict=True))]
        )
    else:
        output = np.asarray(
            [(x - 2, y - 2, x + 2, y + 2, s, i) for i, ((x, y), s) in enumerate(zip(centres, scores, strict=True))],
            dtype=np.float32,
        )
    found = decode_all(output, layout, classes=classes)
    assert found.class_ids.tolist() == expected_ids


def test_when_more_boxes_survive_than_max_det_then_the_best_max_det_are_kept() -> None:
    scores = [0.3, 0.9, 0.5, 0.8, 0.6]
    output = anchor_free([(20 * i + 10, 10, 4, 4, s) for i, s in enumerate(scores)])
    found = decode_all(output, Layout.ANCHOR_FREE, max_det=2)
    assert found.scores.tolist() == pytest.approx([0.9, 0.8])
    assert found.boxes[:, 0].tolist() == [28, 68]


def test_when_boxes_of_one_class_overlap_then_the_weaker_is_suppressed() -> None:
    output = anchor_free([(50, 50, 20, 20, 0.6, 0.0), (51, 50, 20, 20, 0.9, 0.0)])
    found = decode_all(output, Layout.ANCHOR_FREE, iou=0.5)
    assert found.scores.tolist() == pytest.approx([0.9])
    assert found.boxes.tolist() == [[41, 40, 61, 60]]


def test_when_boxes_of_different_classes_overlap_then_both_are_kept_best_first() -> None:
    output = anchor_free([(50, 50, 20, 20, 0.6, 0.0), (50, 50, 20, 20, 0.0, 0.9)])
    found = decode_all(output, Layout.ANCHOR_FREE, iou=0.5)
    assert found.class_ids.tolist() == [1, 0]
    assert found.scores.tolist() == pytest.approx([0.9, 0.6])
    assert found.boxes.tolist() == [[40, 40, 60, 60], [40, 40, 60, 60]]


def test_when_end_to_end_rows_are_decoded_then_they_are_ordered_by_score_and_not_suppressed() -> None:
    output = np.asarray(
        [
            (0, 0, 10, 10, 0.3, 0),
            (0, 0, 10, 10, 0.9, 0),  # identical to the first: end-to-end rows are already suppressed
            (5, 5, 20, 20, 0.6, 3),
            (1, 1, 2, 2, 0.25, 1),  # equal to conf: dropped
            (0, 0, 0, 0, 0.0, 0),  # padding row
        ],
        dtype=np.float32,
    )
    boxes, scores, class_ids = as_lists(decode_all(output, Layout.END_TO_END, conf=0.25))
    assert boxes == [[0, 0, 10, 10], [5, 5, 20, 20], [0, 0, 10, 10]]
    assert scores == pytest.approx([0.9, 0.6, 0.3])
    assert class_ids == [0, 3, 0]


def test_when_end_to_end_rows_exceed_max_det_then_the_best_are_kept() -> None:
    output = np.asarray([(i, i, i + 1, i + 1, s, 0) for i, s in enumerate([0.4, 0.7, 0.5])], dtype=np.float32)
    _, scores, _ = as_lists(decode_all(output, Layout.END_TO_END, max_det=2))
    assert scores == pytest.approx([0.7, 0.5])


def test_when_end_to_end_scores_tie_then_row_order_is_kept() -> None:
    output = np.asarray([(i, 0, i + 1, 1, 0.5, i) for i in range(4)], dtype=np.float32)
    assert decode_all(output, Layout.END_TO_END).class_ids.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("cluster", "expected_scores"),
    [
        # The cluster fills the candidate cap on its own: the weak, separate box never reaches NMS.
        pytest.param(MAX_NMS_CANDIDATES, [0.9], id="over the cap"),
        # One candidate fewer: the weak box reaches NMS and, overlapping nothing, survives.
        pytest.param(MAX_NMS_CANDIDATES - 1, [0.9, 0.5], id="at the cap"),
    ],
)
def test_when_candidates_exceed_the_cap_then_only_the_best_reach_nms(
    cluster: int, expected_scores: list[float]
) -> None:
    output = np.zeros((5, cluster + 1), dtype=np.float32)
    output[:, 0] = (500, 500, 20, 20, 0.5)  # weakest, first in row order, overlapping nothing
    output[:, 1:] = np.asarray([[50], [50], [20], [20], [0.9]], dtype=np.float32)  # identical boxes
    found = decode_all(output, Layout.ANCHOR_FREE)
    assert found.scores.tolist() == pytest.approx(expected_scores)
