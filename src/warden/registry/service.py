"""The model registry: validated uploads, versions per model name, aliases and the canary split.

A tenant's model names live in that tenant only: every lookup is filtered by
the caller's tenant id, so another tenant's model and a missing one are the same
``ModelNotFound``, reached by the same query.

Identical bytes are stored once, but their loaded sessions are shared across tenants only
when an operator marked the bytes shareable (:meth:`ModelRegistry.share`, a public model) or
the server shares everything (``WARDEN_SHARE_MODELS=across-tenants``); a resolved version
says which (:attr:`ResolvedModel.shared`), so a tenant's first request cannot learn from its
speed that another tenant holds the same model.

Each version keeps the slowest run measured at upload and, where an operator set one, its
run-time cap; a resolved version carries the cap serving applies (:mod:`warden.registry.run_cap`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.caching import FreshCache
from warden.detection.model import DEFAULT_MEMORY_LIMIT
from warden.errors import Conflict, InvalidArgument, ModelNotFound, NotFound
from warden.registry.blobs import BlobStore
from warden.registry.run_cap import DEFAULT_MAX_RUN_MS, check_run_cap, effective_run_cap_ms
from warden.registry.validation import info_to_json, validate_model
from warden.registry.views import (
    MAX_BATCH_SIZE,
    MAX_QUEUE_DELAY_MS,
    AliasView,
    BatchSettings,
    ModelView,
    PushResult,
    ResolvedModel,
    SharedBlobView,
    VersionView,
)
from warden.storage import Database, Model, ModelAlias, ModelVersion
from warden.storage.tables import SharedBlob, utcnow
from warden.tenancy.service import NAME_PATTERN, check_name

__all__ = [
    "ALIASES",
    "CANARY",
    "MAX_BATCH_SIZE",
    "MAX_MARKER",
    "MAX_QUEUE_DELAY_MS",
    "MAX_VERSION",
    "STABLE",
    "ModelRegistry",
    "check_digest",
    "parse_reference",
    "parse_version",
]

STABLE: Final = "stable"
CANARY: Final = "canary"
ALIASES: Final = (STABLE, CANARY)
_PUSH_ATTEMPTS: Final = 3
MAX_VERSION: Final = 2**31 - 1
"""The largest version number (the databases' integer)."""
SHA256_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
"""A blob's name: its sha256 in lowercase hex (always matched whole)."""
MAX_MARKER: Final = 128
"""The longest ``marked_by`` of a shared blob."""
SERVER_BATCHING: Final = BatchSettings()
"""Batching left to the server's choice."""


@dataclass(frozen=True, slots=True)
class _Choice:
    """What a request for a model may be served by: the canary (with its weight in percent) or the default."""

    default: ResolvedModel
    canary: ResolvedModel | None = None
    weight: int = 0

    def pick(self, roll: float) -> ResolvedModel:
        return self.canary if self.canary is not None and roll * 100 < self.weight else self.default


class ModelRegistry:
    """Owns the ``models``, ``model_versions``, ``model_aliases`` and ``shared_blobs`` tables and the blob store."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        max_model_bytes: int,
        roll: Callable[[], float] = random.random,
        cache_seconds: float = 1.0,
        *,
        share_across_tenants: bool = False,
        session_memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_run_ms: int = DEFAULT_MAX_RUN_MS,
        threads: int | None = None,
    ) -> None:
        """``max_run_ms`` bounds every run at upload and every version's cap; ``threads`` are the validation
        session's intra-op threads (serving's, so that the measured runs are what serving sees)."""
        self._db = db
        self.blobs = blobs
        self._max_bytes = max_model_bytes
        self._roll = roll
        self._across = share_across_tenants
        self._memory_limit = session_memory_limit
        self.max_run_ms = max_run_ms
        self._threads = threads
        self._choices: FreshCache[tuple[int, str, int | None], _Choice] = FreshCache(cache_seconds)

    def push(
        self,
        tenant_id: int,
        name: str,
        data: bytes,
        *,
        alias: str | None = None,
        canary_weight: int | None = None,
        batching: BatchSettings = SERVER_BATCHING,
    ) -> PushResult:
        """Validate and store a new version of ``name``; optionally point an alias at it."""
        check_name("model", name)
        _check_alias(alias, canary_weight)
        batching.check({})
        if alias == CANARY and canary_weight is None:
            self._require_existing_canary(tenant_id, name)
        validated = validate_model(
            data, self._max_bytes, self._memory_limit, max_run_ms=self.max_run_ms, threads=self._threads
        )
        info = info_to_json(validated.info)
        batching.check(info)
        digest = self.blobs.put(data)
        for attempt in range(_PUSH_ATTEMPTS):
            try:
                pushed = self._record(
                    tenant_id=tenant_id,
                    name=name,
                    data=data,
                    digest=digest,
                    info=info,
                    measured_run_ms=validated.measured_run_ms,
                    alias=alias,
                    canary_weight=canary_weight,
                    batching=batching,
                )
            except IntegrityError:
                if attempt == _PUSH_ATTEMPTS - 1:
                    raise Conflict(f"model {name!r} is being changed concurrently; try again") from None
                continue
            self._choices.clear()
            # A garbage collection running between put and commit may have taken the blob: put it back.
            if not self.blobs.exists(digest):
                self.blobs.put(data)
            return pushed
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(
        self,
        *,
        tenant_id: int,
        name: str,
        data: bytes,
        digest: str,
        info: dict[str, Any],
        measured_run_ms: float,
        alias: str | None,
        canary_weight: int | None,
        batching: BatchSettings,
    ) -> PushResult:
        with self._db.session() as session:
            model = session.scalar(select(Model).where(Model.tenant_id == tenant_id, Model.name == name))
            if model is None:
                model = Model(tenant_id=tenant_id, name=name, created_at=utcnow())
                session.add(model)
                session.flush()
            latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id))
            row = ModelVersion(
                model_id=model.id,
                version=(latest or 0) + 1,
                sha256=digest,
                size_bytes=len(data),
                info=info,
                created_at=utcnow(),
                max_batch_size=batching.max_batch_size,
                max_queue_delay_ms=batching.max_queue_delay_ms,
                measured_run_ms=measured_run_ms,
            )
            session.add(row)
            session.flush()
            if alias is not None:
                _point(session, model.id, alias, row.id, canary_weight)
            return PushResult(name=name, version=row.version, sha256=digest)

    def _require_existing_canary(self, tenant_id: int, name: str) -> None:
        with self._db.session() as session:
            model = session.scalar(select(Model).where(Model.tenant_id == tenant_id, Model.name == name))
            exists = model is not None and session.get(ModelAlias, (model.id, CANARY)) is not None
        if not exists:
            raise InvalidArgument("a new canary alias needs a canary weight (percent of requests)")

    def set_alias(self, tenant_id: int, name: str, alias: str, version: int, canary_weight: int | None = None) -> None:
        """Point ``alias`` of ``name`` at ``version``."""
        _check_alias(alias, canary_weight)
        with self._db.session() as session:
            model = _model(session, tenant_id, name)
            row = _version(session, model, name, version)
            _point(session, model.id, alias, row.id, canary_weight)
        self._choices.clear()

    def set_batching(self, tenant_id: int, name: str, version: int, batching: BatchSettings) -> None:
        """Change a version's dynamic batching (``None`` fields go back to the server's choice)."""
        with self._db.session() as session:
            row = _version(session, _model(session, tenant_id, name), name, version)
            batching.check(row.info)
            row.max_batch_size, row.max_queue_delay_ms = batching.max_batch_size, batching.max_queue_delay_ms
        self._choices.clear()

    def set_run_cap(self, tenant_id: int, name: str, version: int, run_cap_ms: float | None) -> None:
        """Set a version's run-time cap, in ms (``None``: back to the cap derived from its measured runs).

        Refuses a value that is not above 0 and at most ``WARDEN_MAX_RUN_MS``.
        """
        check_run_cap(run_cap_ms, self.max_run_ms)
        with self._db.session() as session:
            row = _version(session, _model(session, tenant_id, name), name, version)
            row.run_cap_ms = run_cap_ms
        self._choices.clear()

    def list_models(self, tenant_id: int) -> list[ModelView]:
        """The tenant's models, by name, with versions and aliases."""
        with self._db.session() as session:
            models = session.scalars(select(Model).where(Model.tenant_id == tenant_id).order_by(Model.name)).all()
            return [_model_view(session, model, self.max_run_ms) for model in models]

    def get_model(self, tenant_id: int, name: str) -> ModelView:
        """One of the tenant's models; ``ModelNotFound`` otherwise."""
        with self._db.session() as session:
            return _model_view(session, _model(session, tenant_id, name), self.max_run_ms)

    def remove(self, tenant_id: int, name: str, version: int | None = None) -> None:
        """Remove a model, or one version of it, and collect blobs nobody references any more."""
        with self._db.session() as session:
            model = _model(session, tenant_id, name)
            if version is None:
                session.delete(model)
            else:
                session.delete(_version(session, model, name, version))
                session.flush()
                remaining = session.scalar(select(func.count()).where(ModelVersion.model_id == model.id))
                if not remaining:
                    session.delete(model)
        self._choices.clear()
        self.collect_garbage()

    def resolve(self, tenant_id: int, name: str, version: int | None = None) -> ResolvedModel:
        """The version serving a request: the one asked for, else canary (by weight) or stable, else the newest."""
        cached = self.resolve_cached(tenant_id, name, version)
        if cached is not None:
            return cached
        generation = self._choices.generation()
        with self._db.session() as session:
            model = _model(session, tenant_id, name)
            if version is not None:
                row = _version(session, model, name, version)
                choice = _Choice(_resolved(session, name, row, self._across, self.max_run_ms))
            else:
                choice = _choice(session, model, self._across, self.max_run_ms)
        self._choices.put((tenant_id, name, version), choice, generation)
        return choice.pick(self._roll())

    def resolve_cached(self, tenant_id: int, name: str, version: int | None = None) -> ResolvedModel | None:
        """:meth:`resolve` from a lookup less than a cache lifetime old (no database work), else ``None``."""
        choice = self._choices.get((tenant_id, name, version))
        return None if choice is None else choice.pick(self._roll())

    def share(self, digest: str, marked_by: str) -> SharedBlobView:
        """Mark the bytes of ``digest`` shareable: their sessions then serve every tenant that pushed them.

        Idempotent (the first mark is kept); ``NotFound`` when no version holds those bytes.
        """
        check_digest(digest)
        if not 1 <= len(marked_by) <= MAX_MARKER:
            raise InvalidArgument(f"who marks a blob shareable is named in 1-{MAX_MARKER} characters")
        try:
            with self._db.session() as session:
                mark = session.get(SharedBlob, digest)
                if mark is None:
                    if not _held(session, digest):
                        raise NotFound(f"no model version holds bytes with sha256 {digest}")
                    mark = SharedBlob(sha256=digest, marked_by=marked_by, marked_at=utcnow())
                    session.add(mark)
                    session.flush()
                view = SharedBlobView(mark.sha256, mark.marked_by, mark.marked_at)
        except IntegrityError:  # marked concurrently: the other mark stands
            with self._db.session() as session:
                kept = session.get(SharedBlob, digest)
                if kept is None:  # pragma: no cover - unmarked again in between
                    raise Conflict(f"blob {digest} is being changed concurrently; try again") from None
                view = SharedBlobView(kept.sha256, kept.marked_by, kept.marked_at)
        self._choices.clear()
        return view

    def unshare(self, digest: str) -> bool:
        """Remove the mark (idempotent): each tenant loads its own session of these bytes from its next request.

        Returns whether a mark was removed; ``NotFound`` when the bytes are neither marked nor held.
        """
        check_digest(digest)
        with self._db.session() as session:
            mark = session.get(SharedBlob, digest)
            if mark is None and not _held(session, digest):
                raise NotFound(f"no model version holds bytes with sha256 {digest}")
            if mark is not None:
                session.delete(mark)
        self._choices.clear()
        return mark is not None

    def collect_garbage(self) -> set[str]:
        """Delete blobs no version references, and their shareable marks; returns their digests."""
        with self._db.session() as session:
            session.execute(delete(SharedBlob).where(~_held_by_a_version(SharedBlob.sha256)))
            used = set(session.scalars(select(ModelVersion.sha256).distinct()))
        orphans = self.blobs.digests() - used
        for digest in orphans:
            self.blobs.delete(digest)
        return orphans


