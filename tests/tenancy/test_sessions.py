"""Console sessions: absolute lifetime, cleanup, refusal before storing, and the end of the key or tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from warden.errors import TenantNotServed, Unauthenticated
from warden.services import Services
from warden.storage import ConsoleSession
from warden.tenancy import Scope
from warden.tenancy.sessions import ConsoleSessions


class Clock:
    """A hand-moved clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def sessions_of(services: Services, clock: Clock, lifetime: float = 600) -> ConsoleSessions:
    return ConsoleSessions(services.db, services.tenants, b"s" * 32, lifetime, clock=clock)


def stored(services: Services) -> int:
    with services.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ConsoleSession)) or 0)


def test_a_session_lives_its_lifetime_from_sign_in_however_much_it_is_used(services: Services) -> None:
    services.tenants.create_tenant("acme")
    key = services.tenants.create_key("acme", Scope.ADMIN).key
    clock = Clock()
    sessions = sessions_of(services, clock)
    opened = sessions.open(key)
    assert opened.expires_at == clock.now + timedelta(seconds=600)
    for _ in range(5):  # use does not renew it
        clock.now += timedelta(seconds=119)
        assert sessions.resolve(opened.token)[0].tenant_name == "acme"
    clock.now = opened.expires_at
    with pytest.raises(Unauthenticated, match="ended"):
        sessions.resolve(opened.token)


def test_expired_sessions_are_removed_when_the_next_one_is_made(services: Services) -> None:
    key = services.tenants.create_key(None, Scope.ADMIN).key
    clock = Clock()
    sessions = sessions_of(services, clock)
    sessions.open(key)
    sessions.open(key)
    assert stored(services) == 2
    clock.now += timedelta(seconds=601)
    sessions.open(key)
    assert stored(services) == 1


def test_a_refused_principal_leaves_no_session(services: Services) -> None:
    services.tenants.create_tenant("acme")
    key = services.tenants.create_key("acme", Scope.DETECT).key

    def elsewhere(_principal: object) -> None:
        raise TenantNotServed("served elsewhere")

    with pytest.raises(TenantNotServed):
        sessions_of(services, Clock()).open(key, elsewhere)
    assert stored(services) == 0


def test_deleting_the_tenant_ends_its_sessions_and_closing_an_unknown_one_does_nothing(services: Services) -> None:
    services.tenants.create_tenant("acme")
    key = services.tenants.create_key("acme", Scope.ADMIN).key
    sessions = sessions_of(services, Clock())
    opened = sessions.open(key)
    services.tenants.delete_tenant("acme")
    with pytest.raises(Unauthenticated):
        sessions.resolve(opened.token)
    assert stored(services) == 0
    sessions.close("no-such-token")


def test_the_csrf_token_belongs_to_one_session(services: Services) -> None:
    key = services.tenants.create_key(None, Scope.ADMIN).key
    sessions = sessions_of(services, Clock())
    first, second = sessions.open(key), sessions.open(key)
    assert sessions.check_csrf(first.token, first.csrf)
    assert not sessions.check_csrf(first.token, second.csrf)
    assert not sessions.check_csrf(first.token, None)
    assert first.token not in first.csrf
