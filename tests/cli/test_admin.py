"""``warden init``, ``warden tenant …`` and ``warden key …`` end to end, and the administrative error mapping."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import Warden, one_error_line
from warden.cli.main import app
from warden.errors import Forbidden, Unauthenticated
from warden.services import Services
from warden.tenancy import Scope


def recent(text: str) -> datetime:
    """Parse an ISO 8601 instant and check it is aware UTC and from the last minute."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - timedelta(minutes=1) < moment <= datetime.now(UTC)
    return moment


def test_when_init_runs_then_it_prints_a_working_operator_key_once_and_refuses_a_second_run(
    warden_on_each_backend: Warden,
) -> None:
    warden = warden_on_each_backend
    printed = warden.json("init")
    assert list(printed) == ["admin_key"]
    secret_file = warden.data_dir / "secret.key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    with warden.services() as services:
        principal = services.tenants.authenticate(printed["admin_key"])
    assert principal.is_operator
    assert principal.scope is Scope.ADMIN
    assert printed["admin_key"].startswith(f"wdn_{principal.key_id}_")

    again = warden("init", "--json")
    assert again.exit_code == 1
    assert one_error_line(again).startswith(f"warden: error: conflict: {warden.data_dir} is already initialised")

    assert [key["key_id"] for key in warden.json("key", "list")] == [principal.key_id]
    secret = printed["admin_key"].split("_", 2)[2]
    for args in (["key", "list"], ["key", "list", "--json"]):
        assert secret not in warden(*args).stdout


def test_when_init_runs_without_json_then_it_says_the_key_will_not_be_shown_again(warden: Warden) -> None:
    result = warden("init")
    assert result.exit_code == 0
    assert "will not be shown again" in result.stdout
    key = next(word for word in result.stdout.split() if word.startswith("wdn_"))
    with warden.services() as services:
        assert services.tenants.authenticate(key).is_operator


def test_when_the_operator_key_is_revoked_then_init_may_issue_a_new_one(warden: Warden) -> None:
    first = warden.json("init")["admin_key"]
    key_id = first.split("_")[1]
    assert warden.json("key", "revoke", key_id)["revoked_at"] is not None
    second = warden.json("init")["admin_key"]
    with warden.services() as services:
        with pytest.raises(Unauthenticated):
            services.tenants.authenticate(first)
        assert services.tenants.authenticate(second).is_operator


