"""Dynamic batching over HTTP: admin settings per version, and concurrent detects sharing one ONNX run.

The app runs in-process with an engine of one worker. To make batching
deterministic, a gate job holds that worker while the concurrent requests queue;
when it opens, the worker takes the first request and gathers the rest.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import tiny_graph
from tests.backends import BACKENDS, database_url
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from tests.detection.images import encode, gradient
from warden.api import create_app
from warden.detection import DetectionModel, ImageLimits
from warden.registry import BatchSettings, ResolvedModel
from warden.services import Services, open_services
from warden.serving import DetectionEngine
from warden.serving.admission import Admission
from warden.serving.engine import GPU_BATCH_SIZE, GPU_QUEUE_DELAY_MS
from warden.settings import Settings
from warden.tenancy import Scope

META = {"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "task": "detect", "stride": "32", "imgsz": "[64, 64]"}
BOXES = [Box(32, 32, 20, 10, 1, 0.3), Box(40, 40, 10, 10, 2, 0.6), Box(12, 50, 6, 6, 0, 0.45)]


def dynamic_graph() -> bytes:
    """A detection model with a dynamic batch whose first box's score grows with the image's brightness."""
    rows = anchor_free_rows(BOXES, 3, 8 * 8 + 4 * 4 + 2 * 2)
    return yolo_graph(rows, input_shape=("batch", 3, 64, 64), brightness_at=(5, 0), metadata=META)


def png(height: int, width: int, shift: int = 0) -> bytes:
    return encode(Image.fromarray(((gradient(height, width).astype(np.int64) + shift) % 256).astype(np.uint8)), "PNG")


# Four requests: different image sizes, contents and thresholds.
REQUESTS = [
    (png(48, 64), {"conf": "0.25"}),
    (png(64, 128, 60), {"conf": "0.5"}),
    (png(30, 50, 130), {"conf": "0.1", "iou": "0.3"}),
    (png(64, 64, 200), {"conf": "0.7", "max_det": "1"}),
]


@dataclass(frozen=True)
class App:
    """One tenant, ``acme``, on an app whose engine has a single worker."""

    app: FastAPI
    client: TestClient
    services: Services
    operator: dict[str, str]
    detect: dict[str, str]

    @property
    def engine(self) -> DetectionEngine:
        engine: DetectionEngine = self.app.state.engine
        return engine

    def push(self, model: str, data: bytes, **query: Any) -> httpx.Response:
        return self.client.post(
            f"/admin/tenants/acme/models/{model}",
            params=query,
            content=data,
            headers={**self.operator, "Content-Type": "application/octet-stream"},
        )

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        answer = self.client.get("/admin/tenants/acme/models", headers=self.operator)
        assert answer.status_code == 200, answer.text
        return {m["name"]: m["versions"] for m in answer.json()}

    def set_batching(self, model: str, version: int | str, body: Any) -> httpx.Response:
        url = f"/admin/tenants/acme/models/{model}/versions/{version}/batching"
        if isinstance(body, str):
            return self.client.put(url, content=body, headers={**self.operator, "Content-Type": "application/json"})
        return self.client.put(url, json=body, headers=self.operator)


@pytest.fixture(params=BACKENDS)
def one_worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with database_url(request.param, tmp_path) as url:
        services = open_services(Settings(data_dir=tmp_path / "data", database_url=url, workers=1))
        app = create_app(services)
        try:
            services.tenants.create_tenant("acme")
            operator = services.tenants.create_key(None, Scope.ADMIN).key
            detect = services.tenants.create_key("acme", Scope.DETECT).key
            yield App(
                app=app,
                client=TestClient(app),
                services=services,
                operator={"Authorization": f"Bearer {operator}"},
                detect={"Authorization": f"Bearer {detect}"},
            )
        finally:
            app.state.engine.close()
            services.close()


def error_of(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_push_with_batching_shows_in_the_listing(one_worker: App) -> None:
    pushed = one_worker.push("m", dynamic_graph(), max_batch_size=4, max_queue_delay_ms=2.5)
    assert pushed.status_code == 201, pushed.text
    assert one_worker.push("m", tiny_graph(0.5)).status_code == 201
    versions = one_worker.listing()["m"]
    assert [(v["version"], v["max_batch_size"], v["max_queue_delay_ms"]) for v in versions] == [
        (1, 4, 2.5),
        (2, None, None),
    ]


def test_set_batching_answers_the_model_with_the_new_settings(one_worker: App) -> None:
    one_worker.push("m", dynamic_graph())
    answer = one_worker.set_batching("m", 1, {"max_batch_size": 16, "max_queue_delay_ms": 1000})
    assert answer.status_code == 200, answer.text
    [version] = answer.json()["versions"]
    assert (version["max_batch_size"], version["max_queue_delay_ms"]) == (16, 1000.0)
    assert one_worker.listing()["m"][0]["max_batch_size"] == 16
    tenant = one_worker.services.tenants.tenant_id("acme")
    assert one_worker.services.registry.resolve(tenant, "m").batching == BatchSettings(16, 1000.0)
    answer = one_worker.set_batching("m", 1, {})  # nulls: back to the server's choice
    assert answer.status_code == 200, answer.text
    [version] = answer.json()["versions"]
    assert (version["max_batch_size"], version["max_queue_delay_ms"]) == (None, None)
    assert one_worker.listing()["m"] == [version]


@pytest.mark.parametrize(
    "query",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 257},
        {"max_batch_size": -1},
        {"max_batch_size": "many"},
        {"max_batch_size": 2.5},
        {"max_queue_delay_ms": -0.5},
        {"max_queue_delay_ms": 1000.5},
        {"max_queue_delay_ms": "nan"},
        {"max_queue_delay_ms": "inf"},
        {"max_queue_delay_ms": "soon"},
    ],
    ids=repr,
)
def test_a_push_with_bad_batching_values_is_400_and_stores_nothing(one_worker: App, query: dict[str, Any]) -> None:
    answer = one_worker.push("m", dynamic_graph(), **query)
    assert error_of(answer) == (400, "invalid_argument")
    assert one_worker.listing() == {}


@pytest.mark.parametrize(
    "body",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 257},
        {"max_batch_size": "many"},
        {"max_queue_delay_ms": -1},
        {"max_queue_delay_ms": 1001},
        '{"max_queue_delay_ms": NaN}',
        '{"max_queue_delay_ms": Infinity}',
        "not json",
    ],
    ids=repr,
)
def test_set_batching_with_bad_values_is_400_and_changes_nothing(one_worker: App, body: Any) -> None:
    one_worker.push("m", dynamic_graph(), max_batch_size=4, max_queue_delay_ms=3)
    assert error_of(one_worker.set_batching("m", 1, body)) == (400, "invalid_argument")
    [version] = one_worker.listing()["m"]
    assert (version["max_batch_size"], version["max_queue_delay_ms"]) == (4, 3.0)


def test_a_fixed_batch_model_may_not_batch(one_worker: App) -> None:
    fixed = tiny_graph(0.5)  # input [1, 3, 64, 64]
    refused = one_worker.push("fixed", fixed, max_batch_size=4)
    assert error_of(refused) == (400, "invalid_argument")
    assert "fixed" in refused.json()["error"]["message"]
    assert one_worker.listing() == {}
    assert one_worker.push("fixed", fixed, max_batch_size=1, max_queue_delay_ms=5).status_code == 201
    assert error_of(one_worker.set_batching("fixed", 1, {"max_batch_size": 2})) == (400, "invalid_argument")
    assert one_worker.set_batching("fixed", 1, {"max_queue_delay_ms": 1}).status_code == 200


def test_set_batching_of_a_missing_model_or_version_is_404(one_worker: App) -> None:
    one_worker.push("m", dynamic_graph())
    assert error_of(one_worker.set_batching("ghost", 1, {"max_batch_size": 2}))[0] == 404
    assert error_of(one_worker.set_batching("m", 2, {"max_batch_size": 2}))[0] == 404
    assert error_of(one_worker.set_batching("m", 0, {"max_batch_size": 2})) == (400, "invalid_argument")


def block(engine: DetectionEngine, tenant: str = "acme") -> threading.Event:
    """Occupy the engine's only worker, as ``tenant``'s work, until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    engine.scheduler.submit(tenant, hold)
    assert started.wait(10)
    return release


