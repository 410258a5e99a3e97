"""YOLO output layouts: recognising them from shapes and metadata, and turning raw outputs into boxes.

Three families exist in the wild:

========================  ===============  =====================================
layout                    output shape     per row
========================  ===============  =====================================
``ANCHOR_FREE`` (v8/v11)  ``[B, 4+nc, N]``  cx, cy, w, h, class scores (no objectness)
``ANCHOR_BASED`` (v5/v7)  ``[B, N, 5+nc]``  cx, cy, w, h, objectness, class scores
``END_TO_END`` (v10/nms)  ``[B, K, 6]``     x1, y1, x2, y2, score, class id
========================  ===============  =====================================

A two-class v8 model also has a 6 in its shape, so the decision always uses both
dimensions, the class count from metadata and the anchor counts the input size implies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from warden.detection.nms import nms
from warden.errors import UnsupportedModel

MAX_NMS_CANDIDATES: Final = 30_000
CLASS_OFFSET: Final = 7680.0
"""Ultralytics separates classes for NMS by shifting each class's boxes by ``class × 7680``."""

Dim = int | None


class Layout(StrEnum):
    """The output layout families Warden decodes."""

    ANCHOR_FREE = "anchor_free"
    ANCHOR_BASED = "anchor_based"
    END_TO_END = "end_to_end"


@dataclass(frozen=True, slots=True)
class Candidates:
    """Boxes (``xyxy``, model-input pixels), scores and class ids of one image, best first."""

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]


def anchor_counts(input_hw: tuple[Dim, Dim], strides: Sequence[int] = (8, 16, 32)) -> frozenset[int]:
    """Row counts a model of this input size can emit: grid cells over all strides, and 3 anchors each."""
    height, width = input_hw
    if height is None or width is None:
        return frozenset()
    cells = sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)
    return frozenset({cells, 3 * cells})


def detect_layout(
    shape: Sequence[Dim],
    num_classes: int | None,
    anchors: frozenset[int],
    end2end: bool | None = None,
) -> tuple[Layout, int | None]:
    """Decide the layout of an output of ``shape`` and return it with the class count it implies.

    ``None`` dimensions are symbolic (dynamic). Raises ``UnsupportedModel``
    naming the shape when no layout, or more than one, fits.
    """
    described = _describe(shape)
    if len(shape) != 3:
        raise UnsupportedModel(f"expected one detection output of rank 3, got shape {described}")
    _, d1, d2 = shape
    if end2end:
        if d2 not in (6, None):
            raise UnsupportedModel(f"end-to-end model output must be [B, K, 6], got {described}")
        return Layout.END_TO_END, num_classes
    fits: list[Layout] = []
    if num_classes is not None:
        if d1 == 4 + num_classes:
            fits.append(Layout.ANCHOR_FREE)
        if d2 == 5 + num_classes:
            fits.append(Layout.ANCHOR_BASED)
    else:
        if d1 is not None and d1 > 4 and (d2 is None or d2 > d1):
            fits.append(Layout.ANCHOR_FREE)
        if d2 is not None and d2 > 5 and (d1 is None or d1 > d2):
            fits.append(Layout.ANCHOR_BASED)
    if d2 == 6 and d1 not in anchors:
        fits.append(Layout.END_TO_END)
    if len(fits) > 1 and anchors:
        # Grid layouts must emit a grid's row count; an end-to-end output never does.
        fits = [f for f in fits if f is Layout.END_TO_END or _rows(f, d1, d2) in anchors] or fits
    if len(fits) != 1:
        classes = "unknown" if num_classes is None else str(num_classes)
        problem = "no known layout fits" if not fits else "several layouts fit"
        raise UnsupportedModel(
            f"{problem} output shape {described} with {classes} classes; expected [B, 4+nc, N] (YOLOv8/11), "
            "[B, N, 5+nc] (YOLOv5/7) or [B, K, 6] (end-to-end)"
        )
    layout = fits[0]
    if layout is Layout.ANCHOR_FREE and d1 is not None:
        return layout, d1 - 4
    if layout is Layout.ANCHOR_BASED and d2 is not None:
        return layout, d2 - 5
    return layout, num_classes


def check_output(output: npt.NDArray[np.floating], layout: Layout, num_classes: int | None) -> None:
    """Verify a concrete output still fits the layout chosen at load time (dynamic dims included)."""
    ok = output.ndim == 3
    if ok and layout is Layout.ANCHOR_FREE:
        ok = num_classes is None or output.shape[1] == 4 + num_classes
    elif ok and layout is Layout.ANCHOR_BASED:
        ok = num_classes is None or output.shape[2] == 5 + num_classes
    elif ok:
        ok = output.shape[2] == 6
    if not ok:
        raise UnsupportedModel(
            f"the model produced an output of shape {list(output.shape)}, which does not fit the "
            f"{layout.value} layout with {num_classes} classes"
        )


def decode(
    output: npt.NDArray[np.floating],
    layout: Layout,
    *,
    conf: float,
    iou: float,
    max_det: int,
    classes: frozenset[int] | None = None,
) -> Candidates:
    """Filter one image's raw rows by confidence and class, suppress overlaps, and keep ``max_det``."""
    rows = np.asarray(output, dtype=np.float32)
    if layout is Layout.END_TO_END:
        return _end_to_end(rows, conf, max_det, classes)
    if layout is Layout.ANCHOR_FREE:
        rows = rows.T
        class_scores = rows[:, 4:]
        keep = class_scores.max(axis=1, initial=-np.inf) > conf
    else:
        keep = rows[:, 4] > conf
        class_scores = rows[:, 5:] * rows[:, 4:5]
    rows, class_scores = rows[keep], class_scores[keep]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    chosen = scores > conf
    if classes is not None:
        chosen &= np.isin(class_ids, list(classes))
    boxes = _xywh_to_xyxy(rows[chosen, :4])
    scores, class_ids = scores[chosen], class_ids[chosen]
    if len(scores) > MAX_NMS_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    offset = class_ids.astype(np.float32)[:, None] * np.float32(CLASS_OFFSET)
    kept = nms(boxes + offset, scores, iou)[:max_det]
    return Candidates(boxes[kept], scores[kept], class_ids[kept].astype(np.int64))


def _end_to_end(rows: npt.NDArray[np.float32], conf: float, max_det: int, classes: frozenset[int] | None) -> Candidates:
    chosen = rows[:, 4] > conf
    class_ids = rows[:, 5].astype(np.int64)
    if classes is not None:
        chosen &= np.isin(class_ids, list(classes))
    rows, class_ids = rows[chosen], class_ids[chosen]
    order = np.argsort(-rows[:, 4], kind="stable")[:max_det]
    return Candidates(np.ascontiguousarray(rows[order, :4]), rows[order, 4].copy(), class_ids[order])


def _xywh_to_xyxy(xywh: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    half = xywh[:, 2:4] / 2
    return np.concatenate((xywh[:, :2] - half, xywh[:, :2] + half), axis=1)


def _rows(layout: Layout, d1: Dim, d2: Dim) -> Dim:
    return d2 if layout is Layout.ANCHOR_FREE else d1


def _describe(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
