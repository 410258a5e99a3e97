"""Weighted fair queuing across tenants over measured worker time (start-time fair queuing).

Each tenant has its own FIFO queue and a virtual finish ``F``: the worker time charged
to it so far, divided by its weight. The next entry served is the oldest entry of the
tenant with the smallest ``F`` (its start tag ``S = F``; ties go to the earlier
arrival). Serving it charges an *estimate* at once, ``F += estimate / weight``: its
declared units times the tenant's recent measured seconds per unit, or the queue-wide
rate for a tenant with no history, or one per unit while nothing has been measured.
Once it has run, :meth:`FairQueue.settle` replaces the estimate with the measured
time, ``F += (measured - estimate) / weight``, and an entry that never ran is refunded
(:meth:`FairQueue.refund`), so what a tenant is charged in total is exactly the worker
time its requests used. A tenant whose requests take 100 times the worker time thus
gets a hundredth of the turns at equal weight, whatever units it declared.

Tags are given when an entry is served, not when it is queued, so a tenant's later
entries follow its corrected finish. The virtual time ``V`` is the largest start tag
served so far; a tenant whose queue was empty starts again at ``max(V, F)``, so an idle
tenant banks no credit and a newcomer waits about one job of each backlogged tenant.
The queue is work-conserving: an idle tenant's share goes to the others.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_RATE = 1.0
"""Charge per unit before anything has been measured (the queue then counts units)."""
SMOOTHING = 0.2
"""Weight of the newest measurement in a recent seconds-per-unit rate (exponential moving average)."""


@dataclass(eq=False)
class Entry(Generic[T]):
    """A queued item with its tenant, weight and declared units (``cost``).

    ``start``, ``finish`` and ``charge`` (worker seconds charged) are set when the entry
    is served, and corrected when it is settled.
    """

    tenant: str
    item: T
    weight: float = 1.0
    cost: float = 1.0
    start: float = 0.0
    finish: float = 0.0
    order: int = 0
    charge: float = 0.0
    cancelled: bool = field(default=False, repr=False)
    served: bool = field(default=False, repr=False)
    settled: bool = field(default=False, repr=False)


class FairQueue(Generic[T]):
    """Per-tenant FIFO queues served in weighted-fair order of worker time; not thread-safe (callers hold a lock)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Entry[T]]] = {}
        self._finish: dict[str, float] = {}
        self._rates: dict[str, float] = {}  # tenant -> recent measured seconds per unit
        self._rate: float | None = None  # the same over every tenant
        self._used: dict[str, float] = {}  # tenant -> measured seconds settled
        self._virtual = 0.0
        self._counter = itertools.count()
        self._size = 0

    def push(self, tenant: str, item: T, *, weight: float = 1.0, cost: float = 1.0) -> Entry[T]:
        """Queue ``item`` (``cost`` units) for ``tenant``; returns its entry (keep it to cancel and settle)."""
        if weight <= 0 or cost <= 0:
            raise ValueError("weight and cost must be positive")
        queue = self._queues.get(tenant)
        if queue is None:  # back from idle: no credit for the time it had nothing queued
            self._finish[tenant] = self.next_start(tenant)
            queue = self._queues[tenant] = deque()
        entry = Entry(tenant, item, weight, cost, order=next(self._counter))
        queue.append(entry)
        self._size += 1
        return entry

    def pop(
        self,
        eligible: Callable[[str], bool] = lambda _: True,
        match: Callable[[Entry[T]], bool] | None = None,
    ) -> Entry[T] | None:
        """Serve the fairest entry among tenants ``eligible`` allows, charging its estimate; ``None`` if none.

        Without ``match`` each tenant offers its head; with it, its oldest entry that
        ``match`` accepts (so a batch can gather one model's requests past others).
        Every entry served must later be settled or refunded.
        """
        best: Entry[T] | None = None
        best_key = (0.0, 0)
        for tenant, queue in self._queues.items():
            if not eligible(tenant):
                continue
            head = queue[0] if match is None else next((e for e in queue if match(e)), None)
            if head is None:
                continue
            key = (self._finish[tenant], head.order)
            if best is None or key < best_key:
                best, best_key = head, key
        if best is None:
            return None
        queue = self._queues[best.tenant]
        if queue[0] is best:
            queue.popleft()
        else:
            queue.remove(best)
        self._size -= 1
        if not queue:
            del self._queues[best.tenant]
        best.start = best_key[0]
        best.charge = self.estimate(best.tenant, best.cost)
        best.finish = best.start + best.charge / best.weight
        best.served = True
        self._finish[best.tenant] = best.finish
        self._virtual = max(self._virtual, best.start)
        return best

    def settle(self, entry: Entry[T], seconds: float) -> None:
        """Charge a served entry the worker ``seconds`` it used instead of its estimate, and learn its rate."""
        if seconds < 0:
            raise ValueError("a measured cost is not negative")
        self._correct(entry, seconds)
        sample = seconds / entry.cost
        previous = self._rates.get(entry.tenant)
        self._rates[entry.tenant] = sample if previous is None else previous + SMOOTHING * (sample - previous)
        self._rate = sample if self._rate is None else self._rate + SMOOTHING * (sample - self._rate)
        self._used[entry.tenant] = self._used.get(entry.tenant, 0.0) + seconds

    def refund(self, entry: Entry[T]) -> None:
        """Charge a served entry that never ran (cancelled, or past its deadline) nothing."""
        self._correct(entry, 0.0)

    def _correct(self, entry: Entry[T], seconds: float) -> None:
        if not entry.served or entry.settled:
            raise ValueError("only a served entry is settled, once")
        entry.settled = True
        self._finish[entry.tenant] += (seconds - entry.charge) / entry.weight
        entry.charge = seconds
        entry.finish = entry.start + seconds / entry.weight

    def estimate(self, tenant: str, units: float) -> float:
        """The worker seconds serving ``units`` of ``tenant``'s work is charged before it runs."""
        rate = self._rates.get(tenant, self._rate)
        return units * (DEFAULT_RATE if rate is None else rate)

    def next_start(self, tenant: str) -> float:
        """The start tag ``tenant``'s next entry would be served at (``max(V, F)`` while it has none queued)."""
        finish = self._finish.get(tenant, 0.0)
        return finish if tenant in self._queues else max(self._virtual, finish)

    def usage(self) -> dict[str, float]:
        """Measured worker seconds settled for each tenant so far."""
        return dict(self._used)

    def cancel(self, entry: Entry[T]) -> bool:
        """Remove a queued entry (it was never charged); ``False`` if it was not queued (served or cancelled)."""
        queue = self._queues.get(entry.tenant)
        if queue is None or entry.cancelled:
            return False
        try:
            queue.remove(entry)
        except ValueError:
            return False
        entry.cancelled = True
        self._size -= 1
        if not queue:
            del self._queues[entry.tenant]
        return True

    def queued(self, tenant: str) -> int:
        """How many entries ``tenant`` has waiting."""
        queue = self._queues.get(tenant)
        return 0 if queue is None else len(queue)

    def tenants(self) -> list[str]:
        """Tenants with entries waiting."""
        return list(self._queues)

    def __len__(self) -> int:
        return self._size
