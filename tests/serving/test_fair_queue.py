"""Weighted fair queuing, as properties: shares follow weights, work conservation, no starvation, cancellation."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.serving.fair_queue import FairQueue

weights = st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 8), min_size=2, max_size=5)


@settings(max_examples=150, deadline=None)
@given(tenant_weights=weights, rounds=st.integers(40, 200))
def test_when_everyone_is_backlogged_then_shares_follow_weights(tenant_weights: dict[str, int], rounds: int) -> None:
    queue: FairQueue[int] = FairQueue()
    backlog = rounds * 10
    for tenant, weight in tenant_weights.items():
        for n in range(backlog):
            queue.push(tenant, n, weight=weight)
    served = Counter(queue.pop().tenant for _ in range(rounds * len(tenant_weights)))  # type: ignore[union-attr]
    total_weight = sum(tenant_weights.values())
    total = sum(served.values())
    for tenant, weight in tenant_weights.items():
        # Start-time fair queuing keeps each tenant within one job of its weighted share.
        assert abs(served[tenant] - total * weight / total_weight) <= len(tenant_weights) + 1


@settings(max_examples=100, deadline=None)
@given(tenant_weights=weights, jobs=st.integers(1, 50))
def test_when_some_tenants_are_idle_then_the_others_get_everything(tenant_weights: dict[str, int], jobs: int) -> None:
    queue: FairQueue[int] = FairQueue()
    busy = next(iter(tenant_weights))
    for n in range(jobs):
        queue.push(busy, n, weight=tenant_weights[busy])
    popped = [queue.pop() for _ in range(jobs)]
    assert all(e is not None and e.tenant == busy for e in popped)
    assert [e.item for e in popped if e is not None] == list(range(jobs))  # FIFO within a tenant
    assert queue.pop() is None


@settings(max_examples=100, deadline=None)
@given(flood=st.integers(1, 500), weight=st.integers(1, 100), late=st.integers(0, 100))
def test_a_late_light_tenant_is_served_within_a_bounded_wait(flood: int, weight: int, late: int) -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(flood):
        queue.push("heavy", f"h{n}", weight=weight)
    for _ in range(min(late, flood)):
        queue.pop()
    queue.push("light", "l0", weight=1)
    position = next(i for i in range(flood + 1) if queue.pop().tenant == "light")  # type: ignore[union-attr]
    # No starvation, and no credit banked by the flooder: the newcomer waits at most ~one heavy job.
    assert position <= 1


def test_an_idle_tenant_banks_no_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(100):
        queue.push("a", f"a{n}")
    for _ in range(50):
        queue.pop()
    for n in range(100):
        queue.push("b", f"b{n}")
    order = [queue.pop().tenant for _ in range(20)]  # type: ignore[union-attr]
    assert abs(order.count("a") - order.count("b")) <= 1


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=80))
def test_cancelled_entries_leave_no_trace(ops: list[tuple[str, bool]]) -> None:
    queue: FairQueue[int] = FairQueue()
    kept = []
    for n, (tenant, cancel) in enumerate(ops):
        entry = queue.push(tenant, n)
        if cancel:
            assert queue.cancel(entry)
            assert not queue.cancel(entry)
        else:
            kept.append(n)
    assert len(queue) == len(kept)
    served = []
    while (entry := queue.pop()) is not None:
        served.append(entry.item)
    assert sorted(served) == kept
    assert queue.tenants() == []


def test_eligibility_skips_tenants_without_losing_their_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    queue.push("b", "b0")
    assert queue.pop(lambda t: t != "a").item == "b0"  # type: ignore[union-attr]
    assert queue.pop(lambda t: t != "a") is None
    assert queue.pop().item == "a0"  # type: ignore[union-attr]


@pytest.mark.parametrize(("weight", "cost"), [(0, 1), (1, 0), (-1, 1)])
def test_weights_and_costs_must_be_positive(weight: float, cost: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        FairQueue[int]().push("a", 1, weight=weight, cost=cost)
