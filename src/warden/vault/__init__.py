"""Encryption at rest: tenants' objects under envelope keys (a data key per object, a key per tenant, a
key-encryption key from the server secret or a KMS), erasable by destroying their key (crypto-shredding).
"""

from warden.vault.sealing import CHUNK_SIZE, seal, unseal
from warden.vault.store import SealedView, Vault
from warden.vault.wrapping import KeyWrapper, SecretKeyWrapper

__all__ = ["CHUNK_SIZE", "KeyWrapper", "SealedView", "SecretKeyWrapper", "Vault", "seal", "unseal"]
