"""The OpenAPI schema at /openapi.json tells the truth about every operation.

Schemathesis loads the schema from the app itself (in process, over ASGI) and generates
requests for every operation, with valid and with invalid data, sent with a ``detect``
key, with the operator's key where the operation is under ``/admin``, and with missing or
malformed credentials. No answer may be a 5xx, and each answer's status code, content
type, headers and body must be the ones the schema documents (Schemathesis' own checks:
``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance``,
``response_headers_conformance``, ``response_schema_conformance`` and, for invalid data,
``negative_data_rejection``). Hand-written valid requests then walk the success answers
(201, 204, binary tensors) that random data rarely reaches.

Schemathesis' pytest integration for a schema built in a fixture
(``schemathesis.pytest.from_fixture``) sets ``Node._nodeid``, which pytest 9.2 no longer
has, so each test here drives ``APIOperation.as_strategy`` with Hypothesis itself.

The run is bounded: a few dozen examples per operation and credential, no shrinking, no
example database, derandomized, so it is the same run on every machine.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis.strategies as st
import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from jwt.algorithms import RSAAlgorithm

from tests.api.conftest import World, tiny_graph
from tests.api.server import running_server
from tests.api.test_datasets import with_datasets
from tests.datasets.conftest import CUSTOMERS, SHM, customers_csv
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.api import create_app
from warden.api.oip import HEADER_LENGTH
from warden.datasets.staging import filesystem_type
from warden.jobs.approval_requests import ApprovalDesk, request_terms
from warden.registry import MAX_VERSION, sha256_hex
from warden.samples import SAMPLE_IMAGE
from warden.storage.tables import utcnow
from warden.tenancy import Authenticator, JwtVerifier, Scope

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
CONFIG: dict[str, Any] = {
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    "generation": {"database": "none"},
}
EXAMPLES = 25
INVALID_EXAMPLES = 8
SCRATCH = "scratch"
"""A tenant the destructive operations (suspend, delete, remove, revoke) may break."""


def run_settings(examples: int) -> settings:
    """Bounded, reproducible Hypothesis runs: generation only (no shrinking), no database, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


@dataclass(frozen=True)
class Operation:
    """One operation of the schema, with path parameters that name real things in the world.

    Generated requests mostly name nothing (404); a share of them use ``names`` instead,
    so the success answers are checked too. ``{scratch_key}`` and ``{approval}`` (a pending
    request of ``alpha``) stand for ids known only at run time.
    """

    method: str
    path: str
    names: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def protected(self) -> bool:
        return self.path.startswith(("/v1", "/v2/models", "/admin"))


