"""Continuous shipping of the audit trail to a SIEM: resumable, in chain order, with back-pressure instead of loss.

A :class:`Shipper` reads every stream in chain order (by seq) after the position it last
committed, renders a batch (one stream, up to ``batch`` records) as lines of the chosen
format, hands it to a sink (:mod:`warden.audit.sinks`), and only once the sink reports the
target has it, commits the new position (``audit_ship_positions``: shipper name, stream,
seq, time) in the database. Streams take turns, a batch each; each stream stays in order.

Delivery guarantee, per shipper name:

- **No gap, no skip.** A record's position is committed only after its batch was delivered,
  and positions only move from the value read to the last seq delivered, so a restart resumes
  exactly after the last committed batch. A receiver that is down or slow makes the shipper
  wait and retry with exponential backoff (never drop): the records wait in the database.
  A hole in a stream is refused (``storage_corrupt``), except one retention removed behind a
  signed cut, which is reported in ``pruned`` (those records no longer exist).
- **Syslog (TCP or TLS): at least once, duplicates bounded and detectable.** A batch counts as
  delivered once the receiving process has read every byte of it from its socket: each batch
  has a connection of its own, which the shipper closes and the receiver must close in turn
  with every byte acknowledged and no reset (see :mod:`warden.audit.sinks`; a receiver that
  crashes or closes with bytes unread resets the connection and the batch is sent again). A
  record reaches the receiver twice only when (a) the connection failed after the receiver
  had read part of a batch, and the whole batch was sent again, or (b) the shipper died
  between the receiver's confirmation and the commit of the position: at most one batch
  (``batch`` records) per failure. Every message carries its stream, seq and chain hash (the
  ``warden@32473`` structured data, as the export writes it), so a receiver drops duplicates
  exactly, by ``(stream, seq)``. Beyond any syslog sender's sight: what the receiver does
  with bytes it has read, and a receiver that half-closes before reading everything and then
  drops the rest.
- **File: exactly once**, for a file only this shipper appends to: lines are fsync-ed before
  the commit, and on restart lines the file already ends with (a batch written before a crash
  whose position was never committed, or the torn start of one) count as delivered instead
  of being written again.
- Two shippers with the same name are a mistake the position update detects (``conflict``),
  possibly after one duplicated batch; give each target its own ``--name``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from warden.audit.events import utc_now
from warden.audit.export import ExportFormat, export_lines
from warden.audit.query import MAX_LIMIT, AuditEntry, AuditFilter, Cursor, query
from warden.audit.sinks import (
    DEFAULT_TIMEOUT,
    FileSink,
    Sink,
    SyslogSink,
    Target,
    TargetKind,
    tls_context,
)
from warden.audit.store import checkpoints, streams
from warden.errors import Conflict, DeliveryFailed, InvalidArgument, StorageCorrupt
from warden.storage import AuditShipPosition, Database

__all__ = [
    "DEFAULT_NAME",
    "ShipReport",
    "Shipper",
    "StreamShipped",
    "Target",
    "advance",
    "check_format",
    "check_name",
    "load_positions",
    "open_sink",
]

DEFAULT_NAME: Final = "default"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ANY_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)  # ordering by seq ignores the cursor's time
_log = logging.getLogger("warden.audit.ship")


def check_name(name: str) -> str:
    """A shipper name: 1-64 of letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidArgument(
            f"--name: {name!r} is not a shipper name (1-64 letters, digits, '.', '_' or '-', not starting with one "
            "of the last three)"
        )
    return name


def check_format(target: Target, format_: ExportFormat | str | None) -> ExportFormat:
    """The format to ship to ``target``: syslog receivers take RFC 5424 only; files any (JSON lines by default)."""
    if format_ is None:
        return ExportFormat.SYSLOG if target.is_syslog else ExportFormat.JSONL
    try:
        chosen = ExportFormat(format_)
    except ValueError:
        raise InvalidArgument(f"--format: unknown format {format_!r}; use syslog, jsonl or cef") from None
    if target.is_syslog and chosen is not ExportFormat.SYSLOG:
        raise InvalidArgument(
            f"--format: a {target.kind.value}:// receiver takes RFC 5424 messages (syslog), not {chosen.value}; "
            "ship jsonl or cef to a file:// target"
        )
    return chosen


