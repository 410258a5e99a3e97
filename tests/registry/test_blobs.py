"""The blob store: content-addressed, and private to Warden's user whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden.registry import BlobStore, sha256_hex


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Run under umask 022, as the CLI usually does (the server sets 077 for itself)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_stored_blob_and_its_folders_are_private_under_a_loose_umask(tmp_path: Path, loose_umask: None) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"model bytes")
    path = store.path(digest)
    assert _mode(path) == 0o600
    assert [_mode(folder) for folder in (path.parent, path.parent.parent, store.root)] == [0o700] * 3
    assert store.read(digest) == b"model bytes"
    assert digest == sha256_hex(b"model bytes")


def test_storing_the_same_bytes_twice_keeps_one_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    assert store.put(b"x") == store.put(b"x")
    assert store.digests() == {sha256_hex(b"x")}
    assert [p.name for p in store.path(sha256_hex(b"x")).parent.iterdir()] == [sha256_hex(b"x")]
