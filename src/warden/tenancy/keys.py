"""API keys: random, shown once, stored only as a keyed hash, found by a public id.

A key reads ``wdn_<key id>_<secret>``: the key id (12 hex digits) is public and
indexes the row; the secret (32 random bytes, URL-safe base64) is kept only as
HMAC-SHA256 under the server secret and compared in constant time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from warden.errors import InvalidArgument

KEY_PATTERN: Final = re.compile(r"^wdn_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
SECRET_FILE: Final = "secret.key"  # noqa: S105 - a file name, not a secret
_MIN_SECRET_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly made key: the full ``key`` (shown once, never stored) and its public ``key_id``."""

    key: str
    key_id: str
    secret: str


def new_key() -> IssuedKey:
    """Make a random key."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(key=f"wdn_{key_id}_{secret}", key_id=key_id, secret=secret)


def parse_key(text: str) -> tuple[str, str] | None:
    """Split a presented key into ``(key_id, secret)``, or ``None`` when it is not shaped like one."""
    match = KEY_PATTERN.fullmatch(text)
    return None if match is None else (match["key_id"], match["secret"])


def hash_secret(server_secret: bytes, key_id: str, secret: str) -> str:
    """The stored form of a key: HMAC-SHA256 of ``key_id:secret`` under the server secret, in hex."""
    return hmac.new(server_secret, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def secret_fingerprint(server_secret: bytes) -> str:
    """A one-way fingerprint of the server secret, safe to store: replicas compare it to find a mismatch."""
    return hmac.new(server_secret, b"warden server secret fingerprint v1", hashlib.sha256).hexdigest()


def previous_secrets(configured: list[str]) -> tuple[bytes, ...]:
    """The secrets of earlier rotations (``WARDEN_PREVIOUS_SECRET_KEYS``), each as long as a secret must be."""
    values = tuple(value.encode() for value in configured)
    if any(len(value) < _MIN_SECRET_BYTES for value in values):
        raise InvalidArgument(
            f"every WARDEN_PREVIOUS_SECRET_KEYS entry must be at least {_MIN_SECRET_BYTES} characters"
        )
    return values


def load_server_secret(data_dir: Path, configured: str | None) -> bytes:
    """The server secret: the configured one, else ``DATA_DIR/secret.key`` (created 0600 on first use).

    Refuses a short configured secret and a key file that others can read.
    """
    if configured is not None:
        value = configured.encode()
        if len(value) < _MIN_SECRET_BYTES:
            raise InvalidArgument(f"WARDEN_SECRET_KEY must be at least {_MIN_SECRET_BYTES} characters")
        return value
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_secret_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InvalidArgument(f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}")
    try:
        value = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise InvalidArgument(f"{path} does not hold a hex secret") from None
    if len(value) < _MIN_SECRET_BYTES:
        raise InvalidArgument(f"{path} holds a secret shorter than {_MIN_SECRET_BYTES} bytes")
    return value


def _create_secret_file(path: Path) -> None:
    # Written aside and hard-linked into place: concurrent starters all read one complete secret.
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_bytes(_MIN_SECRET_BYTES).hex())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
