"""Run-time caps: runs measured at upload on four varied images, the cap rule, and an operator's cap.

Spinning models come from :func:`tests.registry.hostile.spinning`: the brightness one spins
on a white image (about 30 s here) and must be refused at upload, stopped at a small
``max_run_ms`` so the test does not wait for it; the secret one spins only on a pixel no
upload image has, so upload accepts it with the floor cap and serving's cap must stop it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from tests.registry import hostile
from warden.detection import DetectionModel
from warden.errors import InvalidArgument, ModelNotFound, ModelTooSlow
from warden.registry import RUN_CAP_FLOOR_MS, RUN_CAP_MULTIPLE, ModelRegistry, effective_run_cap_ms
from warden.registry.run_cap import check_run_cap, derived_run_cap_ms, measure_run_ms, probe_images
from warden.services import Services

NAMES = "{0: 'cat', 1: 'dog', 2: 'bird'}"
QUICK_MS = 300
"""A small WARDEN_MAX_RUN_MS: the brightness spinner is stopped long before its 30 s."""


def graph(score: float = 0.9, batch: int | str = 1) -> bytes:
    """A small valid detection model; different scores give different bytes."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, input_shape=(batch, 3, 64, 64), metadata={"names": NAMES, "task": "detect"})


def registry_with(services: Services, max_run_ms: int, cache_seconds: float = 1.0) -> ModelRegistry:
    """A registry over the fixture's database and blobs with its own ``max_run_ms``."""
    return ModelRegistry(
        services.db, services.registry.blobs, 10**9, cache_seconds=cache_seconds, max_run_ms=max_run_ms
    )


@pytest.fixture
def tenant(services: Services) -> int:
    """Tenant ``a``'s row id."""
    services.tenants.create_tenant("a")
    return services.tenants.tenant_id("a")


# 1. The upload measurement.


def test_when_a_white_image_wakes_a_spinning_model_then_upload_refuses_it_with_model_too_slow(
    services: Services, tenant: int
) -> None:
    registry = registry_with(services, QUICK_MS)
    with pytest.raises(ModelTooSlow) as caught:
        registry.push(tenant, "spin", hostile.spinning("brightness"))
    assert caught.value.code == "model_too_slow"
    assert caught.value.message == (
        f"on a white image the model ran longer than WARDEN_MAX_RUN_MS ({QUICK_MS} ms) and was stopped"
    )
    assert registry.list_models(tenant) == []
    assert registry.blobs.digests() == set()


def test_when_no_upload_image_wakes_a_spinning_model_then_it_is_accepted_with_the_floor_cap(
    services: Services, tenant: int
) -> None:
    services.registry.push(tenant, "secret", hostile.spinning("secret"))
    [version] = services.registry.get_model(tenant, "secret").versions
    assert version.measured_run_ms is not None
    assert version.measured_run_ms > 0
    assert (version.run_cap_ms, version.effective_run_cap_ms, version.run_cap_source) == (
        None,
        RUN_CAP_FLOOR_MS,
        "derived",
    )
    assert services.registry.resolve(tenant, "secret").run_cap_ms == RUN_CAP_FLOOR_MS


def test_the_upload_images_do_not_hold_the_secret_pixel() -> None:
    """Otherwise the secret spinner's acceptance above would say nothing about the measurement."""
    corners = [tuple(int(v) for v in rgb[0, 0, :2]) for _, rgb in probe_images(64, 64)]
    assert len(corners) == 4
    assert hostile.SECRET_PIXEL not in corners


def test_the_upload_images_are_black_white_noise_and_the_photo_at_the_input_size() -> None:
    images = dict(probe_images(48, 80))
    assert list(images) == ["a black image", "a white image", "an image of noise", "a photo"]
    assert images["a black image"].shape == images["a white image"].shape == (48, 80, 3)
    assert (images["a black image"].max(), images["a white image"].min()) == (0, 255)
    noise = images["an image of noise"]
    assert noise.shape == (48, 80, 3)
    assert noise.std() > 50
    assert np.array_equal(noise, dict(probe_images(48, 80))["an image of noise"])  # seeded: the same every upload
    assert images["a photo"].shape == (512, 512, 3)  # decoded as shipped; prepare() letterboxes it


