"""``warden policy check``: exit statuses, the three output formats, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from tests.policy.samples import HARDENED_DOCKERFILE, HARDENED_RUN, hardened_pod_spec, hardened_service, workload
from warden.cli.policy import policy_app

BRIEF = (
    "docker run -d --gpus device=0 --security-opt no-new-privileges --cap-drop=ALL --read-only "
    "-v /tmp/data_input:/input:ro -v /tmp/output:/output -e ALLOW_ANONYMOUS_LOGIN=false "
    "--name gdpr_compliant_training pytorch_cuda:v2.9"
)

app = typer.Typer()
app.add_typer(policy_app, name="policy")


def warden(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["policy", *map(str, args)])


def one_error_line(result: Result) -> str:
    """The single error line a failed command must print, with nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def hardened(tmp_path: Path) -> list[Path]:
    """A hardened Deployment (with a Service beside it), compose file and Dockerfile."""
    deploy = tmp_path / "deploy.yaml"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    deploy.write_text(yaml.safe_dump_all([workload("Deployment", hardened_pod_spec()), service]))
    compose = tmp_path / "compose.yaml"
    compose.write_text(yaml.safe_dump({"services": {"api": hardened_service()}}))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(HARDENED_DOCKERFILE)
    return [deploy, compose, dockerfile]


def test_when_everything_is_hardened_then_restricted_passes_with_exit_0(hardened: list[Path]) -> None:
    result = warden("check", *hardened, "--docker-run", HARDENED_RUN, "--profile", "restricted")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0 error(s), 0 warning(s)"
    assert result.stderr == ""


def test_when_the_briefs_command_is_checked_then_json_lists_exactly_its_four_findings() -> None:
    result = warden("check", "--docker-run", BRIEF, "--format", "json")
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    document = json.loads(result.stdout)
    assert sorted(finding["rule_id"] for finding in document["findings"]) == [
        "image-digest",
        "memory-limit",
        "pids-limit",
        "run-as-non-root",
    ]
    assert document["summary"] == {"errors": 4, "warnings": 0}


def test_when_only_warnings_are_found_then_the_exit_status_is_0(tmp_path: Path) -> None:
    pod = hardened_pod_spec()
    del pod["containers"][0]["resources"]["limits"]["cpu"]
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(workload("Pod", pod)))
    result = warden("check", manifest)
    assert result.exit_code == 0
    assert "warning [cpu-limit] Pod/web" in result.stdout


def test_when_a_dangerous_command_is_checked_then_text_names_each_error_and_exits_1() -> None:
    result = warden("check", "--docker-run", "docker run --privileged --network host -v /:/host IMAGE")
    assert result.exit_code == 1
    for rule in ("privileged", "host-network", "sensitive-host-mount"):
        assert f"error [{rule}]" in result.stdout


def test_when_sarif_is_asked_then_a_sarif_2_1_0_log_is_printed(hardened: list[Path]) -> None:
    result = warden("check", hardened[0], "--docker-run", BRIEF, "--format", "sarif")
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    assert log["runs"][0]["tool"]["driver"]["rules"]
    assert {result["ruleId"] for result in log["runs"][0]["results"]} == {
        "image-digest",
        "memory-limit",
        "pids-limit",
        "run-as-non-root",
    }


def test_when_the_profile_is_baseline_then_restricted_rules_do_not_fail_the_run(tmp_path: Path) -> None:
    pod = {"containers": [{"name": "a", "image": f"app@sha256:{'a' * 64}", "resources": {"limits": {"memory": "1Gi"}}}]}
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(workload("Pod", pod)))
    assert warden("check", manifest, "--profile", "baseline").exit_code == 0
    assert warden("check", manifest, "--profile", "restricted").exit_code == 1


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((), "invalid_argument"),
        (("--docker-run", "docker build ."), "invalid_argument"),
        (("missing.yaml",), "invalid_argument"),
    ],
)
def test_when_the_input_is_wrong_then_one_error_line_and_exit_2(args: tuple[str, ...], code: str) -> None:
    result = warden("check", *args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"warden: error: {code}: ")


def test_when_a_file_is_of_no_known_kind_then_it_is_unsupported_with_exit_2(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicaCount: 2\n")
    result = warden("check", values)
    assert result.exit_code == 2
    assert one_error_line(result).startswith("warden: error: unsupported_file: ")


@pytest.mark.parametrize("args", [("--format", "xml"), ("--profile", "privileged")])
def test_when_an_option_value_is_unknown_then_it_is_a_usage_error(args: tuple[str, ...]) -> None:
    assert warden("check", "--docker-run", BRIEF, *args).exit_code == 2
