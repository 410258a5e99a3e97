"""Admission and scheduling through HTTP: refusals with their codes and Retry-After, deadlines, shared
budgets through Redis, a daily cap across a restart, and one session for the same bytes only when shareable."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import World, tiny_graph
from tests.api.server import running_server
from tests.backends import database_url
from warden.api import create_app
from warden.registry import sha256_hex
from warden.samples import SAMPLE_IMAGE
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Quota, Scope

REDIS_URL = "redis://127.0.0.1:6379/15"
IMAGE = SAMPLE_IMAGE.read_bytes()


def tenant(world: World, quota: Quota, *, model: bytes | None = None) -> str:
    """A fresh tenant with ``quota``, the tiny model (or ``model``) as ``m``; returns its detect key."""
    name = f"s-{secrets.token_hex(4)}"
    tenants = world.services.tenants
    tenants.create_tenant(name, quota)
    world.services.registry.push(tenants.tenant_id(name), "m", model or tiny_graph())
    return tenants.create_key(name, Scope.DETECT).key


def detect(client: TestClient, key: str, **headers: str) -> httpx.Response:
    return client.post(
        "/v1/models/m/detect",
        content=IMAGE,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg", **headers},
    )


def test_over_the_rate_answers_429_rate_limited_with_retry_after(world: World) -> None:
    key = tenant(world, Quota(rps=0.5, burst=2))
    assert [detect(world.client, key).status_code for _ in range(2)] == [200, 200]
    refused = detect(world.client, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 4
    v2 = world.client.post("/v2/models/m/infer", json={"inputs": []}, headers={"Authorization": f"Bearer {key}"})
    assert v2.status_code == 429
    assert list(v2.json()) == ["error"]
    assert world.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_used_daily_quota_answers_429_quota_exceeded(world: World) -> None:
    key = tenant(world, Quota(daily_requests=2))
    assert [detect(world.client, key).status_code for _ in range(2)] == [200, 200]
    refused = detect(world.client, key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "quota_exceeded")
    assert int(refused.headers["Retry-After"]) >= 1


def test_an_oversized_image_for_the_tenants_quota_is_413(world: World) -> None:
    key = tenant(world, Quota(max_image_bytes=len(IMAGE) - 1))
    assert detect(world.client, key).status_code == 413


async def burst(url: str, key: str, count: int, timeout_ms: int | None = None) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    if timeout_ms is not None:
        headers["X-Request-Timeout-Ms"] = str(timeout_ms)
    async with httpx.AsyncClient(timeout=120) as client:
        return list(
            await asyncio.gather(
                *(client.post(f"{url}/v1/models/m/detect", content=IMAGE, headers=headers) for _ in range(count))
            )
        )


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    with running_server(world.client.app) as url:  # type: ignore[arg-type]
        yield url


def test_a_full_queue_answers_503_over_capacity_and_the_rest_are_served(
    world: World, server: str, fall_model_file: Path
) -> None:
    key = tenant(world, Quota(max_concurrency=1, max_queue=1), model=fall_model_file.read_bytes())
    answers = asyncio.run(burst(server, key, 6))
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes
    refused = [a for a in answers if a.status_code == 503]
    assert refused
    assert all(a.json()["error"]["code"] == "over_capacity" and "Retry-After" in a.headers for a in refused)


def test_a_request_whose_deadline_passes_in_the_queue_is_504_without_running(
    world: World, server: str, fall_model_file: Path
) -> None:
    key = tenant(world, Quota(max_concurrency=1), model=fall_model_file.read_bytes())
    answers = asyncio.run(burst(server, key, 4, timeout_ms=50))
    codes = [a.status_code for a in answers]
    assert 504 in codes
    assert all(a.json()["error"]["code"] == "deadline_exceeded" for a in answers if a.status_code == 504)


@pytest.mark.parametrize("shared", [False, True], ids=["by-default", "marked-shareable"])
def test_two_tenants_with_the_same_bytes_share_a_session_only_when_an_operator_marks_them(
    world: World, shared: bool
) -> None:
    same = tiny_graph(0.33 if shared else 0.34)
    first, second = tenant(world, Quota(), model=same), tenant(world, Quota(), model=same)
    if shared:
        world.services.registry.share(sha256_hex(same), "operator")
    engine = world.client.app.state.engine  # type: ignore[attr-defined]
    before = engine.residency.stats().loads
    assert detect(world.client, first).status_code == detect(world.client, second).status_code == 200
    assert engine.residency.stats().loads == before + (1 if shared else 2)


@pytest.fixture
def redis_url() -> str:
    try:
        connection = redis.Redis.from_url(REDIS_URL)
        connection.flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379 ({exc}); Redis tests NOT run")
    return REDIS_URL


def test_two_app_instances_on_redis_share_one_rate_budget(tmp_path: Path, redis_url: str) -> None:
    with database_url("postgresql", tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, redis_url=redis_url)
        first, second = open_services(settings), open_services(settings)
        first.tenants.create_tenant("shared", Quota(rps=0.5, burst=4))
        first.registry.push(first.tenants.tenant_id("shared"), "m", tiny_graph())
        key = first.tenants.create_key("shared", Scope.DETECT).key
        with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
            codes = [detect(client, key).status_code for client in (a, b) * 4]
        for services in (first, second):
            services.close()
    assert codes.count(200) == 4
    assert codes.count(429) == 4


def test_the_daily_cap_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    services: Services = open_services(settings)
    services.tenants.create_tenant("capped", Quota(daily_requests=2))
    services.registry.push(services.tenants.tenant_id("capped"), "m", tiny_graph())
    key = services.tenants.create_key("capped", Scope.DETECT).key
    with TestClient(create_app(services)) as client:
        assert [detect(client, key).status_code for _ in range(2)] == [200, 200]
    services.close()
    restarted = open_services(settings)
    with TestClient(create_app(restarted)) as client:
        assert detect(client, key).status_code == 429
    restarted.close()
