"""A restart after a crash is recorded: the next writer of an unsealed stream appends a signed ``audit.resumed``.

Without it a restarted replica's clean close vouches for the crashed tail, and records
removed from that tail before the restart vanish from view: ``verify`` says sealed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from sqlalchemy import delete, func, select, text, update

from tests.audit.conftest import KEYS, MakeLog, write
from tests.audit.test_crash import run_until_killed, start_writer
from tests.cli.conftest import Warden, warden_on_each_backend
from warden.audit import AuditLog
from warden.audit.resume import RESUMED, Resumption
from warden.audit.verify import StreamReport, verify
from warden.storage import Database
from warden.storage.tables import AuditCheckpoint, AuditRecord

__all__ = ["warden_on_each_backend"]  # the fixture, imported to be used here


def crashy(db: Database) -> StreamReport:
    """The report of the crash writer's stream."""
    [stream] = verify(db, KEYS.checkpoint).streams
    return stream


def signed_through(db: Database) -> int:
    """The highest seq any checkpoint of the database states."""
    with db.engine.connect() as connection:
        return int(connection.execute(select(func.max(AuditCheckpoint.seq))).scalar_one())


def restart(db: Database, count: int = 3, presence_dir: Path | None = None) -> AuditLog:
    """The crashed replica back: records ``count`` events and closes cleanly."""
    log = AuditLog(db, KEYS, stream="crashy", presence_dir=presence_dir)
    write(log, count, start=900_000)
    assert log.close()
    return log


def test_a_restart_after_a_crash_is_sealed_again_and_its_resumption_is_reported(db: Database) -> None:
    run_until_killed(db.url, 1, 30)
    crashed = crashy(db)
    assert (crashed.status, crashed.resumed) == ("unsealed", ())
    log = restart(db)
    assert log.writer.resumed_at == crashed.last_seq + 1  # its first act
    stream = crashy(db)
    assert (stream.ok, stream.sealed) == (True, True)
    assert stream.resumed == (Resumption(crashed.last_seq + 1, crashed.last_seq, crashed.signed_through),)
    [entry] = stream.to_dict()["resumed_after_crash"]
    assert (entry["seq"], entry["found_last_seq"], entry["signed_through"]) == (
        crashed.last_seq + 1,
        crashed.last_seq,
        crashed.signed_through,
    )
    with db.engine.connect() as connection:
        sealed_at = connection.execute(
            select(AuditCheckpoint.kind).where(AuditCheckpoint.seq == crashed.last_seq + 1)
        ).scalar_one()
    assert sealed_at == "seal"  # signed at once, even if the restarted writer crashes too


def test_a_tail_removed_before_the_restart_still_shows_the_crash_and_what_was_signed(db: Database) -> None:
    run_until_killed(db.url, 1, 30)
    signed = signed_through(db)
    with db.engine.begin() as connection:  # the attacker removes what no signature vouches for
        connection.execute(delete(AuditRecord).where(AuditRecord.seq > signed))
    restart(db)
    stream = crashy(db)
    assert (stream.ok, stream.sealed) == (True, True)  # the deletion itself cannot be seen ...
    [resumed] = stream.resumed  # ... but the crash, and the window it left, can
    assert (resumed.seq, resumed.found_last_seq, resumed.signed_through) == (signed + 1, signed, signed)


def test_a_restart_after_a_clean_close_records_nothing_extra(db: Database, make_log: MakeLog) -> None:
    first = make_log()
    write(first, 4)
    assert first.close()
    second = make_log()
    write(second, 3, start=5)
    assert second.close()
    stream = verify(db, KEYS.checkpoint).streams[0]
    assert (stream.sealed, stream.records, stream.resumed, second.writer.resumed_at) == (True, 7, (), None)


def test_a_second_live_writer_of_the_stream_is_not_taken_for_a_crash(db: Database, make_log: MakeLog) -> None:
    running = make_log()
    write(running, 3)
    beside = make_log()  # an admin command beside a running server, same replica id
    write(beside, 2, start=4)
    assert beside.close()
    write(running, 2, start=6)
    assert running.close()
    stream = verify(db, KEYS.checkpoint).streams[0]
    assert (stream.sealed, stream.records, stream.resumed) == (True, 7, ())


