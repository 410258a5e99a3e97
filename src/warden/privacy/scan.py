"""Profile a file for personal data: entities per column, direct and quasi-identifiers, the smallest group k.

One pass over the file. Detection runs on the first ``sample_rows`` non-empty
cells of each column (NER costs time); distinct counts and the quasi-identifier
groups cover every row. A column is a *direct identifier* when its values (or
text inside them) are entities such as e-mail addresses or names, or its name
says so (``email``, ``ssn``, ``surname``); a *quasi-identifier* when, like age,
postal code, gender or a date, it narrows a person down in combination with
others. ``k`` is the size of the smallest group of rows sharing all the
quasi-identifier values: 1 means some row is unique.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from warden.privacy.entities import Entity, Finding
from warden.privacy.operators import Mask, as_number, as_text, parse_when
from warden.privacy.tables import ABSENT, DEFAULT_CHUNK_ROWS, Format, detect_format, open_reader

DEFAULT_SAMPLE_ROWS: Final = 2_000
_DISTINCT_CAP: Final = 100_000
_EXAMPLES: Final = 3
#: Share of a cell a finding must cover for the column to count as structured (one value per cell).
_WHOLE: Final = 0.8
_FLAG_SHARE: Final = 0.01

Analyze = Callable[[Sequence[str]], list[list[Finding]]]


class QuasiKind(StrEnum):
    """Why a column is a quasi-identifier."""

    AGE = "age"
    POSTAL_CODE = "postal_code"
    GENDER = "gender"
    DATE = "date"
    LOCATION = "location"


_TOKENS: Final = re.compile(r"[a-z]+")
#: Words that, with "name", make a column hold people's names (``first_name``, ``patient name``), not ``product_name``.
_PERSON_WORDS: Final = frozenset(
    {"name", "first", "last", "full", "given", "family", "middle", "patient", "customer", "person", "contact", "user"}
)
#: With an identifier word, these make a column an organisation's identifier of a person (``patient_id``).
_ID_OWNERS: Final = frozenset(
    {"patient", "customer", "client", "user", "member", "employee", "person", "subscriber", "account", "student"}
)
_ID_WORDS: Final = frozenset({"id", "number", "no", "nr", "num", "code"})
_DIRECT_NAMES: Final[dict[str, Entity]] = {
    "mrn": Entity.PERSON_ID,
    "firstname": Entity.PERSON,
    "lastname": Entity.PERSON,
    "surname": Entity.PERSON,
    "fullname": Entity.PERSON,
    "forename": Entity.PERSON,
    "email": Entity.EMAIL,
    "mail": Entity.EMAIL,
    "phone": Entity.PHONE,
    "telephone": Entity.PHONE,
    "mobile": Entity.PHONE,
    "ssn": Entity.NATIONAL_ID,
    "nino": Entity.NATIONAL_ID,
    "nationalid": Entity.NATIONAL_ID,
    "taxid": Entity.NATIONAL_ID,
    "bsn": Entity.NATIONAL_ID,
    "nir": Entity.NATIONAL_ID,
    "dni": Entity.NATIONAL_ID,
    "nie": Entity.NATIONAL_ID,
    "codicefiscale": Entity.NATIONAL_ID,
    "aadhaar": Entity.NATIONAL_ID,
    "passport": Entity.NATIONAL_ID,
    "passportnumber": Entity.NATIONAL_ID,
    "iban": Entity.IBAN,
    "card": Entity.CREDIT_CARD,
    "ip": Entity.IP_ADDRESS,
    "mac": Entity.MAC_ADDRESS,
    "address": Entity.ADDRESS,
    "street": Entity.ADDRESS,
}
_QUASI_NAMES: Final[dict[str, QuasiKind]] = {
    "age": QuasiKind.AGE,
    "zip": QuasiKind.POSTAL_CODE,
    "zipcode": QuasiKind.POSTAL_CODE,
    "postcode": QuasiKind.POSTAL_CODE,
    "postal": QuasiKind.POSTAL_CODE,
    "postalcode": QuasiKind.POSTAL_CODE,
    "plz": QuasiKind.POSTAL_CODE,
    "gender": QuasiKind.GENDER,
    "sex": QuasiKind.GENDER,
    "city": QuasiKind.LOCATION,
    "town": QuasiKind.LOCATION,
    "state": QuasiKind.LOCATION,
    "county": QuasiKind.LOCATION,
    "region": QuasiKind.LOCATION,
}


def _parts(column: str) -> list[str]:
    """A column name's words, lower case (``firstName`` and ``first_name`` give first, name)."""
    return _TOKENS.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", column).lower())


