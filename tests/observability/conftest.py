"""In-process Warden apps over SQLite with real ONNX models, and helpers to read a scrape.

Metrics do not depend on the database backend, so these apps use SQLite only
(tests/api runs the same middleware over PostgreSQL too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import tiny_graph
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.api import create_app
from warden.registry import BatchSettings
from warden.services import Services, open_services
from warden.serving import DetectionEngine
from warden.settings import Settings
from warden.tenancy import Quota, Scope
from warden.tenancy.keys import parse_key

META = {"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "task": "detect", "stride": "32", "imgsz": "[64, 64]"}
PHOTO = Path(__file__).parents[1] / "detection" / "data" / "astronaut.png"


@dataclass(frozen=True)
class Observed:
    """An app with tenant ``alpha`` (the fall model as ``fall``, ``tiny``, and a dynamic-batch ``batched``)."""

    app: FastAPI
    client: TestClient
    services: Services
    alpha: str
    alpha_admin: str
    operator: str

    @property
    def engine(self) -> DetectionEngine:
        engine: DetectionEngine = self.app.state.engine
        return engine

    def tenant(self, name: str, quota: Quota | None = None, model: bytes | None = None) -> str:
        """A new tenant with ``model`` (default the tiny graph) as ``m``; returns its detect key."""
        tenants = self.services.tenants
        tenants.create_tenant(name, quota)
        self.services.registry.push(tenants.tenant_id(name), "m", model or tiny_graph())
        return tenants.create_key(name, Scope.DETECT).key

    def detect(self, key: str, model: str = "m", image: bytes | None = None, **headers: str) -> int:
        answer = self.client.post(
            f"/v1/models/{model}/detect",
            content=PHOTO.read_bytes() if image is None else image,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png", **headers},
        )
        return answer.status_code

    def scrape(self) -> Scrape:
        answer = self.client.get("/metrics", headers={"Authorization": f"Bearer {self.operator}"})
        assert answer.status_code == 200, answer.text
        return Scrape(answer.text)


class Scrape:
    """A parsed scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [sample for family in self.families for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def names(self) -> set[str]:
        """Every sample name in the scrape."""
        return {sample.name for sample in self.samples}

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def observed_app(tmp_path: Path, fall_model_file: Path, **settings: Any) -> Iterator[Observed]:
    """An app over a fresh SQLite data directory with ``settings``; closed when the iterator ends."""
    services = open_services(Settings(data_dir=tmp_path / "data", workers=2, **settings))
    try:
        tenants, registry = services.tenants, services.registry
        tenants.create_tenant("alpha")
        alpha = tenants.tenant_id("alpha")
        registry.push(alpha, "fall", fall_model_file.read_bytes())
        registry.push(alpha, "tiny", tiny_graph(0.9))
        registry.push(alpha, "batched", dynamic_graph(), batching=BatchSettings(max_batch_size=4))
        app = create_app(services)
        with TestClient(app) as client:
            yield Observed(
                app=app,
                client=client,
                services=services,
                alpha=tenants.create_key("alpha", Scope.DETECT).key,
                alpha_admin=tenants.create_key("alpha", Scope.ADMIN).key,
                operator=tenants.create_key(None, Scope.ADMIN).key,
            )
    finally:
        services.close()


def dynamic_graph() -> bytes:
    """A small model with a dynamic batch dimension (so dynamic batching applies to it)."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 3, 8 * 8 + 4 * 4 + 2 * 2)
    return yolo_graph(rows, input_shape=("batch", 3, 64, 64), metadata=META)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, fall_model_file: Path) -> Iterator[Observed]:
    """One app per test module (loading the real model once keeps the suite fast)."""
    yield from observed_app(tmp_path_factory.mktemp("observed"), fall_model_file)


@pytest.fixture
def make_observed(tmp_path_factory: pytest.TempPathFactory, fall_model_file: Path) -> Iterator[Callable[..., Observed]]:
    """Build apps with particular settings; each is closed at the end of the test."""
    opened: list[Iterator[Observed]] = []

    def make(**settings: Any) -> Observed:
        apps = observed_app(tmp_path_factory.mktemp("observed"), fall_model_file, **settings)
        opened.append(apps)
        return next(apps)

    yield make
    for apps in opened:
        for _ in apps:  # runs the rest of the generator: closes the client and the services
            pass


def secret_of(key: str) -> tuple[str, str]:
    """A key's id and secret parts (the secret may itself hold '_', so never split the key on it)."""
    parsed = parse_key(key)
    assert parsed is not None, "not an API key"
    return parsed