MODEL = {"name": "tiny"}
VERSION = {"name": "tiny", "version": "1"}
ALPHA = {"name": "alpha"}
APPROVAL = {"approval_id": "{approval}"}
OPERATIONS = (
    Operation("POST", "/v1/models/{name}/detect", MODEL),
    Operation("GET", "/v1/models"),
    Operation("GET", "/v2/health/live"),
    Operation("GET", "/v2/health/ready"),
    Operation("GET", "/v2"),
    Operation("GET", "/v2/models/{name}", MODEL),
    Operation("GET", "/v2/models/{name}/versions/{version}", VERSION),
    Operation("GET", "/v2/models/{name}/ready", MODEL),
    Operation("GET", "/v2/models/{name}/versions/{version}/ready", VERSION),
    Operation("POST", "/v2/models/{name}/infer", MODEL),
    Operation("POST", "/v2/models/{name}/versions/{version}/infer", VERSION),
    Operation("GET", "/v1/usage"),
    Operation("GET", "/admin/tenants"),
    Operation("POST", "/admin/tenants"),
    Operation("GET", "/admin/tenants/{name}", ALPHA),
    Operation("POST", "/admin/tenants/{name}/resume", ALPHA),
    Operation("POST", "/admin/tenants/{name}/keys", ALPHA),
    Operation("GET", "/admin/tenants/{name}/keys", ALPHA),
    Operation("POST", "/admin/tenants/{name}/models/{model}", {"name": "alpha", "model": "tiny"}),
    Operation("GET", "/admin/tenants/{name}/models", ALPHA),
    Operation(
        "PUT",
        "/admin/tenants/{name}/models/{model}/aliases/{alias}",
        {"name": "alpha", "model": "tiny", "alias": "stable"},
    ),
    Operation(
        "PUT",
        "/admin/tenants/{name}/models/{model}/versions/{version}/batching",
        {"name": "alpha", "model": "tiny", "version": "1"},
    ),
    Operation(
        "PUT",
        "/admin/tenants/{name}/models/{model}/versions/{version}/run-cap",
        {"name": "alpha", "model": "tiny", "version": "1"},
    ),
    Operation("POST", "/v1/datasets/{name}", {"name": "customers"}),
    Operation("GET", "/v1/datasets"),
    Operation("GET", "/v1/datasets/{name}", {"name": "customers"}),
    Operation("GET", "/admin/audit"),
    Operation("GET", "/admin/audit/export"),
    Operation("POST", "/admin/audit/verify"),
    Operation("GET", "/admin/usage"),
    Operation("POST", "/console/session"),
    Operation("GET", "/console/session"),
    Operation("DELETE", "/console/session"),
    Operation("PUT", "/admin/blobs/{sha256}/shared", {"sha256": "{scratch_sha}"}),
    Operation("POST", "/v1/approvals"),
    Operation("GET", "/v1/approvals"),
    Operation("GET", "/v1/approvals/{approval_id}", APPROVAL),
    Operation("POST", "/v1/approvals/{approval_id}/withdraw", APPROVAL),
    Operation("GET", "/admin/approvals"),
    Operation("GET", "/admin/approvals/{approval_id}", APPROVAL),
    Operation("POST", "/admin/approvals/{approval_id}/approve", APPROVAL),
    Operation("POST", "/admin/approvals/{approval_id}/reject", APPROVAL),
    Operation("POST", "/admin/approvals/{approval_id}/revoke", APPROVAL),
    Operation("DELETE", "/admin/blobs/{sha256}/shared", {"sha256": "{scratch_sha}"}),
    # Destructive: last, and on the scratch tenant, so the runs before them see the world intact.
    Operation("PATCH", "/admin/tenants/{name}", {"name": SCRATCH}),
    Operation("POST", "/admin/tenants/{name}/suspend", {"name": SCRATCH}),
    Operation("DELETE", "/admin/keys/{key_id}", {"key_id": "{scratch_key}"}),
    Operation("DELETE", "/admin/tenants/{name}/models/{model}", {"name": SCRATCH, "model": "tiny"}),
    Operation("DELETE", "/admin/tenants/{name}", {"name": SCRATCH}),
    Operation("DELETE", "/v1/datasets/{name}/versions/{version}", {"name": "customers", "version": "1"}),
    Operation("DELETE", "/v1/datasets/{name}", {"name": "customers"}),
)
ADMIN_OPERATIONS = tuple(op for op in OPERATIONS if op.path.startswith("/admin"))
BAD_CREDENTIALS = {
    "none": {},
    "basic scheme": {"Authorization": "Basic YWxwaGE6YmV0YQ=="},
    "empty bearer": {"Authorization": "Bearer "},
    "unknown key": {"Authorization": "Bearer wdn_000000000000_" + "A" * 43},
    "malformed key": {"X-API-Key": "not-a-key"},
    "oversized key": {"X-API-Key": "k" * 5000},
    "forged jwt": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


JWT_ISSUER = "https://idp.example.com/"
JWT_AUDIENCE = "warden"
JWT_KEY_SHAPED = "wdn_0123456789ab_" + "S" * 43
BAD_JWT_CLAIMS: dict[str, dict[str, Any]] = {
    "sub of 2000 characters": {"sub": "u" * 2000},
    "sub shaped like an API key": {"sub": JWT_KEY_SHAPED},
    "sub a number": {"sub": 42},
    "sub an object": {"sub": {"id": 1}},
    "tenant a list": {"tenant": ["alpha"]},
    "tenant of 2000 characters": {"tenant": "a" * 2000},
    "scope an object": {"scope": {"admin": True}},
    "iss a number": {"iss": 7},
    "exp infinite": {"exp": float("inf")},
    "exp a string": {"exp": "9999999999"},
    "no iat": {"iat": None},
    "lives ten years": {"exp": 10 * 365 * 86_400},
}
"""Signed by the issuer's own key, so each reaches claim validation; ``exp`` and ``iat`` are offsets from now."""


@dataclass(frozen=True)
class Api:
    """An app over the world's services, its schema as Schemathesis reads it, and values known at run time.

    The app is the tests' own, so Schemathesis' client (which keeps the app's lifespan
    running until the process ends) never shares one with ``world.client``.
    """

    app: FastAPI
    schema: schemathesis.BaseSchema
    values: Mapping[str, str]

    def operation(self, method: str, path: str) -> schemathesis.APIOperation:
        return self.schema[path][method]

    def requests(self, op: Operation) -> st.SearchStrategy[schemathesis.Case]:
        """Valid and invalid requests for ``op``; some name real things in the world."""
        operation = self.operation(op.method, op.path)
        names = {key: value.format_map(self.values) for key, value in op.names.items()}
        strategies = [
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        ]
        if names:
            strategies.append(operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=names))
        return st.one_of(strategies)


