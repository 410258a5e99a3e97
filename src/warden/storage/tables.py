"""The state tables: tenants, their API keys, models, model versions and aliases, the audit trail, and approvals.

Rows never hold secrets in the clear (keys are keyed hashes) nor model bytes
(versions point at content-addressed blobs by sha256). Audit rows hold metadata only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (stored as such on both backends)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite forgets the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store in UTC."""
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Warden table."""


class Tenant(Base):
    """A customer or business unit; everything else belongs to exactly one tenant."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rps: Mapped[float | None] = mapped_column(Float, default=None)
    burst: Mapped[int | None] = mapped_column(Integer, default=None)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, default=None)
    max_queue: Mapped[int | None] = mapped_column(Integer, default=None)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    max_image_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_image_pixels: Mapped[int | None] = mapped_column(BigInteger, default=None)
    daily_requests: Mapped[int | None] = mapped_column(Integer, default=None)
    isolation: Mapped[str] = mapped_column(String(16), default="shared", server_default="shared")


class DailyUsage(Base):
    """Requests admitted per tenant and UTC day, so a daily cap survives restarts."""

    __tablename__ = "daily_usage"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiKey(Base):
    """An API key: a public id and an HMAC of its secret; ``tenant_id`` is null for operator keys."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    tenant: Mapped[Tenant | None] = relationship()


class Model(Base):
    """A tenant's model name; its versions hold the bytes' hashes."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelVersion(Base):
    """One uploaded version of a model: its blob's sha256 and what validation learnt about it."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    info: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    max_batch_size: Mapped[int | None] = mapped_column(Integer, default=None)
    max_queue_delay_ms: Mapped[float | None] = mapped_column(Float, default=None)
    measured_run_ms: Mapped[float | None] = mapped_column(Float, default=None)
    """The slowest run measured at upload, in ms (null: pushed before runs were measured)."""
    run_cap_ms: Mapped[float | None] = mapped_column(Float, default=None)
    """The run-time cap an operator set, in ms (null: derived from ``measured_run_ms``)."""


class SharedBlob(Base):
    """Model bytes an operator marked shareable (a public model): their sessions may serve every tenant.

    Without a mark, identical bytes pushed by two tenants are loaded once per tenant, so a fast
    first request cannot tell one tenant that another holds the same model.
    """

    __tablename__ = "shared_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    marked_by: Mapped[str] = mapped_column(String(128))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelAlias(Base):
    """A named pointer (``stable`` or ``canary``) to a version; ``weight`` is the canary's share in percent."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(16), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    weight: Mapped[int] = mapped_column(Integer, default=0)


class AuditRecord(Base):
    """One audit event, hash-chained within its stream (one stream per replica): ``(stream, seq)`` is unique.

    ``body`` is the event's canonical JSON, the bytes the chain hashes; ``time``, ``kind``,
    ``tenant`` and ``request_id`` repeat fields of it for queries (verify checks they agree).
    """

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_time", "time"), Index("ix_audit_records_tenant_time", "tenant", "time"))

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(63))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement that record ``seq`` of ``stream`` had chain hash ``hash``.

    ``kind`` is ``seal`` (every N records), ``close`` (clean shutdown) or ``cut`` (retention
    removed every record up to ``seq``); ``signature`` is HMAC-SHA256 under a key derived from
    the server secret, so a rewritten chain cannot be re-signed.
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_stream_seq", "stream", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str] = mapped_column(String(64))


class AuditStream(Base):
    """One row per audit stream, locked by every transaction that appends to it, so writers never race."""

    __tablename__ = "audit_streams"

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    commits: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditShipPosition(Base):
    """How far a named shipper (``warden audit ship --name``) has delivered one audit stream.

    Every record of ``stream`` with a seq up to ``seq`` was delivered to the shipper's target;
    the shipper moves ``seq`` forward only after its target has a batch, and only from the value
    it read (a second shipper of the same name is detected instead of skipping records).
    """

    __tablename__ = "audit_ship_positions"

    shipper: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Approval(Base):
    """A declared purpose for processing named datasets, requested by a tenant or recorded by an operator.

    ``state`` is the request's decision: ``pending``, then ``approved``, ``rejected`` or
    ``withdrawn``; an approved one may be ``revoked``. Only an approved one admits jobs (what
    ``warden job run`` and, later, the job service are admitted under). ``tenant_id`` is null for
    an approval recorded on the host (``warden approval create``), which is approved from the
    start with the operator as ``decided_by``. ``requested_by`` and ``decided_by`` are principal
    ids (an API key id, ``jwt:<sub>``, or ``cli:<user>``): separation of duties compares them.

    ``runs_used`` only grows, by one conditional UPDATE per admitted job, so two admissions
    racing for the last of ``max_runs`` cannot both win.
    """

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    max_runs: Mapped[int | None] = mapped_column(Integer, default=None)
    runs_used: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    allow_identifiers: Mapped[bool] = mapped_column(Boolean, default=False)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, default=None
    )
    state: Mapped[str] = mapped_column(String(16), default="approved", server_default="approved")
    requested_by: Mapped[str] = mapped_column(String(128), default="", server_default="")
    requested_by_kind: Mapped[str] = mapped_column(String(16), default="cli", server_default="cli")
    """How the requester authenticated: ``api_key``, ``jwt`` or ``cli`` (the host's command line)."""
    decided_by: Mapped[str | None] = mapped_column(String(128), default=None)
    """Who ended the pending state: the approver or rejecter, or the requester that withdrew it."""
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    """The decision's reason (required to reject, optional to approve, or the withdrawal's)."""
    revoked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    revoke_reason: Mapped[str | None] = mapped_column(Text, default=None)
    runtimes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """The runtimes a job under it may use; null allows any."""
    max_gpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    datasets: Mapped[list[ApprovalDataset]] = relationship(
        order_by="ApprovalDataset.position", cascade="all, delete-orphan", lazy="selectin"
    )
    dataset_refs: Mapped[list[ApprovalDatasetRef]] = relationship(
        order_by="ApprovalDatasetRef.position", cascade="all, delete-orphan", lazy="selectin"
    )
    tenant: Mapped[Tenant | None] = relationship(lazy="selectin")


class ApprovalDataset(Base):
    """One dataset an approval names: the path as given and its content sha256 (what admission compares)."""

    __tablename__ = "approval_datasets"

    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class ApprovalDatasetRef(Base):
    """One dataset a tenant's request names as ``name:version`` of its dataset service.

    Admission resolves each to the content hash of that stored version (and refuses an erased one).
    """

    __tablename__ = "approval_dataset_refs"
    __table_args__ = (Index("ix_approval_dataset_refs_name_version", "name", "version"),)

    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)


class ServerMeta(Base):
    """Facts every replica of one deployment must agree on (such as the server secret's fingerprint)."""

    __tablename__ = "server_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ConsoleSession(Base):
    """A signed-in console: the sha256 of its cookie's token (never the token), the key it was made from, expiry.

    The session dies with its key: a revoked key or a deleted tenant ends it at once.
    """

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
