"""The audit tables through one SQLAlchemy connection: chain heads, appends, checkpoints, ordered reads.

Every function takes a ``Connection`` the caller opened (its transaction is the caller's),
so the writer can append a whole group of records and a checkpoint in one commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, delete, func, insert, select, union, update

from warden.audit.chain import GENESIS, StoredCheckpoint, StoredRecord, checkpoint_signature
from warden.storage.tables import AuditCheckpoint, AuditRecord, AuditStream

PAGE: Final = 1000


@dataclass(frozen=True, slots=True)
class Head:
    """Where a stream's chain ends: the last ``seq`` and its hash, and the seq of its last checkpoint."""

    seq: int
    hash: str
    checkpoint_seq: int


def lock_stream(connection: Connection, stream: str) -> None:
    """Take the stream's lock row for the rest of the transaction (a row lock; SQLite's write lock).

    The first writer of a new stream creates the row; a concurrent creator gets an
    ``IntegrityError`` and should retry.
    """
    locked = connection.execute(
        update(AuditStream).where(AuditStream.stream == stream).values(commits=AuditStream.commits + 1)
    )
    if locked.rowcount == 0:
        connection.execute(insert(AuditStream).values(stream=stream, commits=1))


def load_head(connection: Connection, stream: str) -> Head:
    """The stream's head: its last record, or its last checkpoint when retention removed every record."""
    last = connection.execute(
        select(AuditRecord.seq, AuditRecord.hash)
        .where(AuditRecord.stream == stream)
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).first()
    mark = connection.execute(
        select(AuditCheckpoint.seq, AuditCheckpoint.hash)
        .where(AuditCheckpoint.stream == stream)
        .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    ).first()
    checkpoint_seq = 0 if mark is None else int(mark.seq)
    if last is not None and int(last.seq) >= checkpoint_seq:
        return Head(int(last.seq), str(last.hash), checkpoint_seq)
    if mark is not None:
        return Head(int(mark.seq), str(mark.hash), checkpoint_seq)
    return Head(0, GENESIS, 0)


def append(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert chained records (dicts of :class:`AuditRecord` columns) in one statement."""
    if rows:
        connection.execute(insert(AuditRecord), list(rows))


def add_checkpoint(
    connection: Connection, key: bytes, *, stream: str, seq: int, hash_: str, kind: str, now: datetime
) -> StoredCheckpoint:
    """Sign and insert a checkpoint stating that record ``seq`` of ``stream`` has hash ``hash_``."""
    signature = checkpoint_signature(key, stream=stream, seq=seq, hash_=hash_, kind=kind, created_at=now)
    connection.execute(
        insert(AuditCheckpoint).values(
            stream=stream, seq=seq, hash=hash_, kind=kind, created_at=now, signature=signature
        )
    )
    return StoredCheckpoint(stream, seq, hash_, kind, now, signature)


def has_checkpoint(connection: Connection, stream: str, seq: int, kind: str) -> bool:
    """Whether a checkpoint of ``kind`` states record ``seq`` of ``stream``."""
    found = connection.execute(
        select(AuditCheckpoint.id)
        .where(AuditCheckpoint.stream == stream, AuditCheckpoint.seq == seq, AuditCheckpoint.kind == kind)
        .limit(1)
    ).first()
    return found is not None


def streams(connection: Connection) -> list[str]:
    """Every stream that has records or checkpoints, sorted."""
    names = union(select(AuditRecord.stream).distinct(), select(AuditCheckpoint.stream).distinct())
    return sorted(str(name) for name in connection.execute(names).scalars())


def records(connection: Connection, stream: str, after_seq: int = 0) -> Iterator[StoredRecord]:
    """The stream's records with ``seq > after_seq``, in seq order, read a page at a time."""
    while True:
        page = connection.execute(
            select(AuditRecord)
            .where(AuditRecord.stream == stream, AuditRecord.seq > after_seq)
            .order_by(AuditRecord.seq)
            .limit(PAGE)
        ).all()
        for row in page:
            yield to_stored(row)
        if len(page) < PAGE:
            return
        after_seq = int(page[-1].seq)


def to_stored(row: Any) -> StoredRecord:
    """A result row of :class:`AuditRecord` columns as a :class:`StoredRecord`."""
    return StoredRecord(
        stream=row.stream,
        seq=int(row.seq),
        time=row.time,
        kind=row.kind,
        tenant=row.tenant,
        request_id=row.request_id,
        body=row.body,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def checkpoints(connection: Connection, stream: str) -> list[StoredCheckpoint]:
    """The stream's checkpoints by seq (then by insertion)."""
    rows = connection.execute(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.stream == stream)
        .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
    ).all()
    return [StoredCheckpoint(r.stream, int(r.seq), r.hash, r.kind, r.created_at, r.signature) for r in rows]


def hash_at(connection: Connection, stream: str, seq: int) -> str | None:
    """The stored hash of record ``seq`` of ``stream``, or ``None`` when there is no such record."""
    found = connection.execute(
        select(AuditRecord.hash).where(AuditRecord.stream == stream, AuditRecord.seq == seq)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def seqs_with_hash(connection: Connection, stream: str, hash_: str) -> list[int]:
    """The seqs of the stream's records whose stored hash is ``hash_`` (used only to diagnose a broken chain)."""
    found = connection.execute(
        select(AuditRecord.seq).where(AuditRecord.stream == stream, AuditRecord.hash == hash_)
    ).scalars()
    return sorted(int(seq) for seq in found)


def first_seq_at_or_after(connection: Connection, stream: str, moment: datetime) -> int | None:
    """The smallest seq of the stream whose record time is at or after ``moment``."""
    value = connection.execute(
        select(func.min(AuditRecord.seq)).where(AuditRecord.stream == stream, AuditRecord.time >= moment)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def delete_through(connection: Connection, stream: str, seq: int) -> int:
    """Delete the stream's records with ``seq <= seq``; how many went."""
    result = connection.execute(delete(AuditRecord).where(AuditRecord.stream == stream, AuditRecord.seq <= seq))
    return int(result.rowcount)
