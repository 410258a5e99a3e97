"""scan_file with Warden's own pattern detectors: direct and quasi-identifiers, free text, k, every format."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.privacy.conftest import HEADER, ROWS, write_csv, write_jsonl
from warden.privacy.deid import Deidentifier
from warden.privacy.entities import Entity, Finding
from warden.privacy.scan import QuasiKind, ScanReport, scan_file


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    """Warden's pattern detectors, without the NER pipeline."""
    return Deidentifier(ner=False)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "people.csv", HEADER, ROWS)


def by_name(report: ScanReport) -> dict[str, Any]:
    return {c.name: c for c in report.columns}


def test_columns_of_emails_phones_and_cards_are_direct_identifiers_found_in_their_values(
    deid: Deidentifier, people: Path
) -> None:
    report = deid.scan(people)
    columns = by_name(report)

    assert report.direct_identifiers == ["email", "phone", "card", "notes"]
    for name, entity in [("email", Entity.EMAIL), ("phone", Entity.PHONE), ("card", Entity.CREDIT_CARD)]:
        column = columns[name]
        assert column.direct is entity
        assert column.entities[entity].cells == 41
        assert column.entities[entity].whole_cells == 41
        assert not column.free_text
        assert 0.5 <= column.entities[entity].confidence <= 1.0


def test_a_notes_column_with_entities_inside_longer_text_is_free_text(deid: Deidentifier, people: Path) -> None:
    notes = by_name(deid.scan(people))["notes"]

    assert notes.free_text
    assert notes.entities[Entity.PHONE].cells == sum(1 for n in range(41) if n % 3)
    assert notes.entities[Entity.PHONE].whole_cells == 0


def test_age_zip_gender_and_date_columns_are_quasi_identifiers_and_k_is_the_smallest_group(
    deid: Deidentifier, people: Path
) -> None:
    report = deid.scan(people)
    columns = by_name(report)

    assert report.quasi_identifiers == ["age", "zip", "gender", "birth_date"]
    assert columns["age"].quasi is QuasiKind.AGE
    assert columns["zip"].quasi is QuasiKind.POSTAL_CODE
    assert columns["gender"].quasi is QuasiKind.GENDER
    assert columns["birth_date"].quasi is QuasiKind.DATE
    expected = min(Counter((r[3], r[4], r[5], r[6]) for r in ROWS).values())
    assert report.k == expected == 10


def test_product_name_and_plain_numbers_are_neither_direct_nor_quasi(deid: Deidentifier, people: Path) -> None:
    columns = by_name(deid.scan(people))

    for name in ("product_name", "amount"):
        assert (columns[name].direct, columns[name].quasi) == (None, None)
        assert columns[name].entities == {}


def test_examples_are_masked_and_never_a_whole_value(deid: Deidentifier, people: Path) -> None:
    report = deid.scan(people)
    text = json.dumps(report.to_dict())

    examples = by_name(report)["email"].entities[Entity.EMAIL].examples
    assert len(examples) == 3
    assert all(e.endswith("rg") and "*" in e for e in examples)
    for row in ROWS:
        for value in row[:3]:
            assert value not in text


def test_the_json_form_has_every_field(deid: Deidentifier, people: Path) -> None:
    report = deid.scan(people).to_dict()

    assert report["file"] == "people.csv"
    assert (report["format"], report["rows"], report["k"]) == ("csv", 41, 10)
    assert report["detectors"]["patterns"]
    email = report["columns"][0]
    assert email["name"] == "email"
    assert email["direct_identifier"] == "EMAIL"
    assert email["quasi_identifier"] is None
    assert (email["cells"], email["nulls"], email["scanned"], email["distinct"]) == (41, 0, 41, 41)
    assert email["entities"]["EMAIL"]["share"] == 1.0
    assert email["entities"]["EMAIL"]["whole_cell_share"] == 1.0
    json.dumps(report)


def test_sample_rows_limits_the_detection_but_not_the_counts(deid: Deidentifier, people: Path) -> None:
    report = deid.scan(people, sample_rows=5)
    email = by_name(report)["email"]

    assert email.scanned == 5
    assert email.cells == 41
    assert report.k == 10


def test_detection_runs_on_the_first_cells_of_every_chunk_only_up_to_the_sample(
    deid: Deidentifier, people: Path
) -> None:
    analyzer = deid.analyzer()
    seen: list[int] = []

    def counting(texts: Sequence[str]) -> list[list[Finding]]:
        seen.append(len(texts))
        return analyzer.analyze_many(texts)

    report = scan_file(people, counting, sample_rows=12, chunk_rows=5)

    assert by_name(report)["email"].scanned == 12
    assert sum(seen) == 12 * 10  # ten text columns; numbers are text in CSV


# --- names, without the detectors ---------------------------------------------------------------------------------


def no_findings(texts: Sequence[str]) -> list[list[Finding]]:
    return [[] for _ in texts]


