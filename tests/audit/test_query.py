"""Queries: filters by tenant, time, request id, kind and stream; keyset pages by time or by (stream, seq)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.audit.conftest import MakeLog, request_event
from warden.audit import AuditEvent, AuditFilter
from warden.audit.query import query, scan
from warden.errors import InvalidArgument, StorageCorrupt
from warden.storage import Database

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def fill(make_log: MakeLog) -> None:
    """Two streams: r1 has 10 requests one minute apart (tenants acme/beta alternating), r2 one admin event."""
    first = make_log("r1")
    for n in range(10):
        tenant = "acme" if n % 2 == 0 else "beta"
        first.record(request_event(n, tenant, time=T0 + timedelta(minutes=n))).result(timeout=30)
    second = make_log("r2")
    second.record(AuditEvent.admin("tenant.create", "acme", time=T0 + timedelta(minutes=4, seconds=30))).result(30)


def ids(db: Database, where: AuditFilter | None = None, **options: object) -> list[str | None]:
    """The request ids (or admin actions) a query returns, in order."""
    page = query(db, where, **options)  # type: ignore[arg-type]
    return [entry.event.request_id or entry.event.action for entry in page.entries]


def test_filters_select_by_tenant_time_request_id_kind_and_stream(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    assert ids(db, AuditFilter(tenant="beta")) == ["req-1", "req-3", "req-5", "req-7", "req-9"]
    window = AuditFilter(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=6))
    assert ids(db, window) == ["req-3", "req-4", "tenant.create", "req-5"]
    assert ids(db, AuditFilter(request_id="req-7")) == ["req-7"]
    assert ids(db, AuditFilter(kind="admin")) == ["tenant.create"]
    assert ids(db, AuditFilter(stream="r2", tenant="acme")) == []  # the admin event names no tenant
    assert ids(db, AuditFilter(tenant="nobody")) == []


def test_pages_by_time_cover_everything_once_in_order(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    seen, after, pages = [], None, 0
    while True:
        page = query(db, after=after, limit=3)
        seen += [(entry.stream, entry.seq) for entry in page.entries]
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert pages == 4
    assert len(seen) == len(set(seen)) == 11
    times = [entry.event.time for entry in scan(db)]
    assert times == sorted(times)


def test_pages_by_stream_and_seq_follow_each_chain(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    first = query(db, limit=6, order="seq")
    assert [(e.stream, e.seq) for e in first.entries] == [("r1", n) for n in range(1, 7)]
    rest = query(db, after=first.next, limit=6, order="seq")
    assert [(e.stream, e.seq) for e in rest.entries] == [("r1", n) for n in range(7, 11)] + [("r2", 1)]
    assert rest.next is None
    assert [e.seq for e in scan(db, AuditFilter(stream="r1"), order="seq", page=4)] == list(range(1, 11))


def test_entries_come_back_as_recorded(db: Database, make_log: MakeLog) -> None:
    event = request_event(1, client="hmac:abc", image_width=640, image_height=480, details={"canary": True})
    make_log().record(event).result(timeout=30)
    [entry] = query(db).entries
    assert entry.event == event
    assert entry.to_dict()["event"] == event.to_dict()
    assert len(entry.hash) == 64


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: AuditFilter(since=datetime(2026, 1, 1)), "timezone-aware"),
        (lambda: AuditFilter(kind="coffee"), "unknown event kind"),
    ],
)
def test_bad_filters_are_invalid_arguments(make: object, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        make()  # type: ignore[operator]


def test_a_bad_limit_or_order_is_an_invalid_argument(db: Database) -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        query(db, limit=0)
    with pytest.raises(InvalidArgument, match="order"):
        query(db, order="size")  # type: ignore[arg-type]


def test_an_unreadable_record_is_storage_corrupt_naming_verify(db: Database, make_log: MakeLog) -> None:
    make_log().record(request_event(1)).result(timeout=30)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_records SET body = 'not json'"))
    with pytest.raises(StorageCorrupt, match="warden audit verify"):
        query(db)
