"""``deploy/compose.yaml``: Warden, PostgreSQL and Redis on one host, hardened, pinned, with no secret inline.

Warden's own image has no published digest, so the file takes it from ``WARDEN_IMAGE`` (``${WARDEN_IMAGE:?…}``:
compose refuses to start without it). The policy check interpolates the file from the environment as compose does,
so with ``WARDEN_IMAGE`` set to a pinned reference the file must pass clean.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from warden.policy import Profile, check_text
from warden.policy.rules import image_problem
from warden.settings import Settings

COMPOSE = Path(__file__).parents[2] / "deploy" / "compose.yaml"
PINNED = "registry.example/warden:0.1.0@sha256:" + "0f" * 32


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


@pytest.mark.parametrize("profile", list(Profile))
def test_as_compose_runs_it_the_file_passes_the_policy_check_with_no_finding(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_IMAGE", PINNED)
    kind, findings = check_text(COMPOSE.read_text(), "compose.yaml", profile)
    assert kind == "compose"
    assert findings == []


def test_without_warden_image_the_only_finding_is_the_image_chosen_at_deploy_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WARDEN_IMAGE", raising=False)
    assert "${WARDEN_IMAGE:?" in services()["warden"]["image"]  # compose refuses to start without it
    _, findings = check_text(COMPOSE.read_text(), str(COMPOSE), Profile.RESTRICTED)
    assert [(f.rule_id, f.resource, f.path) for f in findings] == [
        ("image-digest", "service warden", "services.warden.image")
    ]
    assert "chosen at deploy time" in findings[0].message


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_the_backing_images_are_the_official_ones_pinned_by_digest(name: str) -> None:
    image = services()[name]["image"]
    assert re.fullmatch(rf"{name}:\d+@sha256:[0-9a-f]{{64}}", image)
    assert image_problem(image) is None


@pytest.mark.parametrize("name", ["warden", "postgres", "redis"])
def test_every_service_is_hardened(name: str) -> None:
    service = services()[name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    uid, _, gid = str(service["user"]).partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    assert service["mem_limit"]
    assert service["pids_limit"] > 0
    tmp = "/tmp:"  # noqa: S108 - a tmpfs of the container's own
    assert any(str(mount).startswith(tmp) for mount in service["tmpfs"])
    assert service["healthcheck"]["test"][0] == "CMD"  # exec form: no shell needed in the image
    assert service["networks"]
    assert "privileged" not in service


def test_warden_runs_as_the_images_uid_and_only_it_publishes_a_port_on_loopback() -> None:
    found = services()
    assert found["warden"]["user"] == "10001:10001"
    assert found["warden"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "ports" not in found["postgres"]
    assert "ports" not in found["redis"]


def test_the_databases_sit_on_an_internal_network_only() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    assert document["networks"]["backend"]["internal"] is True
    assert document["services"]["postgres"]["networks"] == ["backend"]
    assert document["services"]["redis"]["networks"] == ["backend"]
    assert set(document["services"]["warden"]["networks"]) == {"frontend", "backend"}


def test_no_secret_is_written_inline_passwords_come_from_secret_files() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    for name, service in document["services"].items():
        for key, value in service.get("environment", {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), f"{name}: {key}"
            assert not re.search(r"://[^/@\s]*:[^/@\s]+@", str(value)), f"{name}: {key} holds a password"
    assert all(set(secret) == {"file"} for secret in document["secrets"].values())
    warden = document["services"]["warden"]
    assert warden["environment"]["PGPASSFILE"] == "/run/secrets/warden_pgpass"
    assert warden["secrets"] == ["warden_pgpass"]
    postgres = document["services"]["postgres"]
    password_file = postgres["environment"]["POSTGRES_PASSWORD_FILE"]
    assert password_file == "/run/secrets/postgres_password"  # noqa: S105 - a path, not a password


def test_wardens_environment_names_only_real_settings() -> None:
    environment = services()["warden"]["environment"]
    for key in environment:
        if key.startswith("WARDEN_"):
            assert key.removeprefix("WARDEN_").lower() in Settings.model_fields, key
    assert environment["WARDEN_DATABASE_URL"].startswith("postgresql+psycopg://warden@postgres:5432/")
    assert "WARDEN_SECRET_KEY" not in environment  # kept by Warden in /data/secret.key on its volume
