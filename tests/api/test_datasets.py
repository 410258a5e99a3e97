"""/v1/datasets: push, list, show and erase over HTTP, by a tenant's admin or train key, on both backends.

The world's services get a dataset service without NER (names are found by their column) staging
on /dev/shm; ``alpha`` plays the bank, ``beta`` the other tenant.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import World
from tests.datasets.conftest import CUSTOMERS, SHM, customers_csv
from warden.api import create_app
from warden.audit.query import AuditFilter
from warden.datasets import DatasetService
from warden.datasets.staging import filesystem_type
from warden.services import Services
from warden.tenancy import Scope


@dataclass(frozen=True)
class Hub:
    """A client over the world's services with a test dataset service, and the keys the tests use."""

    client: TestClient
    services: Services
    keys: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def with_datasets(world: World, staging: Path, **limits: int) -> Services:
    """The world's services with a dataset service over ``staging`` (and optional ``max_bytes``/``quota_bytes``)."""
    services = world.services
    service = DatasetService(
        services.db,
        services.vault,
        staging_dir=staging,
        max_bytes=limits.get("max_bytes", 1 << 20),
        quota_bytes=limits.get("quota_bytes", 1 << 30),
        ner=False,
    )
    return dataclasses.replace(services, datasets=service)


@pytest.fixture(scope="module")
def staging() -> Iterator[Path]:
    if filesystem_type(SHM) != "tmpfs":
        pytest.skip(f"{SHM} is not a tmpfs here: dataset API tests NOT run")
    folder = Path(tempfile.mkdtemp(prefix="warden-test-api-staging-", dir=SHM))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(world: World, staging: Path) -> Iterator[Hub]:
    tenants = world.services.tenants
    keys = {
        "alpha_admin": world.alpha_admin,
        "alpha_detect": world.alpha_detect,
        "alpha_train": tenants.create_key("alpha", Scope.TRAIN).key,
        "beta_train": tenants.create_key("beta", Scope.TRAIN).key,
        "operator": world.operator,
    }
    services = with_datasets(world, staging)
    with TestClient(create_app(services), raise_server_exceptions=True) as client:
        yield Hub(client, services, keys)


def push(hub: Hub, who: str, name: str, body: bytes, query: str = "?format=csv", **headers: str) -> httpx.Response:
    return hub.client.post(f"/v1/datasets/{name}{query}", content=body, headers={**hub.auth(who), **headers})


def audit_of(services: Services, action: str, target: str) -> list[dict[str, object]]:
    services.audit.flush(30)
    return [
        entry.event.to_dict()
        for entry in services.audit.scan(AuditFilter(tenant="alpha"))
        if entry.event.action == action and entry.event.target == target
    ]


def test_when_a_train_key_pushes_a_csv_then_it_is_listed_shown_and_holds_no_raw_value(hub: Hub) -> None:
    answer = push(hub, "alpha_train", "customers", customers_csv())
    assert answer.status_code == 201, answer.text
    pushed = answer.json()
    assert (pushed["version"], pushed["rows"], pushed["format"], pushed["erased"]) == (1, 50, "csv", False)
    assert (len(pushed["sha256"]), pushed["size_bytes"] > 0) == (64, True)
    assert {c["name"] for c in pushed["report"]["columns"]} >= {"name", "iban", "email"}
    assert pushed["created_by"] == hub.keys["alpha_train"].split("_")[1]
    listed = hub.client.get("/v1/datasets", headers=hub.auth("alpha_admin")).json()
    assert [d["name"] for d in listed] == ["customers"]
    shown = hub.client.get("/v1/datasets/customers", headers=hub.auth("alpha_train")).json()
    assert (shown["latest_version"], shown["versions"][0]["sha256"]) == (1, pushed["sha256"])
    stored = hub.services.datasets.read(hub.services.tenants.tenant_id("alpha"), "customers").decode()
    for raw in (CUSTOMERS[0][1], CUSTOMERS[0][2], CUSTOMERS[3][0]):
        assert raw not in stored
        assert raw not in json.dumps([pushed, listed, shown])


