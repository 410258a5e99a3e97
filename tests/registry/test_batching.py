"""A version's dynamic batching settings in the registry, on SQLite and PostgreSQL: checks and round trips."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.errors import InvalidArgument, ModelNotFound
from warden.registry import BatchSettings
from warden.registry.service import MAX_BATCH_SIZE, MAX_QUEUE_DELAY_MS
from warden.services import Services

NAMES = "{0: 'cat', 1: 'dog', 2: 'bird'}"
DYNAMIC: dict[str, Any] = {"batch": None}
FIXED_ONE: dict[str, Any] = {"batch": 1}
FIXED_FOUR: dict[str, Any] = {"batch": 4}


def graph(score: float = 0.9, batch: int | str = "batch") -> bytes:
    """A small valid detection model with a dynamic (default) or fixed batch; scores give different bytes."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, input_shape=(batch, 3, 64, 64), metadata={"names": NAMES, "task": "detect"})


@pytest.mark.parametrize(
    ("settings", "info"),
    [
        (BatchSettings(), DYNAMIC),
        (BatchSettings(), FIXED_ONE),
        (BatchSettings(1, 0.0), DYNAMIC),
        (BatchSettings(MAX_BATCH_SIZE, MAX_QUEUE_DELAY_MS), DYNAMIC),
        (BatchSettings(8, None), DYNAMIC),
        (BatchSettings(None, 2.5), DYNAMIC),
        (BatchSettings(1, 5.0), FIXED_ONE),  # one image per run is no batching: allowed for a fixed batch
        (BatchSettings(None, 5.0), FIXED_FOUR),
        (BatchSettings(16, 1.0), {}),  # before validation, the model's batch is not known yet
    ],
    ids=repr,
)
def test_settings_in_range_are_accepted(settings: BatchSettings, info: dict[str, Any]) -> None:
    settings.check(info)


