"""Does a flooding tenant slow the others? Tenant B at a fixed Poisson rate, alone, then beside a flood from A.

For Warden and for the brief's naive server (inference inside the handler, no admission), in one run:
B's p50/p99 latency alone and under A's flood and their ratio, A's accepted and refused counts, and the
cores the bench's own client process used during the flood (it shares the machine with the server).
Target (issue 4): B's p99 ratio <= 1.5 with Warden, and no B request refused.
Warden is run with A retrying refused requests at once (a hostile client) and with A waiting the
Retry-After it is given, each with the default scheduler (every worker may serve A) and with
``WARDEN_HEADROOM=1`` (while B is active, A holds at most all workers but one).
Usage: ``.venv/bin/python bench/noisy_neighbor.py [--seconds 20] [--flood 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import PHOTO, emit, free_port, pct, warden, warden_server
from warden.detection import DetectionModel
from warden.samples import fall_model_path


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    failed: int = 0


def capacity(seconds: float = 8.0) -> float:
    """Images/s the machine does on the model, one process, all cores (the bench's unit of load)."""
    model = DetectionModel.load(fall_model_path(), threads=os.cpu_count())
    data = PHOTO.read_bytes()
    model.detect(data)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.detect(data)
        done += 1
    return done / (time.perf_counter() - start)


async def victim(send, rate: float, seconds: float, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    tasks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tasks.append(asyncio.create_task(timed(send, tally)))
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)


async def timed(send, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    try:
        status = await send()
    except httpx.HTTPError:
        tally.failed += 1
        return
    if status == 200:
        tally.latencies.append(time.perf_counter() - start)
    elif status in (429, 503):
        tally.refused += 1
    else:
        tally.failed += 1


async def flood(send, concurrency: int, stop: asyncio.Event, tally: Tally, polite: bool) -> None:  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while not stop.is_set():
            refused = tally.refused
            await timed(send, tally)
            if polite and tally.refused > refused:
                await asyncio.sleep(1.0)  # honours Retry-After (Warden sends 1 s for a full queue)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


async def scenario(make_send, rate: float, seconds: float, concurrency: int, polite: bool) -> dict[str, object]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=256)) as client:
        send_a, send_b = make_send(client, "a"), make_send(client, "b")
        alone = Tally()
        await victim(send_b, rate, seconds, alone)
        crowded, flooder, stop = Tally(), Tally(), asyncio.Event()
        flooding = asyncio.create_task(flood(send_a, concurrency, stop, flooder, polite))
        await asyncio.sleep(2)  # let the flood build up
        cpu, wall = time.process_time(), time.perf_counter()
        await victim(send_b, rate, seconds, crowded)
        client_cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
        stop.set()
        await flooding
    return {
        "b_alone_p50_s": round(pct(alone.latencies, 50), 3),
        "b_alone_p99_s": round(pct(alone.latencies, 99), 3),
        "b_flood_p50_s": round(pct(crowded.latencies, 50), 3),
        "b_flood_p99_s": round(pct(crowded.latencies, 99), 3),
        "b_p99_ratio": round(pct(crowded.latencies, 99) / pct(alone.latencies, 99), 2),
        "b_refused": alone.refused + crowded.refused,
        "b_failed": alone.failed + crowded.failed,
        "a_accepted": len(flooder.latencies),
        "a_refused": flooder.refused,
        "client_cores_during_flood": round(client_cores, 2),
    }


def run_warden(
    rate: float, seconds: float, concurrency: int, image: bytes, polite: bool, *, headroom: int = 0
) -> dict[str, object]:
    with warden_server({"WARDEN_HEADROOM": str(headroom)}) as (url, data_dir):
        keys = {}
        for tenant in ("a", "b"):
            warden(data_dir, "tenant", "create", tenant, "--max-queue", "4")
            warden(data_dir, "model", "push", tenant, "fall", str(fall_model_path()))
            keys[tenant] = warden(data_dir, "key", "create", tenant)["key"]  # type: ignore[index]
        httpx.post(
            f"{url}/v1/models/fall/detect",
            content=image,
            headers={"Authorization": f"Bearer {keys['a']}", "Content-Type": "image/jpeg"},
            timeout=120,
        )

        def make_send(client: httpx.AsyncClient, tenant: str):  # type: ignore[no-untyped-def]
            headers = {"Authorization": f"Bearer {keys[tenant]}", "Content-Type": "image/jpeg"}

            async def send() -> int:
                answer = await client.post(f"{url}/v1/models/fall/detect", content=image, headers=headers)
                return answer.status_code

            return send

        return asyncio.run(scenario(make_send, rate, seconds, concurrency, polite))


def run_naive(
    rate: float, seconds: float, concurrency: int, image: bytes, polite: bool, *, headroom: int = 0
) -> dict[str, object]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("naive_server.py")),
            str(port),
            str(fall_model_path()),
            "ta=a",
            "tb=b",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/docs", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for token in ("ta", "tb"):
            httpx.post(f"{url}/detect", data={"token": token}, files={"image": ("p.jpg", image)}, timeout=120)

        def make_send(client: httpx.AsyncClient, tenant: str):  # type: ignore[no-untyped-def]
            async def send() -> int:
                answer = await client.post(
                    f"{url}/detect", data={"token": f"t{tenant}"}, files={"image": ("p.jpg", image)}
                )
                return answer.status_code

            return send

        return asyncio.run(scenario(make_send, rate, seconds, concurrency, polite))
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flood", type=int, default=0, help="A's requests in flight (default 5x capacity, >= 16)")
    args = parser.parse_args()
    image = PHOTO.read_bytes()
    cap = capacity()
    rate = 0.2 * cap
    concurrency = args.flood or max(16, round(5 * cap))
    print(f"capacity {cap:.2f} images/s; B at {rate:.2f}/s (Poisson), A keeps {concurrency} in flight", flush=True)
    runs = [
        ("warden", run_warden, False, 0),
        ("warden", run_warden, True, 0),
        ("warden", run_warden, False, 1),
        ("warden", run_warden, True, 1),
        ("naive", run_naive, False, 0),
    ]
    for name, runner, polite, headroom in runs:
        figures = runner(rate, args.seconds, concurrency, image, polite, headroom=headroom)
        flooder = "honours Retry-After" if polite else "retries at once"
        label = f"{name:>7} headroom {headroom} (A {flooder})"
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
        emit(
            {
                "bench": "noisy_neighbor",
                "server": name,
                "flooder": flooder,
                "headroom": headroom,
                "capacity_images_s": round(cap, 2),
                "b_rate": round(rate, 2),
                "a_in_flight": concurrency,
                **figures,
            }
        )


if __name__ == "__main__":
    main()
