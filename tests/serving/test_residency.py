"""Residency: keyed by hash and owner, LRU under a byte budget, never evicting a session in use, loading once.

The last part drives the real engine over real services and ONNX Runtime sessions: identical
bytes pushed by two tenants load one session per tenant unless an operator marked them
shareable (or the server shares across tenants), asserted on the load and hit counters.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.conftest import tiny_graph
from tests.backends import BACKENDS, database_url
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.detection import ImageLimits
from warden.registry import BatchSettings, ResolvedModel
from warden.samples import SAMPLE_IMAGE
from warden.services import Services, open_services
from warden.serving.admission import Admission
from warden.serving.engine import DetectionEngine
from warden.serving.residency import Residency
from warden.settings import Settings
from warden.tenancy import DEDICATED, Principal, Quota, Scope


class Loader:
    """Makes fake sessions of a fixed size, counting loads; can be gated or made to fail."""

    def __init__(self, size: int = 10) -> None:
        self.size = size
        self.loads: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()

    def __call__(self, digest: str) -> tuple[str, int]:
        self.gate.wait(10)
        self.loads[digest] += 1
        if digest in self.fail:
            raise OSError(f"cannot load {digest}")
        return f"session-{digest}", self.size


def test_the_same_bytes_are_one_session_for_every_tenant() -> None:
    loader = Loader()
    residency: Residency[str] = Residency(loader)
    for _ in range(200):
        with residency.use("same") as session:
            assert session == "session-same"
    assert loader.loads == {"same": 1}
    stats = residency.stats()
    assert (stats.resident, stats.resident_bytes, stats.hits, stats.loads) == (1, 10, 199, 1)


def test_a_dedicated_tenant_gets_its_own_session() -> None:
    loader = Loader()
    residency: Residency[str] = Residency(loader)
    with residency.use("m"), residency.use("m", owner="bank"):
        pass
    assert loader.loads == {"m": 2}
    assert residency.stats().resident == 2


def test_the_same_bytes_are_one_session_per_owner_and_one_shared_apart() -> None:
    loader = Loader()
    residency: Residency[str] = Residency(loader)
    for owner in ("alpha", "beta", None, "alpha", None, "beta"):
        with residency.use("same", owner):
            pass
    assert loader.loads == {"same": 3}
    stats = residency.stats()
    assert (stats.resident, stats.loads, stats.hits) == (3, 3, 3)


def test_least_recently_used_sessions_go_first_when_over_budget() -> None:
    residency: Residency[str] = Residency(Loader(size=10), budget_bytes=30)
    for digest in "abc":
        with residency.use(digest):
            pass
    with residency.use("a"):  # a is now the most recent
        pass
    with residency.use("d"):
        pass
    loader_again = Loader(size=10)
    residency._load = loader_again  # type: ignore[assignment]
    with residency.use("b"):  # b was evicted: loaded again
        pass
    with residency.use("a"):  # a was kept
        pass
    assert loader_again.loads == {"b": 1}
    assert residency.stats().evictions == 2


def test_a_session_in_use_is_never_evicted_even_over_budget() -> None:
    residency: Residency[str] = Residency(Loader(size=10), budget_bytes=10)
    with residency.use("busy"):
        with residency.use("other"):
            assert residency.stats().resident_bytes == 20  # over budget: both are in use
        assert residency.stats().resident == 1  # "other" went as soon as it was free
        with residency.use("busy") as again:
            assert again == "session-busy"
    assert residency.stats().evictions == 1


def test_many_requests_for_a_cold_model_load_it_once() -> None:
    loader = Loader()
    loader.gate.clear()
    residency: Residency[str] = Residency(loader)
    seen: list[str] = []

    def request() -> None:
        with residency.use("cold") as session:
            seen.append(session)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    loader.gate.set()
    for thread in threads:
        thread.join(10)
    assert loader.loads == {"cold": 1}
    assert seen == ["session-cold"] * 16


def test_a_failed_load_is_reported_and_retried_next_time() -> None:
    loader = Loader()
    loader.fail.add("bad")
    residency: Residency[str] = Residency(loader)
    with pytest.raises(OSError, match="cannot load bad"), residency.use("bad"):
        pass
    loader.fail.clear()
    with residency.use("bad") as session:
        assert session == "session-bad"
    assert loader.loads == {"bad": 2}


@settings(max_examples=100, deadline=None)
@given(budget=st.integers(10, 60), uses=st.lists(st.sampled_from("abcdefgh"), max_size=60))
def test_the_budget_holds_whenever_nothing_is_in_use(budget: int, uses: list[str]) -> None:
    residency: Residency[str] = Residency(Loader(size=10), budget_bytes=budget)
    for digest in uses:
        with residency.use(digest):
            pass
        assert residency.stats().resident_bytes <= max(budget, 10)


# --- the engine: whose session serves a request ---


@dataclass
class Shop:
    """Services with tenants ``alpha`` and ``beta`` (and ``vault``, dedicated) holding the same model bytes."""

    services: Services
    engine: DetectionEngine
    digest: str

    def caller(self, tenant: str) -> tuple[Principal, ResolvedModel]:
        tenants, registry = self.services.tenants, self.services.registry
        principal = tenants.authenticate(tenants.create_key(tenant, Scope.DETECT).key)
        return principal, registry.resolve(tenants.tenant_id(tenant), "m")

    def detect(self, tenant: str) -> None:
        principal, resolved = self.caller(tenant)
        found = asyncio.run(
            self.engine.detect(principal, resolved, [SAMPLE_IMAGE.read_bytes()], conf=0.25, iou=0.7, max_det=10)
        )
        assert len(found) == 1

    def counts(self) -> tuple[int, int, int]:
        """(resident sessions, loads, hits)."""
        stats = self.engine.residency.stats()
        return stats.resident, stats.loads, stats.hits


def dynamic_graph() -> bytes:
    """The same small detection model, exported with a dynamic batch (so requests may batch together)."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 3, 84)
    return yolo_graph(rows, input_shape=("batch", 3, 64, 64), metadata={"names": "{0: 'a', 1: 'b', 2: 'c'}"})


