"""Shared helpers for the de-identification tests: fixed keys, small files in every format, policies from YAML."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from warden.privacy.entities import Entity, Finding
from warden.privacy.keys import DeidKey
from warden.privacy.policy import Policy
from warden.privacy.tables import Chunk, Reader
from warden.privacy.text import TextAnalyzer

KEY = DeidKey(bytes(range(32)))
OTHER_KEY = DeidKey(bytes(range(1, 33)))

FIRST = ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"]
CARDS = ["4111 1111 1111 1111", "5500 0000 0000 0004", "3400 0000 0000 009", "6011 0000 0000 0004"]
#: A table of people for scan, auto and the CLI: identifiers, quasi-identifiers, free text, plain data.
HEADER = ["email", "phone", "card", "age", "zip", "gender", "birth_date", "product_name", "notes", "amount"]


def person(n: int) -> list[str]:
    """Row ``n``: the quasi-identifiers repeat with period 4 (age, zip, gender, birth date move together)."""
    return [
        f"{FIRST[n % 8].lower()}.smith{n}@example.org",
        f"+44 20 7946 {n:04d}",
        CARDS[n % 4],
        str(30 + n % 4),
        f"{10115 + n % 4}",
        "FM"[n % 2],
        f"198{n % 4}-0{1 + n % 4}-15",
        f"Widget {n % 7}",
        f"Called {FIRST[n % 8]} on 020 7946 {n:04d} about the order" if n % 3 else "no contact today, all good",
        str(n * 3),
    ]


ROWS = [person(n) for n in range(41)]  # 41 rows: group sizes 11, 10, 10, 10


def policy(text: str) -> Policy:
    """A policy from YAML text."""
    return Policy.parse(yaml.safe_load(text))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str | None]]) -> Path:
    """A CSV file; ``None`` becomes an empty cell."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows([["" if v is None else v for v in row] for row in rows])
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV file's header and rows as text (an empty cell is ``""``, an empty line a row of one empty cell)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    return header, [row or [""] for row in rows]


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """A JSON Lines file."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON Lines file's records."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class MemoryReader(Reader):
    """A reader over in-memory columns, in chunks of ``chunk_rows`` (for planning without files)."""

    def __init__(self, columns: dict[str, list[Any]], chunk_rows: int = 3) -> None:
        super().__init__(Path("memory.csv"), chunk_rows)
        self._data = columns

    def chunks(self) -> Iterator[Chunk]:
        """The columns sliced into chunks."""
        self.columns = list(self._data)
        total = len(next(iter(self._data.values()), []))
        for start in range(0, total, self.chunk_rows):
            part = {name: values[start : start + self.chunk_rows] for name, values in self._data.items()}
            yield Chunk(part, len(next(iter(part.values()))))

    @property
    def position(self) -> int:
        """Not tracked."""
        return 0


class RegexDetector:
    """A detector of e-mail addresses and ``PERSON:Name`` markers, for tests that must not depend on real ones."""

    name = "regex"
    version = "test-1"
    entities = frozenset({Entity.EMAIL, Entity.PERSON})
    _patterns: dict[Entity, re.Pattern[str]] = {  # noqa: RUF012 - read only
        Entity.EMAIL: re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
        Entity.PERSON: re.compile(r"(?<=PERSON:)[A-Z][a-z]+"),
    }

    def find(self, text: str) -> list[Finding]:
        """Every match of every pattern."""
        return [
            Finding(m.start(), m.end(), entity, 0.9, self.name)
            for entity, pattern in self._patterns.items()
            for m in pattern.finditer(text)
        ]

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """``find`` over each text."""
        return [self.find(t) for t in texts]


def regex_analyzer(**_settings: Any) -> TextAnalyzer:
    """An analyzer factory (for :class:`~warden.privacy.deid.Deidentifier`) over :class:`RegexDetector`."""
    return TextAnalyzer([RegexDetector()])
