"""In-memory chains and the tampering a forger with write access to the tables could do to them.

Each tamper function takes a stream's records (in seq order) and returns the tampered
records in seq order, exactly as the table would hold them afterwards (``seq`` stays
unique, as the primary key forces).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.audit.conftest import KEYS
from warden.audit import AuditEvent, CheckpointKind
from warden.audit.chain import StoredCheckpoint, StoredRecord, chain, checkpoint_signature, record_hash
from warden.audit.verify import StreamReport, check_stream

STREAM = "replica-1"
BASE = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def build(count: int, every: int, *, close: bool = True) -> tuple[list[StoredRecord], list[StoredCheckpoint]]:
    """A stream of ``count`` request events with a seal every ``every`` records and, if ``close``, a closing one."""
    events = [
        AuditEvent.request(time=BASE + timedelta(seconds=n), tenant=f"t{n % 3}", request_id=f"r{n}", status=200)
        for n in range(1, count + 1)
    ]
    bodies = [event.canonical() for event in events]
    rows = [
        StoredRecord(STREAM, seq, event.time, "request", event.tenant, event.request_id, body, prev, hash_)
        for event, body, (seq, prev, hash_) in zip(events, bodies, chain(STREAM, bodies), strict=True)
    ]
    marks = [seal(row.seq, row.hash) for row in rows if row.seq % every == 0]
    if close and rows and (not marks or marks[-1].seq != rows[-1].seq):
        marks.append(seal(rows[-1].seq, rows[-1].hash, CheckpointKind.CLOSE))
    return rows, marks


def seal(seq: int, hash_: str, kind: CheckpointKind = CheckpointKind.SEAL) -> StoredCheckpoint:
    """A correctly signed checkpoint."""
    moment = BASE + timedelta(days=1)
    signature = checkpoint_signature(KEYS.checkpoint, stream=STREAM, seq=seq, hash_=hash_, kind=kind, created_at=moment)
    return StoredCheckpoint(STREAM, seq, hash_, kind, moment, signature)


def cut(rows: list[StoredRecord], marks: list[StoredCheckpoint], through: int) -> tuple[list, list]:
    """What retention leaves: records up to ``through`` gone, a signed cut in their place."""
    if through == 0:
        return rows, marks
    last = next(row for row in rows if row.seq == through)
    return [row for row in rows if row.seq > through], [*marks, seal(through, last.hash, CheckpointKind.CUT)]


def check(rows: list[StoredRecord], marks: list[StoredCheckpoint]) -> StreamReport:
    """Verify the in-memory stream (locating hashes as the database would)."""

    def locate(hash_: str) -> list[int]:
        return sorted(row.seq for row in rows if row.hash == hash_)

    return check_stream(STREAM, rows, marks, KEYS.checkpoint, locate)


def at(rows: list[StoredRecord], seq: int) -> int:
    """The list index of the record at ``seq``."""
    return next(i for i, row in enumerate(rows) if row.seq == seq)


def renumbered(rows: list[StoredRecord], start: int) -> list[StoredRecord]:
    """Give ``rows`` consecutive seqs from ``start`` (content, links and hashes untouched)."""
    return [replace(row, seq=start + offset) for offset, row in enumerate(rows)]


def changed_body(row: StoredRecord) -> StoredRecord:
    """The record with another tenant in its body and in its tenant column (the hash left stale)."""
    data = json.loads(row.body)
    data["tenant"] = "forged"
    return replace(row, body=json.dumps(data, sort_keys=True, separators=(",", ":")), tenant="forged")


def modify(rows: list[StoredRecord], seq: int, what: str) -> list[StoredRecord]:
    """Change one field of the record at ``seq`` (``rehash`` changes its body and recomputes its own hash)."""
    out = list(rows)
    i = at(rows, seq)
    row = rows[i]
    if what == "body":
        out[i] = changed_body(row)
    elif what == "rehash":
        forged = changed_body(row)
        out[i] = replace(forged, hash=record_hash(forged.prev_hash, STREAM, forged.seq, forged.body))
    elif what == "prev_hash":
        out[i] = replace(row, prev_hash=secrets.token_hex(32))
    elif what == "hash":
        out[i] = replace(row, hash=secrets.token_hex(32))
    elif what == "time":
        out[i] = replace(row, time=row.time + timedelta(hours=1))
    elif what == "tenant":
        out[i] = replace(row, tenant="forged")
    else:
        raise AssertionError(what)
    return out


def delete(rows: list[StoredRecord], seq: int, *, renumber: bool) -> list[StoredRecord]:
    """Remove the record at ``seq``; with ``renumber``, close the gap by moving later records down."""
    i = at(rows, seq)
    return rows[:i] + (renumbered(rows[i + 1 :], seq) if renumber else rows[i + 1 :])


def insert(rows: list[StoredRecord], seq: int, style: str, copy_of: int = 0) -> list[StoredRecord]:
    """Insert a forged record at ``seq``, moving that record and the later ones up by one."""
    i = at(rows, seq)
    link = rows[i].prev_hash
    event = AuditEvent.request(time=rows[i].time, tenant="forged", request_id="forged", status=200)
    body = event.canonical()
    if style == "linked":  # links to its predecessor and hashes correctly
        forged = StoredRecord(STREAM, seq, event.time, "request", "forged", "forged", body, link, "")
        forged = replace(forged, hash=record_hash(link, STREAM, seq, body))
    elif style == "linked_bad_hash":
        forged = StoredRecord(STREAM, seq, event.time, "request", "forged", "forged", body, link, secrets.token_hex(32))
    elif style == "random":
        forged = StoredRecord(
            STREAM, seq, event.time, "request", "forged", "forged", body, secrets.token_hex(32), secrets.token_hex(32)
        )
    elif style == "copy":
        forged = replace(rows[at(rows, copy_of)], seq=seq)
    else:
        raise AssertionError(style)
    return [*rows[:i], forged, *renumbered(rows[i:], seq + 1)]


def swap(rows: list[StoredRecord], first: int, second: int) -> list[StoredRecord]:
    """Exchange the positions (seqs) of two records."""
    out = list(rows)
    i, j = at(rows, first), at(rows, second)
    out[i], out[j] = replace(rows[j], seq=first), replace(rows[i], seq=second)
    return out
