"""Dynamic batching in the scheduler, with one worker held by a gate so the queue is known when it gathers.

Every test queues its work while the only worker is busy with a gate job, then
opens the gate: the worker takes the fairest job and gathers queued jobs of the
same key into one run. Nothing here measures time; long ``max_delay`` values only
show that a full batch does not wait for them. The worker time charged to tenants
comes from a ticking cost clock, so the fair order does not depend on the machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.serving.test_scheduler import Ticking, block
from warden.errors import DeadlineExceeded
from warden.serving.fair_queue import Entry, FairQueue
from warden.serving.scheduler import Batching, Scheduler, TenantShare

LONG = 30.0  # a max_delay no test ever waits out: a batch that completes did not wait for it


def single(clock: Callable[[], float] | None = None) -> Scheduler:
    """One worker, so what runs together is decided by the queue alone."""
    return Scheduler(1, clock=clock or time.monotonic, cost_clock=Ticking(6.0))  # six seconds a dispatch


@pytest.fixture
def one_worker() -> Iterator[Scheduler]:
    scheduler = single()
    yield scheduler
    scheduler.close()


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a scheduler state the test waits for); fail after ten seconds."""
    done = threading.Event()
    for _ in range(1000):
        if condition():
            return
        done.wait(0.01)
    pytest.fail("the scheduler never reached the expected state")


@dataclass
class Runner:
    """A batch runner that records each batch's payloads and answers ``("ok", payload)`` for each."""

    batches: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, payloads: Sequence[Any]) -> list[Any]:
        with self.lock:
            self.batches.append(list(payloads))
        return [self.outcome(p) for p in payloads]

    def outcome(self, payload: Any) -> Any:
        return ("ok", payload)


def policy(
    runner: Callable[[Sequence[Any]], Sequence[Any]], *, key: str = "m", size: int = 4, delay: float = 0.0
) -> Batching:
    return Batching(key=key, max_size=size, max_delay=delay, run=runner)


def results(tickets: Sequence[Any]) -> list[Any]:
    return [ticket.future.result(10) for ticket in tickets]


def test_a_batch_gathers_queued_work_up_to_max_size(one_worker: Scheduler) -> None:
    runner = Runner()
    release = block(one_worker)
    tickets = [one_worker.submit_batched("a", n, policy(runner, size=3)) for n in range(7)]
    release.set()
    assert results(tickets) == [("ok", n) for n in range(7)]
    assert runner.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert one_worker.batch_counts() == (3, 7)


def test_the_size_of_a_batch_counts_costs_not_requests(one_worker: Scheduler) -> None:
    runner = Runner()
    release = block(one_worker)
    costs = {"p0": 2.0, "p1": 2.0, "p2": 1.0, "p3": 3.0, "big": 5.0}
    tickets = [one_worker.submit_batched("a", p, policy(runner, size=3), cost=c) for p, c in costs.items()]
    release.set()
    assert results(tickets) == [("ok", p) for p in costs]
    # p0 leaves room for one unit: p1 does not fit, p2 does; p1 then waits for the next batch, p3 fills one
    # alone, and work costing more than a whole batch still runs, alone.
    assert runner.batches == [["p0", "p2"], ["p1"], ["p3"], ["big"]]
    for batch in runner.batches[:3]:
        assert sum(costs[p] for p in batch) <= 3
    assert one_worker.batch_counts() == (4, 5)


def test_work_of_different_keys_never_shares_a_run(one_worker: Scheduler) -> None:
    first, second = Runner(), Runner()
    release = block(one_worker)
    tickets = []
    for n in range(4):
        tickets.append(one_worker.submit_batched("a", f"x{n}", policy(first, key="x", size=8)))
        tickets.append(one_worker.submit_batched("b", f"y{n}", policy(second, key="y", size=8)))
    plain = one_worker.submit("a", lambda: "plain")
    release.set()
    assert results(tickets) == [("ok", p) for n in range(4) for p in (f"x{n}", f"y{n}")]
    assert plain.future.result(10) == "plain"
    assert first.batches == [["x0", "x1", "x2", "x3"]]
    assert second.batches == [["y0", "y1", "y2", "y3"]]
    assert one_worker.batch_counts() == (2, 8)


