"""Group commit: one background thread chains every pending event and commits them in one transaction.

``submit`` queues an event and returns a future resolved once the event's commit is
durable (SQLite runs ``synchronous=FULL``; PostgreSQL commits are durable by default),
so concurrent callers share one flush. When a commit fails the writer keeps the events
(a failed future means "not durable yet", never "discarded"), reports itself unhealthy,
fails new futures at once (fail fast), and retries with backoff; the chain continues
from the head read back from the database, so nothing accepted is lost or forked. Each
commit first locks the stream's row in ``audit_streams`` and reads the head under that
lock, so a second writer on the same stream (another process with the same replica id)
waits its turn instead of forking the chain; ``(stream, seq)`` is unique besides.

A writer's first commit also looks at the tail it continues: when no valid ``close``
checkpoint states the stream's last record and no other writer of the stream is alive
(see :mod:`warden.audit.presence`), the previous writer did not close, and the commit
starts with a signed ``audit.resumed`` record saying so (see :mod:`warden.audit.resume`),
so this writer's clean close cannot pass the crashed tail off as sealed. A process that
never records (a command that only reads) never commits, and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from warden.audit.chain import CheckpointKind, chain
from warden.audit.events import AuditEvent, utc_now
from warden.audit.presence import Presence
from warden.audit.resume import resumption_event
from warden.audit.store import (
    Head,
    add_checkpoint,
    append,
    checkpoints,
    has_checkpoint,
    hash_at,
    load_head,
    lock_stream,
)
from warden.audit.verify import closed_at, signed_through, valid_checkpoints
from warden.errors import AuditUnavailable
from warden.storage import Database

_log = logging.getLogger("warden.audit")
_FIRST_DELAY: Final = 0.05
_MAX_DELAY: Final = 2.0
_MAX_RACES: Final = 16


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    future: Future[None]


@dataclass(frozen=True, slots=True)
class _Uncertain:
    """A failed commit that may have landed anyway: its first ``count`` events and its last record's seq and hash."""

    count: int
    seq: int
    hash: str