@pytest.mark.parametrize(
    ("column", "values", "direct", "quasi"),
    [
        ("first_name", ["Ann", "Bob"], Entity.PERSON, None),
        ("lastName", ["Smith", "Jones"], Entity.PERSON, None),
        ("surname", ["Smith", "Jones"], Entity.PERSON, None),
        ("customer_name", ["Ann Smith", "Bob Jones"], Entity.PERSON, None),
        ("name", ["Ann Smith", "Bob Jones"], Entity.PERSON, None),
        ("product_name", ["Widget", "Gadget"], None, None),
        ("file_name", ["a.txt", "b.txt"], None, None),
        ("email_address", ["x", "y"], Entity.EMAIL, None),
        ("ip_address", ["x", "y"], Entity.IP_ADDRESS, None),
        ("home_address", ["x", "y"], Entity.ADDRESS, None),
        ("SSN", ["x", "y"], Entity.NATIONAL_ID, None),
        ("mobile", ["x", "y"], Entity.PHONE, None),
        ("patient_id", ["p1", "p2"], Entity.PERSON_ID, None),
        ("national_id", ["123456782", "111222333"], Entity.NATIONAL_ID, None),
        ("BSN", ["123456782", "111222333"], Entity.NATIONAL_ID, None),
        ("passport_number", ["X1", "X2"], Entity.NATIONAL_ID, None),
        ("date_of_birth", ["1984-03-12", "12.03.1984"], None, QuasiKind.DATE),  # k-anonymity generalises it
        ("customerNumber", ["C-0001", "C-0002"], Entity.PERSON_ID, None),
        ("MRN", ["12345", "12346"], Entity.PERSON_ID, None),
        ("order_id", ["o1", "o2"], None, None),
        ("patient_count", ["3", "4"], None, None),
        ("age", ["34", "130"], None, QuasiKind.AGE),
        ("age", ["34", "500"], None, None),
        ("age", ["34", "old"], None, None),
        ("zip_code", ["10115", "10117"], None, QuasiKind.POSTAL_CODE),
        ("postalCode", ["SW1A 1AA", "EC2V 7HH"], None, QuasiKind.POSTAL_CODE),
        ("sex", ["F", "M"], None, QuasiKind.GENDER),
        ("city", ["Paris", "Lyon"], None, QuasiKind.LOCATION),
        ("created", ["2021-01-01", "2021-02-03 10:00"], None, QuasiKind.DATE),
        ("created", ["2021-01-01", "soon"], None, None),
        ("comment", ["fine", "good"], None, None),
        ("email", [None, None], None, None),
    ],
)
def test_column_names_and_value_shapes_flag_identifiers_without_findings(
    tmp_path: Path, column: str, values: list[str | None], direct: Entity | None, quasi: QuasiKind | None
) -> None:
    path = write_csv(tmp_path / "one.csv", [column, "other"], [[v, "x"] for v in values])

    [profile, _] = scan_file(path, no_findings).columns

    assert (profile.direct, profile.quasi) == (direct, quasi)


# --- other formats and edge cases ---------------------------------------------------------------------------------


def test_parquet_typed_columns_are_profiled_from_their_values(deid: Deidentifier, tmp_path: Path) -> None:
    path = tmp_path / "people.parquet"
    pq.write_table(
        pa.table(
            {
                "age": pa.array([30, 31, 30, 31], pa.int64()),
                "visit": pa.array([date(2021, 1, n) for n in range(1, 5)], pa.date32()),
                "email": ["a@example.org", "b@example.org", None, "d@example.org"],
            }
        ),
        path,
    )

    report = deid.scan(path)
    columns = by_name(report)

    assert columns["age"].quasi is QuasiKind.AGE
    assert columns["visit"].quasi is QuasiKind.DATE
    assert columns["email"].direct is Entity.EMAIL
    assert columns["email"].nulls == 1
    assert report.k == 1


def test_jsonl_with_missing_keys_and_nested_values_is_profiled(deid: Deidentifier, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"city": "Paris", "contact": "ann@example.org", "meta": {"a": [1]}},
            {"city": {"name": "Lyon"}, "meta": [1, 2]},
            {"city": "Paris", "contact": "bob@example.org"},
        ],
    )

    report = deid.scan(path)
    columns = by_name(report)

    assert [c.name for c in report.columns] == ["city", "contact", "meta"]
    assert columns["contact"].cells == 2
    assert columns["contact"].direct is Entity.EMAIL
    assert columns["meta"].cells == 2
    assert columns["city"].quasi is QuasiKind.LOCATION
    assert report.k == 1


def test_a_text_file_is_one_column_of_free_text(deid: Deidentifier, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Mail ann@example.org please\nnothing\r\nhit from 192.168.10.20 today\n", encoding="utf-8")

    report = deid.scan(path)

    [text] = report.columns
    assert text.name == "text"
    assert set(text.entities) == {Entity.EMAIL, Entity.IP_ADDRESS}
    assert text.free_text
    assert report.rows == 3


def test_a_csv_with_a_header_only_scans_to_empty_columns(deid: Deidentifier, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "empty.csv", ["email", "age"], [])

    report = deid.scan(path)

    assert [c.name for c in report.columns] == ["email", "age"]
    assert (report.rows, report.k, report.quasi_identifiers) == (0, None, [])


def test_progress_reaches_the_file_size(deid: Deidentifier, people: Path) -> None:
    calls: list[tuple[int, int]] = []

    deid.scan(people, progress=lambda done, total: calls.append((done, total)))

    assert calls[-1] == (people.stat().st_size, people.stat().st_size)