def test_equal_keys_share_a_run_whatever_runner_the_later_work_brought(one_worker: Scheduler) -> None:
    first, second = Runner(), Runner()
    release = block(one_worker)
    tickets = [
        one_worker.submit_batched("a", "p0", policy(first, key="same", size=4)),
        one_worker.submit_batched("b", "p1", policy(second, key="same", size=4)),
    ]
    release.set()
    assert results(tickets) == [("ok", "p0"), ("ok", "p1")]
    assert first.batches == [["p0", "p1"]]  # the policy of the job that opened the batch runs it
    assert second.batches == []


def test_a_batch_takes_tenants_in_weighted_fair_order(one_worker: Scheduler) -> None:
    runner = Runner()
    release = block(one_worker)
    light, heavy = TenantShare(weight=1), TenantShare(weight=2)
    tickets = []
    for n in range(6):
        tickets.append(one_worker.submit_batched("a", f"a{n}", policy(runner, size=6), share=light))
        tickets.append(one_worker.submit_batched("b", f"b{n}", policy(runner, size=6), share=heavy))
    release.set()
    results(tickets)
    # Weight 2 gets two turns for one; ties go to the earlier arrival. The first batch is tagged on the
    # gate's six seconds a request, the second on the one second each of the first batch's requests used.
    assert runner.batches == [
        ["a0", "b0", "b1", "a1", "b2", "b3"],
        ["a2", "b4", "b5", "a3", "a4", "a5"],
    ]


def test_a_tenant_is_gathered_no_further_than_its_concurrency_cap(one_worker: Scheduler) -> None:
    runner = Runner()
    release = block(one_worker)
    capped = TenantShare(max_concurrency=2)
    tickets = [one_worker.submit_batched("a", f"a{n}", policy(runner, size=8), share=capped) for n in range(4)]
    tickets += [one_worker.submit_batched("b", f"b{n}", policy(runner, size=8)) for n in range(2)]
    release.set()
    results(tickets)
    assert runner.batches == [["a0", "b0", "a1", "b1"], ["a2", "a3"]]
    assert all(sum(p.startswith("a") for p in batch) <= 2 for batch in runner.batches)


def test_while_a_batch_gathers_its_members_count_as_running(one_worker: Scheduler) -> None:
    runner = Runner()
    tickets = [one_worker.submit_batched("a", "p0", policy(runner, size=3, delay=LONG))]
    wait_until(lambda: one_worker.running("a") == 1 and one_worker.queued() == 0)
    tickets.append(one_worker.submit_batched("a", "p1", policy(runner, size=3, delay=LONG)))
    wait_until(lambda: one_worker.running("a") == 2 and one_worker.queued() == 0)
    assert runner.batches == []  # still waiting for a third
    tickets.append(one_worker.submit_batched("a", "p2", policy(runner, size=3, delay=LONG)))
    assert results(tickets) == [("ok", "p0"), ("ok", "p1"), ("ok", "p2")]
    assert runner.batches == [["p0", "p1", "p2"]]
    wait_until(lambda: one_worker.running() == 0)


def test_the_wait_for_more_work_ends_as_soon_as_the_batch_is_full(one_worker: Scheduler) -> None:
    runner = Runner()
    first = one_worker.submit_batched("a", "p0", policy(runner, size=2, delay=LONG))
    wait_until(lambda: one_worker.running("a") == 1 and one_worker.queued() == 0)
    assert not first.future.done()  # the worker holds p0 while it waits for a second request
    second = one_worker.submit_batched("b", "p1", policy(runner, size=2, delay=LONG))
    # Both finish long before the 30 s delay would have run out (the result timeout is 10 s).
    assert results([first, second]) == [("ok", "p0"), ("ok", "p1")]
    assert runner.batches == [["p0", "p1"]]


