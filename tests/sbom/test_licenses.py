"""Declared licenses from distribution metadata: SPDX where the metadata says one, a name where it does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cyclonedx.model.license import DisjunctiveLicense, LicenseAcknowledgement, LicenseExpression

from tests.sbom.distributions import distribution
from warden.sbom import declared_licenses

MIT = "License :: OSI Approved :: MIT License"
BSD = "License :: OSI Approved :: BSD License"

CASES: list[tuple[str, list[tuple[str, str]], list[dict[str, Any]]]] = [
    ("License-Expression, an id", [("License-Expression", "MIT")], [{"id": "MIT"}]),
    (
        "License-Expression, a compound",
        [("License-Expression", "BSD-3-Clause AND 0BSD"), ("Classifier", MIT)],
        [{"expression": "BSD-3-Clause AND 0BSD"}],
    ),
    (
        "a License field that is an SPDX id wins over classifiers",
        [("License", "apache-2.0"), ("Classifier", MIT)],
        [{"id": "Apache-2.0"}],
    ),
    ("an unambiguous classifier is its SPDX id", [("License", "MIT License"), ("Classifier", MIT)], [{"id": "MIT"}]),
    ("an ambiguous classifier stays a name", [("Classifier", BSD)], [{"name": "BSD License"}]),
    (
        "several classifiers, ids before names, without repeats",
        [("Classifier", BSD), ("Classifier", MIT), ("Classifier", MIT), ("Classifier", "License :: OSI Approved")],
        [{"id": "MIT"}, {"name": "BSD License"}],
    ),
    ("a short License field without classifiers is a name", [("License", "Dual License")], [{"name": "Dual License"}]),
    (
        "a License field that is the whole text is left out",
        [("License", "Copyright (c) 2020\n        Permission is")],
        [],
    ),
    ("no license metadata, no licenses", [("Classifier", "Programming Language :: Python")], []),
]


@pytest.mark.parametrize(("case", "fields", "expected"), CASES, ids=[c[0] for c in CASES])
def test_declared_licenses(
    tmp_path: Path, case: str, fields: list[tuple[str, str]], expected: list[dict[str, Any]]
) -> None:
    licenses = declared_licenses(distribution(tmp_path, "pkg", "1.0", fields=fields).metadata)
    assert [_as_dict(license_) for license_ in licenses] == expected


def _as_dict(license_: DisjunctiveLicense | LicenseExpression) -> dict[str, Any]:
    if isinstance(license_, LicenseExpression):
        return {"expression": license_.value}
    rendered = {"id": license_.id, "name": license_.name}
    return {key: value for key, value in rendered.items() if value is not None}


def test_every_license_is_acknowledged_as_declared(tmp_path: Path) -> None:
    fields = [("Classifier", MIT), ("Classifier", BSD)]
    licenses = declared_licenses(distribution(tmp_path, "pkg", "1.0", fields=fields).metadata)
    assert {license_.acknowledgement for license_ in licenses} == {LicenseAcknowledgement.DECLARED}
