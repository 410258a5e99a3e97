"""``warden audit verify|query|export|prune`` over the data directory the server writes its audit trail to."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.audit.formats import SYSLOG, split_cef
from tests.cli.conftest import Warden, one_error_line
from warden.audit import AuditEvent
from warden.cli.audit import parse_instant
from warden.errors import InvalidArgument

NOW = datetime.now(UTC)


def record(warden: Warden, count: int = 6, *, days_ago: float = 0) -> None:
    """Record ``count`` request events (tenants acme and beta alternating) and one admin event, then close."""
    with warden.services() as services:
        for n in range(count):
            moment = NOW - timedelta(days=days_ago, minutes=count - n)
            tenant = "acme" if n % 2 == 0 else "beta"
            event = AuditEvent.request(time=moment, tenant=tenant, request_id=f"req-{days_ago}-{n}", status=200)
            services.audit.record(event).result(timeout=30)
        admin = AuditEvent.admin("tenant.create", "acme", time=NOW - timedelta(days=days_ago), key_id="0123456789ab")
        services.audit.record(admin).result(timeout=30)


def test_verify_on_an_empty_log_succeeds(warden: Warden) -> None:
    assert warden.json("audit", "verify") == {"ok": True, "sealed": True, "streams": []}
    result = warden("audit", "verify")
    assert result.exit_code == 0
    assert "No audit records." in result.stdout


def test_verify_reports_an_intact_log(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden)
    report = warden.json("audit", "verify")
    assert report["ok"] is True
    [stream] = report["streams"]
    assert (stream["records"], stream["first_seq"], stream["last_seq"], stream["problem"]) == (7, 1, 7, None)
    result = warden("audit", "verify")
    assert result.exit_code == 0
    assert "7 records (seq 1-7), 1 checkpoints: intact, sealed by a clean close" in result.stdout
    assert result.stderr == ""
    assert (stream["status"], stream["sealed"], stream["signed_through"]) == ("sealed", True, 7)


def test_verify_warns_of_an_unsealed_tail_and_fails_on_it_when_asked(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden)
    with warden.services() as services, services.db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_checkpoints WHERE kind = 'close'"))  # as a crash leaves it
    stream = warden("audit", "verify", "--json")
    assert stream.exit_code == 0
    assert json.loads(stream.stdout)["sealed"] is False
    assert json.loads(stream.stdout)["streams"][0]["status"] == "unsealed"
    result = warden("audit", "verify")
    assert result.exit_code == 0
    assert "7 records (seq 1-7), 0 checkpoints: intact, UNSEALED: no clean close at its end; every record" in (
        result.stdout
    )
    warning = "warden: warning: audit_unsealed: 1 of 1 streams end unsealed"
    assert result.stderr.startswith(warning)
    strict = warden("audit", "verify", "--require-sealed")
    assert strict.exit_code == 1
    assert strict.stderr.startswith("warden: error: audit_unsealed: 1 of 1 streams end unsealed")


def test_verify_reports_the_first_problem_and_exits_1(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden)
    with warden.services() as services, services.db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_records SET body = replace(body, 'beta', 'gamma') WHERE seq = 4"))
    result = warden("audit", "verify")
    assert result.exit_code == 1
    assert "FIRST PROBLEM at seq 4: modified" in result.stdout
    assert result.stderr.splitlines() == [
        "warden: error: storage_corrupt: the audit trail does not verify: 1 of 1 streams"
    ]
    as_json = warden("audit", "verify", "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["streams"][0]["problem"]["kind"] == "modified"
    assert report["streams"][0]["problem"]["seq"] == 4


def test_query_filters_by_tenant_time_request_id_and_kind(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden, days_ago=10)
    record(warden)
    everything = warden.json("audit", "query")
    assert len(everything) == 14
    assert [e["event"]["tenant"] for e in warden.json("audit", "query", "--tenant", "beta")] == ["beta"] * 6
    recent = warden.json("audit", "query", "--since", "1d")
    assert len(recent) == 7
    assert all(e["event"]["request_id"].startswith("req-0-") for e in recent if e["event"]["kind"] == "request")
    old = warden.json("audit", "query", "--until", (NOW - timedelta(days=5)).isoformat())
    assert len(old) == 7
    [one] = warden.json("audit", "query", "--request-id", "req-10-3")
    assert one["event"]["tenant"] == "beta"
    admins = warden.json("audit", "query", "--kind", "admin")
    assert [e["event"]["action"] for e in admins] == ["tenant.create", "tenant.create"]
    assert len(warden.json("audit", "query", "--limit", "3")) == 3


def test_query_prints_a_table(warden: Warden) -> None:
    record(warden, count=2)
    result = warden("audit", "query")
    assert result.exit_code == 0
    assert "request" in result.stdout
    assert "admin" in result.stdout
    assert "acme" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["query", "--since", "yesterday"], "--since: 'yesterday' is neither"),
        (["query", "--kind", "coffee"], "unknown event kind"),
        (["export", "--format", "xml"], "--format: unknown format 'xml'"),
        (["prune", "--older-than", "soon", "--yes"], "--older-than"),
    ],
)
def test_bad_inputs_are_invalid_arguments_with_exit_2(warden: Warden, args: list[str], needle: str) -> None:
    result = warden("audit", *args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("warden: error: invalid_argument: ")
    assert needle in line


def test_export_writes_jsonl_syslog_and_cef_lines(warden: Warden) -> None:
    record(warden, count=3)
    jsonl = warden("audit", "export", "--format", "jsonl")
    assert jsonl.exit_code == 0
    lines = jsonl.stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    syslog = warden("audit", "export", "--format", "syslog", "--since", "1h").stdout.splitlines()
    assert len(syslog) == 4
    assert all(SYSLOG.fullmatch(line) for line in syslog)
    cef = warden("audit", "export", "--format", "cef", "--tenant", "acme").stdout.splitlines()
    assert [split_cef(line)[1]["cs1"] for line in cef] == ["acme", "acme"]


def test_export_to_a_file_is_private_and_complete(warden: Warden, tmp_path: Path) -> None:
    record(warden, count=3)
    target = tmp_path / "audit.jsonl"
    result = warden("audit", "export", "--format", "jsonl", "--out", target)
    assert result.exit_code == 0
    assert "Exported 4 events" in result.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(target.read_text().splitlines()) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl", "data"]


def test_prune_removes_old_events_and_the_log_still_verifies(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden, days_ago=40)
    record(warden)
    report = warden.json("audit", "prune", "--older-than", "30d", "--yes")
    assert report["removed"] == 7
    [cut] = report["streams"]
    assert (cut["cut_seq"], cut["removed"]) == (7, 7)
    assert warden.json("audit", "verify")["ok"] is True
    assert len(warden.json("audit", "query")) == 7


def test_prune_asks_first_and_an_unconfirmed_prune_removes_nothing(warden: Warden) -> None:
    record(warden, days_ago=40)
    result = warden("audit", "prune", "--older-than", "30d", stdin="n\n")
    assert result.exit_code == 1
    assert "aborted" in result.stderr
    assert len(warden.json("audit", "query")) == 7
    done = warden("audit", "prune", "--older-than", "30d", stdin="y\n")
    assert done.exit_code == 0
    assert "Removed 7 audit events" in done.stdout


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("30d", datetime(2026, 1, 1, tzinfo=UTC)),
        ("12h", datetime(2026, 1, 30, 12, tzinfo=UTC)),
        ("2w", datetime(2026, 1, 17, tzinfo=UTC)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T03:00:00+01:00", datetime(2026, 1, 2, 2, tzinfo=UTC)),
        ("2026-01-02T03:00:00Z", datetime(2026, 1, 2, 3, tzinfo=UTC)),
    ],
)
def test_instants_are_iso_8601_or_a_duration_ago(text_: str, expected: datetime) -> None:
    assert parse_instant("--since", text_, now=datetime(2026, 1, 31, tzinfo=UTC)) == expected


def test_an_absurd_duration_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="too long"):
        parse_instant("--since", "99999999999d")