@pytest.fixture(scope="module")
def scratch_key(world: World) -> str:
    """The scratch tenant, with a model and a key, for the destructive operations; its key id."""
    tenants = world.services.tenants
    tenants.create_tenant(SCRATCH)
    world.services.registry.push(tenants.tenant_id(SCRATCH), "tiny", tiny_graph(0.5))
    return tenants.create_key(SCRATCH, Scope.DETECT).key_id


@pytest.fixture(scope="module")
def pending_approval(world: World) -> str:
    """A pending approval request of ``alpha``, made by a ``train`` key; its id."""
    tenants = world.services.tenants
    scientist = tenants.authenticate(tenants.create_key("alpha", Scope.TRAIN).key)
    terms = request_terms(utcnow(), purpose="schema walk", datasets=["tx:1"], max_runs=1, expires="30d")
    return ApprovalDesk(world.services.approvals).submit(scientist, terms).id


@pytest.fixture(scope="module")
def api(world: World, scratch_key: str, pending_approval: str) -> Api:
    """The schema loaded from the app's /openapi.json, as Schemathesis sees it."""
    app = create_app(world.services)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    values = {"scratch_key": scratch_key, "scratch_sha": sha256_hex(tiny_graph(0.5)), "approval": pending_approval}
    return Api(app, schema, values)


@pytest.fixture(scope="module")
def jwt_api(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Api, dict[str, str]]:
    """The world's services with a JWT issuer trusted, and bearer tokens of ``BAD_JWT_CLAIMS`` it signed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path_factory.mktemp("jwt") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k"}]}))
    tenants = world.services.tenants
    verifier = JwtVerifier.from_files(
        tenants,
        issuer=JWT_ISSUER,
        audience=JWT_AUDIENCE,
        jwks_file=jwks,
        public_key_file=None,
        algorithms=["RS256"],
        max_lifetime_seconds=3600,
        tenant_claim="tenant",
        scope_claim="scope",
    )
    app = create_app(dataclasses.replace(world.services, authenticator=Authenticator(tenants, verifier)))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    now = int(time.time())
    tokens = {}
    for label, changes in BAD_JWT_CLAIMS.items():
        claims: dict[str, Any] = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "u", "tenant": "alpha", "iat": now}
        claims["exp"] = now + 300
        claims.update({k: now + v if k in ("exp", "iat") and isinstance(v, int) else v for k, v in changes.items()})
        body = json.dumps({k: v for k, v in claims.items() if v is not None}).encode()
        tokens[label] = jwt.api_jws.encode(body, key, algorithm="RS256", headers={"kid": "k"})
    return Api(app, schema, {"scratch_key": "000000000000", "scratch_sha": "0" * 64, "approval": "apr_0"}), tokens


@pytest.fixture
def lenient(api: Api) -> TestClient:
    """A client that gets the server's 500 answer instead of its exception."""
    return TestClient(api.app, raise_server_exceptions=False)


