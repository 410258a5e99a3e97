"""Usage over a recent window, per tenant, from the audit trail: inference requests, refusals by reason, latency.

The trail is shared by every replica (one database), so these figures cover the whole
service, not one process. Queue depth is not in the trail; the console reads it live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from sqlalchemy import select

from warden.audit.events import EventKind
from warden.audit.query import AuditFilter, scan
from warden.errors import InvalidArgument
from warden.storage import AuditRecord, Database

MAX_RECORDS: Final = 200_000
"""Most request records read for one answer (the newest); past it the answer says ``truncated``."""
MAX_BUCKETS: Final = 1440


@dataclass(slots=True)
class UsageBucket:
    """One tenant's requests in one time bucket: answered, refused (by error code), and latency percentiles."""

    start: datetime
    requests: int = 0
    ok: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As the usage API answers it (latency over successful requests, ``None`` when there were none)."""
        latencies = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "start": self.start.isoformat(),
            "requests": self.requests,
            "ok": self.ok,
            "refusals": dict(sorted(self.refusals.items())),
            "p50_ms": round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
            "p99_ms": round(float(np.percentile(latencies, 99)), 3) if latencies.size else None,
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Buckets per tenant over ``[since, until)``; ``truncated`` when more than ``MAX_RECORDS`` were recorded."""

    since: datetime
    until: datetime
    bucket_seconds: int
    tenants: dict[str, list[UsageBucket]]
    truncated: bool

    def to_dict(self) -> dict[str, Any]:
        """As the usage API answers it."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "bucket_seconds": self.bucket_seconds,
            "truncated": self.truncated,
            "tenants": {name: [b.to_dict() for b in buckets] for name, buckets in sorted(self.tenants.items())},
        }


INFERENCE_ROUTES: Final = frozenset(
    {
        "POST /v1/models/{name}/detect",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
    }
)
"""The routes whose requests are usage: inference, not reads of the trail or administration."""


def usage(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    bucket_seconds: int,
    tenant: str | None = None,
    not_before: datetime | None = None,
) -> Usage:
    """Count the inference requests of ``tenant`` (or every tenant) between ``since`` and ``until`` into buckets.

    At most about ``MAX_RECORDS`` records are read, the newest: past that, the older buckets are
    left short and the answer says ``truncated``. Records before ``not_before`` are not read (the
    buckets still start at ``since``).
    """
    if bucket_seconds < 1:
        raise InvalidArgument(f"bucket_seconds must be at least 1, not {bucket_seconds}")
    if until <= since:
        raise InvalidArgument("until must be after since")
    count = -(-int((until - since).total_seconds()) // bucket_seconds)
    if count > MAX_BUCKETS:
        raise InvalidArgument(f"that window holds {count} buckets; at most {MAX_BUCKETS}")
    starts = [since + timedelta(seconds=i * bucket_seconds) for i in range(count)]
    tenants: dict[str, list[UsageBucket]] = {}
    first = since if not_before is None else max(since, not_before)
    read_from = _newest_start(db, first, until, tenant)
    where = AuditFilter(tenant=tenant, since=read_from or first, until=until, kind=EventKind.REQUEST)
    for entry in scan(db, where):
        event = entry.event
        if event.tenant is None or event.route not in INFERENCE_ROUTES:
            continue
        buckets = tenants.get(event.tenant)
        if buckets is None:
            buckets = tenants[event.tenant] = [UsageBucket(start) for start in starts]
        bucket = buckets[min(count - 1, int((event.time - since).total_seconds()) // bucket_seconds)]
        bucket.requests += 1
        if event.status is not None and event.status < 400:
            bucket.ok += 1
            if event.total_ms is not None:
                bucket.latencies_ms.append(event.total_ms)
        else:
            reason = event.error_code or f"http_{event.status}"
            bucket.refusals[reason] = bucket.refusals.get(reason, 0) + 1
    if tenant is not None and tenant not in tenants:
        tenants[tenant] = [UsageBucket(start) for start in starts]
    return Usage(since, until, bucket_seconds, tenants, read_from is not None)


def _newest_start(db: Database, since: datetime, until: datetime, tenant: str | None) -> datetime | None:
    """The time from which the newest ``MAX_RECORDS`` request records start, or ``None`` when all fit."""
    statement = select(AuditRecord.time).where(
        AuditRecord.kind == EventKind.REQUEST.value, AuditRecord.time >= since, AuditRecord.time < until
    )
    if tenant is not None:
        statement = statement.where(AuditRecord.tenant == tenant)
    statement = statement.order_by(AuditRecord.time.desc()).offset(MAX_RECORDS).limit(1)
    with db.engine.connect() as connection:
        found: datetime | None = connection.execute(statement).scalar()
    return found
