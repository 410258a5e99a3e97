"""Greedy non-maximum suppression with the semantics of ``torchvision.ops.nms``.

Boxes are ``xyxy``; a box is suppressed when its IoU with a kept, higher-scoring
box is strictly greater than the threshold; areas carry no ``+1``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> npt.NDArray[np.intp]:
    """Return the indices of the boxes kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    threshold = np.float32(iou)
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(overlap > threshold)]
    return np.asarray(keep, dtype=np.intp)
