"""The hostile-model corpus through the real registry push, and once through the HTTP API beside a real tenant.

Each model is refused at upload with a stable code and a message that says why;
nothing is stored; and after each, a legitimate tenant's detections on the real
fall model are exactly what they were.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.registry import hostile
from warden.api import create_app
from warden.detection import ImageLimits
from warden.errors import InvalidModel, UnsupportedModel, WardenError
from warden.services import Services, open_services
from warden.serving.admission import Admission
from warden.serving.engine import DetectionEngine, EngineOptions
from warden.settings import Settings
from warden.tenancy import Scope

PHOTO = Path(__file__).parents[1] / "detection" / "data" / "astronaut.png"


@dataclass(frozen=True)
class Hostile:
    """One corpus entry: how to build it, what refuses it, and words its message must hold."""

    build: Callable[[], bytes]
    error: type[WardenError]
    message: str


CORPUS: dict[str, Hostile] = {
    "function default reads the secret": Hostile(hostile.leak_model, InvalidModel, "refers to external data"),
    "function default reads the database": Hostile(
        lambda: hostile.leak_model("warden-data/warden.db"), InvalidModel, "attribute_proto[0].t refers to external"
    ),
    "initializer reads /etc/passwd": Hostile(
        lambda: hostile.plant_external("main", (), "initializer", "/etc/passwd"), InvalidModel, "external data"
    ),
    "training info initializer": Hostile(
        lambda: hostile.plant_external("training_initialization", (), "initializer", hostile.KEY_FILE),
        InvalidModel,
        "training_info[0].initialization.initializer[0] refers to external data",
    ),
    "sparse tensors attribute in a Loop in an If": Hostile(
        lambda: hostile.plant_external("main", ("if_else", "loop"), "attr_sparse_tensors", "*/_ORT_MEM_ADDR_/*"),
        InvalidModel,
        "refers to external data",
    ),
    "unknown ModelProto field": Hostile(
        lambda: hostile.with_unknown_field(hostile.serialise(hostile.detection_model())),
        InvalidModel,
        "field(s) [99] that ONNX does not define",
    ),
    "unknown TensorProto field": Hostile(
        hostile.unknown_field_in_tensor, InvalidModel, "onnx.TensorProto at graph.initializer[0] carries field(s) [77]"
    ),
    "contrib operator": Hostile(hostile.custom_op, InvalidModel, "custom operators are not accepted"),
    "custom domain": Hostile(
        lambda: hostile.custom_op("org.evil", "ReadFile"), InvalidModel, "'ReadFile' in domain 'org.evil'"
    ),
    "function calling itself": Hostile(lambda: hostile.recursive_functions(1), InvalidModel, "F0 -> local.warden"),
    "functions calling in a circle": Hostile(
        lambda: hostile.recursive_functions(3), InvalidModel, "recursive functions are not accepted"
    ),
    "functions expanding to 14 million nodes": Hostile(
        hostile.exploding_functions, InvalidModel, "expands to more than 100000 nodes"
    ),
    "input of 100000 x 100000": Hostile(hostile.huge_input, UnsupportedModel, "input side 100000 is larger than 8192"),
    "fixed batch of 100000": Hostile(
        lambda: hostile.huge_input((100_000, 3, 64, 64)), UnsupportedModel, "fixed batch is 100000"
    ),
    "input of 8192 x 8192 with a batch of 64": Hostile(
        lambda: hostile.huge_input((64, 3, 8192, 8192)), UnsupportedModel, "more than the memory limit"
    ),
    "subgraphs 1000 deep": Hostile(hostile.deep_subgraphs, InvalidModel, "nests messages deeper than 100"),
    "metadata value of 2 MB": Hostile(hostile.big_metadata, InvalidModel, "metadata 'blob0' is too long"),
    "5000 metadata entries": Hostile(lambda: hostile.big_metadata(10, 5000), InvalidModel, "5004 metadata entries"),
    "4.5 MB of metadata": Hostile(
        lambda: hostile.big_metadata(900_000, 5), InvalidModel, "metadata holds 4500095 characters"
    ),
    "1 MB class name": Hostile(
        lambda: hostile.class_names(["cat", "d" * 1_000_000, "bird"]), InvalidModel, "metadata 'names' is too long"
    ),
    "500 kB class name": Hostile(
        lambda: hostile.class_names(["cat", "d" * 500_000, "bird"]), InvalidModel, "class 1's name is 500000"
    ),
    "20000 class names": Hostile(
        lambda: hostile.class_names([f"c{i}" for i in range(20_000)]), InvalidModel, "20000 class names"
    ),
    "64 GiB ConstantOfShape from a constant": Hostile(
        lambda: hostile.memory_bomb("constant"), InvalidModel, "asked for more memory than the session's limit"
    ),
    "64 GiB ConstantOfShape from the input's shape": Hostile(
        lambda: hostile.memory_bomb("input"), InvalidModel, "asked for more memory than the session's limit"
    ),
    "64 GiB Expand of the input": Hostile(
        lambda: hostile.memory_bomb("expand"), InvalidModel, "asked for more memory than the session's limit"
    ),
    "64 GiB Tile of the input": Hostile(lambda: hostile.memory_bomb("tile"), InvalidModel, "Tile output tensor"),
    "8 GiB sparse initializer": Hostile(hostile.sparse_bomb, InvalidModel, "sparse tensors take more than"),
    "function shadowing the contrib com.microsoft.Gelu": Hostile(
        hostile.shadowed_contrib, InvalidModel, "in domain 'com.microsoft', which ONNX or ONNX Runtime defines"
    ),
    "function shadowing the ONNX Relu": Hostile(
        lambda: hostile.shadowed_contrib("", "Relu"), InvalidModel, "local function Relu is in domain ''"
    ),
    "function in a domain below com.microsoft": Hostile(
        lambda: hostile.shadowed_contrib("com.microsoft.future", "Anything"), InvalidModel, "give local functions"
    ),
    "graph attribute referenced in a function, nested 8 deep": Hostile(
        hostile.graph_attribute_blowup, InvalidModel, "refers to a function attribute of type GRAPH"
    ),
    "function bodies copying 512 KiB 4**7 times": Hostile(
        hostile.copied_function_bodies, InvalidModel, "copies more than 67108864 bytes once inlined"
    ),
    "STRING initializer declaring 2**26 strings, carrying one": Hostile(
        hostile.overpromising_tensor, InvalidModel, "graph.initializer[3] declares 67108864 strings"
    ),
    "STRING Constant declaring 2**26 strings": Hostile(
        lambda: hostile.overpromising_tensor("constant"), InvalidModel, "attribute[0].t declares 67108864 strings"
    ),
    "function default declaring 2**26 strings": Hostile(
        lambda: hostile.overpromising_tensor("default"), InvalidModel, "attribute_proto[0].t declares 67108864"
    ),
    "float initializer declaring 256 MiB, carrying 4 bytes": Hostile(
        lambda: hostile.overpromising_tensor("float"), InvalidModel, "(268435456 bytes) but carries 4"
    ),
    "six million empty Dimension messages": Hostile(
        hostile.empty_dimensions, InvalidModel, "more than 1000000 protobuf messages"
    ),
    "Reshape that fails at run time": Hostile(
        hostile.impossible_reshape, InvalidModel, "ONNX Runtime failed running the model"
    ),
    "64 GiB on a white image, nothing on a blank one": Hostile(
        hostile.brightness_bomb, InvalidModel, "asked for more memory than the session's limit"
    ),
}

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}|object at|<[\w.]+ object|Traceback|\.cc:\d+|onnxruntime::")


@pytest.fixture
def canaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Work in a fresh directory holding the files the corpus names, each full of one detection's bytes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "warden-data").mkdir()
    secret = hostile.secret_rows()
    for name in ("secret.key", "warden.db"):
        (tmp_path / "warden-data" / name).write_bytes(secret)
    return secret


@pytest.mark.parametrize("case", CORPUS.values(), ids=CORPUS.keys())
def test_when_a_hostile_model_is_pushed_then_it_is_refused_with_its_code_and_nothing_is_stored(
    services: Services, canaries: bytes, case: Hostile
) -> None:
    services.tenants.create_tenant("mallory")
    with pytest.raises(case.error) as caught:
        services.registry.push(services.tenants.tenant_id("mallory"), "m", case.build())
    assert type(caught.value) is case.error
    assert case.message in caught.value.message
    assert not _ADDRESS.search(caught.value.message), caught.value.message
    assert services.registry.blobs.digests() == set()


def test_when_functions_call_functions_without_recursion_then_the_model_is_accepted(services: Services) -> None:
    services.tenants.create_tenant("a")
    pushed = services.registry.push(services.tenants.tenant_id("a"), "nested", hostile.nested_functions())
    resolved = services.registry.resolve(services.tenants.tenant_id("a"), "nested")
    assert resolved.sha256 == pushed.sha256
    assert resolved.info["layout"] == "end_to_end"


@dataclass(frozen=True)
class Server:
    """The in-process app over SQLite, run from a working directory laid out as the README says."""

    client: TestClient
    services: Services
    alice_admin: str
    alice_detect: str
    mallory_admin: str


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fall_model_file: Path) -> Iterator[Server]:
    """``alice`` serves the real fall model; ``mallory`` uploads the corpus. The data directory is
    ``./warden-data``, so the server's own secret is at the relative path the attack names."""
    monkeypatch.chdir(tmp_path)
    services = open_services(Settings(data_dir=Path("warden-data")))
    try:
        for name in ("alice", "mallory"):
            services.tenants.create_tenant(name)
        services.registry.push(services.tenants.tenant_id("alice"), "fall", fall_model_file.read_bytes())
        with TestClient(create_app(services), raise_server_exceptions=True) as client:
            yield Server(
                client=client,
                services=services,
                alice_admin=services.tenants.create_key("alice", Scope.ADMIN).key,
                alice_detect=services.tenants.create_key("alice", Scope.DETECT).key,
                mallory_admin=services.tenants.create_key("mallory", Scope.ADMIN).key,
            )
    finally:
        services.close()


