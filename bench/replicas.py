"""Several `warden serve` replicas on shared state: throughput with 1, 2 and 3, and the shared state's round trips.

Part 1 starts N replicas (each one worker, one ONNX Runtime thread) on one PostgreSQL database,
one Redis and one model store, drives them round-robin from a closed loop of clients in this
process, and prints requests/s, latency p50/p99 and the audit commit wait each answer reports
(``Server-Timing: audit``). The embedded default (one replica, SQLite, counters in memory) runs
first as the baseline. Two models: the real fall model (inference-bound) and a tiny one (the
server's own work dominates). This machine has 2 cores shared by replicas, clients, PostgreSQL
and Redis, so a third replica adds processes, not cores.

Part 2 times, in this process, what a request costs on shared state against the embedded default:
admission (rate limit and daily cap) in Redis against memory, and an uncached API-key lookup and
model resolution on PostgreSQL against SQLite; a cached lookup (no round trip, the steady state
for a key or model used in the last WARDEN_CACHE_SECONDS) for scale.

Usage: ``.venv/bin/python bench/replicas.py [--seconds 10] [--samples 2000]``; needs PostgreSQL at
127.0.0.1:5432 (database ``test``) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import cycle
from pathlib import Path

import httpx
from limits.storage import MemoryStorage

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from sqlalchemy import create_engine, text
from tests.api.conftest import tiny_graph

from _harness import PHOTO, WARDEN, emit, free_port, pct, wait_ready
from warden.registry import BlobStore, ModelRegistry
from warden.samples import fall_model_path
from warden.services import open_services
from warden.serving.admission import Admission, DailyCounter
from warden.settings import Settings
from warden.storage import Database
from warden.tenancy import Principal, Quota, Scope, TenantService

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
_AUDIT = re.compile(r"audit;dur=([0-9.]+)")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the ``test`` database, dropped afterwards; yields its URL."""
    schema = f"warden_bench_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def replicas(count: int, shared: dict[str, str], root: Path) -> Iterator[list[str]]:
    """``count`` replicas with their own data directories and audit streams; yields their URLs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")} | shared
    processes = []
    urls = []
    try:
        for index in range(count):
            port = free_port()
            env = base | {"WARDEN_DATA_DIR": str(root / f"r{index}"), "WARDEN_REPLICA_ID": f"r{index}"}
            processes.append(
                subprocess.Popen(
                    [str(WARDEN), "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def provision(settings: Settings) -> str:
    """A tenant with the fall model and a tiny one; returns its detect key."""
    services = open_services(settings)
    try:
        services.tenants.create_tenant("bench")
        tenant = services.tenants.tenant_id("bench")
        services.registry.push(tenant, "fall", fall_model_path().read_bytes())
        services.registry.push(tenant, "tiny", tiny_graph())
        return services.tenants.create_key("bench", Scope.DETECT).key
    finally:
        services.close()


async def drive(urls: list[str], key: str, model: str, clients: int, seconds: float) -> dict[str, float]:
    """A closed loop of ``clients`` sending detect requests round-robin over ``urls``."""
    image = PHOTO.read_bytes()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    latencies: list[float] = []
    audit: list[float] = []
    errors = 0
    targets = cycle(urls)
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:

        async def loop() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                started = time.perf_counter()
                answer = await client.post(f"{next(targets)}/v1/models/{model}/detect", content=image, headers=headers)
                if answer.status_code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if (found := _AUDIT.search(answer.headers.get("server-timing", ""))) is not None:
                    audit.append(float(found.group(1)))

        began = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.monotonic() - began
    return {
        "requests_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(pct(latencies, 50) * 1000, 2),
        "p99_ms": round(pct(latencies, 99) * 1000, 2),
        "audit_wait_p50_ms": round(pct(audit, 50), 3),
        "audit_wait_p99_ms": round(pct(audit, 99), 3),
        "errors": errors,
    }


def throughput(seconds: float) -> None:
    """Part 1: the embedded default, then 1, 2 and 3 replicas on PostgreSQL + Redis."""
    secret = secrets.token_urlsafe(48)
    common = {"WARDEN_WORKERS": "1", "WARDEN_THREADS": "1", "WARDEN_SECRET_KEY": secret}
    layouts: list[tuple[str, int]] = [("embedded", 1), ("shared", 1), ("shared", 2), ("shared", 3)]
    for layout, count in layouts:
        with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp, contextlib.ExitStack() as stack:
            root = Path(tmp)
            shared = common | {"WARDEN_MODEL_STORE": str(root / "models")}
            if layout == "shared":
                shared |= {
                    "WARDEN_DATABASE_URL": stack.enter_context(postgres_schema()),
                    "WARDEN_REDIS_URL": REDIS,
                    "WARDEN_REDIS_PREFIX": f"warden-bench-{secrets.token_hex(4)}",
                }
            else:
                shared |= {"WARDEN_DATABASE_URL": f"sqlite:///{root / 'warden.db'}"}
            key = provision(
                Settings(
                    data_dir=root / "setup",
                    database_url=shared["WARDEN_DATABASE_URL"],
                    secret_key=secret,
                    model_store=root / "models",
                    replica_id="setup",
                )
            )
            urls = stack.enter_context(replicas(count, shared, root))
            for model, clients in (("fall", 2 * count), ("tiny", 4 * count)):
                asyncio.run(drive(urls, key, model, clients, 2))  # warm-up: sessions loaded, caches filled
                row = asyncio.run(drive(urls, key, model, clients, seconds))
                print(
                    f"{layout:8} replicas={count} model={model:4} clients={clients:2}: "
                    f"{row['requests_s']:7.2f} req/s  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                    f"audit wait p50 {row['audit_wait_p50_ms']:.3f} ms p99 {row['audit_wait_p99_ms']:.3f} ms",
                    flush=True,
                )
                emit(
                    {
                        "bench": "replicas",
                        "layout": layout,
                        "replicas": count,
                        "model": model,
                        "clients": clients,
                        **row,
                    }
                )


def timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    """p50 and p99 of ``call`` in microseconds, after a short warm-up."""
    for _ in range(min(100, samples)):
        call()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return pct(times, 50) * 1e6, pct(times, 99) * 1e6


def round_trips(samples: int) -> None:
    """Part 2: the per-request cost of shared state, each side by side with the embedded default."""
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp, postgres_schema() as postgres:
        root = Path(tmp)
        sqlite = f"sqlite:///{root / 'warden.db'}"
        secret = secrets.token_bytes(32)
        rows: list[tuple[str, str, Callable[[], object]]] = []
        databases: dict[str, tuple[Database, int]] = {}
        for backend, url in (("sqlite", sqlite), ("postgresql", postgres)):
            db = Database(url)
            db.migrate()
            tenants = TenantService(db, secret, cache_seconds=0)
            tenants.create_tenant("bench")
            tenant = tenants.tenant_id("bench")
            key = tenants.create_key("bench", Scope.DETECT).key
            registry = ModelRegistry(db, BlobStore(root / f"blobs-{backend}"), 1 << 20, cache_seconds=0)
            registry.push(tenant, "tiny", tiny_graph())
            databases[backend] = (db, tenant)
            rows.append((backend, "API-key lookup, uncached", lambda t=tenants, k=key: t.authenticate(k)))
            rows.append((backend, "model resolution, uncached", lambda r=registry, t=tenant: r.resolve(t, "tiny")))
        cached = TenantService(Database(postgres), secret, cache_seconds=3600)
        cached_key = cached.create_key("bench", Scope.DETECT).key
        cached.authenticate(cached_key)
        rows.append(("postgresql", "API-key lookup, cached", lambda: cached.cached_principal(cached_key)))

        caller = Principal(
            tenant_id=databases["sqlite"][1],  # the in-memory daily cap is flushed to this tenant's row
            tenant_name="bench",
            key_id="0" * 12,
            scope=Scope.DETECT,
            authenticator="api_key",
            quota=Quota(rps=1e6, burst=10**6, daily_requests=10**9),
        )
        memory = Admission(MemoryStorage(), DailyCounter(databases["sqlite"][0]))
        shared = Admission.create(databases["sqlite"][0], REDIS, f"warden-bench-{secrets.token_hex(4)}")
        rows.append(("memory", "admission: rate + daily cap", lambda: memory.admit(caller)))
        rows.append(("redis", "admission: rate + daily cap", lambda: shared.admit(caller)))
        try:
            for backend, what, call in rows:
                p50, p99 = timed(call, samples)
                print(f"{what:30} {backend:10} p50 {p50:8.1f} us  p99 {p99:8.1f} us", flush=True)
                emit(
                    {
                        "bench": "replicas.round_trip",
                        "what": what,
                        "backend": backend,
                        "p50_us": round(p50, 1),
                        "p99_us": round(p99, 1),
                    }
                )
        finally:
            memory.close()
            shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="Seconds per throughput row.")
    parser.add_argument("--samples", type=int, default=2000, help="Timed calls per round-trip row.")
    args = parser.parse_args()
    round_trips(args.samples)
    throughput(args.seconds)


if __name__ == "__main__":
    main()
