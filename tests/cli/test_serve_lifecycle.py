"""``warden serve`` as a process: sealed on SIGTERM, a crash made visible, an empty working directory, private files.

Each test runs the real command in a subprocess and checks what an operator would: the exit
status, ``warden audit verify``, ``/proc/<pid>/cwd`` and ``os.stat`` of the data directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import tiny_graph
from tests.audit.test_server_crash import wait_ready
from tests.cli.test_serve import WARDEN, free_port, interrupt
from warden.samples import SAMPLE_IMAGE
from warden.settings import ENV_PREFIX

STREAM = "served"


def clean_env(**values: str) -> dict[str, str]:
    """The environment without any ``WARDEN_*`` variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    return env | values


@dataclass
class Served:
    """A ``warden serve`` process, its base URL and an operator key."""

    process: subprocess.Popen[bytes]
    url: str
    operator: str

    def bearer(self, key: str | None = None) -> dict[str, str]:
        """The Authorization header of ``key`` (default: the operator's)."""
        return {"Authorization": f"Bearer {key or self.operator}"}


@contextmanager
def served(cwd: Path, env: dict[str, str]) -> Iterator[Served]:
    """``warden init`` then ``warden serve`` run from ``cwd``; stopped by SIGINT (then kill) if still running."""
    init = subprocess.run([str(WARDEN), "init", "--json"], cwd=cwd, env=env, capture_output=True, check=True)
    port = free_port()
    process = subprocess.Popen(
        [str(WARDEN), "serve", "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield Served(process, url, json.loads(init.stdout)["admin_key"])
    finally:
        if process.poll() is None:
            interrupt(process)
        if process.stderr is not None:
            process.stderr.close()


def load_tenant(server: Served) -> str:
    """Through the API: tenant ``acme``, its ``tiny`` model and a detect key."""
    with httpx.Client(base_url=server.url, headers=server.bearer(), timeout=30) as client:
        assert client.post("/admin/tenants", json={"name": "acme"}).status_code == 201
        pushed = client.post("/admin/tenants/acme/models/tiny", content=tiny_graph())
        assert pushed.status_code == 201, pushed.text
        created = client.post("/admin/tenants/acme/keys", json={"scope": "detect"})
        assert created.status_code == 201, created.text
        return str(created.json()["key"])


def detect(server: Served, key: str, request_id: str) -> httpx.Response:
    """One detect request on the sample image."""
    headers = {**server.bearer(key), "Content-Type": "image/jpeg", "X-Request-ID": request_id}
    return httpx.post(f"{server.url}/v1/models/tiny/detect", content=SAMPLE_IMAGE.read_bytes(), headers=headers)


def verify(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``warden audit verify`` over the same data directory, as another replica id (it writes nothing)."""
    return subprocess.run(
        [str(WARDEN), "audit", "verify", *args],
        cwd=cwd,
        env=env | {"WARDEN_REPLICA_ID": "verifier"},
        capture_output=True,
        text=True,
        check=False,
    )


def stream_report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The served stream's part of a ``verify --json`` report."""
    report = json.loads(result.stdout)
    [stream] = [s for s in report["streams"] if s["stream"] == STREAM]
    return stream  # type: ignore[no-any-return]


def delete_last_records(database: Path, count: int) -> None:
    """Remove the served stream's last ``count`` audit records, as someone with the database file could."""
    with sqlite3.connect(database) as connection:
        connection.execute(
            "DELETE FROM audit_records WHERE stream = ? AND seq > (SELECT max(seq) - ? FROM audit_records "
            "WHERE stream = ?)",
            (STREAM, count, STREAM),
        )


def in_flight_detect(server: Served, key: str, request_id: str) -> socket.socket:
    """A detect request whose head is read and whose body the application is waiting for (100 Continue seen)."""
    body = SAMPLE_IMAGE.read_bytes()
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        (
            f"POST /v1/models/tiny/detect HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: image/jpeg\r\nX-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    return sock


def wait_until_refusing(server: Served) -> None:
    """Until the server no longer accepts connections (it has stopped listening to shut down)."""
    port = int(server.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError("the server went on accepting connections after SIGTERM")


def test_sigterm_drains_the_request_in_flight_and_seals_the_audit_trail(tmp_path: Path) -> None:
    env = clean_env(WARDEN_REPLICA_ID=STREAM, WARDEN_WORKERS="1")
    with served(tmp_path, env) as server:
        key = load_tenant(server)
        for n in range(5):
            assert detect(server, key, f"before-{n}").status_code == 200
        sock = in_flight_detect(server, key, "in-flight")
        server.process.send_signal(signal.SIGTERM)
        wait_until_refusing(server)  # the shutdown has begun, with the request still waiting for its body
        sock.sendall(SAMPLE_IMAGE.read_bytes())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert server.process.wait(timeout=30) == 0  # within Kubernetes' 30 s grace
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"connection: close" in answer.lower()

    verified = verify(tmp_path, env, "--json", "--require-sealed")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stderr == ""
    assert json.loads(verified.stdout)["sealed"] is True
    stream = stream_report(verified)
    assert (stream["status"], stream["signed_through"]) == ("sealed", stream["last_seq"])
    query = subprocess.run(
        [str(WARDEN), "audit", "query", "--request-id", "in-flight", "--json"],
        cwd=tmp_path,
        env=env | {"WARDEN_REPLICA_ID": "verifier"},
        capture_output=True,
        check=True,
    )
    assert len(json.loads(query.stdout)) == 1  # the drained request was recorded before the seal

    delete_last_records(tmp_path / "warden-data" / "warden.db", 2)
    tampered = verify(tmp_path, env, "--json")
    assert tampered.returncode == 1
    assert stream_report(tampered)["problem"]["kind"] == "truncated"


def test_a_killed_server_leaves_an_unsealed_tail_that_verify_reports(tmp_path: Path) -> None:
    env = clean_env(WARDEN_REPLICA_ID=STREAM, WARDEN_WORKERS="1", WARDEN_AUDIT_CHECKPOINT_EVERY="3")
    with served(tmp_path, env) as server:
        key = load_tenant(server)
        for _ in range(8):
            assert detect(server, key, uuid.uuid4().hex).status_code == 200
        server.process.kill()
        server.process.wait(timeout=30)
    database = tmp_path / "warden-data" / "warden.db"
    for removed in (0, 2):  # as the crash left it, then with its last records removed
        delete_last_records(database, removed)
        result = verify(tmp_path, env, "--json")
        assert result.returncode == 0, result.stderr  # a crash is not tampering ...
        stream = stream_report(result)
        assert (stream["ok"], stream["sealed"], stream["status"]) == (True, False, "unsealed")  # ... but it shows
        assert stream["signed_through"] < stream["last_seq"] or removed
        assert result.stderr.startswith("warden: warning: audit_unsealed: 1 of 1 streams end unsealed (served)")
        strict = verify(tmp_path, env, "--require-sealed")
        assert strict.returncode == 1
        assert "UNSEALED" in strict.stdout
        assert strict.stderr.startswith("warden: error: audit_unsealed: ")


def modes(root: Path) -> dict[str, int]:
    """The permission bits of ``root`` and everything under it, by path relative to ``root``."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


def private(found: dict[str, int]) -> dict[str, int]:
    """The entries of ``found`` that group or others may use (none should be)."""
    return {path: mode for path, mode in found.items() if mode & 0o077}


def test_a_fresh_warden_init_makes_a_private_data_directory(tmp_path: Path) -> None:
    subprocess.run([str(WARDEN), "init"], cwd=tmp_path, env=clean_env(), capture_output=True, check=True)
    found = modes(tmp_path / "warden-data")
    assert {"warden.db", "secret.key", "warden.db.migrate-lock"} <= set(found)
    assert found["."] == 0o700
    assert private(found) == {}


def test_serve_runs_in_an_empty_private_directory_and_keeps_every_file_private(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"  # the README's layout: the data directory under the working directory
    with served(tmp_path, clean_env(WARDEN_WORKERS="1")) as server:
        cwd = Path(os.readlink(f"/proc/{server.process.pid}/cwd"))
        assert cwd != tmp_path
        assert tmp_path not in cwd.parents
        assert os.listdir(cwd) == []
        assert stat.S_IMODE(cwd.stat().st_mode) == 0o700
        key = load_tenant(server)  # it still finds its data: the operator key from init works
        assert detect(server, key, "modes").status_code == 200
        assert os.listdir(cwd) == []
        found = modes(data)
        assert any(path.startswith("blobs/") for path in found)  # a model pushed through the server
        assert {"warden.db-wal", "warden.db-shm"} <= set(found)
        assert private(found) == {}
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    assert not cwd.exists()  # removed at exit
    assert private(modes(data)) == {}


@pytest.mark.parametrize("loose", [0o755, 0o777])
def test_an_existing_loose_data_directory_is_tightened(tmp_path: Path, loose: int) -> None:
    data = tmp_path / "warden-data"
    data.mkdir()
    data.chmod(loose)
    subprocess.run([str(WARDEN), "init"], cwd=tmp_path, env=clean_env(), capture_output=True, check=True)
    data.chmod(loose)
    (data / "warden.db").chmod(0o644)
    (data / "warden.db.migrate-lock").chmod(0o666)
    subprocess.run([str(WARDEN), "tenant", "list"], cwd=tmp_path, env=clean_env(), capture_output=True, check=True)
    assert private(modes(data)) == {}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
