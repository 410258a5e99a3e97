"""Weighted fair queuing over measured cost, as properties: worker time follows weights, no starvation, no banked
credit, refunds, estimates corrected, cancellation, work conservation.

A "worker" here is simulated: entries are popped, then settled with the seconds they are said to have used.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import combinations
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.serving.fair_queue import Entry, FairQueue

T = TypeVar("T")

weights = st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 8), min_size=2, max_size=5)
# Per tenant: weight, seconds per unit its work takes, units each of its requests declares.
tenants = st.dictionaries(
    st.sampled_from("abcdef"),
    st.tuples(st.integers(1, 8), st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0]), st.integers(1, 4)),
    min_size=2,
    max_size=5,
)


def popped(queue: FairQueue[T], eligible: Callable[[str], bool] = lambda _: True) -> Entry[T]:
    """Serve the fairest entry, which the test knows is there."""
    entry = queue.pop(eligible)
    assert entry is not None
    return entry


@settings(max_examples=150, deadline=None)
@given(profile=tenants, rounds=st.integers(20, 150))
def test_when_everyone_is_backlogged_then_worker_time_follows_weights(
    profile: dict[str, tuple[int, float, int]], rounds: int
) -> None:
    queue: FairQueue[int] = FairQueue()
    for tenant, (weight, _, units) in profile.items():
        for n in range(rounds * len(profile)):  # nobody runs dry
            queue.push(tenant, n, weight=weight, cost=units)
    used = dict.fromkeys(profile, 0.0)
    for _ in range(rounds * len(profile)):
        entry = popped(queue)
        weight, rate, units = profile[entry.tenant]
        queue.settle(entry, rate * units)
        used[entry.tenant] += rate * units
        # Start-time fair queuing: normalised worker time of two backlogged tenants differs by at most one
        # job of each, however different their jobs' costs, and whatever units they declared.
        for a, b in combinations(profile, 2):
            job_a, job_b = profile[a][1] * profile[a][2], profile[b][1] * profile[b][2]
            bound = job_a / profile[a][0] + job_b / profile[b][0]
            assert abs(used[a] / profile[a][0] - used[b] / profile[b][0]) <= bound + 1e-6
    assert queue.usage() == pytest.approx(used)


@settings(max_examples=100, deadline=None)
@given(profile=tenants, workers=st.integers(2, 4), rounds=st.integers(20, 100))
def test_with_several_jobs_in_flight_on_estimates_worker_time_still_follows_weights(
    profile: dict[str, tuple[int, float, int]], workers: int, rounds: int
) -> None:
    # Up to `workers` entries are served before the oldest is settled, so tags rest on estimates (from the
    # queue-wide rate at first, then the tenant's own); corrections keep the error to a few jobs per tenant.
    queue: FairQueue[int] = FairQueue()
    for tenant, (weight, _, units) in profile.items():
        for n in range(rounds * len(profile) + workers):
            queue.push(tenant, n, weight=weight, cost=units)
    in_flight: deque[Entry[int]] = deque(popped(queue) for _ in range(workers))
    used = dict.fromkeys(profile, 0.0)
    for _ in range(rounds * len(profile)):
        entry = in_flight.popleft()
        _, rate, units = profile[entry.tenant]
        queue.settle(entry, rate * units)
        used[entry.tenant] += rate * units
        in_flight.append(popped(queue))
    for a, b in combinations(profile, 2):
        job_a, job_b = profile[a][1] * profile[a][2], profile[b][1] * profile[b][2]
        bound = (workers + 2) * (job_a / profile[a][0] + job_b / profile[b][0])
        assert abs(used[a] / profile[a][0] - used[b] / profile[b][0]) <= bound


def test_a_tenant_whose_jobs_cost_100_times_more_gets_a_hundredth_of_the_turns() -> None:
    queue: FairQueue[int] = FairQueue()
    for n in range(2000):  # both declare one unit per job: only the measured time differs
        queue.push("heavy", n)
        queue.push("light", n)
    turns = []
    for _ in range(1010):
        entry = popped(queue)
        queue.settle(entry, 100.0 if entry.tenant == "heavy" else 1.0)
        turns.append(entry.tenant)
    assert turns.count("heavy") in (9, 10, 11)
    assert queue.usage()["heavy"] == pytest.approx(queue.usage()["light"], abs=100.0)


@settings(max_examples=100, deadline=None)
@given(tenant_weights=weights, jobs=st.integers(1, 50))
def test_when_some_tenants_are_idle_then_the_others_get_everything(tenant_weights: dict[str, int], jobs: int) -> None:
    queue: FairQueue[int] = FairQueue()
    busy = next(iter(tenant_weights))
    for n in range(jobs):
        queue.push(busy, n, weight=tenant_weights[busy])
    served = []
    while (entry := queue.pop()) is not None:
        queue.settle(entry, 1.0 + entry.item % 7)
        served.append(entry)
    assert all(e.tenant == busy for e in served)
    assert [e.item for e in served] == list(range(jobs))  # FIFO within a tenant


@settings(max_examples=100, deadline=None)
@given(
    flood=st.integers(1, 300),
    weight=st.integers(1, 100),
    late=st.integers(0, 100),
    heavy_cost=st.sampled_from([0.5, 1.0, 7.0, 100.0]),
)
def test_a_late_light_tenant_is_served_within_about_one_heavy_job(
    flood: int, weight: int, late: int, heavy_cost: float
) -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(flood):
        queue.push("heavy", f"h{n}", weight=weight)
    for _ in range(min(late, flood)):
        entry = queue.pop()
        assert entry is not None
        queue.settle(entry, heavy_cost)
    queue.push("light", "l0", weight=1)
    heavy_time = 0.0
    while (entry := queue.pop()) is not None and entry.tenant != "light":
        queue.settle(entry, heavy_cost)
        heavy_time += heavy_cost
    # No starvation, and no credit banked by the flooder: the newcomer waits at most one heavy job.
    assert entry is not None
    assert entry.item == "l0"
    assert heavy_time <= heavy_cost


@settings(max_examples=100, deadline=None)
@given(
    served_before=st.integers(1, 50),
    away=st.integers(1, 200),
    costs=st.tuples(st.sampled_from([1.0, 4.0, 30.0]), st.sampled_from([1.0, 4.0, 30.0])),
)
def test_an_idle_tenant_banks_no_credit(served_before: int, away: int, costs: tuple[float, float]) -> None:
    queue: FairQueue[str] = FairQueue()
    cost = {"a": costs[0], "b": costs[1]}
    for n in range(served_before):  # b is served alone, then goes idle while a runs alone
        queue.push("b", f"b{n}")
    while (entry := queue.pop()) is not None:
        queue.settle(entry, cost["b"])
    for n in range(away + 400):
        queue.push("a", f"a{n}")
    for _ in range(away):
        queue.settle(popped(queue), cost["a"])
    for n in range(400):
        queue.push("b", f"back{n}")
    used = {"a": 0.0, "b": 0.0}
    for _ in range(100):
        entry = queue.pop()
        assert entry is not None
        queue.settle(entry, cost[entry.tenant])
        used[entry.tenant] += cost[entry.tenant]
        # Back from idle, b shares evenly from now on: no burst for the time it was away.
        assert abs(used["a"] - used["b"]) <= costs[0] + costs[1]


def test_an_idle_tenant_banks_no_credit_in_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(100):
        queue.push("a", f"a{n}")
    for _ in range(50):
        queue.settle(popped(queue), 1.0)
    for n in range(100):
        queue.push("b", f"b{n}")
    order = []
    for _ in range(20):
        entry = popped(queue)
        queue.settle(entry, 1.0)
        order.append(entry.tenant)
    assert abs(order.count("a") - order.count("b")) <= 1


@settings(max_examples=150, deadline=None)
@given(
    plan=st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), min_size=1, max_size=60),
    cost=st.dictionaries(st.sampled_from("abc"), st.integers(1, 20), min_size=3, max_size=3),
    weight=st.dictionaries(st.sampled_from("abc"), st.sampled_from([1, 2, 4]), min_size=3, max_size=3),
)
def test_an_entry_that_never_ran_is_refunded_and_leaves_no_trace_in_the_order(
    plan: list[tuple[str, bool]], cost: dict[str, int], weight: dict[str, int]
) -> None:
    # Every entry is queued up front; those marked are served but never run (cancelled when their turn
    # came, or past their deadline) and refunded. The others are served in the order a queue that never
    # held the refunded ones serves them, and charged the same.
    actual: FairQueue[int] = FairQueue()
    reference: FairQueue[int] = FairQueue()
    unrun = set()
    for n, (tenant, never_runs) in enumerate(plan):
        actual.push(tenant, n, weight=weight[tenant])
        if never_runs:
            unrun.add(n)
        else:
            reference.push(tenant, n, weight=weight[tenant])
    ran = []
    while (entry := actual.pop()) is not None:
        if entry.item in unrun:
            actual.refund(entry)
            assert entry.charge == 0
        else:
            actual.settle(entry, cost[entry.tenant])
            ran.append(entry.item)
    expected = []
    while (entry := reference.pop()) is not None:
        reference.settle(entry, cost[entry.tenant])
        expected.append(entry.item)
    assert ran == expected
    assert actual.usage() == reference.usage()


def test_a_refund_gives_the_tenant_its_turns_back() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(10):
        queue.push("a", f"a{n}")
        queue.push("b", f"b{n}")
    first = popped(queue)
    assert first.item == "a0"
    assert first.charge == 1.0  # charged its estimate while it is out
    assert popped(queue).item == "b0"  # b's turn while a0's charge stands
    assert queue.next_start("a") == 1.0
    queue.refund(first)  # a0 never ran
    assert first.charge == 0.0
    assert queue.next_start("a") == 0.0
    assert popped(queue).item == "a1"
    assert "a" not in queue.usage()


def test_an_under_estimated_first_job_is_charged_what_it_used() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    queue.push("a", "a1")
    for n in range(30):
        queue.push("b", f"b{n}")
    first = popped(queue)
    assert first.item == "a0"
    assert first.charge == 1.0  # nothing measured yet: one per unit
    queue.settle(first, 10.0)  # it took ten
    assert first.charge == 10.0
    assert first.finish == 10.0
    assert queue.next_start("a") == 10.0  # a's later entries follow the corrected finish
    order = []
    for _ in range(11):
        entry = popped(queue)
        queue.settle(entry, 1.0)
        order.append(entry.item)
    assert order == [f"b{n}" for n in range(10)] + ["a1"]  # b catches up the whole ten first
    assert queue.usage() == {"a": 11.0, "b": 10.0}


def test_an_over_estimated_tenant_gets_the_difference_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "warm-up", cost=1)
    queue.settle(popped(queue), 10.0)  # a has learnt ten seconds a unit
    queue.push("a", "a0")
    queue.push("a", "a1")
    queue.push("b", "b0")
    b0, a0 = (popped(queue) for _ in range(2))  # b first: a used ten seconds already
    assert (b0.item, a0.item) == ("b0", "a0")
    assert b0.charge == 10.0  # b has no history: the queue-wide rate
    assert a0.charge == 10.0  # a's own rate
    assert queue.next_start("a") == 20.0
    queue.settle(a0, 1.0)  # a0 was quick this time
    assert queue.next_start("a") == 11.0  # 10 + 1, not 10 + 10


@pytest.mark.parametrize(
    ("history", "tenant", "units", "expected"),
    [
        ([], "a", 3, 3.0),  # nothing measured: one per unit
        ([("a", 2, 4.0)], "a", 3, 6.0),  # its own rate: two seconds a unit
        ([("a", 2, 4.0)], "new", 5, 10.0),  # no history of its own: the queue-wide rate
        ([("a", 1, 1.0), ("a", 1, 2.0)], "a", 1, 1.2),  # a recent average: 1 + 0.2 * (2 - 1)
        ([("a", 1, 1.0), ("b", 1, 6.0)], "b", 2, 12.0),  # each tenant its own
    ],
)
def test_the_estimate_is_units_times_a_recent_measured_rate(
    history: list[tuple[str, int, float]], tenant: str, units: int, expected: float
) -> None:
    queue: FairQueue[int] = FairQueue()
    for who, declared, seconds in history:
        queue.push(who, 0, cost=declared)
        queue.settle(popped(queue), seconds)
    assert queue.estimate(tenant, units) == pytest.approx(expected)


@pytest.mark.parametrize("action", ["settle", "refund"])
def test_only_a_served_entry_is_settled_and_only_once(action: str) -> None:
    queue: FairQueue[str] = FairQueue()
    queued = queue.push("a", "a0")
    with pytest.raises(ValueError, match="served"):
        queue.settle(queued, 1.0) if action == "settle" else queue.refund(queued)
    served = popped(queue)
    queue.settle(served, 1.0) if action == "settle" else queue.refund(served)
    with pytest.raises(ValueError, match="once"):
        queue.settle(served, 1.0) if action == "settle" else queue.refund(served)


def test_a_measured_cost_is_not_negative() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    with pytest.raises(ValueError, match="negative"):
        queue.settle(popped(queue), -1.0)


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
    while (served_entry := queue.pop()) is not None:
        assert not queue.cancel(served_entry)  # served: no longer queued
        queue.settle(served_entry, 1.0)
        served.append(served_entry.item)
    assert sorted(served) == kept
    assert queue.tenants() == []
    assert sum(queue.usage().values()) == len(kept)  # a cancelled entry was never charged


def test_eligibility_skips_tenants_without_losing_their_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    queue.push("b", "b0")
    assert popped(queue, lambda t: t != "a").item == "b0"
    assert queue.pop(lambda t: t != "a") is None
    assert popped(queue).item == "a0"


@pytest.mark.parametrize(("weight", "cost"), [(0, 1), (1, 0), (-1, 1)])
def test_weights_and_costs_must_be_positive(weight: float, cost: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        FairQueue[int]().push("a", 1, weight=weight, cost=cost)
