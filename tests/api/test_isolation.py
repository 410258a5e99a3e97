"""The isolation matrix: every tenant-facing route against every kind of credential.

A caller reaches exactly its own tenant's models, and only through a verified
credential: other tenants' keys, revoked and suspended keys, wrong scopes,
malformed credentials and forged tenant selectors (headers, query, body fields)
never reach anything else. Each case checks the status, the error body of its
API, and that the answer holds nothing of a tenant the caller does not belong to.

Beyond the shared ``world``: ``alpha`` gets ``alpha-only``; ``beta``'s ``tiny``
gets a version 2 while its ``stable`` alias keeps serving version 1; ``gamma``
(with ``tiny``) is suspended; ``alpha`` has a revoked detect and admin key.
Every model is a small graph whose single detection's score names it.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import World, tiny_graph
from tests.api.test_datasets import with_datasets
from tests.datasets.conftest import SHM, customers_csv
from warden.datasets.staging import filesystem_type
from warden.samples import SAMPLE_IMAGE
from warden.tenancy import Scope

IMAGE = SAMPLE_IMAGE.read_bytes()

# The score of each tenant's model versions: a detection's score says which model answered.
SCORES: dict[str, dict[str, list[float]]] = {
    "alpha": {"tiny": [0.9], "alpha-only": [0.65]},
    "beta": {"tiny": [0.8, 0.75], "beta-only": [0.7]},
    "gamma": {"tiny": [0.6]},
}
SERVED_VERSION = 1  # beta's stable alias keeps tiny at version 1; every other model has only version 1


@dataclass
class Cast:
    """The world's keys plus the ones made here, and what each tenant must never show another."""

    world: World
    keys: dict[str, str]
    key_ids: dict[str, str]
    secrets: dict[str, list[str]] = field(default_factory=dict)

    def foreign_secrets(self, owner: str | None) -> list[str]:
        return [s for tenant, values in self.secrets.items() if tenant != owner for s in values]


@pytest.fixture(scope="module")
def cast(world: World) -> Cast:
    tenants, registry = world.services.tenants, world.services.registry
    alpha, beta = tenants.tenant_id("alpha"), tenants.tenant_id("beta")
    registry.push(alpha, "alpha-only", tiny_graph(0.65))
    registry.push(beta, "tiny", tiny_graph(0.75))
    registry.set_alias(beta, "tiny", "stable", 1)
    tenants.create_tenant("gamma")
    registry.push(tenants.tenant_id("gamma"), "tiny", tiny_graph(0.6))
    issued = {
        "gamma_detect": tenants.create_key("gamma", Scope.DETECT),
        "gamma_admin": tenants.create_key("gamma", Scope.ADMIN),
        "alpha_revoked": tenants.create_key("alpha", Scope.DETECT),
        "alpha_revoked_admin": tenants.create_key("alpha", Scope.ADMIN),
        "beta_admin": tenants.create_key("beta", Scope.ADMIN),
    }
    tenants.set_status("gamma", "suspended")
    tenants.revoke_key(issued["alpha_revoked"].key_id)
    tenants.revoke_key(issued["alpha_revoked_admin"].key_id)
    beta_data = push_beta_dataset(world)
    keys = {name: key.key for name, key in issued.items()} | {
        "alpha_detect": world.alpha_detect,
        "alpha_admin": world.alpha_admin,
        "beta_detect": world.beta_detect,
        "operator": world.operator,
    }
    found = Cast(world=world, keys=keys, key_ids={name: key.split("_")[1] for name, key in keys.items()})
    for tenant in SCORES:
        tenant_id = tenants.tenant_id(tenant)
        models = registry.list_models(tenant_id)
        found.secrets[tenant] = [
            *(m.name for m in models if m.name not in ("tiny", "fall")),  # names no other tenant has
            *(v.sha256 for m in models for v in m.versions),
            *(k.key_id for k in tenants.list_keys(tenant)),
            *(beta_data if tenant == "beta" else []),
        ]
    return found


def push_beta_dataset(world: World) -> list[str]:
    """Beta's dataset ``beta-data`` (pushed without NER, staged on /dev/shm); its name and hashes, or none."""
    if filesystem_type(SHM) != "tmpfs":
        return []
    staging = Path(tempfile.mkdtemp(prefix="warden-test-isolation-", dir=SHM))
    try:
        service = with_datasets(world, staging).datasets
        pushed = service.push(world.services.tenants.tenant_id("beta"), "beta-data", customers_csv(), "csv", actor="t")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ["beta-data", pushed.sha256, pushed.source_sha256]