def test_without_a_delay_a_lone_request_runs_at_once(one_worker: Scheduler) -> None:
    runner = Runner()
    assert results([one_worker.submit_batched("a", "p0", policy(runner, size=8, delay=0.0))]) == [("ok", "p0")]
    assert runner.batches == [["p0"]]


def test_when_the_delay_runs_out_the_partial_batch_runs(one_worker: Scheduler) -> None:
    runner = Runner()
    assert results([one_worker.submit_batched("a", "p0", policy(runner, size=8, delay=0.05))]) == [("ok", "p0")]
    assert runner.batches == [["p0"]]


def test_an_exception_outcome_fails_only_its_own_request(one_worker: Scheduler) -> None:
    class Picky(Runner):
        def outcome(self, payload: Any) -> Any:
            return ValueError(f"bad {payload}") if payload == "bad" else ("ok", payload)

    runner = Picky()
    release = block(one_worker)
    tickets = {p: one_worker.submit_batched("a", p, policy(runner)) for p in ("p0", "bad", "p2")}
    release.set()
    assert tickets["p0"].future.result(10) == ("ok", "p0")
    assert tickets["p2"].future.result(10) == ("ok", "p2")
    with pytest.raises(ValueError, match="bad bad"):
        tickets["bad"].future.result(10)
    assert runner.batches == [["p0", "bad", "p2"]]


def test_when_the_runner_raises_every_request_of_the_batch_gets_its_exception(one_worker: Scheduler) -> None:
    seen: list[list[Any]] = []
    boom = RuntimeError("the session died")

    def explode(payloads: Sequence[Any]) -> list[Any]:
        seen.append(list(payloads))
        raise boom

    release = block(one_worker)
    tickets = [one_worker.submit_batched(t, n, policy(explode)) for n, t in enumerate("abab")]
    release.set()
    for ticket in tickets:
        assert ticket.future.exception(10) is boom
    assert seen == [[0, 1, 2, 3]]
    assert one_worker.submit_batched("a", "after", policy(Runner())).future.result(10) == ("ok", "after")


def test_a_runner_answering_the_wrong_number_of_outcomes_fails_the_batch(one_worker: Scheduler) -> None:
    release = block(one_worker)
    tickets = [one_worker.submit_batched("a", n, policy(lambda payloads: ["only one"])) for n in range(2)]
    release.set()
    for ticket in tickets:
        with pytest.raises(RuntimeError, match="returned 1 outcomes for 2 requests"):
            ticket.future.result(10)


def test_expired_and_cancelled_requests_are_left_out_and_the_rest_run() -> None:
    now = [100.0]
    scheduler = single(clock=lambda: now[0])
    runner = Runner()
    release = block(scheduler)
    p0 = scheduler.submit_batched("a", "p0", policy(runner))
    late = scheduler.submit_batched("b", "late", policy(runner), deadline=101.0)
    gone = scheduler.submit_batched("a", "gone", policy(runner))
    p3 = scheduler.submit_batched("b", "p3", policy(runner), deadline=200.0)
    assert gone.cancel()
    now[0] = 102.0
    release.set()
    assert results([p0, p3]) == [("ok", "p0"), ("ok", "p3")]
    with pytest.raises(DeadlineExceeded):
        late.future.result(10)
    with pytest.raises(CancelledError):
        gone.future.result(10)
    assert runner.batches == [["p0", "p3"]]
    assert scheduler.batch_counts() == (1, 2)
    scheduler.close()


def test_a_request_whose_deadline_passes_while_its_batch_gathers_is_left_out() -> None:
    now = [100.0]
    scheduler = single(clock=lambda: now[0])
    runner = Runner()
    early = scheduler.submit_batched("a", "early", policy(runner, size=2, delay=LONG), deadline=101.0)
    wait_until(lambda: scheduler.running("a") == 1 and scheduler.queued() == 0)
    now[0] = 102.0
    last = scheduler.submit_batched("b", "last", policy(runner, size=2, delay=LONG))
    assert last.future.result(10) == ("ok", "last")
    with pytest.raises(DeadlineExceeded):
        early.future.result(10)
    assert runner.batches == [["last"]]
    scheduler.close()


