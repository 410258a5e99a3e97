"""Every body has a cap, and credentials are checked before a byte of it is read.

Driven through the in-process ASGI app (httpx's ``ASGITransport``) with bodies that are
async generators counting the chunks the server pulled: a refusal must come after none
(wrong credential, declared length over the cap) or right after the chunk that passed the
cap, never at the end of the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.api.conftest import World, tiny_graph
from warden.api import admin, admin_audit, approvals, console, create_app, datasets, v1, v2
from warden.api.guard import SIGN_IN_BODY_BYTES, UPLOADS, BodyGuard, BodyKind, body_cap, infer_cap
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

MIB = 1024 * 1024
HUGE = 200 * MIB


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Tenant ``alpha`` with the small ``tiny`` model on SQLite, and small caps so that passing them costs little."""
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    settings = Settings(data_dir=data_dir, max_model_bytes=4 * MIB, max_image_bytes=MIB, max_json_bytes=64 * 1024)
    services = open_services(settings)
    tenants = services.tenants
    tenants.create_tenant("alpha")
    services.registry.push(tenants.tenant_id("alpha"), "tiny", tiny_graph())
    try:
        with TestClient(create_app(services)) as client:
            yield World(
                client=client,
                services=services,
                alpha_detect=tenants.create_key("alpha", Scope.DETECT).key,
                alpha_admin=tenants.create_key("alpha", Scope.ADMIN).key,
                beta_detect="",
                operator=tenants.create_key(None, Scope.ADMIN).key,
            )
    finally:
        services.close()


@dataclass
class Body:
    """A lazy body of ``total`` bytes in ``chunk``-byte pieces that counts what the server pulled."""

    total: int
    chunk: int = MIB
    pulled: int = 0
    payload: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.payload = bytes(self.chunk)

    async def stream(self) -> AsyncIterator[bytes]:
        """The chunks, counted as they are pulled."""
        for _ in range(0, self.total, self.chunk):
            self.pulled += self.chunk
            yield self.payload