# Credentials: how they are presented, and whose models (if anyone's) they reach.


@dataclass(frozen=True)
class Credential:
    label: str
    headers: Callable[[Cast], dict[str, str]]
    owner: str | None = None  # the tenant it acts for; None for refused credentials and operators

    def __str__(self) -> str:
        return self.label


def bearer(name: str) -> Callable[[Cast], dict[str, str]]:
    return lambda cast: {"Authorization": f"Bearer {cast.keys[name]}"}


def raw(headers: dict[str, str]) -> Callable[[Cast], dict[str, str]]:
    return lambda cast: headers


def alpha_key(make: Callable[[str], str], header: str = "Authorization") -> Callable[[Cast], dict[str, str]]:
    return lambda cast: {header: make(cast.keys["alpha_detect"])}


def spliced(cast: Cast) -> dict[str, str]:
    """Alpha's key id with beta's secret."""
    _, alpha_id, _ = cast.keys["alpha_detect"].split("_", 2)
    _, _, beta_secret = cast.keys["beta_detect"].split("_", 2)
    return {"Authorization": f"Bearer wdn_{alpha_id}_{beta_secret}"}


OWN = [
    Credential("alpha detect key", bearer("alpha_detect"), "alpha"),
    Credential("alpha detect key as X-API-Key", lambda c: {"X-API-Key": c.keys["alpha_detect"]}, "alpha"),
    Credential("alpha key lowercase scheme", alpha_key(lambda k: f"bearer {k}"), "alpha"),
    Credential(
        "alpha bearer with beta X-API-Key",
        lambda c: {"Authorization": f"Bearer {c.keys['alpha_detect']}", "X-API-Key": c.keys["beta_detect"]},
        "alpha",
    ),
    Credential("beta detect key", bearer("beta_detect"), "beta"),
]

MALFORMED = [
    Credential("no key", raw({})),
    Credential("Bearer alone", raw({"Authorization": "Bearer"})),
    Credential("Bearer and spaces", raw({"Authorization": "Bearer   "})),
    Credential("Bearer x", raw({"Authorization": "Bearer x"})),
    Credential("Basic abc", raw({"Authorization": "Basic abc"})),
    Credential("Basic with alpha key", alpha_key(lambda k: f"Basic {base64.b64encode(f'{k}:'.encode()).decode()}")),
    Credential("Token scheme with alpha key", alpha_key(lambda k: f"Token {k}")),
    Credential("alpha key without scheme", alpha_key(lambda k: k)),
    Credential("alpha key with trailing junk", alpha_key(lambda k: f"Bearer {k} alpha")),
    Credential("empty X-API-Key", raw({"X-API-Key": ""})),
    Credential("X-API-Key with Bearer prefix", alpha_key(lambda k: f"Bearer {k}", "X-API-Key")),
    Credential("wdn_ alone", raw({"Authorization": "Bearer wdn_"})),
    Credential("wdn_ secret one short", alpha_key(lambda k: f"Bearer {k[:-1]}")),
    Credential("wdn_ secret one long", alpha_key(lambda k: f"Bearer {k}A")),
    Credential("wdn_ key id 11 hex", alpha_key(lambda k: f"Bearer wdn_{k[5:16]}_{k[17:]}")),
    Credential("wdn_ key id 13 hex", alpha_key(lambda k: f"Bearer wdn_{k[4:16]}0_{k[17:]}")),
    Credential("wdn_ key id not hex", alpha_key(lambda k: f"Bearer wdn_{k[4:15]}g_{k[17:]}")),
    Credential("WDN_ prefix", alpha_key(lambda k: f"Bearer WDN_{k[4:]}")),
    Credential("alpha key id with beta secret", spliced),
    Credential("5000-char credential", raw({"Authorization": "Bearer " + "A" * 5000})),
    Credential("unsigned JWT", raw({"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJhbHBoYSJ9."})),
    Credential(
        "bad Bearer with good X-API-Key", lambda c: {"Authorization": "Bearer x", "X-API-Key": c.keys["alpha_detect"]}
    ),
    Credential(
        "Basic with good X-API-Key", lambda c: {"Authorization": "Basic abc", "X-API-Key": c.keys["alpha_detect"]}
    ),
    Credential("alpha revoked detect key", bearer("alpha_revoked")),
    Credential("alpha revoked admin key", bearer("alpha_revoked_admin")),
]

