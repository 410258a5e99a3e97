"""The simple detect API through the ASGI app: answers, headers, and every error code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import World
from warden.detection import DetectionModel
from warden.samples import SAMPLE_IMAGE

PHOTO = Path(__file__).parents[1] / "detection" / "data" / "astronaut.png"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_when_a_raw_image_is_posted_then_the_answer_equals_the_library(
    world: World, fall_model: DetectionModel
) -> None:
    answer = world.client.post(
        "/v1/models/fall/detect?conf=0.05",
        content=PHOTO.read_bytes(),
        headers={**bearer(world.alpha_detect), "Content-Type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = fall_model.detect(PHOTO.read_bytes(), conf=0.05)
    assert body == {
        "model": "fall",
        "model_version": 1,
        "width": 512,
        "height": 512,
        "detections": json.loads(json.dumps(expected.to_dicts())),
    }
    assert len(body["detections"]) > 2
    assert answer.headers["X-Model-Version"] == "1"
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", "image/whatever"])
def test_when_the_image_comes_raw_or_multipart_then_the_answers_agree(world: World, content_type: str) -> None:
    data = SAMPLE_IMAGE.read_bytes()
    raw = world.client.post(
        "/v1/models/fall/detect", content=data, headers={**bearer(world.alpha_detect), "Content-Type": content_type}
    )
    multipart = world.client.post(
        "/v1/models/fall/detect",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        data={"note": "ignored"},
        headers={"X-API-Key": world.alpha_detect},
    )
    assert raw.status_code == multipart.status_code == 200
    assert raw.json() == multipart.json()


def test_when_thresholds_are_given_then_they_apply(world: World) -> None:
    data = PHOTO.read_bytes()
    headers = {**bearer(world.alpha_detect), "Content-Type": "image/png"}
    low = world.client.post("/v1/models/fall/detect?conf=0.05", content=data, headers=headers).json()
    capped = world.client.post("/v1/models/fall/detect?conf=0.05&max_det=2", content=data, headers=headers).json()
    high = world.client.post("/v1/models/fall/detect?conf=0.5", content=data, headers=headers).json()
    assert capped["detections"] == low["detections"][:2]
    assert all(d["score"] > 0.5 for d in high["detections"])
    assert len(high["detections"]) < len(low["detections"])


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("client-id-1", True), ("abc.DEF_9:x-y", True), ("has space", False), ("x" * 200, False), ("", False)],
)
def test_when_a_request_id_is_sent_then_a_sane_one_is_echoed(world: World, sent: str, echoed: bool) -> None:
    answer = world.client.get("/v1/models", headers={**bearer(world.alpha_detect), "X-Request-ID": sent})
    assert (answer.headers["X-Request-ID"] == sent) is echoed
    assert len(answer.headers["X-Request-ID"]) > 0


def test_every_answer_has_a_request_id_even_errors(world: World) -> None:
    assert world.client.get("/v1/models").headers["X-Request-ID"]
    assert world.client.get("/no/such/route").headers["X-Request-ID"]


def test_when_models_are_listed_then_only_the_callers_appear(world: World) -> None:
    alpha = world.client.get("/v1/models", headers=bearer(world.alpha_detect)).json()
    beta = world.client.get("/v1/models", headers=bearer(world.beta_detect)).json()
    assert [m["name"] for m in alpha["models"]] == ["fall", "tiny"]
    assert [m["name"] for m in beta["models"]] == ["beta-only", "tiny"]
    assert alpha["models"][0] == {"name": "fall", "versions": [1], "aliases": {}}


def error_of(answer: object) -> tuple[int, str]:
    status = answer.status_code  # type: ignore[attr-defined]
    return status, answer.json()["error"]["code"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        pytest.param({"Content-Type": "text/plain"}, b"hello", 415, "unsupported_media_type", id="text body"),
        pytest.param({}, b"hello", 415, "unsupported_media_type", id="no content type"),
        pytest.param({"Content-Type": "image/png"}, b"", 400, "invalid_image", id="empty image"),
        pytest.param({"Content-Type": "image/png"}, b"not an image", 400, "invalid_image", id="not an image"),
        pytest.param({"Content-Type": "multipart/form-data"}, b"x", 400, "invalid_argument", id="no boundary"),
        pytest.param(
            {"Content-Type": "multipart/form-data; boundary=zz"},
            b'--zz\r\nContent-Disposition: form-data; name="other"\r\n\r\nabc\r\n--zz--\r\n',
            400,
            "invalid_argument",
            id="no image field",
        ),
    ],
)
def test_when_the_body_is_wrong_then_the_error_code_says_why(
    world: World, headers: dict[str, str], body: bytes, status: int, code: str
) -> None:
    answer = world.client.post(
        "/v1/models/tiny/detect", content=body, headers={**bearer(world.alpha_detect), **headers}
    )
    assert error_of(answer) == (status, code)
    assert answer.headers["X-Error-Code"] == code


@pytest.mark.parametrize("query", ["conf=1.5", "iou=-0.1", "max_det=0", "conf=abc"])
def test_when_a_query_parameter_is_out_of_range_then_invalid_argument(world: World, query: str) -> None:
    answer = world.client.post(
        f"/v1/models/tiny/detect?{query}",
        content=SAMPLE_IMAGE.read_bytes(),
        headers={**bearer(world.alpha_detect), "Content-Type": "image/jpeg"},
    )
    assert error_of(answer) == (400, "invalid_argument")


def test_when_the_image_is_too_large_then_413_before_decoding(world: World) -> None:
    limit = world.client.app.state.engine.limits.max_bytes  # type: ignore[attr-defined]
    too_big = b"\xff\xd8\xff" + b"\x00" * limit
    answer = world.client.post(
        "/v1/models/tiny/detect", content=too_big, headers={**bearer(world.alpha_detect), "Content-Type": "image/jpeg"}
    )
    assert error_of(answer) == (413, "payload_too_large")
    multipart = world.client.post(
        "/v1/models/tiny/detect", files={"image": ("x.jpg", too_big, "image/jpeg")}, headers=bearer(world.alpha_detect)
    )
    assert error_of(multipart) == (413, "payload_too_large")


def test_a_detect_answer_says_where_its_time_went(world: World) -> None:
    answer = world.client.post(
        "/v1/models/tiny/detect",
        content=SAMPLE_IMAGE.read_bytes(),
        headers={**bearer(world.alpha_detect), "Content-Type": "image/jpeg"},
    )
    stages = dict(part.strip().split(";dur=") for part in answer.headers["Server-Timing"].split(","))
    assert list(stages) == ["queue", "decode", "preprocess", "inference", "audit", "total"]
    durations = {name: float(ms) for name, ms in stages.items()}
    assert durations["decode"] > 0
    assert durations["preprocess"] > 0  # letterboxing is its own stage, not unaccounted overhead
    assert durations["inference"] > 0
    assert durations["audit"] > 0  # the answer waited for its record's commit
    assert durations["total"] >= durations["decode"] + durations["inference"] + durations["audit"]
    listing = world.client.get("/v1/models", headers=bearer(world.alpha_detect))
    assert listing.headers["Server-Timing"].startswith("audit;dur=")
    assert listing.headers["Server-Timing"].split(", ")[-1].startswith("total;dur=")