def open_sink(target: Target, *, ca_file: Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> Sink:
    """The sink for ``target``; ``ca_file`` only for ``syslog+tls`` (default: the system's trust store)."""
    if ca_file is not None and target.kind is not TargetKind.SYSLOG_TLS:
        raise InvalidArgument(f"--ca-file applies to syslog+tls:// targets only, not {target.kind.value}://")
    if target.path is not None:
        return FileSink(target.path)
    context = tls_context(ca_file) if target.kind is TargetKind.SYSLOG_TLS else None
    return SyslogSink(target.host, target.port, tls=context, timeout=timeout)


def load_positions(db: Database, shipper: str) -> dict[str, int]:
    """The committed position (last delivered seq) of every stream the shipper has delivered from."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(AuditShipPosition.stream, AuditShipPosition.seq).where(AuditShipPosition.shipper == shipper)
        ).all()
    return {str(row.stream): int(row.seq) for row in rows}


def advance(db: Database, shipper: str, stream: str, *, old: int, new: int, now: datetime) -> None:
    """Move the shipper's position on ``stream`` from ``old`` to ``new`` in one commit; ``Conflict`` if it moved."""
    raced = Conflict(
        f"the position of shipper {shipper!r} on stream {stream!r} moved away from {old}: another "
        f"'warden audit ship --name {shipper}' is running; give each shipper its own --name"
    )
    try:
        with db.engine.begin() as connection:
            moved = connection.execute(
                update(AuditShipPosition)
                .where(
                    AuditShipPosition.shipper == shipper,
                    AuditShipPosition.stream == stream,
                    AuditShipPosition.seq == old,
                )
                .values(seq=new, updated_at=now)
            )
            if moved.rowcount == 1:
                return
            if old != 0:
                raise raced
            connection.execute(
                insert(AuditShipPosition).values(shipper=shipper, stream=stream, seq=new, updated_at=now)
            )
    except IntegrityError:  # a shipper of the same name inserted the row first
        raise raced from None


@dataclass(slots=True)
class StreamShipped:
    """What one run delivered from one stream: how many records, and the first and last seq."""

    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def add(self, first: int, last: int, count: int) -> None:
        """Count a delivered batch ``first..last``."""
        self.records += count
        self.first_seq = first if self.first_seq is None else self.first_seq
        self.last_seq = last


@dataclass(slots=True)
class ShipReport:
    """What a run did; ``positions`` are the committed positions when it ended."""

    shipper: str
    target: str
    format: str
    shipped: int = 0
    """Records delivered (recovered ones not included)."""
    batches: int = 0
    retries: int = 0
    """Failed deliveries that were tried again."""
    recovered: int = 0
    """Records a file already held after an interrupted run, counted as delivered without writing them again."""
    streams: dict[str, StreamShipped] = field(default_factory=dict)
    pruned: list[tuple[str, int, int]] = field(default_factory=list)
    """``(stream, first_seq, last_seq)`` removed by retention before they were shipped."""
    positions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As ``warden audit ship --json`` prints it."""
        return {
            "shipper": self.shipper,
            "target": self.target,
            "format": self.format,
            "shipped": self.shipped,
            "batches": self.batches,
            "retries": self.retries,
            "recovered": self.recovered,
            "streams": {
                name: {"records": s.records, "first_seq": s.first_seq, "last_seq": s.last_seq}
                for name, s in sorted(self.streams.items())
            },
            "pruned": [{"stream": s, "first_seq": a, "last_seq": b} for s, a, b in self.pruned],
            "positions": dict(sorted(self.positions.items())),
        }


class _Stopped(Exception):
    """Asked to stop while waiting to retry: nothing was in flight."""


RetryHook = Callable[[DeliveryFailed, float], None]
"""Called before each wait to retry: the failure and the seconds until the next attempt."""


class Shipper:
    """Ships every audit stream to one sink in chain order, committing its position after each delivered batch.

    ``attempts`` bounds the deliveries tried for one batch (``None``: retry until stopped,
    the back-pressure of following mode); waits between them grow from ``first_delay`` to
    ``max_delay`` seconds. Typical use::

        shipper = Shipper(db, open_sink(Target.parse("syslog+tls://siem:6514")), name="siem")
        shipper.run(follow=True, poll=1.0, stop=stop_event)   # until stop_event is set
    """

    def __init__(
        self,
        db: Database,
        sink: Sink,
        *,
        name: str = DEFAULT_NAME,
        format_: ExportFormat | str = ExportFormat.SYSLOG,
        batch: int = 500,
        attempts: int | None = None,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        on_retry: RetryHook | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not 1 <= batch <= MAX_LIMIT:
            raise InvalidArgument(f"--batch must be between 1 and {MAX_LIMIT}, not {batch}")
        if attempts is not None and attempts < 1:
            raise InvalidArgument(f"attempts must be at least 1, not {attempts}")
        if not 0 < first_delay <= max_delay:
            raise InvalidArgument("retry delays must satisfy 0 < first_delay <= max_delay")
        self.db = db
        self.sink = sink
        self.name = check_name(name)
        self.format = ExportFormat(format_)
        self.batch = batch
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._on_retry = on_retry
        self._clock = clock

    def run(self, *, follow: bool = False, poll: float = 1.0, stop: threading.Event | None = None) -> ShipReport:
        """Ship until caught up (``follow=False``) or until ``stop`` is set, polling every ``poll`` seconds.

        A batch in flight when ``stop`` is set is finished and its position committed first.
        Raises ``DeliveryFailed`` when a batch failed ``attempts`` times (positions of the
        batches delivered before stay committed), ``Conflict`` when another shipper of the
        same name moved a position, ``StorageCorrupt`` on a hole in a stream.
        """
        if poll <= 0:
            raise InvalidArgument(f"--poll must be > 0 seconds, not {poll}")
        stop = stop or threading.Event()
        report = ShipReport(self.name, self.sink.target, self.format.value)
        positions = load_positions(self.db, self.name)
        report.positions = positions
        with contextlib.suppress(_Stopped):
            self._recover(positions, report, stop)
            while not stop.is_set():
                if self._round(positions, report, stop):
                    continue
                if not follow:
                    break
                stop.wait(poll)
        return report

    def _recover(self, positions: dict[str, int], report: ShipReport, stop: threading.Event) -> None:
        """Count as delivered what the target already holds after an interrupted run (files only).

        Only the batch in flight when a run died can be there without its position, and that
        run's ``--batch`` may have been larger: so up to ``MAX_LIMIT`` records are compared.
        """
        if not self.sink.resumable:
            return
        for stream in self._streams():
            if stop.is_set():
                return
            entries = self._pending(stream, positions, report, limit=MAX_LIMIT)
            held = self.sink.resume(list(export_lines(entries, self.format))) if entries else 0
            if held:
                self._commit(stream, positions, entries[held - 1].seq)
                report.recovered += held

    def _round(self, positions: dict[str, int], report: ShipReport, stop: threading.Event) -> bool:
        """One batch from each stream that has new records; whether anything was shipped."""
        moved = False
        for stream in self._streams():
            if stop.is_set():
                break
            entries = self._pending(stream, positions, report)
            if entries:
                lines = list(export_lines(entries, self.format))
                self._ship(stream, (entries, lines), positions, report, stop)
                moved = True
        return moved

    def _ship(
        self,
        stream: str,
        batch: tuple[Sequence[AuditEntry], Sequence[str]],
        positions: dict[str, int],
        report: ShipReport,
        stop: threading.Event,
    ) -> None:
        """Deliver one batch (its entries and their lines), then commit the stream's new position."""
        entries, lines = batch
        self._deliver(lines, report, stop)
        self._commit(stream, positions, entries[-1].seq)
        report.shipped += len(entries)
        report.batches += 1
        report.streams.setdefault(stream, StreamShipped()).add(entries[0].seq, entries[-1].seq, len(entries))

    def _deliver(self, lines: Sequence[str], report: ShipReport, stop: threading.Event) -> None:
        failures = 0
        while True:
            try:
                self.sink.deliver(lines)
                return
            except DeliveryFailed as exc:
                failures += 1
                if self.attempts is not None and failures >= self.attempts:
                    tries = f"{failures} attempt" + ("s" if failures > 1 else "")
                    raise DeliveryFailed(
                        f"{exc.message} (gave up after {tries}; {report.shipped} records were delivered before, "
                        "and their position is kept)"
                    ) from None
                delay = min(self.max_delay, self.first_delay * 2 ** (failures - 1))
                report.retries += 1
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                else:
                    _log.warning("%s; retrying in %.2gs", exc.message, delay)
                if stop.wait(delay):
                    raise _Stopped from None

    def _commit(self, stream: str, positions: dict[str, int], seq: int) -> None:
        old = positions.get(stream, 0)
        advance(self.db, self.name, stream, old=old, new=seq, now=self._clock())
        positions[stream] = seq

    def _streams(self) -> list[str]:
        with self.db.engine.connect() as connection:
            return streams(connection)

    def _pending(
        self, stream: str, positions: dict[str, int], report: ShipReport, *, limit: int | None = None
    ) -> list[AuditEntry]:
        """The next batch of ``stream`` after its position, up to the first hole in it.

        A batch must start right after the position: a hole there is either records retention
        removed (behind a signed cut; reported, and skipped since they no longer exist) or
        ``StorageCorrupt``, which stops the shipper at the hole until the chain is repaired.
        """
        after = positions.get(stream, 0)
        cursor = Cursor(_ANY_TIME, stream, after)
        page = query(self.db, AuditFilter(stream=stream), after=cursor, limit=limit or self.batch, order="seq")
        entries = list(page.entries)
        if not entries:
            return entries
        if entries[0].seq != after + 1:
            self._explain_gap(stream, after, entries[0].seq, report)
        for index, (previous, current) in enumerate(itertools.pairwise(entries), start=1):
            if current.seq != previous.seq + 1:
                return entries[:index]  # up to the hole; the next read starts at it and explains or refuses it
        return entries

    def _explain_gap(self, stream: str, after: int, first: int, report: ShipReport) -> None:
        with self.db.engine.connect() as connection:
            cuts = [c.seq for c in checkpoints(connection, stream) if c.kind == "cut"]
        if cuts and max(cuts) >= first - 1:
            gap = (stream, after + 1, first - 1)
            if gap not in report.pruned:
                report.pruned.append(gap)
                _log.warning("audit records %s:%d-%d were pruned before they were shipped", *gap)
            return
        raise StorageCorrupt(
            f"audit stream {stream!r} has no record {after + 1} (next is {first}) and no retention cut explains it; "
            "run 'warden audit verify'"
        )