SUSPENDED = [
    Credential("gamma (suspended) detect key", bearer("gamma_detect")),
    Credential("gamma (suspended) admin key", bearer("gamma_admin")),
]

WRONG_SCOPE_FOR_DETECT = [
    Credential("alpha admin key", bearer("alpha_admin")),
    Credential("beta admin key", bearer("beta_admin")),
    Credential("operator key", bearer("operator")),
]

# Routes: every /v1 and /v2 route that names or lists a tenant's models.


@dataclass(frozen=True)
class Route:
    label: str
    method: str
    path: str  # with {model} and {version} where the route takes them
    body: str | None = None  # "image" (v1 detect) or "infer" (v2 JSON)

    @property
    def oip(self) -> bool:
        return self.path.startswith("/v2")

    @property
    def versioned(self) -> bool:
        return "{version}" in self.path

    @property
    def per_model(self) -> bool:
        return "{model}" in self.path


ROUTES = [
    Route("v1 detect", "POST", "/v1/models/{model}/detect", "image"),
    Route("v1 list models", "GET", "/v1/models"),
    Route("v2 model metadata", "GET", "/v2/models/{model}"),
    Route("v2 version metadata", "GET", "/v2/models/{model}/versions/{version}"),
    Route("v2 model ready", "GET", "/v2/models/{model}/ready"),
    Route("v2 version ready", "GET", "/v2/models/{model}/versions/{version}/ready"),
    Route("v2 infer", "POST", "/v2/models/{model}/infer", "infer"),
    Route("v2 version infer", "POST", "/v2/models/{model}/versions/{version}/infer", "infer"),
]

# (model, version): both tenants have tiny v1; only beta has tiny v2; one model each of their own.
TARGETS = [("tiny", 1), ("tiny", 2), ("alpha-only", 1), ("beta-only", 1)]


def targets_of(route: Route) -> list[tuple[str, int]]:
    if not route.per_model:
        return [("", SERVED_VERSION)]
    return [t for t in TARGETS if route.versioned or t[1] == SERVED_VERSION]


def infer_body(**extra: Any) -> dict[str, Any]:
    image = base64.b64encode(IMAGE).decode()
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}], **extra}


def call(
    cast: Cast,
    route: Route,
    model: str,
    version: int,
    headers: dict[str, str],
    *,
    query: str = "",
    form: dict[str, str] | None = None,
    infer_extra: dict[str, Any] | None = None,
) -> httpx.Response:
    url = route.path.format(model=model, version=version) + query
    kwargs: dict[str, Any] = {}
    if route.body == "image" and form is not None:
        kwargs = {"files": {"image": ("photo.jpg", IMAGE, "image/jpeg")}, "data": form}
    elif route.body == "image":
        kwargs = {"content": IMAGE}
        headers = {**headers, "Content-Type": "image/jpeg"}
    elif route.body == "infer":
        kwargs = {"content": json.dumps(infer_body(**(infer_extra or {})))}
        headers = {**headers, "Content-Type": "application/json"}
    return cast.world.client.request(route.method, url, headers=headers, **kwargs)


# What an answer must be.


def assert_error(answer: httpx.Response, status: int, code: str, *, oip: bool) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    if oip:
        assert list(body) == ["error"]
        assert isinstance(body["error"], str)
    else:
        assert list(body) == ["error"]
        assert sorted(body["error"]) == ["code", "message"]
        assert body["error"]["code"] == code
    assert answer.headers["X-Error-Code"] == code
    assert "X-Model-Version" not in answer.headers


def scores_in(body: object) -> list[float]:
    """Detection scores in a /v1 detect or a /v2 infer answer."""
    if not isinstance(body, dict):
        return []
    scores = [d["score"] for d in body.get("detections", [])]
    if "model_name" in body:
        scores += [x for output in body["outputs"] if output["name"] == "scores" for x in output.get("data", [])]
    return scores