def test_a_request_cancelled_after_it_was_gathered_is_left_out(one_worker: Scheduler) -> None:
    runner = Runner()
    first = one_worker.submit_batched("a", "p0", policy(runner, size=3, delay=LONG))
    wait_until(lambda: one_worker.running() == 1 and one_worker.queued() == 0)
    second = one_worker.submit_batched("a", "p1", policy(runner, size=3, delay=LONG))
    wait_until(lambda: one_worker.running() == 2 and one_worker.queued() == 0)
    assert not second.cancel()  # no longer queued: withdrawing it from the queue is too late ...
    assert second.future.cancel()  # ... but its waiter can still give up before the batch runs
    third = one_worker.submit_batched("a", "p2", policy(runner, size=3, delay=LONG))
    assert results([first, third]) == [("ok", "p0"), ("ok", "p2")]
    assert runner.batches == [["p0", "p2"]]
    assert one_worker.batch_counts() == (1, 2)


def test_when_every_request_of_a_batch_is_gone_the_runner_is_not_called() -> None:
    now = [100.0]
    scheduler = single(clock=lambda: now[0])
    runner = Runner()
    release = block(scheduler)
    tickets = [scheduler.submit_batched("a", n, policy(runner), deadline=101.0) for n in range(3)]
    now[0] = 102.0
    release.set()
    for ticket in tickets:
        with pytest.raises(DeadlineExceeded):
            ticket.future.result(10)
    assert runner.batches == []
    assert scheduler.batch_counts() == (0, 0)
    scheduler.close()


def test_run_batched_awaits_the_outcome_and_withdraws_on_cancellation(one_worker: Scheduler) -> None:
    runner = Runner()
    release = block(one_worker)

    async def scenario() -> None:
        kept = asyncio.create_task(one_worker.run_batched("a", "kept", policy(runner)))
        dropped = asyncio.create_task(one_worker.run_batched("a", "dropped", policy(runner)))
        while one_worker.queued("a") < 2:
            await asyncio.sleep(0.01)
        dropped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dropped
        assert one_worker.queued("a") == 1
        release.set()
        assert await kept == ("ok", "kept")

    asyncio.run(scenario())
    assert runner.batches == [["kept"]]


def test_close_while_gathering_runs_what_was_taken() -> None:
    scheduler = single()
    runner = Runner()
    taken = scheduler.submit_batched("a", "p0", policy(runner, size=4, delay=LONG))
    wait_until(lambda: scheduler.running() == 1 and scheduler.queued() == 0)
    scheduler.close()
    assert taken.future.result(10) == ("ok", "p0")
    assert runner.batches == [["p0"]]


@pytest.mark.parametrize(("size", "delay"), [(0, 0.0), (-1, 0.0), (1, -0.001)])
def test_a_batching_policy_must_hold_one_request_and_wait_a_non_negative_time(
    one_worker: Scheduler, size: int, delay: float
) -> None:
    with pytest.raises(ValueError, match="at least one request"):
        one_worker.submit_batched("a", "p", policy(Runner(), size=size, delay=delay))
    assert one_worker.queued() == 0


def test_batch_counts_add_up_batches_and_requests(one_worker: Scheduler) -> None:
    assert one_worker.batch_counts() == (0, 0)
    runner = Runner()
    one_worker.submit("a", lambda: None).future.result(10)  # plain work is not counted
    assert one_worker.batch_counts() == (0, 0)
    release = block(one_worker)
    tickets = [one_worker.submit_batched("a", n, policy(runner, size=2)) for n in range(5)]
    release.set()
    results(tickets)
    assert one_worker.batch_counts() == (3, 5)
    results([one_worker.submit_batched("b", "solo", policy(runner, size=2))])
    assert one_worker.batch_counts() == (4, 6)