@pytest.mark.parametrize(
    ("settings", "info", "message"),
    [
        (BatchSettings(0, None), DYNAMIC, "max_batch_size must be 1-256, got 0"),
        (BatchSettings(-3, None), DYNAMIC, "max_batch_size must be 1-256, got -3"),
        (BatchSettings(MAX_BATCH_SIZE + 1, None), DYNAMIC, "max_batch_size must be 1-256, got 257"),
        (BatchSettings(None, -0.5), DYNAMIC, "max_queue_delay_ms must be 0-1000, got -0.5"),
        (BatchSettings(None, MAX_QUEUE_DELAY_MS + 0.001), DYNAMIC, "max_queue_delay_ms must be 0-1000"),
        (BatchSettings(None, math.nan), DYNAMIC, "max_queue_delay_ms must be 0-1000, got nan"),
        (BatchSettings(None, math.inf), DYNAMIC, "max_queue_delay_ms must be 0-1000, got inf"),
        (BatchSettings(2, None), FIXED_ONE, "batch dimension is fixed at 1"),
        (BatchSettings(8, 1.0), FIXED_FOUR, "batch dimension is fixed at 4"),
        (BatchSettings(0, None), FIXED_ONE, "max_batch_size must be 1-256"),  # the range is checked first
    ],
    ids=repr,
)
def test_settings_out_of_range_or_for_a_fixed_batch_are_refused(
    settings: BatchSettings, info: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        settings.check(info)


@pytest.fixture
def tenant(services: Services) -> int:
    services.tenants.create_tenant("acme")
    return services.tenants.tenant_id("acme")


def batching_of(services: Services, tenant: int, name: str) -> dict[int, BatchSettings]:
    """Each version's settings as listed, checked to agree with get_model and resolve."""
    [listed] = [m for m in services.registry.list_models(tenant) if m.name == name]
    shown = services.registry.get_model(tenant, name)
    assert listed == shown
    found = {v.version: v.batching for v in listed.versions}
    for version, settings in found.items():
        assert services.registry.resolve(tenant, name, version).batching == settings
    return found


def test_push_stores_the_settings_with_the_version(services: Services, tenant: int) -> None:
    registry = services.registry
    registry.push(tenant, "m", graph(0.9))
    registry.push(tenant, "m", graph(0.8), batching=BatchSettings(8, 2.5))
    registry.push(tenant, "m", graph(0.7), batching=BatchSettings(max_queue_delay_ms=0.0))
    assert batching_of(services, tenant, "m") == {
        1: BatchSettings(None, None),
        2: BatchSettings(8, 2.5),
        3: BatchSettings(None, 0.0),
    }
    assert registry.resolve(tenant, "m").batching == BatchSettings(None, 0.0)  # the newest serves
    registry.set_alias(tenant, "m", "stable", 2)
    assert registry.resolve(tenant, "m").batching == BatchSettings(8, 2.5)


def test_set_batching_changes_one_version_and_resolve_sees_it(services: Services, tenant: int) -> None:
    registry = services.registry
    registry.push(tenant, "m", graph(0.9))
    registry.push(tenant, "m", graph(0.8))
    assert registry.resolve(tenant, "m").batching == BatchSettings()  # cached from here on
    registry.set_batching(tenant, "m", 2, BatchSettings(4, 1000.0))
    assert registry.resolve(tenant, "m").batching == BatchSettings(4, 1000.0)
    assert batching_of(services, tenant, "m") == {1: BatchSettings(), 2: BatchSettings(4, 1000.0)}
    registry.set_batching(tenant, "m", 1, BatchSettings(max_batch_size=MAX_BATCH_SIZE))
    registry.set_batching(tenant, "m", 2, BatchSettings())  # back to the server's choice
    assert batching_of(services, tenant, "m") == {1: BatchSettings(MAX_BATCH_SIZE, None), 2: BatchSettings()}
    assert registry.resolve(tenant, "m").batching == BatchSettings()


def test_settings_with_fractions_of_a_millisecond_round_trip(services: Services, tenant: int) -> None:
    services.registry.push(tenant, "m", graph(), batching=BatchSettings(3, 0.25))
    services.registry.set_batching(tenant, "m", 1, BatchSettings(3, 999.75))
    assert batching_of(services, tenant, "m") == {1: BatchSettings(3, 999.75)}


@pytest.mark.parametrize(
    "settings",
    [
        BatchSettings(0, None),
        BatchSettings(MAX_BATCH_SIZE + 1, None),
        BatchSettings(4, -1.0),
        BatchSettings(4, math.nan),
    ],
    ids=repr,
)
def test_a_push_with_bad_settings_stores_nothing(services: Services, tenant: int, settings: BatchSettings) -> None:
    with pytest.raises(InvalidArgument):
        services.registry.push(tenant, "m", graph(), batching=settings)
    assert services.registry.list_models(tenant) == []
    assert services.registry.blobs.digests() == set()


def test_a_fixed_batch_model_cannot_be_pushed_or_set_to_batch(services: Services, tenant: int) -> None:
    registry = services.registry
    with pytest.raises(InvalidArgument, match="batch dimension is fixed at 1"):
        registry.push(tenant, "fixed", graph(batch=1), batching=BatchSettings(4, 1.0))
    assert registry.list_models(tenant) == []
    assert registry.blobs.digests() == set()
    registry.push(tenant, "fixed", graph(batch=1), batching=BatchSettings(1, 3.0))
    with pytest.raises(InvalidArgument, match="batch dimension is fixed at 1"):
        registry.set_batching(tenant, "fixed", 1, BatchSettings(2, None))
    assert batching_of(services, tenant, "fixed") == {1: BatchSettings(1, 3.0)}  # unchanged
    registry.set_batching(tenant, "fixed", 1, BatchSettings(None, 7.0))
    assert batching_of(services, tenant, "fixed") == {1: BatchSettings(None, 7.0)}


def test_set_batching_refuses_bad_values_and_keeps_the_old_ones(services: Services, tenant: int) -> None:
    services.registry.push(tenant, "m", graph(), batching=BatchSettings(4, 10.0))
    for bad in (BatchSettings(0, 1.0), BatchSettings(4, math.nan), BatchSettings(4, MAX_QUEUE_DELAY_MS * 2)):
        with pytest.raises(InvalidArgument):
            services.registry.set_batching(tenant, "m", 1, bad)
    assert batching_of(services, tenant, "m") == {1: BatchSettings(4, 10.0)}


def test_set_batching_of_a_missing_model_or_version_or_another_tenants_model(services: Services, tenant: int) -> None:
    services.tenants.create_tenant("other")
    other = services.tenants.tenant_id("other")
    services.registry.push(tenant, "m", graph())
    for owner, name, version in ((tenant, "ghost", 1), (tenant, "m", 2), (other, "m", 1)):
        with pytest.raises(ModelNotFound):
            services.registry.set_batching(owner, name, version, BatchSettings(2, 1.0))
    assert batching_of(services, tenant, "m") == {1: BatchSettings()}


def test_removing_a_version_keeps_the_others_settings(services: Services, tenant: int) -> None:
    registry = services.registry
    registry.push(tenant, "m", graph(0.9), batching=BatchSettings(2, 1.0))
    registry.push(tenant, "m", graph(0.8), batching=BatchSettings(6, 4.0))
    registry.remove(tenant, "m", 1)
    assert batching_of(services, tenant, "m") == {2: BatchSettings(6, 4.0)}