def assert_nothing_foreign(cast: Cast, answer: httpx.Response, owner: str | None, asked: str = "") -> None:
    """Nothing of a tenant other than ``owner`` (all of them for refused callers): names, sha256s, key ids, scores.

    A 404 may echo the model name the caller asked for; that is the caller's own input.
    """
    text = answer.text
    for secret in cast.foreign_secrets(owner):
        if secret == asked and answer.status_code == 404:
            continue
        assert secret not in text, f"{secret!r} leaked to a caller of {owner}"
    foreign = [s for tenant, models in SCORES.items() if tenant != owner for v in models.values() for s in v]
    for score in scores_in(answer.json()):
        assert not any(math.isclose(score, f, abs_tol=1e-6) for f in foreign), f"score {score} of another tenant"


def assert_served(answer: httpx.Response, route: Route, owner: str, model: str, version: int) -> None:
    """The caller's own model answered (or 404 when the caller has no such model or version)."""
    own = SCORES[owner]
    if not route.per_model:
        assert answer.status_code == 200, answer.text
        listed = answer.json()["models"]
        assert [m["name"] for m in listed] == sorted([*own, "fall"] if owner == "alpha" else own)
        assert {m["name"]: m["versions"] for m in listed if m["name"] in own} == {
            name: list(range(1, len(scores) + 1)) for name, scores in own.items()
        }
        return
    if model not in own or version > len(own[model]):
        assert_error(answer, 404, "model_not_found", oip=route.oip)
        return
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == str(version)
    body = answer.json()
    score = own[model][version - 1]
    if route.body == "image":
        assert (body["model"], body["model_version"]) == (model, version)
        assert [d["score"] for d in body["detections"]] == [pytest.approx(score)]
    elif route.body == "infer":
        assert (body["model_name"], body["model_version"]) == (model, str(version))
        assert scores_in(body) == [pytest.approx(score)]
    elif route.path.endswith("ready"):
        assert body == {"name": model, "version": str(version), "ready": True}
    else:
        assert (body["name"], body["versions"]) == (model, [str(version)])


def case_id(route: Route, model: str, version: int, who: object) -> str:
    target = f" {model}" + (f" v{version}" if route.versioned else "") if route.per_model else ""
    return f"{route.label}{target} / {who}"


# 1. Accepted credentials reach their own tenant's model of that name, and nothing else.

OWNER_CASES = [
    pytest.param(route, model, version, who, id=case_id(route, model, version, who))
    for route in ROUTES
    for model, version in targets_of(route)
    for who in OWN
]


@pytest.mark.parametrize(("route", "model", "version", "who"), OWNER_CASES)
def test_a_tenant_key_reaches_only_its_own_models(
    cast: Cast, route: Route, model: str, version: int, who: Credential
) -> None:
    assert who.owner is not None
    answer = call(cast, route, model, version, who.headers(cast))
    assert_served(answer, route, who.owner, model, version)
    assert_nothing_foreign(cast, answer, who.owner, model)


# 2. Refused credentials get the same refusal on every route, before any model is looked up.

REFUSED = [(c, 401, "unauthenticated") for c in MALFORMED] + [
    (c, 403, "forbidden") for c in SUSPENDED + WRONG_SCOPE_FOR_DETECT
]
REFUSED_CASES = [
    pytest.param(route, model, who, (status, code), id=case_id(route, model, 1, f"{who} -> {status}"))
    for route in ROUTES
    for model in (["tiny", "beta-only"] if route.per_model else [""])
    for who, status, code in REFUSED
]


@pytest.mark.parametrize(("route", "model", "who", "expected"), REFUSED_CASES)
def test_a_refused_credential_reaches_nothing(
    cast: Cast, route: Route, model: str, who: Credential, expected: tuple[int, str]
) -> None:
    status, code = expected
    answer = call(cast, route, model, 1, who.headers(cast))
    assert_error(answer, status, code, oip=route.oip)
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="warden"'
    assert_nothing_foreign(cast, answer, None)


# 3. Forged tenant selectors next to alpha's key change nothing: alpha still sees only alpha.


@dataclass(frozen=True)
class Forgery:
    label: str
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    form: dict[str, str] | None = None  # multipart fields next to the image (v1 detect)
    infer_extra: dict[str, Any] | None = None  # JSON fields of the inference request (v2 infer)
    applies: Callable[[Route], bool] = lambda route: True
    refused: bool = False  # the body is refused as malformed (400) instead of served

    def __str__(self) -> str:
        return self.label