def wire(value: object) -> str:
    """A path or header parameter as it is sent (OpenAPI's ``simple`` style: arrays joined by commas)."""
    if isinstance(value, list):
        return ",".join(wire(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{wire(key)},{wire(item)}" for key, item in value.items())
    return "" if value is None else str(value)


def send(case: schemathesis.Case, headers: Mapping[str, str]) -> schemathesis.Response:
    """Send ``case`` and apply the checks; a failure names the request and what contradicts the schema."""
    return case.call_and_validate(headers=dict(headers))


def test_the_schema_names_every_operation_and_every_reference_resolves(api: Api) -> None:
    served = api.schema.raw_schema
    listed = {f"{method.upper()} {path}" for path, item in served["paths"].items() for method in item}
    assert listed == {op.label for op in OPERATIONS}
    components = {f"#/components/schemas/{name}" for name in served["components"]["schemas"]}
    assert set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(served))) <= components
    assert "HTTPValidationError" not in served["components"]["schemas"]


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.label)
def test_generated_requests_with_a_detect_key_get_documented_answers(api: Api, world: World, op: Operation) -> None:
    @run_settings(EXAMPLES)
    @given(case=api.requests(op))
    def check(case: schemathesis.Case) -> None:
        send(case, auth(world.alpha_detect))

    check()


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.label)
def test_generated_requests_without_a_valid_credential_get_documented_answers(api: Api, op: Operation) -> None:
    @run_settings(INVALID_EXAMPLES)
    @given(case=api.requests(op))
    def check(case: schemathesis.Case) -> None:
        for headers in BAD_CREDENTIALS.values():
            answer = send(case, headers)
            if op.protected:
                # A body FastAPI cannot parse is refused before the credential is looked at.
                assert answer.status_code in (400, 401), answer.status_code
                if answer.status_code == 401:
                    assert answer.headers["www-authenticate"] == ['Bearer realm="warden"']

    check()


PROTECTED = tuple(op for op in OPERATIONS if op.protected)


@pytest.mark.parametrize("op", PROTECTED, ids=lambda op: op.label)
def test_generated_requests_with_signed_tokens_of_bad_claims_get_documented_401s(
    jwt_api: tuple[Api, dict[str, str]], op: Operation
) -> None:
    api, tokens = jwt_api

    @run_settings(2)
    @given(case=api.requests(op))
    def check(case: schemathesis.Case) -> None:
        for label, token in tokens.items():
            answer = send(case, auth(token))
            assert answer.status_code in (400, 401), (label, answer.status_code)
            if answer.status_code == 401:
                assert answer.headers["x-error-code"] == ["invalid_token"], label

    check()


def expect(
    api: Api, method: str, path: str, status: int, headers: Mapping[str, str], **request: Any
) -> schemathesis.Response:
    """Send one hand-written request; its answer must have ``status`` and conform to the schema."""
    answer = api.operation(method, path).Case(**request).call_and_validate(headers=dict(headers))
    assert answer.status_code == status, answer.text
    return answer


def infer_body(image: bytes, **parameters: Any) -> dict[str, Any]:
    encoded = base64.b64encode(image).decode()
    return {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [encoded]}],
        "parameters": parameters,
    }


def test_valid_detection_requests_get_documented_answers(api: Api, world: World) -> None:
    detect, image = auth(world.alpha_detect), SAMPLE_IMAGE.read_bytes()
    tiny = {"name": "tiny"}
    expect(api, "GET", "/v1/models", 200, detect)
    expect(
        api, "POST", "/v1/models/{name}/detect", 200, detect, path_parameters=tiny, body=image, media_type="image/jpeg"
    )
    expect(
        api,
        "POST",
        "/v1/models/{name}/detect",
        200,
        detect,
        path_parameters=tiny,
        query={"conf": 0.5, "max_det": 10},
        body={"image": image},
        media_type="multipart/form-data",
    )
    for path in ("/v2/health/live", "/v2/health/ready", "/v2"):
        expect(api, "GET", path, 200, {})
    for path in ("/v2/models/{name}", "/v2/models/{name}/ready"):
        expect(api, "GET", path, 200, detect, path_parameters=tiny)
    for path in ("/v2/models/{name}/versions/{version}", "/v2/models/{name}/versions/{version}/ready"):
        expect(api, "GET", path, 200, detect, path_parameters={**tiny, "version": "1"})
    infer = "/v2/models/{name}/infer"
    answer = expect(
        api, "POST", infer, 200, detect, path_parameters=tiny, body=infer_body(image), media_type="application/json"
    )
    assert answer.headers["content-type"] == ["application/json"]
    binary_out = infer_body(image, binary_data_output=True)
    answer = expect(
        api, "POST", infer, 200, detect, path_parameters=tiny, body=binary_out, media_type="application/json"
    )
    assert answer.headers["content-type"] == ["application/octet-stream"]
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4 + len(image)}}
            ]
        }
    ).encode()
    expect(
        api,
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        200,
        {**detect, HEADER_LENGTH: str(len(header))},
        path_parameters={**tiny, "version": "1"},
        body=header + struct.pack("<I", len(image)) + image,
        media_type="application/octet-stream",
    )


