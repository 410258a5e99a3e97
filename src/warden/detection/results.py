"""Typed detection results, and their one JSON form shared by the CLI and the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Detection:
    """One box: ``xyxy`` corners in original-image pixels, its score, class id and class name."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this box: ``{"box", "score", "class_id", "class_name"}``."""
        return {
            "box": list(self.box),
            "score": self.score,
            "class_id": self.class_id,
            "class_name": self.class_name,
        }


@dataclass(frozen=True, slots=True)
class Detections:
    """All boxes found in one image, ordered by score (highest first), with the image's size.

    The arrays are the source of truth; iterating yields :class:`Detection` objects.
    """

    width: int
    height: int
    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[Detection]:
        for box, score, class_id in zip(
            self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist(), strict=True
        ):
            yield Detection(
                box=(box[0], box[1], box[2], box[3]),
                score=score,
                class_id=class_id,
                class_name=class_name(self.names, class_id),
            )

    def to_dicts(self) -> list[dict[str, Any]]:
        """The JSON list of boxes, in score order."""
        return [d.to_dict() for d in self]


def class_name(names: tuple[str, ...], class_id: int) -> str:
    """Name of ``class_id``, or ``class{id}`` (Ultralytics' default) when the model does not name it."""
    return names[class_id] if 0 <= class_id < len(names) else f"class{class_id}"