# FairQueue.pop with ``match``: the fairest matching entry among eligible tenants, never a non-matching one.

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.sampled_from("abcd"),
            st.integers(1, 4),  # weight
            st.integers(1, 3),  # cost
            st.booleans(),  # whether the entry matches
        ),
        st.tuples(st.just("pop")),
        st.tuples(st.just("cancel"), st.integers(0, 200)),
    ),
    max_size=60,
)


RATES = {"a": 1.0, "b": 3.0, "c": 0.5, "d": 2.0}  # measured seconds per unit, when a plain pop is settled


@settings(max_examples=200, deadline=None)
@given(ops=operations, excluded=st.sets(st.sampled_from("abcd"), max_size=3))
def test_pop_with_a_match_returns_the_fairest_matching_entry(ops: list[tuple[Any, ...]], excluded: set[str]) -> None:
    queue: FairQueue[tuple[int, bool]] = FairQueue()
    live: list[Entry[tuple[int, bool]]] = []
    for op in ops:
        if op[0] == "push":
            _, tenant, weight, cost, matches = op
            live.append(queue.push(tenant, (len(live), matches), weight=weight, cost=cost))
        elif op[0] == "pop":  # plain pops move virtual time; what they serve runs, at unequal rates
            popped = queue.pop()
            if popped is not None:
                queue.settle(popped, popped.cost * RATES[popped.tenant])
                live.remove(popped)
        elif live:
            victim = live[op[1] % len(live)]
            assert queue.cancel(victim)
            live.remove(victim)

    def eligible(tenant: str) -> bool:
        return tenant not in excluded

    def match(entry: Entry[tuple[int, bool]]) -> bool:
        return entry.item[1]

    while True:
        candidates = [e for e in live if eligible(e.tenant) and match(e)]
        expected = min(candidates, key=lambda e: (queue.next_start(e.tenant), e.order), default=None)
        popped = queue.pop(eligible, match)
        if expected is None:
            assert popped is None
            break
        assert popped is expected
        assert match(popped)
        live.remove(popped)
        assert len(queue) == len(live)
        for tenant in "abcd":
            assert queue.queued(tenant) == sum(e.tenant == tenant for e in live)
    # What was passed over is still there, in its tenant's order.
    rest = []
    while (entry := queue.pop()) is not None:
        rest.append(entry)
    assert sorted(rest, key=lambda e: e.order) == sorted(live, key=lambda e: e.order)
    for tenant in "abcd":
        orders = [e.order for e in rest if e.tenant == tenant]
        assert orders == sorted(orders)


def test_pop_with_a_match_reaches_past_a_tenants_head() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "other")
    wanted = queue.push("a", "wanted")
    queue.push("b", "other")
    assert queue.pop(match=lambda e: e.item == "wanted") is wanted
    assert queue.pop(match=lambda e: e.item == "wanted") is None
    assert [queue.pop().item for _ in range(2)] == ["other", "other"]  # type: ignore[union-attr]
    assert len(queue) == 0
    assert queue.tenants() == []


@pytest.mark.parametrize(("workers", "headroom"), [(1, 0), (2, 0), (2, 1)])
def test_a_batch_is_one_worker_however_many_of_one_tenants_requests_it_holds(workers: int, headroom: int) -> None:
    # Regression: the headroom rule counted the requests gathered into a batch as workers held, so while
    # another tenant was active a tenant's batch stopped at `workers - headroom` requests, even with no headroom.
    scheduler = Scheduler(workers, headroom=headroom, active_window=60)
    runner = Runner()
    try:
        scheduler.submit("other", lambda: None).future.result(10)  # another tenant was active moments ago
        gates = [block(scheduler, tenant="a" if n == 0 else "other") for n in range(workers)]  # every worker busy
        tickets = [scheduler.submit_batched("a", n, policy(runner, size=4)) for n in range(4)]
        for gate in gates:
            gate.set()
        assert results(tickets) == [("ok", n) for n in range(4)]
        assert runner.batches == [[0, 1, 2, 3]]
    finally:
        scheduler.close()
