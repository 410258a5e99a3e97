"""The server's own cost per request, with a model so small that the server's work dominates.

A few convolutions on a 64x64 input shaped as a 3-class YOLOv8 output. A closed loop of clients posts a
small JPEG to ``/v1``; each answer's ``Server-Timing`` header gives the server's total time and its decode,
preprocess and inference (with postprocessing) parts, so the overhead outside them (HTTP, auth, admission,
scheduling, serialisation) is measured inside the server, not through the client.
Prints requests/s and that overhead at p50 and p99 (target p50 <= 1 ms), with the queue wait and the wait
for the request's audit record to be durable (``Server-Timing: audit``) shown apart, once with sync audit
(the default: answered after the group commit) and once with async audit, side by side.
Usage: ``.venv/bin/python bench/overhead.py [--seconds 15] [--clients 1 8 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _harness import emit, pct, warden, warden_server


def tiny_detector(seed: int = 0) -> bytes:
    """Conv(3->8, s2) ReLU Conv(8->8, s2) ReLU Conv(8->7, s2) -> [1, 7, 8, 8] -> [1, 7, 64]; seeds differ in bytes."""
    rng = np.random.default_rng(seed)
    weights = [(8, 3), (8, 8), (7, 8)]
    nodes, inits, source = [], [], "images"
    for i, (out_c, in_c) in enumerate(weights):
        inits.append(
            numpy_helper.from_array((rng.standard_normal((out_c, in_c, 3, 3)) * 0.1).astype(np.float32), f"w{i}")
        )
        nodes.append(helper.make_node("Conv", [source, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]))
        source = f"c{i}"
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [source], [f"r{i}"]))
            source = f"r{i}"
    inits.append(numpy_helper.from_array(np.array([1, 7, 64], dtype=np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", [source, "shape"], ["output0"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"names": "{0: 'a', 1: 'b', 2: 'c'}", "task": "detect", "stride": "32"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Figures:
    """Per-request milliseconds from the answers' Server-Timing headers."""

    done: int = 0
    overhead: list[float] = field(default_factory=list)
    outside_audit: list[float] = field(default_factory=list)
    audit: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


async def loop_clients(url: str, key: str, clients: int, seconds: float) -> Figures:
    image, headers = small_jpeg(), {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    figures = Figures()
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as client:

        async def one() -> None:
            while time.monotonic() < stop:
                answer = await client.post(f"{url}/v1/models/tiny/detect", content=image, headers=headers)
                if answer.status_code != 200:
                    continue
                parts = dict(p.strip().split(";dur=") for p in answer.headers["Server-Timing"].split(","))
                ms = {k: float(v) for k, v in parts.items()}
                overhead = ms["total"] - ms["decode"] - ms["preprocess"] - ms["inference"] - ms["queue"]
                figures.overhead.append(overhead)
                figures.audit.append(ms.get("audit", 0.0))
                figures.outside_audit.append(overhead - ms.get("audit", 0.0))
                figures.total.append(ms["total"])
                figures.queue.append(ms["queue"])
                figures.done += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return figures


def run(durability: str, client_counts: list[int], seconds: float) -> None:
    with (
        warden_server({"WARDEN_AUDIT_DURABILITY": durability}) as (url, data_dir),
        tempfile.TemporaryDirectory() as tmp,
    ):
        model = Path(tmp) / "tiny.onnx"
        model.write_bytes(tiny_detector())
        onnx.checker.check_model(str(model))
        warden(data_dir, "tenant", "create", "bench")
        warden(data_dir, "model", "push", "bench", "tiny", str(model))
        key = warden(data_dir, "key", "create", "bench")["key"]  # type: ignore[index]
        asyncio.run(loop_clients(url, key, 2, 2))  # warm-up
        for clients in client_counts:
            start = time.monotonic()
            got = asyncio.run(loop_clients(url, key, clients, seconds))
            rate = got.done / (time.monotonic() - start)
            print(
                f"audit {durability}, {clients} clients: {rate:.0f} requests/s; server overhead outside queueing, "
                f"decode and inference p50 {pct(got.overhead, 50):.3f} ms, p99 {pct(got.overhead, 99):.3f} ms, of "
                f"which waiting for the audit commit p50 {pct(got.audit, 50):.3f} ms, p99 {pct(got.audit, 99):.3f} ms; "
                f"queue wait p50 {pct(got.queue, 50):.3f} ms; server total p50 {pct(got.total, 50):.3f} ms",
                flush=True,
            )
            emit(
                {
                    "bench": "overhead",
                    "audit": durability,
                    "clients": clients,
                    "requests_s": round(rate, 1),
                    "overhead_p50_ms": round(pct(got.overhead, 50), 3),
                    "overhead_p99_ms": round(pct(got.overhead, 99), 3),
                    "overhead_outside_audit_p50_ms": round(pct(got.outside_audit, 50), 3),
                    "overhead_outside_audit_p99_ms": round(pct(got.outside_audit, 99), 3),
                    "audit_wait_p50_ms": round(pct(got.audit, 50), 3),
                    "audit_wait_p99_ms": round(pct(got.audit, 99), 3),
                    "queue_p50_ms": round(pct(got.queue, 50), 3),
                    "server_total_p50_ms": round(pct(got.total, 50), 3),
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    for durability in ("sync", "async"):
        run(durability, args.clients, args.seconds)


if __name__ == "__main__":
    main()
