"""The streaming AES-256-GCM format: a round trip for every size, and every change, cut or move is caught."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.errors import StorageCorrupt
from warden.vault.sealing import HEADER_BYTES, TAG_BYTES, new_key, seal, sealed_size, unseal, unwrap_key, wrap_key

KEY = new_key()
CONTEXT = b"warden object:1:obj_test"


def sealed(data: bytes, chunk_size: int = 16, pieces: int = 1, key: bytes = KEY, context: bytes = CONTEXT) -> bytes:
    out = io.BytesIO()
    step = max(1, len(data) // pieces)
    seal(key, context, (data[i : i + step] for i in range(0, len(data), step)), out, chunk_size)
    return out.getvalue()


def opened(blob: bytes, key: bytes = KEY, context: bytes = CONTEXT) -> bytes:
    return b"".join(unseal(key, context, io.BytesIO(blob)))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), chunk_size=st.integers(16, 64), pieces=st.integers(1, 7))
def test_what_is_sealed_opens_to_the_same_bytes_however_it_was_cut(data: bytes, chunk_size: int, pieces: int) -> None:
    blob = sealed(data, chunk_size, pieces)
    assert len(blob) == sealed_size(len(data), chunk_size)
    assert opened(blob) == data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=120), where=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_flipped_bit_anywhere_is_caught(data: bytes, where: int, bit: int) -> None:
    blob = bytearray(sealed(data))
    blob[where % len(blob)] ^= 1 << bit
    with pytest.raises(StorageCorrupt):
        opened(bytes(blob))


@pytest.mark.parametrize("size", [16, 32, 33, 100])
def test_a_stream_cut_at_a_chunk_boundary_is_caught(size: int) -> None:
    blob = sealed(bytes(range(size)) * 1, chunk_size=16)
    for chunks in range(0, -(-size // 16)):
        cut = blob[: HEADER_BYTES + chunks * (16 + TAG_BYTES)]
        with pytest.raises(StorageCorrupt):
            opened(cut)


def test_chunks_cannot_be_reordered_or_moved_to_another_object() -> None:
    data = bytes(range(64))
    blob = sealed(data, chunk_size=16)
    size = 16 + TAG_BYTES
    chunks = [blob[HEADER_BYTES + i * size : HEADER_BYTES + (i + 1) * size] for i in range(4)]
    swapped = blob[:HEADER_BYTES] + chunks[1] + chunks[0] + chunks[2] + chunks[3] + blob[HEADER_BYTES + 4 * size :]
    with pytest.raises(StorageCorrupt):
        opened(swapped)
    with pytest.raises(StorageCorrupt):
        opened(blob, context=b"warden object:2:obj_test")  # the same bytes claimed by another tenant
    with pytest.raises(StorageCorrupt):
        opened(blob, key=new_key())


@pytest.mark.parametrize("blob", [b"", b"WVS1", b"XXXX" + bytes(11) + bytes(16)], ids=["empty", "short", "magic"])
def test_what_is_no_sealed_object_is_refused(blob: bytes) -> None:
    with pytest.raises(StorageCorrupt):
        opened(blob)


def test_a_wrapped_key_opens_only_with_its_key_and_context() -> None:
    wrapping, key = new_key(), new_key()
    wrapped = wrap_key(wrapping, key, b"ctx")
    assert unwrap_key(wrapping, wrapped, b"ctx") == key
    for other_key, other_context in ((new_key(), b"ctx"), (wrapping, b"other")):
        with pytest.raises(StorageCorrupt):
            unwrap_key(other_key, wrapped, other_context)
    with pytest.raises(StorageCorrupt):
        unwrap_key(wrapping, wrapped[:5], b"ctx")
