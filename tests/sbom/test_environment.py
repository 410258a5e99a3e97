"""The CycloneDX document of a Python environment: the real one validates and is right; small ones show the rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import UUID
from xml.etree import ElementTree

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

import warden
from tests.sbom.distributions import distribution
from warden.sbom import SbomFormat, dependency_graph, environment_bom, serialize

SERIAL = UUID("12345678-1234-5678-1234-567812345678")
MOMENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The SBOM of the environment running these tests, as JSON text validated against the strict 1.6 schema."""
    text = serialize(environment_bom(metadata.distributions()))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def components(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["components"]}


def depends_on(document: Mapping[str, Any]) -> dict[str, set[str]]:
    return {d["ref"]: set(d.get("dependsOn", [])) for d in document["dependencies"]}


def test_the_running_environment_validates_and_describes_warden_as_its_subject(document: dict[str, Any]) -> None:
    root = document["metadata"]["component"]
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    assert UUID(document["serialNumber"].removeprefix("urn:uuid:")).version == 4
    assert datetime.fromisoformat(document["metadata"]["timestamp"]).tzinfo is not None
    assert (root["type"], root["name"], root["version"]) == ("application", "warden", warden.__version__)
    assert root["purl"] == root["bom-ref"] == f"pkg:pypi/warden@{warden.__version__}"
    assert "warden" not in components(document)


@pytest.mark.parametrize("name", ["fastapi", "onnxruntime", "starlette", "numpy", "cyclonedx-python-lib"])
def test_installed_distributions_are_libraries_with_their_version_and_purl(document: dict[str, Any], name: str) -> None:
    component = components(document)[name]
    version = metadata.version(name)
    assert (component["type"], component["version"]) == ("library", version)
    assert component["purl"] == component["bom-ref"] == f"pkg:pypi/{name}@{version}"


def test_every_installed_distribution_is_a_component(document: dict[str, Any]) -> None:
    names = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()} - {"warden"}
    assert {canonicalize_name(name) for name in components(document)} == names


@pytest.mark.parametrize(
    ("dependent", "dependency"),
    [
        ("fastapi", "starlette"),
        ("fastapi", "pydantic"),
        ("uvicorn", "click"),
        ("warden", "fastapi"),
        ("warden", "onnxruntime"),
    ],
)
def test_requires_dist_becomes_dependency_edges(document: dict[str, Any], dependent: str, dependency: str) -> None:
    refs = {c["name"]: c["bom-ref"] for c in [*document["components"], document["metadata"]["component"]]}
    assert refs[dependency] in depends_on(document)[refs[dependent]]


def test_every_component_has_a_dependency_entry_and_every_edge_ends_at_a_component(document: dict[str, Any]) -> None:
    refs = {c["bom-ref"] for c in document["components"]} | {document["metadata"]["component"]["bom-ref"]}
    graph = depends_on(document)
    assert set(graph) == refs
    assert set().union(*graph.values()) <= refs


@pytest.mark.parametrize(
    ("name", "license_"),
    [
        ("fastapi", {"id": "MIT"}),  # License-Expression
        ("onnxruntime", {"id": "MIT"}),  # the MIT classifier
        ("warden", {"id": "Apache-2.0"}),
    ],
)
def test_declared_licenses_are_spdx_ids(document: dict[str, Any], name: str, license_: dict[str, str]) -> None:
    component = {**components(document), "warden": document["metadata"]["component"]}[name]
    assert component["licenses"] == [{"license": {"acknowledgement": "declared", **license_}}]


def small_environment(tmp_path: Path) -> list[metadata.Distribution]:
    return [
        distribution(tmp_path, "warden", "0.1.0", requires=["web-kit>=1", "missing-thing"]),
        distribution(
            tmp_path, "Web_Kit", "1.2", requires=["tiny"], fields=[("License-Expression", "MIT OR Apache-2.0")]
        ),
        distribution(tmp_path, "tiny", "3.0+local.1"),
    ]


def test_when_built_twice_from_the_same_environment_then_the_documents_are_identical(tmp_path: Path) -> None:
    dists = small_environment(tmp_path)
    first = serialize(environment_bom(dists, serial_number=SERIAL, timestamp=MOMENT))
    second = serialize(environment_bom(reversed(dists), serial_number=SERIAL, timestamp=MOMENT))
    assert first == second


