"""Model registry: upload validation, content-addressed blobs, versions, aliases and the canary split."""

from warden.registry.blobs import BlobStore, sha256_hex
from warden.registry.service import (
    ALIASES,
    CANARY,
    MAX_VERSION,
    STABLE,
    AliasView,
    BatchSettings,
    ModelRegistry,
    ModelView,
    PushResult,
    ResolvedModel,
    VersionView,
    parse_reference,
    parse_version,
)
from warden.registry.validation import validate_model

__all__ = [
    "ALIASES",
    "CANARY",
    "MAX_VERSION",
    "STABLE",
    "AliasView",
    "BatchSettings",
    "BlobStore",
    "ModelRegistry",
    "ModelView",
    "PushResult",
    "ResolvedModel",
    "VersionView",
    "parse_reference",
    "parse_version",
    "sha256_hex",
    "validate_model",
]
