"""An in-process Warden app over real SQLite/PostgreSQL, with two tenants, keys and models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.backends import BACKENDS, database_url
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.api import create_app
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Scope


@dataclass(frozen=True)
class World:
    """Two tenants, ``alpha`` (the fall model as ``fall``, a small graph as ``tiny``) and ``beta`` (``tiny``)."""

    client: TestClient
    services: Services
    alpha_detect: str
    alpha_admin: str
    beta_detect: str
    operator: str


def tiny_graph(score: float = 0.9) -> bytes:
    """A small detection model with one known box (different scores give different bytes)."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, metadata={"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "task": "detect"})


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fall_model_file: Path
) -> Iterator[World]:
    """One world per test module and backend: loading the real model once keeps the suite fast.

    Tests that change state (revoke, suspend) make their own tenants and keys.
    """
    tmp_path = tmp_path_factory.mktemp("world")
    with database_url(request.param, tmp_path) as url:
        services = open_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            yield from _populate(services, fall_model_file)
        finally:
            services.close()


def _populate(services: Services, fall_model_file: Path) -> Iterator[World]:
    tenants, registry = services.tenants, services.registry
    for name in ("alpha", "beta"):
        tenants.create_tenant(name)
    alpha, beta = tenants.tenant_id("alpha"), tenants.tenant_id("beta")
    registry.push(alpha, "fall", fall_model_file.read_bytes())
    registry.push(alpha, "tiny", tiny_graph(0.9))
    registry.push(beta, "tiny", tiny_graph(0.8))
    registry.push(beta, "beta-only", tiny_graph(0.7))
    with TestClient(create_app(services), raise_server_exceptions=True) as client:
        yield World(
            client=client,
            services=services,
            alpha_detect=tenants.create_key("alpha", Scope.DETECT).key,
            alpha_admin=tenants.create_key("alpha", Scope.ADMIN).key,
            beta_detect=tenants.create_key("beta", Scope.DETECT).key,
            operator=tenants.create_key(None, Scope.ADMIN).key,
        )
