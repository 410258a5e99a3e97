"""The resolve cache: this process's registry changes are served at once, another's within the lifetime."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from tests.registry.test_service import NAMES, graph
from warden.errors import ModelNotFound
from warden.registry import BatchSettings, ModelRegistry
from warden.services import Services

LIFETIME = 0.2


@pytest.fixture
def registry(services: Services) -> ModelRegistry:
    """A registry over the fixture's database and blobs with a short cache lifetime."""
    return ModelRegistry(services.db, services.registry.blobs, 10**9, cache_seconds=LIFETIME)


@pytest.fixture
def tenant(services: Services) -> int:
    """Tenant ``a``'s row id."""
    services.tenants.create_tenant("a")
    return services.tenants.tenant_id("a")


def test_a_fresh_resolution_is_served_from_the_cache(registry: ModelRegistry, tenant: int) -> None:
    registry.push(tenant, "pets", graph(0.9))
    assert registry.resolve_cached(tenant, "pets") is None
    resolved = registry.resolve(tenant, "pets")
    assert registry.resolve_cached(tenant, "pets") == resolved
    assert registry.resolve_cached(tenant, "pets", 1) is None  # a version is its own entry


@pytest.mark.parametrize(
    ("change", "expected_version"),
    [
        (lambda r, t: r.push(t, "pets", graph(0.7)), 3),
        (lambda r, t: r.set_alias(t, "pets", "stable", 1), 1),
        (lambda r, t: r.remove(t, "pets", 2), 1),
    ],
    ids=["push", "alias", "remove version"],
)
def test_a_change_made_here_is_served_at_once(
    registry: ModelRegistry, tenant: int, change: Callable[[ModelRegistry, int], object], expected_version: int
) -> None:
    registry.push(tenant, "pets", graph(0.9))
    registry.push(tenant, "pets", graph(0.8))
    assert registry.resolve(tenant, "pets").version == 2
    change(registry, tenant)
    assert registry.resolve(tenant, "pets").version == expected_version


def test_batching_and_removal_made_here_are_served_at_once(registry: ModelRegistry, tenant: int) -> None:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 3, 84)
    registry.push(tenant, "pets", yolo_graph(rows, input_shape=("batch", 3, 64, 64), metadata={"names": NAMES}))
    assert registry.resolve(tenant, "pets", 1).batching == BatchSettings()
    registry.set_batching(tenant, "pets", 1, BatchSettings(4, 2.5))
    assert registry.resolve(tenant, "pets", 1).batching == BatchSettings(4, 2.5)
    registry.remove(tenant, "pets")
    with pytest.raises(ModelNotFound):
        registry.resolve(tenant, "pets", 1)


def test_the_canary_is_rolled_for_every_request_even_when_cached(services: Services, tenant: int) -> None:
    rolls = iter([0.10, 0.30, 0.10, 0.30])
    registry = ModelRegistry(services.db, services.registry.blobs, 10**9, roll=lambda: next(rolls), cache_seconds=60)
    registry.push(tenant, "pets", graph(0.9), alias="stable")
    registry.push(tenant, "pets", graph(0.8), alias="canary", canary_weight=20)
    assert [registry.resolve(tenant, "pets").version for _ in range(4)] == [2, 1, 2, 1]


def test_a_push_by_another_process_is_served_once_the_lifetime_passes(
    services: Services, registry: ModelRegistry, tenant: int
) -> None:
    registry.push(tenant, "pets", graph(0.9))
    assert registry.resolve(tenant, "pets").version == 1
    services.registry.push(tenant, "pets", graph(0.8))  # another registry instance: this cache is not told
    time.sleep(LIFETIME * 2)
    assert registry.resolve(tenant, "pets").version == 2


def test_another_tenant_never_reads_a_cached_resolution(services: Services, registry: ModelRegistry) -> None:
    for name in ("a", "b"):
        services.tenants.create_tenant(name)
    a, b = services.tenants.tenant_id("a"), services.tenants.tenant_id("b")
    registry.push(a, "pets", graph(0.9))
    registry.resolve(a, "pets")
    assert registry.resolve_cached(b, "pets") is None
    with pytest.raises(ModelNotFound):
        registry.resolve(b, "pets")
