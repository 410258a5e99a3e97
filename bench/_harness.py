"""Shared benchmark plumbing: a Warden server in a subprocess on a temp data dir, percentiles, JSON lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARDEN = Path(sys.executable).with_name("warden")
PHOTO = ROOT / "tests" / "detection" / "data" / "astronaut_1280x720.jpg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def warden(data_dir: Path, *args: str) -> object:
    out = subprocess.run(
        [str(WARDEN), "--data-dir", str(data_dir), *args, "--json"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


@contextmanager
def warden_server(env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """``warden serve`` on a free port and a fresh data dir; yields (base URL, data dir)."""
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        warden(data_dir, "init")
        port = free_port()
        process = subprocess.Popen(
            [str(WARDEN), "--data-dir", str(data_dir), "serve", "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            yield url, data_dir
        finally:
            process.terminate()
            process.wait(30)
