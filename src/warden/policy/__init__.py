"""Least-privilege checks of Kubernetes manifests, compose files, Dockerfiles and ``docker run`` command lines.

Pod Security Standards baseline and restricted in full, plus Warden's own rules (images pinned
by digest, resource limits, read-only root filesystem, no engine socket, no service-account
token, non-root ``USER``). Rules are data (:data:`RULES`) plus one small function per input kind.
Light on import: no server, database or command-line code.
"""

from __future__ import annotations

from warden.policy.check import RULES_BY_KIND, InputKind, check_all, check_file, check_text
from warden.policy.dockerrun import check_docker_run
from warden.policy.findings import Finding, Profile, Rule, Severity
from warden.policy.report import as_json, as_sarif, as_text
from warden.policy.rules import RULES

__all__ = [
    "RULES",
    "RULES_BY_KIND",
    "Finding",
    "InputKind",
    "Profile",
    "Rule",
    "Severity",
    "as_json",
    "as_sarif",
    "as_text",
    "check_all",
    "check_docker_run",
    "check_file",
    "check_text",
]
