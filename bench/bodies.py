"""The server's memory and time under concurrent huge request bodies: 8 chunked 200 MiB uploads at once.

For each route (an admin JSON route, detect, model push) a fresh ``warden serve`` takes
``--concurrency`` chunked uploads of ``--mib`` MiB each, generated a chunk at a time by
``tests/api/uploads.py``. Prints one JSON line per route: the server's peak RSS (``VmHWM``) and
its RSS before, each upload's status, the time to the answer at p50/p99, and the bytes the
client had sent when the answer came (an upper bound of what the server read: the rest of a
chunk plus the kernel's socket buffers). With ``--baseline-src`` (the ``src`` of an older
checkout, e.g. ``git worktree add /tmp/before <commit>``) the same runs go against that code
too, side by side. Usage: ``.venv/bin/python bench/bodies.py [--concurrency 8] [--mib 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.api.conftest import tiny_graph
from tests.api.uploads import upload

from _harness import WARDEN, emit, free_port, pct, wait_ready

MIB = 1024 * 1024
MODEL_CAP = 64 * MIB


def memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(WARDEN), *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout


@contextmanager
def server(src: str | None) -> Iterator[tuple[int, int, dict[str, str]]]:
    """A fresh data dir with tenant ``alpha`` (model ``tiny``) served by the code in ``src`` (None: this checkout)."""
    with tempfile.TemporaryDirectory(prefix="warden-bodies-") as tmp:
        env = {
            **os.environ,
            "WARDEN_DATA_DIR": str(Path(tmp) / "data"),
            "WARDEN_MAX_MODEL_BYTES": str(MODEL_CAP),
            "WARDEN_LOG_LEVEL": "warning",
        }
        if src is not None:
            env["PYTHONPATH"] = src
        model = Path(tmp) / "tiny.onnx"
        model.write_bytes(tiny_graph())
        operator = json.loads(cli(env, "init", "--json"))["admin_key"]
        cli(env, "tenant", "create", "alpha")
        cli(env, "model", "push", "alpha", "tiny", str(model))
        detect = json.loads(cli(env, "key", "create", "alpha", "--scope", "detect", "--json"))["key"]
        keys = {"detect": str(detect), "admin": str(operator)}
        port = free_port()
        process = subprocess.Popen(
            [str(WARDEN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", process)  # type: ignore[arg-type]
            yield process.pid, port, keys
        finally:
            process.terminate()
            process.wait(60)


ROUTES = {
    "json": ("/admin/tenants", "admin", "application/json"),
    "detect": ("/v1/models/tiny/detect", "detect", "image/png"),
    "model": ("/admin/tenants/alpha/models/big", "admin", "application/octet-stream"),
}


def run(variant: str, src: str | None, route: str, concurrency: int, total: int) -> None:
    path, role, content_type = ROUTES[route]
    with server(src) as (pid, port, keys):
        before = memory(pid, "VmRSS")
        headers = {"Authorization": f"Bearer {keys[role]}", "Content-Type": content_type}
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            uploads = list(pool.map(lambda _: upload(port, path, headers, total, timeout=300), range(concurrency)))
        wall = time.perf_counter() - started
        peak = memory(pid, "VmHWM")
    seconds = [u.seconds for u in uploads]
    emit(
        {
            "bench": "bodies",
            "variant": variant,
            "route": route,
            "concurrency": concurrency,
            "body_mib": total // MIB,
            "statuses": sorted(str(u.status) for u in uploads),
            "rss_before_mib": round(before / MIB, 1),
            "peak_rss_mib": round(peak / MIB, 1),
            "peak_over_start_mib": round((peak - before) / MIB, 1),
            "answer_p50_s": round(pct(seconds, 50), 3),
            "answer_p99_s": round(pct(seconds, 99), 3),
            "sent_before_answer_mib_mean": round(sum(u.sent for u in uploads) / len(uploads) / MIB, 1),
            "sent_before_answer_mib_max": round(max(u.sent for u in uploads) / MIB, 1),
            "refused_before_the_end": sum(u.refused_early for u in uploads),
            "wall_s": round(wall, 2),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--baseline-src", default=None, help="src directory of an older checkout to run beside")
    args = parser.parse_args()
    variants = [("after", None)] + ([("before", args.baseline_src)] if args.baseline_src else [])
    for route in args.routes:
        for variant, src in variants:
            run(variant, src, route, args.concurrency, args.mib * MIB)


if __name__ == "__main__":
    main()
