"""Sealed or not: a clean close signs the stream's last record; a crash leaves an unsealed tail that ``verify`` reports.

Records after a stream's last signed checkpoint rest on the chain alone, so removing them
cannot be detected; what can be told is whether a clean shutdown vouched for the end.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, insert, select

from tests.audit.conftest import KEYS, MakeLog, request_event
from tests.audit.test_crash import run_until_killed
from warden.audit import AuditLog, CheckpointKind
from warden.audit.events import utc_now
from warden.audit.verify import StreamReport, verify
from warden.storage import Database
from warden.storage.tables import AuditCheckpoint, AuditRecord


def record(log: AuditLog, count: int, first: int = 1) -> None:
    """Record ``count`` events one commit at a time."""
    for number in range(first, first + count):
        log.record(request_event(number)).result(timeout=30)


def only_stream(db: Database) -> StreamReport:
    """The single stream's report."""
    [stream] = verify(db, KEYS.checkpoint).streams
    return stream


def remove_after(db: Database, stream: str, seq: int) -> None:
    """Delete the stream's records after ``seq``, as someone with write access to the database could."""
    with db.engine.begin() as connection:
        connection.execute(delete(AuditRecord).where(AuditRecord.stream == stream, AuditRecord.seq > seq))


def test_a_cleanly_closed_stream_is_sealed_through_its_last_record(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    record(log, 5)
    assert log.close()
    report = verify(db, KEYS.checkpoint)
    [stream] = report.streams
    assert (stream.ok, stream.sealed, stream.status, stream.signed_through, stream.last_seq) == (
        True,
        True,
        "sealed",
        5,
        5,
    )
    assert report.sealed
    assert report.to_dict()["streams"][0]["status"] == "sealed"


def test_a_close_is_signed_even_when_a_seal_states_the_last_record(db: Database, make_log: MakeLog) -> None:
    log = make_log(checkpoint_every=5)
    record(log, 5)  # the fifth commit writes a seal at seq 5
    assert log.close()
    with db.engine.connect() as connection:
        kinds = connection.execute(select(AuditCheckpoint.kind).where(AuditCheckpoint.seq == 5)).scalars().all()
    assert sorted(kinds) == [CheckpointKind.CLOSE, CheckpointKind.SEAL]
    assert only_stream(db).sealed


def test_a_writer_still_running_leaves_its_stream_unsealed_until_it_closes(db: Database, make_log: MakeLog) -> None:
    log = make_log(checkpoint_every=2)
    record(log, 3)
    assert log.flush(timeout=30)
    running = only_stream(db)
    assert (running.ok, running.sealed, running.status, running.signed_through) == (True, False, "unsealed", 2)
    assert verify(db, KEYS.checkpoint).unsealed == (running,)
    assert log.close()
    assert only_stream(db).sealed


def test_a_crashed_stream_is_unsealed_and_stays_so_when_its_tail_is_removed(db: Database) -> None:
    run_until_killed(db.url, 1, 30)  # SIGKILL: no closing checkpoint
    crashed = only_stream(db)
    assert (crashed.ok, crashed.sealed, crashed.status) == (True, False, "unsealed")
    with db.engine.connect() as connection:
        last_seal = connection.execute(select(func.max(AuditCheckpoint.seq))).scalar_one()
    remove_after(db, "crashy", last_seal)  # the tail no checkpoint vouches for
    truncated = only_stream(db)
    assert (truncated.ok, truncated.sealed, truncated.last_seq, truncated.signed_through) == (
        True,
        False,
        last_seal,
        last_seal,
    )
    AuditLog(db, KEYS, stream="crashy").close()  # a restart that records nothing vouches for nothing
    assert only_stream(db).status == "unsealed"


def test_a_forged_close_does_not_seal(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    record(log, 3)
    assert log.flush(timeout=30)
    with db.engine.begin() as connection:
        head = connection.execute(select(AuditRecord.hash).where(AuditRecord.seq == 3)).scalar_one()
        connection.execute(
            insert(AuditCheckpoint).values(
                stream="r1", seq=3, hash=head, kind="close", created_at=utc_now(), signature="0" * 64
            )
        )
    forged = only_stream(db)
    assert forged.problem is not None
    assert (forged.problem.kind, forged.sealed, forged.status) == ("bad_checkpoint", False, "broken")


def test_records_removed_after_a_clean_close_are_truncation(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    record(log, 5)
    assert log.close()
    remove_after(db, "r1", 3)
    stream = only_stream(db)
    assert stream.problem is not None
    assert (stream.problem.kind, stream.sealed) == ("truncated", False)


def test_a_sealed_stream_pruned_to_nothing_stays_sealed(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    record(log, 4)
    assert log.close()
    pruned = make_log(stream="pruner").prune(utc_now() + timedelta(days=1))
    assert pruned.removed == 4
    stream = only_stream(db)
    assert (stream.records, stream.sealed, stream.status) == (0, True, "sealed")