def parse_version(text: str) -> int | None:
    """A version number written as text (ASCII digits, 1 to ``MAX_VERSION``), or ``None`` when it is not one."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_VERSION:
        return None
    return int(text)


def parse_reference(reference: str) -> tuple[str, int | None]:
    """Split ``NAME[:VERSION]`` as the CLI accepts it."""
    name, _, version = reference.partition(":")
    if not version:
        return name, None
    number = parse_version(version)
    if number is None:
        raise InvalidArgument(f"model version must be a positive integer, got {version!r}")
    return name, number


def check_digest(digest: str) -> str:
    """Validate a blob's sha256: 64 lowercase hex digits."""
    if not SHA256_PATTERN.fullmatch(digest):
        raise InvalidArgument(f"a sha256 is 64 lowercase hex digits, not {digest[:80]!r}")
    return digest


def _held_by_a_version(digest: Any) -> Any:
    return select(ModelVersion.id).where(ModelVersion.sha256 == digest).exists()


def _held(session: Session, digest: str) -> bool:
    return bool(session.scalar(select(_held_by_a_version(digest))))


def _check_alias(alias: str | None, canary_weight: int | None) -> None:
    if alias is not None and alias not in ALIASES:
        raise InvalidArgument(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
    if canary_weight is not None:
        if alias != CANARY:
            raise InvalidArgument("a canary weight needs --alias canary")
        if not 0 <= canary_weight <= 100:
            raise InvalidArgument(f"canary weight must be 0-100 (percent), got {canary_weight}")


def _point(session: Session, model_id: int, alias: str, version_id: int, canary_weight: int | None) -> None:
    row = session.get(ModelAlias, (model_id, alias))
    if alias == CANARY and canary_weight is None and row is None:
        raise InvalidArgument("a new canary alias needs a canary weight (percent of requests)")
    weight = canary_weight if canary_weight is not None else (row.weight if row is not None else 0)
    if row is None:
        session.add(ModelAlias(model_id=model_id, alias=alias, version_id=version_id, weight=weight))
    else:
        row.version_id, row.weight = version_id, weight


def _model(session: Session, tenant_id: int, name: str) -> Model:
    # A name that could never have been pushed is not looked up (PostgreSQL refuses NUL bytes, for one).
    query = select(Model).where(Model.tenant_id == tenant_id, Model.name == name)
    model = session.scalar(query) if NAME_PATTERN.fullmatch(name) else None
    if model is None:
        raise ModelNotFound(f"model {name!r} not found")
    return model


def _version(session: Session, model: Model, name: str, version: int) -> ModelVersion:
    row = session.scalar(select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version))
    if row is None:
        raise ModelNotFound(f"model {name!r} has no version {version}")
    return row


