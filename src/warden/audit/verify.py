"""``verify``: walk every stream's chain and report the first problem of each, with its position and kind.

A stream starts after its newest signed retention cut (or at seq 1 from 64 zeros). Each
record must carry the next seq, link to its predecessor's hash, hash to its stored hash,
and agree with the columns repeated from it; each checkpoint must carry a valid signature
and state the hash the chain has at its seq. The first problem (lowest seq) is diagnosed:

- ``modified``: a record's content, hash or link was changed (or the chain was re-hashed
  up to a signed checkpoint that no longer matches);
- ``deleted``: records are missing (a gap in seq, or renumbered records that hash only at a
  later seq);
- ``inserted``: a record the chain does not link (its successor links past it, or a copy);
- ``reordered``: records out of order (one links to a record that comes after it);
- ``bad_checkpoint``: a checkpoint whose signature is not the server key's;
- ``truncated``: the chain ends before the last signed checkpoint.

Records appended after a stream's last checkpoint are protected by the chain alone: a
forger who re-hashes them, or removes them with no checkpoint after, is not detected;
signed checkpoints (every N records and on close) bound that window. So a stream that
verifies is also told ``sealed`` or not: sealed when a signed ``close`` checkpoint (written
by a clean shutdown) states its last record, so nothing after it can have gone missing;
unsealed otherwise, which is what a writer still running and one that crashed (SIGKILL,
power loss) both leave, and what removing the tail of a crashed stream leaves too. An
unsealed stream is not a problem (``ok`` stays true) but is reported, with
``signed_through``, the last seq a signed checkpoint vouches for. A writer that later takes
over an unsealed stream (a restart after a crash) first appends a signed ``audit.resumed``
record stating what it found (see :mod:`warden.audit.resume`); each is reported in
``resumed``, sealed or not, since the records after its ``signed_through`` up to its
``found_last_seq`` were never signed and a deletion before the restart cannot be excluded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from warden.audit.chain import (
    GENESIS,
    CheckpointKind,
    StoredCheckpoint,
    StoredRecord,
    record_hash,
    signature_valid,
)
from warden.audit.resume import Resumption, resumption_of
from warden.audit.store import checkpoints, records, seqs_with_hash, streams
from warden.storage import Database

_RENUMBER_SEARCH: Final = 64

Locate = Callable[[str], list[int]]
"""Finds the seqs of a stream's records whose stored hash is the given one."""


