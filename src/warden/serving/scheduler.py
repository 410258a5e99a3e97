"""One scheduler for the machine's compute: worker threads fed by weighted fair queuing across tenants.

Requests wait in per-tenant queues (bounded by ``max_queue``); a worker takes the
fairest head among tenants under their ``max_concurrency``. A request whose
deadline passed while queued fails with ``DeadlineExceeded`` without running; a
cancelled one (its client went away) leaves the queue and costs nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    future: Future[T]
    deadline: float | None


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
    """Runs submitted work on ``workers`` threads in weighted-fair order across tenants."""

    def __init__(
        self, workers: int, *, clock: Callable[[], float] = time.monotonic, name: str = "warden-worker"
    ) -> None:
        if workers < 1:
            raise ValueError("at least one worker is needed")
        self._clock = clock
        self._queue: FairQueue[_Job[Any]] = FairQueue()
        self._running: dict[str, int] = {}
        self._limits: dict[str, int | None] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._name = name
        self._dedicated: set[str] = set()
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
        future: Future[T] = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the scheduler is closed")
            self._check_room(tenant, share.max_queue)
            self._limits[tenant] = share.max_concurrency
            if share.dedicated and tenant not in self._dedicated:
                self._reserve(tenant)
            entry = self._queue.push(tenant, _Job(work, future, deadline), weight=share.weight, cost=cost)
            self._cond.notify_all()  # workers differ in whom they serve: wake them all
        ticket = Ticket(self, entry, future)
        future.add_done_callback(lambda done: ticket.cancel() if done.cancelled() else None)
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
        ticket = self.submit(tenant, work, share=share, deadline=deadline, cost=cost)
        try:
            return await asyncio.wrap_future(ticket.future)
        except asyncio.CancelledError:
            ticket.cancel()
            raise

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
                entry.item.future.cancel()
            self._cond.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=30)

    def _withdraw(self, entry: Entry[_Job[Any]]) -> bool:
        with self._cond:
            removed = self._queue.cancel(entry)
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

    def _eligible_for(self, owner: str | None) -> Callable[[str], bool]:
        def eligible(tenant: str) -> bool:
            if (tenant in self._dedicated) != (owner is not None) or (owner is not None and tenant != owner):
                return False
            limit = self._limits.get(tenant)
            return limit is None or self._running.get(tenant, 0) < limit

        return eligible

    def _loop(self, owner: str | None) -> None:
        eligible = self._eligible_for(owner)
        while True:
            with self._cond:
                entry = self._queue.pop(eligible)
                while entry is None:
                    if self._stopping:
                        return
                    self._cond.wait()
                    entry = self._queue.pop(eligible)
                self._running[entry.tenant] = self._running.get(entry.tenant, 0) + 1
            try:
                self._execute(entry.item)
            finally:
                with self._cond:
                    self._running[entry.tenant] -= 1
                    self._cond.notify_all()

    def _execute(self, job: _Job[Any]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        if job.deadline is not None and self._clock() > job.deadline:
            job.future.set_exception(DeadlineExceeded("the deadline passed while the request waited"))
            return
        try:
            result = job.work()
        except BaseException as exc:  # delivered to the waiter, whatever it is
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
