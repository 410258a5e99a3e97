"""Image de-identification: hide every face, drop every metadata block, write the same format back.

:func:`deidentify_image` works on bytes in memory: it decodes with Warden's safe
decoder (:func:`warden.detection.decode_image`: size, format and pixel-count
checks before decoding, animation refused, EXIF orientation applied to the
pixels), finds faces with a :class:`~warden.privacy.faces.FaceDetector`, hides
each face's region widened by a margin, and encodes the pixels afresh in the
input's format. Nothing from the input file but its pixels reaches the output:
no EXIF (GPS, camera, orientation), XMP, IPTC, ICC profile, comments, PNG text
chunks, timestamps or thumbnails. The output is scanned for metadata before it
is returned, and an error is raised if any is found.

:func:`deidentify_images` runs a batch of files into an output folder, one file
of the same name per input, each written atomically (a temporary file renamed
into place). It fails loudly: names are checked before any work, and the first
image that cannot be de-identified stops the run and leaves no output for itself.

Errors (codes are stable): ``invalid_image`` with a reason when the decoder
refuses a file (``empty``, ``unknown_format``, ``corrupt``, ``truncated``,
``animated``, ``too_many_pixels`` ...); ``unsupported_file`` for a readable image
in a format that cannot be written back here (BMP, TIFF, GIF);
``invalid_argument`` for bad options, missing inputs, duplicate names or an
output that would replace its input; ``conflict`` for an existing output without
``overwrite``; ``deid_error`` when an output cannot be written.

What is kept: the pixels, as the decoder sees them (8-bit RGB, or 8-bit gray for
gray inputs). An ICC profile is dropped without converting colours (Warden's
decoder, like OpenCV, ignores it as well); alpha channels and 16-bit depth are
not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

from warden.detection import DEFAULT_LIMITS, ImageLimits, RGBImage, decode_image
from warden.detection.image import sniff_format
from warden.errors import (
    Conflict,
    DeidError,
    ImageErrorReason,
    InvalidArgument,
    InvalidImage,
    UnsupportedFile,
    WardenError,
)
from warden.privacy.faces import DEFAULT_MARGIN, DEFAULT_MIN_SCORE, FaceBox, FaceDetector, check_min_score
from warden.privacy.metadata import MetadataKind, find_metadata, webp_lossless

MAX_MARGIN: Final = 2.0
PIXELATE_CELLS: Final = 10
"""Blocks across the longer side of a pixelated region."""
BLUR_CELLS: Final = 16
"""Blur works on the region shrunk to this many pixels across its longer side..."""
BLUR_SIGMA: Final = 1.5
"""... blurred with this Gaussian sigma there (about a tenth of the region's size), then enlarged back."""
FILL_COLOUR: Final = (0, 0, 0)
JPEG_FALLBACK_QUALITY: Final = 95
WEBP_QUALITY: Final = 90

Region = tuple[int, int, int, int]

__all__ = [
    "BLUR_CELLS",
    "BLUR_SIGMA",
    "FILL_COLOUR",
    "MAX_MARGIN",
    "PIXELATE_CELLS",
    "ImageReport",
    "MetadataKind",
    "Mode",
    "Region",
    "deidentify_image",
    "deidentify_images",
    "find_metadata",
    "hide",
]

_WRITABLE: Final = ("JPEG", "PNG", "WEBP")
_GRAY_MODES: Final = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class Mode(StrEnum):
    """How a face region is hidden."""

    BLUR = "blur"
    PIXELATE = "pixelate"
    FILL = "fill"


@dataclass(frozen=True, slots=True)
class ImageReport:
    """What de-identifying one image did; :meth:`to_dict` is its manifest entry."""

    name: str
    format: str
    width: int
    height: int
    input_bytes: int
    output_bytes: int
    input_sha256: str
    output_sha256: str
    faces: tuple[FaceBox, ...]
    regions: tuple[Region, ...]
    """The pixel region hidden for each face (the box widened by ``margin``), in the order of ``faces``."""
    metadata_removed: tuple[MetadataKind, ...]
    mode: Mode
    margin: float
    min_score: float
    detector: str
    detector_version: str

    @property
    def face_count(self) -> int:
        """How many faces were found and hidden."""
        return len(self.faces)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe object: names, digests, sizes, face boxes and scores, metadata removed, settings."""
        return {
            "name": self.name,
            "format": self.format.lower(),
            "width": self.width,
            "height": self.height,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256,
            "faces": self.face_count,
            "boxes": [
                {
                    "box": [round(face.x1, 2), round(face.y1, 2), round(face.x2, 2), round(face.y2, 2)],
                    "score": round(face.score, 4),
                    "hidden": list(region),
                }
                for face, region in zip(self.faces, self.regions, strict=True)
            ],
            "metadata_removed": [kind.value for kind in self.metadata_removed],
            "mode": self.mode.value,
            "margin": self.margin,
            "min_score": self.min_score,
            "detector": self.detector,
            "detector_version": self.detector_version,
        }


def deidentify_image(
    data: bytes,
    detector: FaceDetector,
    *,
    mode: Mode | str = Mode.BLUR,
    margin: float = DEFAULT_MARGIN,
    min_score: float = DEFAULT_MIN_SCORE,
    limits: ImageLimits = DEFAULT_LIMITS,
    name: str = "",
) -> tuple[bytes, ImageReport]:
    """Hide every face in an encoded JPEG, PNG or WebP image and re-encode it without metadata.

    Returns the new file's bytes and its report. Raises ``InvalidImage`` for
    bytes the decoder refuses and ``UnsupportedFile`` for other image formats.
    """
    chosen = _check_options(mode, margin, min_score)
    data = bytes(data)
    if data:  # The decoder reports an empty file itself.
        fmt = sniff_format(data)
        if fmt not in _WRITABLE:
            raise UnsupportedFile(
                f"{fmt} images cannot be de-identified here; convert them to PNG (lossless) or JPEG first"
            )
    rgb = decode_image(data, limits)
    source = _inspect(data)
    faces = detector.detect(rgb, min_score)
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    regions = tuple(face.region(margin, width, height) for face in faces)
    pixels = np.array(rgb, dtype=np.uint8, copy=True)
    for region in regions:
        hide(pixels, region, chosen)
    output = _encode(pixels, source)
    leftover = find_metadata(output)
    if leftover:  # Never expected: the encoders are given no metadata. Fail rather than leak.
        raise DeidError(f"the re-encoded image still carries {', '.join(sorted(leftover))}; nothing was written")
    report = ImageReport(
        name=name,
        format=source.format,
        width=width,
        height=height,
        input_bytes=len(data),
        output_bytes=len(output),
        input_sha256=hashlib.sha256(data).hexdigest(),
        output_sha256=hashlib.sha256(output).hexdigest(),
        faces=tuple(faces),
        regions=regions,
        metadata_removed=tuple(sorted(source.metadata)),
        mode=chosen,
        margin=margin,
        min_score=min_score,
        detector=detector.name,
        detector_version=detector.version,
    )
    return output, report


def deidentify_images(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    detector: FaceDetector,
    mode: Mode | str = Mode.BLUR,
    margin: float = DEFAULT_MARGIN,
    min_score: float = DEFAULT_MIN_SCORE,
    limits: ImageLimits = DEFAULT_LIMITS,
    overwrite: bool = False,
    on_image: Callable[[ImageReport], None] | None = None,
) -> list[ImageReport]:
    """De-identify image files into ``out_dir`` (created if needed), each under its own file name.

    Every name is checked before any image is read: two inputs with the same
    name, an output that would replace an input, or (without ``overwrite``) an
    existing output stop the run. Then the images are processed in order; the
    first failure stops the run, with no output file for that image (those
    already written stay, complete). ``on_image`` is called after each image is
    written, for progress.
    """
    chosen = _check_options(mode, margin, min_score)
    inputs = [Path(p) for p in paths]
    targets = _plan(inputs, Path(out_dir), overwrite)
    reports = []
    for source, target in zip(inputs, targets, strict=True):
        try:
            data = _read_input(source, limits)
            output, report = deidentify_image(
                data, detector, mode=chosen, margin=margin, min_score=min_score, limits=limits, name=source.name
            )
        except (InvalidImage, UnsupportedFile) as exc:
            raise _naming(exc, source) from None
        except WardenError as exc:
            exc.add_note(f"while de-identifying {source}")
            raise
        _write_atomically(target, output)
        reports.append(report)
        if on_image is not None:
            on_image(report)
    return reports


def hide(pixels: RGBImage, region: Region, mode: Mode) -> None:
    """Hide ``region`` (``x1, y1, x2, y2``, exclusive ends) of ``pixels`` in place.

    ``blur`` shrinks the region to at most :data:`BLUR_CELLS` pixels across,
    blurs it there and enlarges it back (a Gaussian of about a tenth of the
    region's size, at a cost independent of it); ``pixelate`` leaves
    :data:`PIXELATE_CELLS` flat blocks across; ``fill`` paints :data:`FILL_COLOUR`.
    """
    x1, y1, x2, y2 = region
    if x2 <= x1 or y2 <= y1:
        return
    if mode is Mode.FILL:
        pixels[y1:y2, x1:x2] = FILL_COLOUR
        return
    roi = np.ascontiguousarray(pixels[y1:y2, x1:x2])
    height, width = roi.shape[:2]
    cells = PIXELATE_CELLS if mode is Mode.PIXELATE else BLUR_CELLS
    # At least two pixels per cell, so that even a tiny face changes.
    across = max(1, min(cells, -(-max(height, width) // 2)))
    gain = across / max(height, width)
    small_size = (max(1, round(width * gain)), max(1, round(height * gain)))
    small = cv2.resize(roi, small_size, interpolation=cv2.INTER_AREA)
    if mode is Mode.PIXELATE:
        pixels[y1:y2, x1:x2] = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
        return
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=BLUR_SIGMA, borderType=cv2.BORDER_REPLICATE)
    pixels[y1:y2, x1:x2] = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True, slots=True)
class _Source:
    format: str
    gray: bool
    metadata: frozenset[MetadataKind]
    jpeg_tables: list[list[int]] | None = None
    jpeg_subsampling: int = -1
    lossless: bool = False


def _check_options(mode: Mode | str, margin: float, min_score: float) -> Mode:
    try:
        chosen = Mode(mode)
    except ValueError:
        raise InvalidArgument(f"unknown mode {mode!r}; use {', '.join(m.value for m in Mode)}") from None
    if not 0.0 <= margin <= MAX_MARGIN:
        raise InvalidArgument(f"margin must be between 0 and {MAX_MARGIN}, got {margin}")
    check_min_score(min_score)
    return chosen


def _inspect(data: bytes) -> _Source:
    """Read what re-encoding needs from the (already validated) file's header, and its metadata kinds."""
    fmt = sniff_format(data)
    metadata = find_metadata(data)
    with Image.open(io.BytesIO(data), formats=[fmt]) as image:
        gray = image.mode in _GRAY_MODES
        if fmt == "JPEG":
            tables = getattr(image, "quantization", None) or {}
            wanted = 1 if gray else 2
            jpeg_tables = [list(tables[k]) for k in sorted(tables)[:wanted]] or None
            if jpeg_tables is not None and len(jpeg_tables) < wanted:
                jpeg_tables = None
            sampling = JpegImagePlugin.get_sampling(image) if image.mode != "L" else -1
            return _Source(fmt, gray, metadata, jpeg_tables, sampling)
    return _Source(fmt, gray, metadata, lossless=fmt == "WEBP" and webp_lossless(data))


def _encode(pixels: RGBImage, source: _Source) -> bytes:
    try:
        return _save(pixels, source)
    except (OSError, ValueError) as exc:
        raise DeidError(f"cannot encode the de-identified {source.format} image: {exc}") from None


def _save(pixels: RGBImage, source: _Source) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0])) if source.gray else Image.fromarray(pixels)
    buffer = io.BytesIO()
    # No exif, xmp, icc_profile, comment or pnginfo is passed: the encoders then write none.
    if source.format == "JPEG":
        if source.jpeg_tables is not None:
            subsampling = source.jpeg_subsampling if source.jpeg_subsampling in (0, 1, 2) else 2
            image.save(buffer, format="JPEG", qtables=source.jpeg_tables, subsampling=subsampling)
        else:
            image.save(buffer, format="JPEG", quality=JPEG_FALLBACK_QUALITY)
    elif source.format == "PNG":
        image.save(buffer, format="PNG")
    elif source.lossless:
        image.save(buffer, format="WEBP", lossless=True, exact=True)
    else:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()


