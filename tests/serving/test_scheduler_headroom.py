"""Headroom: while several tenants are active, one tenant cannot hold every shared worker.

Real worker threads; jobs hold their worker until released, so what runs where is
observed directly. No wall-clock assertion: waits poll a condition with a generous limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from warden.serving.scheduler import Scheduler, TenantShare

WINDOW = 0.3


def eventually(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``limit`` seconds pass."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Released at the end of the test, so no worker stays held."""
    release = threading.Event()
    yield release
    release.set()


def hold(release: threading.Event) -> Callable[[], bool]:
    """A job that keeps its worker until ``release`` is set."""
    return lambda: release.wait(30)


def test_a_tenant_alone_gets_every_worker(gate: threading.Event) -> None:
    scheduler = Scheduler(2, headroom=1, active_window=60)
    try:
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        assert eventually(lambda: scheduler.running("a") == 2)
        assert scheduler.queued("a") == 1
    finally:
        gate.set()
        scheduler.close()


def test_while_another_tenant_is_active_a_worker_stays_free_for_it(gate: threading.Event) -> None:
    scheduler = Scheduler(2, headroom=1, active_window=60)
    try:
        scheduler.submit("b", lambda: None).future.result(10)  # b was active moments ago
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        assert eventually(lambda: scheduler.running("a") == 1)
        assert scheduler.queued("a") == 2  # held back although a worker is idle
        answer = scheduler.submit("b", lambda: "b ran")
        assert answer.future.result(10) == "b ran"  # on the free worker, while a's job still runs
        assert scheduler.running("a") == 1
    finally:
        gate.set()
        scheduler.close()


def test_once_the_other_tenant_goes_quiet_the_held_back_work_runs(gate: threading.Event) -> None:
    scheduler = Scheduler(2, headroom=1, active_window=WINDOW)
    try:
        scheduler.submit("b", lambda: None).future.result(10)
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        # Nothing new is submitted and nothing ends: only the window's end can wake the idle worker.
        assert eventually(lambda: scheduler.running("a") == 2, limit=5.0)
    finally:
        gate.set()
        scheduler.close()


def test_with_no_headroom_one_tenant_may_hold_every_worker(gate: threading.Event) -> None:
    scheduler = Scheduler(2, headroom=0, active_window=60)
    try:
        scheduler.submit("b", lambda: None).future.result(10)
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        assert eventually(lambda: scheduler.running("a") == 2)
    finally:
        gate.set()
        scheduler.close()


def test_a_dedicated_tenant_keeps_its_own_worker_whatever_the_headroom(gate: threading.Event) -> None:
    scheduler = Scheduler(2, headroom=1, active_window=60)
    try:
        scheduler.submit("b", lambda: None).future.result(10)
        for _ in range(2):
            scheduler.submit("a", hold(gate))
        answer = scheduler.submit("d", lambda: "d ran", share=TenantShare(dedicated=True))
        assert answer.future.result(10) == "d ran"
        assert eventually(lambda: scheduler.running("a") == 1)
    finally:
        gate.set()
        scheduler.close()


@pytest.mark.parametrize(("workers", "headroom"), [(1, 1), (2, 2), (2, -1), (4, 5)])
def test_headroom_must_leave_a_worker(workers: int, headroom: int) -> None:
    with pytest.raises(ValueError, match="headroom"):
        Scheduler(workers, headroom=headroom)


def test_an_idle_scheduler_sleeps_once_every_activity_has_aged_out() -> None:
    # Regression: an activity older than the window was never forgotten while nothing was queued, so idle
    # workers woke every millisecond for ever.
    scheduler = Scheduler(2, headroom=1, active_window=WINDOW)
    try:
        scheduler.submit("a", lambda: None).future.result(10)
        scheduler.submit("b", lambda: None).future.result(10)
        with scheduler._cond:
            assert scheduler._idle_wait() is not None  # two tenants active: wake when their activity ends
        time.sleep(WINDOW * 2)
        with scheduler._cond:
            assert scheduler._idle_wait() is None  # then sleep until work arrives
    finally:
        scheduler.close()


@pytest.mark.parametrize(
    ("workers", "headroom", "expected"),
    [(1, None, 0), (2, None, 1), (8, None, 1), (2, 0, 0), (4, 0, 0), (3, 2, 2)],
)
def test_headroom_is_one_worker_by_default_when_there_are_two_or_more(
    workers: int, headroom: int | None, expected: int
) -> None:
    scheduler = Scheduler(workers, headroom=headroom)
    try:
        assert scheduler.headroom == expected
    finally:
        scheduler.close()


def test_by_default_a_worker_stays_free_for_another_tenant(gate: threading.Event) -> None:
    scheduler = Scheduler(2, active_window=60)
    try:
        scheduler.submit("b", lambda: None).future.result(10)
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        assert eventually(lambda: scheduler.running("a") == 1)
        assert scheduler.submit("b", lambda: "b ran").future.result(10) == "b ran"
        assert scheduler.running("a") == 1
        assert scheduler.queued("a") == 2
    finally:
        gate.set()
        scheduler.close()


def test_a_tenant_queued_longer_than_the_window_still_counts_as_active(gate: threading.Event) -> None:
    # b may run one request at a time: its second waits in the queue well past the activity window. While
    # it waits, a stays within workers - headroom although a worker is idle; once b's queue is empty and
    # the window has passed, a is alone and gets every worker.
    scheduler = Scheduler(3, headroom=2, active_window=WINDOW)
    b_gate = threading.Event()
    try:
        capped = TenantShare(max_concurrency=1)
        scheduler.submit("b", hold(b_gate), share=capped)
        scheduler.submit("b", lambda: None, share=capped)
        assert eventually(lambda: scheduler.running("b") == 1)
        for _ in range(3):
            scheduler.submit("a", hold(gate))
        assert eventually(lambda: scheduler.running("a") == 1)
        time.sleep(WINDOW * 3)  # b's submissions age out of the window; its queued request does not
        assert scheduler.queued("b") == 1
        assert scheduler.running("a") == 1  # a worker is idle, and still held for b
        b_gate.set()
        assert eventually(lambda: scheduler.running("a") == 3, limit=5.0)  # alone now: every worker
    finally:
        b_gate.set()
        gate.set()
        scheduler.close()
