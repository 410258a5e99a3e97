"""Admission, before any decode: a tenant's request rate and daily cap, refused in microseconds.

Rates use the ``limits`` library's moving window: ``burst`` requests per
``burst / rps`` seconds (rounded to whole seconds), which allows a burst and holds
the average at the rate. Counters live in memory, or in Redis when
``WARDEN_REDIS_URL`` is set so that replicas share one budget. The daily cap
counts admitted requests per UTC day; without Redis the counts are flushed to the
database every half second and on close, so the cap survives restarts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, cast

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select

from warden.errors import QuotaExceeded, RateLimited, TooManyImages
from warden.storage import DailyUsage, Database
from warden.tenancy import Principal, Quota

_FLUSH_SECONDS: Final = 0.5
_DAY_SECONDS: Final = 86_400


def rate_item(quota: Quota) -> RateLimitItem | None:
    """The moving-window item for a quota's rate and burst, or ``None`` when unlimited."""
    rps = quota.rps
    if rps is None:
        return None
    if quota.burst is not None:
        return RateLimitItemPerSecond(quota.burst, max(1, round(quota.burst / rps)), namespace="warden-rate")
    # Without a burst: the shortest whole-second window holding a whole number of requests (2.5/s: 5 per 2 s).
    window = next((w for w in range(1, 61) if abs(rps * w - round(rps * w)) < 1e-9 and rps * w >= 1), 1)
    return RateLimitItemPerSecond(max(1, math.ceil(rps * window - 1e-9)), window, namespace="warden-rate")


def utc_day(now: float) -> str:
    """The UTC date of a Unix time, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


class DailyCounter:
    """Admitted requests per tenant and UTC day: in memory, flushed to the database in the background."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._counts: dict[tuple[int, str], int] = {}
        self._pending: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="warden-daily-flush", daemon=True)
        self._flusher.start()

    def take(self, tenant_id: int, cap: int) -> bool:
        """Count one request for today unless the tenant has ``cap`` already; ``True`` when counted."""
        key = (tenant_id, utc_day(self._clock()))
        with self._lock:
            count = self._counts.get(key)
        if count is None:
            count = self._load(key)
        with self._lock:
            count = self._counts.setdefault(key, count)
            if count >= cap:
                return False
            self._counts[key] = count + 1
            self._pending[key] = self._pending.get(key, 0) + 1
            return True

    def flush(self) -> None:
        """Write the pending increments to the database."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        with self._db.session() as session:
            for (tenant_id, day), delta in pending.items():
                row = session.get(DailyUsage, (tenant_id, day))
                if row is None:
                    session.add(DailyUsage(tenant_id=tenant_id, day=day, count=delta))
                else:
                    row.count += delta

    def close(self) -> None:
        """Stop the background flusher and flush what is left."""
        self._stop.set()
        self._flusher.join(timeout=10)
        self.flush()

    def _load(self, key: tuple[int, str]) -> int:
        with self._db.session() as session:
            stored = session.scalar(
                select(DailyUsage.count).where(DailyUsage.tenant_id == key[0], DailyUsage.day == key[1])
            )
        return stored or 0

    def _flush_loop(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            self.flush()


class RedisDailyCounter:
    """Admitted requests per tenant and UTC day in Redis, shared by every replica."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time, prefix: str = "warden") -> None:
        import redis  # noqa: PLC0415 - only needed when Redis is configured

        self._redis = redis.Redis.from_url(url)
        self._clock = clock
        self._prefix = prefix

    def take(self, tenant_id: int, cap: int) -> bool:
        """Count one request for today unless the tenant has ``cap`` already; ``True`` when counted."""
        key = f"{self._prefix}:daily:{tenant_id}:{utc_day(self._clock())}"
        count = cast(int, self._redis.incr(key))  # the sync client returns an int
        if count == 1:
            self._redis.expire(key, 2 * _DAY_SECONDS)
        if count > cap:
            self._redis.decr(key)
            return False
        return True

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()


class Admission:
    """Refuses a tenant's request over its rate or daily cap, before the body is read."""

    def __init__(
        self,
        storage: Storage,
        daily: DailyCounter | RedisDailyCounter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._daily = daily
        self._clock = clock

    @classmethod
    def create(cls, db: Database, redis_url: str | None, redis_prefix: str = "warden") -> Admission:
        """In-memory counters with the daily cap in the database, or everything in Redis under ``redis_prefix``."""
        if redis_url is None:
            return cls(MemoryStorage(), DailyCounter(db))
        return cls(
            RedisStorage(redis_url, key_prefix=f"{redis_prefix}:limits"),
            RedisDailyCounter(redis_url, prefix=redis_prefix),
        )

    def admit(self, caller: Principal) -> None:
        """Raise ``RateLimited`` or ``QuotaExceeded`` (with ``retry_after``) or return at once."""
        if caller.tenant_id is None:
            return
        quota = caller.quota
        item = rate_item(quota)
        key = str(caller.tenant_id)
        if item is not None and not self._limiter.test(item, key):
            raise RateLimited(f"over the rate of {quota.rps} requests/s", retry_after=self._retry_after(item, key))
        if quota.daily_requests is not None and not self._daily.take(caller.tenant_id, quota.daily_requests):
            now = self._clock()
            raise QuotaExceeded(
                f"the daily quota of {quota.daily_requests} requests is used up",
                retry_after=_DAY_SECONDS - now % _DAY_SECONDS,
            )
        if item is not None and not self._limiter.hit(item, key):
            raise RateLimited(f"over the rate of {quota.rps} requests/s", retry_after=self._retry_after(item, key))

    def charge(self, caller: Principal, cost: int) -> None:
        """Count ``cost`` more units against the caller's rate (the images after the first of an admitted request).

        Raises ``RateLimited`` when the window has no room for all of them (none is counted then), and
        ``TooManyImages`` when ``cost + 1`` is more than the window ever holds, since waiting would not help.
        """
        if cost < 1 or caller.tenant_id is None:
            return
        item = rate_item(caller.quota)
        if item is None:
            return
        if cost + 1 > item.amount:
            raise TooManyImages(
                f"{cost + 1} images in one request exceed the tenant's burst of {item.amount} requests; "
                "send fewer images per request"
            )
        key = str(caller.tenant_id)
        if not self._limiter.hit(item, key, cost=cost):
            raise RateLimited(
                f"{cost + 1} images are over the rate of {caller.quota.rps} requests/s",
                retry_after=self._retry_after(item, key),
            )

    def close(self) -> None:
        """Flush and release the counters."""
        self._daily.close()

    def _retry_after(self, item: RateLimitItem, key: str) -> float:
        reset = self._limiter.get_window_stats(item, key).reset_time
        return max(0.001, reset - time.time())
