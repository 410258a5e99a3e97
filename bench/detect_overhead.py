"""Where the time of one detection goes: decode, preprocessing, inference, postprocessing.

Runs the fall-detection model (CPU) on a 1280x720 JPEG photo and prints, per
stage, the median and p95 in milliseconds, the share of the total that is not
inference (target: at most 5%), and — to justify the choice of decoder — the same
decode done by OpenCV. Usage: ``.venv/bin/python bench/detect_overhead.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from warden.detection import DetectionModel, decode_image
from warden.samples import fall_model_path

PHOTO = Path(__file__).parents[1] / "tests" / "detection" / "data" / "astronaut_1280x720.jpg"
T = TypeVar("T")


def timed(samples: list[float], work: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = work()
    samples.append((time.perf_counter() - start) * 1000)
    return result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()

    data = PHOTO.read_bytes()
    model = DetectionModel.load(fall_model_path(), threads=args.threads)
    stages: dict[str, list[float]] = {"decode": [], "preprocess": [], "inference": [], "postprocess": []}
    opencv_decode: list[float] = []
    for run in range(args.runs + 3):
        rgb = timed(stages["decode"], lambda: decode_image(data))
        batch = timed(stages["preprocess"], lambda: model.prepare([rgb]))  # noqa: B023
        raw = timed(stages["inference"], lambda: model.infer(batch.tensor))  # noqa: B023
        found = timed(stages["postprocess"], lambda: model.postprocess(raw, batch))  # noqa: B023
        timed(opencv_decode, lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
        if run < 3:  # warm-up runs are dropped
            for samples in (*stages.values(), opencv_decode):
                samples.pop()
    total = [sum(parts) for parts in zip(*stages.values(), strict=True)]
    overhead = [t - i for t, i in zip(total, stages["inference"], strict=True)]
    share = statistics.median(o / t for o, t in zip(overhead, total, strict=True))

    print(
        f"fall model, {PHOTO.name} ({rgb.shape[1]}x{rgb.shape[0]}, {len(data)} bytes), "
        f"{args.runs} runs, providers {model.info.providers}, {len(found[0])} detections"
    )
    print(f"{'stage':<22}{'p50 ms':>10}{'p95 ms':>10}")
    for name, samples in stages.items():
        print(f"{name:<22}{percentile(samples, 50):>10.2f}{percentile(samples, 95):>10.2f}")
    print(f"{'total':<22}{percentile(total, 50):>10.2f}{percentile(total, 95):>10.2f}")
    print(f"{'decode (OpenCV)':<22}{percentile(opencv_decode, 50):>10.2f}{percentile(opencv_decode, 95):>10.2f}")
    verdict = "meets" if share <= 0.05 else "misses"
    print(f"non-inference share (median of per-run ratios): {share:.2%} ({verdict} the 5% target)")
    print(
        json.dumps(
            {
                "bench": "detect_overhead",
                "runs": args.runs,
                **{f"{name}_p50_ms": round(percentile(s, 50), 3) for name, s in stages.items()},
                "total_p50_ms": round(percentile(total, 50), 3),
                "opencv_decode_p50_ms": round(percentile(opencv_decode, 50), 3),
                "non_inference_share": round(share, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
