"""Running detections for a resolved model version: sessions loaded once per content hash.

Sessions keep no request state, so two tenants who uploaded the same bytes share
one. Every method here blocks (decode, inference): front ends call them off the
event loop.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from warden.detection import DetectionModel, Detections, ImageLimits, RGBImage, decode_image
from warden.registry import BlobStore, ResolvedModel


class DetectionEngine:
    """Loads each model version's session at most once and runs detections on it."""

    def __init__(
        self,
        blobs: BlobStore,
        limits: ImageLimits,
        *,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self._blobs = blobs
        self.limits = limits
        self._device = device
        self._threads = threads
        self._models: dict[str, DetectionModel] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def model(self, resolved: ResolvedModel) -> DetectionModel:
        """The loaded session of a version, loading it once even when many requests arrive together."""
        digest = resolved.sha256
        loaded = self._models.get(digest)
        if loaded is not None:
            return loaded
        with self._guard:
            lock = self._loading.setdefault(digest, threading.Lock())
        with lock:
            loaded = self._models.get(digest)
            if loaded is None:
                loaded = DetectionModel.load(
                    self._blobs.read(digest), device=self._device, threads=self._threads, limits=self.limits
                )
                self._models[digest] = loaded
        return loaded

    def decode(self, data: bytes) -> RGBImage:
        """Decode one request image under the configured limits (raises ``InvalidImage``)."""
        return decode_image(data, self.limits)

    def detect(
        self, resolved: ResolvedModel, images: list[RGBImage], *, conf: float, iou: float, max_det: int
    ) -> list[Detections]:
        """Detect in decoded images with the resolved version."""
        return self.model(resolved).detect_rgb(images, conf=conf, iou=iou, max_det=max_det)

    def infer_raw(self, resolved: ResolvedModel, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Run the version's session on a caller-built input tensor and return its raw output (pass-through)."""
        model = self.model(resolved)
        return model.infer(model.check_input(tensor))
