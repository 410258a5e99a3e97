"""Reading the audit trail: filters, keyset paging by time or by (stream, seq), and a full scan for export.

Events are rebuilt from each record's hashed body (the columns repeated from it only
select rows), so what a query returns is what the chain commits to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from warden.audit.events import AuditEvent, EventKind
from warden.errors import InvalidArgument, StorageCorrupt
from warden.storage import Database
from warden.storage.tables import AuditRecord

Order = Literal["time", "seq"]
"""``time``: by (time, stream, seq), across streams; ``seq``: by (stream, seq), each stream in chain order."""
MAX_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored event with its place in the chain."""

    stream: str
    seq: int
    hash: str
    event: AuditEvent

    def to_dict(self) -> dict[str, Any]:
        """As ``query --json`` and the ``jsonl`` export print it."""
        return {"stream": self.stream, "seq": self.seq, "hash": self.hash, "event": self.event.to_dict()}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended; pass it as ``after`` (with the same order and filters) for the next page."""

    time: datetime
    stream: str
    seq: int


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events to read; every field left ``None`` matches everything. ``since`` is inclusive, ``until`` not."""

    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    kind: EventKind | str | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
                raise InvalidArgument(f"{name} must be a timezone-aware datetime")
        if self.kind is not None:
            try:
                object.__setattr__(self, "kind", EventKind(str(self.kind)))
            except ValueError:
                allowed = ", ".join(k.value for k in EventKind)
                raise InvalidArgument(f"unknown event kind {self.kind!r}; use one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of entries and the cursor of the next (``None`` when this was the last)."""

    entries: tuple[AuditEntry, ...]
    next: Cursor | None


def query(
    db: Database,
    where: AuditFilter | None = None,
    *,
    after: Cursor | None = None,
    limit: int = 100,
    order: Order = "time",
) -> Page:
    """Up to ``limit`` entries matching ``where``, after the cursor ``after``, in ``order``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if order not in ("time", "seq"):
        raise InvalidArgument(f"order must be 'time' or 'seq', not {order!r}")
    statement = _select(where or AuditFilter(), after, order).limit(limit + 1)
    with db.engine.connect() as connection:
        rows = connection.execute(statement).all()
    entries = tuple(_entry(row) for row in rows[:limit])
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(entries, None if last is None else Cursor(last.time, last.stream, int(last.seq)))


def scan(
    db: Database, where: AuditFilter | None = None, *, order: Order = "time", page: int = 1000
) -> Iterator[AuditEntry]:
    """Every entry matching ``where``, in ``order``, read a page at a time."""
    after: Cursor | None = None
    while True:
        found = query(db, where, after=after, limit=page, order=order)
        yield from found.entries
        if found.next is None:
            return
        after = found.next


def _select(where: AuditFilter, after: Cursor | None, order: Order) -> Select[Any]:
    statement = select(AuditRecord)
    if where.tenant is not None:
        statement = statement.where(AuditRecord.tenant == where.tenant)
    if where.since is not None:
        statement = statement.where(AuditRecord.time >= where.since)
    if where.until is not None:
        statement = statement.where(AuditRecord.time < where.until)
    if where.request_id is not None:
        statement = statement.where(AuditRecord.request_id == where.request_id)
    if where.kind is not None:
        statement = statement.where(AuditRecord.kind == str(where.kind))
    if where.stream is not None:
        statement = statement.where(AuditRecord.stream == where.stream)
    keys: list[tuple[InstrumentedAttribute[Any], object]] = [
        (AuditRecord.stream, None if after is None else after.stream),
        (AuditRecord.seq, None if after is None else after.seq),
    ]
    if order == "time":
        keys.insert(0, (AuditRecord.time, None if after is None else after.time))
    if after is not None:
        statement = statement.where(_beyond(keys))
    return statement.order_by(*(column for column, _ in keys))


def _beyond(keys: list[tuple[InstrumentedAttribute[Any], object]]) -> ColumnElement[bool]:
    """``(k1, k2, …) > (v1, v2, …)`` spelt out, so every value is bound with its column's type."""
    (column, value), rest = keys[0], keys[1:]
    if not rest:
        return column > value
    return or_(column > value, and_(column == value, _beyond(rest)))


def _entry(row: Any) -> AuditEntry:
    try:
        event = AuditEvent.from_dict(json.loads(row.body))
    except (ValueError, TypeError, InvalidArgument) as exc:
        raise StorageCorrupt(
            f"audit record {row.stream}:{row.seq} cannot be read ({exc}); run 'warden audit verify'"
        ) from None
    return AuditEntry(row.stream, int(row.seq), row.hash, event)
