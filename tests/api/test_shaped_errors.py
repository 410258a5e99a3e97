"""Every failure answers the API's JSON error shape with a stable code: no traceback, repr or heap address.

A route whose database table is gone (a real fault, not a mock) answers 500 ``internal_error``
with its request id, and its audit record is still written; multipart boundaries beyond
RFC 2046 are a 400; messages never quote a foreign object's repr.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from sqlalchemy import text

from tests.api.conftest import tiny_graph
from tests.api.test_audit import record_of
from warden.api import create_app
from warden.api.body import MAX_BOUNDARY, multipart_field
from warden.api.errors import without_reprs
from warden.errors import InvalidArgument
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Scope

BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


@pytest.fixture
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Services, str]]:
    """A tenant with a model, then its models table dropped: listing models fails inside SQLAlchemy."""
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("broken") / "data"))
    services.tenants.create_tenant("alpha")
    services.registry.push(services.tenants.tenant_id("alpha"), "tiny", tiny_graph())
    key = services.tenants.create_key("alpha", Scope.DETECT).key
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            with services.db.engine.begin() as connection:
                connection.execute(text("DROP TABLE model_aliases"))
            yield client, services, key
    finally:
        services.close()


def test_an_unexpected_exception_answers_a_shaped_500_with_the_request_id(
    broken: tuple[TestClient, Services, str],
) -> None:
    client, services, key = broken
    request_id = uuid.uuid4().hex
    answer = client.get("/v1/models", headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == request_id
    assert answer.headers["x-error-code"] == "internal_error"
    error = answer.json()["error"]
    assert error["code"] == "internal_error"
    assert "request id" in error["message"]
    for leak in ("Traceback", "sqlalchemy", "model_aliases", " at 0x", "OperationalError"):
        assert leak not in answer.text
    event = record_of(services, request_id)
    assert (event.status, event.error_code, event.route) == (500, "internal_error", "GET /v1/models")
    assert event.tenant == "alpha"


def test_an_oip_route_answers_its_own_shape_for_a_server_fault(broken: tuple[TestClient, Services, str]) -> None:
    client, _, key = broken
    answer = client.get("/v2/models/tiny", headers={"Authorization": f"Bearer {key}"})
    assert (answer.status_code, answer.headers["x-error-code"]) == (500, "internal_error")
    assert set(answer.json()) == {"error"}


def body_with(boundary: bytes) -> bytes:
    return (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="image"\r\n\r\nPNGDATA\r\n--'
        + boundary
        + b"--\r\n"
    )


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet=BCHARS, min_size=1, max_size=MAX_BOUNDARY).filter(lambda b: not b.endswith(" ")))
def test_every_boundary_rfc_2046_allows_is_parsed(boundary: str) -> None:
    raw = boundary.encode()
    assert multipart_field(body_with(raw), raw, "image") == b"PNGDATA"


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    st.one_of(
        st.text(alphabet=BCHARS, min_size=MAX_BOUNDARY + 1, max_size=5000),
        st.text(min_size=1, max_size=80).filter(lambda b: any(c not in BCHARS for c in b) or b.endswith(" ")),
    )
)
def test_every_other_boundary_is_an_invalid_argument(boundary: str) -> None:
    raw = boundary.encode()
    with pytest.raises(InvalidArgument) as refused:
        multipart_field(body_with(raw), raw, "image")
    assert "RFC 2046" in refused.value.message


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """One tenant with the small model, and its detect key."""
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("multipart") / "data"))
    services.tenants.create_tenant("alpha")
    services.registry.push(services.tenants.tenant_id("alpha"), "tiny", tiny_graph())
    try:
        with TestClient(create_app(services)) as client:
            yield client, services.tenants.create_key("alpha", Scope.DETECT).key
    finally:
        services.close()


@pytest.mark.parametrize("length", [71, 100, 257, 1000, 70_000])
def test_a_long_boundary_through_detect_is_a_400(length: int, served: tuple[TestClient, str]) -> None:
    client, key = served
    boundary = "b" * length
    answer = client.post(
        "/v1/models/tiny/detect",
        content=body_with(boundary.encode()),
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_argument")
    assert "RFC 2046" in answer.json()["error"]["message"]


def test_a_corrupt_image_is_refused_without_a_heap_address(served: tuple[TestClient, str]) -> None:
    client, key = served
    answer = client.post(
        "/v1/models/tiny/detect",
        content=b"\x89PNG\r\n\x1a\n" + bytes(30),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_image")
    assert " at 0x" not in answer.text
    assert "cannot identify image file" in answer.text


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"conf": {"a": list(range(1000))}}, "got an object"),
        ({"max_det": "x" * 5000}, "got a string of 5000 characters"),
        ({"timeout_ms": [1] * 1000}, "got a list"),
    ],
)
def test_oip_parameters_are_described_not_echoed(
    served: tuple[TestClient, str], parameters: dict[str, object], expected: str
) -> None:
    client, key = served
    request = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}],
        "parameters": parameters,
    }
    answer = client.post("/v2/models/tiny/infer", json=request, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 400
    assert expected in answer.json()["error"]
    assert len(answer.json()["error"]) < 200


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "corrupt: the PNG data is corrupt (cannot identify image file <_io.BytesIO object at 0x7fca5d793010>)",
            "corrupt: the PNG data is corrupt (cannot identify image file)",
        ),
        ("got <generator object f.<locals>.g at 0x7f00aa>", "got"),
        ("plain <words> stay", "plain <words> stay"),
    ],
)
def test_reprs_with_heap_addresses_are_dropped_from_messages(message: str, shown: str) -> None:
    assert without_reprs(message) == shown