def test_a_live_writer_in_another_process_is_told_from_a_crashed_one(db: Database, tmp_path: Path) -> None:
    process = start_writer(db.url, 1, tmp_path)
    assert process.stdout is not None
    acks: list[str] = []
    reader = threading.Thread(target=lambda: acks.extend(process.stdout or ()), daemon=True)
    try:
        assert process.stdout.readline().startswith("acked")  # it has written: it holds its mark
        reader.start()
        beside = AuditLog(db, KEYS, stream="crashy", presence_dir=tmp_path)
        write(beside, 2, start=500_000)
        assert beside.writer.resumed_at is None
        assert beside.close()
        seen = len(acks)
        for _ in range(60_000):  # until it has gone on writing after the close beside it
            assert process.poll() is None
            if len(acks) >= seen + 5:
                break
            time.sleep(0.01)
        assert len(acks) >= seen + 5
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        reader.join(30)
        process.stdout.close()
    assert crashy(db).status == "unsealed"
    log = restart(db, presence_dir=tmp_path)
    assert log.writer.resumed_at is not None
    assert len(crashy(db).resumed) == 1


def test_opening_a_crashed_stream_without_recording_writes_nothing(db: Database) -> None:
    run_until_killed(db.url, 1, 20)
    before = crashy(db)
    reader = AuditLog(db, KEYS, stream="crashy")
    reader.verify()
    assert reader.close()
    after = crashy(db)
    assert (after.last_seq, after.status, after.resumed) == (before.last_seq, "unsealed", ())


def test_the_resumption_record_cannot_be_removed_or_altered_unseen(db: Database) -> None:
    run_until_killed(db.url, 1, 20)
    log = restart(db)
    seq = log.writer.resumed_at
    assert seq is not None
    with db.engine.begin() as connection:
        body = connection.execute(select(AuditRecord.body).where(AuditRecord.seq == seq)).scalar_one()
        assert json.loads(body)["action"] == RESUMED
        connection.execute(
            update(AuditRecord)
            .where(AuditRecord.seq == seq)
            .values(body=body.replace('"previous_closed":false', '"previous_closed":true'))
        )
    altered = crashy(db)
    assert altered.problem is not None
    assert (altered.problem.seq, altered.problem.kind) == (seq, "modified")
    with db.engine.begin() as connection:
        connection.execute(delete(AuditRecord).where(AuditRecord.seq == seq))
    removed = crashy(db)
    assert removed.problem is not None
    assert (removed.problem.seq, removed.problem.kind, removed.resumed) == (seq, "deleted", ())


def test_the_cli_records_one_resumption_and_verify_reports_it(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    assert warden("tenant", "create", "acme").exit_code == 0
    with warden.services() as services, services.db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_checkpoints WHERE kind = 'close'"))  # as a crash leaves it
    assert warden("audit", "verify").exit_code == 0  # read-only: writes nothing
    with warden.services() as services:
        [stream] = services.audit.verify().streams
    assert (stream.status, stream.records, stream.resumed) == ("unsealed", 1, ())
    assert warden("tenant", "create", "beta").exit_code == 0  # the first writer after the crash
    assert warden("tenant", "create", "gamma").exit_code == 0  # the stream was closed cleanly since: nothing
    result = warden("audit", "verify", "--json")
    assert result.exit_code == 0
    [report] = json.loads(result.stdout)["streams"]
    assert (report["status"], report["records"]) == ("sealed", 4)
    assert report["resumed_after_crash"] == [{"seq": 2, "found_last_seq": 1, "signed_through": 0, "unvouched": [1, 1]}]
    assert result.stderr.startswith("warden: warning: audit_resumed: 1 of 1 streams record 1 restarts")
    text_report = warden("audit", "verify")
    assert "resumed after a crash at seq 2: the previous writer did not close" in text_report.stdout
    assert "UNVOUCHED: records 1-1 were never signed" in text_report.stdout
    assert warden("audit", "verify", "--require-sealed").exit_code == 0
    strict = warden("audit", "verify", "--require-no-crash")
    assert strict.exit_code == 1
    assert strict.stderr.startswith("warden: error: audit_resumed: 1 of 1 streams record 1 restarts")
