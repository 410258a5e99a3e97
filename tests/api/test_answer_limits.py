"""Bounded answers: an end-to-end model with long class names and 10,000 detections cannot make a huge answer.

A detection answer past ``WARDEN_MAX_ANSWER_BYTES`` is refused with 422 ``answer_too_large``
on ``/v1`` and ``/v2`` (JSON and binary outputs alike), and the encoder stops at the limit
instead of building the whole answer first; under the limit the bytes are exactly the JSON
the routes documented before.
"""

from __future__ import annotations

import base64
import json
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.detection.graphs import Box, end_to_end_rows, yolo_graph
from warden.api import create_app
from warden.api.answers import AnswerBudget, detect_answer
from warden.api.schemas import DetectResponse
from warden.detection import Detections
from warden.errors import AnswerTooLarge
from warden.samples import SAMPLE_IMAGE
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

SLOTS = 10_000
NAME_LENGTH = 200
LIMIT = 256 * 1024


def crowded_model() -> bytes:
    """An end-to-end export that finds 10,000 distinct boxes of three classes with 200-character names."""
    boxes = [Box(1 + (i % 100) * 0.6, 1 + (i // 100) * 0.6, 0.5, 0.5, i % 3, 0.9) for i in range(SLOTS)]
    names = {k: chr(ord("a") + k) * NAME_LENGTH for k in range(3)}
    return yolo_graph(end_to_end_rows(boxes, SLOTS), metadata={"names": str(names), "task": "detect"})


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A tenant serving the crowded model under a 256 KiB answer limit."""
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("answers") / "data", max_answer_bytes=LIMIT))
    services.tenants.create_tenant("crowd")
    services.registry.push(services.tenants.tenant_id("crowd"), "many", crowded_model())
    key = services.tenants.create_key("crowd", Scope.DETECT).key
    try:
        with TestClient(create_app(services)) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        services.close()


def detect(client: TestClient, headers: dict[str, str], max_det: int) -> object:
    return client.post(
        f"/v1/models/many/detect?max_det={max_det}&conf=0.5",
        content=SAMPLE_IMAGE.read_bytes(),
        headers={**headers, "Content-Type": "image/jpeg"},
    )


def test_when_the_answer_would_pass_the_limit_then_answer_too_large(crowded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = crowded
    answer = detect(client, headers, 10_000)
    assert answer.status_code == 422, answer.text[:300]  # type: ignore[attr-defined]
    assert answer.json()["error"]["code"] == "answer_too_large"  # type: ignore[attr-defined]
    assert str(LIMIT) in answer.json()["error"]["message"]  # type: ignore[attr-defined]


def test_under_the_limit_the_crowded_model_answers(crowded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = crowded
    answer = detect(client, headers, 50)
    assert answer.status_code == 200  # type: ignore[attr-defined]
    body = DetectResponse.model_validate_json(answer.content)  # type: ignore[attr-defined]
    assert len(body.detections) == 50
    assert {len(d.class_name) for d in body.detections} == {NAME_LENGTH}


@pytest.mark.parametrize("binary", [False, True])
def test_an_oip_answer_past_the_limit_is_refused_in_the_oip_shape(
    crowded: tuple[TestClient, dict[str, str]], binary: bool
) -> None:
    client, headers = crowded
    image = base64.b64encode(SAMPLE_IMAGE.read_bytes()).decode()
    request = {
        "inputs": [{"name": "image", "shape": [4], "datatype": "BYTES", "data": [image] * 4}],
        "parameters": {"max_det": 10_000, "conf": 0.5, "binary_data_output": binary},
    }
    answer = client.post("/v2/models/many/infer", json=request, headers=headers)
    assert answer.status_code == 422, answer.text[:200]
    assert answer.headers["x-error-code"] == "answer_too_large"
    assert set(answer.json()) == {"error"}


def detections(count: int, name_length: int) -> Detections:
    rng = np.random.default_rng(count)
    boxes = rng.uniform(0, 1000, (count, 4)).astype(np.float32)
    return Detections(
        width=1000,
        height=800,
        boxes=boxes,
        scores=rng.uniform(0, 1, count).astype(np.float32),
        class_ids=rng.integers(0, 3, count),
        names=tuple(c * name_length for c in "xyz"),
    )


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(count=st.integers(0, 60), name_length=st.integers(0, 80), limit=st.integers(100, 20_000))
def test_the_encoder_refuses_exactly_the_answers_longer_than_its_limit(
    count: int, name_length: int, limit: int
) -> None:
    found = detections(count, name_length)
    expected = DetectResponse.model_validate(
        {"model": "m", "model_version": 3, "width": 1000, "height": 800, "detections": found.to_dicts()}
    ).model_dump(mode="json")
    full = json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    if len(full) > limit:
        with pytest.raises(AnswerTooLarge):
            detect_answer("m", 3, found, AnswerBudget(limit))
    else:
        assert detect_answer("m", 3, found, AnswerBudget(limit)) == full


def test_the_encoder_stops_at_the_limit_instead_of_building_the_whole_answer() -> None:
    found = detections(SLOTS, 500)  # about 5.9 MB of JSON
    tracemalloc.start()
    try:
        with pytest.raises(AnswerTooLarge):
            detect_answer("m", 1, found, AnswerBudget(64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024  # the whole answer would be ten times that
