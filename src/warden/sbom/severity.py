"""How severe an OSV record is, on one scale: none, low, medium, high, critical, or unknown.

The severity comes from the record's CVSS v3.x and v4.0 vectors (``severity[].score``, the
package's own entries before the record's), scored by the ``cvss`` package and put in the
CVSS bands (0.0 none, 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical); where
several vectors score, the highest counts. Without a vector that scores, a GitHub-style
``database_specific.severity`` (LOW, MODERATE, HIGH, CRITICAL) is used; without that, the
severity is unknown, and an unknown severity meets every threshold: a gate that cannot tell
how bad a known vulnerability is fails closed rather than letting it through.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from cvss import CVSS3, CVSS4, CVSSError  # type: ignore[import-untyped]


class Severity(StrEnum):
    """A vulnerability's severity band; ``UNKNOWN`` when the record gives no usable one."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Order for comparisons: none lowest, critical highest; unknown above all (it meets every threshold)."""
        return _RANKS[self]

    def meets(self, threshold: Severity) -> bool:
        """Whether this severity is at or above ``threshold``; an unknown severity always is."""
        return self is Severity.UNKNOWN or self.rank >= threshold.rank


_RANKS: Final = {
    Severity.NONE: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
    Severity.UNKNOWN: 5,
}
_SCORERS: Final = {"CVSS_V3": CVSS3, "CVSS_V4": CVSS4}
_DATABASE_LEVELS: Final = {
    "LOW": Severity.LOW,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}


def band(score: Decimal | float) -> Severity:
    """The CVSS qualitative rating of a base score (the same bands in v3.x and v4.0)."""
    if score <= 0:
        return Severity.NONE
    if score < 4:
        return Severity.LOW
    if score < 7:
        return Severity.MEDIUM
    if score < 9:
        return Severity.HIGH
    return Severity.CRITICAL


def cvss_score(kind: str, vector: str) -> Decimal | None:
    """The base score of a ``CVSS_V3`` or ``CVSS_V4`` vector; ``None`` for other kinds or a malformed vector."""
    scorer = _SCORERS.get(kind)
    if scorer is None:
        return None
    try:
        score = scorer(vector).base_score
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return Decimal(str(score))


def severity_of(record: Mapping[str, Any], affected: Mapping[str, Any]) -> Severity:
    """The severity of ``record`` for the package of its ``affected`` entry (see the module docstring)."""
    entries = affected.get("severity") or record.get("severity") or []
    scores = [cvss_score(str(e.get("type", "")), str(e.get("score", ""))) for e in entries if isinstance(e, dict)]
    known = [s for s in scores if s is not None]
    if known:
        return band(max(known))
    for source in (affected, record):
        specific = source.get("database_specific")
        level = specific.get("severity") if isinstance(specific, dict) else None
        if isinstance(level, str) and level.strip().upper() in _DATABASE_LEVELS:
            return _DATABASE_LEVELS[level.strip().upper()]
    return Severity.UNKNOWN