def test_an_operators_valid_requests_get_documented_answers(api: Api, world: World) -> None:
    operator, onnx = auth(world.operator), "application/octet-stream"
    tenant = {"name": "lifecycle"}
    model = {**tenant, "model": "pets"}
    expect(api, "POST", "/admin/tenants", 201, operator, body=tenant, media_type="application/json")
    expect(api, "POST", "/admin/tenants", 409, operator, body=tenant, media_type="application/json")
    expect(api, "GET", "/admin/tenants", 200, operator)
    expect(api, "GET", "/admin/tenants/{name}", 200, operator, path_parameters=tenant)
    issued = expect(
        api,
        "POST",
        "/admin/tenants/{name}/keys",
        201,
        operator,
        path_parameters=tenant,
        body={"scope": "detect"},
        media_type="application/json",
    ).json()
    expect(api, "GET", "/admin/tenants/{name}/keys", 200, operator, path_parameters=tenant)
    push = "/admin/tenants/{name}/models/{model}"
    for score in (0.6, 0.5):
        expect(
            api,
            "POST",
            push,
            201,
            operator,
            path_parameters=model,
            query={"alias": "stable"},
            body=tiny_graph(score),
            media_type=onnx,
        )
    expect(api, "POST", push, 400, operator, path_parameters=model, body=b"not onnx", media_type=onnx)
    not_detection = yolo_graph(anchor_free_rows([Box(8, 8, 4, 4, 0, 0.9)], 1, 84), metadata={"task": "classify"})
    expect(api, "POST", push, 422, operator, path_parameters=model, body=not_detection, media_type=onnx)
    expect(api, "GET", "/admin/tenants/{name}/models", 200, operator, path_parameters=tenant)
    alias = "/admin/tenants/{name}/models/{model}/aliases/{alias}"
    canary = {**model, "alias": "canary"}
    expect(
        api,
        "PUT",
        alias,
        200,
        operator,
        path_parameters=canary,
        body={"version": 2, "weight": 10},
        media_type="application/json",
    )
    expect(
        api,
        "PUT",
        alias,
        400,
        operator,
        path_parameters=canary,
        body={"version": MAX_VERSION + 1},
        media_type="application/json",
    )
    expect(api, "DELETE", push, 204, operator, path_parameters=model, query={"version": 1})
    expect(api, "DELETE", "/admin/keys/{key_id}", 200, operator, path_parameters={"key_id": issued["key_id"]})
    expect(api, "POST", "/admin/tenants/{name}/suspend", 200, operator, path_parameters=tenant)
    expect(api, "POST", "/admin/tenants/{name}/resume", 200, operator, path_parameters=tenant)
    expect(api, "DELETE", "/admin/tenants/{name}", 204, operator, path_parameters=tenant)


def test_valid_approval_requests_and_decisions_get_documented_answers(api: Api, world: World) -> None:
    tenants = world.services.tenants
    scientist = auth(tenants.create_key("alpha", Scope.TRAIN).key)
    officer = auth(tenants.create_key("alpha", Scope.APPROVE).key)
    body = {"purpose": "fraud model", "datasets": ["tx:2"], "max_runs": 2, "expires": "30d", "runtimes": ["torch"]}
    created = expect(api, "POST", "/v1/approvals", 201, scientist, body=body, media_type="application/json").json()
    one = {"approval_id": created["id"]}
    expect(api, "GET", "/v1/approvals", 200, scientist, query={"state": "pending"})
    expect(api, "GET", "/v1/approvals/{approval_id}", 200, scientist, path_parameters=one)
    expect(api, "GET", "/admin/approvals", 200, officer, query={"state": "pending"})
    expect(api, "GET", "/admin/approvals/{approval_id}", 200, officer, path_parameters=one)
    decision = {"path_parameters": one, "media_type": "application/json"}
    expect(api, "POST", "/admin/approvals/{approval_id}/revoke", 409, officer, body={}, **decision)
    expect(api, "POST", "/admin/approvals/{approval_id}/reject", 400, officer, body={}, **decision)
    expect(api, "POST", "/admin/approvals/{approval_id}/approve", 200, officer, body={"reason": "ok"}, **decision)
    expect(api, "POST", "/admin/approvals/{approval_id}/approve", 409, officer, body={}, **decision)
    expect(api, "POST", "/v1/approvals/{approval_id}/withdraw", 409, scientist, path_parameters=one)
    expect(api, "POST", "/admin/approvals/{approval_id}/revoke", 200, officer, body={"reason": "done"}, **decision)
    other = expect(api, "POST", "/v1/approvals", 201, scientist, body=body, media_type="application/json").json()
    expect(
        api,
        "POST",
        "/v1/approvals/{approval_id}/withdraw",
        200,
        scientist,
        path_parameters={"approval_id": other["id"]},
    )


