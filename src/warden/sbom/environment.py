"""A CycloneDX bill of materials of a Python environment: every installed distribution and who requires whom.

Each distribution becomes a ``library`` component with its PyPI package URL
(``pkg:pypi/<PEP 503 name>@<version>``, also its ``bom-ref``) and declared licenses; the
application the document describes (Warden) is the metadata component, not one of the
libraries. The dependency graph comes from ``Requires-Dist``, its markers evaluated for this
interpreter: a requirement guarded by ``extra == "x"`` counts only when some installed
dependent asks for ``x`` (``pkg[x]``), or, for the root, when every distribution extra ``x``
needs is installed (nothing records which extras were asked for at install time). A
requirement on something not installed has no edge. Components, dependencies and properties
are sorted by the library, so the same environment gives the same document apart from the
serial number and timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import Distribution, PackageMetadata
from typing import Final
from uuid import UUID

from cyclonedx.contrib.this.builders import this_component
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from warden import __version__
from warden.sbom.licenses import declared_licenses

SPEC_VERSION: Final = SchemaVersion.V1_6
"""The CycloneDX version written: 1.6, the newest that SBOM consumers widely read."""
ROOT_NAME: Final = "warden"


class SbomFormat(StrEnum):
    """The CycloneDX encodings :func:`serialize` writes."""

    JSON = "json"
    XML = "xml"


def pypi_purl(name: str, version: str) -> PackageURL:
    """The package URL of a PyPI release; the name is PEP 503 normalised, as the purl spec asks."""
    return PackageURL(type="pypi", name=canonicalize_name(name), version=version)


def installed(distributions: Iterable[Distribution]) -> dict[str, Distribution]:
    """Distributions by normalised name; the first of a name wins (the one ``sys.path`` order imports)."""
    found: dict[str, Distribution] = {}
    for dist in distributions:
        metadata = dist.metadata
        name, version = (metadata.get_all("Name") or [""])[0], (metadata.get_all("Version") or [""])[0]
        if name and version:  # a broken install without metadata is nothing to list
            found.setdefault(canonicalize_name(name), dist)
    return dict(sorted(found.items()))


def environment_bom(
    distributions: Iterable[Distribution],
    *,
    root_name: str = ROOT_NAME,
    root_version: str = __version__,
    serial_number: UUID | None = None,
    timestamp: datetime | None = None,
) -> Bom:
    """A BOM whose metadata component is ``root_name`` and whose components are the other ``distributions``."""
    dists = installed(distributions)
    metadata = {key: dist.metadata for key, dist in dists.items()}  # each .metadata parses the file anew
    root_key = canonicalize_name(root_name)
    root = _component(root_name, root_version, metadata.get(root_key), ComponentType.APPLICATION)
    components = {
        key: _component(_field(meta, "Name"), _field(meta, "Version"), meta, ComponentType.LIBRARY)
        for key, meta in metadata.items()
        if key != root_key
    }
    bom = Bom(
        serial_number=serial_number,
        metadata=BomMetaData(
            component=root,
            timestamp=timestamp or datetime.now(UTC),
            tools=ToolRepository(components=[this_component()]),
        ),
        components=components.values(),
    )
    nodes = {**components, root_key: root}
    requires = {key: dist.requires or [] for key, dist in dists.items()}  # also reads egg-info's requires.txt
    extras = {key: meta.get_all("Provides-Extra") or [] for key, meta in metadata.items()}
    for key, targets in dependency_graph(requires, extras, root=root_key).items():
        if key in nodes:
            bom.register_dependency(nodes[key], [nodes[t] for t in sorted(targets) if t in nodes])
    for node in nodes.values():
        bom.register_dependency(node)  # a component nobody requires and that requires nothing still gets its entry
    return bom


def dependency_graph(
    requires: Mapping[str, Iterable[str]], extras: Mapping[str, Iterable[str]], *, root: str | None = None
) -> dict[str, set[str]]:
    """Edges between installed distributions, by normalised name, from their ``Requires-Dist`` lines.

    ``requires`` maps each installed distribution to its requirement strings, ``extras`` to its
    ``Provides-Extra``. The extras in force grow until nothing changes: an edge ``a -> b[x]``
    puts ``x`` in force for ``b``, which may add edges from ``b``. Unparseable requirements and
    markers that cannot be evaluated add nothing.
    """
    parsed: dict[str, list[Requirement]] = {
        canonicalize_name(k): [r for r in map(_requirement, v) if r is not None] for k, v in requires.items()
    }
    in_force: dict[str, set[str]] = {name: set() for name in parsed}
    if root is not None and root in parsed:
        declared = {canonicalize_name(e) for e in extras.get(root, ())}
        in_force[root] = {e for e in declared if _extra_installed(parsed[root], e, parsed)}
    edges: dict[str, set[str]] = {name: set() for name in parsed}
    changed = True
    while changed:
        changed = False
        for name, requirements in parsed.items():
            for requirement in requirements:
                target = canonicalize_name(requirement.name)
                if target not in parsed or not _applies(requirement, in_force[name]):
                    continue
                if target != name:
                    edges[name].add(target)
                wanted = {canonicalize_name(e) for e in requirement.extras} - in_force[target]
                if wanted:
                    in_force[target] |= wanted
                    changed = True
    return edges


def serialize(bom: Bom, output_format: SbomFormat = SbomFormat.JSON, spec: SchemaVersion = SPEC_VERSION) -> str:
    """The document as CycloneDX JSON or XML text of schema version ``spec``."""
    kind = OutputFormat.JSON if output_format is SbomFormat.JSON else OutputFormat.XML
    return make_outputter(bom, kind, spec).output_as_string(indent=2)


def _component(name: str, version: str, metadata: PackageMetadata | None, kind: ComponentType) -> Component:
    purl = pypi_purl(name, version)
    summary = _field(metadata, "Summary")
    return Component(
        type=kind,
        name=name,
        version=version,
        purl=purl,
        bom_ref=purl.to_string(),
        description=summary or None,
        licenses=declared_licenses(metadata) if metadata is not None else None,
    )


def _field(metadata: PackageMetadata | None, name: str) -> str:
    values = metadata.get_all(name) if metadata is not None else None
    return str(values[0]).strip() if values else ""


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether the requirement's marker holds here for the base install or one of the extras in force."""
    marker = requirement.marker
    if marker is None:
        return True
    try:
        return any(marker.evaluate({"extra": extra}) for extra in ("", *sorted(extras)))
    except (UndefinedComparison, UndefinedEnvironmentName):
        return False


def _extra_installed(requirements: list[Requirement], extra: str, installed: Mapping[str, object]) -> bool:
    """Whether every distribution the root's ``extra`` adds is installed (and it adds at least one)."""
    added = [r for r in requirements if not _applies(r, set()) and _applies(r, {extra})]
    return bool(added) and all(canonicalize_name(r.name) in installed for r in added)
