"""Structured logs: one access line per request, and never a key, a token or an image byte in any line.

Secrets are fed through real requests (successful, refused, failing, and one whose
handler raises) with every log record of the process captured as the server
writes them (``configure_logging`` to a buffer), in both formats.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from tests.observability.conftest import PHOTO, Observed, secret_of
from warden.observability import configure_logging
from warden.observability.logs import mask_secrets, safe_exception

UVICORN = ("uvicorn", "uvicorn.error")
TEST_CLIENTS = ("httpx", "httpx2", "httpcore")
ACCESS_FIELDS = {
    *("time", "level", "logger", "event", "request_id", "method", "route", "status", "code", "duration_ms"),
    *("tenant", "operator", "model", "model_version"),
    *("queue_ms", "decode_ms", "preprocess_ms", "inference_ms", "audit_ms"),
    *("exception", "frames"),
}


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every log record of the process, rendered as ``warden serve`` renders it, into a buffer."""
    root = logging.getLogger()
    saved_level = root.level
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in UVICORN}
    quiet = {name: logging.getLogger(name).level for name in TEST_CLIENTS}
    buffer = io.StringIO()
    handler = configure_logging(getattr(request, "param", "json"), "debug", buffer)
    for name in TEST_CLIENTS:  # the tests' own HTTP client logs the URLs it calls; no server runs it
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
        structlog.reset_defaults()


def jwt_shaped() -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'sub': 'someone', 'tenant': 'alpha'})}.{signature}"


@pytest.mark.parametrize("captured", ["json", "console"], indirect=True)
def test_no_log_line_holds_a_key_a_token_or_image_data(
    observed: Observed, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, jwt, marker = observed.alpha, jwt_shaped(), secrets.token_hex(16)
    key_id, key_secret = secret_of(key)
    wrong_secret = secrets.token_urlsafe(32)[:43]
    wrong_key = f"wdn_{key_id}_{wrong_secret}"
    image = PHOTO.read_bytes() + marker.encode()  # decoders stop at the image's end: still a valid PNG
    client = observed.client
    sent: dict[str, int] = {}

    def send(method: str, url: str, expected: int, **kwargs: Any) -> None:
        request_id = uuid.uuid4().hex
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
        answer = client.request(method, url, headers=headers, **kwargs)
        assert answer.status_code == expected, (url, answer.text)
        sent[request_id] = expected

    bearer = {"Authorization": f"Bearer {key}"}
    png = {"Content-Type": "image/png"}
    send("POST", "/v1/models/fall/detect", 200, content=image, headers={**bearer, **png})
    send("POST", "/v1/models/fall/detect", 200, files={"image": ("x.png", image, "image/png")}, headers=bearer)
    infer = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]
    }
    send("POST", "/v2/models/fall/infer", 200, json=infer, headers={"X-API-Key": key})
    send("POST", "/v1/models/fall/detect", 400, content=marker.encode() * 8, headers={**bearer, **png})
    send("POST", "/v1/models/fall/detect", 401, content=image, headers={"Authorization": f"Bearer {jwt}", **png})
    send("POST", "/v1/models/fall/detect", 401, content=image, headers={"X-API-Key": jwt, **png})
    send("POST", "/v1/models/fall/detect", 401, content=image, headers={"Authorization": f"Bearer {wrong_key}", **png})
    send("GET", f"/v1/models?token={jwt}&key={key}", 200, headers=bearer)
    send("POST", f"/v1/models/{key}/detect?m={marker}", 404, content=image, headers={**bearer, **png})
    send("GET", f"/metrics?key={key}", 401, headers={"Authorization": f"Basic {key}"})

    async def fails(*_: object, **__: object) -> object:
        raise RuntimeError(f"boom {marker} {key} {jwt}")

    monkeypatch.setattr(observed.engine, "detect", fails)
    failing = TestClient(observed.app, raise_server_exceptions=True)  # no lifespan: the same engine
    failed_id = uuid.uuid4().hex
    answer = failing.post("/v1/models/fall/detect", content=image, headers={**bearer, **png, "X-Request-ID": failed_id})
    # The app answers the shaped 500 itself and logs the traceback through the same formatter.
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert observed.services.audit.flush(timeout=60)

    text = captured.getvalue()
    lines = text.splitlines()
    assert len(lines) > len(sent)
    forbidden = [key, key_secret, wrong_secret, jwt, jwt.split(".")[2], marker, "boom"]
    for line in lines:
        for secret in forbidden:
            assert secret not in line, f"{secret!r} logged: {line}"
    for request_id in sent:
        assert sum(request_id in line for line in lines) == 1, f"one access line for {request_id}"
    assert sum(failed_id in line for line in lines) == 2  # its access line, and its traceback's
    assert text.count("builtins.RuntimeError") == 1  # the traceback's; the access line says internal_error
    assert "image/png" not in text  # no header