class GroupCommitWriter:
    """Appends one stream's events to the database in groups; the thread starts on the first event."""

    def __init__(
        self,
        db: Database,
        stream: str,
        checkpoint_key: bytes,
        *,
        checkpoint_every: int = 1000,
        max_backlog: int = 100_000,
        clock: Callable[[], datetime] = utc_now,
        previous_keys: tuple[bytes, ...] = (),
        presence: Presence | None = None,
    ) -> None:
        self.stream = stream
        self.commits = 0
        """Transactions committed (each holds one group of events)."""
        self.written = 0
        """Events committed by this writer."""
        self.dropped = 0
        """Events refused because the backlog was full, or left unwritten at close."""
        self.commit_seconds = 0.0
        """Seconds spent in successful commits; with ``commits``, the mean flush latency."""
        self.last_error: str | None = None
        self.resumed_at: int | None = None
        """The seq of the ``audit.resumed`` record this writer appended, if it took over a crashed stream."""
        self._db = db
        self._previous = previous_keys
        self._presence = presence if presence is not None else Presence(stream, scope=db.url)
        self._alone: bool | None = None  # set on the first commit: no other live writer of the stream
        self._took_over = False  # the first commit is done: the tail it continued was looked at
        self._key = checkpoint_key
        self._every = checkpoint_every
        self._max_backlog = max_backlog
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self._healthy = True
        self._closing = False
        self._gave_up = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._uncertain: _Uncertain | None = None

    @property
    def healthy(self) -> bool:
        """False from a failed commit until the next one succeeds."""
        return self._healthy

    @property
    def running(self) -> bool:
        """Whether the writer thread runs (it starts with the first event)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def backlog(self) -> int:
        """Events accepted and not yet committed."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def submit(self, event: AuditEvent) -> Future[None]:
        """Queue ``event``; the future resolves when it is durable, or fails with ``AuditUnavailable``."""
        body = event.canonical()
        row = {
            "stream": self.stream,
            "time": event.time,
            "kind": event.kind.value,
            "tenant": event.tenant,
            "request_id": event.request_id,
            "body": body,
        }
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()  # running from now on: a waiter cannot cancel it under the writer
        with self._cond:
            if self._closing:
                future.set_exception(AuditUnavailable("the audit log is closed"))
                return future
            if len(self._queue) >= self._max_backlog:
                self.dropped += 1
                full = f"audit backlog full ({self._max_backlog} events); event dropped"
                future.set_exception(AuditUnavailable(full))
                return future
            self._queue.append(_Pending(row, future))
            if not self._healthy:
                future.set_exception(AuditUnavailable(f"audit store unavailable: {self.last_error}"))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"warden-audit-{self.stream}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted event is committed; False if that did not happen within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Commit what is queued (retrying up to ``timeout`` seconds), sign a closing checkpoint, stop the thread.

        True when everything accepted was committed; events still failing at the deadline are
        counted in ``dropped``.
        """
        with self._cond:
            if self._closing:
                return not self._queue
            self._closing = True
            self._deadline = time.monotonic() + timeout
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout + 5.0)
        return not self._queue and not self._gave_up and (thread is None or not thread.is_alive())

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    break
                batch, self._queue = self._queue, []
                self._busy = True
            ok = self._commit(batch)
            with self._cond:
                self._busy = False
                failures = 0 if ok else failures + 1
                if not ok:
                    self._queue[:0] = batch
                    if self._closing and time.monotonic() >= self._deadline:
                        self._give_up()
                        self._cond.notify_all()
                        break
                    retry_at = time.monotonic() + min(_MAX_DELAY, _FIRST_DELAY * 2 ** (failures - 1))
                    if self._closing:
                        retry_at = min(retry_at, self._deadline)
                    self._cond.notify_all()
                    while (remaining := retry_at - time.monotonic()) > 0:
                        self._cond.wait(remaining)
                self._cond.notify_all()
        if self.written and not self._gave_up:
            self._seal_on_close()
        self._presence.leave()

    def _commit(self, batch: list[_Pending]) -> bool:
        error: Exception | None = None
        failures = races = 0
        while failures < 2 and races < _MAX_RACES:
            started = time.perf_counter()
            try:
                done = self._write(batch)
            except IntegrityError as exc:  # another writer created the stream's lock row first
                error, races = exc, races + 1
                continue
            except Exception as exc:  # any failure of the store; the events stay queued
                error, failures = exc, failures + 1
                continue
            self.commit_seconds += time.perf_counter() - started
            self.commits += 1
            self.written += done
            self.last_error = None
            self._healthy = True
            for item in batch:
                if not item.future.done():
                    item.future.set_result(None)
            return True
        self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if self._healthy:
            _log.error("audit commit failed (%s); failing closed and retrying", self.last_error)
        self._healthy = False
        for item in batch:
            if not item.future.done():
                item.future.set_exception(AuditUnavailable(f"audit store unavailable: {self.last_error}"))
        return False

    def _write(self, batch: list[_Pending]) -> int:
        """Chain and insert ``batch`` (and a seal when due) in one transaction; how many events were new."""
        with self._db.engine.begin() as connection:
            lock_stream(connection, self.stream)  # other writers of this stream wait until we commit
            head = load_head(connection, self.stream)
            uncertain, self._uncertain = self._uncertain, None
            if uncertain is not None and hash_at(connection, self.stream, uncertain.seq) == uncertain.hash:
                self._landed(batch[: uncertain.count])  # the failed commit did land: never write those twice
                del batch[: uncertain.count]
                self._took_over = True  # and so did any audit.resumed it started with
            if not batch:
                return 0
            if not self._took_over:
                head = self._take_over(connection, head)
            bodies = [item.row["body"] for item in batch]
            links = chain(self.stream, bodies, after_seq=head.seq, after_hash=head.hash)
            self._uncertain = _Uncertain(len(batch), links[-1][0], links[-1][2])
            rows = [
                {**item.row, "seq": seq, "prev_hash": prev, "hash": hash_}
                for item, (seq, prev, hash_) in zip(batch, links, strict=True)
            ]
            append(connection, rows)
            new_head = Head(links[-1][0], links[-1][2], head.checkpoint_seq)
            if new_head.seq - new_head.checkpoint_seq >= self._every:
                self._checkpoint(connection, new_head, CheckpointKind.SEAL)
        self._uncertain = None
        self._took_over = True
        return len(batch)

    def _take_over(self, connection: Connection, head: Head) -> Head:
        """Before this writer's first record: append a signed ``audit.resumed`` when the tail is a crashed one.

        The tail is crashed when the stream has records (or a retention cut), no valid ``close``
        checkpoint states its head, and no other writer of the stream is alive. The record is
        sealed at once, so it stays signed even if this writer crashes too.
        """
        if self._alone is None:
            self._alone = self._presence.join()
        if not self._alone or head.seq == 0:
            return head
        valid = valid_checkpoints(self.stream, checkpoints(connection, self.stream), self._key, self._previous)
        if closed_at(valid, head.seq, head.hash):
            return head
        event = resumption_event(self.stream, head.seq, signed_through(valid), self._clock())
        body = event.canonical()
        [(seq, prev, hash_)] = chain(self.stream, [body], after_seq=head.seq, after_hash=head.hash)
        row = {
            "stream": self.stream,
            "time": event.time,
            "kind": event.kind.value,
            "tenant": None,
            "request_id": None,
            "body": body,
            "seq": seq,
            "prev_hash": prev,
            "hash": hash_,
        }
        append(connection, [row])
        resumed = Head(seq, hash_, seq)
        self._checkpoint(connection, resumed, CheckpointKind.SEAL)
        self.resumed_at = seq
        _log.warning(
            "audit stream %s was not closed by its previous writer (last seq %d, signed through %d); "
            "recorded audit.resumed at seq %d",
            self.stream,
            head.seq,
            signed_through(valid),
            seq,
        )
        return resumed

    def _landed(self, items: list[_Pending]) -> None:
        self.written += len(items)
        for item in items:
            if not item.future.done():
                item.future.set_result(None)

    def _checkpoint(self, connection: Connection, head: Head, kind: CheckpointKind) -> None:
        add_checkpoint(
            connection, self._key, stream=self.stream, seq=head.seq, hash_=head.hash, kind=kind, now=self._clock()
        )

    def _seal_on_close(self) -> None:
        """Sign a ``close`` checkpoint at the head, the clean-shutdown mark ``verify`` looks for.

        Written even when a ``seal`` states the same record: only ``close`` says that no record
        came after it. Only a writer that wrote records signs one: a process that recorded
        nothing (a command that only reads) leaves a crashed stream's tail unsealed, as it found it.
        """
        try:
            with self._db.engine.begin() as connection:
                lock_stream(connection, self.stream)
                head = load_head(connection, self.stream)
                if head.seq > 0 and not has_checkpoint(connection, self.stream, head.seq, CheckpointKind.CLOSE):
                    self._checkpoint(connection, head, CheckpointKind.CLOSE)
        except Exception as exc:  # the store went away at shutdown; the records are committed, only unsealed
            _log.error("audit close checkpoint failed: %s", exc)

    def _give_up(self) -> None:
        self._gave_up = True
        lost = len(self._queue)
        self.dropped += lost
        _log.error("audit log closed with %d events never committed (%s)", lost, self.last_error)
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(AuditUnavailable("the audit log closed before the store came back"))
        self._queue = []
