"""Does a flooding tenant slow the others? Tenant B at a fixed Poisson rate, alone, then beside a flood from A.

For Warden and for the brief's naive server (inference inside the handler, no admission), in one run:
B's p50/p99 latency alone and under A's flood and their ratio, A's accepted and refused counts, and the
cores A's client process used (it shares the machine's 2 cores with the server). A floods from a process
of its own; one run lowers its CPU priority (nice 19) to show the server's behaviour apart from the
bench's own CPU contention, as if the flooder were on another machine.
Target (issue 4): B's p99 ratio <= 1.5 with Warden, and no B request refused.
Warden is run with A retrying refused requests at once (a hostile client) and with A waiting the
Retry-After it is given, with the default scheduler (headroom automatic: while B is active, A holds
at most all workers but one) and with ``WARDEN_HEADROOM=0`` (every worker may serve A).
The hostile-model row (issue 22): A serves its own model, whose ``Loop`` spins for days on an
image with a secret pixel (no upload image has it, so it passes upload), and keeps ``--hostile``
such requests in flight, each with ``X-Request-Timeout-Ms: 1000``, retrying at once; each run is
stopped at its deadline (504), and B's p99 beside it is compared with B's p99 alone (goal <= 1.5).
Usage: ``.venv/bin/python bench/noisy_neighbor.py [--seconds 20] [--flood 16] [--hostile 4] [--only hostile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.registry.hostile import SECRET_PIXEL, spinning

from _harness import PHOTO, emit, free_port, pct, warden, warden_server
from warden.detection import DetectionModel
from warden.samples import fall_model_path


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    failed: int = 0
    cut: list[float] = field(default_factory=list)


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
    elif status == 504:
        tally.cut.append(time.perf_counter() - start)
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


@dataclass(frozen=True)
class Target:
    """A server under test: its kind (``warden`` or ``naive``), base URL and each tenant's credential.

    ``models``: the model each tenant sends to (default ``fall``); ``timeout_ms``: each tenant's
    ``X-Request-Timeout-Ms``, if it sends one.
    """

    kind: str
    url: str
    credentials: dict[str, str]
    models: dict[str, str] = field(default_factory=dict)
    timeout_ms: dict[str, int] = field(default_factory=dict)


def make_send(client: httpx.AsyncClient, target: Target, tenant: str, image: bytes):  # type: ignore[no-untyped-def]
    """One tenant's request to ``target``, as a coroutine function answering the status code."""
    credential = target.credentials[tenant]
    if target.kind == "warden":
        headers = {"Authorization": f"Bearer {credential}", "Content-Type": "image/png"}
        if tenant in target.timeout_ms:
            headers["X-Request-Timeout-Ms"] = str(target.timeout_ms[tenant])
        model = target.models.get(tenant, "fall")

        async def send() -> int:
            answer = await client.post(f"{target.url}/v1/models/{model}/detect", content=image, headers=headers)
            return answer.status_code

        return send

    async def send_naive() -> int:
        answer = await client.post(
            f"{target.url}/detect", data={"token": credential}, files={"image": ("p.jpg", image)}
        )
        return answer.status_code

    return send_naive


def secret_image() -> bytes:
    """A black PNG whose top-left pixel wakes the spinning model."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)  # the spinning model's input size: no resize blurs the pixel
    pixels[0, 0] = (*SECRET_PIXEL, 0)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def flood_child(spec: str) -> None:
    """The flooder's own process (``--flood-child``): floods until its stdin closes, then prints its tally."""
    order = json.loads(spec)
    os.nice(order["nice"])
    target = Target(**order["target"])
    image = Path(order["image"]).read_bytes() if order["image"] else secret_image()

    async def flooding() -> dict[str, float]:
        tally, stop = Tally(), asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # readable: closed by the parent
        cpu, wall = time.process_time(), time.perf_counter()
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=256)) as client:
            await flood(make_send(client, target, "a", image), order["concurrency"], stop, tally, order["polite"])
        cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
        return {
            "accepted": len(tally.latencies),
            "refused": tally.refused,
            "cut": len(tally.cut),
            "cut_p50": pct(tally.cut, 50),
            "cut_p99": pct(tally.cut, 99),
            "cores": cores,
        }

    print(json.dumps(asyncio.run(flooding())), flush=True)


