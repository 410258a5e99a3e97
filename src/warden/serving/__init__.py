"""The serving engine shared by every front end (``/v1``, ``/v2``, the CLI)."""

from warden.serving.batching import StageTimes
from warden.serving.engine import DetectionEngine

__all__ = ["DetectionEngine", "StageTimes"]
