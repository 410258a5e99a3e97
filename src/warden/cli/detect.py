"""``warden detect``: run a YOLO ONNX model on image files and print, save or draw the detections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from warden.detection import DetectionModel, Detections, RGBImage, decode_image
from warden.detection.draw import annotate
from warden.detection.model import MAX_DETECTIONS
from warden.errors import InvalidImage, WardenError

EXIT_IMAGE_FAILED: Final = 1
EXIT_MODEL_FAILED: Final = 2
PROGRESS_FROM: Final = 8
_SAVE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True, slots=True)
class _Decoded:
    name: str
    rgb: RGBImage


def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files to run the model on.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="YOLO ONNX export to run.", show_default=False)],
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keep detections scoring strictly above this.")] = 0.25,
    iou: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Suppress overlaps with IoU above this (per class).")
    ] = 0.7,
    max_det: Annotated[
        int,
        typer.Option("--max-det", min=1, max=MAX_DETECTIONS, help="At most this many detections per image."),
    ] = 300,
    imgsz: Annotated[
        int | None, typer.Option(min=32, help="Input size for models with dynamic height and width.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N], tensorrt[:N] or auto.")] = "cpu",
    labels: Annotated[
        Path | None, typer.Option(help="Class names file (one per line, or JSON) overriding the model's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per image and line.")] = False,
    save_dir: Annotated[
        Path | None, typer.Option("--save-dir", help="Write annotated copies of the images here.")
    ] = None,
) -> None:
    """Detect objects in images with a YOLO ONNX model, exactly as its training framework would."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        loaded = DetectionModel.load(model, device=device, imgsz=imgsz, labels=labels)
    except WardenError as exc:
        err.print(f"warden: error: {model}: {exc.code}: {exc.message}", markup=False)
        raise typer.Exit(EXIT_MODEL_FAILED) from None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(loaded, conf, iou, max_det, out, err, as_json, save_dir)
    batch_size = loaded.batch_capacity
    failed = 0
    pending: list[_Decoded] = []
    with Progress(console=err, transient=True, disable=len(images) < PROGRESS_FROM) as progress:
        task = progress.add_task("detecting", total=len(images))
        for position, path in enumerate(images, start=1):
            try:
                pending.append(_Decoded(str(path), decode_image(_read(path), loaded.limits)))
            except (OSError, InvalidImage) as exc:
                failed += 1
                err.print(f"warden: error: {path}: {_describe(exc)}", markup=False)
                progress.advance(task)
            if len(pending) == batch_size or (pending and position == len(images)):
                runner.run(pending)
                progress.advance(task, len(pending))
                pending = []
    raise typer.Exit(EXIT_IMAGE_FAILED if failed else 0)


@dataclass(frozen=True, slots=True)
class _Runner:
    """Runs decoded batches through the model and reports each image's detections."""

    model: DetectionModel
    conf: float
    iou: float
    max_det: int
    out: Console
    err: Console
    as_json: bool
    save_dir: Path | None

    def run(self, batch: Sequence[_Decoded]) -> None:
        try:
            results = self.model.detect_rgb(
                [item.rgb for item in batch], conf=self.conf, iou=self.iou, max_det=self.max_det
            )
        except WardenError as exc:
            self.err.print(f"warden: error: {exc.code}: {exc.message}", markup=False)
            raise typer.Exit(EXIT_MODEL_FAILED) from None
        for item, found in zip(batch, results, strict=True):
            if self.as_json:
                record = {"image": item.name, "width": found.width, "height": found.height}
                record["detections"] = found.to_dicts()
                self.out.out(json.dumps(record), highlight=False)
            else:
                self.out.print(_table(item.name, found))
            if self.save_dir is not None:
                _save(self.save_dir, item, found)


def _read(path: Path) -> bytes:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    return path.read_bytes()


def _describe(exc: OSError | InvalidImage) -> str:
    if isinstance(exc, InvalidImage):
        return f"{exc.code}: {exc.message}"
    return f"unreadable: {exc.strerror or exc}"


def _table(name: str, found: Detections) -> Table:
    table = Table(title=f"{name} ({found.width}x{found.height}): {len(found)} detections", title_justify="left")
    for column in ("#", "class", "score", "x1", "y1", "x2", "y2"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for index, d in enumerate(found, start=1):
        table.add_row(str(index), d.class_name, f"{d.score:.3f}", *(f"{v:.1f}" for v in d.box))
    return table


def _save(save_dir: Path, item: _Decoded, found: Detections) -> None:
    source = Path(item.name)
    suffix = source.suffix.lower() if source.suffix.lower() in _SAVE_SUFFIXES else ".png"
    target = save_dir / f"{source.stem}{suffix}"
    counter = 1
    while target.exists():
        target = save_dir / f"{source.stem}-{counter}{suffix}"
        counter += 1
    annotate(item.rgb, found).save(target)
