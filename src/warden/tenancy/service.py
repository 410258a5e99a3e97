"""Tenants and their API keys: creation, listing, suspension, revocation, and authentication."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.caching import FreshCache
from warden.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    KeyNotFound,
    SecretMismatch,
    TenantNotFound,
    Unauthenticated,
)
from warden.settings import NAME_REGEX
from warden.storage import ApiKey, Database, ServerMeta, Tenant
from warden.storage.tables import utcnow
from warden.tenancy.keys import IssuedKey, hash_secret, new_key, parse_key, secret_fingerprint
from warden.tenancy.principal import OPERATOR_SCOPES, Principal, Scope
from warden.tenancy.quota import QUOTA_FIELDS, Quota

NAME_PATTERN: Final = re.compile(NAME_REGEX)
"""Tenant and model names; always used with ``fullmatch`` (``$`` would let a trailing newline in)."""
KEY_ID_PATTERN: Final = re.compile(r"[0-9a-f]{12}")
ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
API_KEY: Final = "api_key"
_SECRET_FINGERPRINT: Final = "secret_fingerprint"  # noqa: S105 - a row name, not a secret


@dataclass(frozen=True, slots=True)
class TenantView:
    """A tenant as the CLI and the admin API show it."""

    name: str
    status: str
    created_at: datetime
    quota: Quota


@dataclass(frozen=True, slots=True)
class KeyView:
    """An API key as listed: never its secret."""

    key_id: str
    tenant: str | None
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


def check_name(kind: str, name: str) -> str:
    """Validate a tenant or model name: 1–63 of ``a-z 0-9 _ -``, starting and ending alphanumeric."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