@pytest.mark.parametrize(
    ("query", "content_type"),
    [("", "text/csv"), ("", "text/csv; charset=utf-8"), ("?format=csv", "application/octet-stream")],
)
def test_when_the_format_comes_from_the_query_or_the_content_type_then_the_push_is_stored(
    hub: Hub, query: str, content_type: str
) -> None:
    answer = push(hub, "alpha_admin", "by-type", customers_csv(CUSTOMERS[:5]), query, **{"Content-Type": content_type})
    assert answer.status_code == 201, answer.text
    assert answer.json()["format"] == "csv"


@pytest.mark.parametrize(
    ("query", "content_type", "status", "code"),
    [
        ("", "application/octet-stream", 415, "unsupported_dataset_format"),
        ("?format=zip", "application/zip", 415, "unsupported_dataset_format"),
        ("?format=csv&policy=strict", "text/csv", 400, "policy_unavailable"),
    ],
)
def test_when_the_format_or_policy_is_not_offered_then_the_push_is_refused_with_its_code(
    hub: Hub, query: str, content_type: str, status: int, code: str
) -> None:
    answer = push(hub, "alpha_admin", "refused", b"a,b\n1,2\n", query, **{"Content-Type": content_type})
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)


def test_when_a_name_is_not_a_dataset_name_then_the_push_is_invalid(hub: Hub) -> None:
    answer = push(hub, "alpha_admin", "Bad.Name", b"a\n1\n")
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_argument")


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("alpha_detect", 403, "forbidden"), ("operator", 403, "forbidden")],
)
def test_when_a_detect_or_operator_key_calls_then_every_dataset_route_is_forbidden(
    hub: Hub, who: str, status: int, code: str
) -> None:
    calls = [
        ("POST", "/v1/datasets/customers?format=csv"),
        ("GET", "/v1/datasets"),
        ("GET", "/v1/datasets/customers"),
        ("DELETE", "/v1/datasets/customers"),
        ("DELETE", "/v1/datasets/customers/versions/1"),
    ]
    for method, path in calls:
        answer = hub.client.request(method, path, content=b"a\n1\n", headers=hub.auth(who))
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (method, path)


def test_when_another_tenant_asks_for_a_dataset_then_it_answers_exactly_like_a_missing_one(hub: Hub) -> None:
    assert push(hub, "alpha_train", "secret-set", customers_csv(CUSTOMERS[:5])).status_code == 201
    for method, path in [
        ("GET", "/v1/datasets/{}"),
        ("DELETE", "/v1/datasets/{}"),
        ("DELETE", "/v1/datasets/{}/versions/1"),
    ]:
        foreign = hub.client.request(method, path.format("secret-set"), headers=hub.auth("beta_train"))
        missing = hub.client.request(method, path.format("never-pushed"), headers=hub.auth("beta_train"))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == "dataset_not_found"
        assert foreign.json() == json.loads(missing.text.replace("never-pushed", "secret-set"))
    assert hub.client.get("/v1/datasets", headers=hub.auth("beta_train")).json() == []
    assert hub.client.get("/v1/datasets/secret-set", headers=hub.auth("alpha_train")).status_code == 200


def test_when_a_push_is_audited_then_the_record_carries_hashes_and_actor_and_no_value(hub: Hub) -> None:
    pushed = push(hub, "alpha_train", "audited", customers_csv(CUSTOMERS[:8])).json()
    (record,) = audit_of(hub.services, "dataset.push", "alpha/audited")
    assert record["key_id"] == hub.keys["alpha_train"].split("_")[1]
    assert record["status"] == 201
    details = record["details"]
    assert isinstance(details, dict)
    assert (details["version"], details["rows"], details["key_id"]) == (1, 8, pushed["key_id"])
    assert (details["sha256"], details["source_sha256"]) == (pushed["sha256"], pushed["source_sha256"])
    text = json.dumps(record)
    for row in CUSTOMERS[:8]:
        for value in row[:5]:
            assert value not in text


