"""A record's severity: CVSS v3/v4 vectors in the CVSS bands, else GHSA's word, else unknown (which always fails)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from warden.sbom import Severity, band, severity_of

V3_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
V3_HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5
V3_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"  # 6.5
V3_LOW = "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 2.0
V30_NONE = "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"  # 0.0
V4_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"  # 8.7
V4_LOW = "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"  # 1.0
V2 = "AV:N/AC:L/Au:N/C:P/I:P/A:P"


def vectors(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": kind, "score": score} for kind, score in pairs]


CASES: list[tuple[str, dict[str, Any], dict[str, Any], Severity]] = [
    ("CVSS v3.1 critical", {"severity": vectors(("CVSS_V3", V3_CRITICAL))}, {}, Severity.CRITICAL),
    ("CVSS v3.1 high", {"severity": vectors(("CVSS_V3", V3_HIGH))}, {}, Severity.HIGH),
    ("CVSS v3.1 medium", {"severity": vectors(("CVSS_V3", V3_MEDIUM))}, {}, Severity.MEDIUM),
    ("CVSS v3.1 low", {"severity": vectors(("CVSS_V3", V3_LOW))}, {}, Severity.LOW),
    ("CVSS v3.0 without impact is none", {"severity": vectors(("CVSS_V3", V30_NONE))}, {}, Severity.NONE),
    ("CVSS v4.0 high", {"severity": vectors(("CVSS_V4", V4_HIGH))}, {}, Severity.HIGH),
    (
        "the highest of several vectors",
        {"severity": vectors(("CVSS_V4", V4_LOW), ("CVSS_V3", V3_HIGH))},
        {},
        Severity.HIGH,
    ),
    (
        "the package's own vectors before the record's",
        {"severity": vectors(("CVSS_V3", V3_CRITICAL))},
        {"severity": vectors(("CVSS_V3", V3_LOW))},
        Severity.LOW,
    ),
    (
        "a vector beats GHSA's word",
        {"severity": vectors(("CVSS_V3", V3_LOW)), "database_specific": {"severity": "CRITICAL"}},
        {},
        Severity.LOW,
    ),
    ("GHSA LOW", {"database_specific": {"severity": "LOW"}}, {}, Severity.LOW),
    ("GHSA MODERATE is medium", {"database_specific": {"severity": "MODERATE"}}, {}, Severity.MEDIUM),
    ("GHSA HIGH", {"database_specific": {"severity": "HIGH"}}, {}, Severity.HIGH),
    ("GHSA CRITICAL", {"database_specific": {"severity": "CRITICAL"}}, {}, Severity.CRITICAL),
    (
        "the package's database_specific first",
        {"database_specific": {"severity": "LOW"}},
        {"database_specific": {"severity": "HIGH"}},
        Severity.HIGH,
    ),
    (
        "a malformed vector falls back to GHSA",
        {"severity": vectors(("CVSS_V3", "CVSS:3.1/AV:N")), "database_specific": {"severity": "HIGH"}},
        {},
        Severity.HIGH,
    ),
    ("CVSS v2 alone is not scored", {"severity": vectors(("CVSS_V2", V2))}, {}, Severity.UNKNOWN),
    ("an unknown word is unknown", {"database_specific": {"severity": "SEVERE"}}, {}, Severity.UNKNOWN),
    ("nothing at all is unknown", {}, {}, Severity.UNKNOWN),
]


@pytest.mark.parametrize(("case", "record", "affected", "expected"), CASES, ids=[c[0] for c in CASES])
def test_severity_of(case: str, record: dict[str, Any], affected: dict[str, Any], expected: Severity) -> None:
    assert severity_of(record, affected) is expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ("0.0", Severity.NONE),
        ("0.1", Severity.LOW),
        ("3.9", Severity.LOW),
        ("4.0", Severity.MEDIUM),
        ("6.9", Severity.MEDIUM),
        ("7.0", Severity.HIGH),
        ("8.9", Severity.HIGH),
        ("9.0", Severity.CRITICAL),
        ("10.0", Severity.CRITICAL),
    ],
)
def test_cvss_bands_at_their_boundaries(score: str, expected: Severity) -> None:
    assert band(Decimal(score)) is expected


THRESHOLDS = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


@pytest.mark.parametrize(
    ("severity", "failing_thresholds"),
    [
        (Severity.NONE, []),
        (Severity.LOW, [Severity.LOW]),
        (Severity.MEDIUM, [Severity.LOW, Severity.MEDIUM]),
        (Severity.HIGH, [Severity.LOW, Severity.MEDIUM, Severity.HIGH]),
        (Severity.CRITICAL, THRESHOLDS),
        (Severity.UNKNOWN, THRESHOLDS),
    ],
)
def test_a_severity_meets_the_thresholds_at_or_below_it_and_unknown_meets_all(
    severity: Severity, failing_thresholds: list[Severity]
) -> None:
    assert [t for t in THRESHOLDS if severity.meets(t)] == failing_thresholds
