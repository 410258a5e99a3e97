"""What the dataset service answers: a version's facts and a dataset's versions, with their JSON forms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warden.storage import DatasetVersion


@dataclass(frozen=True, slots=True)
class DatasetVersionView:
    """One version: the stored (de-identified) content's sha256 and size, the upload's, rows and the scan report.

    The report holds counts, operators and k, never a value of the data.
    """

    name: str
    version: int
    format: str
    policy: str
    sha256: str
    size_bytes: int
    source_sha256: str
    source_bytes: int
    rows: int
    key_id: str
    report: dict[str, Any]
    created_at: datetime
    created_by: str
    erased_at: datetime | None
    erased_by: str | None

    @property
    def erased(self) -> bool:
        """Whether this version was erased (its data key destroyed: no copy of it can be decrypted)."""
        return self.erased_at is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the HTTP answer and ``--json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "policy": self.policy,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "source_sha256": self.source_sha256,
            "source_bytes": self.source_bytes,
            "rows": self.rows,
            "key_id": self.key_id,
            "report": self.report,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "erased": self.erased,
            "erased_at": None if self.erased_at is None else self.erased_at.isoformat(),
            "erased_by": self.erased_by,
        }

    @classmethod
    def of(cls, row: DatasetVersion) -> DatasetVersionView:
        """The view of a stored row."""
        return cls(
            row.name,
            row.version,
            row.format,
            row.policy,
            row.sha256,
            row.size_bytes,
            row.source_sha256,
            row.source_bytes,
            row.rows,
            row.key_id,
            dict(row.report),
            row.created_at,
            row.created_by,
            row.erased_at,
            row.erased_by,
        )


@dataclass(frozen=True, slots=True)
class DatasetView:
    """A dataset: its name and every version pushed, oldest first (erased ones keep their facts)."""

    name: str
    versions: tuple[DatasetVersionView, ...]

    @property
    def latest(self) -> DatasetVersionView | None:
        """The newest version not erased; ``None`` when all are."""
        live = [v for v in self.versions if not v.erased]
        return live[-1] if live else None

    @property
    def stored_bytes(self) -> int:
        """Bytes the versions not erased occupy (what counts against the tenant's quota)."""
        return sum(v.size_bytes for v in self.versions if not v.erased)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        latest = self.latest
        return {
            "name": self.name,
            "latest_version": None if latest is None else latest.version,
            "stored_bytes": self.stored_bytes,
            "erased": latest is None,
            "versions": [v.to_dict() for v in self.versions],
        }
