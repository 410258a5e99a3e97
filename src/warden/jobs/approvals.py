"""Approvals: a declared purpose, the content hashes of the datasets it covers, and its limits.

A training job on personal data starts only under an approval (see :mod:`warden.jobs.admission`).
An approval names its datasets by content, not by path: a file by its sha256, a directory by
:func:`content_sha256` over its tree, so an approval given for one dataset does not cover the
same path once its content has changed. Symbolic links are refused anywhere in a dataset.

Every run taken under an approval is counted by one conditional UPDATE (:meth:`ApprovalService.consume`):
the database, not the caller, decides whether the last of ``max_runs`` is still free, whether the
approval has expired and whether it was revoked.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from warden.errors import ApprovalNotFound, ApprovalRefusal, ApprovalRefused, InvalidArgument
from warden.storage import Database
from warden.storage.tables import Approval, ApprovalDataset, utcnow

ID_PREFIX: Final = "apr_"
ID_PATTERN: Final = re.compile(r"apr_[A-Za-z0-9_-]{16}")
"""Approval ids; always used with ``fullmatch``."""
MAX_PURPOSE: Final = 500
MAX_DATASETS: Final = 15
"""At most this many datasets per approval, so that every hash fits one audit record (a directory is one)."""
_CHUNK: Final = 1 << 20


class ApprovalState(StrEnum):
    """Whether an approval admits jobs now; anything but ``active`` is the refusal's reason."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset an approval covers: the path as it was given, and its content hash."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """An approval as the CLI shows it and admission checks it."""

    id: str
    purpose: str
    datasets: tuple[Dataset, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    max_runs: int | None
    runs_used: int
    revoked_at: datetime | None
    allow_identifiers: bool

    def state(self, now: datetime) -> ApprovalState:
        """Revoked first, then expired (``now`` at or past ``expires_at``), then exhausted, else active."""
        if self.revoked_at is not None:
            return ApprovalState.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return ApprovalState.EXPIRED
        if self.max_runs is not None and self.runs_used >= self.max_runs:
            return ApprovalState.EXHAUSTED
        return ApprovalState.ACTIVE

    @property
    def hashes(self) -> frozenset[str]:
        """The content hashes of the approved datasets."""
        return frozenset(d.sha256 for d in self.datasets)


def content_sha256(path: Path) -> str:
    """The content hash of a dataset: a file's sha256, or for a directory a sha256 over its tree.

    A directory's hash covers every entry's path relative to it (sorted, ``/``-separated) with
    each file's sha256 and each subdirectory's name, so it does not depend on listing order and
    changes when any file, name or subdirectory does. Symbolic links and special files (FIFOs,
    devices, sockets) are refused with ``InvalidArgument``; a missing path raises ``OSError``.
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise InvalidArgument(f"{path}: a symbolic link; give the path it points to")
    if stat.S_ISREG(mode):
        return _file_sha256(path)
    if not stat.S_ISDIR(mode):
        raise InvalidArgument(f"{path}: not a regular file or directory")
    entries: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(path, onerror=_raise, followlinks=False):
        base = Path(root)
        for name in (*dirs, *files):
            full = base / name
            relative = full.relative_to(path).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise InvalidArgument(f"{full}: a symbolic link inside a dataset directory; links are refused")
            if stat.S_ISDIR(mode):
                entries.append((relative, "dir"))
            elif stat.S_ISREG(mode):
                entries.append((relative, _file_sha256(full)))
            else:
                raise InvalidArgument(f"{full}: not a regular file or directory")
    digest = hashlib.sha256(b"warden-dataset-tree-v1\n")
    for relative, value in sorted(entries):
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0" + value.encode() + b"\n")
    return digest.hexdigest()


def _raise(error: OSError) -> None:
    raise error


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_purpose(purpose: str) -> str:
    """A purpose is 1-500 characters of text that is not only whitespace, without control characters."""
    if not purpose.strip():
        raise InvalidArgument("the purpose must not be empty")
    if len(purpose) > MAX_PURPOSE:
        raise InvalidArgument(f"the purpose is {len(purpose)} characters long; at most {MAX_PURPOSE} are allowed")
    if any(ord(c) < 32 and c not in "\t\n" for c in purpose):
        raise InvalidArgument("the purpose must not hold control characters")
    return purpose


class ApprovalService:
    """Owns the ``approvals`` and ``approval_datasets`` tables; every method is one transaction.

    ``clock`` gives the current time (aware, UTC); tests pass a fixed one to probe expiry.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    def now(self) -> datetime:
        """The service's current time."""
        return self._clock()

    def create(
        self,
        purpose: str,
        datasets: Sequence[Path],
        *,
        created_by: str,
        expires_at: datetime | None = None,
        max_runs: int | None = None,
        allow_identifiers: bool = False,
    ) -> ApprovalView:
        """Record an approval for ``purpose`` over ``datasets`` (hashed now); its id is random and URL-safe.

        ``InvalidArgument`` for an empty or long purpose, no datasets, more than :data:`MAX_DATASETS`,
        a naive or past ``expires_at``, ``max_runs`` below 1, or a dataset with links in it; ``OSError``
        when a dataset cannot be read.
        """
        check_purpose(purpose)
        if not datasets:
            raise InvalidArgument("an approval needs at least one dataset")
        if len(datasets) > MAX_DATASETS:
            raise InvalidArgument(
                f"an approval covers at most {MAX_DATASETS} datasets; put related files in one directory"
            )
        now = self._clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidArgument("the expiry needs a UTC offset (e.g. 2026-12-31T00:00:00+00:00)")
            if expires_at <= now:
                raise InvalidArgument(f"the expiry {expires_at.isoformat()} is not in the future")
        if max_runs is not None and max_runs < 1:
            raise InvalidArgument(f"max runs must be at least 1, got {max_runs}")
        hashed = [Dataset(str(path), content_sha256(path)) for path in datasets]
        row = Approval(
            id=ID_PREFIX + secrets.token_urlsafe(12),
            purpose=purpose,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
            max_runs=max_runs,
            runs_used=0,
            revoked_at=None,
            allow_identifiers=allow_identifiers,
            datasets=[ApprovalDataset(position=n, path=d.path, sha256=d.sha256) for n, d in enumerate(hashed)],
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()
            return _view(row)

    def get(self, approval_id: str) -> ApprovalView:
        """One approval by id; ``ApprovalNotFound`` otherwise."""
        with self._db.session() as session:
            return _view(_approval(session, approval_id))

    def list_approvals(self) -> list[ApprovalView]:
        """Every approval, oldest first."""
        with self._db.session() as session:
            return [_view(a) for a in session.scalars(select(Approval).order_by(Approval.created_at, Approval.id))]

    def revoke(self, approval_id: str) -> ApprovalView:
        """Revoke an approval (idempotent: the first revocation's time is kept); no job starts under it again."""
        with self._db.session() as session:
            row = _approval(session, approval_id)
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            return _view(row)

    def consume(self, approval_id: str) -> ApprovalView:
        """Take one run of an approval, atomically; ``ApprovalRefused`` when it is not active.

        One conditional UPDATE both checks and counts, so concurrent callers cannot take more
        runs than ``max_runs`` allows, nor a run after a concurrent revocation.
        """
        now = self._clock()
        if ID_PATTERN.fullmatch(approval_id) is None:
            raise refusal(None, now, approval_id)
        with self._db.session() as session:
            taken = session.scalar(
                update(Approval)
                .where(
                    Approval.id == approval_id,
                    Approval.revoked_at.is_(None),
                    Approval.expires_at.is_(None) | (Approval.expires_at > now),
                    Approval.max_runs.is_(None) | (Approval.runs_used < Approval.max_runs),
                )
                .values(runs_used=Approval.runs_used + 1)
                .returning(Approval.id)
                .execution_options(synchronize_session=False)
            )
            row = session.get(Approval, approval_id, populate_existing=True)
            if taken is None or row is None:
                raise refusal(None if row is None else _view(row), now, approval_id)
            return _view(row)


def refusal(approval: ApprovalView | None, now: datetime, approval_id: str) -> ApprovalRefused:
    """The refusal for an approval that is missing or not active at ``now``."""
    if approval is None:
        return ApprovalRefused(ApprovalRefusal.NOT_FOUND, f"no approval with id {approval_id!r}")
    state = approval.state(now)
    if state is ApprovalState.REVOKED:
        return ApprovalRefused(ApprovalRefusal.REVOKED, f"approval {approval.id} was revoked")
    if state is ApprovalState.EXPIRED:
        assert approval.expires_at is not None  # noqa: S101 - implied by the state
        return ApprovalRefused(
            ApprovalRefusal.EXPIRED, f"approval {approval.id} expired at {approval.expires_at.isoformat()}"
        )
    if state is ApprovalState.EXHAUSTED:
        return ApprovalRefused(
            ApprovalRefusal.EXHAUSTED, f"approval {approval.id} has used all of its {approval.max_runs} runs"
        )
    # Active now, yet the conditional update matched nothing: it changed in between; say what it is now.
    return ApprovalRefused(ApprovalRefusal.EXHAUSTED, f"approval {approval.id} could not take a run; try again")


def _approval(session: Session, approval_id: str) -> Approval:
    row = session.get(Approval, approval_id) if ID_PATTERN.fullmatch(approval_id) else None
    if row is None:
        raise ApprovalNotFound(f"no approval with id {approval_id!r}")
    return row


def _view(row: Approval) -> ApprovalView:
    return ApprovalView(
        id=row.id,
        purpose=row.purpose,
        datasets=tuple(Dataset(d.path, d.sha256) for d in row.datasets),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        max_runs=row.max_runs,
        runs_used=row.runs_used,
        revoked_at=row.revoked_at,
        allow_identifiers=row.allow_identifiers,
    )
