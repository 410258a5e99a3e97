"""The Open Inference Protocol, driven by Triton's own HTTP client against a real server.

JSON and binary tensor modes, detection inputs (``image``) and Triton-style
pass-through (``images``), parameters, and the protocol's error shape.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.api.conftest import World
from tests.api.server import running_server
from warden.detection import DetectionModel, decode_image

DATA = Path(__file__).parents[1] / "detection" / "data"
PHOTOS = [DATA / "astronaut.png", DATA / "camera.png", DATA / "chelsea.png"]


@pytest.fixture(scope="module")
def base_url(world: World) -> Iterator[str]:
    with running_server(world.client.app) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=base_url.removeprefix("http://"), network_timeout=60)
    yield connection
    connection.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def image_input(files: list[Path], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(files)], "BYTES")
    if binary:
        tensor.set_data_from_numpy(np.array([f.read_bytes() for f in files], dtype=object), binary_data=True)
    else:
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        tensor.set_data_from_numpy(np.array(encoded, dtype=object), binary_data=False)
    return tensor


def test_health_and_server_metadata_need_no_credential(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "warden"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(world: World, client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("fall", headers=auth(world.alpha_detect))
    assert metadata["name"] == "fall"
    assert metadata["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"image": "BYTES", "images": "FP32"}
    assert [o["name"] for o in metadata["outputs"]] == ["num_detections", "boxes", "scores", "class_ids", "output0"]
    assert metadata["parameters"]["class_names"] == ["Normal", "Fall"]
    assert client.is_model_ready("fall", headers=auth(world.alpha_detect))
    assert client.is_model_ready("fall", model_version="1", headers=auth(world.alpha_detect))
    assert not client.is_model_ready("fall", headers=auth(world.beta_detect))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_images_give_the_librarys_detections_padded_to_the_largest_count(
    world: World, client: triton.InferenceServerClient, fall_model: DetectionModel, binary: bool
) -> None:
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary)
        for name in ("num_detections", "boxes", "scores", "class_ids")
    ]
    result = client.infer(
        "fall",
        [image_input(PHOTOS, binary=binary)],
        outputs=outputs,
        parameters={"conf": 0.05},
        headers=auth(world.alpha_detect),
    )
    expected = [fall_model.detect(p.read_bytes(), conf=0.05) for p in PHOTOS]
    counts = result.as_numpy("num_detections")
    assert counts.tolist() == [len(e) for e in expected]
    width = max(counts)
    boxes, scores, class_ids = result.as_numpy("boxes"), result.as_numpy("scores"), result.as_numpy("class_ids")
    assert boxes.shape == (3, width, 4)
    assert scores.shape == class_ids.shape == (3, width)
    for index, found in enumerate(expected):
        n = len(found)
        np.testing.assert_allclose(boxes[index, :n], found.boxes, atol=1e-3)
        np.testing.assert_allclose(scores[index, :n], found.scores, atol=1e-6)
        assert class_ids[index, :n].tolist() == found.class_ids.tolist()
        assert not boxes[index, n:].any()
    assert result.get_response()["model_version"] == "1"


def test_when_outputs_are_not_listed_then_all_detection_outputs_come(
    world: World, client: triton.InferenceServerClient
) -> None:
    result = client.infer("fall", [image_input(PHOTOS[:1], binary=True)], headers=auth(world.alpha_detect))
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["num_detections", "boxes", "scores", "class_ids"]
    assert result.as_numpy("num_detections").tolist() == [2]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_triton_style_client_sending_images_gets_the_raw_output(
    world: World, client: triton.InferenceServerClient, fall_model: DetectionModel, binary: bool
) -> None:
    tensor = fall_model.prepare([decode_image(PHOTOS[0].read_bytes())]).tensor
    images = triton.InferInput("images", list(tensor.shape), "FP32")
    images.set_data_from_numpy(tensor, binary_data=binary)
    result = client.infer(
        "fall",
        [images],
        outputs=[triton.InferRequestedOutput("output0", binary_data=binary)],
        headers=auth(world.alpha_detect),
    )
    raw = result.as_numpy("output0")
    assert raw.shape == (1, 6, 8400)
    np.testing.assert_allclose(raw, fall_model.infer(tensor), atol=1e-4)


def test_when_the_model_is_another_tenants_then_404_exactly_like_a_missing_one(
    world: World, client: triton.InferenceServerClient
) -> None:
    messages = []
    for name in ("beta-only", "never-existed"):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, [image_input(PHOTOS[:1], binary=True)], headers=auth(world.alpha_detect))
        assert caught.value.status() == "404"
        messages.append(caught.value.message().replace(name, "NAME"))
    assert messages[0] == messages[1]


def test_when_no_credential_is_sent_then_401(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("fall", [image_input(PHOTOS[:1], binary=True)])
    assert caught.value.status() == "401"


HI = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}


def request_body(*inputs: dict[str, object], **extra: object) -> bytes:
    return json.dumps({**extra, "inputs": list(inputs)}).encode()


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        pytest.param(request_body(), {}, "inputs", id="no inputs"),
        pytest.param(b"{not json", {}, "invalid inference request", id="not json"),
        pytest.param(request_body({**HI, "data": ["***"]}), {}, "base64", id="bad base64"),
        pytest.param(request_body({**HI, "name": "nope"}), {}, "unknown input", id="unknown input"),
        pytest.param(
            request_body({"name": "images", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.0] * 12}),
            {},
            "must have shape",
            id="wrong raw shape",
        ),
        pytest.param(request_body({**HI, "shape": [2]}), {}, "values for shape", id="count"),
        pytest.param(request_body(HI, outputs=[{"name": "x"}]), {}, "unknown output", id="unknown output"),
        pytest.param(request_body(HI, parameters={"conf": 2}), {}, "conf", id="conf out of range"),
        pytest.param(
            request_body({**HI, "data": None, "parameters": {"binary_data_size": 10}}),
            {"Inference-Header-Content-Length": "999"},
            "does not fit",
            id="header length",
        ),
    ],
)
def test_protocol_errors_are_400_with_the_oip_error_shape(
    world: World, base_url: str, body: bytes, headers: dict[str, str], needle: str
) -> None:
    answer = httpx.post(
        f"{base_url}/v2/models/fall/infer", content=body, headers={**auth(world.alpha_detect), **headers}
    )
    assert answer.status_code == 400, answer.text
    assert list(answer.json()) == ["error"]
    assert needle in answer.json()["error"]


def test_when_an_image_element_is_not_an_image_then_invalid_image(world: World, base_url: str) -> None:
    body = b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]}'
    answer = httpx.post(f"{base_url}/v2/models/fall/infer", content=body, headers=auth(world.alpha_detect))
    assert answer.status_code == 400
    assert answer.headers["X-Error-Code"] == "invalid_image"
