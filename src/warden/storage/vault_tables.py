"""The vault's tables: each tenant's wrapped key, and each sealed object's wrapped data key.

Neither table holds a key in the clear: a tenant key is stored wrapped by the key-encryption
key (derived from the server secret, or a KMS), a data key wrapped by its tenant's key. An
erased object keeps its row with ``wrapped_key`` gone (crypto-shredding): the fact of erasure
and the content hash stay, the means to decrypt do not.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from warden.storage.tables import Base, UTCDateTime


class TenantKey(Base):
    """A tenant's key-wrapping key, itself wrapped by the key-encryption key named ``kek_id``."""

    __tablename__ = "tenant_keys"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SealedObject(Base):
    """One encrypted object (a dataset version, a job output): its wrapped data key, sizes and plaintext hash."""

    __tablename__ = "sealed_objects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
