"""Loaded sessions under a memory budget: keyed by content hash and owner, least recently used out, never mid-use.

A session is keyed by its model bytes' sha256 and its owner: the tenant it serves, or
``None`` for bytes shared across tenants. The engine shares only what the registry
says may be (bytes an operator marked shareable, or every model under
``WARDEN_SHARE_MODELS=across-tenants``) and never for a tenant with dedicated
isolation: otherwise a tenant's first request would be fast exactly when another
tenant holds the same bytes, and its timing would tell. Sessions keep no request
state, so sharing is safe where it is allowed. Loading happens at most once however many
requests arrive for a cold model together; a new session is warmed with one run
before it serves. Eviction takes the least recently used sessions that nobody is
using until the resident bytes fit the budget; a session in use is never evicted,
so the budget can be exceeded while every resident session is busy.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")

Key = tuple[str, str | None]
"""(sha256, the tenant the session serves or ``None`` when it serves every tenant)."""


@dataclass
class _Slot(Generic[S]):
    session: S
    size: int
    users: int = 0


@dataclass(frozen=True, slots=True)
class ResidencyStats:
    """Counters for metrics and benchmarks."""

    resident: int
    resident_bytes: int
    hits: int
    loads: int
    evictions: int
    load_seconds: float = 0.0
    """Time spent loading sessions (cold loads), in total."""
    budget_bytes: int | None = None
    """The memory budget (``None``: unlimited)."""


class Residency(Generic[S]):
    """Holds sessions made by ``load(sha256)`` of ``size`` bytes each, under ``budget_bytes`` (``None``: no limit)."""

    def __init__(self, load: Callable[[str], tuple[S, int]], budget_bytes: int | None = None) -> None:
        self._load = load
        self._budget = budget_bytes
        self._slots: OrderedDict[Key, _Slot[S]] = OrderedDict()
        self._loading: dict[Key, threading.Event] = {}
        self._lock = threading.Lock()
        self._hits = self._loads = self._evictions = 0
        self._load_seconds = 0.0

    @contextmanager
    def use(self, digest: str, owner: str | None = None) -> Iterator[S]:
        """Borrow the session of ``digest`` for ``owner`` (``None``: one every tenant shares), loading it if needed."""
        key = (digest, owner)
        slot = self._acquire(key)
        try:
            yield slot.session
        finally:
            with self._lock:
                slot.users -= 1
                self._evict()

    def stats(self) -> ResidencyStats:
        """Current counters."""
        with self._lock:
            resident = [s for s in self._slots.values() if s.session is not None]
            return ResidencyStats(
                len(resident),
                sum(s.size for s in resident),
                self._hits,
                self._loads,
                self._evictions,
                self._load_seconds,
                self._budget,
            )

    def _acquire(self, key: Key) -> _Slot[S]:
        while True:
            with self._lock:
                slot = self._slots.get(key)
                if slot is not None:
                    slot.users += 1
                    self._slots.move_to_end(key)
                    self._hits += 1
                    return slot
                waiting = self._loading.get(key)
                if waiting is None:
                    self._loading[key] = threading.Event()
                    break
            waiting.wait()  # another request is loading it; then look again (a failed load is retried)
        started = time.perf_counter()
        try:
            session, size = self._load(key[0])
        except BaseException:
            with self._lock:
                self._loading.pop(key).set()
            raise
        with self._lock:
            slot = _Slot(session=session, size=size, users=1)
            self._slots[key] = slot
            self._loads += 1
            self._load_seconds += time.perf_counter() - started
            self._evict()
            self._loading.pop(key).set()
        return slot

    def _evict(self) -> None:
        if self._budget is None:
            return
        total = sum(s.size for s in self._slots.values())
        for key in list(self._slots):
            if total <= self._budget:
                return
            slot = self._slots[key]
            if slot.users == 0:
                del self._slots[key]
                total -= slot.size
                self._evictions += 1
