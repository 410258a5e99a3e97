"""``warden audit ship``: the command line over real syslog receivers and files, once and following."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit.test_ship import Receiver, free_port, make_pki
from tests.cli.conftest import Warden, one_error_line
from warden.audit import AuditEvent
from warden.audit.ship import load_positions

WARDEN = Path(sys.executable).with_name("warden")


def record(warden: Warden, count: int, start: int = 1) -> None:
    """Record ``count`` request events with request ids ``req-START`` onwards."""
    with warden.services() as services:
        for number in range(start, start + count):
            event = AuditEvent.request(tenant="acme", request_id=f"req-{number}", status=200)
            services.audit.record(event).result(timeout=30)


def positions(warden: Warden, name: str = "default") -> dict[str, int]:
    """The shipper's committed positions in the data directory's database."""
    with warden.services() as services:
        return load_positions(services.db, name)


def request_ids(receiver: Receiver) -> list[str]:
    """The request ids the receiver got, in arrival order."""
    return [json.loads(m.text.split("] ", 1)[1])["event"]["request_id"] for m in receiver.messages]


def test_ship_once_delivers_to_a_syslog_receiver_and_a_second_run_resumes(warden_on_each_backend: Warden) -> None:
    warden = warden_on_each_backend
    record(warden, 5)
    with Receiver() as receiver:
        first = warden.json("audit", "ship", "--to", receiver.url, "--once", "--batch", "2")
        [stream] = first["positions"]
        assert (first["shipped"], first["batches"], first["positions"]) == (5, 3, {stream: 5})
        assert first["target"] == receiver.url
        assert first["format"] == "syslog"
        record(warden, 3, start=6)
        second = warden.json("audit", "ship", "--to", receiver.url, "--once")
        assert (second["shipped"], second["streams"][stream]["first_seq"]) == (3, 6)
        quiet = warden("audit", "ship", "--to", receiver.url, "--once")
    assert quiet.exit_code == 0, quiet.stderr
    assert f"Nothing new to ship to {receiver.url}." in quiet.stdout
    assert receiver.errors == []
    assert request_ids(receiver) == [f"req-{n}" for n in range(1, 9)]
    assert positions(warden) == {stream: 8}


def test_ship_once_to_a_file_writes_the_export_lines_to_a_private_file(warden: Warden, tmp_path: Path) -> None:
    record(warden, 4)
    out = tmp_path / "siem" / "audit.cef"
    out.parent.mkdir()
    result = warden("audit", "ship", "--to", f"file://{out}", "--format", "cef", "--once", "--name", "cef-file")
    assert result.exit_code == 0, result.stderr
    assert f"Shipped 4 audit records to file://{out} in 1 batches." in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    exported = warden("audit", "export", "--format", "cef")
    assert out.read_text().splitlines() == exported.stdout.splitlines()
    assert list(positions(warden, "cef-file").values()) == [4]
    assert positions(warden) == {}


def test_ship_once_over_tls_verifies_the_receiver_with_the_ca_file(warden: Warden, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    record(warden, 3)
    with Receiver(tls=pki.server_context("127.0.0.1")) as receiver:
        report = warden.json("audit", "ship", "--to", receiver.url, "--ca-file", str(pki.ca_file), "--once")
        refused = warden("audit", "ship", "--to", receiver.url, "--once", "--name", "no-ca")
    assert report["shipped"] == 3
    assert request_ids(receiver) == ["req-1", "req-2", "req-3"]
    assert refused.exit_code == 1
    line = one_error_line(refused)
    assert line.startswith(f"warden: error: delivery_failed: {receiver.url}: the server certificate was refused")
    assert positions(warden, "no-ca") == {}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--to", "udp://127.0.0.1:514"], "unknown scheme"),
        (["--to", "syslog+tcp://127.0.0.1"], "has no port"),
        (["--to", "syslog+tcp://127.0.0.1:99999"], "not a valid URL"),
        (["--to", "syslog+tcp://127.0.0.1:514", "--format", "jsonl"], "takes RFC 5424"),
        (["--to", "file:///tmp/x.log", "--format", "xml"], "unknown format 'xml'"),
        (["--to", "syslog+tcp://127.0.0.1:514", "--ca-file", "ca.pem"], "syslog+tls:// targets only"),
        (["--to", "syslog+tls://127.0.0.1:6514", "--ca-file", "/nonexistent/ca.pem"], "--ca-file: cannot load"),
        (["--to", "syslog+tcp://127.0.0.1:514", "--name", "two words"], "--name: 'two words'"),
        (["--to", "file://relative.jsonl"], "use file:///absolute/path"),
        (["--to", "file:///nonexistent-dir/audit.jsonl"], "does not exist"),
    ],
)
def test_bad_ship_arguments_are_invalid_arguments_with_exit_2(warden: Warden, args: list[str], needle: str) -> None:
    result = warden("audit", "ship", *args, "--once")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("warden: error: invalid_argument: ")
    assert needle in line


def test_ship_once_ends_with_delivery_failed_and_keeps_the_position_of_what_was_delivered(warden: Warden) -> None:
    record(warden, 7)
    with Receiver(refuse_after=3) as receiver:
        result = warden("audit", "ship", "--to", receiver.url, "--once", "--batch", "3")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"warden: error: delivery_failed: {receiver.url}: ")
    assert "gave up after 3 attempts; 3 records were delivered before, and their position is kept" in line
    assert request_ids(receiver) == ["req-1", "req-2", "req-3"]
    assert list(positions(warden).values()) == [3]
    with Receiver(port=receiver.port) as healed:
        assert warden.json("audit", "ship", "--to", healed.url, "--once")["shipped"] == 4
    assert request_ids(healed) == [f"req-{n}" for n in range(4, 8)]


def test_ship_once_with_the_receiver_down_fails_with_nothing_delivered(warden: Warden) -> None:
    record(warden, 2)
    url = f"syslog+tcp://127.0.0.1:{free_port()}"
    result = warden("audit", "ship", "--to", url, "--once", "--poll", "0.01")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"warden: error: delivery_failed: {url}: Connection refused (gave up after 3 attempts; 0 ")
    assert positions(warden) == {}


def start(warden: Warden, *args: str) -> subprocess.Popen[str]:
    """``warden --data-dir … audit ship ARGS`` as a process of its own (signals need a main thread)."""
    return subprocess.Popen(
        [str(WARDEN), "--data-dir", str(warden.data_dir), "audit", "ship", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_following_ships_new_records_until_sigterm_then_exits_cleanly(warden: Warden) -> None:
    record(warden, 3)
    with Receiver() as receiver:
        process = start(warden, "--to", receiver.url, "--poll", "0.05", "--json")
        try:
            assert receiver.wait_for(3)
            record(warden, 4, start=4)
            assert receiver.wait_for(7)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert err == ""
    report = json.loads(out)
    assert report["shipped"] == 7
    assert request_ids(receiver) == [f"req-{n}" for n in range(1, 8)]
    assert list(positions(warden).values()) == [7]


def test_following_waits_for_a_receiver_that_is_down_and_delivers_when_it_comes_up(warden: Warden) -> None:
    record(warden, 4)
    port = free_port()
    process = start(warden, "--to", f"syslog+tcp://127.0.0.1:{port}", "--poll", "0.05", "--json")
    try:
        assert process.stderr is not None
        warning = process.stderr.readline()  # the first failed attempt; it waits and tries again
        assert warning.startswith("warden: warning: delivery_failed: ")
        assert "retrying in" in warning
        with Receiver(port=port) as receiver:
            assert receiver.wait_for(4)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert json.loads(out)["shipped"] == 4
    assert request_ids(receiver) == [f"req-{n}" for n in range(1, 5)]
    assert list(positions(warden).values()) == [4]
