"""Retention: pruning behind a signed cut keeps the log verifiable, and refuses to destroy evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from tests.audit.conftest import KEYS, MakeLog, request_event
from warden.audit import CheckpointKind, ProblemKind
from warden.audit.verify import verify
from warden.errors import InvalidArgument, StorageCorrupt
from warden.storage import Database
from warden.storage.tables import AuditCheckpoint, AuditRecord

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def fill(make_log: MakeLog, stream: str = "r1", count: int = 10) -> None:
    """``count`` events one day apart from T0, then a clean close."""
    log = make_log(stream, checkpoint_every=4)
    for n in range(count):
        log.record(request_event(n, time=T0 + timedelta(days=n))).result(timeout=30)
    assert log.close()


def seqs(db: Database, stream: str = "r1") -> list[int]:
    """The seqs still stored for ``stream``."""
    with db.engine.connect() as connection:
        query = select(AuditRecord.seq).where(AuditRecord.stream == stream).order_by(AuditRecord.seq)
        return list(connection.execute(query).scalars())


def test_pruning_removes_old_records_behind_a_signed_cut_and_the_rest_verifies(db: Database, make_log: MakeLog) -> None:
    fill(make_log, "r1")
    fill(make_log, "r2", count=3)
    report = make_log("r1").prune(T0 + timedelta(days=4, hours=12))
    assert [cut.to_dict() for cut in report.cuts] == [
        {"stream": "r1", "cut_seq": 5, "removed": 5},
        {"stream": "r2", "cut_seq": 3, "removed": 3},
    ]
    assert report.removed == 8
    assert seqs(db, "r1") == [6, 7, 8, 9, 10]
    assert seqs(db, "r2") == []
    verified = verify(db, KEYS.checkpoint)
    assert verified.ok, verified.to_dict()
    assert [(s.stream, s.first_seq, s.records) for s in verified.streams] == [("r1", 6, 5), ("r2", None, 0)]
    with db.engine.connect() as connection:
        cuts = connection.execute(
            select(AuditCheckpoint.stream, AuditCheckpoint.seq).where(AuditCheckpoint.kind == "cut")
        )
        assert sorted(cuts.all()) == [("r1", 5), ("r2", 3)]


def test_pruning_twice_and_pruning_nothing_are_harmless(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    log = make_log()
    assert log.prune(T0 - timedelta(days=1)).cuts == ()
    assert log.prune(T0 + timedelta(days=2, hours=1)).removed == 3
    assert log.prune(T0 + timedelta(days=2, hours=1)).cuts == ()
    assert log.prune(T0 + timedelta(days=6, hours=1)).removed == 4
    assert verify(db, KEYS.checkpoint).ok


def test_a_stream_pruned_empty_continues_its_chain_from_the_cut(db: Database, make_log: MakeLog) -> None:
    fill(make_log, count=5)
    log = make_log()
    assert log.prune(T0 + timedelta(days=30)).removed == 5
    log.record(request_event(99)).result(timeout=30)
    assert log.close()
    assert seqs(db) == [6]
    assert verify(db, KEYS.checkpoint).ok


def test_deleting_records_below_a_cut_without_one_is_still_detected(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    make_log().prune(T0 + timedelta(days=2, hours=1))
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE seq <= 5"))
    report = verify(db, KEYS.checkpoint)
    assert report.streams[0].problem is not None
    assert (report.streams[0].problem.kind, report.streams[0].problem.seq) == (ProblemKind.DELETED, 4)


def test_a_tampered_stream_is_not_pruned(db: Database, make_log: MakeLog) -> None:
    fill(make_log)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_records SET body = replace(body, 'acme', 'x') WHERE seq = 2"))
    with pytest.raises(StorageCorrupt, match="seq 2"):
        make_log().prune(T0 + timedelta(days=5))
    assert seqs(db) == list(range(1, 11))
    with db.engine.connect() as connection:
        kinds = connection.execute(select(func.count()).where(AuditCheckpoint.kind == CheckpointKind.CUT)).scalar()
    assert kinds == 0


def test_a_naive_limit_is_an_invalid_argument(db: Database, make_log: MakeLog) -> None:
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        make_log().prune(datetime(2026, 1, 1))