def test_a_small_model_is_measured_and_gets_the_floor_cap(services: Services, tenant: int) -> None:
    pushed = services.registry.push(tenant, "pets", graph())
    [version] = services.registry.get_model(tenant, "pets").versions
    assert version.measured_run_ms is not None
    assert version.measured_run_ms > 0
    assert version.effective_run_cap_ms == RUN_CAP_FLOOR_MS
    resolved = services.registry.resolve(tenant, "pets")
    assert (resolved.sha256, resolved.run_cap_ms) == (pushed.sha256, RUN_CAP_FLOOR_MS)


def test_the_fall_model_is_measured_and_its_cap_stored(services: Services, tenant: int, fall_model_file: Path) -> None:
    services.registry.push(tenant, "fall", fall_model_file.read_bytes())
    [version] = services.registry.get_model(tenant, "fall").versions
    measured = version.measured_run_ms
    assert measured is not None
    assert measured > 0
    expected = min(max(RUN_CAP_MULTIPLE * measured, RUN_CAP_FLOOR_MS), services.settings.max_run_ms)
    assert version.effective_run_cap_ms == expected
    assert version.run_cap_source == "derived"
    assert services.registry.resolve(tenant, "fall").run_cap_ms == expected


def test_a_fixed_batch_and_a_dynamic_batch_model_are_both_measured(services: Services, tenant: int) -> None:
    for name, batch in (("fixed", 4), ("dynamic", "batch")):
        services.registry.push(tenant, name, graph(batch=batch))
        [version] = services.registry.get_model(tenant, name).versions
        assert version.measured_run_ms is not None, name


class _Steps:
    """A clock for :func:`measure_run_ms`: each run reads it twice; the runs last the given seconds."""

    def __init__(self, seconds: list[float]) -> None:
        self._times: Iterator[float] = iter(t for i, s in enumerate(seconds) for t in (10.0 * i, 10.0 * i + s))

    def __call__(self) -> float:
        return next(self._times)


@pytest.mark.parametrize(
    ("seconds", "measured_ms"),
    [
        ([9.0, 0.001, 0.002, 0.005, 0.003], 5.0),  # a slow warm-up is not counted
        ([0.001, 0.004, 0.001, 0.001, 0.001], 4.0),  # the timed black image
        ([0.0, 0.0, 0.0, 0.0, 0.25], 250.0),  # the photo
    ],
)
def test_the_measurement_is_the_slowest_timed_run_after_an_untimed_warm_up(
    seconds: list[float], measured_ms: float
) -> None:
    model = DetectionModel.load(graph())
    assert measure_run_ms(model, 10_000, clock=_Steps(seconds)) == pytest.approx(measured_ms)


# 2. The cap rule.

CAP_RULES = {
    "floor for a fast model": (2.0, None, 10_000, RUN_CAP_FLOOR_MS),
    "multiple of the measurement": (200.0, None, 10_000, 1600.0),
    "multiple exactly at the floor": (125.0, None, 10_000, 1000.0),
    "ceiling at the server's max": (2000.0, None, 10_000, 10_000.0),
    "floor above a small max": (2.0, None, 300, 300.0),
    "operator's value": (5.0, 250.0, 10_000, 250.0),
    "operator's value below the floor": (5.0, 0.5, 10_000, 0.5),
    "operator's value over a lowered max": (5.0, 8000.0, 3000, 3000.0),
    "old version, never measured": (None, None, 10_000, 10_000.0),
    "old version with an operator's value": (None, 40.0, 10_000, 40.0),
}


@pytest.mark.parametrize(("measured", "set_ms", "max_ms", "expected"), CAP_RULES.values(), ids=CAP_RULES.keys())
def test_the_effective_cap(measured: float | None, set_ms: float | None, max_ms: int, expected: float) -> None:
    assert effective_run_cap_ms(measured, set_ms, max_ms) == expected


