"""The datasets' tables: each tenant's sealed pseudonymisation key, and each dataset version's facts.

A dataset version's bytes live in the vault (``object_id``); its row keeps what may be said of it
without its content: hashes, sizes, rows, the de-identification report (counts and operators,
never values) and who pushed and erased it. Erasure keeps the row (the fact and the hashes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from warden.storage.tables import Base, UTCDateTime


class DatasetKey(Base):
    """A tenant's de-identification key (a ``DeidKey`` secret), stored sealed in the vault as ``object_id``."""

    __tablename__ = "dataset_keys"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetVersion(Base):
    """One pushed version of a tenant's dataset: the de-identified content's vault object, hashes and report."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version", name="uq_dataset_versions_tenant_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(40))
    sha256: Mapped[str] = mapped_column(String(64))
    source_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    erased_by: Mapped[str | None] = mapped_column(String(200), default=None)