def test_a_tenants_valid_dataset_requests_get_documented_answers(world: World) -> None:
    if filesystem_type(SHM) != "tmpfs":
        pytest.skip(f"{SHM} is not a tmpfs here: dataset schema walk NOT run")
    staging = Path(tempfile.mkdtemp(prefix="warden-test-schema-", dir=SHM))
    try:
        app = create_app(with_datasets(world, staging))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
        api = Api(app, schema, {})
        admin, named = auth(world.alpha_admin), {"name": "walked"}
        body, csv = customers_csv(CUSTOMERS[:4]), "text/csv"
        push = "/v1/datasets/{name}"
        expect(api, "POST", push, 201, admin, path_parameters=named, body=body, media_type=csv)
        expect(api, "POST", push, 201, admin, path_parameters=named, query={"format": "csv"}, body=body, media_type=csv)
        expect(api, "POST", push, 415, admin, path_parameters=named, query={"format": "zip"}, body=body, media_type=csv)
        expect(api, "GET", "/v1/datasets", 200, admin)
        expect(api, "GET", push, 200, admin, path_parameters=named)
        expect(api, "GET", push, 404, admin, path_parameters={"name": "missing"})
        one = "/v1/datasets/{name}/versions/{version}"
        expect(api, "DELETE", one, 200, admin, path_parameters={**named, "version": 1})
        expect(api, "DELETE", one, 404, admin, path_parameters={**named, "version": 9})
        expect(api, "DELETE", push, 200, admin, path_parameters=named)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def test_an_undeclared_method_answers_405_with_the_allowed_methods(world: World) -> None:
    answer = world.client.patch("/v1/models", headers=auth(world.alpha_detect))
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert answer.headers["allow"] == "GET"


def test_a_version_written_in_other_digits_is_not_found(world: World, lenient: TestClient) -> None:
    answer = lenient.get("/v2/models/tiny/versions/²", headers=auth(world.alpha_detect))
    assert answer.status_code == 404


def test_a_version_past_the_databases_integers_is_not_found(world: World, lenient: TestClient) -> None:
    answer = lenient.get(f"/v2/models/tiny/versions/{2**63}", headers=auth(world.alpha_detect))
    assert answer.status_code == 404


def test_a_header_length_in_other_digits_is_refused(world: World) -> None:
    # A test client re-encodes header values; a real server passes the byte 0xB2 on as '²'.
    with running_server(create_app(world.services)) as url:
        connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
        connection.putrequest("POST", "/v2/models/tiny/infer")
        connection.putheader("Authorization", f"Bearer {world.alpha_detect}")
        connection.putheader(HEADER_LENGTH, b"\xb2")
        connection.putheader("Content-Length", "2")
        connection.endheaders(b"{}")
        status = connection.getresponse().status
        connection.close()
    assert status == 400


def test_revoking_a_key_id_with_a_nul_byte_is_not_found(world: World, lenient: TestClient) -> None:
    answer = lenient.delete("/admin/keys/a%00b", headers=auth(world.operator))
    assert answer.status_code == 404


def test_a_tenant_name_with_a_trailing_newline_is_refused(world: World) -> None:
    answer = world.client.post("/admin/tenants", json={"name": "newline\n"}, headers=auth(world.operator))
    assert answer.status_code == 400


@pytest.mark.parametrize("op", ADMIN_OPERATIONS, ids=lambda op: op.label)
def test_generated_requests_with_the_operator_key_get_documented_answers(api: Api, world: World, op: Operation) -> None:
    @run_settings(EXAMPLES)
    @given(case=api.requests(op))
    def check(case: schemathesis.Case) -> None:
        send(case, auth(world.operator))

    check()


def test_every_route_but_health_and_server_metadata_declares_its_credentials(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader", "APIKeyCookie"}
    open_routes = {"/v2/health/live", "/v2/health/ready", "/v2"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            declared = operation.get("security")
            if path in open_routes or (path, method) == ("/console/session", "post"):  # the sign-in takes a key
                assert declared is None, path
            elif path == "/console/session":
                assert declared == [{"APIKeyCookie": []}], path
            else:
                assert declared == [{"HTTPBearer": []}, {"APIKeyHeader": []}, {"APIKeyCookie": []}], path
