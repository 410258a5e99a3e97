"""Safe, in-memory image decoding to RGB pixel arrays.

Untrusted bytes are checked in the cheapest order: byte size, then the format's
magic, then the header's pixel count (before any pixel is decoded, so a
decompression bomb costs a header parse), then a full decode. Every refusal is an
:class:`~warden.errors.InvalidImage` with a stable reason. Nothing touches the disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

from warden.errors import ImageErrorReason, InvalidArgument, InvalidImage

RGBImage: TypeAlias = npt.NDArray[np.uint8]
"""An image as Warden handles it internally: ``(height, width, 3)`` uint8, RGB order."""

ImageInput: TypeAlias = "bytes | bytearray | memoryview | npt.NDArray[np.generic] | Image.Image"
"""What :func:`to_rgb` accepts: encoded file bytes, a BGR/gray numpy array, or a PIL image."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Upper bounds checked before decoding: encoded size in bytes and width × height in pixels."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise InvalidArgument("image limits must be positive")


DEFAULT_LIMITS: Final = ImageLimits()

# Formats decoded, keyed by the Pillow plugin that decodes them.
_ACCEPTED: Final = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

# Recognised containers that are refused with their name rather than "unknown".
_REFUSED_MAGIC: Final = (
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
_HEIF_BRANDS: Final = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")

_ORIENTATION_TAG: Final = 0x0112
_TRANSPOSE_FOR_ORIENTATION: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def sniff_format(data: bytes | bytearray | memoryview) -> str:
    """Return the Pillow format name for ``data``'s magic bytes, or raise ``InvalidImage``."""
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise InvalidImage(ImageErrorReason.UNSUPPORTED_FORMAT, f"{name} images are not supported")
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        raise InvalidImage(ImageErrorReason.UNSUPPORTED_FORMAT, "HEIF/AVIF images are not supported")
    raise InvalidImage(
        ImageErrorReason.UNKNOWN_FORMAT,
        "not a JPEG, PNG, WebP, BMP, TIFF or GIF file (unrecognised leading bytes)",
    )


def decode_image(data: bytes | bytearray | memoryview, limits: ImageLimits = DEFAULT_LIMITS) -> RGBImage:
    """Decode an encoded image file held in memory to an RGB array, applying EXIF orientation."""
    size = len(data)
    if size == 0:
        raise InvalidImage(ImageErrorReason.EMPTY, "the image is empty (0 bytes)")
    if size > limits.max_bytes:
        raise InvalidImage(
            ImageErrorReason.TOO_MANY_BYTES,
            f"the image has {size} bytes; the limit is {limits.max_bytes}",
        )
    fmt = sniff_format(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(ImageErrorReason.TOO_MANY_PIXELS, str(exc)) from None
    except Exception as exc:  # Pillow's plugins raise many types on hostile headers.
        raise _decode_failure(fmt, exc) from None
    with image:
        try:
            _check_header(image, fmt, limits)  # counting frames reads further headers
            image.load()
            rgb = _to_rgb_array(image)
            orientation = _orientation(image)
        except InvalidImage:
            raise
        except MemoryError:
            raise InvalidImage(ImageErrorReason.TOO_MANY_PIXELS, "not enough memory to decode") from None
        except Exception as exc:  # Pillow's plugins raise many types on hostile input.
            raise _decode_failure(fmt, exc) from None
    return _apply_orientation(rgb, orientation)


def to_rgb(image: ImageInput, limits: ImageLimits = DEFAULT_LIMITS) -> RGBImage:
    """Turn any accepted input into an RGB array.

    Encoded bytes are decoded safely; numpy arrays follow the OpenCV and
    Ultralytics convention (``HxW`` gray, ``HxWx3`` BGR or ``HxWx4`` BGRA, uint8);
    PIL images are used as they are (no EXIF rotation, as Ultralytics does).
    """
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(image, limits)
    if isinstance(image, np.ndarray):
        return _from_bgr_array(image, limits)
    if isinstance(image, Image.Image):
        _check_pixels(image.size[0], image.size[1], limits)
        try:
            return _to_rgb_array(image)
        except InvalidImage:
            raise
        except (OSError, ValueError) as exc:
            raise InvalidImage(ImageErrorReason.CORRUPT, f"cannot read the PIL image: {exc}") from None
    raise InvalidImage(
        ImageErrorReason.UNSUPPORTED_INPUT,
        f"expected encoded bytes, a numpy array or a PIL image, got {type(image).__name__}",
    )


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(ImageErrorReason.ZERO_SIZE, f"the image is {width}x{height} pixels")
    if width * height > limits.max_pixels:
        raise InvalidImage(
            ImageErrorReason.TOO_MANY_PIXELS,
            f"the image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )


def _check_header(image: Image.Image, fmt: str, limits: ImageLimits) -> None:
    width, height = image.size
    _check_pixels(width, height, limits)
    if getattr(image, "n_frames", 1) > 1:
        raise InvalidImage(
            ImageErrorReason.ANIMATED,
            f"animated or multi-frame {fmt} images are not supported; send a single frame",
        )


def _decode_failure(fmt: str, exc: BaseException) -> InvalidImage:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return InvalidImage(ImageErrorReason.TRUNCATED, f"the {fmt} data ends early ({text})")
    return InvalidImage(ImageErrorReason.CORRUPT, f"the {fmt} data is corrupt ({text})")


def _to_rgb_array(image: Image.Image) -> RGBImage:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "L":
        return _gray_to_rgb(np.asarray(image, dtype=np.uint8))
    if mode in _SIXTEEN_BIT_MODES:
        # OpenCV strips 16-bit samples to their high byte; do the same.
        wide = np.asarray(image).astype(np.int64)
        return _gray_to_rgb((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
    if mode == "F":
        return _gray_to_rgb(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    try:
        converted = image.convert("RGB")
    except ValueError as exc:
        raise InvalidImage(ImageErrorReason.UNSUPPORTED_MODE, f"pixel mode {mode} ({exc})") from None
    return np.asarray(converted, dtype=np.uint8)


def _gray_to_rgb(gray: npt.NDArray[np.uint8]) -> RGBImage:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # A malformed EXIF block is ignored, as OpenCV does.
        return 1
    return value if isinstance(value, int) else 1


def _apply_orientation(rgb: RGBImage, orientation: int) -> RGBImage:
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if method is None:
        return rgb
    rotated = Image.fromarray(rgb).transpose(method)
    return np.asarray(rotated, dtype=np.uint8)


def _from_bgr_array(array: npt.NDArray[np.generic], limits: ImageLimits) -> RGBImage:
    if array.dtype != np.uint8:
        raise InvalidImage(ImageErrorReason.UNSUPPORTED_INPUT, f"numpy images must be uint8, got {array.dtype}")
    pixels: npt.NDArray[np.uint8] = array.astype(np.uint8, copy=False)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        _check_pixels(pixels.shape[1], pixels.shape[0], limits)
        return _gray_to_rgb(pixels)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        _check_pixels(pixels.shape[1], pixels.shape[0], limits)
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    raise InvalidImage(
        ImageErrorReason.UNSUPPORTED_INPUT,
        f"numpy images must be HxW, HxWx3 (BGR) or HxWx4 (BGRA); got shape {array.shape}",
    )
