"""``AuditLog`` as the services build it: from settings, cheap to open, flushed on close, safe to cancel."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import warden.audit
from tests.audit.conftest import MakeLog, request_event
from tests.cli.conftest import clean_environment
from warden.audit import AddressPolicy, AuditLog, Durability
from warden.errors import InvalidArgument
from warden.services import open_services
from warden.settings import REPLICA_ID_PATTERN, Settings, load_settings
from warden.storage import Database


def test_the_audit_settings_default_to_sync_fail_closed_hashed_and_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean_environment(monkeypatch)
    settings = load_settings()
    assert (settings.audit_durability, settings.audit_fail_closed) == ("sync", True)
    assert (settings.audit_client_address, settings.audit_checkpoint_every) == ("hashed", 1000)
    assert re.fullmatch(REPLICA_ID_PATTERN, settings.replica_id)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WARDEN_REPLICA_ID", "has space"),
        ("WARDEN_REPLICA_ID", "-leading-dash"),
        ("WARDEN_REPLICA_ID", "x" * 64),
        ("WARDEN_AUDIT_DURABILITY", "eventually"),
        ("WARDEN_AUDIT_CLIENT_ADDRESS", "scrambled"),
        ("WARDEN_AUDIT_CHECKPOINT_EVERY", "0"),
    ],
)
def test_a_bad_audit_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_environment(monkeypatch)
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidArgument, match=name.removeprefix("WARDEN_").lower()):
        load_settings()


def test_the_log_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        replica_id="replica-7",
        audit_durability="async",
        audit_fail_closed=False,
        audit_client_address="truncated",
        audit_checkpoint_every=5,
    )
    db = Database(settings.resolved_database_url)
    try:
        log = AuditLog.from_settings(db, settings, b"s" * 32)
        assert (log.stream, log.durability, log.fail_closed) == ("replica-7", Durability.ASYNC, False)
        assert log.client_address.policy is AddressPolicy.TRUNCATED
        assert log.client_address("198.51.100.23") == "198.51.100.0/24"
    finally:
        db.close()


def test_opening_the_services_starts_no_writer_and_closing_them_commits_what_is_queued(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", replica_id="replica-1", audit_durability="async")
    services = open_services(settings)
    assert not services.audit.writer.running
    services.audit.record(request_event(1))
    services.close()
    reopened = open_services(settings)
    try:
        [entry] = reopened.audit.query().entries
        assert entry.event.request_id == "req-1"
        assert reopened.audit.verify().ok
    finally:
        reopened.close()


def test_a_cancelled_waiter_does_not_withdraw_its_event(db: Database, make_log: MakeLog) -> None:
    log = make_log()
    gate, entered = threading.Event(), threading.Event()

    def hold(_connection: Any) -> None:
        entered.set()
        gate.wait(30)

    event.listen(db.engine, "commit", hold, once=True)

    async def handler() -> None:
        waiting = asyncio.create_task(log.arecord(request_event(1)))
        await asyncio.to_thread(entered.wait, 30)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(handler())
    gate.set()
    assert log.flush(30)
    assert [entry.event.request_id for entry in log.query().entries] == ["req-1"]


def test_the_package_exports_exactly_its_public_names_and_no_web_framework() -> None:
    public = {
        name
        for name, value in vars(warden.audit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(warden.audit.__all__) == public
    script = "import sys, json, warden.audit; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert {"fastapi", "starlette", "typer", "uvicorn"}.isdisjoint(name.split(".")[0] for name in loaded)
