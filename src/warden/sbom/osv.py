"""An offline OSV export, and the PyPI packages it says are vulnerable.

:meth:`OsvDatabase.load` reads one OSV JSON record, a JSON array of records, a directory of
``*.json`` records (searched recursively), or a zip of them (osv.dev's per-ecosystem
``all.zip``). Withdrawn records are dropped; of the others only ``affected[]`` entries of the
``PyPI`` ecosystem are kept, indexed by PEP 503 normalised package name, so ``Foo_Bar`` and
``foo-bar`` are the same package. A file that cannot be read is ``InvalidArgument``; one that
is not JSON, or whose records lack what matching relies on, is ``UnsupportedFile`` naming the
file and record. Records that alias each other (a ``GHSA`` and a ``PYSEC`` of the same flaw)
are reported once per package, under the id with the most severe known rating.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from packaging.utils import canonicalize_name

from warden.errors import InvalidArgument, UnsupportedFile
from warden.sbom.packages import PypiPackage
from warden.sbom.ranges import event_kind, first_fix, is_affected
from warden.sbom.severity import Severity, severity_of

ECOSYSTEM: Final = "PyPI"

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class VulnerabilityMatch:
    """One OSV record that affects one installed package version."""

    id: str
    aliases: tuple[str, ...]
    package: str
    version: str
    severity: Severity
    fixed: str | None
    summary: str

    def as_json(self) -> dict[str, Any]:
        """The match as ``warden sbom --check-vulns --json`` prints it."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "package": self.package,
            "version": self.version,
            "severity": self.severity.value,
            "fixed": self.fixed,
            "summary": self.summary,
        }


class OsvDatabase:
    """OSV records of the PyPI ecosystem, indexed by normalised package name; ``record_count`` leaves out withdrawn."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._by_name: dict[str, list[tuple[Record, Record]]] = {}
        self.record_count = 0
        for record in records:
            if record.get("withdrawn"):
                continue
            self.record_count += 1
            for affected in record.get("affected") or ():
                package = affected.get("package") or {}
                if str(package.get("ecosystem", "")).split(":")[0] != ECOSYSTEM or not package.get("name"):
                    continue
                self._by_name.setdefault(canonicalize_name(package["name"]), []).append((record, affected))

    @classmethod
    def load(cls, path: Path) -> OsvDatabase:
        """Read an OSV export (record, array, directory or zip; see the module docstring) and check its records."""
        return cls(load_records(path))

    def match(self, packages: Iterable[PypiPackage]) -> list[VulnerabilityMatch]:
        """Every record that affects one of ``packages``, sorted by package, version and id."""
        found: list[VulnerabilityMatch] = []
        for package in sorted(set(packages)):
            candidates = []
            for record, affected in self._by_name.get(canonicalize_name(package.name), ()):
                if is_affected(package.version, affected):
                    candidates.append(_match(record, affected, package))
            found.extend(_merge_aliases(candidates))
        return sorted(found, key=lambda m: (canonicalize_name(m.package), m.version, m.id))


def load_records(path: Path) -> list[Record]:
    """The records of an OSV export, each checked; at least one, or the export is refused."""
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            records = [r for file in files for r in _parse(file.read_bytes(), str(file))]
        elif zipfile.is_zipfile(path):
            records = list(_zip_records(path))
        else:
            records = _parse(path.read_bytes(), str(path))
    except OSError as exc:
        raise InvalidArgument(f"cannot read the OSV export {str(path)!r}: {exc.strerror or exc}") from None
    if not records:
        raise UnsupportedFile(f"{str(path)!r} holds no OSV records")
    return records


def _zip_records(path: Path) -> Iterator[Record]:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".json") and not name.endswith("/"):
                    yield from _parse(archive.read(name), f"{path}:{name}")
    # zipfile raises NotImplementedError for a compression method it cannot read: the file is unreadable here.
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise UnsupportedFile(f"{str(path)!r} is not a readable zip archive: {exc}") from None


def _parse(data: bytes, source: str) -> list[Record]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedFile(f"{source}: not JSON: {exc}") from None
    items = document if isinstance(document, list) else [document]
    return [_checked(item, f"{source}[{i}]" if isinstance(document, list) else source) for i, item in enumerate(items)]


def _checked(record: object, where: str) -> Record:
    """The record, when it has the fields matching reads, of the types the OSV schema gives them."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise UnsupportedFile(f"{where}: not an OSV record (an object with a string 'id')")
    where = f"{where} {record['id']}"
    if record.get("withdrawn"):
        return record
    _list_of(record, "aliases", str, where)
    _list_of(record, "severity", dict, where)
    for affected in _list_of(record, "affected", dict, where):
        if not isinstance(affected.get("package", {}), dict):
            raise UnsupportedFile(f"{where}: affected[].package must be an object")
        _list_of(affected, "versions", str, where)
        _list_of(affected, "severity", dict, where)
        for version_range in _list_of(affected, "ranges", dict, where):
            if not isinstance(version_range.get("type"), str):
                raise UnsupportedFile(f"{where}: affected[].ranges[].type must be a string")
            for event in _list_of(version_range, "events", dict, where):
                kind = event_kind(event)
                if kind is None or not isinstance(event[kind], str):
                    raise UnsupportedFile(
                        f"{where}: a range event must hold one of introduced, fixed, last_affected, limit"
                    )
    return record


def _list_of(parent: Mapping[str, Any], key: str, kind: type, where: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        raise UnsupportedFile(f"{where}: {key!r} must be a list of {'strings' if kind is str else 'objects'}")
    return value


def _match(record: Record, affected: Record, package: PypiPackage) -> VulnerabilityMatch:
    return VulnerabilityMatch(
        id=record["id"],
        aliases=tuple(sorted(set(record.get("aliases") or ()))),
        package=package.name,
        version=package.version,
        severity=severity_of(record, affected),
        fixed=first_fix(package.version, affected),
        summary=" ".join(str(record.get("summary") or "").split()),
    )


def _merge_aliases(matches: list[VulnerabilityMatch]) -> list[VulnerabilityMatch]:
    """One match per flaw: records naming each other as aliases fold into the best rated, ids kept as aliases."""
    known_first = sorted(matches, key=lambda m: (m.severity is Severity.UNKNOWN, -m.severity.rank, m.id))
    kept: list[VulnerabilityMatch] = []
    for match in known_first:
        names = {match.id, *match.aliases}
        for i, other in enumerate(kept):
            if names & {other.id, *other.aliases}:
                aliases = tuple(sorted((names | set(other.aliases)) - {other.id}))
                fixed = other.fixed or match.fixed
                kept[i] = VulnerabilityMatch(
                    other.id, aliases, other.package, other.version, other.severity, fixed, other.summary
                )
                break
        else:
            kept.append(match)
    return kept