def post(app: FastAPI, method: str, path: str, headers: dict[str, str], body: Body) -> httpx.Response:
    """Send ``body`` lazily to the in-process app and return its answer."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://warden") as client:
            return await client.request(method, path, headers=headers, content=body.stream())

    return asyncio.run(send())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


JSON_ROUTES = [
    ("POST", "/admin/tenants"),
    ("PATCH", "/admin/tenants/alpha"),
    ("POST", "/admin/tenants/alpha/keys"),
    ("PUT", "/admin/tenants/alpha/models/tiny/aliases/stable"),
    ("PUT", "/admin/tenants/alpha/models/tiny/versions/1/batching"),
    ("PUT", "/admin/tenants/alpha/models/tiny/versions/1/run-cap"),
    ("POST", "/v1/approvals"),
    ("POST", "/admin/approvals/apr_0000000000000000/approve"),
    ("POST", "/admin/approvals/apr_0000000000000000/reject"),
    ("POST", "/admin/approvals/apr_0000000000000000/revoke"),
]
UPLOAD_ROUTES = [
    ("POST", "/admin/tenants/alpha/models/big", "application/octet-stream"),
    ("POST", "/v1/models/tiny/detect", "image/png"),
    ("POST", "/v2/models/tiny/infer", "application/json"),
    ("POST", "/v1/datasets/big", "text/csv"),
]
CREDENTIALS = [
    ("none", lambda w: {}, 401, "unauthenticated"),
    ("unknown key", lambda w: bearer("wdn_000000000000_unknown"), 401, "unauthenticated"),
    ("malformed", lambda w: {"Authorization": "Basic eA=="}, 401, "unauthenticated"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize(("who", "headers", "status", "code"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_when_the_credential_is_refused_then_no_byte_of_a_json_body_is_read(
    world: World, method: str, path: str, who: str, headers: object, status: int, code: str
) -> None:
    body = Body(HUGE)
    answer = post(world.client.app, method, path, {**headers(world), "Content-Type": "application/json"}, body)  # type: ignore[operator,arg-type]
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert body.pulled == 0
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize(("method", "path", "content_type"), UPLOAD_ROUTES)
def test_when_the_scope_is_wrong_then_no_byte_of_an_upload_is_read(
    world: World, method: str, path: str, content_type: str
) -> None:
    wrong = world.alpha_detect if path.startswith(("/admin", "/v1/datasets")) else world.alpha_admin
    body = Body(HUGE)
    answer = post(world.client.app, method, path, {**bearer(wrong), "Content-Type": content_type}, body)  # type: ignore[arg-type]
    assert answer.status_code == 403
    assert body.pulled == 0


def test_a_detect_key_does_not_make_an_admin_json_body_readable(world: World) -> None:
    body = Body(HUGE)
    headers = {**bearer(world.alpha_detect), "Content-Type": "application/json"}
    answer = post(world.client.app, "POST", "/admin/tenants", headers, body)  # type: ignore[arg-type]
    assert (answer.status_code, body.pulled) == (403, 0)


def test_when_a_tenant_is_over_its_rate_then_its_upload_is_not_read(world: World) -> None:
    tenants = world.services.tenants
    tenants.create_tenant("slow-uploads")
    tenants.update_quota("slow-uploads", {"rps": 0.01, "burst": 1})
    key = tenants.create_key("slow-uploads", Scope.DETECT).key
    app = world.client.app
    headers = {**bearer(key), "Content-Type": "image/png"}
    post(app, "POST", "/v1/models/tiny/detect", headers, Body(1024, chunk=1024))  # type: ignore[arg-type]
    body = Body(HUGE)
    answer = post(app, "POST", "/v1/models/tiny/detect", headers, body)  # type: ignore[arg-type]
    assert (answer.status_code, answer.json()["error"]["code"], body.pulled) == (429, "rate_limited", 0)


@pytest.mark.parametrize(
    ("method", "path", "content_type", "key", "cap"),
    [
        ("POST", "/admin/tenants", "application/json", "operator", 64 * 1024),
        ("PATCH", "/admin/tenants/alpha", "application/json", "operator", 64 * 1024),
        ("POST", "/console/session", "application/json", None, SIGN_IN_BODY_BYTES),
        ("POST", "/admin/tenants/alpha/models/big", "application/octet-stream", "operator", None),
        ("POST", "/v1/models/tiny/detect", "image/png", "alpha_detect", None),
        ("POST", "/v2/models/tiny/infer", "application/json", "alpha_detect", None),
        ("POST", "/v1/datasets/big", "text/csv", "alpha_admin", None),
    ],
)
def test_when_a_streamed_body_passes_its_cap_then_413_comes_at_once(
    world: World, method: str, path: str, content_type: str, key: str | None, cap: int | None
) -> None:
    settings = world.services.settings
    limits = {
        "/admin/tenants/alpha/models/big": settings.max_model_bytes,
        "/v1/models/tiny/detect": settings.max_image_bytes,
        "/v2/models/tiny/infer": infer_cap(settings.max_images_per_request, settings.max_image_bytes),
        "/v1/datasets/big": settings.max_dataset_bytes,
    }
    cap = cap if cap is not None else limits[path]
    total = cap + 64 * MIB
    chunk = 16 * 1024 if cap < MIB else 256 * 1024
    body = Body(total, chunk=chunk)
    headers = {"Content-Type": content_type, **(bearer(getattr(world, key)) if key else {})}
    answer = post(world.client.app, method, path, headers, body)  # type: ignore[arg-type]
    assert answer.status_code == 413, answer.text
    code = answer.json()["error"] if path.startswith("/v2") else answer.json()["error"]["code"]
    assert path.startswith("/v2") or code == "payload_too_large"
    assert answer.headers["x-error-code"] == "payload_too_large"
    assert cap < body.pulled <= cap + 2 * chunk  # the chunk that passed the cap, not the rest
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("POST", "/admin/tenants", "operator"),
        ("POST", "/console/session", None),
        ("POST", "/v1/models/tiny/detect", "alpha_detect"),
        ("POST", "/admin/tenants/alpha/models/big", "operator"),
        ("GET", "/v1/models", "alpha_detect"),
        ("POST", "/no/such/route", None),
    ],
)
def test_when_the_declared_length_is_over_the_cap_then_413_before_anything_is_read(
    world: World, method: str, path: str, key: str | None
) -> None:
    body = Body(HUGE)
    headers = {"Content-Length": str(HUGE + 1), "Content-Type": "application/octet-stream"}
    if key is not None:
        headers.update(bearer(getattr(world, key)))
    answer = post(world.client.app, method, path, headers, body)  # type: ignore[arg-type]
    assert (answer.status_code, answer.headers["x-error-code"], body.pulled) == (413, "payload_too_large", 0)
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"]


def test_an_anonymous_request_may_stream_only_the_sign_in_cap_on_any_route(world: World) -> None:
    guard = BodyGuard(world.client.app, world.services.settings)
    scope = {"type": "http", "method": "POST", "path": "/admin/tenants/alpha/models/big", "headers": []}
    cap, streamed, upload = guard.caps(scope, httpx.Headers())  # type: ignore[arg-type]
    assert (cap, streamed) == (world.services.settings.max_model_bytes, SIGN_IN_BODY_BYTES)
    assert upload is not None
    assert upload.kind is BodyKind.MODEL


def test_the_console_sign_in_works_under_its_small_cap(world: World) -> None:
    answer = world.client.post("/console/session", json={"key": world.alpha_admin})
    assert answer.status_code == 200, answer.text
    padded = world.client.post(
        "/console/session",
        content=b'{"key": "' + world.alpha_admin.encode() + b'"' + b" " * SIGN_IN_BODY_BYTES + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert (padded.status_code, padded.json()["error"]["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"", "application/json", "this route needs a JSON body"),
        (b'{"name": "x"}', "text/plain", "Content-Type: application/json"),
        (b'{"name": ', "application/json", "Invalid JSON"),
        (b'{"name": 5}', "application/json", "name: "),
    ],
)
def test_a_bad_json_body_is_a_400_with_a_message(world: World, content: bytes, content_type: str, message: str) -> None:
    answer = world.client.post(
        "/admin/tenants", content=content, headers={**bearer(world.operator), "Content-Type": content_type}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_argument")
    assert message in answer.json()["error"]["message"]


def test_no_route_declares_a_body_fastapi_would_read_before_authentication() -> None:
    routes = [r for module in (v1, v2, admin, admin_audit, approvals, console, datasets) for r in module.router.routes]
    assert routes
    assert [r.path for r in routes if isinstance(r, APIRoute) and r.body_field is not None] == []


def test_the_upload_table_names_exactly_the_routes_with_a_non_json_body(world: World) -> None:
    schema = world.client.app.openapi()  # type: ignore[attr-defined]
    uploads = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if set(operation.get("requestBody", {}).get("content", {})) - {"application/json"}
    }
    assert uploads | {("POST", "/console/session")} == set(UPLOADS)


def test_the_infer_cap_fits_the_largest_json_request_of_its_images() -> None:
    settings = Settings(max_images_per_request=3, max_image_bytes=3000)
    assert body_cap(settings, BodyKind.INFER) == infer_cap(3, 3000)
    assert infer_cap(3, 3000) >= 3 * (4000 + 2) + 200