def test_when_a_dataset_is_erased_then_get_shows_it_erased_and_its_content_cannot_be_read(hub: Hub) -> None:
    first = push(hub, "alpha_admin", "erase-me", customers_csv(CUSTOMERS[:6])).json()
    second = push(hub, "alpha_admin", "erase-me", customers_csv(CUSTOMERS[6:12])).json()
    alpha = hub.services.tenants.tenant_id("alpha")
    one = hub.client.delete("/v1/datasets/erase-me/versions/1", headers=hub.auth("alpha_train"))
    assert one.status_code == 200
    assert (one.json()["erased"], one.json()["sha256"]) == (True, first["sha256"])
    assert one.json()["erased_at"]
    assert hub.client.get("/v1/datasets/erase-me", headers=hub.auth("alpha_admin")).json()["latest_version"] == 2
    everything = hub.client.delete("/v1/datasets/erase-me", headers=hub.auth("alpha_admin"))
    assert everything.status_code == 200
    shown = hub.client.get("/v1/datasets/erase-me", headers=hub.auth("alpha_admin")).json()
    assert (shown["erased"], shown["latest_version"], shown["stored_bytes"]) == (True, None, 0)
    assert [(v["version"], v["sha256"], v["erased_at"] is not None) for v in shown["versions"]] == [
        (1, first["sha256"], True),
        (2, second["sha256"], True),
    ]
    for version in (1, 2):
        with pytest.raises(Exception, match="erased") as caught:
            hub.services.datasets.read(alpha, "erase-me", version)
        assert getattr(caught.value, "code", None) == "object_erased"
    (record,) = audit_of(hub.services, "dataset.delete", "alpha/erase-me")[-1:]
    assert record["details"] == {
        "versions": "1,2",
        "sha256": f"{first['sha256']},{second['sha256']}",
        "source_sha256": f"{first['source_sha256']},{second['source_sha256']}",
        "rows": 12,
    }


def test_when_a_push_would_pass_the_storage_quota_then_it_is_refused_429(world: World, staging: Path) -> None:
    services = with_datasets(world, staging, quota_bytes=64)
    key = world.services.tenants.create_key("alpha", Scope.TRAIN).key
    with TestClient(create_app(services)) as client:
        answer = client.post(
            "/v1/datasets/too-big?format=csv", content=customers_csv(), headers={"Authorization": f"Bearer {key}"}
        )
    assert (answer.status_code, answer.json()["error"]["code"]) == (429, "storage_quota_exceeded")
    assert int(answer.headers["Retry-After"]) > 0


def test_when_a_push_passes_the_upload_cap_then_it_is_refused_413(world: World, staging: Path) -> None:
    settings = world.services.settings.model_copy(update={"max_dataset_bytes": 100})
    services = dataclasses.replace(with_datasets(world, staging, max_bytes=100), settings=settings)
    key = world.services.tenants.create_key("alpha", Scope.TRAIN).key
    with TestClient(create_app(services)) as client:
        answer = client.post(
            "/v1/datasets/capped?format=csv", content=customers_csv(), headers={"Authorization": f"Bearer {key}"}
        )
        streamed = client.post(
            "/v1/datasets/capped?format=csv",
            content=iter([customers_csv()]),
            headers={"Authorization": f"Bearer {key}"},
        )
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "payload_too_large")
    assert (streamed.status_code, streamed.json()["error"]["code"]) == (413, "payload_too_large")


def test_when_staging_is_not_a_tmpfs_then_the_push_answers_503(world: World, tmp_path: Path) -> None:
    services = with_datasets(world, tmp_path)
    with TestClient(create_app(services)) as client:
        answer = client.post(
            "/v1/datasets/nowhere?format=csv",
            content=customers_csv(CUSTOMERS[:2]),
            headers={"Authorization": f"Bearer {world.alpha_admin}"},
        )
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "staging_unavailable")