def open_shop(tmp_path: Path, url: str, *, share_models: str = "per-tenant", batch: int | None = None) -> Shop:
    services = open_services(Settings(data_dir=tmp_path / "data", database_url=url, share_models=share_models))
    data = dynamic_graph() if batch else tiny_graph(0.9)
    for name, quota in (("alpha", Quota()), ("beta", Quota()), ("vault", Quota(isolation=DEDICATED))):
        services.tenants.create_tenant(name, quota)
        digest = services.registry.push(
            services.tenants.tenant_id(name), "m", data, batching=BatchSettings(max_batch_size=batch)
        ).sha256
    engine = DetectionEngine(services.registry.blobs, ImageLimits(), Admission.create(services.db, None))
    return Shop(services, engine, digest)


@pytest.fixture(params=BACKENDS)
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    with database_url(request.param, tmp_path) as url:
        opened = open_shop(tmp_path, url)
        try:
            yield opened
        finally:
            opened.engine.close()
            opened.services.close()


def test_when_two_tenants_push_the_same_bytes_then_each_loads_its_own_session(shop: Shop) -> None:
    shop.detect("alpha")
    assert shop.counts() == (1, 1, 0)
    shop.detect("beta")  # beta's first request loads: alpha holding the bytes does not make it faster
    assert shop.counts() == (2, 2, 0)
    shop.detect("beta")
    shop.detect("alpha")
    assert shop.counts() == (2, 2, 2)
    assert len(shop.services.registry.blobs.digests()) == 1  # the bytes themselves are stored once


def test_when_the_operator_marks_the_bytes_shareable_then_one_session_serves_both(shop: Shop) -> None:
    shop.services.registry.share(shop.digest, "op-key-id")
    shop.detect("alpha")
    shop.detect("beta")
    assert shop.counts() == (1, 1, 1)
    shop.detect("vault")  # a dedicated tenant keeps its own session, marked or not
    assert shop.counts() == (2, 2, 1)


def test_when_the_mark_is_removed_then_the_next_request_loads_its_tenants_own(shop: Shop) -> None:
    registry = shop.services.registry
    registry.share(shop.digest, "op-key-id")
    shop.detect("alpha")
    assert registry.unshare(shop.digest) is True
    shop.detect("beta")
    assert shop.counts()[1:] == (2, 0)


def test_when_the_server_shares_across_tenants_then_one_session_serves_all_but_the_dedicated(
    tmp_path: Path,
) -> None:
    with database_url("sqlite", tmp_path) as url:
        opened = open_shop(tmp_path, url, share_models="across-tenants")
        try:
            for tenant in ("alpha", "beta", "alpha", "vault"):
                opened.detect(tenant)
            assert opened.counts() == (2, 2, 2)
        finally:
            opened.engine.close()
            opened.services.close()


def test_when_requests_are_batched_then_their_sessions_are_keyed_the_same_way(tmp_path: Path) -> None:
    with database_url("sqlite", tmp_path) as url:
        opened = open_shop(tmp_path, url, batch=4)
        try:
            opened.detect("alpha")
            opened.detect("beta")
            assert opened.counts() == (2, 2, 0)
            opened.services.registry.share(opened.digest, "op-key-id")
            opened.detect("alpha")
            opened.detect("beta")
            assert opened.counts() == (3, 3, 1)
        finally:
            opened.engine.close()
            opened.services.close()
