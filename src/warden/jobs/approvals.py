"""Approvals: a declared purpose, the datasets it covers, its limits, and who asked and who allowed it.

A training job on personal data starts only under an approved approval (see :mod:`warden.jobs.admission`).
Two kinds exist. One recorded on the host (``warden approval create``) names its datasets by
content, not by path: a file by its sha256, a directory by :func:`content_sha256` over its tree,
so an approval given for one dataset does not cover the same path once its content has changed
(symbolic links are refused anywhere in a dataset); it is an operator's approval, approved from
the start. A tenant's request (:mod:`warden.jobs.approval_requests`) names datasets of its dataset
service as ``name:version`` and is ``pending`` until an approver who did not request it decides.

Its :class:`ApprovalState` at a moment: ``pending``, ``rejected``, ``withdrawn`` or ``revoked`` as
decided; an approved one is ``expired`` past its expiry, ``exhausted`` when its runs are used, else
``active``: only an active one admits a job.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from warden.errors import ApprovalNotApproved, ApprovalNotFound, ApprovalRefusal, ApprovalRefused, InvalidArgument
from warden.storage import Database
from warden.storage.tables import Approval, ApprovalDataset, utcnow

ID_PREFIX: Final = "apr_"
ID_PATTERN: Final = re.compile(r"apr_[A-Za-z0-9_-]{16}")
"""Approval ids; always used with ``fullmatch``."""
MAX_PURPOSE: Final = 500
MAX_DATASETS: Final = 15
"""At most this many datasets per approval, so that every hash fits one audit record (a directory is one)."""
_CHUNK: Final = 1 << 20


HOST_KIND: Final = "cli"
"""``requested_by_kind`` of an approval recorded on the host's command line (its principal is ``cli:<user>``)."""


