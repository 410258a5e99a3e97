"""Fixtures for the audit trail: a migrated database on each backend, keys, and audit logs over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import BACKENDS, database_url
from warden.audit import AuditEvent, AuditKeys, AuditLog
from warden.storage import Database

KEYS = AuditKeys.derive(b"s" * 32)
"""The keys every test log signs with (a fixed server secret)."""

MakeLog = Callable[..., AuditLog]


def request_event(number: int, tenant: str = "acme", **values: Any) -> AuditEvent:
    """A small request event with a recognisable request id."""
    fields: dict[str, Any] = {
        "tenant": tenant,
        "request_id": f"req-{number}",
        "key_id": "0123456789ab",
        "authenticator": "api_key",
        "route": "/v1/models/{name}/detect",
        "model": "people",
        "model_version": 1,
        "status": 200,
        "total_ms": 3.25,
        "detections": number % 5,
    }
    fields.update(values)
    return AuditEvent.request(**fields)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite in a temp dir, then PostgreSQL in a schema of its own."""
    with database_url(request.param, tmp_path) as url:
        database = Database(url)
        try:
            database.migrate()
            yield database
        finally:
            database.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite database."""
    database = Database(f"sqlite:///{tmp_path / 'warden.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def make_log(db: Database) -> Iterator[MakeLog]:
    """Opens audit logs over ``db`` (stream ``r1`` unless told), all closed when the test ends."""
    opened: list[AuditLog] = []

    def make(stream: str = "r1", **options: Any) -> AuditLog:
        log = AuditLog(db, KEYS, stream=stream, **options)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close(timeout=5)


def write(log: AuditLog, count: int, start: int = 1, **values: Any) -> None:
    """Record ``count`` request events one by one, each waited for."""
    for number in range(start, start + count):
        log.record(request_event(number, **values)).result(timeout=30)