class TenantService:
    """Owns the ``tenants`` and ``api_keys`` tables; every method is one transaction.

    ``previous_secrets`` are the server secrets of earlier rotations: a key issued under one
    still authenticates (its stored hash was made with it), while new keys use ``server_secret``.
    """

    def __init__(
        self,
        db: Database,
        server_secret: bytes,
        cache_seconds: float = 1.0,
        previous_secrets: tuple[bytes, ...] = (),
    ) -> None:
        self._db = db
        self._secret = server_secret
        self._secrets = (server_secret, *previous_secrets)
        # Successful key lookups, by key id: the stored hash, the secret that made it, and the principal.
        self._principals: FreshCache[str, tuple[str, bytes, Principal]] = FreshCache(cache_seconds)
        # Compared against when a key id is unknown, so unknown and wrong keys cost the same.
        self._decoy_hash = hash_secret(server_secret, "000000000000", "x" * 43)

    def bind_secret(self) -> None:
        """Record the server secret's fingerprint on a database's first use; refuse a different secret later.

        Replicas sharing a database must share the secret (``WARDEN_SECRET_KEY``): a replica
        with its own would refuse every key the others issued, so it must not start at all.
        A rotation is the one change allowed: when the recorded fingerprint is that of one of
        the previous secrets, the current secret's takes its place.
        """
        fingerprint = secret_fingerprint(self._secret)
        earlier = {secret_fingerprint(secret) for secret in self._secrets[1:]}
        try:
            with self._db.session() as session:
                stored = session.get(ServerMeta, _SECRET_FINGERPRINT)
                if stored is None:
                    session.add(ServerMeta(name=_SECRET_FINGERPRINT, value=fingerprint))
                    return
                if stored.value in earlier:
                    stored.value = fingerprint
                    return
        except IntegrityError:  # another replica recorded its fingerprint first
            with self._db.session() as session:
                stored = session.get(ServerMeta, _SECRET_FINGERPRINT)
        if stored is None or not hmac.compare_digest(stored.value, fingerprint):
            raise SecretMismatch(
                "this server secret is not the one this database was first used with; replicas sharing a "
                "database must share WARDEN_SECRET_KEY (or one data directory); after a rotation, list the "
                "old secret in WARDEN_PREVIOUS_SECRET_KEYS"
            )

    def create_tenant(self, name: str, quota: Quota | None = None) -> TenantView:
        """Create a tenant (with a quota, else unlimited); ``Conflict`` if the name is taken."""
        check_name("tenant", name)
        try:
            with self._db.session() as session:
                if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
                    raise Conflict(f"tenant {name!r} exists already")
                tenant = Tenant(name=name, status=ACTIVE, created_at=utcnow(), **(quota or Quota()).to_dict())
                session.add(tenant)
                session.flush()
                return _tenant_view(tenant)
        except IntegrityError:  # created concurrently between the check and the insert
            raise Conflict(f"tenant {name!r} exists already") from None

    def list_tenants(self) -> list[TenantView]:
        """Every tenant, by name."""
        with self._db.session() as session:
            return [_tenant_view(t) for t in session.scalars(select(Tenant).order_by(Tenant.name))]

    def get_tenant(self, name: str) -> TenantView:
        """One tenant by name; ``TenantNotFound`` otherwise."""
        with self._db.session() as session:
            return _tenant_view(_tenant(session, name))

    def tenant_id(self, name: str) -> int:
        """The row id of a tenant, for services that key their rows by it."""
        with self._db.session() as session:
            return _tenant(session, name).id

    def update_quota(self, name: str, changes: dict[str, Any]) -> TenantView:
        """Change some quota fields (``0`` clears a limit); effective on the tenant's next request."""
        with self._db.session() as session:
            tenant = _tenant(session, name)
            quota = _quota(tenant).updated(changes)
            for key, value in quota.to_dict().items():
                setattr(tenant, key, value)
            view = _tenant_view(tenant)
        self._principals.clear()
        return view

    def principal_for(self, name: str, subject: str, scope: Scope, authenticator: str) -> Principal:
        """A principal for an externally authenticated caller of tenant ``name`` (which must be active)."""
        with self._db.session() as session:
            tenant = session.scalar(select(Tenant).where(Tenant.name == name)) if NAME_PATTERN.fullmatch(name) else None
            if tenant is None:
                raise Unauthenticated("the token names no known tenant")
            if tenant.status != ACTIVE:
                raise Forbidden("the tenant is suspended")
            return Principal(
                tenant_id=tenant.id,
                tenant_name=tenant.name,
                key_id=subject,
                scope=scope,
                authenticator=authenticator,
                quota=_quota(tenant),
            )

    def set_status(self, name: str, status: str) -> TenantView:
        """Suspend (``suspended``) or resume (``active``) a tenant; effective on its next request."""
        if status not in (ACTIVE, SUSPENDED):
            raise InvalidArgument(f"tenant status must be {ACTIVE} or {SUSPENDED}, got {status!r}")
        with self._db.session() as session:
            tenant = _tenant(session, name)
            tenant.status = status
            view = _tenant_view(tenant)
        self._principals.clear()
        return view

    def delete_tenant(self, name: str) -> None:
        """Delete a tenant with its keys and models (blobs no longer referenced are the registry's to collect)."""
        with self._db.session() as session:
            session.delete(_tenant(session, name))
        self._principals.clear()

    def create_key(self, tenant: str | None, scope: Scope) -> IssuedKey:
        """Issue a key for ``tenant``; the secret is shown once.

        ``None`` makes a key bound to no tenant: an operator's (``admin``) or an operator-wide
        approver's (``approve``), which decides the approval requests of every tenant.
        """
        issued = new_key()
        with self._db.session() as session:
            tenant_id = None
            if tenant is None:
                if scope not in OPERATOR_SCOPES:
                    raise InvalidArgument(
                        "a key bound to no tenant must have the admin scope (or approve, for an operator-wide approver)"
                    )
            else:
                tenant_id = _tenant(session, tenant).id
            session.add(
                ApiKey(
                    key_id=issued.key_id,
                    tenant_id=tenant_id,
                    scope=scope.value,
                    secret_hash=hash_secret(self._secret, issued.key_id, issued.secret),
                    created_at=utcnow(),
                )
            )
        return issued

    def list_keys(self, tenant: str | None) -> list[KeyView]:
        """The keys of ``tenant`` (``None``: operator keys), oldest first, without secrets."""
        with self._db.session() as session:
            query = select(ApiKey).order_by(ApiKey.id)
            if tenant is None:
                query = query.where(ApiKey.tenant_id.is_(None))
            else:
                query = query.where(ApiKey.tenant_id == _tenant(session, tenant).id)
            return [_key_view(key, tenant) for key in session.scalars(query)]

    def revoke_key(self, key_id: str, *, tenant_id: int | None = None) -> KeyView:
        """Revoke a key (idempotent); with ``tenant_id``, only a key of that tenant is found."""
        with self._db.session() as session:
            found = KEY_ID_PATTERN.fullmatch(key_id) is not None
            key = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) if found else None
            if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
                raise KeyNotFound(f"no API key with id {key_id!r}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            view = _key_view(key, key.tenant.name if key.tenant else None)
        self._principals.clear()
        return view

    def has_operator_key(self) -> bool:
        """Whether an unrevoked operator admin key exists (``warden init`` has run; an approver's does not count)."""
        with self._db.session() as session:
            query = select(ApiKey.id).where(
                ApiKey.tenant_id.is_(None), ApiKey.scope == Scope.ADMIN.value, ApiKey.revoked_at.is_(None)
            )
            return session.scalar(query.limit(1)) is not None

    def cached_principal(self, presented: str) -> Principal | None:
        """The principal of a key looked up less than a cache lifetime ago, or ``None`` (then authenticate)."""
        parsed = parse_key(presented)
        cached = self._principals.get(parsed[0]) if parsed is not None else None
        if parsed is None or cached is None:
            return None
        stored, secret, principal = cached
        return principal if hmac.compare_digest(hash_secret(secret, *parsed), stored) else None

    def authenticate(self, presented: str) -> Principal:
        """Turn a presented API key into a principal, or raise ``Unauthenticated`` / ``Forbidden``.

        Malformed, unknown and wrong keys are refused alike, after the same work.
        """
        parsed = parse_key(presented)
        key_id, secret = parsed if parsed is not None else ("000000000000", "x" * 43)
        generation = self._principals.generation()
        with self._db.session() as session:
            row = session.execute(
                select(ApiKey, Tenant).outerjoin(Tenant, ApiKey.tenant_id == Tenant.id).where(ApiKey.key_id == key_id)
            ).first()
            key, tenant = (row[0], row[1]) if row is not None else (None, None)
            stored = key.secret_hash if key is not None else self._decoy_hash
            # Every secret is tried, whichever matches, so a key's age does not show in the time taken.
            matched = [s for s in self._secrets if hmac.compare_digest(hash_secret(s, key_id, secret), stored)]
            if parsed is None or key is None or not matched or key.revoked_at is not None:
                raise Unauthenticated("invalid API key")
            principal = principal_of(key, tenant)
        self._principals.put(key_id, (stored, matched[0], principal), generation)
        return principal


def principal_of(key: ApiKey, tenant: Tenant | None) -> Principal:
    """The principal of an unrevoked key's row and its tenant's; ``Forbidden`` while the tenant is suspended."""
    if tenant is not None and tenant.status != ACTIVE:
        raise Forbidden("the tenant is suspended")
    return Principal(
        tenant_id=key.tenant_id,
        tenant_name=tenant.name if tenant else None,
        key_id=key.key_id,
        scope=Scope(key.scope),
        authenticator=API_KEY,
        quota=_quota(tenant) if tenant is not None else Quota(),
    )


def _tenant(session: Session, name: str) -> Tenant:
    # A name that could never have been created is not looked up (PostgreSQL refuses NUL bytes, for one).
    tenant = session.scalar(select(Tenant).where(Tenant.name == name)) if NAME_PATTERN.fullmatch(name) else None
    if tenant is None:
        raise TenantNotFound(f"no tenant named {name!r}")
    return tenant


def _tenant_view(tenant: Tenant) -> TenantView:
    return TenantView(name=tenant.name, status=tenant.status, created_at=tenant.created_at, quota=_quota(tenant))


def _quota(tenant: Tenant) -> Quota:
    return Quota(**{name: getattr(tenant, name) for name in QUOTA_FIELDS})


def _key_view(key: ApiKey, tenant: str | None) -> KeyView:
    return KeyView(
        key_id=key.key_id, tenant=tenant, scope=Scope(key.scope), created_at=key.created_at, revoked_at=key.revoked_at
    )
