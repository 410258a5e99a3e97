"""``PUT /admin/tenants/{t}/models/{m}/versions/{v}/run-cap`` and the run-time caps in the version listings.

Operators only: the cap is what keeps a tenant's model from holding the workers, so a tenant's
own admin key is refused (403) whatever the model. Through the shared world of tests/api/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import World
from warden.audit import AuditEvent, AuditFilter
from warden.registry import RUN_CAP_FLOOR_MS

ROUTE = "/admin/tenants/{tenant}/models/{model}/versions/{version}/run-cap"
CAP_FIELDS = ("measured_run_ms", "run_cap_ms", "effective_run_cap_ms", "run_cap_source")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def put_cap(
    world: World, key: str, body: object, tenant: str = "alpha", model: str = "tiny", version: int | str = 1
) -> tuple[int, Any, AuditEvent]:
    """PUT a run cap; the status, the JSON answer and the request's audit record."""
    request_id = uuid.uuid4().hex
    answer = world.client.put(
        ROUTE.format(tenant=tenant, model=model, version=version),
        json=body,
        headers={**bearer(key), "X-Request-ID": request_id},
    )
    assert world.services.audit.flush(timeout=30)
    [entry] = list(world.services.audit.scan(AuditFilter(request_id=request_id)))
    return answer.status_code, answer.json(), entry.event


def caps(world: World, tenant: str = "alpha") -> dict[str, list[tuple[Any, ...]]]:
    """Each model's versions as the operator's listing shows them: (version, run_cap_ms, effective, source)."""
    listed = world.client.get(f"/admin/tenants/{tenant}/models", headers=bearer(world.operator)).json()
    return {
        m["name"]: [
            (v["version"], v["run_cap_ms"], v["effective_run_cap_ms"], v["run_cap_source"]) for v in m["versions"]
        ]
        for m in listed
    }


@pytest.fixture
def reset(world: World) -> Iterator[None]:
    """Put alpha's ``tiny`` back to its derived cap after the test (the world is shared by the module)."""
    yield
    world.services.registry.set_run_cap(world.services.tenants.tenant_id("alpha"), "tiny", 1, None)


def test_the_version_listing_shows_the_measured_run_and_the_cap(world: World) -> None:
    listed = world.client.get("/admin/tenants/alpha/models", headers=bearer(world.operator)).json()
    versions = {m["name"]: m["versions"][0] for m in listed}
    for name in ("fall", "tiny"):
        assert [f for f in versions[name] if f in CAP_FIELDS] == list(CAP_FIELDS)
        assert versions[name]["measured_run_ms"] > 0
        assert versions[name]["run_cap_ms"] is None
        assert versions[name]["run_cap_source"] == "derived"
    assert versions["tiny"]["effective_run_cap_ms"] == RUN_CAP_FLOOR_MS
    assert versions["fall"]["effective_run_cap_ms"] >= RUN_CAP_FLOOR_MS
    own = world.client.get("/admin/tenants/alpha/models", headers=bearer(world.alpha_admin)).json()
    assert own == listed  # a tenant admin sees its caps, it cannot set them


@pytest.mark.usefixtures("reset")
def test_an_operator_sets_a_cap_and_goes_back_to_the_derived_one(world: World) -> None:
    alpha = world.services.tenants.tenant_id("alpha")
    status, answer, event = put_cap(world, world.operator, {"run_cap_ms": 250})
    assert status == 200, answer
    [tiny] = answer["versions"]
    assert tuple(tiny[f] for f in CAP_FIELDS[1:]) == (250.0, 250.0, "set")
    assert caps(world)["tiny"] == [(1, 250.0, 250.0, "set")]
    assert world.services.registry.resolve(alpha, "tiny").run_cap_ms == 250.0
    assert (event.action, event.target, event.status) == ("model.run_cap", "alpha/tiny", 200)
    assert (event.details["version"], event.details["run_cap_ms"]) == (1, 250.0)
    assert event.key_id is not None
    assert event.key_id in world.operator

    status, answer, event = put_cap(world, world.operator, {"run_cap_ms": None})
    assert status == 200, answer
    assert caps(world)["tiny"] == [(1, None, RUN_CAP_FLOOR_MS, "derived")]
    assert world.services.registry.resolve(alpha, "tiny").run_cap_ms == RUN_CAP_FLOOR_MS
    assert event.details["run_cap_ms"] is None


@pytest.mark.parametrize(
    ("who", "tenant", "model"),
    [
        ("alpha_admin", "alpha", "tiny"),  # its own model
        ("alpha_admin", "beta", "tiny"),  # another tenant's: refused the same, before any lookup
        ("alpha_admin", "no-such-tenant", "tiny"),
        ("alpha_detect", "alpha", "tiny"),
    ],
)
def test_a_tenant_key_cannot_set_a_cap(world: World, who: str, tenant: str, model: str) -> None:
    before = {name: caps(world, name) for name in ("alpha", "beta")}
    status, answer, event = put_cap(world, getattr(world, who), {"run_cap_ms": 9000}, tenant=tenant, model=model)
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert event.error_code == "forbidden"
    assert {name: caps(world, name) for name in ("alpha", "beta")} == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"run_cap_ms": 0}, 400, "invalid_argument"),
        ({"run_cap_ms": -5}, 400, "invalid_argument"),
        ({"run_cap_ms": 10_000.5}, 400, "invalid_argument"),  # past WARDEN_MAX_RUN_MS
        ({"run_cap_ms": "soon"}, 400, "invalid_argument"),
        ({}, 400, "invalid_argument"),  # null must be said, not implied
        ([250], 400, "invalid_argument"),
    ],
)
def test_a_bad_cap_is_refused_and_nothing_changes(world: World, body: object, status: int, code: str) -> None:
    got, answer, _ = put_cap(world, world.operator, body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert caps(world)["tiny"] == [(1, None, RUN_CAP_FLOOR_MS, "derived")]


def test_a_cap_past_the_max_names_the_setting(world: World) -> None:
    _, answer, _ = put_cap(world, world.operator, {"run_cap_ms": 20_000})
    assert answer["error"]["message"] == (
        "run_cap_ms must be above 0 and at most WARDEN_MAX_RUN_MS (10000 ms), got 20000"
    )


@pytest.mark.parametrize(
    ("tenant", "model", "version", "code"),
    [
        ("alpha", "tiny", 2, "model_not_found"),
        ("alpha", "ghost", 1, "model_not_found"),
        ("no-such-tenant", "tiny", 1, "tenant_not_found"),
    ],
)
def test_a_cap_for_a_missing_version_is_not_found(
    world: World, tenant: str, model: str, version: int, code: str
) -> None:
    status, answer, _ = put_cap(world, world.operator, {"run_cap_ms": 100}, tenant=tenant, model=model, version=version)
    assert (status, answer["error"]["code"]) == (404, code)