def _name_words(column: str) -> list[str]:
    """A column name's words joined, then each in order (``ip_address`` gives ipaddress, ip, address).

    The order matters: the first word that names an entity wins, so ``ip_address`` is an IP address and
    ``email_address`` an e-mail address, not a postal address.
    """
    parts = _parts(column)
    return ["".join(parts), *parts]


@dataclass
class EntityProfile:
    """One entity type in one column: how often, how surely, how much of the cell, masked examples."""

    findings: int = 0
    cells: int = 0
    whole_cells: int = 0
    score_sum: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        """The detectors' mean score for this entity in this column."""
        return self.score_sum / self.findings if self.findings else 0.0

    def to_dict(self, scanned: int) -> dict[str, Any]:
        """JSON-safe form: counts, the share of scanned cells holding the entity, confidence, examples."""
        return {
            "findings": self.findings,
            "cells": self.cells,
            "share": round(self.cells / scanned, 4) if scanned else 0.0,
            "whole_cell_share": round(self.whole_cells / self.cells, 4) if self.cells else 0.0,
            "confidence": round(self.confidence, 3),
            "examples": self.examples,
        }


@dataclass
class ColumnProfile:
    """What the scan learned about one column."""

    name: str
    cells: int = 0
    nulls: int = 0
    scanned: int = 0
    text_chars: int = 0
    distinct: set[Any] = field(default_factory=set)
    distinct_capped: bool = False
    entities: dict[Entity, EntityProfile] = field(default_factory=dict)
    numbers: int = 0
    dates: int = 0
    number_min: float | None = None
    number_max: float | None = None
    direct: Entity | None = None
    quasi: QuasiKind | None = None
    #: Cells holding a JSON object or array (which only ``keep`` or ``drop`` can take).
    nested: int = 0

    @property
    def free_text(self) -> bool:
        """Whether the entities sit inside longer text rather than filling the cell."""
        found = [p for p in self.entities.values() if p.cells]
        whole = sum(p.whole_cells for p in found)
        return bool(found) and whole < _WHOLE * sum(p.cells for p in found)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for ``warden deid scan --json``."""
        return {
            "name": self.name,
            "cells": self.cells,
            "nulls": self.nulls,
            "scanned": self.scanned,
            "distinct": len(self.distinct),
            "distinct_capped": self.distinct_capped,
            "direct_identifier": self.direct.value if self.direct else None,
            "quasi_identifier": self.quasi.value if self.quasi else None,
            "free_text": self.free_text,
            "entities": {e.value: p.to_dict(self.scanned) for e, p in sorted(self.entities.items())},
        }


@dataclass
class ScanReport:
    """A file's profile: per-column findings, the quasi-identifiers and the smallest group over them (k)."""

    path: Path
    format: Format
    rows: int
    columns: list[ColumnProfile]
    quasi_identifiers: list[str]
    k: int | None
    detectors: dict[str, str]

    @property
    def direct_identifiers(self) -> list[str]:
        """The columns flagged as direct identifiers."""
        return [c.name for c in self.columns if c.direct is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "file": self.path.name,
            "format": self.format.value,
            "rows": self.rows,
            "direct_identifiers": self.direct_identifiers,
            "quasi_identifiers": self.quasi_identifiers,
            "k": self.k,
            "columns": [c.to_dict() for c in self.columns],
            "detectors": self.detectors,
        }


_MASK: Final = Mask(keep_last=2)


