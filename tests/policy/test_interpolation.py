"""Compose-style interpolation: what ``docker compose`` would substitute, and what it leaves for deploy time."""

from __future__ import annotations

import pytest

from warden.policy.compose import check_compose
from warden.policy.findings import Profile
from warden.policy.interpolation import interpolate

ENV = {"SET": "value", "EMPTY": ""}
PINNED = "registry.example/warden@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a-${SET}-b", "a-value-b"),
        ("$$SET", "$SET"),
        ("${UNSET}", "${UNSET}"),
        ("$UNSET", "$UNSET"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${SET:-fallback}", "value"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${SET:?needed}", "value"),
        ("${UNSET:?needed}", "${UNSET:?needed}"),
        ("${EMPTY:?needed}", "${EMPTY:?needed}"),
        ("${EMPTY?needed}", ""),
        ("no references", "no references"),
    ],
)
def test_a_reference_is_resolved_as_compose_resolves_it(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


def test_lists_and_mappings_are_resolved_and_other_values_kept() -> None:
    value = {"image": "${SET}", "ports": ["${SET}:80", 8080], "read_only": True}
    assert interpolate(value, ENV) == {"image": "value", "ports": ["value:80", 8080], "read_only": True}


def _image_findings(image: str, environ: dict[str, str]) -> list[str]:
    document = {"services": {"app": {"image": image}}}
    findings = check_compose([(1, document)], "compose.yaml", Profile.RESTRICTED, environ)
    return [f.message for f in findings if f.rule_id == "image-digest"]


def test_an_image_chosen_by_a_variable_is_checked_with_the_variables_value() -> None:
    image = "${WARDEN_IMAGE:?set it}"
    assert _image_findings(image, {"WARDEN_IMAGE": PINNED}) == []
    assert "by tag" in _image_findings(image, {"WARDEN_IMAGE": "warden:1.0"})[0]
    (unset,) = _image_findings(image, {})
    assert "chosen at deploy time" in unset
