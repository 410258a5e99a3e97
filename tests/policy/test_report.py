"""Output: text for people, stable JSON, and SARIF 2.1.0 that code-scanning tools accept."""

from __future__ import annotations

import json
from pathlib import Path

from tests.policy.samples import HARDENED_RUN
from warden.policy import RULES, Finding, Profile, as_json, as_sarif, as_text, check_docker_run, check_text
from warden.policy.report import artifact_uri

COMMAND = "docker run --privileged --network host -v /:/host app:1"
DOCKERFILE = "FROM python:3.12\nADD https://example.com/a.tgz /a\n"


def some_findings() -> list[Finding]:
    return check_text(DOCKERFILE, "images/Dockerfile")[1] + check_docker_run(COMMAND, Profile.RESTRICTED)


def test_when_findings_are_printed_as_text_then_each_has_its_rule_resource_field_and_fix() -> None:
    text = as_text(some_findings())
    assert "images/Dockerfile:1: error [image-digest] Dockerfile:1: image 'python:3.12'" in text
    assert "docker run: error [privileged]: the container runs privileged (--privileged)" in text
    assert "    fix: remove privileged mode" in text
    assert text.splitlines()[-1] == "12 error(s), 1 warning(s)"


def test_when_nothing_is_found_then_the_text_says_so() -> None:
    assert as_text(check_docker_run(HARDENED_RUN, Profile.RESTRICTED)) == "0 error(s), 0 warning(s)"


def test_when_findings_are_written_as_json_then_the_document_is_stable() -> None:
    document = as_json(some_findings(), Profile.RESTRICTED)
    assert list(document) == ["version", "profile", "findings", "summary"]
    assert document["version"] == 1
    assert document["profile"] == "restricted"
    assert document["summary"] == {"errors": 12, "warnings": 1}
    assert document["findings"][0] == {
        "rule_id": "image-digest",
        "severity": "error",
        "source": "images/Dockerfile",
        "line": 1,
        "resource": "Dockerfile:1",
        "path": "FROM python:3.12",
        "message": "image 'python:3.12' is pinned by tag '3.12', not by digest",
        "fix": "pin the base image by digest: FROM name@sha256:…",
    }
    assert json.dumps(document) == json.dumps(as_json(some_findings(), Profile.RESTRICTED))


def test_when_findings_are_written_as_sarif_then_the_log_is_structurally_valid() -> None:
    findings = some_findings()
    log = json.loads(json.dumps(as_sarif(findings, "1.2.3")))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "warden"
    assert driver["version"] == "1.2.3"
    rules = driver["rules"]
    assert {rule["id"] for rule in rules} == set(RULES)
    for rule in rules:
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"error", "warning"}
    assert len(run["results"]) == len(findings)
    for result, finding in zip(run["results"], findings, strict=True):
        assert result["ruleId"] == finding.rule_id
        assert rules[result["ruleIndex"]]["id"] == finding.rule_id
        assert result["level"] == finding.severity.value
        assert result["message"]["text"]
        [location] = result["locations"]
        assert location["logicalLocations"][0]["fullyQualifiedName"].startswith(finding.resource)
    dockerfile_location = run["results"][0]["locations"][0]["physicalLocation"]
    assert dockerfile_location == {"artifactLocation": {"uri": "images/Dockerfile"}, "region": {"startLine": 1}}
    assert "physicalLocation" not in run["results"][-1]["locations"][0]  # a command line is no file


def test_when_a_source_is_an_absolute_path_then_its_sarif_uri_is_a_file_uri(tmp_path: Path) -> None:
    assert artifact_uri(str(tmp_path / "my deploy.yaml")).startswith("file:///")
    assert artifact_uri("k8s/my deploy.yaml") == "k8s/my%20deploy.yaml"