def scan_file(
    path: Path,
    analyze: Analyze,
    *,
    detectors: dict[str, str] | None = None,
    fmt: Format | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Profile ``path``: detection on a sample of each column, counts and quasi-identifier groups on every row."""
    fmt = fmt or detect_format(path)
    reader = open_reader(path, fmt, chunk_rows)
    profiles: dict[str, ColumnProfile] = {}
    rows = 0
    total = path.stat().st_size
    candidates: list[str] | None = None
    groups: Counter[tuple[Any, ...]] = Counter()
    for chunk in reader.chunks():
        for name, values in chunk.columns.items():
            profile = profiles.setdefault(name, ColumnProfile(name))
            _profile_values(profile, values, analyze, sample_rows)
        if candidates is None:  # the quasi-identifiers as the first chunk shows them; counted over every row
            candidates = [n for n, p in profiles.items() if _judge(p)[1] is not None]
        groups.update(zip(*([_hashable(v) for v in chunk.columns[c]] for c in candidates), strict=True))
        rows += chunk.rows
        if progress is not None:
            progress(reader.position, total)
    columns = [profiles.get(name) or ColumnProfile(name) for name in reader.columns]  # a file without rows too
    for profile in columns:
        profile.direct, profile.quasi = _judge(profile)
    quasi = [c.name for c in columns if c.quasi is not None and c.name in (candidates or [])]
    k = _smallest_group(groups, candidates or [], quasi) if quasi and rows else None
    return ScanReport(path, fmt, rows, columns, quasi, k, detectors or {})


def _smallest_group(groups: Counter[tuple[Any, ...]], counted: list[str], quasi: list[str]) -> int:
    index = [counted.index(q) for q in quasi]
    projected: Counter[tuple[Any, ...]] = Counter()
    for row, n in groups.items():
        projected[tuple(row[i] for i in index)] += n
    return min(projected.values())


def _hashable(value: Any) -> Any:
    """A cell as something a set can hold: a JSON list or object as its canonical JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return value


def _scannable(value: Any) -> str:
    """A cell as the text the detectors read: numbers and bytes as text, nested JSON values as JSON."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return as_text(value)


def _profile_values(profile: ColumnProfile, values: list[Any], analyze: Analyze, sample_rows: int) -> None:
    texts: list[str] = []
    for value in values:
        if value is ABSENT:
            continue
        profile.cells += 1
        if value is None or value == "":
            profile.nulls += 1
            continue
        if len(profile.distinct) < _DISTINCT_CAP:
            profile.distinct.add(_hashable(value))
        else:
            profile.distinct_capped = True
        number = as_number(value)
        if number is not None:
            profile.numbers += 1
            profile.number_min = number if profile.number_min is None else min(profile.number_min, number)
            profile.number_max = number if profile.number_max is None else max(profile.number_max, number)
        elif parse_when(value) is not None:
            profile.dates += 1
        if isinstance(value, dict | list):
            profile.nested += 1
        if not isinstance(value, bool) and profile.scanned + len(texts) < sample_rows:
            texts.append(_scannable(value))
    if not texts:
        return
    profile.scanned += len(texts)
    for text, findings in zip(texts, analyze(texts), strict=True):
        profile.text_chars += len(text)
        seen: set[Entity] = set()
        for finding in findings:
            entity = profile.entities.setdefault(finding.entity, EntityProfile())
            entity.findings += 1
            entity.score_sum += finding.score
            if finding.entity not in seen:
                seen.add(finding.entity)
                entity.cells += 1
                if finding.end - finding.start >= _WHOLE * len(text.strip()):
                    entity.whole_cells += 1
            if len(entity.examples) < _EXAMPLES:
                entity.examples.append(_MASK.mask(text[finding.start : finding.end]))


def _judge(profile: ColumnProfile) -> tuple[Entity | None, QuasiKind | None]:
    """The column's direct-identifier entity (found in its values, else hinted by its name) or its quasi kind."""
    words = _name_words(profile.name)
    present = profile.cells - profile.nulls
    if not present:
        return None, None
    scanned = profile.scanned
    flagged = [(p.cells, e) for e, p in profile.entities.items() if scanned and p.cells / scanned >= _FLAG_SHARE]
    if flagged:
        return max(flagged)[1], None
    hinted = next((_DIRECT_NAMES[w] for w in words if w in _DIRECT_NAMES), None)
    parts = set(_parts(profile.name))
    if hinted is None and "name" in words and parts <= _PERSON_WORDS:
        hinted = Entity.PERSON
    if hinted is None and parts & _ID_OWNERS and parts & _ID_WORDS:
        hinted = Entity.PERSON_ID
    if hinted is not None:
        return hinted, None
    quasi = next((_QUASI_NAMES[w] for w in words if w in _QUASI_NAMES), None)
    if quasi is QuasiKind.AGE and not (
        profile.numbers == present and (profile.number_min or 0) >= 0 and (profile.number_max or 0) <= 130
    ):
        quasi = None
    if quasi is None and profile.dates >= 0.9 * present:
        quasi = QuasiKind.DATE
    return None, quasi
