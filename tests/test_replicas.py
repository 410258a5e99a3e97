"""Three `warden serve` replicas on one PostgreSQL, one Redis and one model store behave as one service.

Each replica has its own data directory and audit stream; they share the database,
the server secret, Redis (rate limits, daily caps) and the model store directory.
Skips loudly where PostgreSQL or Redis is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path

import httpx
import pytest
import redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from tests.api.conftest import tiny_graph
from tests.audit.test_server_crash import wait_ready
from tests.backends import database_url
from tests.cli.test_serve import free_port
from warden.audit import AuditFilter
from warden.samples import SAMPLE_IMAGE
from warden.services import open_services
from warden.settings import Settings
from warden.storage import Base
from warden.tenancy import Quota, Scope

WARDEN = Path(sys.executable).with_name("warden")
REDIS_URL = "redis://127.0.0.1:6379/0"
REPLICAS = 3
CACHE_SECONDS = 1.0
IMAGE = SAMPLE_IMAGE.read_bytes()


@dataclass
class Cluster:
    """The replicas' URLs and processes, the shared settings, and keys made at set-up."""

    env: dict[str, str]
    urls: list[str]
    processes: list[subprocess.Popen[bytes]]
    operator: str
    detect: str
    limited: str
    logs: list[Path] = field(default_factory=list)

    def settings(self) -> Settings:
        """Settings for opening the shared state from this test process (its own audit stream)."""
        return Settings(
            data_dir=Path(self.env["WARDEN_DATA_DIR"]).with_name("setup"),
            database_url=self.env["WARDEN_DATABASE_URL"],
            secret_key=self.env["WARDEN_SECRET_KEY"],
            model_store=Path(self.env["WARDEN_MODEL_STORE"]),
            replica_id="setup",
        )


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379 ({exc}); replica tests NOT run")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three replicas started together (so their migrations race), torn down at the end of the module."""
    _redis_or_skip()
    root = tmp_path_factory.mktemp("replicas")
    with database_url("postgresql", root) as url:
        shared = {
            "WARDEN_DATABASE_URL": url,
            "WARDEN_REDIS_URL": REDIS_URL,
            "WARDEN_REDIS_PREFIX": f"warden-test-{secrets.token_hex(6)}",
            "WARDEN_SECRET_KEY": secrets.token_urlsafe(48),
            "WARDEN_MODEL_STORE": str(root / "models"),
            "WARDEN_CACHE_SECONDS": str(CACHE_SECONDS),
            "WARDEN_WORKERS": "1",
            "WARDEN_THREADS": "1",
            "WARDEN_DATA_DIR": str(root / "r0"),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")} | shared
        ports = [free_port() for _ in range(REPLICAS)]
        processes: list[subprocess.Popen[bytes]] = []
        logs = [root / f"r{i}.log" for i in range(REPLICAS)]
        try:
            for i, port in enumerate(ports):
                env = base | {"WARDEN_DATA_DIR": str(root / f"r{i}"), "WARDEN_REPLICA_ID": f"r{i}"}
                with open(logs[i], "wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [str(WARDEN), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
                        )
                    )
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url_, process in zip(urls, processes, strict=True):
                wait_ready(url_, process)
            cluster = Cluster(base, urls, processes, operator="", detect="", limited="", logs=logs)
            services = open_services(cluster.settings())
            try:
                services.tenants.create_tenant("acme")
                services.tenants.create_tenant("limited", Quota(rps=0.5, burst=30))
                services.registry.push(services.tenants.tenant_id("limited"), "tiny", tiny_graph())
                cluster.operator = services.tenants.create_key(None, Scope.ADMIN).key
                cluster.detect = services.tenants.create_key("acme", Scope.DETECT).key
                cluster.limited = services.tenants.create_key("limited", Scope.DETECT).key
            finally:
                services.close()
            yield cluster
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def detect(url: str, key: str, model: str = "tiny", request_id: str | None = None) -> httpx.Response:
    """One detect request with the sample photo."""
    headers = _bearer(key) | {"Content-Type": "image/jpeg", "X-Request-ID": request_id or uuid.uuid4().hex}
    return httpx.post(f"{url}/v1/models/{model}/detect", content=IMAGE, headers=headers, timeout=30)