@given(
    measured=st.floats(min_value=0, max_value=1e7),
    set_ms=st.none() | st.floats(min_value=1e-3, max_value=1e7),
    max_ms=st.integers(min_value=1, max_value=10**7),
)
def test_the_cap_is_positive_never_past_the_max_and_grows_with_the_measurement(
    measured: float, set_ms: float | None, max_ms: int
) -> None:
    cap = effective_run_cap_ms(measured, set_ms, max_ms)
    assert 0 < cap <= max_ms
    if set_ms is None:
        assert cap >= min(RUN_CAP_FLOOR_MS, max_ms)
        assert derived_run_cap_ms(measured * 2, max_ms) >= cap


# 3. An operator's cap.


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, -math.inf, 10_000.001, 1e12])
def test_a_cap_that_is_not_above_0_and_within_the_max_is_refused(services: Services, tenant: int, value: float) -> None:
    services.registry.push(tenant, "pets", graph())
    with pytest.raises(InvalidArgument, match=r"run_cap_ms must be above 0 and at most WARDEN_MAX_RUN_MS \(10000 ms\)"):
        services.registry.set_run_cap(tenant, "pets", 1, value)
    [version] = services.registry.get_model(tenant, "pets").versions
    assert version.run_cap_ms is None


@pytest.mark.parametrize("value", [0.001, 1.0, 250.0, 10_000.0])
def test_a_cap_within_the_max_is_accepted(value: float) -> None:
    check_run_cap(value, 10_000)


def test_an_operator_sets_a_cap_and_goes_back_to_the_derived_one(services: Services, tenant: int) -> None:
    registry = registry_with(services, 10_000, cache_seconds=60)
    registry.push(tenant, "pets", graph(0.9))
    registry.push(tenant, "pets", graph(0.8))
    assert registry.resolve(tenant, "pets").run_cap_ms == RUN_CAP_FLOOR_MS  # cached for a minute from here
    registry.set_run_cap(tenant, "pets", 2, 250.0)
    assert registry.resolve(tenant, "pets").run_cap_ms == 250.0  # the cache was cleared
    assert registry.resolve(tenant, "pets", 1).run_cap_ms == RUN_CAP_FLOOR_MS
    versions = registry.get_model(tenant, "pets").versions
    assert [(v.run_cap_ms, v.effective_run_cap_ms, v.run_cap_source) for v in versions] == [
        (None, RUN_CAP_FLOOR_MS, "derived"),
        (250.0, 250.0, "set"),
    ]
    registry.set_run_cap(tenant, "pets", 2, None)
    assert registry.resolve(tenant, "pets").run_cap_ms == RUN_CAP_FLOOR_MS
    assert registry.get_model(tenant, "pets").versions[1].run_cap_source == "derived"


def test_a_lowered_max_lowers_every_cap_when_resolved(services: Services, tenant: int) -> None:
    services.registry.push(tenant, "pets", graph())
    services.registry.set_run_cap(tenant, "pets", 1, 5000.0)
    lowered = registry_with(services, 400)
    assert lowered.resolve(tenant, "pets").run_cap_ms == 400.0
    [version] = lowered.get_model(tenant, "pets").versions
    assert (version.run_cap_ms, version.effective_run_cap_ms) == (5000.0, 400.0)


def test_a_cap_for_a_missing_version_or_another_tenants_model_is_not_found(services: Services, tenant: int) -> None:
    services.tenants.create_tenant("b")
    other = services.tenants.tenant_id("b")
    services.registry.push(tenant, "pets", graph())
    for tenant_id, name, version in ((tenant, "pets", 2), (tenant, "ghost", 1), (other, "pets", 1)):
        with pytest.raises(ModelNotFound):
            services.registry.set_run_cap(tenant_id, name, version, 100.0)
    assert services.registry.get_model(tenant, "pets").versions[0].run_cap_ms is None
