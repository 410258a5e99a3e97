"""The authentication cache: this process's own changes are seen at once, another's within the lifetime.

Each case runs on SQLite and PostgreSQL. "Another process" is a second TenantService
over the same database (as the CLI or another replica would be).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from warden.errors import Forbidden, Unauthenticated
from warden.services import Services
from warden.tenancy import Scope, TenantService

LIFETIME = 0.2


@pytest.fixture
def cached(services: Services) -> TenantService:
    """A tenant service over the fixture's database with a short cache lifetime."""
    return TenantService(services.db, services.tenants._secret, cache_seconds=LIFETIME)


def test_a_fresh_lookup_is_served_without_the_database_and_still_checks_the_secret(
    services: Services, cached: TenantService
) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    assert cached.cached_principal(issued.key) is None  # nothing cached yet
    principal = cached.authenticate(issued.key)
    assert cached.cached_principal(issued.key) == principal
    wrong = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    assert cached.cached_principal(wrong) is None
    with pytest.raises(Unauthenticated):
        cached.authenticate(wrong)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda t, key_id: t.revoke_key(key_id), Unauthenticated),
        (lambda t, key_id: t.set_status("acme", "suspended"), Forbidden),
        (lambda t, key_id: t.delete_tenant("acme"), Unauthenticated),
    ],
    ids=["revoke", "suspend", "delete"],
)
def test_a_change_made_here_is_refused_at_once(
    cached: TenantService, change: Callable[[TenantService, str], object], refusal: type[Exception]
) -> None:
    cached.create_tenant("acme")
    issued = cached.create_key("acme", Scope.DETECT)
    cached.authenticate(issued.key)
    change(cached, issued.key_id)
    assert cached.cached_principal(issued.key) is None
    with pytest.raises(refusal):
        cached.authenticate(issued.key)


def test_a_quota_change_made_here_is_seen_at_once(cached: TenantService) -> None:
    cached.create_tenant("acme")
    issued = cached.create_key("acme", Scope.DETECT)
    assert cached.authenticate(issued.key).quota.rps is None
    cached.update_quota("acme", {"rps": 5.0})
    assert cached.authenticate(issued.key).quota.rps == 5.0


def test_a_revocation_by_another_process_is_refused_once_the_lifetime_passes(
    services: Services, cached: TenantService
) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    cached.authenticate(issued.key)
    services.tenants.revoke_key(issued.key_id)  # another service instance: this cache is not told
    time.sleep(LIFETIME * 2)
    assert cached.cached_principal(issued.key) is None
    with pytest.raises(Unauthenticated):
        cached.authenticate(issued.key)


def test_with_a_zero_lifetime_every_lookup_reads_the_database(services: Services) -> None:
    uncached = TenantService(services.db, services.tenants._secret, cache_seconds=0)
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    uncached.authenticate(issued.key)
    assert uncached.cached_principal(issued.key) is None
    services.tenants.revoke_key(issued.key_id)
    with pytest.raises(Unauthenticated):
        uncached.authenticate(issued.key)
