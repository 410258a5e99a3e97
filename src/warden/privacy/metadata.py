"""Which metadata an encoded JPEG, PNG or WebP file carries, read from its container without decoding pixels.

Image de-identification uses it twice: to report what an input carried, and to
check that an output carries nothing (EXIF with or without GPS, XMP, IPTC, ICC
profiles, comments, PNG text chunks, timestamps, thumbnails, unknown blocks).
"""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Final

from PIL import Image

from warden.detection.image import sniff_format

_GPS_IFD: Final = 0x8825


class MetadataKind(StrEnum):
    """A kind of metadata found in an input file (and never written to its output)."""

    EXIF = "exif"
    GPS = "gps"
    XMP = "xmp"
    IPTC = "iptc"
    ICC_PROFILE = "icc_profile"
    COMMENT = "comment"
    TEXT = "text"
    TIMESTAMP = "timestamp"
    THUMBNAIL = "thumbnail"
    OTHER = "other"


def find_metadata(data: bytes) -> frozenset[MetadataKind]:
    """The kinds of metadata an encoded JPEG, PNG or WebP file carries (read from its container, not its pixels)."""
    fmt = sniff_format(data)
    if fmt == "JPEG":
        return frozenset(_jpeg_metadata(data))
    if fmt == "PNG":
        return frozenset(_png_metadata(data))
    if fmt == "WEBP":
        return frozenset(_webp_metadata(data))
    return frozenset()


_JFIF: Final = b"JFIF\x00"
_XMP_IDS: Final = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_PNG_IMAGE_CHUNKS: Final = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"hIST", b"sPLT"}
    | {b"pHYs", b"cICP", b"mDCv", b"cLLi", b"acTL", b"fcTL", b"fdAT"}
)
_WEBP_IMAGE_CHUNKS: Final = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})


def _exif_kinds(payload: bytes) -> set[MetadataKind]:
    kinds = {MetadataKind.EXIF}
    exif = Image.Exif()
    with contextlib.suppress(Exception):  # A malformed block is still EXIF; only the GPS test is skipped.
        exif.load(payload)
        if _GPS_IFD in exif:
            kinds.add(MetadataKind.GPS)
    return kinds


def _jpeg_metadata(data: bytes) -> set[MetadataKind]:
    found: set[MetadataKind] = set()
    pos, end = 2, len(data)
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # Fill byte.
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # Markers without a length.
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # End of image, start of scan: no metadata segments follow the header.
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break
        found |= _jpeg_segment(marker, data[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return found


def _jpeg_segment(marker: int, payload: bytes) -> set[MetadataKind]:
    if marker == 0xFE:
        return {MetadataKind.COMMENT}
    if not 0xE0 <= marker <= 0xEF:
        return set()
    if marker == 0xE0 and payload.startswith(_JFIF):
        has_thumbnail = len(payload) >= 14 and payload[12] and payload[13]
        return {MetadataKind.THUMBNAIL} if has_thumbnail else set()
    if marker == 0xE0 and payload.startswith(b"JFXX\x00"):
        return {MetadataKind.THUMBNAIL}
    if marker == 0xE1 and payload.startswith(b"Exif\x00"):
        return _exif_kinds(payload)
    if marker == 0xE1 and payload.startswith(_XMP_IDS):
        return {MetadataKind.XMP}
    if marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        return {MetadataKind.ICC_PROFILE}
    if marker == 0xED:
        return {MetadataKind.IPTC}
    return {MetadataKind.OTHER}


def _png_metadata(data: bytes) -> set[MetadataKind]:
    found: set[MetadataKind] = set()
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IEND":
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = data[pos + 8 : pos + 8 + min(length, 80)].split(b"\x00", 1)[0]
            found.add(_png_text_kind(keyword))
        elif kind == b"eXIf":
            found |= _exif_kinds(data[pos + 8 : pos + 8 + length])
        elif kind == b"iCCP":
            found.add(MetadataKind.ICC_PROFILE)
        elif kind == b"tIME":
            found.add(MetadataKind.TIMESTAMP)
        elif kind not in _PNG_IMAGE_CHUNKS:
            found.add(MetadataKind.OTHER)
        pos += 12 + length
    return found


def _png_text_kind(keyword: bytes) -> MetadataKind:
    key = keyword.lower()
    if key == b"xml:com.adobe.xmp":
        return MetadataKind.XMP
    if key == b"comment":
        return MetadataKind.COMMENT
    if key.startswith(b"raw profile type"):  # ImageMagick's hex-encoded metadata blocks.
        for marker, found in ((b"exif", MetadataKind.EXIF), (b"iptc", MetadataKind.IPTC), (b"xmp", MetadataKind.XMP)):
            if marker in key:
                return found
        if b"icc" in key or b"icm" in key:
            return MetadataKind.ICC_PROFILE
    return MetadataKind.TEXT


def _webp_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    chunks = []
    pos, end = 12, len(data)
    while pos + 8 <= end:
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        chunks.append((data[pos : pos + 4], pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _webp_metadata(data: bytes) -> set[MetadataKind]:
    found: set[MetadataKind] = set()
    for kind, start, size in _webp_chunks(data):
        if kind == b"EXIF":
            found |= _exif_kinds(data[start : start + size])
        elif kind == b"XMP ":
            found.add(MetadataKind.XMP)
        elif kind == b"ICCP":
            found.add(MetadataKind.ICC_PROFILE)
        elif kind not in _WEBP_IMAGE_CHUNKS:
            found.add(MetadataKind.OTHER)
    return found


def webp_lossless(data: bytes) -> bool:
    """Whether a WebP file is lossless (its image is a VP8L chunk), so re-encoding keeps it lossless."""
    return any(kind == b"VP8L" for kind, _, _ in _webp_chunks(data))