FORGERIES = [
    Forgery("X-Tenant: beta", headers={"X-Tenant": "beta"}),
    Forgery("X-Tenant-ID: beta", headers={"X-Tenant-ID": "beta"}),
    Forgery("X-Tenant-ID: 2", headers={"X-Tenant-ID": "2"}),
    Forgery("X-Warden-Tenant: beta", headers={"X-Warden-Tenant": "beta"}),
    Forgery("X-Forwarded-User: beta", headers={"X-Forwarded-User": "beta"}),
    Forgery("query tenant=beta", query="?tenant=beta"),
    Forgery("query tenant_id=2", query="?tenant_id=2&tenant=beta"),
    Forgery("multipart field tenant=beta", form={"tenant": "beta"}, applies=lambda r: r.body == "image"),
    Forgery(
        "infer parameters tenant=beta",
        infer_extra={"parameters": {"tenant": "beta", "tenant_id": 2}},
        applies=lambda r: r.body == "infer",
    ),
    Forgery(
        "infer top-level tenant=beta",
        infer_extra={"tenant": "beta"},
        applies=lambda r: r.body == "infer",
        refused=True,
    ),
]
FORGED_CASES = [
    pytest.param(route, model, forgery, id=case_id(route, model, 1, forgery))
    for route in ROUTES
    for model in (["tiny", "beta-only"] if route.per_model else [""])
    for forgery in FORGERIES
    if forgery.applies(route)
]


@pytest.mark.parametrize(("route", "model", "forgery"), FORGED_CASES)
def test_a_forged_tenant_selector_changes_nothing(cast: Cast, route: Route, model: str, forgery: Forgery) -> None:
    headers = {"Authorization": f"Bearer {cast.keys['alpha_detect']}", **forgery.headers}
    answer = call(
        cast, route, model, 1, headers, query=forgery.query, form=forgery.form, infer_extra=forgery.infer_extra
    )
    if forgery.refused and model in SCORES["alpha"]:  # the model is resolved first; a missing one answers 404
        assert_error(answer, 400, "invalid_argument", oip=route.oip)
    else:
        assert_served(answer, route, "alpha", model, 1)
    assert_nothing_foreign(cast, answer, "alpha", model)


@pytest.mark.parametrize(
    "path",
    ["/v2/models/beta:tiny", "/v2/models/beta.tiny", "/v2/models/beta%2Fbeta-only", "/v2/models/..%2Fbeta-only"],
)
def test_a_tenant_qualified_model_name_finds_nothing(cast: Cast, path: str) -> None:
    answer = cast.world.client.get(path, headers={"Authorization": f"Bearer {cast.keys['alpha_detect']}"})
    assert answer.status_code == 404
    assert list(answer.json()) == ["error"]
    assert_nothing_foreign(cast, answer, "alpha", path.rsplit("%2F", 1)[-1])


# 4. The admin API: routes that take a tenant name, by every kind of credential.


@dataclass(frozen=True)
class AdminRoute:
    label: str
    method: str
    path: str  # with {tenant}
    operator_only: bool = False
    changes_state: bool = False
    json: object = None
    upload: bool = False

    def __str__(self) -> str:
        return self.label


ADMIN_ROUTES = [
    AdminRoute("show tenant", "GET", "/admin/tenants/{tenant}"),
    AdminRoute("list keys", "GET", "/admin/tenants/{tenant}/keys"),
    AdminRoute("issue key", "POST", "/admin/tenants/{tenant}/keys", json={"scope": "detect"}),
    AdminRoute("list models", "GET", "/admin/tenants/{tenant}/models"),
    AdminRoute("set alias", "PUT", "/admin/tenants/{tenant}/models/tiny/aliases/stable", json={"version": 1}),
    AdminRoute(
        "set batching", "PUT", "/admin/tenants/{tenant}/models/tiny/versions/1/batching", json={"max_batch_size": None}
    ),
    AdminRoute(
        "set run cap",
        "PUT",
        "/admin/tenants/{tenant}/models/tiny/versions/1/run-cap",
        json={"run_cap_ms": None},
        operator_only=True,
    ),
    AdminRoute("push model", "POST", "/admin/tenants/{tenant}/models/tiny", changes_state=True, upload=True),
    AdminRoute("remove model", "DELETE", "/admin/tenants/{tenant}/models/tiny", changes_state=True),
    AdminRoute("suspend tenant", "POST", "/admin/tenants/{tenant}/suspend", operator_only=True, changes_state=True),
    AdminRoute("resume tenant", "POST", "/admin/tenants/{tenant}/resume", operator_only=True, changes_state=True),
    AdminRoute("delete tenant", "DELETE", "/admin/tenants/{tenant}", operator_only=True, changes_state=True),
]
ADMIN_SUCCESS = {"GET": 200, "PUT": 200, "POST": 201}


