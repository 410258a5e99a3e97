"""Findings as text for people, JSON for scripts, and SARIF 2.1.0 for code-scanning tools."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from warden.policy.findings import Finding, Profile, Severity
from warden.policy.rules import RULES

JSON_VERSION: Final = 1
SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
_COMMAND_LINE: Final = re.compile(r"^(docker|podman|nerdctl) run( #\d+)?$")
_SARIF_LEVELS: Final = {Severity.ERROR: "error", Severity.WARNING: "warning"}


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """How many errors and warnings."""
    return {
        "errors": sum(finding.severity is Severity.ERROR for finding in findings),
        "warnings": sum(finding.severity is Severity.WARNING for finding in findings),
    }


def as_text(findings: Sequence[Finding]) -> str:
    """One line per finding, its fix on the next, and a closing count."""
    lines: list[str] = []
    for finding in findings:
        where = finding.source if finding.line is None else f"{finding.source}:{finding.line}"
        head = f"{where}: {finding.severity.value} [{finding.rule_id}]"
        if finding.resource != finding.source:
            head = f"{head} {finding.resource}"
        lines.append(f"{head}: {finding.message} ({finding.path})")
        lines.append(f"    fix: {finding.fix}")
    counts = summary(findings)
    lines.append(f"{counts['errors']} error(s), {counts['warnings']} warning(s)")
    return "\n".join(lines)


def as_json(findings: Sequence[Finding], profile: Profile) -> dict[str, Any]:
    """A stable document: ``version``, ``profile``, ``findings`` (in input order) and ``summary``."""
    return {
        "version": JSON_VERSION,
        "profile": profile.value,
        "findings": [finding.as_dict() for finding in findings],
        "summary": summary(findings),
    }


def as_sarif(findings: Sequence[Finding], tool_version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: every rule in ``tool.driver.rules``, one result per finding."""
    rule_ids = sorted(RULES)
    index = {rule_id: position for position, rule_id in enumerate(rule_ids)}
    rules = [
        {
            "id": rule.id,
            "name": "".join(word.capitalize() for word in rule.id.split("-")),
            "shortDescription": {"text": rule.title},
            "help": {"text": rule.fix},
            "defaultConfiguration": {"level": _SARIF_LEVELS[rule.severity]},
            "properties": {"profile": rule.level.value, "source": rule.source, "tags": ["security"]},
        }
        for rule in (RULES[rule_id] for rule_id in rule_ids)
    ]
    results = [
        {
            "ruleId": finding.rule_id,
            "ruleIndex": index[finding.rule_id],
            "level": _SARIF_LEVELS[finding.severity],
            "message": {"text": f"{finding.resource}: {finding.message}. Fix: {finding.fix}"},
            "locations": [_location(finding)],
            "properties": {"resource": finding.resource, "path": finding.path, "fix": finding.fix},
        }
        for finding in findings
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "warden",
                        "version": tool_version,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def artifact_uri(source: str) -> str:
    """A file name as a SARIF artifact URI: ``file://`` for an absolute path, a relative reference otherwise."""
    path = Path(source)
    if path.is_absolute():
        return path.as_uri()
    return quote(source.replace("\\", "/"))


def _location(finding: Finding) -> dict[str, Any]:
    location: dict[str, Any] = {
        "logicalLocations": [{"fullyQualifiedName": f"{finding.resource}/{finding.path}", "kind": "resource"}]
    }
    if not _COMMAND_LINE.match(finding.source):
        physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(finding.source)}}
        if finding.line is not None:
            physical["region"] = {"startLine": finding.line}
        location["physicalLocation"] = physical
    return location
