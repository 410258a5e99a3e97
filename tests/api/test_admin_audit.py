"""The audit trail and usage over HTTP: each caller reads only what it may, filters and paging work, verify reports.

Through the in-process ASGI app over real SQLite and PostgreSQL (the shared world of tests/api/conftest.py).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest

from tests.api.conftest import World, tiny_graph
from warden.samples import SAMPLE_IMAGE
from warden.tenancy import Scope


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def detect(world: World, key: str, model: str = "tiny") -> str:
    """One detect request; its request id (its record is durable before the answer)."""
    request_id = uuid.uuid4().hex
    headers = bearer(key) | {"Content-Type": "image/jpeg", "X-Request-ID": request_id}
    world.client.post(f"/v1/models/{model}/detect", content=SAMPLE_IMAGE.read_bytes(), headers=headers)
    assert world.services.audit.flush(timeout=30)
    return request_id


def test_a_request_is_found_by_its_id_with_its_outcome(world: World) -> None:
    request_id = detect(world, world.alpha_detect)
    found = world.client.get("/admin/audit", params={"request_id": request_id}, headers=bearer(world.operator))
    assert found.status_code == 200, found.text
    (entry,) = found.json()["entries"]
    assert entry["event"]["request_id"] == request_id
    assert entry["event"]["tenant"] == "alpha"
    assert entry["outcome"] == "ok"
    assert found.json()["next"] is None


def test_a_tenant_admin_reads_only_its_own_tenants_records(world: World) -> None:
    beta_request = detect(world, world.beta_detect)
    alpha_request = detect(world, world.alpha_detect)
    admin = bearer(world.alpha_admin)
    mine = world.client.get("/admin/audit", params={"request_id": alpha_request}, headers=admin).json()["entries"]
    assert len(mine) == 1
    theirs = world.client.get("/admin/audit", params={"request_id": beta_request}, headers=admin).json()
    assert theirs["entries"] == []  # filtered to its own tenant, so beta's record is not there
    refused = world.client.get("/admin/audit", params={"tenant": "beta"}, headers=admin)
    assert refused.json()["error"]["code"] == "tenant_not_found"
    every = world.client.get("/admin/audit", params={"limit": 500}, headers=admin).json()["entries"]
    assert {entry["event"]["tenant"] for entry in every} <= {"alpha"}
    assert world.client.get("/admin/audit", headers=bearer(world.alpha_detect)).status_code == 403


def test_the_outcome_filter_and_paging_walk_every_matching_record_once(world: World) -> None:
    tenant_key = world.alpha_detect
    refused_ids = {detect(world, tenant_key, model=f"missing-{secrets.token_hex(3)}") for _ in range(3)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"outcome": "error", "tenant": "alpha", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = world.client.get("/admin/audit", params=params, headers=bearer(world.operator)).json()
        assert all(entry["outcome"] == "error" for entry in page["entries"])
        seen.extend(entry["event"]["request_id"] for entry in page["entries"])
        cursor = page["next"]
        if cursor is None:
            break
    assert refused_ids <= set(seen)  # 404 model_not_found is an error outcome
    assert len(seen) == len(set(seen))


def _cursor(moment: str, stream: str, seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([moment, stream, seq]).encode()).decode()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid_argument"),
        ({"cursor": _cursor("2026-12-01T00:00:00+00:00", "r1", 2**63)}, "invalid_argument"),
        ({"cursor": _cursor("2026-12-01T00:00:00", "r1", 5)}, "invalid_argument"),
        (
            {"cursor": base64.urlsafe_b64encode(b'["2026-12-01T00:00:00+00:00", "r1", 1e400]').decode()},
            "invalid_argument",
        ),
        ({"since": "yesterday"}, "invalid_argument"),
        ({"outcome": "maybe"}, "invalid_argument"),
        ({"limit": 0}, "invalid_argument"),
        ({"tenant": "Not A Name"}, "invalid_argument"),
    ],
)
def test_bad_filters_are_refused_with_a_code(world: World, params: dict[str, str | int], code: str) -> None:
    answer = world.client.get("/admin/audit", params=params, headers=bearer(world.operator))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code


def test_the_export_is_json_lines_of_the_filtered_records(world: World) -> None:
    request_id = detect(world, world.alpha_detect)
    answer = world.client.get("/admin/audit/export", params={"tenant": "alpha"}, headers=bearer(world.alpha_admin))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in answer.headers["content-disposition"]
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert request_id in {line["event"]["request_id"] for line in lines}
    assert {line["event"]["tenant"] for line in lines} == {"alpha"}


def test_only_an_operator_verifies_the_chains(world: World) -> None:
    detect(world, world.alpha_detect)
    report = world.client.post("/admin/audit/verify", headers=bearer(world.operator))
    assert report.status_code == 200
    assert report.json()["ok"] is True
    assert report.json()["streams"]
    assert world.client.post("/admin/audit/verify", headers=bearer(world.alpha_admin)).status_code == 403


def test_usage_counts_answers_refusals_and_latency_per_tenant(world: World) -> None:
    for _ in range(2):
        detect(world, world.beta_detect)
    detect(world, world.beta_detect, model="no-such-model")
    usage = world.client.get(
        "/admin/usage", params={"tenant": "beta", "minutes": 5, "bucket_seconds": 60}, headers=bearer(world.operator)
    ).json()
    assert set(usage["tenants"]) == {"beta"}
    buckets = usage["tenants"]["beta"]
    assert len(buckets) == 5
    assert sum(bucket["ok"] for bucket in buckets) >= 2
    assert sum(bucket["refusals"].get("model_not_found", 0) for bucket in buckets) >= 1
    assert any(bucket["p50_ms"] is not None and bucket["p99_ms"] >= bucket["p50_ms"] for bucket in buckets)
    assert usage["truncated"] is False
    assert set(usage["live"]) <= {"beta"}  # this replica's queue; empty once the requests are done


def test_a_detect_key_reads_only_its_own_usage_and_an_admin_only_its_tenants(world: World) -> None:
    detect(world, world.alpha_detect)
    own = world.client.get("/v1/usage", params={"minutes": 5}, headers=bearer(world.alpha_detect)).json()
    assert set(own["tenants"]) == {"alpha"}
    admin = bearer(world.alpha_admin)
    assert set(world.client.get("/admin/usage", headers=admin).json()["tenants"]) == {"alpha"}
    refused = world.client.get("/admin/usage", params={"tenant": "beta"}, headers=admin)
    assert refused.json()["error"]["code"] == "tenant_not_found"


def test_an_operator_edits_a_quota_in_place_and_a_tenant_admin_may_not(world: World) -> None:
    name = f"t-{secrets.token_hex(4)}"
    op = bearer(world.operator)
    assert world.client.post("/admin/tenants", json={"name": name}, headers=op).status_code == 201
    changed = world.client.patch(f"/admin/tenants/{name}", json={"rps": 5, "burst": 10, "weight": 2}, headers=op)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["quota"]["rps"], changed.json()["quota"]["burst"]) == (5, 10)
    assert changed.json()["quota"]["weight"] == 2
    cleared = world.client.patch(f"/admin/tenants/{name}", json={"rps": 0, "burst": 0}, headers=op).json()
    assert (cleared["quota"]["rps"], cleared["quota"]["burst"], cleared["quota"]["weight"]) == (None, None, 2)
    for body, code in (({"weight": None}, "invalid_argument"), ({"burst": 3}, "invalid_argument")):
        answer = world.client.patch(f"/admin/tenants/{name}", json=body, headers=op)
        assert answer.json()["error"]["code"] == code
    own = world.client.patch("/admin/tenants/alpha", json={"rps": 1000}, headers=bearer(world.alpha_admin))
    assert own.json()["error"]["code"] == "forbidden"


def test_a_tenant_that_reuses_a_deleted_tenants_name_reads_none_of_its_records(world: World) -> None:
    services, op = world.services, bearer(world.operator)
    name = f"t-{secrets.token_hex(4)}"
    services.tenants.create_tenant(name)
    services.registry.push(services.tenants.tenant_id(name), "tiny", tiny_graph(0.5))
    old_request = detect(world, services.tenants.create_key(name, Scope.DETECT).key)
    services.tenants.delete_tenant(name)
    services.tenants.create_tenant(name)  # someone else, under the same name
    admin = bearer(services.tenants.create_key(name, Scope.ADMIN).key)
    found = world.client.get("/admin/audit", params={"request_id": old_request}, headers=admin).json()
    assert found["entries"] == []
    early = world.client.get("/admin/audit", params={"since": "2000-01-01T00:00:00Z"}, headers=admin).json()
    assert old_request not in {entry["event"]["request_id"] for entry in early["entries"]}
    exported = world.client.get("/admin/audit/export", headers=admin).text
    assert old_request not in exported
    usage = world.client.get("/admin/usage", params={"minutes": 5}, headers=admin).json()
    assert sum(bucket["requests"] for bucket in usage["tenants"][name]) == 0
    operator_view = world.client.get("/admin/audit", params={"request_id": old_request}, headers=op).json()
    assert len(operator_view["entries"]) == 1  # the operator still sees the old tenant's record


def test_reading_usage_is_not_usage(world: World) -> None:
    key = world.services.tenants.create_key("beta", Scope.DETECT).key
    before = world.client.get("/v1/usage", params={"minutes": 5}, headers=bearer(key)).json()
    for _ in range(3):
        world.client.get("/v1/usage", params={"minutes": 5}, headers=bearer(key))
        world.client.get("/v1/models", headers=bearer(key))
    assert world.services.audit.flush(timeout=30)
    after = world.client.get("/v1/usage", params={"minutes": 5}, headers=bearer(key)).json()
    total = [sum(bucket["requests"] for bucket in found["tenants"]["beta"]) for found in (before, after)]
    assert total[0] == total[1]
