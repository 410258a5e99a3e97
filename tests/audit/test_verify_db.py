"""``verify`` over real tables, SQLite and PostgreSQL: tampering done with SQL is reported where it happened."""

from __future__ import annotations

import threading

from sqlalchemy import text

from tests.audit.conftest import KEYS, MakeLog, request_event, write
from warden.audit import AuditEvent, ProblemKind
from warden.audit.chain import chain, record_hash
from warden.audit.verify import verify
from warden.storage import Database


def first_problem(db: Database, stream: str = "r1") -> tuple[ProblemKind, int] | None:
    """The first problem ``verify`` reports for ``stream``."""
    report = verify(db, KEYS.checkpoint)
    found = next(s for s in report.streams if s.stream == stream)
    return None if found.problem is None else (found.problem.kind, found.problem.seq)


def sql(db: Database, statement: str, **values: object) -> None:
    """Run one statement in its own transaction, as a forger with database access would."""
    with db.engine.begin() as connection:
        connection.execute(text(statement), values)


def closed_log(db: Database, make_log: MakeLog, count: int = 12) -> None:
    """Stream r1 with ``count`` records, a seal every 5, closed cleanly."""
    log = make_log(checkpoint_every=5)
    write(log, count)
    assert log.close()


def test_an_intact_log_verifies_and_an_empty_one_too(db: Database, make_log: MakeLog) -> None:
    assert verify(db, KEYS.checkpoint).ok
    assert verify(db, KEYS.checkpoint).streams == ()
    closed_log(db, make_log)
    report = verify(db, KEYS.checkpoint)
    assert report.ok
    [stream] = report.streams
    assert (stream.stream, stream.records, stream.first_seq, stream.last_seq) == ("r1", 12, 1, 12)
    assert stream.checkpoints == 3  # seals at 5 and 10, closing at 12


def test_an_edited_record_is_modified_at_its_seq(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    sql(db, "UPDATE audit_records SET body = replace(body, 'acme', 'other') WHERE seq = 7")
    assert first_problem(db) == (ProblemKind.MODIFIED, 7)


def test_an_edited_query_column_is_modified_at_its_seq(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    sql(db, "UPDATE audit_records SET tenant = 'other' WHERE seq = 3")
    assert first_problem(db) == (ProblemKind.MODIFIED, 3)


def test_a_deleted_record_is_deleted_at_its_seq(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    sql(db, "DELETE FROM audit_records WHERE seq = 4")
    assert first_problem(db) == (ProblemKind.DELETED, 4)


def test_deleting_the_last_records_is_truncation(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    sql(db, "DELETE FROM audit_records WHERE seq >= 11")
    assert first_problem(db) == (ProblemKind.TRUNCATED, 11)


def test_an_inserted_record_is_inserted_at_its_seq(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    with db.engine.begin() as connection:
        prev = connection.execute(text("SELECT hash FROM audit_records WHERE seq = 5")).scalar_one()
        # Make room at seq 6 (in two steps: the primary key forbids a transient duplicate).
        connection.execute(text("UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 6"))
        connection.execute(text("UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000"))
        forged = AuditEvent.request(tenant="acme", request_id="forged", status=200)
        body = forged.canonical()
        connection.execute(
            text(
                "INSERT INTO audit_records (stream, seq, time, kind, tenant, request_id, body, prev_hash, hash) "
                "VALUES ('r1', 6, :time, 'request', 'acme', 'forged', :body, :prev, :hash)"
            ),
            {"time": forged.time.isoformat(), "body": body, "prev": prev, "hash": record_hash(prev, "r1", 6, body)},
        )
    assert first_problem(db) == (ProblemKind.INSERTED, 6)


def test_two_swapped_records_are_reordered_at_the_first(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_records SET seq = -1 WHERE seq = 3"))
        connection.execute(text("UPDATE audit_records SET seq = 3 WHERE seq = 8"))
        connection.execute(text("UPDATE audit_records SET seq = 8 WHERE seq = -1"))
    assert first_problem(db) == (ProblemKind.REORDERED, 3)


def test_a_rewritten_and_rehashed_tail_is_caught_by_the_signed_checkpoint(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    with db.engine.begin() as connection:
        rows = connection.execute(
            text("SELECT seq, body, prev_hash FROM audit_records WHERE seq >= 7 ORDER BY seq")
        ).all()
        bodies = [row.body.replace("acme", "other") for row in rows]
        for (seq, prev, hash_), body in zip(
            chain("r1", bodies, after_seq=6, after_hash=rows[0].prev_hash), bodies, strict=True
        ):
            connection.execute(
                text(
                    "UPDATE audit_records SET body = :body, tenant = 'other', prev_hash = :prev, hash = :hash "
                    "WHERE seq = :seq"
                ),
                {"body": body, "prev": prev, "hash": hash_, "seq": seq},
            )
    assert first_problem(db) == (ProblemKind.MODIFIED, 10)  # the seal at 10 covers seq 7


def test_an_altered_checkpoint_is_a_bad_checkpoint(db: Database, make_log: MakeLog) -> None:
    closed_log(db, make_log)
    sql(db, "UPDATE audit_checkpoints SET hash = :h WHERE seq = 5", h="f" * 64)
    assert first_problem(db) == (ProblemKind.BAD_CHECKPOINT, 5)


def test_a_log_verified_under_another_server_secret_fails_at_its_first_checkpoint(
    db: Database, make_log: MakeLog
) -> None:
    closed_log(db, make_log)
    report = verify(db, b"another key".ljust(32, b"-"))
    assert report.streams[0].problem is not None
    assert report.streams[0].problem.kind == ProblemKind.BAD_CHECKPOINT


def test_several_replicas_writing_at_once_each_verify_and_tampering_one_spares_the_others(
    db: Database, make_log: MakeLog
) -> None:
    logs = [make_log(stream=f"replica-{n}", checkpoint_every=7) for n in range(3)]

    def serve(log_index: int) -> None:
        for number in range(30):
            logs[log_index].record(request_event(log_index * 100 + number)).result(timeout=30)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        assert log.close()
    report = verify(db, KEYS.checkpoint)
    assert report.ok
    assert [(s.stream, s.records) for s in report.streams] == [(f"replica-{n}", 30) for n in range(3)]
    sql(db, "DELETE FROM audit_records WHERE stream = 'replica-1' AND seq = 12")
    assert first_problem(db, "replica-1") == (ProblemKind.DELETED, 12)
    assert first_problem(db, "replica-0") is None
    assert first_problem(db, "replica-2") is None