def test_when_replicas_start_together_then_the_schema_is_migrated_once_and_all_are_ready(cluster: Cluster) -> None:
    for url in cluster.urls:
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    assert all(process.poll() is None for process in cluster.processes)
    engine = create_engine(cluster.env["WARDEN_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def test_a_model_pushed_through_one_replica_is_served_by_all(cluster: Cluster) -> None:
    for url in cluster.urls:  # not there yet, anywhere
        assert detect(url, cluster.detect, "people").json()["error"]["code"] == "model_not_found"
    pushed = httpx.post(
        f"{cluster.urls[0]}/admin/tenants/acme/models/people",
        content=tiny_graph(0.8),
        headers=_bearer(cluster.operator) | {"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert pushed.status_code == 201, pushed.text
    for url in cluster.urls:
        answer = detect(url, cluster.detect, "people")
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == str(pushed.json()["version"])


def test_one_rate_limit_holds_across_replicas_driven_round_robin(cluster: Cluster) -> None:
    # 30 requests per 60-second window for the tenant, whichever replica answers.
    accepted = dict.fromkeys(cluster.urls, 0)
    refused = 0
    for url in [url for _ in range(30) for url in cluster.urls]:
        answer = detect(url, cluster.limited)
        if answer.status_code == 200:
            accepted[url] += 1
        else:
            assert answer.json()["error"]["code"] == "rate_limited"
            assert float(answer.headers["Retry-After"]) > 0
            refused += 1
    total = sum(accepted.values())
    assert 27 <= total <= 33, accepted  # within 10% of the limit, summed over replicas (exactly 30 here)
    assert refused == 90 - total


def _refused_everywhere_after_the_cache_lifetime(cluster: Cluster, key: str, committed_at: float, code: str) -> None:
    # A replica that read the key before the change trusts it for at most CACHE_SECONDS after the read began.
    time.sleep(max(0.0, committed_at + CACHE_SECONDS - time.monotonic()))
    for url in cluster.urls:
        answer = detect(url, key, "people")
        assert answer.status_code in (401, 403), (url, answer.text)
        assert answer.json()["error"]["code"] == code


def test_a_key_revoked_on_one_replica_is_refused_by_all_within_a_second(cluster: Cluster) -> None:
    made = httpx.post(
        f"{cluster.urls[0]}/admin/tenants/acme/keys", json={"scope": "detect"}, headers=_bearer(cluster.operator)
    )
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["key_id"]
    for url in cluster.urls:  # every replica has now seen (and cached) the key
        assert detect(url, key, "people").status_code == 200
    revoked = httpx.delete(f"{cluster.urls[1]}/admin/keys/{key_id}", headers=_bearer(cluster.operator))
    committed_at = time.monotonic()
    assert revoked.status_code == 200, revoked.text
    assert detect(cluster.urls[1], key, "people").status_code == 401  # the revoking replica: at once
    _refused_everywhere_after_the_cache_lifetime(cluster, key, committed_at, "unauthenticated")


def test_a_tenant_suspended_on_one_replica_is_refused_by_all_within_a_second(cluster: Cluster) -> None:
    for url in cluster.urls:
        assert detect(url, cluster.detect, "people").status_code == 200
    suspended = httpx.post(f"{cluster.urls[2]}/admin/tenants/acme/suspend", headers=_bearer(cluster.operator))
    committed_at = time.monotonic()
    assert suspended.status_code == 200, suspended.text
    try:
        _refused_everywhere_after_the_cache_lifetime(cluster, cluster.detect, committed_at, "forbidden")
    finally:
        resumed = httpx.post(f"{cluster.urls[0]}/admin/tenants/acme/resume", headers=_bearer(cluster.operator))
        assert resumed.status_code == 200
    time.sleep(CACHE_SECONDS)
    assert all(detect(url, cluster.detect, "people").status_code == 200 for url in cluster.urls)


def _load(urls: list[str], key: str, acknowledged: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as client:
        for url in cycle(urls):
            if stop.is_set():
                return
            request_id = uuid.uuid4().hex
            headers = _bearer(key) | {"Content-Type": "image/jpeg", "X-Request-ID": request_id}
            with contextlib.suppress(httpx.HTTPError):  # the killed replica refuses connections; go on
                answer = client.post(f"{url}/v1/models/people/detect", content=IMAGE, headers=headers)
                if answer.status_code == 200:
                    acknowledged.append(request_id)


def test_sigkill_of_one_replica_leaves_the_others_serving_and_every_acknowledged_request_audited(
    cluster: Cluster,
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_load, args=(cluster.urls, cluster.detect, acknowledged, stop)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    try:
        while len(acknowledged) < 30:
            time.sleep(0.01)
        cluster.processes[2].kill()  # mid-load
        cluster.processes[2].wait(timeout=30)
        after_kill = len(acknowledged)
        while len(acknowledged) < after_kill + 30:  # the survivors go on serving
            assert [process.poll() for process in cluster.processes[:2]] == [None, None]
            time.sleep(0.01)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    for url in cluster.urls[:2]:
        assert detect(url, cluster.detect, "people").status_code == 200

    services = open_services(cluster.settings())
    try:
        recorded = {entry.event.request_id for entry in services.audit.scan(AuditFilter(tenant="acme"))}
        streams = {entry.stream for entry in services.audit.scan(AuditFilter(tenant="acme"))}
    finally:
        services.close()
    missing = [request_id for request_id in acknowledged if request_id not in recorded]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged requests have no audit record"
    assert {"r0", "r1", "r2"} <= streams

    verified = subprocess.run(
        [str(WARDEN), "audit", "verify", "--json"],
        env=cluster.env | {"WARDEN_DATA_DIR": str(cluster.settings().data_dir), "WARDEN_REPLICA_ID": "verifier"},
        capture_output=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert {"r0", "r1", "r2"} <= {stream["stream"] for stream in report["streams"]}