def test_a_small_environment_has_normalised_purls_its_edges_and_no_edge_to_what_is_missing(tmp_path: Path) -> None:
    document = json.loads(serialize(environment_bom(small_environment(tmp_path), root_version="0.1.0")))
    web_kit = components(document)["Web_Kit"]
    assert web_kit["purl"] == "pkg:pypi/web-kit@1.2"
    assert web_kit["licenses"] == [{"acknowledgement": "declared", "expression": "MIT OR Apache-2.0"}]
    assert components(document)["tiny"]["purl"] == "pkg:pypi/tiny@3.0%2Blocal.1"
    assert depends_on(document) == {
        "pkg:pypi/warden@0.1.0": {"pkg:pypi/web-kit@1.2"},
        "pkg:pypi/web-kit@1.2": {"pkg:pypi/tiny@3.0%2Blocal.1"},
        "pkg:pypi/tiny@3.0%2Blocal.1": set(),
    }


def test_when_a_name_is_installed_twice_then_the_first_on_the_path_is_the_one_listed(tmp_path: Path) -> None:
    first = distribution(tmp_path / "a", "tiny", "2.0")
    shadowed = distribution(tmp_path / "b", "tiny", "1.0")
    root = distribution(tmp_path, "warden", "0.1.0", requires=["tiny"])
    document = json.loads(serialize(environment_bom([root, first, shadowed])))
    assert [(c["name"], c["version"]) for c in document["components"]] == [("tiny", "2.0")]


def test_xml_is_written_in_the_1_6_namespace(tmp_path: Path) -> None:
    text = serialize(environment_bom(small_environment(tmp_path)), SbomFormat.XML)
    root = ElementTree.fromstring(text)  # noqa: S314 - the document this test just wrote
    namespace = "{http://cyclonedx.org/schema/bom/1.6}"
    assert root.tag == f"{namespace}bom"
    assert sorted(e.text or "" for e in root.iter(f"{namespace}purl")) == [
        "pkg:pypi/tiny@3.0%2Blocal.1",
        "pkg:pypi/warden@0.1.0",
        "pkg:pypi/web-kit@1.2",
    ]


GRAPH_CASES: list[tuple[str, dict[str, Sequence[str]], dict[str, Sequence[str]], dict[str, set[str]]]] = [
    ("a plain requirement is an edge", {"a": ["b>=1"], "b": []}, {}, {"a": {"b"}, "b": set()}),
    ("a requirement on nothing installed is no edge", {"a": ["nope"]}, {}, {"a": set()}),
    ("a marker false here is no edge", {"a": ['b; python_version < "3"'], "b": []}, {}, {"a": set(), "b": set()}),
    ("a marker true here is an edge", {"a": ['b; python_version >= "3"'], "b": []}, {}, {"a": {"b"}, "b": set()}),
    (
        "names are compared normalised",
        {"a": ["Foo_Bar.baz"], "foo-bar-baz": []},
        {},
        {"a": {"foo-bar-baz"}, "foo-bar-baz": set()},
    ),
    (
        "an unparseable requirement is ignored",
        {"a": ["b >= = 1", "c"], "b": [], "c": []},
        {},
        {"a": {"c"}, "b": set(), "c": set()},
    ),
    (
        "an extra nobody asks for adds nothing",
        {"a": ["b"], "b": ['c; extra == "x"'], "c": []},
        {"b": ["x"]},
        {"a": {"b"}, "b": set(), "c": set()},
    ),
    (
        "an extra a dependent asks for adds its requirements",
        {"a": ["b[x]"], "b": ['c; extra == "x"'], "c": []},
        {"b": ["x"]},
        {"a": {"b"}, "b": {"c"}, "c": set()},
    ),
    (
        "extras in force propagate down the graph",
        {"a": ["b[X]"], "b": ['c[y]; extra == "x"'], "c": ['d; extra == "y"'], "d": []},
        {"b": ["x"], "c": ["y"]},
        {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": set()},
    ),
    (
        "the root's extra counts when everything it adds is installed",
        {"root": ["b", 'c; extra == "dev"'], "b": [], "c": []},
        {"root": ["dev"]},
        {"root": {"b", "c"}, "b": set(), "c": set()},
    ),
    (
        "the root's extra does not count when part of it is missing",
        {"root": ['c; extra == "gpu"', 'missing; extra == "gpu"'], "c": []},
        {"root": ["gpu"]},
        {"root": set(), "c": set()},
    ),
    (
        "an extra that names the root's own other extras brings them in",
        {"root": ['root[test]; extra == "dev"', 'b; extra == "dev"', 'c; extra == "test"'], "b": [], "c": []},
        {"root": ["dev", "test"]},
        {"root": {"b", "c"}, "b": set(), "c": set()},
    ),
]


@pytest.mark.parametrize(("case", "requires", "extras", "edges"), GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_dependency_graph(
    case: str, requires: dict[str, Sequence[str]], extras: dict[str, Sequence[str]], edges: dict[str, set[str]]
) -> None:
    assert dependency_graph(requires, extras, root="root") == edges