async def scenario(  # noqa: PLR0917 - the scenario's parameters, each used once
    target: Target, rate: float, seconds: float, concurrency: int, polite: bool, nice: int, *, hostile: bool = False
) -> dict[str, object]:
    image = "" if hostile else str(PHOTO)  # empty: the flooder sends the spinning model's secret image
    order = {"target": target.__dict__, "image": image, "concurrency": concurrency, "polite": polite, "nice": nice}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=256)) as client:
        send_b = make_send(client, target, "b", PHOTO.read_bytes())
        alone = Tally()
        await victim(send_b, rate, seconds, alone)
        crowded = Tally()
        flooder = subprocess.Popen(
            [sys.executable, __file__, "--flood-child", json.dumps(order)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        await asyncio.sleep(2)  # let the flood build up
        await victim(send_b, rate, seconds, crowded)
        output, _ = flooder.communicate(timeout=300)  # closing its stdin stops it
    a = json.loads(output)
    return {
        "b_alone_p50_s": round(pct(alone.latencies, 50), 3),
        "b_alone_p99_s": round(pct(alone.latencies, 99), 3),
        "b_flood_p50_s": round(pct(crowded.latencies, 50), 3),
        "b_flood_p99_s": round(pct(crowded.latencies, 99), 3),
        "b_p99_ratio": round(pct(crowded.latencies, 99) / pct(alone.latencies, 99), 2),
        "b_refused": alone.refused + crowded.refused,
        "b_failed": alone.failed + crowded.failed,
        "a_accepted": a["accepted"],
        "a_refused": a["refused"],
        "a_cut_504": a["cut"],
        "a_cut_p50_s": round(a["cut_p50"], 3),
        "a_cut_p99_s": round(a["cut_p99"], 3),
        "flooder_cores": round(a["cores"], 2),
    }


def run_warden(
    rate: float,
    seconds: float,
    concurrency: int,
    polite: bool,
    *,
    headroom: int | None,
    nice: int,
    hostile: bool = False,
) -> dict[str, object]:
    env = {} if headroom is None else {"WARDEN_HEADROOM": str(headroom)}
    with warden_server(env) as (url, data_dir):
        keys = {}
        for tenant in ("a", "b"):
            warden(data_dir, "tenant", "create", tenant, "--max-queue", "4")
            warden(data_dir, "model", "push", tenant, "fall", str(fall_model_path()))
            keys[tenant] = warden(data_dir, "key", "create", tenant)["key"]  # type: ignore[index]
        target = Target("warden", url, keys)
        if hostile:
            spinner = data_dir / "spin.onnx"
            spinner.write_bytes(spinning("secret", 1e12))
            warden(data_dir, "model", "push", "a", "spin", str(spinner))
            target = Target("warden", url, keys, models={"a": "spin"}, timeout_ms={"a": 1000})
        httpx.post(
            f"{url}/v1/models/fall/detect",
            content=PHOTO.read_bytes(),
            headers={"Authorization": f"Bearer {keys['a']}", "Content-Type": "image/jpeg"},
            timeout=120,
        )
        return asyncio.run(scenario(target, rate, seconds, concurrency, polite, nice, hostile=hostile))


def run_naive(
    rate: float,
    seconds: float,
    concurrency: int,
    polite: bool,
    *,
    headroom: int | None,
    nice: int,
    hostile: bool = False,
) -> dict[str, object]:
    del headroom, hostile  # the naive server has no scheduler, and serves one model for every tenant
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
        image = PHOTO.read_bytes()
        for token in ("ta", "tb"):
            httpx.post(f"{url}/detect", data={"token": token}, files={"image": ("p.jpg", image)}, timeout=120)
        target = Target("naive", url, {"a": "ta", "b": "tb"})
        return asyncio.run(scenario(target, rate, seconds, concurrency, polite, nice))
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flood", type=int, default=0, help="A's requests in flight (default 5x capacity, >= 16)")
    parser.add_argument("--hostile", type=int, default=4, help="A's spinning requests in flight (hostile row)")
    parser.add_argument("--only", choices=["hostile", "flood"], help="run only the hostile-model row or the floods")
    parser.add_argument("--flood-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_child:
        flood_child(args.flood_child)
        return
    cap = capacity()
    rate = 0.2 * cap
    concurrency = args.flood or max(16, round(5 * cap))
    print(f"capacity {cap:.2f} images/s; B at {rate:.2f}/s (Poisson), A keeps {concurrency} in flight", flush=True)
    runs = [  # server, runner, A honours Retry-After, headroom (None: default), flooder's niceness, hostile model
        ("warden", run_warden, False, None, 0, False),
        ("warden", run_warden, True, None, 0, False),
        ("warden", run_warden, False, 0, 0, False),
        ("warden", run_warden, True, 0, 0, False),
        ("warden", run_warden, False, None, 19, False),
        ("naive", run_naive, False, None, 0, False),
        ("warden", run_warden, False, None, 0, True),
    ]
    if args.only:
        runs = [run for run in runs if run[5] == (args.only == "hostile")]
    for name, runner, polite, headroom, nice, hostile in runs:
        in_flight = args.hostile if hostile else concurrency
        figures = runner(rate, args.seconds, in_flight, polite, headroom=headroom, nice=nice, hostile=hostile)
        flooder = "honours Retry-After" if polite else "retries at once"
        shown = "default" if headroom is None else headroom
        kind = f"hostile model x{in_flight} (1 s deadline)" if hostile else f"A {flooder}"
        label = f"{name:>7} headroom {shown} ({kind}, nice {nice})"
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
        emit(
            {
                "bench": "noisy_neighbor",
                "server": name,
                "flooder": "hostile model" if hostile else flooder,
                "headroom": shown,
                "flooder_nice": nice,
                "capacity_images_s": round(cap, 2),
                "b_rate": round(rate, 2),
                "a_in_flight": in_flight,
                **figures,
            }
        )


if __name__ == "__main__":
    main()
