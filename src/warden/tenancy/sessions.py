"""Web-console sessions: an API key exchanged once for a short-lived, server-side session.

The browser keeps only an opaque random token in an ``HttpOnly`` cookie; the database keeps
its sha256, the key it came from and an expiry. Every request re-reads the key and its
tenant, so revoking the key, suspending or deleting the tenant ends the session at once, on
every replica. State-changing requests also carry a CSRF token derived from the session
token under the server secret (nothing more to store).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from warden.errors import Unauthenticated
from warden.storage import ApiKey, ConsoleSession, Database, Tenant
from warden.storage.tables import utcnow
from warden.tenancy.principal import Principal
from warden.tenancy.service import TenantService, principal_of


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A session just made: the cookie's ``token`` (given to the browser once), its CSRF token and expiry."""

    token: str
    csrf: str
    expires_at: datetime
    principal: Principal


class ConsoleSessions:
    """Makes, resolves and ends console sessions; lifetimes are absolute (no sliding renewal)."""

    def __init__(
        self,
        db: Database,
        tenants: TenantService,
        server_secret: bytes,
        lifetime_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._tenants = tenants
        self._secret = server_secret
        self._lifetime = timedelta(seconds=lifetime_seconds)
        self._clock = clock

    def open(self, presented_key: str, accept: Callable[[Principal], object] = lambda _: None) -> OpenedSession:
        """Authenticate an API key (as any request would) and make a session for it.

        ``accept`` may refuse the principal (by raising) before anything is stored.
        """
        principal = self._tenants.authenticate(presented_key)
        accept(principal)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._db.session() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            key_row = session.scalar(select(ApiKey.id).where(ApiKey.key_id == principal.key_id))
            if key_row is None:  # revoked and deleted between the two reads
                raise Unauthenticated("invalid API key")
            session.add(
                ConsoleSession(
                    token_hash=_digest(token), api_key_id=key_row, created_at=now, expires_at=now + self._lifetime
                )
            )
        return OpenedSession(token, self.csrf_token(token), now + self._lifetime, principal)

    def resolve(self, token: str) -> tuple[Principal, datetime]:
        """The principal of a live session and its expiry; ``Unauthenticated`` for an unknown or expired one."""
        with self._db.session() as session:
            row = session.execute(
                select(ConsoleSession, ApiKey, Tenant)
                .join(ApiKey, ConsoleSession.api_key_id == ApiKey.id)
                .outerjoin(Tenant, ApiKey.tenant_id == Tenant.id)
                .where(ConsoleSession.token_hash == _digest(token))
            ).first()
            if row is None or row[0].expires_at <= self._clock() or row[1].revoked_at is not None:
                raise Unauthenticated("the console session has ended; sign in again")
            return principal_of(row[1], row[2]), row[0].expires_at

    def close(self, token: str) -> None:
        """End a session (sign-out); ending an unknown one does nothing."""
        with self._db.session() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))

    def csrf_token(self, token: str) -> str:
        """The CSRF token of a session: state-changing requests must echo it in ``X-CSRF-Token``."""
        return hmac.new(self._secret, b"warden console csrf:" + token.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, token: str, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (compared in constant time)."""
        return presented is not None and hmac.compare_digest(self.csrf_token(token), presented)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
