"""The PyPI packages to check for vulnerabilities: those installed here, or those a CycloneDX JSON SBOM lists."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from warden.errors import InvalidArgument, UnsupportedFile
from warden.sbom.environment import installed


@dataclass(frozen=True, slots=True, order=True)
class PypiPackage:
    """A PyPI package name (as published) and version."""

    name: str
    version: str


def environment_packages(distributions: Iterable[Distribution]) -> list[PypiPackage]:
    """The installed distributions, one per normalised name (the one imported), by name."""
    return [
        PypiPackage(str(dist.metadata.get_all("Name", [""])[0]), str(dist.metadata.get_all("Version", [""])[0]))
        for dist in installed(distributions).values()
    ]


def sbom_packages(path: Path) -> list[PypiPackage]:
    """The PyPI components (``pkg:pypi/…`` with a version) of a CycloneDX JSON document, its metadata component too.

    Components without a package URL, of another type, or without a version are not PyPI
    releases that can be checked and are left out; a package URL that does not parse makes
    the whole document ``UnsupportedFile``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the SBOM {str(path)!r}: {exc.strerror or exc}") from None
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedFile(f"{path}: not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise UnsupportedFile(f'{path}: not a CycloneDX JSON document (no "bomFormat": "CycloneDX")')
    metadata = document.get("metadata")
    roots = [metadata.get("component")] if isinstance(metadata, dict) else []
    found: set[PypiPackage] = set()
    for component in _walk([*roots, *(document.get("components") or [])]):
        purl_text = component.get("purl")
        if not isinstance(purl_text, str):
            continue
        try:
            purl = PackageURL.from_string(purl_text)
        except ValueError as exc:
            raise UnsupportedFile(f"{path}: component purl {purl_text!r} does not parse: {exc}") from None
        if purl.type == "pypi" and purl.version:
            found.add(PypiPackage(purl.name, purl.version))
    return sorted(found)


def _walk(components: list[Any]) -> Iterator[dict[str, Any]]:
    for component in components:
        if isinstance(component, dict):
            yield component
            nested = component.get("components")
            if isinstance(nested, list):
                yield from _walk(nested)
