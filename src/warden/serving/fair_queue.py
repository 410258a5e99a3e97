"""Weighted fair queuing across tenants (start-time fair queuing).

Each tenant has its own FIFO queue. A job is tagged on arrival with a start tag
``S = max(V, F_prev)`` and a finish tag ``F = S + cost / weight``, where ``V`` is the
start tag of the job most recently served and ``F_prev`` the finish tag of the
tenant's previous job. The next job served is the head with the smallest start
tag. So a tenant of weight 2 gets twice the share of a tenant of weight 1 while
both are backlogged, an idle tenant banks no credit (its next job starts at ``V``),
and an idle tenant's share goes to the others (the queue is work-conserving).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Entry(Generic[T]):
    """A queued item with its tenant, weight, cost and fair-queuing tags."""

    tenant: str
    item: T
    weight: float = 1.0
    cost: float = 1.0
    start: float = 0.0
    finish: float = 0.0
    order: int = 0
    cancelled: bool = field(default=False, repr=False)


class FairQueue(Generic[T]):
    """Per-tenant FIFO queues served in weighted-fair order; not thread-safe (callers hold a lock)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Entry[T]]] = {}
        self._last_finish: dict[str, float] = {}
        self._virtual = 0.0
        self._counter = itertools.count()
        self._size = 0

    def push(self, tenant: str, item: T, *, weight: float = 1.0, cost: float = 1.0) -> Entry[T]:
        """Queue ``item`` for ``tenant``; returns its entry (keep it to cancel)."""
        if weight <= 0 or cost <= 0:
            raise ValueError("weight and cost must be positive")
        start = max(self._virtual, self._last_finish.get(tenant, 0.0))
        entry = Entry(tenant, item, weight, cost, start, start + cost / weight, next(self._counter))
        self._last_finish[tenant] = entry.finish
        self._queues.setdefault(tenant, deque()).append(entry)
        self._size += 1
        return entry

    def pop(
        self,
        eligible: Callable[[str], bool] = lambda _: True,
        match: Callable[[Entry[T]], bool] | None = None,
    ) -> Entry[T] | None:
        """Remove and return the fairest entry among tenants ``eligible`` allows; ``None`` if none.

        Without ``match`` each tenant offers its head; with it, its oldest entry that
        ``match`` accepts (so a batch can gather one model's requests past others).
        """
        best: Entry[T] | None = None
        for tenant, queue in self._queues.items():
            if not queue or not eligible(tenant):
                continue
            head = queue[0] if match is None else next((e for e in queue if match(e)), None)
            if head is not None and (best is None or (head.start, head.order) < (best.start, best.order)):
                best = head
        if best is None:
            return None
        queue = self._queues[best.tenant]
        if queue[0] is best:
            queue.popleft()
        else:
            queue.remove(best)
        self._size -= 1
        self._virtual = max(self._virtual, best.start)
        if not queue:
            del self._queues[best.tenant]
        return best

    def cancel(self, entry: Entry[T]) -> bool:
        """Remove a queued entry; ``False`` if it was not queued (already served or cancelled)."""
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
