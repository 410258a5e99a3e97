"""The audit trail survives a killed server: `warden serve` under concurrent load, SIGKILLed, several times.

After each kill the log verifies (its stream reported unsealed: no clean close; each restart
after a kill recorded as a resumption, so a later clean close cannot hide the kill), and every
request that received a 200 has its record: an answer goes out only after its record is
committed (sync durability, the default).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.api.conftest import tiny_graph
from tests.cli.test_serve import free_port
from warden.audit import AuditFilter
from warden.samples import SAMPLE_IMAGE
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

WARDEN = Path(sys.executable).with_name("warden")
CLIENTS = 8
KILLS = 3


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until the server answers its readiness probe (or fail if it died)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"warden serve exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("warden serve did not become ready")


def load(url: str, key: str, acknowledged: list[str], stop: threading.Event) -> None:
    """Detect requests in a loop; the request id of every 200 goes to ``acknowledged``."""
    image = SAMPLE_IMAGE.read_bytes()
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            request_id = uuid.uuid4().hex
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg", "X-Request-ID": request_id}
            try:
                answer = client.post(f"{url}/v1/models/tiny/detect", content=image, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone
            if answer.status_code == 200:
                acknowledged.append(request_id)


def test_every_acknowledged_request_is_in_a_log_that_verifies_after_each_sigkill(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    services = open_services(settings)
    try:
        services.tenants.create_tenant("acme")
        services.registry.push(services.tenants.tenant_id("acme"), "tiny", tiny_graph())
        key = services.tenants.create_key("acme", Scope.DETECT).key
    finally:
        services.close()
    rng = random.Random(20261122)
    acknowledged: list[str] = []
    env = {**os.environ, "WARDEN_DATA_DIR": str(settings.data_dir), "WARDEN_WORKERS": "2"}
    for kill in range(KILLS):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [str(WARDEN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(url, process)
            stop = threading.Event()
            before = len(acknowledged)
            clients = [threading.Thread(target=load, args=(url, key, acknowledged, stop)) for _ in range(CLIENTS)]
            for client in clients:
                client.start()
            while len(acknowledged) < before + 20:  # some load is answered before the kill
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))  # then a random moment
            process.kill()
            process.wait(timeout=30)
        finally:
            stop.set()
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for client in clients:
            client.join(timeout=30)

        reopened = open_services(settings)
        try:
            report = reopened.audit.verify()
            recorded = {entry.event.request_id for entry in reopened.audit.scan(AuditFilter(tenant="acme"))}
        finally:
            reopened.close()
        assert report.ok, report
        assert report.unsealed == report.streams  # a crash is not tampering, but its tail shows unsealed
        [stream] = report.streams
        assert len(stream.resumed) == kill  # every restart after a kill said so first, once
        assert all(resumption.found_last_seq < resumption.seq for resumption in stream.resumed)
        missing = [request_id for request_id in acknowledged if request_id not in recorded]
        assert not missing, f"{len(missing)} acknowledged requests have no audit record"
    assert len(acknowledged) >= KILLS * 20
