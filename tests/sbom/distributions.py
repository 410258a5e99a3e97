"""Real installed-distribution metadata, small: ``*.dist-info`` directories written to a temporary folder."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import Distribution, PathDistribution
from pathlib import Path


def distribution(
    root: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    extras: Sequence[str] = (),
    fields: Sequence[tuple[str, str]] = (),
) -> Distribution:
    """Write ``<name>-<version>.dist-info/METADATA`` under ``root`` and return the distribution reading it."""
    folder = root / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    lines += [f"{key}: {value}" for key, value in fields]
    (folder / "METADATA").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return PathDistribution(folder)
