"""The scheduler with real worker threads: fair order, caps, deadlines, cancellation, errors.

The one-worker scheduler reads a ticking cost clock, so every dispatch measures the same worker time and
the fair order does not depend on how long the machine took.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

from warden.errors import DeadlineExceeded, OverCapacity
from warden.serving.scheduler import Scheduler, TenantShare


class Ticking:
    """A cost clock that moves ``step`` seconds each time it is read: every dispatch measures ``step``."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def one_worker() -> Iterator[Scheduler]:
    scheduler = Scheduler(1, cost_clock=Ticking())
    yield scheduler
    scheduler.close()


def block(scheduler: Scheduler, tenant: str = "gate") -> threading.Event:
    """Occupy a worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    scheduler.submit(tenant, hold)
    assert started.wait(10)
    return release


def test_when_two_tenants_are_backlogged_then_the_heavier_weight_runs_more_often(one_worker: Scheduler) -> None:
    release = block(one_worker)
    order: list[str] = []
    tickets = []
    for _ in range(12):
        tickets.append(one_worker.submit("a", lambda: order.append("a"), share=TenantShare(weight=1)))
        tickets.append(one_worker.submit("b", lambda: order.append("b"), share=TenantShare(weight=2)))
    release.set()
    for ticket in tickets:
        ticket.future.result(10)
    first = order[:12]
    assert first.count("b") in (7, 8, 9)  # about two thirds while both are backlogged
    assert order.count("a") == order.count("b") == 12


def test_when_a_tenants_queue_is_full_then_over_capacity_with_retry_after(one_worker: Scheduler) -> None:
    release = block(one_worker)
    share = TenantShare(max_queue=2)
    one_worker.submit("a", lambda: None, share=share)
    one_worker.submit("a", lambda: None, share=share)
    with pytest.raises(OverCapacity) as caught:
        one_worker.submit("a", lambda: None, share=share)
    assert caught.value.retry_after > 0
    one_worker.submit("b", lambda: None, share=share)  # another tenant is not affected
    release.set()


def test_when_a_tenant_has_a_concurrency_cap_then_its_jobs_never_overlap() -> None:
    scheduler = Scheduler(3)
    lock = threading.Lock()
    active = peak = 0

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.02)
        with lock:
            active -= 1

    tickets = [scheduler.submit("a", work, share=TenantShare(max_concurrency=1)) for _ in range(6)]
    for ticket in tickets:
        ticket.future.result(10)
    scheduler.close()
    assert peak == 1


def test_when_the_deadline_passes_while_queued_then_the_work_never_runs() -> None:
    now = [100.0]
    scheduler = Scheduler(1, clock=lambda: now[0])
    release = block(scheduler)
    ran = threading.Event()
    ticket = scheduler.submit("a", ran.set, deadline=101.0)
    now[0] = 102.0
    release.set()
    with pytest.raises(DeadlineExceeded):
        ticket.future.result(10)
    assert not ran.is_set()
    scheduler.close()


def test_when_a_queued_request_is_cancelled_then_it_leaves_no_trace(one_worker: Scheduler) -> None:
    release = block(one_worker)
    ran = threading.Event()
    ticket = one_worker.submit("a", ran.set)
    assert one_worker.queued("a") == 1
    assert ticket.cancel()
    assert not ticket.cancel()
    assert one_worker.queued() == 0
    release.set()
    with pytest.raises(CancelledError):
        ticket.future.result(10)
    one_worker.submit("a", lambda: None).future.result(10)
    assert not ran.is_set()


def test_when_the_awaiting_task_is_cancelled_then_the_request_is_withdrawn(one_worker: Scheduler) -> None:
    release = block(one_worker)
    ran = threading.Event()

    async def scenario() -> None:
        task = asyncio.create_task(one_worker.run("a", ran.set))
        await asyncio.sleep(0.05)
        assert one_worker.queued("a") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert one_worker.queued("a") == 0

    asyncio.run(scenario())
    release.set()
    one_worker.submit("a", lambda: None).future.result(10)
    assert not ran.is_set()


def test_errors_of_the_work_reach_the_waiter(one_worker: Scheduler) -> None:
    def boom() -> None:
        raise KeyError("boom")

    async def scenario() -> None:
        with pytest.raises(KeyError):
            await one_worker.run("a", boom)
        assert await one_worker.run("a", lambda: 42) == 42

    asyncio.run(scenario())


def test_close_cancels_what_is_queued() -> None:
    scheduler = Scheduler(1)
    release = block(scheduler)
    ticket = scheduler.submit("a", lambda: None)
    closer = threading.Thread(target=scheduler.close)
    closer.start()
    for _ in range(1000):  # close() empties the queue before it waits for the running work
        if scheduler.queued() == 0:
            break
        threading.Event().wait(0.01)
    release.set()
    closer.join(10)
    assert ticket.future.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit("a", lambda: None)


def test_a_dedicated_tenant_has_its_own_worker_that_serves_nobody_else(one_worker: Scheduler) -> None:
    release = block(one_worker)  # the only shared worker is busy
    dedicated = TenantShare(dedicated=True)
    thread_of_bank = one_worker.submit("bank", lambda: threading.current_thread().name, share=dedicated)
    assert thread_of_bank.future.result(10).endswith("-bank")  # served although every shared worker is busy
    assert one_worker.dedicated() == {"bank"}
    other = one_worker.submit("shop", lambda: threading.current_thread().name)
    assert not other.future.done()  # the bank's worker does not serve others
    release.set()
    assert not other.future.result(10).endswith("-bank")
