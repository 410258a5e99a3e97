"""Run-time caps: how long one run of a model version may take, measured at upload.

At upload the model runs its own pipeline (``prepare`` → ``infer`` → ``postprocess``) on
four images at its input size: black, white, seeded uniform noise and the bundled photo
(so that a model whose work follows the pixels meets more than a blank image). One
untimed warm-up run comes first (the first run allocates the session's arena); every
run, the warm-up too, is stopped at ``WARDEN_MAX_RUN_MS``, and a stopped run refuses the
model with ``ModelTooSlow`` naming the image. The slowest of the four timed ``infer``
calls is the version's ``measured_run_ms``.

A version's cap is, in order: the value an operator set, else
``RUN_CAP_MULTIPLE`` x ``measured_run_ms`` but at least ``RUN_CAP_FLOOR_MS``, else (a
version pushed before runs were measured) ``WARDEN_MAX_RUN_MS``; never more than
``WARDEN_MAX_RUN_MS``, applied when the version is resolved, so lowering the setting
lowers every cap at once.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Final

import numpy as np

from warden.detection import DetectionModel, RGBImage, to_rgb
from warden.detection.runs import RUN_CAP
from warden.errors import DeadlineExceeded, InvalidArgument, InvalidModel, ModelTooSlow, WardenError
from warden.samples import SAMPLE_IMAGE

RUN_CAP_MULTIPLE: Final = 8.0
"""A derived cap is this many times the slowest run measured at upload.

The measurement is one run on a quiet session; in serving the same run meets workers
sharing cores, memory bandwidth taken by other sessions, a slower replica than the one
that took the upload, and images the four probes did not resemble. Timings on this
2-core machine vary by 2-3x under load, so 8x stops a model that spins on a hidden
trigger at a small multiple of its honest work without cutting honest runs on a busy host.
"""
RUN_CAP_FLOOR_MS: Final = 1000.0
"""The least a derived cap may be: small models measure a few milliseconds, and 8x of that would cut
honest runs at a page fault or a preemption. A second is more than a YOLO export at 640 px takes on one
CPU thread, and short enough that a spinning run holds a worker only briefly."""
DEFAULT_MAX_RUN_MS: Final = 10_000
"""``WARDEN_MAX_RUN_MS``'s default: the longest any run may take, per image."""
NOISE_SEED: Final = 20_261_207
"""Seed of the noise image: the same pixels at every upload, so measurements are comparable."""


def probe_images(height: int, width: int) -> Iterator[tuple[str, RGBImage]]:
    """The upload's images, named as a refusal names them; made one at a time (a side may be 8192 px)."""
    yield "a black image", np.zeros((height, width, 3), dtype=np.uint8)
    yield "a white image", np.full((height, width, 3), 255, dtype=np.uint8)
    yield "an image of noise", np.random.default_rng(NOISE_SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)
    yield "a photo", sample_photo()


@functools.cache
def sample_photo() -> RGBImage:
    """The bundled photo (``warden.samples.SAMPLE_IMAGE``) decoded once; ``prepare`` letterboxes it."""
    photo = to_rgb(SAMPLE_IMAGE.read_bytes())
    photo.setflags(write=False)
    return photo


def measure_run_ms(model: DetectionModel, max_run_ms: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Run ``model`` on the probe images under a cap of ``max_run_ms`` and return its slowest run, in ms.

    Raises ``ModelTooSlow`` when a run (the warm-up too) is stopped by the cap, ``InvalidModel``
    when a run fails or its output cannot be decoded.
    """
    height, width = model.info.input_hw
    slowest = 0.0
    for index, (label, rgb) in enumerate(probe_images(height, width)):
        if index == 0:
            _run(model, label, rgb, max_run_ms, clock=clock)  # warm-up: allocates the arena, not timed
        slowest = max(slowest, _run(model, label, rgb, max_run_ms, clock=clock))
    return slowest * 1000


def _run(model: DetectionModel, label: str, rgb: RGBImage, max_run_ms: float, *, clock: Callable[[], float]) -> float:
    """One image through the pipeline; returns the seconds ``infer`` took."""
    try:
        batch = model.prepare([rgb])
        start = clock()
        raw = model.infer(batch.tensor, cap=max_run_ms / 1000)
        elapsed = clock() - start
        model.postprocess(raw, batch)
    except DeadlineExceeded as exc:
        if exc.cause != RUN_CAP:  # pragma: no cover - these runs have no request deadline
            raise
        raise ModelTooSlow(
            f"on {label} the model ran longer than WARDEN_MAX_RUN_MS ({max_run_ms:g} ms) and was stopped"
        ) from None
    except WardenError:
        raise
    except Exception as exc:  # decoding a hostile model's output may fail in numpy; the model is at fault.
        raise InvalidModel(f"the model's output on {label} cannot be decoded ({type(exc).__name__})") from None
    return elapsed


def derived_run_cap_ms(measured_run_ms: float, max_run_ms: float) -> float:
    """The cap a measurement gives: ``RUN_CAP_MULTIPLE`` x it, at least the floor, at most ``max_run_ms``."""
    return min(max(RUN_CAP_MULTIPLE * measured_run_ms, RUN_CAP_FLOOR_MS), float(max_run_ms))


def effective_run_cap_ms(measured_run_ms: float | None, run_cap_ms: float | None, max_run_ms: float) -> float:
    """A version's cap: the operator's ``run_cap_ms``, else derived from the measurement, else ``max_run_ms``.

    Never more than ``max_run_ms`` (the setting may have been lowered since the value was set).
    """
    if run_cap_ms is not None:
        return min(run_cap_ms, float(max_run_ms))
    if measured_run_ms is not None:
        return derived_run_cap_ms(measured_run_ms, max_run_ms)
    return float(max_run_ms)


def check_run_cap(run_cap_ms: float | None, max_run_ms: float) -> None:
    """Refuse an operator's cap that is not a number of milliseconds above 0 and at most ``max_run_ms``."""
    if run_cap_ms is None:
        return
    if not (math.isfinite(run_cap_ms) and 0 < run_cap_ms <= max_run_ms):
        raise InvalidArgument(
            f"run_cap_ms must be above 0 and at most WARDEN_MAX_RUN_MS ({max_run_ms:g} ms), got {run_cap_ms:g}"
        )
