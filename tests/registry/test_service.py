"""The model registry on SQLite and PostgreSQL: validation, versions, aliases, dedupe, isolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.errors import InvalidArgument, InvalidModel, ModelNotFound, PayloadTooLarge, UnsupportedModel
from warden.registry import ModelRegistry, parse_reference
from warden.services import Services

NAMES = "{0: 'cat', 1: 'dog', 2: 'bird'}"


def graph(score: float = 0.9) -> bytes:
    """A small valid detection model; different scores give different bytes."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, metadata={"names": NAMES, "task": "detect"})


@pytest.fixture
def tenants(services: Services) -> tuple[int, int]:
    """Two tenants, ``a`` and ``b``; their row ids."""
    for name in ("a", "b"):
        services.tenants.create_tenant(name)
    return services.tenants.tenant_id("a"), services.tenants.tenant_id("b")


def test_when_a_model_is_pushed_then_versions_count_up_and_the_newest_serves(
    services: Services, tenants: tuple[int, int]
) -> None:
    a, _ = tenants
    first = services.registry.push(a, "pets", graph(0.9))
    second = services.registry.push(a, "pets", graph(0.8))
    assert (first.version, second.version) == (1, 2)
    assert first.sha256 != second.sha256
    resolved = services.registry.resolve(a, "pets")
    assert (resolved.version, resolved.sha256) == (2, second.sha256)
    assert resolved.info["layout"] == "anchor_free"
    assert resolved.info["names"] == ["cat", "dog", "bird"]
    assert services.registry.resolve(a, "pets", version=1).sha256 == first.sha256


def test_when_the_same_bytes_are_pushed_by_two_tenants_then_one_blob_is_stored(
    services: Services, tenants: tuple[int, int]
) -> None:
    a, b = tenants
    data = graph()
    pa = services.registry.push(a, "m", data)
    pb = services.registry.push(b, "other-name", data)
    assert pa.sha256 == pb.sha256
    assert services.registry.blobs.digests() == {pa.sha256}
    assert services.registry.blobs.read(pa.sha256) == data


def test_when_a_model_belongs_to_another_tenant_then_it_is_exactly_like_a_missing_one(
    services: Services, tenants: tuple[int, int]
) -> None:
    a, b = tenants
    services.registry.push(a, "secret-model", graph())
    errors = []
    for name in ("secret-model", "never-existed"):
        with pytest.raises(ModelNotFound) as caught:
            services.registry.resolve(b, name)
        errors.append(str(caught.value).replace(name, "NAME"))
    assert errors[0] == errors[1]
    assert services.registry.list_models(b) == []
    with pytest.raises(ModelNotFound):
        services.registry.remove(b, "secret-model")
    assert services.registry.resolve(a, "secret-model").version == 1


def test_when_stable_is_set_then_it_serves_instead_of_the_newest(services: Services, tenants: tuple[int, int]) -> None:
    a, _ = tenants
    services.registry.push(a, "m", graph(0.9), alias="stable")
    services.registry.push(a, "m", graph(0.8))
    assert services.registry.resolve(a, "m").version == 1
    services.registry.set_alias(a, "m", "stable", 2)
    assert services.registry.resolve(a, "m").version == 2
    view = services.registry.get_model(a, "m")
    assert view.aliases["stable"].version == 2
    assert [v.version for v in view.versions] == [1, 2]


def test_when_a_canary_has_a_weight_then_that_share_of_requests_reaches_it(services: Services) -> None:
    services.tenants.create_tenant("a")
    a = services.tenants.tenant_id("a")
    rolls = iter([0.05, 0.24, 0.25, 0.99])
    registry = ModelRegistry(services.db, services.registry.blobs, 10**9, roll=lambda: next(rolls))
    registry.push(a, "m", graph(0.9), alias="stable")
    registry.push(a, "m", graph(0.8), alias="canary", canary_weight=25)
    assert [registry.resolve(a, "m").version for _ in range(4)] == [2, 2, 1, 1]


@pytest.mark.parametrize(
    ("alias", "weight", "message"),
    [
        ("beta", None, "alias must be one of"),
        ("canary", None, "needs a canary weight"),
        ("canary", 101, "0-100"),
        ("stable", 10, "needs --alias canary"),
    ],
)
def test_when_an_alias_request_is_invalid_then_it_is_refused_and_nothing_is_stored(
    services: Services, tenants: tuple[int, int], alias: str, weight: int | None, message: str
) -> None:
    a, _ = tenants
    with pytest.raises(InvalidArgument, match=message):
        services.registry.push(a, "m", graph(), alias=alias, canary_weight=weight)
    assert services.registry.list_models(a) == []


def test_when_versions_and_models_are_removed_then_unreferenced_blobs_go(
    services: Services, tenants: tuple[int, int]
) -> None:
    a, b = tenants
    shared, own = graph(0.9), graph(0.8)
    services.registry.push(a, "m", shared)
    second = services.registry.push(a, "m", own)
    services.registry.push(b, "m", shared)
    services.registry.remove(a, "m", 2)
    assert second.sha256 not in services.registry.blobs.digests()
    services.registry.remove(a, "m")
    assert len(services.registry.blobs.digests()) == 1  # still used by tenant b
    with pytest.raises(ModelNotFound):
        services.registry.resolve(a, "m")
    services.registry.remove(b, "m", 1)
    assert services.registry.blobs.digests() == set()
    assert services.registry.list_models(b) == []


def external_data_model() -> bytes:
    proto = onnx.load_from_string(graph())
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    return proto.SerializeToString()


def segmentation_model() -> bytes:
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 3, 84)
    return yolo_graph(rows, metadata={"names": NAMES, "task": "segment"})


def unknown_layout_model() -> bytes:
    return yolo_graph(np.zeros((3, 3), dtype=np.float32))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(b"", InvalidModel, "empty", id="empty"),
        pytest.param(b"\x08\x07garbage\xff\xff", InvalidModel, "not an ONNX model", id="not protobuf"),
        pytest.param(external_data_model(), InvalidModel, "external data", id="external data"),
        pytest.param(segmentation_model(), UnsupportedModel, "segmentation", id="segmentation"),
        pytest.param(unknown_layout_model(), UnsupportedModel, "no known layout", id="unknown layout"),
    ],
)
def test_when_an_upload_is_not_a_usable_detection_model_then_it_is_refused(
    services: Services, tenants: tuple[int, int], data: bytes, error: type[Exception], message: str
) -> None:
    a, _ = tenants
    with pytest.raises(error, match=message):
        services.registry.push(a, "m", data)
    assert services.registry.blobs.digests() == set()


def test_when_an_upload_is_over_the_size_limit_then_payload_too_large(services: Services) -> None:
    services.tenants.create_tenant("a")
    small = ModelRegistry(services.db, services.registry.blobs, max_model_bytes=100)
    with pytest.raises(PayloadTooLarge):
        small.push(services.tenants.tenant_id("a"), "m", graph())


def test_when_the_real_model_is_pushed_then_it_validates(services: Services, fall_model_file: Path) -> None:
    services.tenants.create_tenant("a")
    pushed = services.registry.push(services.tenants.tenant_id("a"), "fall", fall_model_file.read_bytes())
    assert pushed.sha256 == "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("m", ("m", None)), ("m:3", ("m", 3)), ("m:", ("m", None))],
)
def test_parse_reference(reference: str, expected: tuple[str, int | None]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize("reference", ["m:0", "m:x", "m:-1"])
def test_parse_reference_refuses_bad_versions(reference: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_reference(reference)