def test_the_tenant_and_key_lifecycle_with_json_output(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    created = warden.json("tenant", "create", "acme")
    assert list(created) == ["name", "status", "created_at", "quota"]
    assert (created["name"], created["status"]) == ("acme", "active")
    recent(created["created_at"])
    other = warden.json("tenant", "create", "globex")
    assert warden.json("tenant", "list") == [created, other]

    detect_key = warden.json("key", "create", "acme")
    admin_key = warden.json("key", "create", "acme", "--scope", "admin")
    for issued in (detect_key, admin_key):
        assert list(issued) == ["key", "key_id"]
        assert issued["key"].startswith(f"wdn_{issued['key_id']}_")
    listed = warden.json("key", "list", "acme")
    assert [list(k) for k in listed] == [["key_id", "tenant", "scope", "created_at", "revoked_at"]] * 2
    assert [(k["key_id"], k["tenant"], k["scope"], k["revoked_at"]) for k in listed] == [
        (detect_key["key_id"], "acme", "detect", None),
        (admin_key["key_id"], "acme", "admin", None),
    ]
    for k in listed:
        recent(k["created_at"])
    with warden.services() as services:
        principal = services.tenants.authenticate(detect_key["key"])
        assert (principal.tenant_name, principal.scope) == ("acme", Scope.DETECT)
        assert services.tenants.authenticate(admin_key["key"]).scope is Scope.ADMIN

    suspended = warden.json("tenant", "suspend", "acme")
    assert (suspended["name"], suspended["status"], suspended["created_at"]) == (
        "acme",
        "suspended",
        created["created_at"],
    )
    with warden.services() as services, pytest.raises(Forbidden):
        services.tenants.authenticate(detect_key["key"])
    assert warden.json("tenant", "resume", "acme")["status"] == "active"

    revoked = warden.json("key", "revoke", detect_key["key_id"])
    assert (revoked["key_id"], revoked["tenant"], revoked["scope"]) == (detect_key["key_id"], "acme", "detect")
    recent(revoked["revoked_at"])
    assert warden.json("key", "list", "acme")[0]["revoked_at"] == revoked["revoked_at"]
    assert warden.json("key", "revoke", detect_key["key_id"])["revoked_at"] == revoked["revoked_at"]  # idempotent
    with warden.services() as services:
        with pytest.raises(Unauthenticated):
            services.tenants.authenticate(detect_key["key"])
        assert services.tenants.authenticate(admin_key["key"]).tenant_name == "acme"

    assert warden.json("tenant", "delete", "acme", "--yes") == {"name": "acme", "deleted": True, "blobs_removed": 0}
    assert [t["name"] for t in warden.json("tenant", "list")] == ["globex"]
    with warden.services() as services, pytest.raises(Unauthenticated):
        services.tenants.authenticate(admin_key["key"])


def test_when_keys_are_listed_then_no_secret_appears_in_json_or_tables(warden: Warden) -> None:
    warden.json("tenant", "create", "acme")
    secrets = [warden.json("key", "create", "acme")["key"].split("_", 2)[2] for _ in range(3)]
    for args in (["key", "list", "acme"], ["key", "list", "acme", "--json"]):
        result = warden(*args)
        assert result.exit_code == 0
        assert not any(secret in result.stdout or secret in result.stderr for secret in secrets)
        assert "wdn_" not in result.stdout


def test_human_output_shows_tables_and_sentences(warden: Warden) -> None:
    created = warden("tenant", "create", "acme")
    assert created.stdout == "Created tenant 'acme' (status active).\n"
    table = warden("tenant", "list").stdout
    assert "1 tenants" in table
    assert "acme" in table
    assert "active" in table
    issued = warden("key", "create", "acme").stdout
    assert "will not be shown again" in issued
    key_id = next(word for word in issued.split() if word.startswith("wdn_")).split("_")[1]
    assert key_id in warden("key", "list", "acme").stdout
    assert warden("key", "revoke", key_id).stdout.startswith(f"Revoked key {key_id} of tenant 'acme' at ")
    assert warden("tenant", "suspend", "acme").stdout == "Suspended tenant 'acme' (status suspended).\n"


def test_when_delete_is_not_confirmed_then_the_tenant_stays(warden: Warden) -> None:
    warden.json("tenant", "create", "acme")
    for answer in ("n\n", None, "\n"):
        result = warden("tenant", "delete", "acme", stdin=answer)
        assert result.exit_code == 1
        # The prompt is on stderr; the test runner echoes the typed answer on stdout, as a terminal would.
        prompt, answered = result.stderr.split(" [y/N]:")
        assert prompt == "Delete tenant 'acme' with all its API keys and models? This cannot be undone."
        assert (
            answered.lstrip("\n") == "warden: error: aborted: tenant 'acme' was not deleted (confirm, or pass --yes)\n"
        )
        assert result.stdout.strip() in {"", "n"}
    assert [t["name"] for t in warden.json("tenant", "list")] == ["acme"]
    confirmed = warden("tenant", "delete", "acme", stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert "Delete tenant 'acme'" in confirmed.stderr
    assert warden.json("tenant", "list") == []


def test_when_the_tenant_to_delete_is_unknown_then_no_question_is_asked(warden: Warden) -> None:
    result = warden("tenant", "delete", "ghost", stdin="y\n")
    assert result.exit_code == 1
    assert one_error_line(result) == "warden: error: tenant_not_found: no tenant named 'ghost'"


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["tenant", "create", "Bad Name"], "invalid_argument", 2),
        (["tenant", "create", "acme"], "conflict", 1),
        (["tenant", "suspend", "ghost"], "tenant_not_found", 1),
        (["tenant", "resume", "ghost"], "tenant_not_found", 1),
        (["key", "create", "ghost"], "tenant_not_found", 1),
        (["key", "create", "acme", "--scope", "root"], "invalid_argument", 2),
        (["key", "list", "ghost"], "tenant_not_found", 1),
        (["key", "revoke", "000000000000"], "key_not_found", 1),
        (["model", "list", "ghost"], "tenant_not_found", 1),
        (["model", "rm", "acme", "pets:x"], "invalid_argument", 2),
        (["model", "rm", "acme", "pets:0"], "invalid_argument", 2),
        (["model", "rm", "acme", "ghost"], "model_not_found", 1),
        (["model", "rm", "ghost", "pets"], "tenant_not_found", 1),
    ],
)
def test_when_a_command_fails_then_one_line_names_the_code_and_the_exit_status_its_kind(
    warden: Warden, args: list[str], code: str, status: int
) -> None:
    warden.json("tenant", "create", "acme")
    result = warden(*args)
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")


def test_when_a_setting_is_unknown_then_the_command_stops_with_invalid_argument(
    warden: Warden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_DATA_DIRECTORY", "/elsewhere")
    result = warden("tenant", "list")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("warden: error: invalid_argument: unknown setting WARDEN_DATA_DIRECTORY")


def test_when_the_database_is_unreachable_then_one_line_says_database_error(
    warden: Warden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    result = warden("tenant", "list")
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: database_error: ")


def test_when_the_data_dir_comes_from_the_environment_then_the_option_still_wins(
    tmp_path: Path, warden: Warden, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = Warden(tmp_path / "from-env")
    monkeypatch.setenv("WARDEN_DATA_DIR", str(from_env.data_dir))
    bare = CliRunner().invoke(app, ["tenant", "create", "acme", "--json"])  # no --data-dir
    assert bare.exit_code == 0, bare.stderr
    warden.json("tenant", "create", "globex")  # --data-dir given: not the environment's directory
    assert [t["name"] for t in from_env.json("tenant", "list")] == ["acme"]
    assert [t["name"] for t in warden.json("tenant", "list")] == ["globex"]


def test_services_are_closed_after_every_command_even_a_failing_one(
    warden: Warden, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Services] = []
    real_close = Services.close

    def spy(self: Services) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Services, "close", spy)
    assert warden("tenant", "create", "acme").exit_code == 0
    assert warden("tenant", "create", "acme").exit_code == 1
    assert warden("tenant", "delete", "acme", stdin="n\n").exit_code == 1
    assert len(closed) == 3


def test_the_installed_console_script_initialises_a_data_directory(warden: Warden) -> None:
    command = [Path(sys.executable).with_name("warden"), "--data-dir", warden.data_dir, "init", "--json"]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    printed = json.loads(first.stdout)
    assert list(printed) == ["admin_key"]
    with warden.services() as services:
        assert services.tenants.authenticate(printed["admin_key"]).is_operator
    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.startswith(f"warden: error: conflict: {warden.data_dir} is already initialised")
    assert len(second.stderr.splitlines()) == 1
