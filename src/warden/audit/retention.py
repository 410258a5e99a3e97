"""Retention: remove old records without breaking verification.

``prune`` cuts each stream at its last record older than the limit (records after the
first one at or past it are all kept, so the kept part is one contiguous chain tail).
In the same transaction it writes a signed ``cut`` checkpoint stating the last removed
record's seq and hash (the first kept record's ``prev_hash``), then deletes up to it;
``verify`` starts the stream after its newest cut. A stream whose chain does not verify
up to the cut is not pruned: that would destroy the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select

from warden.audit.chain import CheckpointKind
from warden.audit.events import utc_now
from warden.audit.store import (
    add_checkpoint,
    checkpoints,
    delete_through,
    first_seq_at_or_after,
    hash_at,
    lock_stream,
    records,
    seqs_with_hash,
    streams,
)
from warden.audit.verify import check_stream
from warden.errors import InvalidArgument, StorageCorrupt
from warden.storage import Database
from warden.storage.tables import AuditCheckpoint, AuditRecord


@dataclass(frozen=True, slots=True)
class StreamCut:
    """What pruning did to one stream: records up to ``cut_seq`` removed (``removed`` of them)."""

    stream: str
    cut_seq: int
    removed: int

    def to_dict(self) -> dict[str, Any]:
        """As ``prune --json`` prints it."""
        return {"stream": self.stream, "cut_seq": self.cut_seq, "removed": self.removed}


@dataclass(frozen=True, slots=True)
class PruneReport:
    """The cut of each stream that had records to remove."""

    older_than: datetime
    cuts: tuple[StreamCut, ...]

    @property
    def removed(self) -> int:
        """Records removed in all."""
        return sum(cut.removed for cut in self.cuts)

    def to_dict(self) -> dict[str, Any]:
        """As ``prune --json`` prints it."""
        return {
            "older_than": self.older_than.isoformat(),
            "removed": self.removed,
            "streams": [cut.to_dict() for cut in self.cuts],
        }


def prune(
    db: Database,
    key: bytes,
    older_than: datetime,
    *,
    clock: Callable[[], datetime] = utc_now,
    previous: Sequence[bytes] = (),
) -> PruneReport:
    """Remove every stream's records older than ``older_than`` behind a cut signed with ``key``.

    ``StorageCorrupt`` if tampered; checkpoints signed with a ``previous`` key (from before a rotation
    of the server secret) count as valid, as ``verify`` counts them.
    """
    if older_than.tzinfo is None:
        raise InvalidArgument("older_than must be a timezone-aware datetime")
    with db.engine.connect() as connection:
        names = streams(connection)
    cuts = []
    for stream in names:
        cut = _prune_stream(db, (key, *previous), stream, older_than, clock)
        if cut is not None:
            cuts.append(cut)
    return PruneReport(older_than, tuple(cuts))


def _prune_stream(
    db: Database, keys: tuple[bytes, ...], stream: str, older_than: datetime, clock: Callable[[], datetime]
) -> StreamCut | None:
    key = keys[0]
    with db.engine.connect() as connection:  # verify first, outside the (short) writing transaction
        cut = _cut_point(connection, stream, older_than)
        if cut is None:
            return None
        report = check_stream(
            stream,
            records(connection, stream),
            checkpoints(connection, stream),
            key,
            lambda hash_: seqs_with_hash(connection, stream, hash_),
            previous=keys[1:],
        )
    if report.problem is not None and report.problem.seq <= cut[0]:
        problem = report.problem
        raise StorageCorrupt(
            f"audit stream {stream!r} fails verification at seq {problem.seq} ({problem.kind}: "
            f"{problem.message}); not pruned"
        )
    with db.engine.begin() as connection:
        lock_stream(connection, stream)
        if _cut_point(connection, stream, older_than) != cut:
            raise StorageCorrupt(f"audit stream {stream!r} changed below the cut while pruning; not pruned")
        add_checkpoint(connection, key, stream=stream, seq=cut[0], hash_=cut[1], kind=CheckpointKind.CUT, now=clock())
        removed = delete_through(connection, stream, cut[0])
        # Checkpoints below the new cut vouch for records that are gone; the cut supersedes them.
        connection.execute(
            delete(AuditCheckpoint).where(AuditCheckpoint.stream == stream, AuditCheckpoint.seq < cut[0])
        )
    return StreamCut(stream, cut[0], removed)


def _cut_point(connection: Connection, stream: str, older_than: datetime) -> tuple[int, str] | None:
    """The last record to remove (seq and hash), or ``None`` when no record is older than the limit."""
    kept = first_seq_at_or_after(connection, stream, older_than)
    if kept is None:
        last = connection.execute(select(func.max(AuditRecord.seq)).where(AuditRecord.stream == stream)).scalar()
        kept = 1 if last is None else int(last) + 1
    cut_hash = hash_at(connection, stream, kept - 1)
    return None if cut_hash is None else (kept - 1, cut_hash)