def test_when_the_corpus_is_uploaded_over_http_then_each_is_a_4xx_and_the_other_tenant_is_unaffected(
    server: Server,
) -> None:
    assert (Path("warden-data") / "secret.key").is_file()

    def detect() -> object:
        answer = server.client.post(
            "/v1/models/fall/detect?conf=0.05",
            content=PHOTO.read_bytes(),
            headers={"Authorization": f"Bearer {server.alice_detect}", "Content-Type": "image/png"},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    before = detect()
    assert before["detections"]  # type: ignore[index]
    for name, case in CORPUS.items():
        answer = server.client.post(
            "/admin/tenants/mallory/models/hostile",
            content=case.build(),
            headers={"Authorization": f"Bearer {server.mallory_admin}", "Content-Type": "application/octet-stream"},
        )
        status, code = (400, "invalid_model") if case.error is InvalidModel else (422, "unsupported_model")
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (name, answer.text)
        assert case.message in answer.json()["error"]["message"], name
        assert detect() == before, name
    assert server.services.registry.list_models(server.services.tenants.tenant_id("mallory")) == []


def test_a_model_whose_allocation_follows_the_pixels_passes_upload_and_fails_closed_when_served(
    services: Services,
) -> None:
    """Upload's white image asks for 1 GiB, within the 4 GiB default; served under 128 MiB the white one fails."""
    services.tenants.create_tenant("a")
    pushed = services.registry.push(services.tenants.tenant_id("a"), "bright", hostile.brightness_bomb(gib_at_white=1))
    options = EngineOptions(workers=1, session_memory_limit=128 * 1024**2)
    engine = DetectionEngine(services.registry.blobs, ImageLimits(), Admission.create(services.db, None), options)
    try:
        model, _ = engine._load(pushed.sha256)
        with pytest.raises(InvalidModel, match="asked for more memory than the session's limit allows"):
            model.detect_rgb([np.full((64, 64, 3), 255, dtype=np.uint8)])
        assert len(model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])[0].to_dicts()) == 1
    finally:
        engine.close()


