"""The PyPI packages a check covers: the installed ones, or the ``pkg:pypi`` components of a CycloneDX JSON SBOM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.sbom.distributions import distribution
from warden.errors import InvalidArgument, UnsupportedFile
from warden.sbom import (
    ModelRecord,
    PypiPackage,
    add_models,
    environment_bom,
    environment_packages,
    sbom_packages,
    serialize,
)


def test_installed_packages_are_one_per_normalised_name_first_on_the_path_wins(tmp_path: Path) -> None:
    dists = [
        distribution(tmp_path / "a", "Foo_Bar", "2.0"),
        distribution(tmp_path / "b", "foo-bar", "1.0"),
        distribution(tmp_path, "zeta", "0.1"),
    ]
    assert environment_packages(dists) == [PypiPackage("Foo_Bar", "2.0"), PypiPackage("zeta", "0.1")]


def test_an_sbom_written_by_warden_gives_back_its_pypi_components_and_not_its_models(tmp_path: Path) -> None:
    dists = [distribution(tmp_path, "warden", "0.1.0", requires=["tiny"]), distribution(tmp_path, "tiny", "3.0")]
    bom = environment_bom(dists, root_version="0.1.0")
    add_models(bom, [ModelRecord("acme", "people", 1, "0" * 64, 10)])
    path = tmp_path / "sbom.json"
    path.write_text(serialize(bom))
    assert sbom_packages(path) == [PypiPackage("tiny", "3.0"), PypiPackage("warden", "0.1.0")]


def test_nested_components_count_and_other_kinds_and_versionless_ones_do_not(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            {
                "type": "application",
                "name": "outer",
                "purl": "pkg:npm/outer@1.0.0",
                "components": [{"type": "library", "name": "Inner_Lib", "purl": "pkg:pypi/inner-lib@0.3"}],
            },
            {"type": "library", "name": "unversioned", "purl": "pkg:pypi/unversioned"},
            {"type": "library", "name": "no-purl", "version": "1.0"},
        ],
    }
    path = tmp_path / "sbom.json"
    path.write_text(json.dumps(document))
    assert sbom_packages(path) == [PypiPackage("inner-lib", "0.3")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<bom/>", "not JSON"),
        (json.dumps({"spdxVersion": "SPDX-2.3"}).encode(), "not a CycloneDX JSON document"),
        (json.dumps({"bomFormat": "CycloneDX", "components": [{"purl": "no scheme"}]}).encode(), "does not parse"),
    ],
)
def test_a_file_that_is_not_a_cyclonedx_json_sbom_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "sbom.json"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFile, match=message):
        sbom_packages(path)


def test_a_missing_sbom_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read the SBOM"):
        sbom_packages(tmp_path / "missing.json")
