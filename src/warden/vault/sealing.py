"""A streaming AES-256-GCM format: an object is sealed in chunks, each authenticated, in order, to its end.

Layout: a 15-byte header (``WVS1``, the chunk size, a random 7-byte nonce prefix), then chunks of
at most ``chunk_size`` plaintext bytes, each with its 16-byte tag. Chunk ``i``'s nonce is the prefix,
``i`` (4 bytes) and a last-chunk flag (1 byte), and its associated data the header and the object's
context (its id and tenant), so chunks cannot be reordered, dropped, moved to another object or cut
short without the tag failing (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár).
Memory stays at about one chunk whatever the object's size.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from warden.errors import StorageCorrupt

MAGIC: Final = b"WVS1"
CHUNK_SIZE: Final = 1 << 20
"""Plaintext bytes per chunk: 1 MiB, so memory stays small and the per-chunk overhead (16 bytes) is negligible."""
KEY_BYTES: Final = 32
TAG_BYTES: Final = 16
_PREFIX_BYTES: Final = 7
_HEADER: Final = struct.Struct(">4sI7s")
HEADER_BYTES: Final = _HEADER.size
_MAX_CHUNKS: Final = 2**32 - 1


def new_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index > _MAX_CHUNKS:
        raise ValueError("an object may hold at most 2**32 chunks")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def seal(key: bytes, context: bytes, chunks: Iterable[bytes], out: BinaryIO, chunk_size: int = CHUNK_SIZE) -> int:
    """Encrypt the bytes of ``chunks`` (any sizes) to ``out`` under ``key`` and ``context``; the plaintext size."""
    if not 16 <= chunk_size <= 1 << 30:
        raise ValueError("the chunk size must be between 16 bytes and 1 GiB")
    prefix = os.urandom(_PREFIX_BYTES)
    header = _HEADER.pack(MAGIC, chunk_size, prefix)
    out.write(header)
    cipher, aad = AESGCM(key), header + context
    pending, index, total = bytearray(), 0, 0
    for chunk in chunks:
        pending.extend(chunk)
        total += len(chunk)
        while len(pending) > chunk_size:  # a full chunk with more after it: never the last
            out.write(cipher.encrypt(_nonce(prefix, index, False), bytes(pending[:chunk_size]), aad))
            del pending[:chunk_size]
            index += 1
    out.write(cipher.encrypt(_nonce(prefix, index, True), bytes(pending), aad))
    return total


def unseal(key: bytes, context: bytes, source: BinaryIO) -> Iterator[bytes]:
    """Decrypt a sealed stream chunk by chunk; ``StorageCorrupt`` if any byte was changed, moved or cut off.

    Chunks are yielded as they are verified: a consumer that must not act on a partial object reads
    it to the end first.
    """
    header = source.read(HEADER_BYTES)
    if len(header) != HEADER_BYTES:
        raise StorageCorrupt("a sealed object is shorter than its header")
    magic, chunk_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or not 16 <= chunk_size <= 1 << 30:
        raise StorageCorrupt("a sealed object's header is not Warden's")
    cipher, aad = AESGCM(key), header + context
    sealed_size = chunk_size + TAG_BYTES
    index = 0
    current = source.read(sealed_size)
    while True:
        following = source.read(sealed_size) if len(current) == sealed_size else b""
        last = not following
        try:
            yield cipher.decrypt(_nonce(prefix, index, last), current, aad)
        except InvalidTag:
            raise StorageCorrupt(
                "a sealed object failed authentication: changed, cut short or not this key's"
            ) from None
        if last:
            return
        current, index = following, index + 1


def sealed_size(plaintext_bytes: int, chunk_size: int = CHUNK_SIZE) -> int:
    """The bytes a sealed object of ``plaintext_bytes`` takes (header, data, one tag per chunk)."""
    chunks = max(1, -(-plaintext_bytes // chunk_size))
    return HEADER_BYTES + plaintext_bytes + chunks * TAG_BYTES


def wrap_key(wrapping_key: bytes, key: bytes, context: bytes) -> bytes:
    """``key`` encrypted under ``wrapping_key`` (AES-256-GCM, random nonce first), bound to ``context``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(wrapping_key).encrypt(nonce, key, context)


def unwrap_key(wrapping_key: bytes, wrapped: bytes, context: bytes) -> bytes:
    """The key :func:`wrap_key` wrapped; ``StorageCorrupt`` for another key, another context or changed bytes."""
    try:
        return AESGCM(wrapping_key).decrypt(wrapped[:12], wrapped[12:], context)
    except (InvalidTag, ValueError):
        raise StorageCorrupt("a wrapped key failed authentication: changed, or not this key's") from None
