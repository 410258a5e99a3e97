"""The top of the key hierarchy: what wraps each tenant's key. One small interface, so a KMS can replace it.

:class:`SecretKeyWrapper` derives its key-encryption key from the server secret with HKDF-SHA256
(a key of its own, never the secret itself nor the key that hashes API keys). Each wrapped key
records which key-encryption key wrapped it (``kek_id``), so a rotated secret still unwraps what
its predecessors wrapped while they are listed in ``WARDEN_PREVIOUS_SECRET_KEYS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from warden.errors import StorageCorrupt
from warden.vault.sealing import KEY_BYTES, unwrap_key, wrap_key

_KEK_INFO: Final = b"warden vault key-encryption key v1"
_ID_INFO: Final = b"warden vault key-encryption key id v1"


class KeyWrapper(Protocol):
    """Wraps and unwraps tenant keys: the server secret's key here; a KMS's ``Encrypt``/``Decrypt`` elsewhere.

    Example of another implementation::

        class KmsWrapper:
            kek_id = "kms:arn:aws:kms:eu-west-1:111122223333:key/1234"

            def wrap(self, key: bytes, context: bytes) -> bytes:
                return kms.encrypt(KeyId=..., Plaintext=key, EncryptionContext={"c": context.hex()})["CiphertextBlob"]

            def unwrap(self, wrapped: bytes, context: bytes, kek_id: str) -> bytes:
                return kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={"c": context.hex()})["Plaintext"]
    """

    @property
    def kek_id(self) -> str:
        """The id of the key that wraps new keys (stored beside each wrapped key)."""
        ...

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """``key`` wrapped, bound to ``context`` (unwrapping with another context fails)."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes, kek_id: str) -> bytes:
        """The key ``wrap`` wrapped under the key-encryption key ``kek_id``; ``StorageCorrupt`` if it cannot."""
        ...


class SecretKeyWrapper:
    """Wraps with a key derived from the server secret; unwraps with it or a previous secret's."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._current = _derive(secret)
        self._keys = {_key_id(key): key for key in (self._current, *(_derive(s) for s in previous))}

    @property
    def kek_id(self) -> str:
        """The current key-encryption key's id (a hash of it: it names the key without revealing it)."""
        return _key_id(self._current)

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """``key`` wrapped with the current key-encryption key."""
        return wrap_key(self._current, key, context)

    def unwrap(self, wrapped: bytes, context: bytes, kek_id: str) -> bytes:
        """Unwrap with the key-encryption key ``kek_id`` (the current one, or a previous secret's)."""
        key = self._keys.get(kek_id)
        if key is None:
            raise StorageCorrupt(
                "a tenant key is wrapped by a key-encryption key this server does not hold "
                "(a server secret neither current nor in WARDEN_PREVIOUS_SECRET_KEYS)"
            )
        return unwrap_key(key, wrapped, context)


def _derive(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_KEK_INFO).derive(secret)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_ID_INFO + key).hexdigest()[:32]
