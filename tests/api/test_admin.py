"""The admin API: operators manage every tenant; a tenant's admin key only its own keys and models."""

from __future__ import annotations

import secrets

import pytest

from tests.api.conftest import World, tiny_graph
from warden.samples import SAMPLE_IMAGE


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fresh_name() -> str:
    return f"t-{secrets.token_hex(4)}"


def test_an_operator_onboards_a_tenant_end_to_end(world: World) -> None:
    c, op = world.client, auth(world.operator)
    name = fresh_name()
    created = c.post("/admin/tenants", json={"name": name}, headers=op)
    assert created.status_code == 201
    assert created.json()["status"] == "active"
    key = c.post(f"/admin/tenants/{name}/keys", json={"scope": "detect"}, headers=op).json()
    pushed = c.post(
        f"/admin/tenants/{name}/models/pets",
        content=tiny_graph(0.6),
        headers={**op, "Content-Type": "application/octet-stream"},
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["version"] == 1
    detected = c.post(
        "/v1/models/pets/detect",
        content=SAMPLE_IMAGE.read_bytes(),
        headers={**auth(key["key"]), "Content-Type": "image/jpeg"},
    )
    assert detected.status_code == 200
    assert detected.json()["detections"][0]["class_name"] == "dog"
    listed = c.get(f"/admin/tenants/{name}/keys", headers=op).json()
    assert [k["key_id"] for k in listed] == [key["key_id"]]
    assert key["key"] not in str(listed)
    assert c.post(f"/admin/tenants/{name}/suspend", headers=op).json()["status"] == "suspended"
    assert c.get("/v1/models", headers=auth(key["key"])).status_code == 403
    assert c.post(f"/admin/tenants/{name}/resume", headers=op).json()["status"] == "active"
    assert c.get("/v1/models", headers=auth(key["key"])).status_code == 200
    assert c.delete(f"/admin/keys/{key['key_id']}", headers=op).json()["revoked_at"] is not None
    assert c.get("/v1/models", headers=auth(key["key"])).status_code == 401
    assert c.delete(f"/admin/tenants/{name}", headers=op).status_code == 204
    assert c.get(f"/admin/tenants/{name}", headers=op).status_code == 404


def test_versions_and_aliases_over_http(world: World) -> None:
    c, op = world.client, auth(world.operator)
    name = fresh_name()
    c.post("/admin/tenants", json={"name": name}, headers=op)
    upload = {**op, "Content-Type": "application/octet-stream"}
    c.post(f"/admin/tenants/{name}/models/m?alias=stable", content=tiny_graph(0.6), headers=upload)
    c.post(f"/admin/tenants/{name}/models/m", content=tiny_graph(0.5), headers=upload)
    models = c.get(f"/admin/tenants/{name}/models", headers=op).json()
    assert [v["version"] for v in models[0]["versions"]] == [1, 2]
    assert models[0]["aliases"] == {"stable": {"version": 1, "weight": 0}}
    moved = c.put(f"/admin/tenants/{name}/models/m/aliases/stable", json={"version": 2}, headers=op)
    assert moved.json()["aliases"]["stable"]["version"] == 2
    assert c.put(f"/admin/tenants/{name}/models/m/aliases/canary", json={"version": 1}, headers=op).status_code == 400
    assert c.delete(f"/admin/tenants/{name}/models/m?version=1", headers=op).status_code == 204
    assert [v["version"] for v in c.get(f"/admin/tenants/{name}/models", headers=op).json()[0]["versions"]] == [2]
    c.delete(f"/admin/tenants/{name}", headers=op)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/admin/tenants", {"name": "intruder"}),
        ("post", "/admin/tenants/beta/suspend", None),
        ("delete", "/admin/tenants/beta", None),
    ],
)
def test_a_tenant_admin_cannot_do_operator_work(world: World, method: str, path: str, body: object) -> None:
    answer = getattr(world.client, method)(path, headers=auth(world.alpha_admin), **({"json": body} if body else {}))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/admin/tenants/beta"),
        ("get", "/admin/tenants/beta/keys"),
        ("get", "/admin/tenants/beta/models"),
        ("delete", "/admin/tenants/beta/models/tiny"),
    ],
)
def test_a_tenant_admin_sees_another_tenant_as_missing(world: World, method: str, path: str) -> None:
    theirs = getattr(world.client, method)(path, headers=auth(world.alpha_admin))
    missing = getattr(world.client, method)(path.replace("beta", "no-such-tenant"), headers=auth(world.alpha_admin))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"].replace("beta", "X") == missing.json()["error"]["message"].replace(
        "no-such-tenant", "X"
    )


def test_a_tenant_admin_manages_its_own_keys_and_models(world: World) -> None:
    c, admin = world.client, auth(world.alpha_admin)
    assert [t["name"] for t in c.get("/admin/tenants", headers=admin).json()] == ["alpha"]
    issued = c.post("/admin/tenants/alpha/keys", json={"scope": "detect"}, headers=admin).json()
    assert c.get("/v1/models", headers=auth(issued["key"])).status_code == 200
    beta_keys = world.services.tenants.list_keys("beta")
    assert c.delete(f"/admin/keys/{beta_keys[0].key_id}", headers=admin).status_code == 404
    assert c.delete(f"/admin/keys/{issued['key_id']}", headers=admin).status_code == 200
    assert c.get("/v1/models", headers=auth(issued["key"])).status_code == 401


def test_detect_keys_cannot_use_the_admin_api(world: World) -> None:
    answer = world.client.get("/admin/tenants", headers=auth(world.alpha_detect))
    assert answer.status_code == 403


def test_an_invalid_upload_is_refused_with_its_code(world: World) -> None:
    answer = world.client.post(
        "/admin/tenants/alpha/models/junk",
        content=b"not onnx",
        headers={**auth(world.alpha_admin), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_model"
