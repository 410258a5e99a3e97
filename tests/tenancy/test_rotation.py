"""Rotating the server secret: the new one takes over, keys and checkpoints made under the old one still hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.backends import BACKENDS, database_url
from warden.audit import AuditEvent
from warden.audit.events import EventKind
from warden.errors import InvalidArgument, SecretMismatch, Unauthenticated
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Scope

OLD = "old-secret-" + "o" * 40
NEW = "new-secret-" + "n" * 40


def opened(tmp_path: Path, url: str, secret: str, previous: list[str] | None = None) -> Services:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        secret_key=secret,
        previous_secret_keys=previous or [],
        replica_id="r1",
        cache_seconds=0,
    )
    return open_services(settings)


def audit_something(services: Services) -> None:
    services.audit.record(AuditEvent(kind=EventKind.ADMIN, action="test.rotation", target="t"))
    assert services.audit.flush(timeout=30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rotation_keeps_old_keys_and_checkpoints_valid_while_the_old_secret_is_listed(
    backend: str, tmp_path: Path
) -> None:
    with database_url(backend, tmp_path) as url:
        before = opened(tmp_path, url, OLD)
        before.tenants.create_tenant("acme")
        old_key = before.tenants.create_key("acme", Scope.DETECT).key
        audit_something(before)
        before.close()  # a closing checkpoint, signed under the old secret

        with pytest.raises(SecretMismatch, match="WARDEN_PREVIOUS_SECRET_KEYS"):
            opened(tmp_path, url, NEW)  # a new secret alone is a stranger

        during = opened(tmp_path, url, NEW, [OLD])
        try:
            assert during.tenants.authenticate(old_key).tenant_name == "acme"
            new_key = during.tenants.create_key("acme", Scope.DETECT).key
            assert during.tenants.authenticate(new_key).tenant_name == "acme"
            audit_something(during)
            assert during.audit.verify().ok
            # Retention reads checkpoints of both secrets too: the records from before the rotation go.
            pruned = during.audit.prune(datetime.now(UTC) + timedelta(days=1))
            assert pruned.cuts
            assert during.audit.verify().ok
            audit_something(during)
        finally:
            during.close()

        with pytest.raises(SecretMismatch):
            opened(tmp_path, url, OLD)  # the rotation is recorded: the old secret no longer starts a replica

        after = opened(tmp_path, url, NEW)  # the old secret dropped, once the records it signed were pruned
        try:
            with pytest.raises(Unauthenticated):
                after.tenants.authenticate(old_key)
            assert after.tenants.authenticate(new_key).tenant_name == "acme"
            assert after.audit.verify().ok
        finally:
            after.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropping_the_old_secret_while_its_checkpoints_remain_fails_verification(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        before = opened(tmp_path, url, OLD)
        audit_something(before)
        before.close()
        opened(tmp_path, url, NEW, [OLD]).close()  # the rotation
        after = opened(tmp_path, url, NEW)
        try:
            report = after.audit.verify()
            assert not report.ok
            assert {stream.problem.kind.value for stream in report.streams if stream.problem} == {"bad_checkpoint"}
        finally:
            after.close()


def test_a_short_previous_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="WARDEN_PREVIOUS_SECRET_KEYS"):
        opened(tmp_path, f"sqlite:///{tmp_path / 'w.db'}", NEW, ["short"])
