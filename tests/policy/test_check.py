"""Reading inputs: which kind a file is, and how unreadable or unknown files fail."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

import warden.policy
from tests.policy.samples import HARDENED_DOCKERFILE, hardened_pod_spec, workload
from warden.errors import InvalidArgument, UnsupportedFile
from warden.policy import InputKind, Profile, check_all, check_file, check_text


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("k8s.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", InputKind.KUBERNETES),
        ("compose.yml", "services:\n  web:\n    image: nginx\n", InputKind.COMPOSE),
        ("docker-compose.yaml", "version: '3'\nservices: {}\n", InputKind.COMPOSE),
        ("pod.json", '{"apiVersion": "v1", "kind": "Pod", "spec": {"containers": []}}', InputKind.KUBERNETES),
        ("Dockerfile", HARDENED_DOCKERFILE, InputKind.DOCKERFILE),
    ],
)
def test_when_a_file_is_read_then_its_kind_comes_from_its_name_and_content(
    name: str, text: str, kind: InputKind
) -> None:
    assert check_text(text, name)[0] is kind


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("values.yaml", "replicaCount: 2\n"),
        ("empty.yaml", ""),
        ("broken.yaml", "kind: [unclosed\n"),
        ("notes.txt", "hello\n"),
    ],
)
def test_when_a_file_is_of_no_known_kind_then_it_is_refused(name: str, text: str) -> None:
    with pytest.raises(UnsupportedFile, match=name):
        check_text(text, name)


def test_when_a_file_cannot_be_read_then_it_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read"):
        check_file(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidArgument, match="cannot read"):
        check_file(tmp_path / "binary.yaml")


def test_when_files_and_commands_are_checked_together_then_findings_come_in_input_order(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(workload("Deployment", {**hardened_pod_spec(), "hostPID": True})))
    findings = check_all([manifest], ["docker run --privileged app"], Profile.BASELINE)
    assert [finding.rule_id for finding in findings][:2] == ["host-pid", "privileged"]
    assert findings[0].source == str(manifest)
    assert findings[1].source == "docker run"


def test_when_the_package_is_imported_then_no_server_database_or_cli_code_loads() -> None:
    script = "import sys, json, warden.policy; print(json.dumps(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    heavy = {"fastapi", "starlette", "sqlalchemy", "typer", "rich", "uvicorn"}
    assert heavy.isdisjoint(name.split(".")[0] for name in json.loads(loaded))


def test_when_the_public_names_are_listed_then_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(warden.policy).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert set(warden.policy.__all__) == public


def test_when_several_commands_are_checked_then_their_sources_tell_them_apart() -> None:
    findings = check_all([], ["docker run --privileged app", "podman run --privileged app"], Profile.BASELINE)
    privileged = [(finding.source, finding.resource) for finding in findings if finding.rule_id == "privileged"]
    assert privileged == [("docker run #1", "docker run"), ("podman run #2", "podman run")]
