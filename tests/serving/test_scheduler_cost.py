"""The scheduler charges tenants the worker time their requests used, measured around each dispatch.

One worker and a cost clock that moves only when a job says so: what each request
"took" is decided by the test, never by the machine, and nothing here measures time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.serving.test_scheduler import block
from warden.errors import DeadlineExceeded
from warden.serving.scheduler import Batching, Scheduler


class Meter:
    """A cost clock that stands still until a job spends time on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def spend(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def meter() -> Meter:
    return Meter()


@pytest.fixture
def now() -> list[float]:
    """The deadline clock, which the tests move by hand."""
    return [100.0]


@pytest.fixture
def one_worker(meter: Meter, now: list[float]) -> Iterator[Scheduler]:
    scheduler = Scheduler(1, clock=lambda: now[0], cost_clock=meter)
    yield scheduler
    scheduler.close()


def charged(scheduler: Scheduler) -> dict[str, float]:
    """Worker seconds per tenant once every earlier dispatch is settled (a request's charge follows its answer)."""
    scheduler.submit("sync", lambda: None).future.result(10)  # one worker: it runs after the others settled
    used = scheduler.worker_seconds()
    assert used.pop("sync") == 0.0
    return used


def spending(meter: Meter, seconds: float, then: Callable[[], Any] = lambda: None) -> Callable[[], Any]:
    """A job that uses ``seconds`` of worker time, then does ``then``."""

    def job() -> Any:
        meter.spend(seconds)
        return then()

    return job


def test_a_tenant_whose_requests_take_100_times_longer_gets_a_hundredth_of_the_turns(
    one_worker: Scheduler, meter: Meter
) -> None:
    release = block(one_worker)
    turns: list[str] = []
    tickets = []
    for n in range(400):  # both declare one image a request: only the measured time differs
        if n < 5:
            tickets.append(one_worker.submit("heavy", spending(meter, 100.0, lambda: turns.append("heavy"))))
        tickets.append(one_worker.submit("light", spending(meter, 1.0, lambda: turns.append("light"))))
    release.set()
    for ticket in tickets:
        ticket.future.result(10)
    assert turns[:303].count("heavy") in (2, 3, 4)  # one turn in about a hundred while both wait
    assert turns.count("heavy") == 5
    assert charged(one_worker) == {"gate": 0.0, "heavy": 500.0, "light": 400.0}


def test_declared_units_do_not_buy_turns_when_the_time_used_is_the_same(one_worker: Scheduler, meter: Meter) -> None:
    # "big" declares ten images a request and "small" one, but each request takes the worker one second.
    release = block(one_worker)
    turns: list[str] = []
    tickets = []
    for _ in range(40):
        tickets.append(one_worker.submit("big", spending(meter, 1.0, lambda: turns.append("big")), cost=10))
        tickets.append(one_worker.submit("small", spending(meter, 1.0, lambda: turns.append("small")), cost=1))
    release.set()
    for ticket in tickets:
        ticket.future.result(10)
    assert abs(turns[:40].count("big") - 20) <= 1
    assert charged(one_worker) == {"gate": 0.0, "big": 40.0, "small": 40.0}


def test_a_batchs_worker_time_is_split_across_its_requests_by_units(
    one_worker: Scheduler, meter: Meter, now: list[float]
) -> None:
    def run(payloads: Sequence[Any]) -> list[Any]:
        meter.spend(6.0)
        return list(payloads)

    policy = Batching(key="m", max_size=8, max_delay=0.0, run=run)
    release = block(one_worker)
    tickets = [
        one_worker.submit_batched(tenant, tenant, policy, cost=units)
        for tenant, units in (("a", 1), ("b", 2), ("c", 3))
    ]
    late = one_worker.submit_batched("d", "d", policy, cost=2, deadline=101.0)
    now[0] = 102.0
    release.set()
    assert [ticket.future.result(10) for ticket in tickets] == ["a", "b", "c"]
    with pytest.raises(DeadlineExceeded):
        late.future.result(10)
    assert one_worker.batch_counts() == (1, 3)
    # Six seconds over the six units that ran; d's request never ran and is charged nothing.
    assert charged(one_worker) == {"gate": 0.0, "a": 1.0, "b": 2.0, "c": 3.0}


def test_a_request_that_never_ran_is_charged_nothing(one_worker: Scheduler, meter: Meter, now: list[float]) -> None:
    release = block(one_worker)
    ran = threading.Event()
    withdrawn = one_worker.submit("a", spending(meter, 5.0, ran.set))
    expired = one_worker.submit("b", spending(meter, 5.0, ran.set), deadline=101.0)
    assert withdrawn.cancel()
    now[0] = 102.0
    release.set()
    with pytest.raises(DeadlineExceeded):
        expired.future.result(10)
    one_worker.submit("c", spending(meter, 2.0)).future.result(10)
    assert not ran.is_set()
    assert charged(one_worker) == {"gate": 0.0, "c": 2.0}


def test_work_that_fails_is_charged_the_time_it_used(one_worker: Scheduler, meter: Meter) -> None:
    def boom() -> None:
        meter.spend(3.0)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        one_worker.submit("a", boom).future.result(10)
    assert charged(one_worker) == {"a": 3.0}


def test_worker_seconds_add_up_each_tenants_measured_time(one_worker: Scheduler, meter: Meter) -> None:
    assert one_worker.worker_seconds() == {}
    for tenant, seconds in (("a", 1.5), ("b", 4.0), ("a", 2.5)):
        one_worker.submit(tenant, spending(meter, seconds)).future.result(10)
    used = charged(one_worker)
    assert used == {"a": 4.0, "b": 4.0}
    used["a"] = 0.0  # a copy: the scheduler's own count is untouched
    assert one_worker.worker_seconds()["a"] == 4.0
