"""Answers built within a byte budget: a detection answer past ``WARDEN_MAX_ANSWER_BYTES`` is refused, never built.

A tiny request can ask for a huge answer (a model with long class names, ``max_det`` in
the thousands, raw outputs as JSON text). The encoders here write the answer piece by
piece, each piece counted against an :class:`AnswerBudget` before the next is made, so
the refusal (``answer_too_large``) comes when the limit is passed, not after the whole
answer sits in memory. The bytes are those ``JSONResponse`` would write.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from warden.detection import Detections
from warden.detection.results import class_name
from warden.errors import AnswerTooLarge

_VALUES_PER_PIECE: Final = 16 * 1024


class AnswerBudget:
    """The bytes an answer may still take; :meth:`take` refuses the piece that passes the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        """Count ``size`` more bytes of the answer, or raise ``AnswerTooLarge`` when they do not fit."""
        self.used += size
        if self.used > self.limit:
            raise AnswerTooLarge(
                f"the answer would be larger than the server's limit of {self.limit} bytes; "
                "ask for fewer detections (max_det), a higher conf, fewer images, or binary outputs"
            )


def dumps(value: object) -> bytes:
    """``value`` as the compact UTF-8 JSON ``JSONResponse`` writes."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def detect_answer(model: str, version: int, found: Detections, budget: AnswerBudget) -> bytes:
    """The ``/v1`` detect answer (``DetectResponse``) of one image, one detection at a time within ``budget``."""
    head = dumps({"model": model, "model_version": version, "width": found.width, "height": found.height})
    pieces = [head[:-1], b',"detections":[']
    budget.take(len(head) + len(pieces[1]) + 1)
    boxes, scores, class_ids = found.boxes, found.scores, found.class_ids
    for index in range(len(found)):  # row by row: the arrays are never turned into Python lists whole
        class_id = int(class_ids[index])
        detection = {
            "box": boxes[index].tolist(),
            "score": float(scores[index]),
            "class_id": class_id,
            "class_name": class_name(found.names, class_id),
        }
        piece = dumps(detection)
        budget.take(len(piece) + (1 if index else 0))
        if index:
            pieces.append(b",")
        pieces.append(piece)
    pieces.append(b"]}")
    return b"".join(pieces)


def json_values(array: npt.NDArray[Any], budget: AnswerBudget) -> bytes:
    """A tensor's values as one flat JSON list (non-finite floats as ``null``), a slice at a time within ``budget``."""
    flat = array.reshape(-1)
    floating = np.issubdtype(flat.dtype, np.floating)
    pieces: list[bytes] = []
    budget.take(2)
    for start in range(0, flat.size, _VALUES_PER_PIECE):
        values = flat[start : start + _VALUES_PER_PIECE].tolist()
        if floating and not np.isfinite(flat[start : start + _VALUES_PER_PIECE]).all():
            values = [v if math.isfinite(v) else None for v in values]
        piece = dumps(values)[1:-1]
        budget.take(len(piece) + (1 if pieces else 0))
        pieces.append(piece)
    return b"[" + b",".join(pieces) + b"]"