def test_an_access_line_is_one_json_object_with_the_requests_facts(observed: Observed, captured: io.StringIO) -> None:
    request_id = uuid.uuid4().hex
    answer = observed.client.post(
        "/v1/models/fall/detect",
        content=PHOTO.read_bytes(),
        headers={"Authorization": f"Bearer {observed.alpha}", "Content-Type": "image/png", "X-Request-ID": request_id},
    )
    assert answer.status_code == 200
    refused = observed.client.get("/v1/models")
    assert refused.status_code == 401
    records = [json.loads(line) for line in captured.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "warden.access"]
    (line,) = [r for r in access if r["request_id"] == request_id]
    assert list(line)[:4] == ["time", "level", "logger", "event"]
    assert {
        k: line[k] for k in ("level", "event", "method", "route", "status", "tenant", "model", "model_version")
    } == {
        "level": "info",
        "event": "request",
        "method": "POST",
        "route": "/v1/models/{name}/detect",
        "status": 200,
        "tenant": "alpha",
        "model": "fall",
        "model_version": 1,
    }
    assert {"duration_ms", "queue_ms", "decode_ms", "preprocess_ms", "inference_ms", "audit_ms"} <= set(line)
    for record in access:  # nothing but these: no header, client address, query, path or image fact
        assert set(record) <= ACCESS_FIELDS, set(record) - ACCESS_FIELDS
    assert "code" not in line
    (failed,) = [r for r in access if r["request_id"] == refused.headers["X-Request-ID"]]
    assert (failed["status"], failed["code"], failed["route"]) == (401, "unauthenticated", "/v1/models")
    assert "tenant" not in failed
    assert "queue_ms" not in failed


def test_probes_and_scrapes_are_logged_at_debug_level(observed: Observed, captured: io.StringIO) -> None:
    assert observed.client.get("/v2/health/live").status_code == 200
    scrape = observed.client.get("/metrics", headers={"Authorization": f"Bearer {observed.operator}"})
    assert scrape.status_code == 200
    access = [json.loads(line) for line in captured.getvalue().splitlines() if '"warden.access"' in line]
    assert [(r["route"], r["level"]) for r in access] == [("/v2/health/live", "debug"), ("/metrics", "debug")]
    assert access[1]["operator"] is True


def test_secrets_are_masked_in_every_value_whoever_logs_them() -> None:
    key = "wdn_0123456789ab_" + "s" * 43
    jwt = jwt_shaped()
    event = {
        "event": f"connecting with {key}",
        "nested": {"header": f"Bearer {jwt}", "list": [jwt, b"\x89PNG raw"]},
        "plain": 3,
    }
    masked = mask_secrets(None, "info", event)
    rendered = json.dumps(masked)
    assert "s" * 43 not in rendered
    assert jwt not in rendered
    assert "wdn_0123456789ab_[redacted]" in rendered
    assert "PNG" not in rendered
    assert masked["plain"] == 3


def test_an_exception_is_logged_as_its_type_and_frames_only() -> None:
    try:
        raise ValueError("secret value")
    except ValueError as exc:
        event = safe_exception(None, "error", {"event": "failed", "exc_info": exc})
    assert event["exception"] == "builtins.ValueError"
    assert "secret value" not in json.dumps(event)
    assert any("test_an_exception_is_logged_as_its_type_and_frames_only" in frame for frame in event["frames"])
    assert "exc_info" not in event