class ProblemKind(StrEnum):
    """What is wrong at a position of a chain."""

    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    BAD_CHECKPOINT = "bad_checkpoint"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class Problem:
    """The first problem of a stream: its position (``seq``), kind and an explanation."""

    seq: int
    kind: ProblemKind
    message: str

    def to_dict(self) -> dict[str, Any]:
        """As ``verify --json`` prints it."""
        return {"seq": self.seq, "kind": self.kind.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One stream's verdict: the records that verified before any problem, its checkpoints, its first problem."""

    stream: str
    records: int
    first_seq: int | None
    last_seq: int | None
    checkpoints: int
    problem: Problem | None
    sealed: bool = False
    """Intact, and its last record is stated by a signed ``close`` checkpoint (a clean shutdown)."""
    signed_through: int = 0
    """The highest seq a valid signed checkpoint states (0: none); later records rest on the chain alone."""
    resumed: tuple[Resumption, ...] = ()
    """Every ``audit.resumed`` record in the intact part: each a restart after a writer that did not close."""

    @property
    def ok(self) -> bool:
        """Whether the stream verified intact."""
        return self.problem is None

    @property
    def status(self) -> str:
        """``sealed``, ``unsealed`` (intact, but no clean close at its end) or ``broken`` (a problem)."""
        if self.problem is not None:
            return "broken"
        return "sealed" if self.sealed else "unsealed"

    def to_dict(self) -> dict[str, Any]:
        """As ``verify --json`` prints it."""
        return {
            "stream": self.stream,
            "ok": self.ok,
            "status": self.status,
            "sealed": self.sealed,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "signed_through": self.signed_through,
            "resumed_after_crash": [resumption.to_dict() for resumption in self.resumed],
            "problem": None if self.problem is None else self.problem.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Every stream's verdict, by stream name."""

    streams: tuple[StreamReport, ...]

    @property
    def ok(self) -> bool:
        """Whether every stream verified intact (an empty log is intact)."""
        return all(stream.ok for stream in self.streams)

    @property
    def sealed(self) -> bool:
        """Whether every stream is intact and sealed by a clean close (an empty log is)."""
        return all(stream.sealed for stream in self.streams)

    @property
    def unsealed(self) -> tuple[StreamReport, ...]:
        """The streams that verify but whose tail no clean close seals."""
        return tuple(stream for stream in self.streams if stream.ok and not stream.sealed)

    @property
    def resumed(self) -> tuple[StreamReport, ...]:
        """The streams with a resumption after a crash recorded in them (sealed since, or not)."""
        return tuple(stream for stream in self.streams if stream.resumed)

    def to_dict(self) -> dict[str, Any]:
        """As ``verify --json`` prints it."""
        return {
            "ok": self.ok,
            "sealed": self.sealed,
            "streams": [stream.to_dict() for stream in self.streams],
        }


def verify(db: Database, key: bytes, previous: Sequence[bytes] = ()) -> VerifyReport:
    """Verify every stream in the database with the checkpoint key ``key`` (or a ``previous`` one, from before a
    rotation of the server secret)."""
    reports = []
    with db.engine.connect() as connection:
        for stream in streams(connection):

            def locate(hash_: str, stream: str = stream) -> list[int]:
                return seqs_with_hash(connection, stream, hash_)

            # Checkpoints first, records after: a writer appending meanwhile adds records a
            # checkpoint read here may need, never a checkpoint past the records read.
            marks = checkpoints(connection, stream)
            reports.append(check_stream(stream, records(connection, stream), marks, key, locate, previous=previous))
    return VerifyReport(tuple(reports))


def check_stream(
    stream: str,
    rows: Iterable[StoredRecord],
    marks: Sequence[StoredCheckpoint],
    key: bytes,
    locate: Locate,
    *,
    previous: Sequence[bytes] = (),
) -> StreamReport:
    """Verify one stream from its records in seq order and its checkpoints; ``locate`` is used only to diagnose."""
    valid = valid_checkpoints(stream, marks, key, previous)
    vouching = set(valid)
    found: list[tuple[int, int, Problem]] = [  # (seq, rank, problem): chain problems win ties
        (mark.seq, 1, Problem(mark.seq, ProblemKind.BAD_CHECKPOINT, _forged(mark)))
        for mark in marks
        if mark not in vouching
    ]
    cuts = [mark for mark in valid if mark.kind == CheckpointKind.CUT]
    start = max(cuts, key=lambda mark: mark.seq) if cuts else None
    origin = 0 if start is None else start.seq
    pending = sorted((m for m in valid if m.kind != CheckpointKind.CUT and m.seq > origin), key=lambda m: m.seq)
    walk = _Walk(stream, origin, GENESIS if start is None else start.hash, locate, {m.seq for m in pending})
    chain_problem = walk.run(rows)
    if chain_problem is not None:
        found.append((chain_problem.seq, 0, chain_problem))
    for mark in pending:
        stored = walk.hashes.get(mark.seq)
        if stored is not None and stored != mark.hash:
            message = (
                f"the chain's hash at seq {mark.seq} differs from its signed {mark.kind} checkpoint: "
                f"records after seq {walk.matched_before(mark.seq)} up to {mark.seq} were rewritten"
            )
            found.append((mark.seq, 1, Problem(mark.seq, ProblemKind.MODIFIED, message)))
        elif stored is None and chain_problem is None:
            message = f"the chain ends at seq {walk.expected - 1} but a signed checkpoint covers seq {mark.seq}"
            found.append((walk.expected, 2, Problem(walk.expected, ProblemKind.TRUNCATED, message)))
        if stored is not None and stored == mark.hash:
            walk.matched.append(mark.seq)
    first = min(found, key=lambda item: (item[0], item[1]))[2] if found else None
    end = origin if walk.last_seq is None else walk.last_seq
    end_hash = walk.link
    sealed = first is None and closed_at(valid, end, end_hash)
    resumed = tuple(walk.resumed)
    return StreamReport(
        stream, walk.accepted, walk.first_seq, walk.last_seq, len(marks), first, sealed, signed_through(valid), resumed
    )


def valid_checkpoints(
    stream: str, marks: Iterable[StoredCheckpoint], key: bytes, previous: Sequence[bytes] = ()
) -> list[StoredCheckpoint]:
    """The checkpoints of ``stream`` signed with ``key`` or a ``previous`` key (the others are forged)."""
    return [m for m in marks if m.stream == stream and any(signature_valid(k, m) for k in (key, *previous))]


def closed_at(valid: Iterable[StoredCheckpoint], seq: int, hash_: str) -> bool:
    """Whether a valid ``close`` checkpoint states record ``seq`` with ``hash_``: a clean close ended there."""
    return any(m.kind == CheckpointKind.CLOSE and (m.seq, m.hash) == (seq, hash_) for m in valid)


def signed_through(valid: Iterable[StoredCheckpoint]) -> int:
    """The highest seq a valid checkpoint states (0: none): records after it rest on the chain alone."""
    return max((mark.seq for mark in valid), default=0)


def _forged(mark: StoredCheckpoint) -> str:
    return f"the {mark.kind} checkpoint at seq {mark.seq} does not carry the server key's signature"


class _Walk:
    """The chain walk of one stream: accepts records in order and diagnoses the first that does not fit."""

    def __init__(self, stream: str, start: int, start_hash: str, locate: Locate, wanted: set[int]) -> None:
        self.stream = stream
        self.start = start
        self.expected = start + 1
        self.link = start_hash
        self.locate = locate
        self.last: StoredRecord | None = None
        self.accepted = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.wanted = wanted
        self.hashes: dict[int, str] = {}  # accepted seq -> hash, kept only for the checkpoints' seqs
        self.matched: list[int] = []
        self.resumed: list[Resumption] = []

    def matched_before(self, seq: int) -> int:
        """The last checkpoint seq below ``seq`` that matched the chain (the cut, or 0, if none)."""
        return max((s for s in self.matched if s < seq), default=self.start)

    def run(self, rows: Iterable[StoredRecord]) -> Problem | None:
        """Walk ``rows``; the first problem, or ``None`` when every record fits."""
        iterator = iter(rows)
        row = next(iterator, None)
        while row is not None:
            following = next(iterator, None)
            problem = self._diagnose(row, following)
            if problem is not None:
                return problem
            self.accepted += 1
            self.first_seq = row.seq if self.first_seq is None else self.first_seq
            self.last_seq = row.seq
            if row.seq in self.wanted:
                self.hashes[row.seq] = row.hash
            resumption = resumption_of(row)
            if resumption is not None:
                self.resumed.append(resumption)
            self.last, self.link, self.expected = row, row.hash, row.seq + 1
            row = following
        return None

    def _diagnose(self, row: StoredRecord, following: StoredRecord | None) -> Problem | None:
        e = self.expected
        if row.seq < e:
            return Problem(row.seq, ProblemKind.INSERTED, f"record {row.seq} lies before the retention cut at {e - 1}")
        if row.seq > e:
            missing = f"record {e} is" if row.seq == e + 1 else f"records {e} to {row.seq - 1} are"
            return Problem(e, ProblemKind.DELETED, f"{missing} missing")
        hashes_ok = record_hash(row.prev_hash, self.stream, row.seq, row.body) == row.hash
        if row.prev_hash == self.link and hashes_ok:
            column = _disagreeing_column(row)
            if column is None:
                return None
            return Problem(e, ProblemKind.MODIFIED, f"its {column} column disagrees with the hashed record")
        return self._misfit(row, following, hashes_ok)

    def _misfit(self, row: StoredRecord, following: StoredRecord | None, hashes_ok: bool) -> Problem:
        e = self.expected
        copies = [s for s in self.locate(row.hash) if s != row.seq]
        if copies:
            return Problem(e, ProblemKind.INSERTED, f"record {e} is a copy of record {copies[0]}")
        if self.last is not None and row.prev_hash == self.last.prev_hash:
            return Problem(e - 1, ProblemKind.INSERTED, f"record {e - 1} is not linked: record {e} links past it")
        if following is not None and following.prev_hash == self.link:
            if row.prev_hash == following.hash:
                return Problem(e, ProblemKind.REORDERED, f"records {e} and {e + 1} are swapped")
            return Problem(e, ProblemKind.INSERTED, f"record {e} is not linked: record {e + 1} links past it")
        if row.prev_hash == self.link:
            return Problem(e, ProblemKind.MODIFIED, f"record {e} no longer hashes to its stored hash")
        known = self.locate(row.prev_hash)
        later = [s for s in known if s > e]
        if later:
            return Problem(e, ProblemKind.REORDERED, f"record {e} links to record {later[0]}, which comes after it")
        if known:
            return Problem(e, ProblemKind.REORDERED, f"record {e} links to record {known[-1]} instead of {e - 1}")
        if hashes_ok:
            at = e - 1 if self.last is not None else e
            return Problem(at, ProblemKind.MODIFIED, f"record {at} was changed and re-hashed: its successor disowns it")
        for shift in range(1, _RENUMBER_SEARCH + 1):
            if record_hash(row.prev_hash, self.stream, e + shift, row.body) == row.hash:
                gone = f"record {e} is" if shift == 1 else f"records {e} to {e + shift - 1} are"
                return Problem(e, ProblemKind.DELETED, f"{gone} missing and later records were renumbered")
        return Problem(e, ProblemKind.MODIFIED, f"record {e} neither hashes nor links to the chain")


def _disagreeing_column(row: StoredRecord) -> str | None:
    try:
        body = json.loads(row.body)
        stated_time = datetime.fromisoformat(body["time"])
    except (ValueError, KeyError, TypeError):
        return "body"
    if not isinstance(body, dict):
        return "body"
    for column, value in (("kind", row.kind), ("tenant", row.tenant), ("request_id", row.request_id)):
        if body.get(column) != value:
            return column
    return None if stated_time == row.time else "time"
