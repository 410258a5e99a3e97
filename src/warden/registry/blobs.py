"""A content-addressed blob store on the local disk: the same bytes are stored once, whoever uploads them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Final

from warden.errors import InvalidArgument, StorageCorrupt

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs under ``root/sha256/ab/<sha256>``, written atomically (temp file, fsync, rename).

    Blobs are 0600 in 0700 folders whatever the process's umask: a tenant's model is no
    other local user's to read, also in a model store shared by replicas.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (whether or not it exists)."""
        if not _SHA256.match(digest):
            raise InvalidArgument(f"not a sha256 digest: {digest!r}")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` unless present already; return its sha256."""
        digest = sha256_hex(data)
        target = self.path(digest)
        if target.exists():
            return digest
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (target.parent.parent, target.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
        scratch = target.with_name(f".{digest}.{secrets.token_hex(8)}")
        try:
            with os.fdopen(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return digest

    def read(self, digest: str) -> bytes:
        """The bytes of a stored blob, checked against their digest."""
        data = self.path(digest).read_bytes()
        if sha256_hex(data) != digest:
            raise StorageCorrupt(f"blob {digest} no longer matches its digest")
        return data

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.path(digest).is_file()

    def delete(self, digest: str) -> None:
        """Remove a blob if present."""
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> set[str]:
        """Every stored digest."""
        base = self.root / "sha256"
        return {p.name for p in base.glob("??/*") if _SHA256.match(p.name)} if base.is_dir() else set()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
