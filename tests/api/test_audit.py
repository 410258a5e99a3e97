"""Every HTTP access leaves one audit record, durable before the answer; metadata only; fail closed.

Through the in-process ASGI app over real SQLite and PostgreSQL (the shared world of
tests/api/conftest.py). Records are found by the request id each answer carries.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.conftest import World, tiny_graph
from tests.backends import database_url
from warden.api import create_app
from warden.audit import AuditEvent, AuditFilter
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Scope

PHOTO = Path(__file__).parents[1] / "detection" / "data" / "astronaut.png"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def record_of(services: Services, request_id: str) -> AuditEvent:
    """The one record of a request (a success's was durable before its answer; an error's is flushed here)."""
    assert services.audit.flush(timeout=30)
    entries = list(services.audit.scan(AuditFilter(request_id=request_id)))
    assert len(entries) == 1, entries
    return entries[0].event


def sent(world: World, method: str, path: str, **kwargs: object) -> tuple[int, AuditEvent]:
    """Send a request with a fresh request id; its status and its audit record."""
    request_id = uuid.uuid4().hex
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}  # type: ignore[dict-item]
    answer = world.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
    return answer.status_code, record_of(world.services, request_id)


def test_a_detection_is_recorded_with_its_metadata_and_nothing_of_the_image(world: World) -> None:
    image = PHOTO.read_bytes()
    status, event = sent(
        world,
        "POST",
        "/v1/models/fall/detect?conf=0.05",
        content=image,
        headers={**bearer(world.alpha_detect), "Content-Type": "image/png"},
    )
    assert status == 200
    assert event.kind.value == "request"
    assert (event.tenant, event.authenticator, event.route) == ("alpha", "api_key", "POST /v1/models/{name}/detect")
    assert event.key_id is not None
    assert event.key_id in world.alpha_detect
    assert (event.model, event.model_version, event.status, event.error_code) == ("fall", 1, 200, None)
    assert (event.image_bytes, event.image_width, event.image_height) == (len(image), 512, 512)
    assert event.detections is not None
    assert event.detections > 2
    assert event.total_ms is not None
    assert event.inference_ms is not None
    assert event.queue_ms is not None
    assert event.client is not None
    assert event.client.startswith("hmac:")
    stored = event.canonical()
    assert world.alpha_detect not in stored
    assert base64.b64encode(image[:64]).decode() not in stored
    assert "detections" not in json.loads(stored) or isinstance(json.loads(stored)["detections"], int)


def test_an_oip_inference_is_recorded_with_its_images(world: World) -> None:
    image = PHOTO.read_bytes()
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}]
    }
    status, event = sent(world, "POST", "/v2/models/fall/infer", json=body, headers=bearer(world.alpha_detect))
    assert status == 200
    assert (event.route, event.model, event.image_width, event.image_height) == (
        "POST /v2/models/{name}/infer",
        "fall",
        512,
        512,
    )
    assert event.image_bytes == len(image)


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/v1/models/fall/detect", {}, 401, "unauthenticated"),
        ("/v1/models/absent/detect", "alpha", 404, "model_not_found"),
        ("/v1/models/fall/detect", "alpha-bad-type", 415, "unsupported_media_type"),
    ],
    ids=["no key", "unknown model", "bad content type"],
)
def test_a_refused_request_is_recorded_with_its_status_and_code(
    world: World, path: str, headers: object, status: int, code: str
) -> None:
    given: dict[str, str] = {}
    if headers == "alpha":
        given = {**bearer(world.alpha_detect), "Content-Type": "image/png"}
    elif headers == "alpha-bad-type":
        given = {**bearer(world.alpha_detect), "Content-Type": "text/plain"}
    got, event = sent(world, "POST", path, content=b"x", headers=given)
    assert got == status
    assert (event.status, event.error_code) == (status, code)
    assert event.tenant == (None if status == 401 else "alpha")


def test_only_successful_answers_wait_for_their_record(world: World) -> None:
    served = world.client.get("/v1/models", headers=bearer(world.alpha_detect))
    refused = world.client.get("/v1/models")
    assert served.status_code == 200
    assert "audit;dur=" in served.headers["Server-Timing"]
    assert refused.status_code == 401
    assert "audit;dur=" not in refused.headers["Server-Timing"]
    assert record_of(world.services, refused.headers["X-Request-ID"]).status == 401


def test_an_administrative_action_is_recorded_with_the_acting_key(world: World) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    status, event = sent(world, "POST", "/admin/tenants", json={"name": name}, headers=bearer(world.operator))
    assert status == 201
    assert (event.kind.value, event.action, event.target, event.status) == ("admin", "tenant.create", name, 201)
    assert event.key_id is not None
    assert event.key_id in world.operator
    status, event = sent(
        world, "POST", f"/admin/tenants/{name}/keys", json={"scope": "detect"}, headers=bearer(world.operator)
    )
    assert status == 201
    assert event.action == "key.create"
    assert event.details["scope"] == "detect"
    issued = event.details["key_id"]
    assert isinstance(issued, str)
    assert len(issued) == 12
    status, event = sent(world, "DELETE", f"/admin/keys/{issued}", headers=bearer(world.operator))
    assert (status, event.action, event.target) == (200, "key.revoke", issued)


def test_a_refused_administrative_action_is_recorded_as_refused(world: World) -> None:
    status, event = sent(world, "POST", "/admin/tenants", json={"name": "nope"}, headers=bearer(world.alpha_admin))
    assert status == 403
    assert (event.action, event.target, event.tenant, event.error_code) == (
        "tenant.create",
        "nope",
        "alpha",
        "forbidden",
    )


def test_a_model_push_is_recorded_with_its_digest(world: World) -> None:
    data = tiny_graph(0.61)
    status, event = sent(
        world,
        "POST",
        "/admin/tenants/alpha/models/audited",
        content=data,
        headers={**bearer(world.alpha_admin), "Content-Type": "application/octet-stream"},
    )
    assert status == 201
    assert (event.action, event.target) == ("model.push", "alpha/audited")
    assert event.details["bytes"] == len(data)
    assert isinstance(event.details["sha256"], str)
    assert len(event.details["sha256"]) == 64


def test_a_name_shaped_like_a_key_is_withheld_and_the_request_still_answered(world: World) -> None:
    key_like = world.beta_detect  # a real key pasted into a path by mistake must not reach the log
    status, event = sent(world, "DELETE", f"/admin/keys/{key_like}", headers=bearer(world.operator))
    assert status == 404
    assert event.target == "(withheld)"
    assert key_like not in event.canonical()


def test_probes_and_documentation_are_not_recorded(world: World) -> None:
    before = sum(1 for _ in world.services.audit.scan())
    for path in ("/v2/health/live", "/v2/health/ready", "/openapi.json"):
        assert world.client.get(path).status_code == 200
    assert sum(1 for _ in world.services.audit.scan()) == before


def test_the_log_written_by_requests_verifies(world: World) -> None:
    for _ in range(5):
        world.client.get("/v1/models", headers=bearer(world.alpha_detect))
    assert world.services.audit.verify().ok


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[TestClient, Services, str]]:
    """An app of its own over SQLite (its audit store is broken on purpose) with one detect key."""
    with database_url("sqlite", tmp_path) as url:
        services = open_services(Settings(data_dir=tmp_path / "data", database_url=url))
        services.tenants.create_tenant("acme")
        services.registry.push(services.tenants.tenant_id("acme"), "tiny", tiny_graph())
        key = services.tenants.create_key("acme", Scope.DETECT).key
        try:
            with TestClient(create_app(services)) as client:
                yield client, services, key
        finally:
            services.close()


def move_table(services: Services, source: str, target: str) -> None:
    """Rename a table from another connection, so the audit store really fails (or recovers)."""
    with services.db.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {source} RENAME TO {target}"))


def test_when_the_audit_store_fails_no_answer_goes_out_unrecorded(fresh: tuple[TestClient, Services, str]) -> None:
    client, services, key = fresh
    headers = {**bearer(key), "Content-Type": "image/png"}
    assert client.post("/v1/models/tiny/detect", content=PHOTO.read_bytes(), headers=headers).status_code == 200
    move_table(services, "audit_records", "audit_records_away")
    try:
        held = client.post("/v1/models/tiny/detect", content=PHOTO.read_bytes(), headers=headers)
        assert held.status_code == 503
        assert held.headers["X-Error-Code"] == "audit_unavailable"
        assert held.json()["error"]["code"] == "audit_unavailable"
        assert "Retry-After" in held.headers
        refused = client.get("/v1/models", headers=bearer(key))  # refused before any work while unhealthy
        assert refused.status_code == 503
        assert refused.headers["X-Error-Code"] == "audit_unavailable"
    finally:
        move_table(services, "audit_records_away", "audit_records")
    assert services.audit.flush(timeout=30)
    recovered = client.post("/v1/models/tiny/detect", content=PHOTO.read_bytes(), headers=headers)
    assert recovered.status_code == 200
    assert services.audit.verify().ok
    held_records = list(services.audit.scan(AuditFilter(request_id=held.headers["X-Request-ID"])))
    # The work done is recorded, and so is the fact that its answer was withheld.
    assert [(e.event.status, e.event.error_code) for e in held_records] == [(200, None), (503, "audit_unavailable")]
    assert held_records[1].event.details["withheld_status"] == 200
    refused_records = list(services.audit.scan(AuditFilter(request_id=refused.headers["X-Request-ID"])))
    assert [(e.event.status, e.event.route) for e in refused_records] == [(503, "GET (no route)")]
