"""Tenants and API keys on SQLite and PostgreSQL: lifecycle, authentication, and what is stored."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from warden.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    KeyNotFound,
    SecretMismatch,
    TenantNotFound,
    TenantNotServed,
    Unauthenticated,
)
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Authenticator, Scope, TenantService, load_server_secret
from warden.tenancy.keys import hash_secret, new_key, parse_key


def test_when_tenants_are_created_then_they_are_listed_and_names_are_unique(services: Services) -> None:
    tenants = services.tenants
    tenants.create_tenant("bank-a")
    tenants.create_tenant("hospital_b")
    assert [t.name for t in tenants.list_tenants()] == ["bank-a", "hospital_b"]
    assert tenants.get_tenant("bank-a").status == "active"
    with pytest.raises(Conflict):
        tenants.create_tenant("bank-a")


@pytest.mark.parametrize("name", ["", "A", "-lead", "trail-", "has space", "x" * 64, "semi;colon", "émile", "a/b"])
def test_when_a_tenant_name_is_invalid_then_it_is_refused(services: Services, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid tenant name"):
        services.tenants.create_tenant(name)


def test_when_a_key_is_presented_then_the_principal_comes_from_it(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    principal = services.tenants.authenticate(issued.key)
    assert principal.tenant_name == "acme"
    assert principal.key_id == issued.key_id
    assert principal.scope is Scope.DETECT
    assert principal.authenticator == "api_key"
    assert not principal.is_operator


@pytest.mark.parametrize(
    "presented",
    ["", "Bearer", "wdn_", "wdn_000000000000_" + "A" * 43, "not-a-key", "wdn_zzzzzzzzzzzz_" + "A" * 43],
)
def test_when_a_key_is_malformed_or_unknown_then_unauthenticated(services: Services, presented: str) -> None:
    with pytest.raises(Unauthenticated, match=r"^invalid API key$"):
        services.tenants.authenticate(presented)


def test_when_the_secret_part_is_wrong_then_unauthenticated(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        services.tenants.authenticate(tampered)


def test_when_a_key_is_revoked_then_the_next_request_is_refused(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    services.tenants.authenticate(issued.key)
    view = services.tenants.revoke_key(issued.key_id)
    assert view.revoked_at is not None
    with pytest.raises(Unauthenticated):
        services.tenants.authenticate(issued.key)
    assert services.tenants.revoke_key(issued.key_id).revoked_at == view.revoked_at  # idempotent


def test_when_a_tenant_is_suspended_then_its_keys_are_forbidden_until_resumed(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    services.tenants.set_status("acme", "suspended")
    with pytest.raises(Forbidden, match="suspended"):
        services.tenants.authenticate(issued.key)
    services.tenants.set_status("acme", "active")
    assert services.tenants.authenticate(issued.key).tenant_name == "acme"


def test_when_a_tenant_is_deleted_then_its_keys_go_with_it(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.ADMIN)
    services.tenants.delete_tenant("acme")
    with pytest.raises(Unauthenticated):
        services.tenants.authenticate(issued.key)
    with pytest.raises(TenantNotFound):
        services.tenants.get_tenant("acme")


def test_when_keys_are_listed_then_no_secret_is_shown_and_only_that_tenants(services: Services) -> None:
    for name in ("a", "b"):
        services.tenants.create_tenant(name)
    first = services.tenants.create_key("a", Scope.DETECT)
    services.tenants.create_key("b", Scope.DETECT)
    listed = services.tenants.list_keys("a")
    assert [k.key_id for k in listed] == [first.key_id]
    assert first.secret not in repr(listed)
    with pytest.raises(KeyNotFound):
        services.tenants.revoke_key(listed[0].key_id, tenant_id=services.tenants.tenant_id("b"))


def test_when_keys_are_stored_then_neither_key_nor_secret_is_in_the_database(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    with services.db.engine.connect() as connection:
        rows = [tuple(map(str, row)) for row in connection.execute(text("SELECT * FROM api_keys"))]
    dump = repr(rows)
    assert issued.key_id in dump
    assert issued.secret not in dump
    assert issued.key not in dump


def test_when_an_operator_key_is_made_then_it_is_admin_and_bound_to_no_tenant(services: Services) -> None:
    assert not services.tenants.has_operator_key()
    issued = services.tenants.create_key(None, Scope.ADMIN)
    principal = services.tenants.authenticate(issued.key)
    assert principal.is_operator
    assert services.tenants.has_operator_key()
    with pytest.raises(InvalidArgument, match="admin scope"):
        services.tenants.create_key(None, Scope.DETECT)


def test_when_the_server_secret_changes_then_old_keys_stop_working(services: Services) -> None:
    services.tenants.create_tenant("acme")
    issued = services.tenants.create_key("acme", Scope.DETECT)
    other = TenantService(services.db, b"another-server-secret-of-32-bytes!!")
    with pytest.raises(Unauthenticated):
        other.authenticate(issued.key)


def test_when_a_replica_brings_another_secret_to_a_shared_database_then_it_refuses_to_start(
    services: Services, tmp_path: Path
) -> None:
    shared = services.settings.resolved_database_url
    same = Settings(data_dir=services.settings.data_dir, database_url=shared)
    open_services(same).close()  # the same secret (the same data directory) starts
    stranger = Settings(data_dir=tmp_path / "elsewhere", database_url=shared)  # its own secret.key
    with pytest.raises(SecretMismatch, match="WARDEN_SECRET_KEY"):
        open_services(stranger)
    with pytest.raises(SecretMismatch):
        TenantService(services.db, b"another-server-secret-of-32-bytes!!").bind_secret()
    services.tenants.bind_secret()  # the first secret stays the one


def test_when_a_replica_serves_named_tenants_then_other_tenants_are_refused_and_operators_pass(
    services: Services,
) -> None:
    for name in ("acme", "globex"):
        services.tenants.create_tenant(name)
    acme = services.tenants.create_key("acme", Scope.DETECT).key
    globex = services.tenants.create_key("globex", Scope.ADMIN).key
    operator = services.tenants.create_key(None, Scope.ADMIN).key
    dedicated = Authenticator(services.tenants, served=frozenset({"acme"}))
    assert dedicated.authenticate(acme).tenant_name == "acme"
    assert dedicated.cached(acme) is not None  # the cached path answers alike
    assert dedicated.authenticate(operator).is_operator
    for _ in range(2):  # the database lookup, then the cached principal
        with pytest.raises(TenantNotServed):
            dedicated.authenticate(globex)
    with pytest.raises(TenantNotServed):
        dedicated.cached(globex)
    assert Authenticator(services.tenants).authenticate(globex).tenant_name == "globex"


def test_when_the_secret_file_is_made_then_it_is_private_and_stable(tmp_path: Path) -> None:
    first = load_server_secret(tmp_path, None)
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert load_server_secret(tmp_path, None) == first
    assert len(first) == 32
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(InvalidArgument, match="readable by others"):
        load_server_secret(tmp_path, None)


def test_when_a_configured_secret_is_short_then_it_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="at least 32"):
        load_server_secret(tmp_path, "short")
    assert load_server_secret(tmp_path, "s" * 32) == b"s" * 32
    assert not (tmp_path / "secret.key").exists()


def test_a_new_key_parses_back_to_its_parts() -> None:
    issued = new_key()
    assert parse_key(issued.key) == (issued.key_id, issued.secret)
    assert hash_secret(b"k" * 32, issued.key_id, issued.secret) != hash_secret(b"j" * 32, issued.key_id, issued.secret)


@given(st.text(max_size=120))
def test_parse_key_never_raises(text_value: str) -> None:
    parsed = parse_key(text_value)
    assert parsed is None or text_value == f"wdn_{parsed[0]}_{parsed[1]}"


def test_when_many_create_the_same_tenant_at_once_then_one_wins_and_the_rest_conflict(services: Services) -> None:
    outcomes: list[str] = []

    def create() -> None:
        try:
            services.tenants.create_tenant("race")
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]