def admin_expectation(route: AdminRoute, who: str, tenant: str) -> tuple[int, str] | None:
    """Status and error code of ``who`` calling ``route`` on ``tenant``; None for a success that changes state."""
    refusals = {
        "no key": (401, "unauthenticated"),
        "malformed key": (401, "unauthenticated"),
        "alpha revoked admin key": (401, "unauthenticated"),
        "gamma (suspended) admin key": (403, "forbidden"),
        "alpha detect key": (403, "forbidden"),
        "beta detect key": (403, "forbidden"),
    }
    if who in refusals:
        return refusals[who]
    if who == "operator key":
        return None if route.changes_state else (ADMIN_SUCCESS[route.method], "")
    if route.operator_only:
        return 403, "forbidden"
    if who.startswith(tenant):
        return None if route.changes_state else (ADMIN_SUCCESS[route.method], "")
    return 404, "tenant_not_found"


ADMIN_CREDENTIALS: dict[str, Callable[[Cast], dict[str, str]]] = {
    "alpha admin key": bearer("alpha_admin"),
    "beta admin key": bearer("beta_admin"),
    "operator key": bearer("operator"),
    "alpha detect key": bearer("alpha_detect"),
    "beta detect key": bearer("beta_detect"),
    "alpha revoked admin key": bearer("alpha_revoked_admin"),
    "gamma (suspended) admin key": bearer("gamma_admin"),
    "no key": raw({}),
    "malformed key": alpha_key(lambda k: f"Bearer {k[:-1]}"),
}
ADMIN_CASES = [
    pytest.param(route, tenant, who, expected, id=f"{route} {tenant} / {who} -> {expected[0]}")
    for route in ADMIN_ROUTES
    for tenant in ("alpha", "beta")
    for who in ADMIN_CREDENTIALS
    if (expected := admin_expectation(route, who, tenant)) is not None
]


@pytest.mark.parametrize(("route", "tenant", "who", "expected"), ADMIN_CASES)
def test_the_admin_api_lets_each_key_manage_only_its_own_tenant(
    cast: Cast, route: AdminRoute, tenant: str, who: str, expected: tuple[int, str]
) -> None:
    headers = ADMIN_CREDENTIALS[who](cast)
    kwargs: dict[str, Any] = {}
    if route.json is not None:
        kwargs["json"] = route.json
    if route.upload:
        kwargs["content"] = tiny_graph(0.5)
        headers = {**headers, "Content-Type": "application/octet-stream"}
    answer = cast.world.client.request(route.method, route.path.format(tenant=tenant), headers=headers, **kwargs)
    status, code = expected
    if code:
        assert_error(answer, status, code, oip=False)
    else:
        assert answer.status_code == status, answer.text
    if who != "operator key":
        owner = who.split(maxsplit=1)[0] if answer.status_code < 400 else None
        assert_nothing_foreign(cast, answer, owner)


