"""One scheduler for the machine's compute: worker threads fed by weighted fair queuing across tenants.

Requests wait in per-tenant queues (bounded by ``max_queue``); a worker takes the
fairest head among tenants under their ``max_concurrency``. A request whose
deadline passed while queued fails with ``DeadlineExceeded`` without running; a
cancelled one (its client went away) leaves the queue and costs nothing.

Work submitted with a :class:`Batching` policy may share one run with other
queued work of the same key (one model version): the worker that takes the
first such request gathers more, in fair order, up to ``max_size`` and for at
most ``max_delay`` seconds, and hands their payloads to the policy's runner
together.

Each dispatch's worker time is measured (``cost_clock``, wall clock by default) and
charged to the tenants whose requests ran, a batch's split by their units; the fair
queue corrects its estimate with it, so tenants share the workers' *time* by weight
(see :mod:`warden.serving.fair_queue`), and :meth:`Scheduler.worker_seconds` reports it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from warden.errors import DeadlineExceeded, OverCapacity
from warden.serving.fair_queue import Entry, FairQueue

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TenantShare:
    """A tenant's scheduling parameters: fair-share weight, concurrency and queue caps, a reserved worker."""

    weight: float = 1.0
    max_concurrency: int | None = None
    max_queue: int | None = None
    dedicated: bool = False


@dataclass(frozen=True, slots=True)
class Batching:
    """How queued work may share one run: equal ``key``s run together, up to ``max_size`` cost units.

    ``run`` receives the payloads of one batch, in order, and returns one outcome
    per payload: a result, or an exception instance that fails that payload only.
    A worker waits at most ``max_delay`` seconds for a batch to fill.
    """

    key: Hashable
    max_size: int
    max_delay: float
    run: Callable[[Sequence[Any]], Sequence[Any]]


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    work: Callable[[], T] | None
    future: Future[T]
    deadline: float | None
    payload: Any = None
    batching: Batching | None = None


class Ticket(Generic[T]):
    """A submitted request: its future, and a way to withdraw it while it waits."""

    def __init__(self, scheduler: Scheduler, entry: Entry[_Job[Any]], future: Future[T]) -> None:
        self._scheduler = scheduler
        self._entry = entry
        self.future = future

    def cancel(self) -> bool:
        """Withdraw the request if it has not started; ``True`` if it was withdrawn."""
        return self._scheduler._withdraw(self._entry)


