"""A tenant's model cannot hold the workers: its runs stop at the deadline, the run-time cap or a disconnect.

A real server over SQLite with few workers. Tenant ``spin`` serves a model that passes upload (no upload image
reaches its trigger) and spins for days on an image whose top-left pixel is the secret one; tenant ``calm`` serves
a small graph. Were a run not stopped, the spinning request would hold its worker and ``calm``'s request would
time out (60 s) instead of being answered: no test here asserts a duration.
"""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import tiny_graph
from tests.api.server import running_server
from tests.registry import hostile
from warden.api import create_app
from warden.audit import AuditEvent, AuditFilter
from warden.detection.runs import WATCHDOG
from warden.services import Services, open_services
from warden.serving import DetectionEngine
from warden.settings import Settings
from warden.tenancy import Scope

FOREVER = 1e12
"""Loop trips of the spinning model on its secret pixel: weeks of CPU, so only a stop ends the run."""


def secret_png() -> bytes:
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[0, 0] = (*hostile.SECRET_PIXEL, 0)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def calm_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Served:
    url: str
    services: Services
    engine: DetectionEngine
    spin_key: str
    calm_key: str


def serve(tmp_path: Path, workers: int) -> Iterator[Served]:
    services = open_services(Settings(data_dir=tmp_path / "data", workers=workers))
    try:
        for name in ("spin", "calm"):
            services.tenants.create_tenant(name)
        services.registry.push(services.tenants.tenant_id("spin"), "spin", hostile.spinning("secret", FOREVER))
        services.registry.push(services.tenants.tenant_id("calm"), "tiny", tiny_graph())
        app = create_app(services)
        with running_server(app) as url:
            yield Served(
                url,
                services,
                app.state.engine,
                services.tenants.create_key("spin", Scope.DETECT).key,
                services.tenants.create_key("calm", Scope.DETECT).key,
            )
    finally:
        services.close()


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("one-worker"), workers=1)


def detect(served: Served, key: str, model: str, image: bytes, **headers: str) -> tuple[httpx.Response, str]:
    request_id = uuid.uuid4().hex
    answer = httpx.post(
        f"{served.url}/v1/models/{model}/detect",
        content=image,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png", "X-Request-ID": request_id, **headers},
        timeout=60,
    )
    return answer, request_id


def record_of(services: Services, request_id: str) -> AuditEvent:
    assert services.audit.flush(timeout=30)
    (entry,) = list(services.audit.scan(AuditFilter(request_id=request_id)))
    return entry.event


def test_a_spinning_run_is_stopped_at_its_deadline_audited_and_its_worker_freed(one_worker: Served) -> None:
    answer, request_id = detect(
        one_worker, one_worker.spin_key, "spin", secret_png(), **{"X-Request-Timeout-Ms": "300"}
    )
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert "while the model ran" in answer.json()["error"]["message"]
    event = record_of(one_worker.services, request_id)
    assert (event.status, event.error_code) == (504, "deadline_exceeded")
    assert (event.details["cut_stage"], event.details["cut_by"]) == ("inference", "deadline")
    calm, _ = detect(one_worker, one_worker.calm_key, "tiny", calm_png())
    assert calm.status_code == 200  # the only worker is free again


def test_a_run_past_its_versions_cap_is_stopped_without_any_deadline_of_the_clients(one_worker: Served) -> None:
    spin = one_worker.services.tenants.tenant_id("spin")
    one_worker.services.registry.set_run_cap(spin, "spin", 1, 200)
    try:
        time.sleep(1.1)  # past the resolve cache (WARDEN_CACHE_SECONDS): the server sees the new cap
        answer, request_id = detect(one_worker, one_worker.spin_key, "spin", secret_png())
    finally:
        one_worker.services.registry.set_run_cap(spin, "spin", 1, None)
    assert answer.status_code == 504
    assert "run-time cap (200 ms)" in answer.json()["error"]["message"]
    event = record_of(one_worker.services, request_id)
    assert (event.details["cut_stage"], event.details["cut_by"]) == ("inference", "run_cap")


def test_a_client_that_leaves_during_the_run_stops_it(one_worker: Served) -> None:
    stopped = WATCHDOG.stopped
    request_id = uuid.uuid4().hex
    body = secret_png()
    head = (
        f"POST /v1/models/spin/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {one_worker.spin_key}\r\n"
        f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\n\r\n"
    ).encode()
    host, port = one_worker.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(head + body)
        waited = time.monotonic() + 30
        while one_worker.engine.scheduler.running("spin") == 0 and time.monotonic() < waited:
            time.sleep(0.01)
        time.sleep(0.2)  # past decoding: the run is in flight
    while WATCHDOG.stopped == stopped and time.monotonic() < waited:
        time.sleep(0.01)
    assert WATCHDOG.stopped > stopped
    calm, _ = detect(one_worker, one_worker.calm_key, "tiny", calm_png())
    assert calm.status_code == 200
    event = record_of(one_worker.services, request_id)
    assert (event.status, event.error_code) == (499, "client_closed_request")
    assert (event.details["cut_stage"], event.details["cut_by"]) == ("inference", "disconnect")


def test_four_spinning_requests_cannot_keep_another_tenant_waiting(tmp_path: Path) -> None:
    """The issue's scenario: four spinning requests with a 1 s deadline on two workers, and a neighbour's detect."""
    for served in serve(tmp_path, workers=2):
        with ThreadPoolExecutor(5) as pool:
            spinning = [
                pool.submit(detect, served, served.spin_key, "spin", secret_png(), **{"X-Request-Timeout-Ms": "1000"})
                for _ in range(4)
            ]
            time.sleep(0.2)
            calm = pool.submit(detect, served, served.calm_key, "tiny", calm_png())
            assert calm.result()[0].status_code == 200
            assert [future.result()[0].status_code for future in spinning] == [504] * 4
