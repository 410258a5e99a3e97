"""``AuditLog``: the one object front ends use to record, read, verify, export and prune the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from warden.audit.chain import AuditKeys
from warden.audit.events import AddressPolicy, AuditEvent, ClientAddresses, utc_now
from warden.audit.export import ExportFormat, export_lines
from warden.audit.presence import Presence
from warden.audit.query import AuditEntry, AuditFilter, Cursor, Order, Page, query, scan
from warden.audit.retention import PruneReport, prune
from warden.audit.verify import VerifyReport, verify
from warden.audit.writer import GroupCommitWriter
from warden.errors import AuditUnavailable
from warden.settings import Settings
from warden.storage import Database


class Durability(StrEnum):
    """When a recorded request may be answered."""

    SYNC = "sync"
    """Only once its audit record is committed."""
    ASYNC = "async"
    """At once; the record is committed in the background."""


class AuditLog:
    """One replica's audit stream over the state database, plus reading and retention of every stream.

    Recording is cheap to set up: the group-commit thread starts with the first event, so a
    command that only reads never starts it. Typical use in a request handler::

        audit.ensure_available()                      # fail closed before doing work
        ...                                           # serve the request
        await audit.arecord(AuditEvent.request(tenant=..., key_id=..., status=200, ...))
    """

    def __init__(
        self,
        db: Database,
        keys: AuditKeys,
        *,
        stream: str,
        durability: Durability | str = Durability.SYNC,
        fail_closed: bool = True,
        client_address: AddressPolicy | str = AddressPolicy.HASHED,
        checkpoint_every: int = 1000,
        max_backlog: int = 100_000,
        clock: Callable[[], datetime] = utc_now,
        previous_checkpoint_keys: tuple[bytes, ...] = (),
        presence_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.stream = stream
        self.durability = Durability(durability)
        self.fail_closed = fail_closed
        self.client_address = ClientAddresses(AddressPolicy(client_address), keys.address)
        """Applies the address policy: ``audit.client_address("203.0.113.7")`` is what to put in ``client``."""
        self.writer = GroupCommitWriter(
            db,
            stream,
            keys.checkpoint,
            checkpoint_every=checkpoint_every,
            max_backlog=max_backlog,
            clock=clock,
            previous_keys=previous_checkpoint_keys,
            presence=Presence(stream, presence_dir, scope=db.url),
        )
        self._keys = keys
        self._previous = previous_checkpoint_keys
        self._clock = clock

    @classmethod
    def from_settings(
        cls, db: Database, settings: Settings, server_secret: bytes, previous_secrets: tuple[bytes, ...] = ()
    ) -> AuditLog:
        """The audit log the settings describe (stream = replica id), keyed from the server secret.

        Checkpoints signed under ``previous_secrets`` (before a rotation) still verify. Live
        writers of the stream mark themselves in the data directory, so a server and the admin
        commands run beside it are not taken for a crash (see :mod:`warden.audit.presence`).
        """
        return cls(
            db,
            AuditKeys.derive(server_secret),
            previous_checkpoint_keys=tuple(AuditKeys.derive(secret).checkpoint for secret in previous_secrets),
            stream=settings.replica_id,
            durability=settings.audit_durability,
            fail_closed=settings.audit_fail_closed,
            client_address=settings.audit_client_address,
            checkpoint_every=settings.audit_checkpoint_every,
            presence_dir=settings.data_dir,
        )

    @property
    def healthy(self) -> bool:
        """False while the store cannot commit records (from a failed commit until one succeeds)."""
        return self.writer.healthy

    def ensure_available(self) -> None:
        """Raise ``AuditUnavailable`` when failing closed and the store is down: call it before doing work."""
        if self.fail_closed and not self.writer.healthy:
            raise AuditUnavailable(f"audit store unavailable: {self.writer.last_error}")

    def record(self, event: AuditEvent) -> Future[None]:
        """Queue ``event``; the future resolves once it is durable (or fails with ``AuditUnavailable``).

        A failed future means "not durable yet": the event stays queued and is written when
        the store is back.
        """
        return self.writer.submit(event)

    async def arecord(self, event: AuditEvent) -> None:
        """Record ``event`` from async code, honouring the durability and fail-closed settings.

        ``sync``: returns once the record is committed; raises ``AuditUnavailable`` if it could
        not be (unless not failing closed). ``async``: returns at once, raising
        ``AuditUnavailable`` only when failing closed while the store is down. Cancelling the
        caller never withdraws the event.
        """
        future = self.writer.submit(event)
        if self.durability is Durability.ASYNC:
            self.ensure_available()
            return
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except AuditUnavailable:
            if self.fail_closed:
                raise

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted event is committed; False if not within ``timeout`` seconds."""
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Commit what is queued, sign a closing checkpoint and stop; True when nothing was left unwritten."""
        return self.writer.close(timeout)

    def verify(self) -> VerifyReport:
        """Verify every stream (see :mod:`warden.audit.verify`)."""
        return verify(self.db, self._keys.checkpoint, self._previous)

    def query(
        self, where: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 100, order: Order = "time"
    ) -> Page:
        """One page of entries matching ``where`` (see :func:`warden.audit.query.query`)."""
        return query(self.db, where, after=after, limit=limit, order=order)

    def scan(self, where: AuditFilter | None = None, *, order: Order = "time") -> Iterator[AuditEntry]:
        """Every entry matching ``where``, read a page at a time."""
        return scan(self.db, where, order=order)

    def export(self, format_: ExportFormat | str, where: AuditFilter | None = None) -> Iterator[str]:
        """Every entry matching ``where`` as lines of ``format_`` (``jsonl``, ``syslog`` or ``cef``)."""
        return export_lines(self.scan(where), format_)

    def prune(self, older_than: datetime) -> PruneReport:
        """Remove records older than ``older_than`` behind signed cuts (see :mod:`warden.audit.retention`)."""
        return prune(self.db, self._keys.checkpoint, older_than, clock=self._clock, previous=self._previous)
