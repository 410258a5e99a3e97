"""Whether a PyPI version is affected according to one OSV ``affected[]`` entry.

A version is affected when it is listed in ``versions``, or when it falls in one of the
``ECOSYSTEM`` or ``SEMVER`` ranges, evaluated as the OSV schema's algorithm does: events sorted
by version, ``introduced`` opens (``"0"`` before every version), ``fixed`` closes before
itself, ``last_affected`` closes after itself, and the version must lie below one of the
``limit`` events when there are any (``"*"`` is infinity). Versions compare as PEP 440 versions
(``packaging.version``); a range with an event that is not one is skipped rather than guessed,
and ``GIT`` ranges, which need the repository, are not evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from packaging.version import InvalidVersion, Version

EVENT_KINDS: Final = ("introduced", "fixed", "last_affected", "limit")
"""The event keys the OSV schema defines; each event holds exactly one."""
VERSION_RANGE_TYPES: Final = frozenset({"ECOSYSTEM", "SEMVER"})
"""Range types whose events are versions this module can compare."""

_Bound = Version | None
"""An event's version; ``None`` is the open end (``introduced: "0"``, or ``limit: "*"``)."""


def parse_version(text: str) -> Version | None:
    """A PEP 440 version, or ``None`` when ``text`` is not one."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def event_kind(event: Mapping[str, Any]) -> str | None:
    """Which of the four event kinds ``event`` is; ``None`` when it has none of them."""
    return next((kind for kind in EVENT_KINDS if kind in event), None)


def is_affected(version: str, affected: Mapping[str, Any]) -> bool:
    """Whether ``version`` is listed in the entry's ``versions`` or lies in one of its version ranges."""
    parsed = parse_version(version)
    for listed in affected.get("versions") or ():
        other = parse_version(listed)
        if listed == version or (parsed is not None and other is not None and parsed == other):
            return True
    if parsed is None:
        return False
    return any(_in_range(parsed, events) for events in _version_ranges(affected))


def first_fix(version: str, affected: Mapping[str, Any]) -> str | None:
    """The lowest ``fixed`` version above ``version`` in the entry's version ranges, as written; else ``None``."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    fixes: list[tuple[Version, str]] = []
    for events in _version_ranges(affected):
        for event in events:
            if event_kind(event) == "fixed":
                fixed = parse_version(str(event["fixed"]))
                if fixed is not None and fixed > parsed:
                    fixes.append((fixed, str(event["fixed"])))
    return min(fixes)[1] if fixes else None


def _version_ranges(affected: Mapping[str, Any]) -> list[Sequence[Mapping[str, Any]]]:
    ranges = affected.get("ranges") or ()
    return [r.get("events") or () for r in ranges if r.get("type") in VERSION_RANGE_TYPES]


def _in_range(version: Version, events: Sequence[Mapping[str, Any]]) -> bool:
    timeline: list[tuple[str, _Bound]] = []
    limits: list[_Bound] = []
    for event in events:
        kind = event_kind(event)
        if kind is None:
            continue
        text = str(event[kind])
        if (kind, text) in (("introduced", "0"), ("limit", "*")):
            bound: _Bound = None
        else:
            bound = parse_version(text)
            if bound is None:
                return False  # an event this ordering cannot place: no claim either way from this range
        if kind == "limit":
            limits.append(bound)
        else:
            timeline.append((kind, bound))
    if limits and not any(limit is None or version < limit for limit in limits):
        return False
    affected = False
    for kind, bound in sorted(timeline, key=_order):
        if kind == "introduced":
            affected = affected or bound is None or version >= bound
        elif bound is not None and (version > bound or (kind == "fixed" and version == bound)):
            affected = False  # fixed closes at its own version, last_affected just after it
    return affected


def _order(event: tuple[str, _Bound]) -> tuple[int, Version]:
    bound = event[1]
    return (0, Version("0")) if bound is None else (1, bound)
