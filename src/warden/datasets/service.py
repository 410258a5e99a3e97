"""Tenants' datasets: uploads de-identified on ingestion under the tenant's own key, stored sealed, erasable.

:meth:`DatasetService.push` stages the upload in a private folder on a tmpfs (never a disk), runs
the :class:`~warden.privacy.deid.Deidentifier`'s automatic policy on it under the tenant's
pseudonymisation key, and streams only the result into the vault; the staging folder is removed
however the push ends. Each push is a new version (1, 2, …) whose row keeps the stored content's
sha256, the upload's sha256, rows and the scan report (entities per column, what was done, k),
never a value. :meth:`DatasetService.delete` erases versions through the vault (crypto-shredding);
their rows stay, with their hashes and the fact of erasure.

The tenant's pseudonymisation key (a :class:`~warden.privacy.keys.DeidKey`) is made on the
tenant's first push and stored sealed in the vault (kind ``deid_key``): pseudonyms are stable
within a tenant and differ across tenants. Another tenant's dataset answers exactly like a
missing one (``dataset_not_found``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.datasets.report import report_of
from warden.datasets.staging import read_chunks, staging, write_private
from warden.datasets.views import DatasetVersionView, DatasetView
from warden.errors import (
    DatasetNotFound,
    InvalidArgument,
    PayloadTooLarge,
    PolicyUnavailable,
    StorageQuotaExceeded,
    UnsupportedDatasetFormat,
)
from warden.privacy.deid import AnalyzerFactory, Deidentifier, default_analyzer
from warden.privacy.keys import DeidKey
from warden.privacy.tables import Format
from warden.settings import NAME_REGEX
from warden.storage import Database, DatasetKey, DatasetVersion
from warden.storage.tables import utcnow
from warden.vault import Vault

FORMATS: Final = {"csv": Format.CSV, "jsonl": Format.JSONL, "parquet": Format.PARQUET, "text": Format.TEXT}
"""The formats a dataset may have, by the name a push gives."""
LATER_FORMATS: Final = frozenset({"images", "image", "tar", "zip", "tgz", "tar.gz"})
POLICIES: Final = frozenset({"auto"})
_SUFFIX: Final = {Format.CSV: ".csv", Format.JSONL: ".jsonl", Format.PARQUET: ".parquet", Format.TEXT: ".txt"}
_NAME: Final = re.compile(NAME_REGEX)
_VERSION_TRIES: Final = 5
QUOTA_RETRY_SECONDS: Final = 3600.0
"""What ``Retry-After`` says past the storage quota: room comes back only when versions are erased."""


class DatasetService:
    """Pushes, lists, reads and erases tenants' datasets (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        *,
        staging_dir: Path,
        max_bytes: int,
        quota_bytes: int,
        ner: bool = True,
        analyzer_factory: AnalyzerFactory = default_analyzer,
    ) -> None:
        self._db = db
        self._vault = vault
        self.staging_dir = staging_dir
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        # One de-identifier for every push, so the NER pipeline loads once; the lock gives each push its
        # tenant's key alone (runs are serialised: the analyzers are not known to be thread-safe).
        self._deid = Deidentifier(ner=ner, analyzer_factory=analyzer_factory)
        self._lock = threading.Lock()

    def push(
        self, tenant_id: int, name: str, data: bytes, fmt: str, policy: str = "auto", *, actor: str
    ) -> DatasetVersionView:
        """De-identify ``data`` (in format ``fmt``) by ``policy`` and store the result as the next version."""
        check_name(name)
        form = check_format(fmt)
        if policy not in POLICIES:
            raise PolicyUnavailable(f"policy {policy!r} is not offered yet; use policy=auto")
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"the upload is {len(data)} bytes; WARDEN_MAX_DATASET_BYTES is {self.max_bytes}")
        if not data:
            raise InvalidArgument("the upload is empty")
        self._check_quota(tenant_id, 0)
        key = self._tenant_key(tenant_id)
        suffix = _SUFFIX[form]
        with staging(self.staging_dir) as folder:
            source, output = folder / f"upload{suffix}", folder / f"deidentified{suffix}"
            write_private(source, data)
            with self._lock:
                self._deid.key = key
                try:
                    result = self._deid.auto(source, output, workers=1)
                finally:
                    self._deid.key = None
            source.unlink()  # the raw upload goes as soon as it is no longer needed
            size = output.stat().st_size
            self._check_quota(tenant_id, size)
            sealed = self._vault.put(tenant_id, "dataset", read_chunks(output))
        try:
            return self._record(
                tenant_id,
                name,
                {
                    "format": fmt,
                    "policy": policy,
                    "object_id": sealed.id,
                    "sha256": sealed.sha256,
                    "size_bytes": sealed.size_bytes,
                    "source_sha256": result.applied.input_sha256,
                    "source_bytes": len(data),
                    "rows": result.applied.rows,
                    "key_id": key.key_id,
                    "report": report_of(result),
                    "created_by": actor,
                },
            )
        except BaseException:
            self._vault.erase(tenant_id, sealed.id)
            raise

    def list(self, tenant_id: int) -> list[DatasetView]:
        """The tenant's datasets by name, each with every version (erased ones too)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.tenant_id == tenant_id)
                .order_by(DatasetVersion.name, DatasetVersion.version)
            ).all()
            views = [DatasetVersionView.of(row) for row in rows]
        by_name: dict[str, list[DatasetVersionView]] = {}
        for view in views:
            by_name.setdefault(view.name, []).append(view)
        return [DatasetView(name, tuple(versions)) for name, versions in by_name.items()]

    def get(self, tenant_id: int, name: str) -> DatasetView:
        """One dataset with its versions; ``dataset_not_found`` when the tenant has none of that name."""
        versions = self._versions(tenant_id, name, None)
        return DatasetView(name, tuple(versions))

    def version(self, tenant_id: int, name: str, version: int | None = None) -> DatasetVersionView:
        """One version (``None``: the newest not erased); ``dataset_not_found`` when there is none."""
        if version is not None:
            return self._versions(tenant_id, name, version)[0]
        latest = self.get(tenant_id, name).latest
        if latest is None:
            raise DatasetNotFound(f"every version of dataset {name!r} was erased")
        return latest

    def open(self, tenant_id: int, name: str, version: int | None = None) -> Iterator[bytes]:
        """A version's stored (de-identified) content, a verified chunk at a time; ``object_erased`` once erased."""
        view = self.version(tenant_id, name, version)
        with self._db.session() as session:
            object_id = self._row(session, tenant_id, name, view.version).object_id
        return self._vault.open(tenant_id, object_id)

    def read(self, tenant_id: int, name: str, version: int | None = None) -> bytes:
        """The whole stored content of a version (held in memory: for small datasets and tests)."""
        return b"".join(self.open(tenant_id, name, version))

    def delete(
        self, tenant_id: int, name: str, version: int | None = None, *, actor: str
    ) -> tuple[DatasetVersionView, ...]:
        """Erase one version, or every version, through the vault; the rows keep hashes and the fact of erasure."""
        targets = self._versions(tenant_id, name, version)
        done: list[DatasetVersionView] = []
        for target in targets:
            with self._db.session() as session:
                object_id = self._row(session, tenant_id, name, target.version).object_id
            self._vault.erase(tenant_id, object_id)  # the data key first: from here on nothing decrypts it
            with self._db.session() as session:
                row = self._row(session, tenant_id, name, target.version)
                if row.erased_at is None:
                    row.erased_at, row.erased_by = utcnow(), actor
                done.append(DatasetVersionView.of(row))
        return tuple(done)

    def stored_bytes(self, tenant_id: int) -> int:
        """Bytes of the tenant's versions not erased (what the quota counts)."""
        with self._db.session() as session:
            total = session.scalar(
                select(func.coalesce(func.sum(DatasetVersion.size_bytes), 0)).where(
                    DatasetVersion.tenant_id == tenant_id, DatasetVersion.erased_at.is_(None)
                )
            )
        return int(total or 0)

    def _check_quota(self, tenant_id: int, adding: int) -> None:
        used = self.stored_bytes(tenant_id)
        if used + adding > self.quota_bytes or (adding == 0 and used >= self.quota_bytes and self.quota_bytes > 0):
            raise StorageQuotaExceeded(
                f"the tenant stores {used} bytes of datasets; with {adding} more it would pass "
                f"WARDEN_DATASET_QUOTA_BYTES ({self.quota_bytes}); erase versions to make room",
                QUOTA_RETRY_SECONDS,
            )

    def _record(self, tenant_id: int, name: str, facts: dict[str, Any]) -> DatasetVersionView:
        """Insert the next version's row; a concurrent push of the same name makes it try the next number."""
        for attempt in range(_VERSION_TRIES):
            try:
                with self._db.session() as session:
                    latest = session.scalar(
                        select(func.max(DatasetVersion.version)).where(
                            DatasetVersion.tenant_id == tenant_id, DatasetVersion.name == name
                        )
                    )
                    row = DatasetVersion(
                        tenant_id=tenant_id, name=name, version=int(latest or 0) + 1, created_at=utcnow(), **facts
                    )
                    session.add(row)
                    session.flush()
                    return DatasetVersionView.of(row)
            except IntegrityError:
                if attempt == _VERSION_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _versions(self, tenant_id: int, name: str, version: int | None) -> Sequence[DatasetVersionView]:
        with self._db.session() as session:
            query = select(DatasetVersion).where(DatasetVersion.tenant_id == tenant_id, DatasetVersion.name == name)
            if version is not None:
                query = query.where(DatasetVersion.version == version)
            rows = session.scalars(query.order_by(DatasetVersion.version)).all()
            views = [DatasetVersionView.of(row) for row in rows]
        if not views:
            what = f"dataset {name!r}" if version is None else f"version {version} of dataset {name!r}"
            raise DatasetNotFound(f"no {what}")
        return views

    @staticmethod
    def _row(session: Session, tenant_id: int, name: str, version: int) -> DatasetVersion:
        row = session.scalars(
            select(DatasetVersion).where(
                DatasetVersion.tenant_id == tenant_id, DatasetVersion.name == name, DatasetVersion.version == version
            )
        ).one_or_none()
        if row is None:
            raise DatasetNotFound(f"no version {version} of dataset {name!r}")
        return row

    def _tenant_key(self, tenant_id: int) -> DeidKey:
        """The tenant's pseudonymisation key, made and sealed in the vault on first use."""
        with self._db.session() as session:
            row = session.get(DatasetKey, tenant_id)
            object_id = None if row is None else row.object_id
        if object_id is not None:
            return DeidKey(self._vault.read(tenant_id, object_id))
        key = DeidKey.generate()
        sealed = self._vault.put(tenant_id, "deid_key", [key.secret])
        try:
            with self._db.session() as session:
                session.add(
                    DatasetKey(tenant_id=tenant_id, object_id=sealed.id, key_id=key.key_id, created_at=utcnow())
                )
        except IntegrityError:  # another push made it first: use theirs
            self._vault.erase(tenant_id, sealed.id)
            return self._tenant_key(tenant_id)
        return key


def check_name(name: str) -> None:
    """Refuse (``invalid_argument``) a dataset name that is not a short lowercase name."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"a dataset name is lowercase letters, digits, '-' and '_' (at most 63), got {name!r}")


def check_format(fmt: str) -> Format:
    """The format a push names; ``unsupported_dataset_format`` for images, archives and unknown names."""
    form = FORMATS.get(fmt)
    if form is not None:
        return form
    later = " (images and archives are not stored yet)" if fmt in LATER_FORMATS else ""
    raise UnsupportedDatasetFormat(f"dataset format {fmt!r} is not supported{later}; use one of {', '.join(FORMATS)}")
