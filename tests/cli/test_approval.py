"""``warden approval create|list|revoke``: records, output, the audit trail, and one error line per failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.cli.conftest import Warden
from warden.cli.approvals import parse_expiry
from warden.errors import InvalidArgument
from warden.jobs.approvals import ID_PATTERN, content_sha256


def approval(warden: Warden, *args: str | Path) -> Result:
    """Run ``warden --data-dir DIR approval …`` in-process."""
    return warden("approval", *args)


def approval_json(warden: Warden, *args: str | Path) -> Any:
    result = approval(warden, *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    return json.loads(result.stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root_dir = tmp_path / "datasets"
    (root_dir / "tree").mkdir(parents=True)
    (root_dir / "tx.csv").write_text("amount\n1\n")
    (root_dir / "tree" / "a.csv").write_text("b\n2\n")
    return root_dir


def one_error_line(result: Result) -> str:
    """The single error line a failed command must print, with nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def admin_events(warden: Warden) -> list[dict[str, Any]]:
    return [e["event"] for e in warden.json("audit", "query", "--kind", "admin") if "action" in e["event"]]


def test_when_an_approval_is_created_then_json_shows_it_and_the_audit_trail_has_it(
    warden_on_each_backend: Warden, data: Path
) -> None:
    warden = warden_on_each_backend
    created = approval_json(
        warden,
        "create",
        "--purpose",
        "fraud model v3: train on 2026 transactions",
        "--dataset",
        data / "tx.csv",
        "--dataset",
        data / "tree",
        "--expires",
        "2099-01-01T00:00:00Z",
        "--max-runs",
        "3",
    )
    assert ID_PATTERN.fullmatch(created["id"])
    assert created["state"] == "active"
    assert created["purpose"] == "fraud model v3: train on 2026 transactions"
    assert created["datasets"] == [
        {"path": str(data / "tx.csv"), "sha256": content_sha256(data / "tx.csv")},
        {"path": str(data / "tree"), "sha256": content_sha256(data / "tree")},
    ]
    assert created["expires_at"] == "2099-01-01T00:00:00+00:00"
    assert (created["max_runs"], created["runs_used"], created["revoked_at"]) == (3, 0, None)
    assert created["allow_identifiers"] is False
    assert created["created_by"]
    [event] = admin_events(warden)
    assert (event["action"], event["target"], event["authenticator"]) == ("approval.create", created["id"], "cli")
    details = event["details"]
    assert details["purpose"] == created["purpose"]
    assert details["datasets"] == ",".join(d["sha256"] for d in created["datasets"])
    assert (details["dataset_count"], details["max_runs"], details["allow_identifiers"]) == (2, 3, False)
    assert details["expires_at"] == "2099-01-01T00:00:00+00:00"
    assert details["os_user"] == created["created_by"]


def test_when_approvals_are_listed_and_one_revoked_then_states_and_audit_follow(
    warden_on_each_backend: Warden, data: Path
) -> None:
    warden = warden_on_each_backend
    first = approval_json(warden, "create", "--purpose", "one", "--dataset", data / "tx.csv")
    second = approval_json(
        warden, "create", "--purpose", "two", "--dataset", data / "tree", "--allow-identifiers", "--expires", "30d"
    )
    assert second["allow_identifiers"] is True
    expires = datetime.fromisoformat(second["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    listed = approval_json(warden, "list")
    assert [(a["id"], a["state"]) for a in listed] == [(first["id"], "active"), (second["id"], "active")]

    revoked = approval_json(warden, "revoke", first["id"])
    assert revoked["state"] == "revoked"
    assert revoked["revoked_at"] is not None
    again = approval_json(warden, "revoke", first["id"])
    assert again["revoked_at"] == revoked["revoked_at"]
    assert [a["state"] for a in approval_json(warden, "list")] == ["revoked", "active"]

    events = admin_events(warden)
    assert [(e["action"], e["target"]) for e in events] == [
        ("approval.create", first["id"]),
        ("approval.create", second["id"]),
        ("approval.revoke", first["id"]),
        ("approval.revoke", first["id"]),
    ]
    assert events[2]["details"]["datasets"] == first["datasets"][0]["sha256"]
    assert events[2]["details"]["purpose"] == "one"


def test_when_run_without_json_then_tables_and_sentences_are_printed(
    warden: Warden, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # a terminal wide enough that the purpose is not wrapped
    created = approval(warden, "create", "--purpose", "[bold]markup[/] stays text", "--dataset", data / "tx.csv")
    assert created.exit_code == 0, created.stderr
    assert created.stdout.startswith("Created approval apr_")
    assert content_sha256(data / "tx.csv") in created.stdout
    approval_id = created.stdout.split()[2]
    listed = approval(warden, "list")
    assert listed.exit_code == 0
    assert "1 approvals" in listed.stdout
    assert "[bold]markup[/]" in listed.stdout
    revoked = approval(warden, "revoke", approval_id)
    assert revoked.exit_code == 0
    assert revoked.stdout.startswith(f"Revoked approval {approval_id} at ")


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        pytest.param(["create", "--purpose", "", "--dataset", "tx.csv"], "invalid_argument", 2, id="empty purpose"),
        pytest.param(
            ["create", "--purpose", "x" * 501, "--dataset", "tx.csv"], "invalid_argument", 2, id="long purpose"
        ),
        pytest.param(["create", "--purpose", "p", "--dataset", "absent"], "invalid_argument", 2, id="missing dataset"),
        pytest.param(["create", "--purpose", "p", "--dataset", "link"], "invalid_argument", 2, id="symlinked dataset"),
        pytest.param(
            ["create", "--purpose", "p", "--dataset", "tx.csv", "--expires", "2020-01-01"],
            "invalid_argument",
            2,
            id="past expiry",
        ),
        pytest.param(
            ["create", "--purpose", "p", "--dataset", "tx.csv", "--expires", "soon"],
            "invalid_argument",
            2,
            id="unreadable expiry",
        ),
        pytest.param(
            ["create", "--purpose", "p", "--dataset", "tx.csv", "--max-runs", "0"],
            "invalid_argument",
            2,
            id="zero runs",
        ),
        pytest.param(["revoke", "apr_0000000000000000"], "approval_not_found", 1, id="unknown id"),
        pytest.param(["revoke", "nonsense"], "approval_not_found", 1, id="malformed id"),
    ],
)
def test_when_a_command_fails_then_one_error_line_with_its_code(
    warden: Warden, data: Path, args: list[str], code: str, status: int
) -> None:
    (data / "link").symlink_to(data / "tx.csv")
    resolved = [str(data / a) if a in {"tx.csv", "absent", "link"} else a for a in args]
    result = approval(warden, *resolved)
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")
    assert approval_json(warden, "list") == []


def test_when_create_lacks_a_dataset_then_usage_error(warden: Warden) -> None:
    result = approval(warden, "create", "--purpose", "p")
    assert result.exit_code == 2
    assert "--dataset" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T05:04:05+02:00", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("90d", datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=90)),
        ("12h", datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2w", datetime(2026, 1, 15, tzinfo=UTC)),
    ],
)
def test_when_an_expiry_is_parsed_then_it_is_an_aware_utc_instant(text: str, expected: datetime) -> None:
    assert parse_expiry(text, now=datetime(2026, 1, 1, tzinfo=UTC)) == expected


@pytest.mark.parametrize("text", ["tomorrow", "10y", "999999w", ""])
def test_when_an_expiry_cannot_be_read_then_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--expires"):
        parse_expiry(text, now=datetime(2026, 1, 1, tzinfo=UTC))
