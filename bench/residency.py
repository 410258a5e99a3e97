"""Resident sessions: dedupe by content hash, LRU under a memory budget, cold loads, and no eviction in use.

1. 50 tenants push the same model bytes and each runs one detection, once per ``WARDEN_SHARE_MODELS`` mode:
   across-tenants keeps one session, per-tenant (the default) one per tenant; resident sessions, model
   bytes and the process's RSS growth side by side (each mode on fresh services, shared first).
2. 40 distinct models under a budget that fits 10, requested with a skewed (Zipf-like) popularity:
   resident bytes, hit ratio, cold-load p50/p99.
3. A session held in use while 20 others load past the budget is still there afterwards.
Runs in-process on the real engine (scheduler, residency, ONNX Runtime). Usage: ``.venv/bin/python bench/residency.py``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).parent))
from _harness import emit, pct
from overhead import small_jpeg, tiny_detector
from warden.detection import ImageLimits
from warden.services import open_services
from warden.serving.admission import Admission
from warden.serving.engine import DetectionEngine, EngineOptions
from warden.settings import Settings
from warden.tenancy import Quota, Scope

SAME_BYTES_TENANTS = 50


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def same_bytes(mode: Literal["per-tenant", "across-tenants"], image: bytes) -> None:
    """``SAME_BYTES_TENANTS`` tenants with identical bytes, one detection each, under ``WARDEN_SHARE_MODELS=mode``."""
    with tempfile.TemporaryDirectory() as tmp:
        services = open_services(Settings(data_dir=Path(tmp) / "data", share_models=mode))
        engine = DetectionEngine(services.registry.blobs, ImageLimits(), Admission.create(services.db, None))
        callers = []
        for i in range(SAME_BYTES_TENANTS):
            name = f"same-{i}"
            services.tenants.create_tenant(name, Quota())
            tenant_id = services.tenants.tenant_id(name)
            services.registry.push(tenant_id, "m", tiny_detector(0))
            key = services.tenants.create_key(name, Scope.DETECT).key
            callers.append((services.authenticator.authenticate(key), services.registry.resolve(tenant_id, "m")))
        gc.collect()
        before = rss_bytes()
        for principal, resolved in callers:
            asyncio.run(engine.detect(principal, resolved, [image], conf=0.25, iou=0.7, max_det=300))
        gc.collect()
        grown = rss_bytes() - before
        stats = engine.residency.stats()
        record: dict[str, object] = {
            "bench": "residency",
            "part": "same_bytes",
            "share_models": mode,
            "tenants": SAME_BYTES_TENANTS,
            "resident": stats.resident,
            "loads": stats.loads,
            "hits": stats.hits,
            "resident_model_bytes": stats.resident_bytes,
            "rss_growth_bytes": grown,
            "blobs_stored": len(services.registry.blobs.digests()),
        }
        engine.close()
        services.close()
    print(
        f"{SAME_BYTES_TENANTS} tenants, same bytes, {mode}: {stats.resident} session(s) resident, "
        f"{stats.loads} load(s), {stats.hits} hits, {stats.resident_bytes} model bytes, RSS +{grown / 2**20:.1f} MiB"
    )
    emit(record)


def main() -> None:
    image = small_jpeg()
    # 1. Same bytes, many tenants, both sharing modes side by side.
    same_bytes("across-tenants", image)
    same_bytes("per-tenant", image)
    with tempfile.TemporaryDirectory() as tmp:
        services = open_services(Settings(data_dir=Path(tmp) / "data"))
        size = len(tiny_detector(0))
        engine = DetectionEngine(
            services.registry.blobs,
            ImageLimits(),
            Admission.create(services.db, None),
            EngineOptions(memory_budget=10 * size),
        )

        async def detect(principal, resolved) -> float:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            await engine.detect(principal, resolved, [image], conf=0.25, iou=0.7, max_det=300)
            return time.perf_counter() - start

        def tenant(name: str, model: bytes):  # type: ignore[no-untyped-def]
            services.tenants.create_tenant(name, Quota())
            tenant_id = services.tenants.tenant_id(name)
            services.registry.push(tenant_id, "m", model)
            key = services.tenants.create_key(name, Scope.DETECT).key
            return services.authenticator.authenticate(key), services.registry.resolve(tenant_id, "m")

        # 2. 40 distinct models, budget for 10, skewed popularity.
        distinct = [tenant(f"own-{i}", tiny_detector(i + 1)) for i in range(40)]
        rng = random.Random(3)
        weights = [1 / (rank + 1) for rank in range(40)]
        before = engine.residency.stats()
        cold: list[float] = []
        warm: list[float] = []
        peak = 0
        for principal, resolved in rng.choices(distinct, weights=weights, k=600):
            loads = engine.residency.stats().loads
            elapsed = asyncio.run(detect(principal, resolved))
            (cold if engine.residency.stats().loads > loads else warm).append(elapsed)
            peak = max(peak, engine.residency.stats().resident_bytes)
        after = engine.residency.stats()
        requests = (after.hits - before.hits) + (after.loads - before.loads)
        hit_ratio = (after.hits - before.hits) / requests
        print(
            f"40 models, budget {10 * size} bytes (10 sessions): peak resident {peak} bytes, "
            f"hit ratio {hit_ratio:.3f}, "
            f"cold load p50 {pct(cold, 50) * 1000:.1f} ms p99 {pct(cold, 99) * 1000:.1f} ms, "
            f"warm p50 {pct(warm, 50) * 1000:.1f} ms, evictions {after.evictions - before.evictions}"
        )
        emit(
            {
                "bench": "residency",
                "part": "lru",
                "models": 40,
                "budget_bytes": 10 * size,
                "peak_resident_bytes": peak,
                "hit_ratio": round(hit_ratio, 3),
                "cold_p50_ms": round(pct(cold, 50) * 1000, 2),
                "cold_p99_ms": round(pct(cold, 99) * 1000, 2),
                "warm_p50_ms": round(pct(warm, 50) * 1000, 2),
                "evictions": after.evictions - before.evictions,
            }
        )

        # 3. A session in use survives loads past the budget.
        owner, held = distinct[0]
        with engine.residency.use(held.sha256, owner.tenant_name) as session:
            for principal, resolved in distinct[20:40]:
                asyncio.run(detect(principal, resolved))
            with engine.residency.use(held.sha256, owner.tenant_name) as again:
                kept = again is session
        print(f"in-use session kept through 20 loads past the budget: {kept}")
        emit({"bench": "residency", "part": "in_use", "kept": kept})
        engine.close()
        services.close()


if __name__ == "__main__":
    main()
