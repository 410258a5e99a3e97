"""Registered detection models as CycloneDX ``machine-learning-model`` components.

Each version of each tenant's model is one component, named ``tenant/model``, with the
version number, the sha256 of its blob, and what the registry learnt when it validated the
upload as ``warden:model:*`` properties; the application the document describes depends on
each of them. A model's bytes are content-addressed, so the hash
in the document is the hash of what is served.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType

if TYPE_CHECKING:
    from warden.registry import ModelRegistry
    from warden.tenancy import TenantService

PREFIX: Final = "warden:model:"
"""The namespace of the properties Warden writes on model components."""
_INFO_PROPERTIES: Final = ("input_name", "output_name", "input_dtype", "layout", "num_classes", "batch", "dynamic_hw")


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One registered model version, as the SBOM describes it; ``info`` is what validation stored."""

    tenant: str
    name: str
    version: int
    sha256: str
    size_bytes: int
    created_at: datetime | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def bom_ref(self) -> str:
        """The component's reference inside the document: unique per tenant, model and version."""
        return f"warden-model:{self.tenant}/{self.name}@{self.version}"


def registered_models(tenants: TenantService, registry: ModelRegistry) -> list[ModelRecord]:
    """Every version of every tenant's models, by tenant, model and version."""
    records: list[ModelRecord] = []
    for tenant in tenants.list_tenants():
        tenant_id = tenants.tenant_id(tenant.name)
        for model in registry.list_models(tenant_id):
            for version in model.versions:
                info = registry.resolve(tenant_id, model.name, version.version).info
                aliases = tuple(sorted(a for a, view in model.aliases.items() if view.version == version.version))
                records.append(
                    ModelRecord(
                        tenant=tenant.name,
                        name=model.name,
                        version=version.version,
                        sha256=version.sha256,
                        size_bytes=version.size_bytes,
                        created_at=version.created_at,
                        info=info,
                        aliases=aliases,
                    )
                )
    return records


def model_component(record: ModelRecord) -> Component:
    """The ``machine-learning-model`` component of one model version."""
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=record.bom_ref,
        name=f"{record.tenant}/{record.name}",
        version=str(record.version),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=record.sha256)],
        properties=[Property(name=PREFIX + key, value=value) for key, value in _properties(record).items()],
    )


def add_models(bom: Bom, records: Iterable[ModelRecord]) -> None:
    """Add a component for each model version, and an edge to it from the application the BOM describes.

    The application serves these models, so its dependency graph includes them.
    """
    components = [model_component(record) for record in records]
    bom.components.update(components)
    for component in components:
        bom.register_dependency(component)
    root = bom.metadata.component
    if root is not None and components:
        bom.register_dependency(root, components)


def _properties(record: ModelRecord) -> dict[str, str]:
    info = record.info
    values: dict[str, str] = {
        "tenant": record.tenant,
        "model": record.name,
        "format": "onnx",
        "size_bytes": str(record.size_bytes),
    }
    if record.created_at is not None:
        values["created_at"] = record.created_at.isoformat()
    if record.aliases:
        values["aliases"] = ",".join(record.aliases)
    for key in _INFO_PROPERTIES:
        if info.get(key) is not None:
            values[key] = _text(info[key])
    hw = info.get("input_hw")
    if isinstance(hw, list | tuple) and len(hw) == 2:
        values["input_hw"] = f"{hw[0]}x{hw[1]}"
    names = info.get("names")
    if isinstance(names, list | tuple):
        values["class_names_count"] = str(len(names))
    return values


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)
