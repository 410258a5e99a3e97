"""The vocabulary of a policy check: profiles, severities, rules and the findings they produce."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is: any ``error`` makes ``warden policy check`` exit 1."""

    ERROR = "error"
    WARNING = "warning"


class Profile(StrEnum):
    """Which rules run: ``baseline`` (Pod Security baseline and Warden's always-on rules) or everything."""

    BASELINE = "baseline"
    RESTRICTED = "restricted"

    def includes(self, level: Profile) -> bool:
        """Whether a rule of ``level`` runs under this profile (restricted includes baseline)."""
        return self is Profile.RESTRICTED or level is Profile.BASELINE


@dataclass(frozen=True)
class Rule:
    """One rule, as data: ``id`` is stable across releases; ``level`` is the least profile that runs it."""

    id: str
    title: str
    severity: Severity
    level: Profile
    source: str
    """Where the rule comes from: ``pss-baseline``, ``pss-restricted`` or ``warden``."""
    fix: str


@dataclass(frozen=True)
class Finding:
    """One breach of one rule by one resource, with where it is and how to fix it."""

    rule_id: str
    severity: Severity
    source: str
    """The file checked, or ``docker run`` for a ``--docker-run`` command line."""
    resource: str
    """What breaks the rule: ``Deployment/web``, ``service api``, ``Dockerfile:12``, ``docker run``."""
    path: str
    """The field at fault: ``spec.template.spec.containers[0].securityContext.privileged``, ``--privileged``."""
    message: str
    fix: str
    line: int | None = None
    """The line in ``source`` where the resource (a YAML document, a Dockerfile instruction) starts."""

    def as_dict(self) -> dict[str, str | int | None]:
        """A plain mapping with stable keys, for JSON output."""
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "source": self.source,
            "line": self.line,
            "resource": self.resource,
            "path": self.path,
            "message": self.message,
            "fix": self.fix,
        }