@pytest.mark.parametrize(("limit", "accepted"), [(64 * 1024**2, False), (1024**3, True)])
def test_upload_validation_runs_under_the_configured_session_memory_limit(
    tmp_path: Path, limit: int, accepted: bool
) -> None:
    """WARDEN_SESSION_MEMORY_LIMIT reaches the registry: 256 MiB at run time is refused under 64 MiB only."""
    services = open_services(Settings(data_dir=tmp_path / "data", session_memory_limit=limit))
    try:
        services.tenants.create_tenant("a")
        bomb = hostile.memory_bomb("constant", size=256 * 1024**2)
        if accepted:
            services.registry.push(services.tenants.tenant_id("a"), "m", bomb)
            assert len(services.registry.blobs.digests()) == 1
        else:
            with pytest.raises(InvalidModel, match="more memory than the session's limit"):
                services.registry.push(services.tenants.tenant_id("a"), "m", bomb)
    finally:
        services.close()


def test_the_served_app_runs_sessions_under_the_configured_memory_limit(tmp_path: Path) -> None:
    """WARDEN_SESSION_MEMORY_LIMIT reaches the app's engine: a white image asking for 1 GiB is a 400 there.

    The model is pushed under a 2 GiB limit (under 128 MiB upload's own white image refuses it), then served
    by a server started with 128 MiB.
    """
    pushed = open_services(Settings(data_dir=tmp_path / "data", session_memory_limit=2 * 1024**3))
    try:
        pushed.tenants.create_tenant("a")
        pushed.registry.push(pushed.tenants.tenant_id("a"), "bright", hostile.brightness_bomb(gib_at_white=1))
    finally:
        pushed.close()
    services = open_services(Settings(data_dir=tmp_path / "data", session_memory_limit=128 * 1024**2))
    try:
        with pytest.raises(InvalidModel, match="more memory than the session's limit"):
            services.registry.push(services.tenants.tenant_id("a"), "again", hostile.brightness_bomb(gib_at_white=1))
        key = services.tenants.create_key("a", Scope.DETECT).key
        with TestClient(create_app(services)) as client:

            def detect(value: int) -> tuple[int, str]:
                image = io.BytesIO()
                Image.new("RGB", (64, 64), (value, value, value)).save(image, format="PNG")
                answer = client.post(
                    "/v1/models/bright/detect",
                    content=image.getvalue(),
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"},
                )
                return answer.status_code, answer.json().get("error", {}).get("code", "")

            assert detect(255) == (400, "invalid_model")
            assert detect(0) == (200, "")
    finally:
        services.close()
