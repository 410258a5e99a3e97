"""The vault: tenants' objects encrypted at rest under envelope keys, erasable by destroying their key.

Each object gets its own random AES-256 data key; the data key is stored wrapped by its tenant's
key, and the tenant's key wrapped by the key-encryption key (:mod:`warden.vault.wrapping`). The
ciphertext lives in ``root/<tenant id>/<object id>`` (0600 in 0700 folders), the wrapped data key in
the database. Erasure (:meth:`Vault.erase`) deletes the wrapped data key first (crypto-shredding:
a copy of the file, a backup of the disk, the database and the server secret together no longer
decrypt it), then the file; the row keeps the content hash and the time of erasure. Another
tenant's object answers exactly like a missing one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.errors import InvalidArgument, NotFound, ObjectErased
from warden.storage import Database, SealedObject, TenantKey
from warden.storage.tables import utcnow
from warden.vault.sealing import new_key, seal, unseal, unwrap_key, wrap_key
from warden.vault.wrapping import KeyWrapper

ID_PREFIX: Final = "obj_"
_ID: Final = re.compile(r"obj_[A-Za-z0-9_-]{22}")
_KIND: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class SealedView:
    """An object's public facts: id, kind, plaintext sha256 and size, when stored and when erased."""

    id: str
    kind: str
    sha256: str
    size_bytes: int
    created_at: datetime
    erased_at: datetime | None


class Vault:
    """Stores, reads and erases tenants' objects encrypted at rest (see the module docstring)."""

    def __init__(self, db: Database, wrapper: KeyWrapper, root: Path) -> None:
        self._db = db
        self._wrapper = wrapper
        self.root = root

    def put(self, tenant_id: int, kind: str, chunks: Iterable[bytes]) -> SealedView:
        """Encrypt ``chunks`` (the object's bytes, in any pieces) as a new object of ``kind`` for the tenant."""
        if not _KIND.fullmatch(kind):
            raise InvalidArgument(f"an object kind is a short lowercase name, got {kind!r}")
        object_id = ID_PREFIX + secrets.token_urlsafe(16)
        data_key, digest = new_key(), hashlib.sha256()
        folder = self._folder(tenant_id)
        target = folder / object_id
        scratch = folder / f".{object_id}.partial"

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                digest.update(chunk)
                yield chunk

        try:
            with os.fdopen(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                size = seal(data_key, _object_context(tenant_id, object_id), hashed(), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, target)
            row = SealedObject(
                id=object_id,
                tenant_id=tenant_id,
                kind=kind,
                wrapped_key=wrap_key(self._tenant_key(tenant_id), data_key, _object_context(tenant_id, object_id)),
                sha256=digest.hexdigest(),
                size_bytes=size,
                created_at=utcnow(),
            )
            with self._db.session() as session:
                session.add(row)
                session.flush()
                return _view(row)
        except BaseException:
            for path in (scratch, target):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise

    def get(self, tenant_id: int, object_id: str) -> SealedView:
        """The object's facts (erased ones too); ``NotFound`` for a missing or another tenant's object."""
        with self._db.session() as session:
            return _view(self._row(session, tenant_id, object_id))

    def open(self, tenant_id: int, object_id: str) -> Iterator[bytes]:
        """The object's plaintext, a verified chunk at a time; ``ObjectErased`` once erased.

        ``StorageCorrupt`` if the file or a key was changed; a caller that must not act on part of
        an object reads it to the end before using it.
        """
        with self._db.session() as session:
            row = self._row(session, tenant_id, object_id)
            if row.wrapped_key is None:
                raise ObjectErased(f"object {object_id} was erased")
            wrapped = row.wrapped_key
        context = _object_context(tenant_id, object_id)
        data_key = unwrap_key(self._tenant_key(tenant_id), wrapped, context)
        with (self._folder(tenant_id) / object_id).open("rb") as source:
            yield from unseal(data_key, context, source)

    def read(self, tenant_id: int, object_id: str) -> bytes:
        """The whole plaintext of an object (for small ones: it is held in memory)."""
        return b"".join(self.open(tenant_id, object_id))

    def erase(self, tenant_id: int, object_id: str) -> SealedView:
        """Destroy the object's data key, then its ciphertext; the row keeps its hash and the time of erasure."""
        with self._db.session() as session:
            row = self._row(session, tenant_id, object_id)
            if row.erased_at is None:
                row.wrapped_key, row.erased_at = None, utcnow()
            view = _view(row)
        with contextlib.suppress(FileNotFoundError):
            (self._folder(tenant_id) / object_id).unlink()
        return view

    def forget_tenant(self, tenant_id: int) -> int:
        """Erase everything of a tenant at once by destroying its key, then its objects' rows and files."""
        with self._db.session() as session:
            session.execute(delete(TenantKey).where(TenantKey.tenant_id == tenant_id))
            erased = session.execute(delete(SealedObject).where(SealedObject.tenant_id == tenant_id))
            count = int(getattr(erased, "rowcount", 0) or 0)
        folder = self.root / str(tenant_id)
        if folder.is_dir():
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()
        return count

    def _row(self, session: Session, tenant_id: int, object_id: str) -> SealedObject:
        row = session.get(SealedObject, object_id) if _ID.fullmatch(object_id) else None
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no object {object_id!r}")
        return row

    def _folder(self, tenant_id: int) -> Path:
        folder = self.root / str(int(tenant_id))
        for path in (self.root, folder):
            path.mkdir(mode=0o700, exist_ok=True, parents=True)
            os.chmod(path, 0o700)
        return folder

    def _tenant_key(self, tenant_id: int) -> bytes:
        """The tenant's key, made and stored wrapped on first use; rewrapped if a previous secret wrapped it."""
        context = _tenant_context(tenant_id)
        with self._db.session() as session:
            row = session.get(TenantKey, tenant_id)
            if row is not None:
                key = self._wrapper.unwrap(row.wrapped, context, row.kek_id)
                if row.kek_id != self._wrapper.kek_id:
                    row.wrapped, row.kek_id = self._wrapper.wrap(key, context), self._wrapper.kek_id
                return key
        key = new_key()
        try:
            with self._db.session() as session:
                session.add(
                    TenantKey(
                        tenant_id=tenant_id,
                        wrapped=self._wrapper.wrap(key, context),
                        kek_id=self._wrapper.kek_id,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:  # another process made it first: use theirs
            return self._tenant_key(tenant_id)
        return key


def _tenant_context(tenant_id: int) -> bytes:
    return b"warden tenant key:%d" % tenant_id


def _object_context(tenant_id: int, object_id: str) -> bytes:
    return b"warden object:%d:%s" % (tenant_id, object_id.encode())


def _view(row: SealedObject) -> SealedView:
    return SealedView(row.id, row.kind, row.sha256, row.size_bytes, row.created_at, row.erased_at)