def _plan(inputs: list[Path], out_dir: Path, overwrite: bool) -> list[Path]:
    """The output path of each input, after every check that needs no image to be read."""
    if not inputs:
        raise InvalidArgument("no images given")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgument(f"the output folder {out_dir} is a file")
    seen: dict[str, Path] = {}
    identities: set[tuple[int, int]] = set()
    for path in inputs:
        if not path.is_file():
            raise InvalidArgument(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        first = seen.setdefault(path.name.casefold(), path)
        if first is not path:
            raise InvalidArgument(f"two inputs share the output name {path.name!r}: {first} and {path}")
        stat = path.stat()
        identities.add((stat.st_dev, stat.st_ino))
    targets = [out_dir / path.name for path in inputs]
    for path, target in zip(inputs, targets, strict=True):
        if not target.exists():
            continue
        stat = target.stat()
        if (stat.st_dev, stat.st_ino) in identities or target.resolve() == path.resolve():
            raise InvalidArgument(f"{target} would replace its input {path}; choose another output folder")
        if not overwrite:
            raise Conflict(f"{target} exists already; remove it, choose another output folder, or allow overwriting")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeidError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    return targets


def _read_input(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise InvalidImage(
                ImageErrorReason.TOO_MANY_BYTES, f"the image has {size} bytes; the limit is {limits.max_bytes}"
            )
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _naming(exc: InvalidImage | UnsupportedFile, path: Path) -> WardenError:
    """The same error, with the file's path in its message."""
    if isinstance(exc, InvalidImage):
        detail = exc.message.removeprefix(f"{exc.reason.value}: ")
        return InvalidImage(exc.reason, f"{path}: {detail}")
    return UnsupportedFile(f"{path}: {exc.message}")


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``target``, make it durable, then rename it into place."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
    except OSError as exc:
        raise DeidError(f"cannot write {target}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):  # Make the rename durable where the platform allows it.
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
