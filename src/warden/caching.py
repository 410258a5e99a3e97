"""A small thread-safe cache of recent database reads, so the hot path skips a query per request.

Entries expire ``ttl`` seconds after the read that produced them began (not after they
were stored), which bounds how long a change committed by another process (another
replica, the CLI) can go unseen: at most ``ttl`` after its commit. The owning service
clears the cache itself on every change it makes, so its own changes are seen at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

from cachetools import TLRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Token(NamedTuple):
    """Taken before a read: the cache's generation then, and when the read began."""

    generation: int
    read_at: float


class FreshCache(Generic[K, V]):
    """At most ``maxsize`` entries, each trusted for ``ttl`` seconds from its read; ``ttl`` 0 turns caching off."""

    def __init__(self, ttl: float, maxsize: int = 10_000, timer: Callable[[], float] = time.monotonic) -> None:
        if not ttl >= 0:
            raise ValueError(f"a cache's lifetime must be zero or more seconds, got {ttl}")
        self._lock = threading.Lock()
        self._ttl = ttl
        self._timer = timer
        # Each value is stored with its expiry time, which the cache reads back as the entry's time to use.
        self._entries: TLRUCache[K, tuple[float, V]] | None = (
            TLRUCache(maxsize, lambda _key, entry, _now: entry[0], timer) if ttl > 0 else None
        )
        self._generation = 0

    def get(self, key: K) -> V | None:
        """The cached value of ``key`` while fresh, else ``None``."""
        if self._entries is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def generation(self) -> Token:
        """A token to take before reading the value to cache, and to hand to :meth:`put`."""
        with self._lock:
            return Token(self._generation, self._timer())

    def put(self, key: K, value: V, token: Token) -> None:
        """Remember ``value`` for ``key`` until ``ttl`` after ``token`` was taken, unless the cache was cleared since.

        So a value read before a change, and stored after it, is not kept; and a value read
        just before another process's change is not trusted past ``ttl`` after that change.
        """
        if self._entries is not None:
            with self._lock:
                if token.generation == self._generation:
                    self._entries[key] = (token.read_at + self._ttl, value)

    def clear(self) -> None:
        """Forget everything (after a change that any entry may reflect)."""
        with self._lock:
            self._generation += 1
            if self._entries is not None:
                self._entries.clear()
