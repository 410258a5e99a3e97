"""A small thread-safe cache of recent database reads, so the hot path skips a query per request.

Entries expire after ``ttl`` seconds, which bounds how long a change made by another
process (another replica, the CLI) can go unseen; the owning service clears the
cache itself on every change it makes, so its own changes are seen at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FreshCache(Generic[K, V]):
    """At most ``maxsize`` entries, each trusted for ``ttl`` seconds; ``ttl`` 0 turns caching off."""

    def __init__(self, ttl: float, maxsize: int = 10_000, timer: Callable[[], float] = time.monotonic) -> None:
        if not ttl >= 0:
            raise ValueError(f"a cache's lifetime must be zero or more seconds, got {ttl}")
        self._lock = threading.Lock()
        self._entries: TTLCache[K, V] | None = TTLCache(maxsize, ttl, timer) if ttl > 0 else None
        self._generation = 0

    def get(self, key: K) -> V | None:
        """The cached value of ``key`` while fresh, else ``None``."""
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(key)

    def generation(self) -> int:
        """A token to take before reading the value to cache, and to hand to :meth:`put`."""
        with self._lock:
            return self._generation

    def put(self, key: K, value: V, generation: int) -> None:
        """Remember ``value`` for ``key``, unless the cache was cleared since ``generation`` was taken.

        So a value read before a change, and stored after it, is not kept.
        """
        if self._entries is not None:
            with self._lock:
                if generation == self._generation:
                    self._entries[key] = value

    def clear(self) -> None:
        """Forget everything (after a change that any entry may reflect)."""
        with self._lock:
            self._generation += 1
            if self._entries is not None:
                self._entries.clear()