class Scheduler:
    """Runs submitted work on ``workers`` threads in weighted-fair order of worker time across tenants.

    With ``headroom`` > 0, while another tenant has work queued or has submitted work
    in the last ``active_window`` seconds, no tenant may hold more than
    ``workers - headroom`` shared workers, so the others' next request finds a worker
    free instead of waiting for a running job to end; a tenant alone still gets every
    worker. ``headroom=None`` (the default) keeps one worker free when there are two
    or more, none with one; 0 turns it off.
    """

    def __init__(
        self,
        workers: int,
        *,
        headroom: int | None = None,
        active_window: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        cost_clock: Callable[[], float] = time.perf_counter,
        name: str = "warden-worker",
    ) -> None:
        if workers < 1:
            raise ValueError("at least one worker is needed")
        if headroom is None:
            headroom = 1 if workers >= 2 else 0
        elif not 0 <= headroom < workers:
            raise ValueError(f"headroom must leave at least one worker: 0 <= headroom < {workers}, got {headroom}")
        self._headroom = headroom
        self._window = active_window
        self._workers = workers
        self._seen: dict[str, float] = {}
        self._clock = clock
        self._cost_clock = cost_clock
        self._queue: FairQueue[_Job[Any]] = FairQueue()
        self._running: dict[str, int] = {}  # requests in progress, for max_concurrency
        self._holding: dict[str, int] = {}  # shared workers running some of the tenant's work, for headroom
        self._limits: dict[str, int | None] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._name = name
        self._dedicated: set[str] = set()
        self._batches = 0
        self._batched = 0
        self._sizes: dict[int, int] = {}  # batch size -> batches of that size (metrics)
        self._threads = [
            threading.Thread(target=self._loop, args=(None,), name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        tenant: str,
        work: Callable[[], T],
        *,
        share: TenantShare = TenantShare(),
        deadline: float | None = None,
        cost: float = 1.0,
    ) -> Ticket[T]:
        """Queue ``work`` for ``tenant``; ``OverCapacity`` if its queue is full. ``deadline`` is on ``clock``."""
        return self._submit(tenant, _Job(work, Future(), deadline), share, cost)

    def submit_batched(
        self,
        tenant: str,
        payload: Any,
        batching: Batching,
        *,
        share: TenantShare = TenantShare(),
        deadline: float | None = None,
        cost: float = 1.0,
    ) -> Ticket[Any]:
        """Queue ``payload`` to run through ``batching.run``, possibly together with others of the same key."""
        if batching.max_size < 1 or batching.max_delay < 0:
            raise ValueError("a batch holds at least one request and waits a non-negative time")
        return self._submit(tenant, _Job(None, Future(), deadline, payload, batching), share, cost)

    def _submit(self, tenant: str, job: _Job[T], share: TenantShare, cost: float) -> Ticket[T]:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the scheduler is closed")
            self._check_room(tenant, share.max_queue)
            self._limits[tenant] = share.max_concurrency
            if share.dedicated and tenant not in self._dedicated:
                self._reserve(tenant)
            entry = self._queue.push(tenant, job, weight=share.weight, cost=cost)
            if self._headroom:  # activity matters (and is tracked) only when headroom holds work back
                self._seen[tenant] = time.monotonic()
            self._cond.notify_all()  # workers differ in whom they serve: wake them all
        ticket = Ticket(self, entry, job.future)
        job.future.add_done_callback(lambda done: ticket.cancel() if done.cancelled() else None)
        return ticket

    async def run(
        self,
        tenant: str,
        work: Callable[[], T],
        *,
        share: TenantShare = TenantShare(),
        deadline: float | None = None,
        cost: float = 1.0,
    ) -> T:
        """Submit and await; cancelling the awaiting task withdraws the request if it has not started."""
        return await _awaited(self.submit(tenant, work, share=share, deadline=deadline, cost=cost))

    async def run_batched(
        self,
        tenant: str,
        payload: Any,
        batching: Batching,
        *,
        share: TenantShare = TenantShare(),
        deadline: float | None = None,
        cost: float = 1.0,
    ) -> Any:
        """Submit a batchable payload and await its outcome; cancelling withdraws it if it has not started."""
        return await _awaited(self.submit_batched(tenant, payload, batching, share=share, deadline=deadline, cost=cost))

    def batch_counts(self) -> tuple[int, int]:
        """``(batches, requests)`` run through batching policies so far; their ratio is the mean batch size."""
        with self._cond:
            return self._batches, self._batched

    def batch_sizes(self) -> dict[int, int]:
        """How many batches ran with each number of requests (for a batch-size histogram)."""
        with self._cond:
            return dict(self._sizes)

    @property
    def headroom(self) -> int:
        """Shared workers kept free for other tenants while more than one is active."""
        return self._headroom

    def worker_seconds(self) -> dict[str, float]:
        """Worker seconds charged to each tenant so far: the measured time of its work that ran (for metrics)."""
        with self._cond:
            return self._queue.usage()

    def load(self) -> dict[str, tuple[int, int]]:
        """``{tenant: (running, queued)}`` for every tenant with work running or waiting (for metrics)."""
        with self._cond:
            tenants = {t for t, n in self._running.items() if n} | set(self._queue.tenants())
            return {t: (self._running.get(t, 0), self._queue.queued(t)) for t in tenants}

    def ensure_room(self, tenant: str, max_queue: int | None) -> None:
        """Raise ``OverCapacity`` when ``tenant`` already has ``max_queue`` requests waiting."""
        with self._cond:
            self._check_room(tenant, max_queue)

    def _check_room(self, tenant: str, max_queue: int | None) -> None:
        if max_queue is not None and self._queue.queued(tenant) >= max_queue:
            raise OverCapacity(f"the tenant's queue is full ({max_queue} waiting)", retry_after=1.0)

    def queued(self, tenant: str | None = None) -> int:
        """Requests waiting, for one tenant or in all."""
        with self._cond:
            return len(self._queue) if tenant is None else self._queue.queued(tenant)

    def running(self, tenant: str | None = None) -> int:
        """Requests running, for one tenant or in all."""
        with self._cond:
            return sum(self._running.values()) if tenant is None else self._running.get(tenant, 0)

    def close(self) -> None:
        """Stop the workers after the running work; queued work is cancelled."""
        with self._cond:
            self._stopping = True
            while (entry := self._queue.pop()) is not None:
                self._queue.refund(entry)
                entry.item.future.cancel()
            self._cond.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=30)

    def _withdraw(self, entry: Entry[_Job[Any]]) -> bool:
        with self._cond:
            removed = self._queue.cancel(entry)
            if removed and self._headroom:  # its tenant may have stopped counting as active
                self._cond.notify_all()
        if removed:
            entry.item.future.cancel()
        return removed

    def dedicated(self) -> set[str]:
        """Tenants with a reserved worker."""
        with self._cond:
            return set(self._dedicated)

    def _reserve(self, tenant: str) -> None:
        # Called with the lock held: one worker that serves this tenant only, and no shared worker serves it.
        self._dedicated.add(tenant)
        thread = threading.Thread(target=self._loop, args=(tenant,), name=f"{self._name}-{tenant}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _eligible_for(self, owner: str | None, *, joining: bool = False) -> Callable[[str], bool]:
        """Whom a worker may take work from; ``joining`` a batch already on this worker, headroom does not apply."""

        def eligible(tenant: str) -> bool:
            if (tenant in self._dedicated) != (owner is not None) or (owner is not None and tenant != owner):
                return False
            limit = self._limits.get(tenant)
            if limit is not None and self._running.get(tenant, 0) >= limit:
                return False
            if joining or owner is not None or self._holding.get(tenant, 0) < self._workers - self._headroom:
                return True
            return not self._others_active(tenant)

        return eligible

    def _others_active(self, tenant: str) -> bool:
        # Called with the lock held: does another tenant wait for a shared worker (however long it has
        # waited), or has one submitted work within the window?
        if any(other != tenant and other not in self._dedicated for other in self._queue.tenants()):
            return True
        now = time.monotonic()
        for other, seen in list(self._seen.items()):
            if now - seen >= self._window:
                del self._seen[other]
            elif other != tenant:
                return True
        return False

    def _idle_wait(self) -> float | None:
        # How long a worker may sleep: with headroom, until the oldest activity ages out (work held back
        # for another tenant becomes eligible then, and nothing else would wake the worker).
        if self._headroom == 0:
            return None
        now = time.monotonic()
        for tenant, seen in list(self._seen.items()):
            if now - seen >= self._window:
                del self._seen[tenant]  # aged out: nothing to wake up for (an idle server must not spin)
        if not self._seen:
            return None
        return min(self._seen.values()) + self._window - now + 0.001

    def _loop(self, owner: str | None) -> None:
        eligible, joinable = self._eligible_for(owner), self._eligible_for(owner, joining=True)
        while True:
            with self._cond:
                entry = self._queue.pop(eligible)
                while entry is None:
                    if self._stopping:
                        return
                    self._cond.wait(self._idle_wait())
                    entry = self._queue.pop(eligible)
                if self._headroom > 1 and not self._queue.queued(entry.tenant):
                    # Its tenant may no longer count as active: a worker held back for it may serve others
                    # (with one worker of headroom none is idle then: this one was the free one).
                    self._cond.notify_all()
                taken = [entry]
                self._running[entry.tenant] = self._running.get(entry.tenant, 0) + 1
                self._holding[entry.tenant] = self._holding.get(entry.tenant, 0) + 1
                if entry.item.batching is not None:
                    self._gather(taken, entry.item.batching, joinable)
                holders = {e.tenant for e in taken}
                for tenant in holders - {entry.tenant}:
                    self._holding[tenant] = self._holding.get(tenant, 0) + 1
            ran: list[_Job[Any]] = []
            began = self._cost_clock()
            try:
                ran = self._execute([e.item for e in taken])
            finally:
                used = max(self._cost_clock() - began, 0.0)
                with self._cond:
                    for done in taken:
                        self._running[done.tenant] -= 1
                    for tenant in holders:
                        self._holding[tenant] -= 1
                    self._charge(taken, ran, used)
                    self._cond.notify_all()

    def _charge(self, taken: list[Entry[_Job[Any]]], ran: list[_Job[Any]], seconds: float) -> None:
        # Called with the lock held: split a dispatch's worker time across the requests that ran, by their
        # units; the others (cancelled, or past their deadline) are refunded.
        live = set(ran)
        units = sum(entry.cost for entry in taken if entry.item in live)
        for entry in taken:
            if entry.item in live:
                self._queue.settle(entry, seconds * entry.cost / units)
            else:
                self._queue.refund(entry)

    def _gather(self, taken: list[Entry[_Job[Any]]], policy: Batching, eligible: Callable[[str], bool]) -> None:
        # Called with the lock held: take queued work of the same key, fairest first, until full or due.
        due = time.monotonic() + policy.max_delay
        room = policy.max_size - taken[0].cost

        def fits(entry: Entry[_Job[Any]]) -> bool:
            batching = entry.item.batching
            return batching is not None and batching.key == policy.key and entry.cost <= room

        while room > 0:
            entry = self._queue.pop(eligible, fits)
            if entry is not None:
                taken.append(entry)
                room -= entry.cost
                self._running[entry.tenant] = self._running.get(entry.tenant, 0) + 1
                continue
            remaining = due - time.monotonic()
            if remaining <= 0 or self._stopping:
                return
            self._cond.wait(remaining)

    def _execute(self, jobs: list[_Job[Any]]) -> list[_Job[Any]]:
        # Runs what is still wanted and in time; returns those jobs (the ones that used the worker).
        live = [job for job in jobs if job.future.set_running_or_notify_cancel() and self._in_time(job)]
        if not live:
            return live
        first = live[0]
        if first.work is not None:
            _settle(first, first.work)
            return live
        policy = cast(Batching, first.batching)  # a job carries either its work or a batching policy
        with self._cond:
            self._batches += 1
            self._batched += len(live)
            self._sizes[len(live)] = self._sizes.get(len(live), 0) + 1
        try:
            outcomes = policy.run([job.payload for job in live])
            if len(outcomes) != len(live):
                raise RuntimeError(f"a batch runner returned {len(outcomes)} outcomes for {len(live)} requests")
        except BaseException as exc:  # the whole batch failed: every waiter hears why
            for job in live:
                job.future.set_exception(exc)
            return live
        for job, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        return live

    def _in_time(self, job: _Job[Any]) -> bool:
        if job.deadline is not None and self._clock() > job.deadline:
            job.future.set_exception(DeadlineExceeded("the deadline passed while the request waited"))
            return False
        return True


def _settle(job: _Job[T], work: Callable[[], T]) -> None:
    try:
        result = work()
    except BaseException as exc:  # delivered to the waiter, whatever it is
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


async def _awaited(ticket: Ticket[T]) -> T:
    try:
        return await asyncio.wrap_future(ticket.future)
    except asyncio.CancelledError:
        ticket.cancel()
        raise