def answer_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    return {key: body[key] for key in ("width", "height", "detections")}


async def concurrently(
    app: FastAPI, engine: DetectionEngine, headers: dict[str, str], gate: str = "acme"
) -> list[httpx.Response]:
    """Send every request at once while ``gate`` holds the worker; open the gate once all four are queued."""
    release = block(engine, gate)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://warden.test", timeout=60) as client:
        calls = [
            asyncio.ensure_future(
                client.post(
                    "/v1/models/batched/detect",
                    params=query,
                    content=image,
                    headers={**headers, "Content-Type": "image/png"},
                )
            )
            for image, query in REQUESTS
        ]
        try:
            for _ in range(1000):
                if engine.scheduler.queued("acme") == len(REQUESTS):
                    break
                await asyncio.sleep(0.01)
            assert engine.scheduler.queued("acme") == len(REQUESTS)
        finally:
            release.set()
        return list(await asyncio.gather(*calls))


def test_concurrent_detects_share_one_run_and_answer_as_one_by_one(
    one_worker: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dynamic_graph()
    batched = one_worker.push("batched", data, max_batch_size=4, max_queue_delay_ms=1000)
    assert batched.status_code == 201, batched.text
    assert one_worker.push("plain", data).status_code == 201  # the same bytes, unbatched (the CPU default)
    rows: list[int] = []
    real = DetectionModel.infer

    def spy(self: DetectionModel, tensor: npt.NDArray[np.floating], **limits: Any) -> npt.NDArray[np.float32]:
        rows.append(int(tensor.shape[0]))
        return real(self, tensor, **limits)

    monkeypatch.setattr(DetectionModel, "infer", spy)
    engine = one_worker.engine
    responses = asyncio.run(concurrently(one_worker.app, engine, one_worker.detect))
    together = [answer_of(r) for r in responses]
    assert all(r.headers["X-Model-Version"] == "1" for r in responses)
    batches, requests = engine.scheduler.batch_counts()
    assert (batches, requests) == (1, 4)
    assert batches < requests
    assert rows == [1, 4]  # the session's warm-up, then all four requests in one ONNX run

    rows.clear()
    alone = []
    for image, query in REQUESTS:
        response = one_worker.client.post(
            "/v1/models/plain/detect",
            params=query,
            content=image,
            headers={**one_worker.detect, "Content-Type": "image/png"},
        )
        alone.append(answer_of(response))
    assert rows == [1, 1, 1, 1]  # the same resident session, one request per run
    assert engine.scheduler.batch_counts() == (1, 4)  # the plain version never went through batching
    assert together == alone
    assert len({repr(a) for a in alone}) == len(REQUESTS)  # four different answers


def test_concurrent_detects_share_one_run_while_another_tenant_is_active(one_worker: App) -> None:
    # Regression: the scheduler's headroom rule counts each request gathered into a batch as a worker held,
    # so while another tenant has been active in the last few seconds a tenant's batch stops at
    # `workers - headroom` requests (here 1: no batching at all), although headroom is 0.
    one_worker.push("batched", dynamic_graph(), max_batch_size=4, max_queue_delay_ms=1000)
    engine = one_worker.engine
    responses = asyncio.run(concurrently(one_worker.app, engine, one_worker.detect, gate="another-tenant"))
    assert [r.status_code for r in responses] == [200] * 4
    assert engine.scheduler.batch_counts() == (1, 4)


def test_one_bad_request_in_a_batch_fails_alone(one_worker: App) -> None:
    one_worker.push("batched", dynamic_graph(), max_batch_size=4, max_queue_delay_ms=1000)
    engine = one_worker.engine
    release = block(engine)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=one_worker.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://warden.test", timeout=60) as client:
            headers = {**one_worker.detect, "Content-Type": "image/png"}
            bodies = [png(48, 64), b"\x89PNG\r\n\x1a\nbroken", png(64, 64, 9)]
            calls = [
                asyncio.ensure_future(client.post("/v1/models/batched/detect", content=b, headers=headers))
                for b in bodies
            ]
            try:
                for _ in range(1000):
                    if engine.scheduler.queued("acme") == len(bodies):
                        break
                    await asyncio.sleep(0.01)
            finally:
                release.set()
            return list(await asyncio.gather(*calls))

    good, bad, other = asyncio.run(scenario())
    assert good.status_code == other.status_code == 200
    assert error_of(bad) == (400, "invalid_image")
    assert engine.scheduler.batch_counts() == (1, 3)


def resolved(info_batch: int | None, settings: BatchSettings) -> ResolvedModel:
    return ResolvedModel(name="m", version=1, sha256="0" * 64, info={"batch": info_batch}, batching=settings)


GPU_DEFAULT = (GPU_BATCH_SIZE, GPU_QUEUE_DELAY_MS / 1000)


@pytest.mark.parametrize(
    ("gpu", "batch", "settings", "expected"),
    [
        (False, None, BatchSettings(), (1, 0.0)),  # CPU: off by default
        (False, None, BatchSettings(4, 1000.0), (4, 1.0)),  # explicit on
        (False, None, BatchSettings(4, None), (4, 0.0)),
        (False, None, BatchSettings(None, 5.0), (1, 0.005)),
        (False, 1, BatchSettings(4, 10.0), (1, 0.0)),  # a fixed batch never batches, whatever the row says
        (False, 4, BatchSettings(), (1, 0.0)),
        (True, None, BatchSettings(), GPU_DEFAULT),  # GPU: on by default
        (True, None, BatchSettings(1, None), (1, GPU_QUEUE_DELAY_MS / 1000)),  # explicitly off
        (True, None, BatchSettings(None, 0.0), (GPU_BATCH_SIZE, 0.0)),
        (True, None, BatchSettings(32, 250.0), (32, 0.25)),
        (True, 1, BatchSettings(), (1, 0.0)),
        (True, 1, BatchSettings(8, 2.0), (1, 0.0)),
    ],
)
def test_the_engines_batching_policy(
    gpu: bool, batch: int | None, settings: BatchSettings, expected: tuple[int, float], tmp_path: Path
) -> None:
    services = open_services(Settings(data_dir=tmp_path / "data"))
    engine = DetectionEngine(services.registry.blobs, ImageLimits(), Admission.create(services.db, None))
    try:
        assert engine.gpu is False  # the tests run on CPU
        engine.gpu = gpu
        size, delay = engine.batching(resolved(batch, settings))
        assert size == expected[0]
        assert delay == pytest.approx(expected[1])
    finally:
        engine.close()
        services.close()


def test_on_a_gpu_the_default_sends_detects_through_batching(one_worker: App) -> None:
    one_worker.push("m", dynamic_graph())
    one_worker.push("fixed", tiny_graph(0.5))
    engine = one_worker.engine

    def detect(model: str) -> None:
        answer = one_worker.client.post(
            f"/v1/models/{model}/detect",
            content=png(48, 64),
            headers={**one_worker.detect, "Content-Type": "image/png"},
        )
        assert answer.status_code == 200, answer.text

    detect("m")
    assert engine.scheduler.batch_counts() == (0, 0)  # CPU default: off
    engine.gpu = True
    detect("m")
    assert engine.scheduler.batch_counts() == (1, 1)
    detect("fixed")
    assert engine.scheduler.batch_counts() == (1, 1)  # a fixed batch does not batch, even on a GPU