class Decision(StrEnum):
    """What was decided about an approval, as stored: pending, then approved, rejected or withdrawn; approved, then
    revoked."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"


class ApprovalState(StrEnum):
    """Whether an approval admits jobs now; anything but ``active`` is the refusal's reason."""

    ACTIVE = "active"
    PENDING = "pending"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset an approval covers: the path as it was given, and its content hash."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset of a tenant's dataset service, by name and version; admission resolves it to a content hash."""

    name: str
    version: int

    def __str__(self) -> str:
        """``name:version``, as requests write it."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """An approval as the CLI and the API show it and admission checks it.

    ``datasets`` are a host approval's hashed datasets, ``dataset_refs`` a tenant request's
    ``name:version`` datasets. ``tenant_id`` is ``None`` for an approval recorded on the host.
    """

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
    tenant_id: int | None
    tenant: str | None
    decision: Decision
    requested_by: str
    requested_by_kind: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    revoked_by: str | None
    revoke_reason: str | None
    dataset_refs: tuple[DatasetRef, ...]
    runtimes: tuple[str, ...] | None
    max_gpus: int

    def state(self, now: datetime) -> ApprovalState:
        """Revoked, rejected or withdrawn as decided; then expired (``now`` at or past ``expires_at``, pending or
        approved); then pending; then exhausted; else active."""
        if self.decision is Decision.REVOKED or self.revoked_at is not None:
            return ApprovalState.REVOKED
        if self.decision is Decision.REJECTED:
            return ApprovalState.REJECTED
        if self.decision is Decision.WITHDRAWN:
            return ApprovalState.WITHDRAWN
        if self.expires_at is not None and now >= self.expires_at:
            return ApprovalState.EXPIRED
        if self.decision is Decision.PENDING:
            return ApprovalState.PENDING
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
    """Owns the ``approvals``, ``approval_datasets`` and ``approval_dataset_refs`` tables; every method is one
    transaction.

    ``clock`` gives the current time (aware, UTC); tests pass a fixed one to probe expiry. Tenants'
    requests and their decisions go through :class:`~warden.jobs.approval_requests.ApprovalDesk`
    over this service.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> Database:
        """The database the approvals are kept in."""
        return self._db

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
        """Record an operator's approval for ``purpose`` over ``datasets`` (hashed now); its id is random and URL-safe.

        It is bound to no tenant and approved at once: requested and decided by ``cli:<created_by>``
        (the host's user). ``InvalidArgument`` for an empty or long purpose, no datasets, more than
        :data:`MAX_DATASETS`, a naive or past ``expires_at``, ``max_runs`` below 1, or a dataset with
        links in it; ``OSError`` when a dataset cannot be read.
        """
        check_purpose(purpose)
        if not datasets:
            raise InvalidArgument("an approval needs at least one dataset")
        if len(datasets) > MAX_DATASETS:
            raise InvalidArgument(
                f"an approval covers at most {MAX_DATASETS} datasets; put related files in one directory"
            )
        now = self._clock()
        check_limits(now, expires_at, max_runs)
        hashed = [Dataset(str(path), content_sha256(path)) for path in datasets]
        operator = f"{HOST_KIND}:{created_by}"
        row = new_row(
            now,
            purpose=purpose,
            created_by=created_by,
            expires_at=expires_at,
            max_runs=max_runs,
            allow_identifiers=allow_identifiers,
            state=Decision.APPROVED.value,
            requested_by=operator,
            requested_by_kind=HOST_KIND,
            decided_by=operator,
            decided_at=now,
            datasets=[ApprovalDataset(position=n, path=d.path, sha256=d.sha256) for n, d in enumerate(hashed)],
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()
            return view_of(row)

    def get(self, approval_id: str) -> ApprovalView:
        """One approval by id, of any tenant or none; ``ApprovalNotFound`` otherwise."""
        with self._db.session() as session:
            return view_of(find(session, approval_id, None))

    def list_approvals(self) -> list[ApprovalView]:
        """Every approval, of every tenant and the host's, oldest first."""
        with self._db.session() as session:
            return [view_of(a) for a in session.scalars(select(Approval).order_by(Approval.created_at, Approval.id))]

    def revoke(
        self, approval_id: str, *, by: str | None = None, reason: str | None = None, tenant_id: int | None = None
    ) -> ApprovalView:
        """Revoke an approved approval: no job starts under it again (idempotent: the first revocation is kept).

        ``by`` is the revoking principal's id, ``reason`` why; with ``tenant_id``, only an approval of
        that tenant is found (another's answers ``ApprovalNotFound``, like a missing one). A request
        that was never approved (pending, rejected, withdrawn) is ``ApprovalNotApproved``.
        """
        now = self._clock()
        with self._db.session() as session:
            changed, row = transition(
                session,
                approval_id,
                tenant_id,
                [Approval.state == Decision.APPROVED.value, Approval.revoked_at.is_(None)],
                {"state": Decision.REVOKED.value, "revoked_at": now, "revoked_by": by, "revoke_reason": reason},
            )
            if not changed and row.state != Decision.REVOKED.value and row.revoked_at is None:
                raise ApprovalNotApproved(f"approval {row.id} is {row.state}, not approved: there is nothing to revoke")
            return view_of(row)

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
                    Approval.state == Decision.APPROVED.value,
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
                raise refusal(None if row is None else view_of(row), now, approval_id)
            return view_of(row)


def refusal(approval: ApprovalView | None, now: datetime, approval_id: str) -> ApprovalRefused:
    """The refusal for an approval that is missing or not active at ``now``."""
    if approval is None:
        return ApprovalRefused(ApprovalRefusal.NOT_FOUND, f"no approval with id {approval_id!r}")
    state = approval.state(now)
    if state in (ApprovalState.PENDING, ApprovalState.REJECTED, ApprovalState.WITHDRAWN):
        return ApprovalRefused(
            ApprovalRefusal.NOT_APPROVED, f"approval {approval.id} is {state.value}: only an approved one admits jobs"
        )
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


def check_limits(now: datetime, expires_at: datetime | None, max_runs: int | None) -> None:
    """An expiry must be aware and in the future, a run budget at least 1; ``InvalidArgument`` otherwise."""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidArgument("the expiry needs a UTC offset (e.g. 2026-12-31T00:00:00+00:00)")
        if expires_at <= now:
            raise InvalidArgument(f"the expiry {expires_at.isoformat()} is not in the future")
    if max_runs is not None and max_runs < 1:
        raise InvalidArgument(f"max runs must be at least 1, got {max_runs}")


def new_row(now: datetime, **values: object) -> Approval:
    """A new ``approvals`` row with a random, URL-safe id, created ``now``, with no run used yet."""
    return Approval(id=ID_PREFIX + secrets.token_urlsafe(12), created_at=now, runs_used=0, revoked_at=None, **values)


def find(session: Session, approval_id: str, tenant_id: int | None) -> Approval:
    """The approval of that id (of tenant ``tenant_id`` only, when given); ``ApprovalNotFound`` otherwise.

    Another tenant's approval raises exactly what a missing one does.
    """
    row = session.get(Approval, approval_id) if ID_PATTERN.fullmatch(approval_id) else None
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        raise ApprovalNotFound(f"no approval with id {approval_id!r}")
    return row


def transition(
    session: Session,
    approval_id: str,
    tenant_id: int | None,
    conditions: Sequence[ColumnElement[bool]],
    values: Mapping[str, object],
) -> tuple[bool, Approval]:
    """Change an approval by one conditional UPDATE, then read it; whether it changed, and the row as it is now.

    The UPDATE comes first so that the transaction writes before it reads (SQLite then takes its
    write lock at once instead of failing to upgrade a stale read), and so that two callers racing
    cannot both see the state they need. ``ApprovalNotFound`` as :func:`find` says.
    """
    changed = 0
    if ID_PATTERN.fullmatch(approval_id):
        scoped = [] if tenant_id is None else [Approval.tenant_id == tenant_id]
        result = session.execute(
            update(Approval)
            .where(Approval.id == approval_id, *scoped, *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        changed = result.rowcount  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
    return changed == 1, find(session, approval_id, tenant_id)


def view_of(row: Approval) -> ApprovalView:
    """The view of a row (read inside its session)."""
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
        tenant_id=row.tenant_id,
        tenant=row.tenant.name if row.tenant is not None else None,
        decision=Decision(row.state),
        requested_by=row.requested_by,
        requested_by_kind=row.requested_by_kind,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason=row.reason,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
        dataset_refs=tuple(DatasetRef(d.name, d.version) for d in row.dataset_refs),
        runtimes=tuple(row.runtimes) if row.runtimes is not None else None,
        max_gpus=row.max_gpus,
    )