def test_a_tenant_admin_lists_only_its_own_tenant(cast: Cast) -> None:
    for who, owner in (("alpha_admin", "alpha"), ("beta_admin", "beta")):
        answer = cast.world.client.get("/admin/tenants", headers=bearer(who)(cast))
        assert [t["name"] for t in answer.json()] == [owner]
        assert_nothing_foreign(cast, answer, owner)
    everyone = cast.world.client.get("/admin/tenants", headers=bearer("operator")(cast)).json()
    assert {t["name"]: t["status"] for t in everyone} == {"alpha": "active", "beta": "active", "gamma": "suspended"}


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("alpha_admin", 404, "key_not_found"),
        ("alpha_detect", 403, "forbidden"),
        ("gamma_admin", 403, "forbidden"),
        ("alpha_revoked_admin", 401, "unauthenticated"),
    ],
)
def test_a_key_of_another_tenant_cannot_be_revoked(cast: Cast, who: str, status: int, code: str) -> None:
    beta_key_id = cast.key_ids["beta_detect"]
    answer = cast.world.client.delete(f"/admin/keys/{beta_key_id}", headers=bearer(who)(cast))
    assert_error(answer, status, code, oip=False)
    assert_nothing_foreign(cast, answer, None, beta_key_id)
    still = cast.world.client.get("/v1/models", headers=bearer("beta_detect")(cast))
    assert still.status_code == 200


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/models/a%00b", 404),
        ("/v2/models/a%00b/ready", 404),
        ("/v1/models/a%00b/detect", 404),
    ],
)
def test_regression_a_nul_byte_in_a_model_name_is_not_found_on_every_backend(
    world: World, path: str, code: int
) -> None:
    method = world.client.post if path.endswith("detect") else world.client.get
    answer = method(path, headers={"Authorization": f"Bearer {world.alpha_detect}"})
    assert answer.status_code == code


