"""Crash survival: whatever a sync ``record()`` acknowledged is in the log after SIGKILL, and the log verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from tests.audit.conftest import KEYS
from warden.audit.verify import verify
from warden.storage import Database
from warden.storage.tables import AuditRecord

ROOT = Path(__file__).resolve().parents[2]


def start_writer(url: str, first: int, presence_dir: Path | None = None) -> subprocess.Popen[str]:
    """The writer process on stream ``crashy``, its live-writer mark in ``presence_dir`` when given."""
    extra = [] if presence_dir is None else [str(presence_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.audit.crash_writer", url, "crashy", str(first), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_until_killed(url: str, first: int, acks_before_kill: int) -> set[str]:
    """Start the writer process, SIGKILL it once it has acknowledged enough events; the acknowledged ids."""
    process = start_writer(url, first)
    assert process.stdout is not None
    acked: set[str] = set()
    try:
        for line in process.stdout:
            acked.add(line.split()[1])
            if len(acked) >= acks_before_kill:
                os.kill(process.pid, signal.SIGKILL)
                break
        acked.update(line.split()[1] for line in process.stdout.read().splitlines() if line.startswith("acked"))
    finally:
        process.kill()
        process.wait(30)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_records_survive_repeated_sigkill_and_the_stream_continues(db: Database) -> None:
    rng = random.Random(5)
    acknowledged: set[str] = set()
    for round_ in range(3):
        acknowledged |= run_until_killed(db.url, 10_000 * (round_ + 1), rng.randint(20, 120))
        report = verify(db, KEYS.checkpoint)
        assert report.ok, report.to_dict()
        with db.engine.connect() as connection:
            stored = set(connection.execute(select(AuditRecord.request_id)).scalars()) - {None}
        assert acknowledged <= stored
        [stream] = report.streams
        resumptions = len(stream.resumed)  # each restart after a kill begins with an audit.resumed record
        assert resumptions == round_
        total = len(stored) + resumptions
        assert (stream.first_seq, stream.last_seq, stream.records) == (1, total, total)