def _model_view(session: Session, model: Model, max_run_ms: int) -> ModelView:
    versions = session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
    ).all()
    by_id = {v.id: v.version for v in versions}
    aliases = session.scalars(select(ModelAlias).where(ModelAlias.model_id == model.id)).all()
    return ModelView(
        name=model.name,
        versions=[_version_view(v, max_run_ms) for v in versions],
        aliases={a.alias: AliasView(by_id[a.version_id], a.weight) for a in aliases},
    )


def _version_view(row: ModelVersion, max_run_ms: int) -> VersionView:
    return VersionView(
        row.version,
        row.sha256,
        row.size_bytes,
        row.created_at,
        _batching(row),
        measured_run_ms=row.measured_run_ms,
        run_cap_ms=row.run_cap_ms,
        effective_run_cap_ms=effective_run_cap_ms(row.measured_run_ms, row.run_cap_ms, max_run_ms),
    )


def _batching(row: ModelVersion) -> BatchSettings:
    return BatchSettings(row.max_batch_size, row.max_queue_delay_ms)


def _resolved(session: Session, name: str, row: ModelVersion, across: bool, max_run_ms: int) -> ResolvedModel:
    shared = across or session.get(SharedBlob, row.sha256) is not None
    return ResolvedModel(
        name=name,
        version=row.version,
        sha256=row.sha256,
        info=row.info,
        batching=_batching(row),
        shared=shared,
        run_cap_ms=effective_run_cap_ms(row.measured_run_ms, row.run_cap_ms, max_run_ms),
    )


def _choice(session: Session, model: Model, across: bool, max_run_ms: int) -> _Choice:
    """The canary and its weight, and the default: the stable version, else the newest."""
    aliases = {a.alias: a for a in session.scalars(select(ModelAlias).where(ModelAlias.model_id == model.id))}
    if STABLE in aliases:
        default = session.get(ModelVersion, aliases[STABLE].version_id)
    else:
        newest = select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version.desc())
        default = session.scalar(newest.limit(1))
    if default is None:  # pragma: no cover - a model row always has a version, an alias a target
        raise ModelNotFound(f"model {model.name!r} not found")
    canary = aliases.get(CANARY)
    target = session.get(ModelVersion, canary.version_id) if canary is not None else None
    resolved = _resolved(session, model.name, default, across, max_run_ms)
    if canary is None or target is None:
        return _Choice(resolved)
    return _Choice(resolved, _resolved(session, model.name, target, across, max_run_ms), canary.weight)