def test_regression_a_nul_byte_in_a_tenant_name_is_not_found_for_the_operator(world: World) -> None:
    answer = world.client.get("/admin/tenants/a%00b", headers={"Authorization": f"Bearer {world.operator}"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "tenant_not_found"


# 5. Approval requests: routes that take an approval id, by every kind of credential.

APPROVAL_ROUTES = [
    AdminRoute("list requests", "GET", "/v1/approvals"),
    AdminRoute("show request", "GET", "/v1/approvals/{approval}"),
    AdminRoute("withdraw request", "POST", "/v1/approvals/{approval}/withdraw", changes_state=True),
    AdminRoute("request", "POST", "/v1/approvals", changes_state=True, json={"purpose": "p"}),
    AdminRoute("inbox", "GET", "/admin/approvals"),
    AdminRoute("show approval", "GET", "/admin/approvals/{approval}"),
    AdminRoute("approve", "POST", "/admin/approvals/{approval}/approve", json={}),
    AdminRoute("reject", "POST", "/admin/approvals/{approval}/reject", json={"reason": "no"}),
    AdminRoute("revoke", "POST", "/admin/approvals/{approval}/revoke", json={}),
]


def approval_expectation(route: AdminRoute, who: str) -> tuple[int, str] | None:
    """Status and code of ``who`` on ``route`` for a pending request of alpha; None for a success that changes it.

    Tenants' admin keys request and read their own; operators read and revoke but never decide;
    nobody here holds an ``approve`` key (tests/api/test_approvals.py has them).
    """
    refused = admin_expectation(AdminRoute("", "GET", ""), who, "alpha")
    if refused is not None and refused[0] in (401, 403):
        return refused
    requester_route = route.path.startswith("/v1")
    if who == "operator key":
        if requester_route or route.label in ("approve", "reject"):
            return 403, "forbidden"
        return (409, "approval_not_approved") if route.label == "revoke" else (200, "")
    if not requester_route:
        return 403, "forbidden"
    if route.changes_state and who == "alpha admin key":
        return None
    if route.label == "request":
        return 400, "invalid_argument"  # beta's key, refused for its body: it reached only its own tenant
    if "{approval}" in route.path:
        return (200, "") if who == "alpha admin key" else (404, "approval_not_found")
    return 200, ""


APPROVAL_CASES = [
    pytest.param(route, who, expected, id=f"{route} / {who} -> {expected[0]}")
    for route in APPROVAL_ROUTES
    for who in ADMIN_CREDENTIALS
    if (expected := approval_expectation(route, who)) is not None
]


@pytest.fixture(scope="module")
def alpha_request(cast: Cast) -> str:
    """A pending approval request of alpha, by its admin key; its id."""
    body = {"purpose": "fraud model", "datasets": ["tx:1"], "max_runs": 1, "expires": "30d"}
    answer = cast.world.client.post("/v1/approvals", json=body, headers=bearer("alpha_admin")(cast))
    assert answer.status_code == 201, answer.text
    approval_id: str = answer.json()["id"]
    return approval_id


@pytest.mark.parametrize(("route", "who", "expected"), APPROVAL_CASES)
def test_approval_requests_are_reached_only_by_their_tenant_and_decided_by_no_admin_key(
    cast: Cast, alpha_request: str, route: AdminRoute, who: str, expected: tuple[int, str]
) -> None:
    kwargs: dict[str, Any] = {} if route.json is None else {"json": route.json}
    path = route.path.format(approval=alpha_request)
    answer = cast.world.client.request(route.method, path, headers=ADMIN_CREDENTIALS[who](cast), **kwargs)
    status, code = expected
    if code:
        assert_error(answer, status, code, oip=False)
    else:
        assert answer.status_code == status, answer.text
    if who.startswith("beta"):
        assert_nothing_foreign(cast, answer, "beta")
        if answer.status_code == 404:  # exactly the answer for an id that does not exist, which it echoes
            missing = "apr_" + "0" * 16
            absent = cast.world.client.request(
                route.method, path.replace(alpha_request, missing), headers=ADMIN_CREDENTIALS[who](cast), **kwargs
            )
            assert answer.text.replace(alpha_request, missing) == absent.text
        else:
            assert alpha_request not in answer.text
    if who in ("alpha admin key", "operator key") and answer.status_code == 200 and route.label != "revoke":
        assert alpha_request in answer.text
    still = cast.world.client.get(f"/v1/approvals/{alpha_request}", headers=bearer("alpha_admin")(cast))
    assert still.json()["state"] == "pending"


# 5. Datasets (/v1/datasets): the tenant comes from the key; another tenant's dataset is a missing one.


@dataclass(frozen=True)
class DatasetRoute:
    label: str
    method: str
    path: str  # with {name}
    success: int = 200

    def __str__(self) -> str:
        return self.label


DATASET_ROUTES = [
    DatasetRoute("list datasets", "GET", "/v1/datasets"),
    DatasetRoute("show dataset", "GET", "/v1/datasets/{name}"),
    DatasetRoute("erase dataset version", "DELETE", "/v1/datasets/{name}/versions/9"),
    DatasetRoute("erase dataset", "DELETE", "/v1/datasets/{name}"),
    DatasetRoute("push dataset", "POST", "/v1/datasets/{name}?format=csv"),
]
DATASET_REFUSED = {
    "no key": (raw({}), 401, "unauthenticated"),
    "malformed key": (alpha_key(lambda k: f"Bearer {k[:-1]}"), 401, "unauthenticated"),
    "alpha revoked admin key": (bearer("alpha_revoked_admin"), 401, "unauthenticated"),
    "gamma (suspended) admin key": (bearer("gamma_admin"), 403, "forbidden"),
    "alpha detect key": (bearer("alpha_detect"), 403, "forbidden"),
    "operator key": (bearer("operator"), 403, "forbidden"),
}


@pytest.mark.parametrize("route", DATASET_ROUTES, ids=str)
@pytest.mark.parametrize("who", list(DATASET_REFUSED))
def test_a_dataset_route_refuses_every_key_but_a_tenants_admin_or_train_key(
    cast: Cast, route: DatasetRoute, who: str
) -> None:
    headers, status, code = DATASET_REFUSED[who]
    answer = cast.world.client.request(
        route.method, route.path.format(name="beta-data"), headers=headers(cast), content=b"a,b\n1,2\n"
    )
    assert_error(answer, status, code, oip=False)
    assert_nothing_foreign(cast, answer, None, "beta-data")


@pytest.mark.parametrize("route", [r for r in DATASET_ROUTES if r.method != "POST"], ids=str)
def test_another_tenants_dataset_answers_exactly_like_a_missing_one(cast: Cast, route: DatasetRoute) -> None:
    beta = cast.world.services.tenants.tenant_id("beta")
    if not cast.world.services.datasets.list(beta):
        pytest.skip("beta holds no dataset here (no tmpfs for staging)")
    headers = bearer("alpha_admin")(cast)
    foreign = cast.world.client.request(route.method, route.path.format(name="beta-data"), headers=headers)
    missing = cast.world.client.request(route.method, route.path.format(name="nowhere"), headers=headers)
    assert foreign.status_code == missing.status_code
    assert foreign.text == missing.text.replace("nowhere", "beta-data")
    assert_nothing_foreign(cast, foreign, "alpha" if foreign.status_code == 200 else None, "beta-data")
    assert cast.world.services.datasets.get(beta, "beta-data").latest is not None
