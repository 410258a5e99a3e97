"""Encoded test images built in memory: every accepted format and mode, and hostile files."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


def gradient(height: int = 48, width: int = 64) -> npt.NDArray[np.uint8]:
    """An RGB image whose pixels all differ a little, so channel and axis mix-ups show."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 4) % 256, (y * 5) % 256, (x + y) % 256], axis=2).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """Save a PIL image to bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, *, depth: int = 8, color_type: int = 2, pixels: bytes | None = None) -> bytes:
    """A PNG written by hand, so headers can claim any size and depth (colour type 0 gray, 2 RGB)."""
    channels = {0: 1, 2: 3}[color_type]
    if pixels is None:
        pixels = b"".join(b"\x00" + bytes(width * channels * depth // 8) for _ in range(min(height, 4)))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(pixels)) + _chunk(b"IEND", b"")
    )


def png16(values: npt.NDArray[np.uint16]) -> bytes:
    """A 16-bit PNG (gray for 2-D arrays, RGB for HxWx3) with exactly these sample values."""
    color_type = 0 if values.ndim == 2 else 2
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    return png(values.shape[1], values.shape[0], depth=16, color_type=color_type, pixels=rows)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A valid small JPEG whose frame header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.fromarray(gradient(8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose screen and image descriptor claim ``width`` x ``height`` with almost no data."""
    screen = b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00"
    return screen + descriptor + b"\x02\x02\x44\x01\x00" + b"\x3b"


def bmp_claiming(width: int, height: int) -> bytes:
    """A BMP whose info header claims ``width`` x ``height``."""
    data = bytearray(encode(Image.fromarray(gradient(4, 4)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def animated(fmt: str) -> bytes:
    """A two-frame animation (GIF, WebP, PNG) or a two-page TIFF."""
    frames = [Image.fromarray(gradient()), Image.fromarray(255 - gradient())]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def with_orientation(rgb: npt.NDArray[np.uint8], orientation: int, fmt: str = "PNG") -> bytes:
    """``rgb`` saved with an EXIF orientation tag."""
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif.tobytes())
