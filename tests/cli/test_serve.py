"""``warden demo`` and ``warden serve`` as real processes: the README's first command, end to end."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

WARDEN = Path(sys.executable).with_name("warden")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def interrupt(process: subprocess.Popen[Any]) -> None:
    """Stop a server as Ctrl-C would (SIGINT), or kill it when it has not stopped within 20 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(args: list[str], env: dict[str, str]) -> Iterator[queue.Queue[str]]:
    """Run ``warden ARGS``; yields a queue of its output lines; stops it with SIGINT (then SIGKILL)."""
    process = subprocess.Popen(
        [str(WARDEN), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        interrupt(process)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def wait_for(lines: queue.Queue[str], needle: str, timeout: float = 60, seen: list[str] | None = None) -> str:
    """The first line holding ``needle``; every line read on the way is added to ``seen`` when given."""
    deadline = time.monotonic() + timeout
    seen = [] if seen is None else seen
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not printed within {timeout}s; output: {''.join(seen)}")


def test_warden_demo_prints_a_curl_command_that_returns_detections(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WARDEN_DATA_DIR": str(tmp_path / "data"), "WARDEN_PORT": str(port)}
    with running(["demo"], env) as lines:
        curl = wait_for(lines, "curl ")
        wait_for(lines, "Uvicorn running")
        argv = shlex.split(curl)
        headers = dict(argv[i + 1].split(": ", 1) for i, word in enumerate(argv) if word == "-H")
        body = Path(next(w for w in argv if w.startswith("@"))[1:]).read_bytes()
        answer = httpx.post(argv[-1], content=body, headers=headers, timeout=60)
    assert argv[-1] == f"http://127.0.0.1:{port}/v1/models/fall/detect"
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["model"] == "fall"
    assert result["detections"][0]["class_name"] == "Normal"


def test_warden_demo_twice_reuses_the_tenant_and_model(tmp_path: Path) -> None:
    env = {**os.environ, "WARDEN_DATA_DIR": str(tmp_path / "data")}
    for _ in range(2):
        env["WARDEN_PORT"] = str(free_port())
        with running(["demo"], env) as lines:
            wait_for(lines, "Uvicorn running")
    listed = subprocess.run(
        [str(WARDEN), "model", "list", "demo", "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert '"version": 1' in listed.stdout
    assert '"version": 2' not in listed.stdout


def test_warden_serve_answers_health_and_refuses_unknown_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WARDEN_DATA_DIR": str(tmp_path / "data")}
    with running(["serve", "--port", str(port)], env) as lines:
        wait_for(lines, "Uvicorn running")
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").json() == {"ready": True}
    bad = subprocess.run(
        [str(WARDEN), "serve"], env={**env, "WARDEN_BOGUS": "1"}, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "unknown setting WARDEN_BOGUS" in bad.stderr


@pytest.mark.parametrize(("trusted", "secure"), [(None, False), ('["127.0.0.1"]', True)])
def test_forwarded_https_counts_only_from_a_trusted_proxy(tmp_path: Path, trusted: str | None, secure: bool) -> None:
    data_dir = tmp_path / "data"
    services = open_services(Settings(data_dir=data_dir))
    try:
        key = services.tenants.create_key(None, Scope.ADMIN).key
    finally:
        services.close()
    port = free_port()
    env = {**os.environ, "WARDEN_DATA_DIR": str(data_dir)}
    if trusted is not None:
        env["WARDEN_TRUSTED_PROXIES"] = trusted
    with running(["serve", "--port", str(port)], env) as lines:
        wait_for(lines, "Uvicorn running")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/console/session", json={"key": key}, headers={"X-Forwarded-Proto": "https"}
        )
    assert answer.status_code == 200, answer.text
    assert ("Secure" in answer.headers["set-cookie"]) is secure
