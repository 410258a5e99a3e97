"""Model registry: upload validation and run measurement, content-addressed blobs, versions, aliases, the canary
split and each version's run-time cap."""

from warden.registry.blobs import BlobStore, sha256_hex
from warden.registry.run_cap import RUN_CAP_FLOOR_MS, RUN_CAP_MULTIPLE, effective_run_cap_ms
from warden.registry.service import (
    ALIASES,
    CANARY,
    MAX_VERSION,
    STABLE,
    ModelRegistry,
    parse_reference,
    parse_version,
)
from warden.registry.validation import ValidatedModel, validate_model
from warden.registry.views import AliasView, BatchSettings, ModelView, PushResult, ResolvedModel, VersionView

__all__ = [
    "ALIASES",
    "CANARY",
    "MAX_VERSION",
    "RUN_CAP_FLOOR_MS",
    "RUN_CAP_MULTIPLE",
    "STABLE",
    "AliasView",
    "BatchSettings",
    "BlobStore",
    "ModelRegistry",
    "ModelView",
    "PushResult",
    "ResolvedModel",
    "ValidatedModel",
    "VersionView",
    "effective_run_cap_ms",
    "parse_reference",
    "parse_version",
    "sha256_hex",
    "validate_model",
]
