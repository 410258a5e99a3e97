"""How much of the model's raw throughput the server delivers: one tenant, closed loop at saturation.

Prints images/s of ``POST /v1/models/{m}/detect`` (the whole request: HTTP, auth, admission, scheduling,
decode, preprocessing, inference, postprocessing) divided by the raw ONNX Runtime images/s of the same
model with the same workers and threads, measured in the same run on prepared tensors.
Target (issue 4): >= 0.95. Usage: ``.venv/bin/python bench/efficiency.py [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import PHOTO, emit, warden, warden_server
from warden.detection import DetectionModel, decode_image
from warden.samples import fall_model_path


def raw_throughput(workers: int, threads: int, seconds: float) -> float:
    """Images/s of ``workers`` threads each running the session on a prepared real-image tensor."""
    model = DetectionModel.load(fall_model_path(), threads=threads)
    tensor = model.prepare([decode_image(PHOTO.read_bytes())]).tensor
    model.infer(tensor)
    done = [0] * workers
    stop = time.perf_counter() + seconds

    def run(index: int) -> None:
        while time.perf_counter() < stop:
            model.infer(tensor)
            done[index] += 1

    pool = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


async def server_throughput(url: str, key: str, clients: int, seconds: float) -> tuple[float, int]:
    image = PHOTO.read_bytes()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    done = errors = 0
    stop = time.monotonic() + seconds

    async with httpx.AsyncClient(timeout=120) as client:

        async def loop() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                answer = await client.post(f"{url}/v1/models/fall/detect", content=image, headers=headers)
                if answer.status_code == 200:
                    done += 1
                else:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return done / (time.monotonic() - start), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    workers, threads = max(1, os.cpu_count() or 1), 1
    with warden_server({"WARDEN_WORKERS": str(workers), "WARDEN_THREADS": str(threads)}) as (url, data_dir):
        warden(data_dir, "tenant", "create", "solo")
        warden(data_dir, "model", "push", "solo", "fall", str(fall_model_path()))
        key = warden(data_dir, "key", "create", "solo")["key"]  # type: ignore[index]
        asyncio.run(server_throughput(url, key, 2 * workers, 3))  # warm-up
        served, errors = asyncio.run(server_throughput(url, key, 2 * workers, args.seconds))
    raw = raw_throughput(workers, threads, args.seconds)
    ratio = served / raw
    print(
        f"workers={workers} threads={threads}: server {served:.2f} images/s, raw {raw:.2f} images/s, ratio {ratio:.3f}"
    )
    emit(
        {
            "bench": "efficiency",
            "workers": workers,
            "threads": threads,
            "server_images_s": round(served, 3),
            "raw_images_s": round(raw, 3),
            "ratio": round(ratio, 3),
            "errors": errors,
        }
    )


if __name__ == "__main__":
    main()
