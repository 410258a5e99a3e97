"""A real ``warden serve`` under 200 MiB bodies: each refused before it ends, and the server's memory stays flat.

Eight concurrent anonymous 200 MiB bodies to a JSON route (declared, and streamed to the
console's sign-in), then eight concurrent authenticated 200 MiB chunked uploads to detect and
to model push. Every one is answered 413 while the client still has bytes to send, and the
server's peak resident memory (``VmHWM``) stays under its starting RSS + the largest cap +
300 MiB. The bodies are generated a chunk at a time by :mod:`tests.api.uploads`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import tiny_graph
from tests.api.uploads import Upload, upload
from tests.cli.test_serve import WARDEN, free_port, interrupt
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

MIB = 1024 * 1024
BODY = 200 * MIB
IMAGE_CAP = 8 * MIB
MODEL_CAP = 16 * MIB
SLACK = 300 * MIB
CONCURRENT = 8


def memory(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, dict[str, str]]]:
    """``warden serve`` with an 8 MiB image and 16 MiB model cap; yields its pid, port and keys by role."""
    data_dir = tmp_path_factory.mktemp("memory") / "data"
    services = open_services(Settings(data_dir=data_dir))
    services.tenants.create_tenant("alpha")
    services.registry.push(services.tenants.tenant_id("alpha"), "tiny", tiny_graph())
    keys = {
        "detect": services.tenants.create_key("alpha", Scope.DETECT).key,
        "operator": services.tenants.create_key(None, Scope.ADMIN).key,
    }
    services.close()
    port = free_port()
    env = {
        **os.environ,
        "WARDEN_DATA_DIR": str(data_dir),
        "WARDEN_MAX_IMAGE_BYTES": str(IMAGE_CAP),
        "WARDEN_MAX_MODEL_BYTES": str(MODEL_CAP),
        "WARDEN_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [str(WARDEN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "warden serve exited"
            assert time.monotonic() < deadline, "warden serve did not become ready"
            time.sleep(0.2)
        yield process.pid, port, keys
    finally:
        interrupt(process)


def together(port: int, path: str, headers: dict[str, str], *, chunked: bool) -> list[Upload]:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(lambda _: upload(port, path, headers, BODY, chunked=chunked), range(CONCURRENT)))


def test_huge_bodies_are_refused_before_they_end_and_memory_stays_flat(
    server: tuple[int, int, dict[str, str]],
) -> None:
    pid, port, keys = server
    started = memory(pid, "VmRSS")
    json = {"Content-Type": "application/json"}
    rounds = {
        "anonymous declared JSON": together(port, "/admin/tenants", json, chunked=False),
        "anonymous streamed sign-in": together(port, "/console/session", json, chunked=True),
        "detect": together(
            port,
            "/v1/models/tiny/detect",
            {"Authorization": f"Bearer {keys['detect']}", "Content-Type": "image/png"},
            chunked=True,
        ),
        "model push": together(
            port,
            "/admin/tenants/alpha/models/big",
            {"Authorization": f"Bearer {keys['operator']}", "Content-Type": "application/octet-stream"},
            chunked=True,
        ),
    }
    peak = memory(pid, "VmHWM")
    for name, uploads in rounds.items():
        assert [u.status for u in uploads] == [413] * CONCURRENT, (name, uploads[0].answer[:300])
        assert all(u.refused_early for u in uploads), (name, [u.sent for u in uploads])
        assert all(b"payload_too_large" in u.answer for u in uploads), name
    assert peak < started + MODEL_CAP + SLACK, (started // MIB, peak // MIB)
