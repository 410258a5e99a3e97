"""Whether a version is affected by an OSV ``affected[]`` entry, and the fix to move to."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from packaging.version import Version

from warden.sbom import first_fix, is_affected


def ranges(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"ranges": [{"type": kind, "events": list(events)}]}


FIXED_AT_2 = ranges({"introduced": "1.0"}, {"fixed": "2.0"})
FROM_THE_START = ranges({"introduced": "0"}, {"fixed": "1.4.2"})
LAST_AFFECTED = ranges({"introduced": "0"}, {"last_affected": "2.1.214"})
TWO_WINDOWS = ranges({"introduced": "1.0.0"}, {"fixed": "1.0.2"}, {"introduced": "3.0.0"}, {"fixed": "3.2.5"})
UNSORTED = ranges({"fixed": "3.2.5"}, {"introduced": "3.0.0"}, {"fixed": "1.0.2"}, {"introduced": "1.0.0"})
TWO_RANGES = {
    "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.1"}]},
        {"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"fixed": "2.0.3"}]},
    ]
}
NEVER_FIXED = ranges({"introduced": "0"})
LIMITED = ranges({"introduced": "1.0"}, {"limit": "1.5"})
UNLIMITED = ranges({"introduced": "1.0"}, {"limit": "*"})
LISTED = {"versions": ["1.0", "1.1.0", "2.0rc1"]}
GIT_ONLY = ranges({"introduced": "a" * 40}, {"fixed": "b" * 40}, kind="GIT")
UNPARSEABLE = ranges({"introduced": "not a version"}, {"fixed": "2.0"})

CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("introduced is affected", FIXED_AT_2, "1.0", True),
    ("below introduced is not", FIXED_AT_2, "0.9", False),
    ("between introduced and fixed is", FIXED_AT_2, "1.9.9", True),
    ("a pre-release of the fix is still affected", FIXED_AT_2, "2.0rc1", True),
    ("fixed itself is not", FIXED_AT_2, "2.0", False),
    ("fixed written differently is not (2 == 2.0)", FIXED_AT_2, "2", False),
    ("above fixed is not", FIXED_AT_2, "2.0.1", False),
    ("introduced 0 takes in the very first release", FROM_THE_START, "0.0.1", True),
    ("introduced 0 takes in development releases", FROM_THE_START, "0.1.dev3", True),
    ("last_affected itself is affected", LAST_AFFECTED, "2.1.214", True),
    ("above last_affected is not", LAST_AFFECTED, "2.1.215", False),
    ("first window", TWO_WINDOWS, "1.0.1", True),
    ("between the windows", TWO_WINDOWS, "2.5", False),
    ("second window", TWO_WINDOWS, "3.2.4", True),
    ("after both windows", TWO_WINDOWS, "3.2.5", False),
    ("events are sorted before evaluating", UNSORTED, "3.1", True),
    ("events are sorted before evaluating (between)", UNSORTED, "2.0", False),
    ("the first of two ranges", TWO_RANGES, "1.0.5", True),
    ("the second of two ranges (SEMVER)", TWO_RANGES, "2.0.2", True),
    ("outside both ranges", TWO_RANGES, "1.5", False),
    ("never fixed", NEVER_FIXED, "99.0", True),
    ("below the limit", LIMITED, "1.4", True),
    ("at the limit", LIMITED, "1.5", False),
    ("a limit of * is no limit", UNLIMITED, "7.0", True),
    ("an explicitly listed version", LISTED, "1.1.0", True),
    ("a listed version written another way (1.1 == 1.1.0)", LISTED, "1.1", True),
    ("a listed pre-release", LISTED, "2.0rc1", True),
    ("a version not listed", LISTED, "1.2", False),
    ("GIT ranges are not evaluated", GIT_ONLY, "1.0", False),
    ("a range with an event that is no version is skipped", UNPARSEABLE, "1.0", False),
    ("an installed version that is not PEP 440 is only compared with the list", FIXED_AT_2, "1.5-custom-build", False),
    ("an empty entry affects nothing", {}, "1.0", False),
]


@pytest.mark.parametrize(("case", "affected", "version", "expected"), CASES, ids=[c[0] for c in CASES])
def test_is_affected(case: str, affected: dict[str, Any], version: str, expected: bool) -> None:
    assert is_affected(version, affected) is expected


@pytest.mark.parametrize(
    ("affected", "version", "fix"),
    [
        (FIXED_AT_2, "1.5", "2.0"),
        (TWO_WINDOWS, "1.0.1", "1.0.2"),
        (TWO_WINDOWS, "3.0.0", "3.2.5"),
        (TWO_RANGES, "2.0.0", "2.0.3"),
        (LAST_AFFECTED, "2.0", None),
        (NEVER_FIXED, "1.0", None),
    ],
)
def test_first_fix_is_the_lowest_fixed_version_above_the_installed_one(
    affected: dict[str, Any], version: str, fix: str | None
) -> None:
    assert first_fix(version, affected) == fix


releases = st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts))
)


@given(introduced=releases, fixed=releases, version=releases)
def test_a_version_is_affected_iff_it_lies_in_introduced_to_fixed(introduced: str, fixed: str, version: str) -> None:
    assume(Version(introduced) < Version(fixed))
    affected = ranges({"introduced": introduced}, {"fixed": fixed})
    expected = Version(introduced) <= Version(version) < Version(fixed)
    assert is_affected(version, affected) is expected


@given(last=releases, version=releases)
def test_from_the_start_to_last_affected_means_up_to_and_including_it(last: str, version: str) -> None:
    affected = ranges({"introduced": "0"}, {"last_affected": last})
    assert is_affected(version, affected) is (Version(version) <= Version(last))
