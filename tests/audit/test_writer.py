"""Group commit: concurrent events share commits, survive restarts and outages, and never fork the chain."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from tests.audit.conftest import KEYS, MakeLog, request_event, write
from warden.audit import AuditLog, CheckpointKind
from warden.audit.verify import verify
from warden.errors import AuditUnavailable
from warden.storage import Database
from warden.storage.tables import AuditCheckpoint, AuditRecord


def count_commits(db: Database) -> list[int]:
    """A one-item list counting the engine's commits from now on."""
    counter = [0]

    def on_commit(_connection: Any) -> None:
        counter[0] += 1

    event.listen(db.engine, "commit", on_commit)
    return counter


def stored_request_ids(db: Database, stream: str = "r1") -> list[str]:
    """The request ids of a stream's records, in seq order."""
    with db.engine.connect() as connection:
        query = select(AuditRecord.request_id).where(AuditRecord.stream == stream).order_by(AuditRecord.seq)
        return [str(rid) for rid in connection.execute(query).scalars()]


def test_events_recorded_from_many_threads_at_once_share_one_commit(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    write(log, 1)  # the writer's thread is up and its chain head known
    gate, entered = threading.Event(), threading.Event()
    commits = count_commits(db)

    def hold_the_first_commit(_connection: Any) -> None:
        entered.set()
        gate.wait(30)

    event.listen(db.engine, "commit", hold_the_first_commit, once=True)
    first = log.record(request_event(1000))
    assert entered.wait(30)  # the writer is inside its commit of event 1000
    futures: list[Any] = []
    lock = threading.Lock()

    def submit(number: int) -> None:
        future = log.record(request_event(number))
        with lock:
            futures.append(future)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2, 66)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gate.set()
    for future in [first, *futures]:
        future.result(timeout=30)
    assert commits[0] == 2  # event 1000, then the 64 that queued meanwhile, together
    assert log.writer.commits == 3
    assert len(stored_request_ids(db)) == 66
    assert verify(db, KEYS.checkpoint).ok


