"""Pseudonymisation key material: one secret file, separate derived keys per use.

The key file holds at least 32 bytes of secret: raw bytes, or their hex or
base64 text (what ``warden deid keygen`` writes). Each operator gets its own key
derived with HKDF-SHA256, so a hash pseudonym never reveals anything about the
encryption key or the date shifts. ``key_id`` names the key in manifests without
revealing it: two runs with the same ``key_id`` used the same secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from warden.errors import KeyRequired

MIN_SECRET_BYTES: Final = 32
_MAX_FILE_BYTES: Final = 4096


@dataclass(frozen=True)
class DeidKey:
    """A de-identification secret and the keys derived from it for hashing, encryption and date shifts."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise KeyRequired(f"a de-identification key needs at least {MIN_SECRET_BYTES} bytes of secret")

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A key for one ``purpose`` (``hash``, ``encrypt``, ``date_shift``), independent of every other purpose."""
        kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"warden-deid/v1/{purpose}".encode())
        return kdf.derive(self.secret)

    @property
    def key_id(self) -> str:
        """A public fingerprint of the secret for manifests (16 hex digits); it reveals nothing usable."""
        return hmac.new(self.derive("key-id"), b"warden-deid key id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def generate(cls) -> DeidKey:
        """A fresh random key (32 bytes from the operating system's generator)."""
        return cls(secrets.token_bytes(MIN_SECRET_BYTES))

    @classmethod
    def load(cls, path: Path) -> DeidKey:
        """Read a key file: raw bytes, or hex or base64 text of at least 32 bytes."""
        try:
            raw = path.read_bytes()[: _MAX_FILE_BYTES + 1]
        except OSError as exc:
            raise KeyRequired(f"cannot read key file {path}: {exc.strerror or exc}") from exc
        if len(raw) > _MAX_FILE_BYTES:
            raise KeyRequired(f"key file {path} is larger than {_MAX_FILE_BYTES} bytes; is it the right file?")
        return cls(_decode(raw))

    def save(self, path: Path) -> None:
        """Write the secret as hex to a new file readable by its owner only; an existing file is never replaced."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(self.secret.hex() + "\n")


def _decode(raw: bytes) -> bytes:
    """The secret in a key file: hex text, else base64 text, else the bytes themselves (binary, not text).

    Whitespace around and inside text is ignored (``openssl rand -base64`` wraps lines). Text that is
    neither hex nor base64, or hex with an odd number of digits, is refused rather than taken as raw
    bytes: a passphrase or a truncated hex key is not a 32-byte random secret.
    """
    text = b"".join(raw.split())
    if not text or not all(33 <= b <= 126 for b in text):
        return raw
    if all(chr(b) in string.hexdigits for b in text):
        if len(text) % 2:
            raise KeyRequired("the key file's hex text has an odd number of digits; is it truncated?")
        return bytes.fromhex(text.decode("ascii"))
    padded = text + b"=" * (-len(text) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise KeyRequired("the key file holds text that is neither hex nor base64; make one with 'warden deid keygen'")
