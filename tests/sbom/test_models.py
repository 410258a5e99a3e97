"""Registered models as machine-learning-model components: one per version, with the blob's sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from tests.sbom.distributions import distribution
from warden.detection import DetectionModel
from warden.sbom import add_models, environment_bom, registered_models, serialize
from warden.services import Services


def pets(score: float) -> bytes:
    """A tiny valid three-class detection model; the score makes the bytes differ."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, metadata={"names": "{0: 'cat', 1: 'dog', 2: 'bird'}"})


def properties(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"].removeprefix("warden:model:"): p["value"] for p in component.get("properties", [])}


def test_every_version_of_every_tenants_model_is_a_component_with_the_blobs_sha256(
    services: Services, fall_model_file: Path, fall_model: DetectionModel, tmp_path: Path
) -> None:
    fall_bytes = fall_model_file.read_bytes()
    acme = services.tenants.tenant_id(services.tenants.create_tenant("acme").name)
    beta = services.tenants.tenant_id(services.tenants.create_tenant("beta").name)
    services.registry.push(acme, "falls", fall_bytes, alias="stable")
    services.registry.push(beta, "pets", pets(0.5))
    services.registry.push(beta, "pets", pets(0.7), alias="stable")
    records = registered_models(services.tenants, services.registry)
    bom = environment_bom([distribution(tmp_path, "warden", "0.1.0")], root_version="0.1.0")
    add_models(bom, records)

    text = serialize(bom)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    models = {(c["name"], c["version"]): c for c in document["components"]}
    assert set(models) == {("acme/falls", "1"), ("beta/pets", "1"), ("beta/pets", "2")}
    falls = models["acme/falls", "1"]
    digest = hashlib.sha256(fall_bytes).hexdigest()
    assert falls["type"] == "machine-learning-model"
    assert falls["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert hashlib.sha256(services.registry.blobs.read(digest)).hexdigest() == digest
    height, width = fall_model.info.input_hw
    assert properties(falls) == {
        "tenant": "acme",
        "model": "falls",
        "format": "onnx",
        "size_bytes": str(len(fall_bytes)),
        "created_at": properties(falls)["created_at"],
        "aliases": "stable",
        "input_name": fall_model.info.input_name,
        "output_name": fall_model.info.output_name,
        "input_dtype": properties(falls)["input_dtype"],
        "layout": fall_model.info.layout.value,
        "num_classes": str(fall_model.info.num_classes),
        "dynamic_hw": "true" if fall_model.info.dynamic_hw else "false",
        **({"batch": str(fall_model.info.batch)} if fall_model.info.batch is not None else {}),
        "input_hw": f"{height}x{width}",
        "class_names_count": str(len(fall_model.info.names)),
    }
    assert properties(models["beta/pets", "1"])["class_names_count"] == "3"
    assert "aliases" not in properties(models["beta/pets", "1"])
    assert properties(models["beta/pets", "2"])["aliases"] == "stable"
    root = document["metadata"]["component"]["bom-ref"]
    served = next(d["dependsOn"] for d in document["dependencies"] if d["ref"] == root)
    assert sorted(served) == sorted(c["bom-ref"] for c in models.values())


def test_without_tenants_there_are_no_model_records(services: Services) -> None:
    assert registered_models(services.tenants, services.registry) == []
