"""Residency: dedupe by hash, LRU under a byte budget, never evicting a session in use, loading once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.serving.residency import Residency


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
    with residency.use("m"), residency.use("m", dedicated_to="bank"):
        pass
    assert loader.loads == {"m": 2}
    assert residency.stats().resident == 2


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