def test_under_free_running_concurrency_there_are_fewer_commits_than_events(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    commits = count_commits(db)
    threads = [threading.Thread(target=write, args=(log, 20, 1000 * n)) for n in range(1, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.writer.written == 320
    assert commits[0] == log.writer.commits < 320
    assert verify(db, KEYS.checkpoint).ok


def test_a_restarted_writer_continues_the_same_stream(db: Database, make_log: MakeLog) -> None:
    first = make_log(checkpoint_every=4)
    write(first, 6)
    assert first.close()
    second = make_log(checkpoint_every=4)
    write(second, 6, start=7)
    assert second.close()
    report = verify(db, KEYS.checkpoint)
    assert report.ok
    assert (report.streams[0].first_seq, report.streams[0].last_seq) == (1, 12)
    assert stored_request_ids(db) == [f"req-{n}" for n in range(1, 13)]
    with db.engine.connect() as connection:
        marks = connection.execute(select(AuditCheckpoint.seq, AuditCheckpoint.kind).order_by(AuditCheckpoint.id)).all()
    assert [(m.seq, m.kind) for m in marks] == [(4, "seal"), (6, "close"), (10, "seal"), (12, "close")]


def test_two_writers_on_one_stream_interleave_without_forking_it(db: Database, make_log: MakeLog) -> None:
    """A CLI process and the server sharing a replica id: the loser of each race re-reads the head."""
    logs = [make_log(), make_log()]
    threads = [threading.Thread(target=write, args=(logs[n % 2], 15, 100 * n)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(log.flush(30) for log in logs)
    assert sorted(stored_request_ids(db)) == sorted(f"req-{100 * n + i}" for n in range(1, 5) for i in range(15))
    assert verify(db, KEYS.checkpoint).ok


def test_a_log_that_never_recorded_starts_no_thread_and_writes_nothing_on_close(db: Database) -> None:
    log = AuditLog(db, KEYS, stream="idle")
    assert log.close()
    assert log.writer.commits == 0
    assert verify(db, KEYS.checkpoint).streams == ()


def test_async_durability_returns_before_the_commit_and_the_record_still_lands(db: Database, make_log: MakeLog) -> None:
    log = make_log(durability="async")
    gate = threading.Event()
    event.listen(db.engine, "commit", lambda _c: gate.wait(30), once=True)

    async def handler() -> None:
        await log.arecord(request_event(1))  # would hang here if it waited for the held commit

    asyncio.run(handler())
    gate.set()
    assert log.flush(30)
    assert stored_request_ids(db) == ["req-1"]


def test_sync_durability_returns_only_after_the_commit(db: Database, make_log: MakeLog) -> None:
    log = make_log()

    async def handler() -> list[str]:
        await log.arecord(request_event(1))
        return stored_request_ids(db)  # read at once, on another connection

    assert asyncio.run(handler()) == ["req-1"]


def test_a_closed_log_refuses_new_events(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    write(log, 1)
    assert log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        log.record(request_event(2)).result()


def test_a_full_backlog_refuses_events_instead_of_growing_without_bound(db: Database, make_log: MakeLog) -> None:
    log = make_log(max_backlog=2)
    gate = threading.Event()
    entered = threading.Event()

    def hold(_connection: Any) -> None:
        entered.set()
        gate.wait(30)

    event.listen(db.engine, "commit", hold, once=True)
    held = log.record(request_event(1))
    assert entered.wait(30)
    queued = [log.record(request_event(n)) for n in (2, 3)]
    with pytest.raises(AuditUnavailable, match="backlog full"):
        log.record(request_event(4)).result()
    gate.set()
    for future in [held, *queued]:
        future.result(timeout=30)
    assert log.writer.dropped == 1
    assert stored_request_ids(db) == ["req-1", "req-2", "req-3"]


def move_table(db: Database, source: str, target: str) -> None:
    """Rename a table from another connection: the store really fails (or recovers) under the writer."""
    with db.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {source} RENAME TO {target}"))


def test_when_the_store_fails_events_are_kept_the_log_fails_closed_and_recovers(
    db: Database, make_log: MakeLog
) -> None:
    log = make_log(checkpoint_every=3)
    write(log, 4)
    move_table(db, "audit_records", "audit_records_away")
    try:
        failed = log.record(request_event(5))
        with pytest.raises(AuditUnavailable, match="audit store unavailable"):
            failed.result(timeout=30)
        assert not log.healthy
        with pytest.raises(AuditUnavailable):
            log.ensure_available()
        with pytest.raises(AuditUnavailable):  # fail fast while down, yet the event is kept
            log.record(request_event(6)).result(timeout=30)

        async def handler() -> None:
            await log.arecord(request_event(7))

        with pytest.raises(AuditUnavailable):
            asyncio.run(handler())
    finally:
        move_table(db, "audit_records_away", "audit_records")
    assert log.flush(60)
    assert log.healthy
    log.ensure_available()
    write(log, 1, start=8)
    assert log.close()
    assert stored_request_ids(db) == [f"req-{n}" for n in range(1, 9)]
    assert verify(db, KEYS.checkpoint).ok


def test_when_not_failing_closed_a_sync_caller_is_answered_while_the_store_is_down(
    db: Database, make_log: MakeLog
) -> None:
    log = make_log(fail_closed=False)
    write(log, 1)
    move_table(db, "audit_records", "audit_records_away")
    try:

        async def handler() -> None:
            await log.arecord(request_event(2))

        asyncio.run(handler())  # no AuditUnavailable: serving goes on, the record waits
        log.ensure_available()
        assert not log.healthy
    finally:
        move_table(db, "audit_records_away", "audit_records")
    assert log.flush(60)
    assert stored_request_ids(db) == ["req-1", "req-2"]


def test_when_the_store_stays_down_at_close_the_loss_is_counted(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    write(log, 1)
    move_table(db, "audit_records", "audit_records_away")
    try:
        log.record(request_event(2))
        assert not log.close(timeout=0.2)
        assert log.writer.dropped == 1
    finally:
        move_table(db, "audit_records_away", "audit_records")
    with db.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(AuditRecord)).scalar_one() == 1
        kinds = connection.execute(select(AuditCheckpoint.kind)).scalars().all()
    assert CheckpointKind.CLOSE not in kinds


def test_a_commit_that_lands_but_reports_a_failure_is_not_written_twice(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    write(log, 2)

    def commit_then_fail(connection: Any) -> None:
        connection.connection.driver_connection.commit()  # the database has it ...
        raise ConnectionResetError("connection lost while committing")  # ... the client never hears so

    event.listen(db.engine, "commit", commit_then_fail, once=True)
    log.record(request_event(3)).result(timeout=30)
    write(log, 1, start=4)
    assert stored_request_ids(db) == ["req-1", "req-2", "req-3", "req-4"]
    assert verify(db, KEYS.checkpoint).ok
