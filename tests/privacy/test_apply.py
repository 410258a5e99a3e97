"""apply_policy end to end: every format, order and types kept, all-or-nothing output, manifest, determinism, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.privacy.conftest import (
    KEY,
    OTHER_KEY,
    RegexDetector,
    policy,
    read_csv,
    read_jsonl,
    regex_analyzer,
    write_csv,
    write_jsonl,
)
from warden.errors import DeidError, InvalidArgument, InvalidPolicy, KeyRequired, UnsupportedFile
from warden.privacy.apply import MANIFEST_SUFFIX, ApplyReport, apply_policy, file_sha256
from warden.privacy.deid import Deidentifier
from warden.privacy.entities import Entity
from warden.privacy.keys import DeidKey
from warden.privacy.operators import REDACTED, DateShift, Encrypt, Hash, InvalidValue, Operator
from warden.privacy.policy import Policy, TextSpec
from warden.privacy.text import TextAnalyzer
from warden.privacy.textop import TextOperator

HEADER = ["patient_id", "name", "email", "phone", "age", "zip", "birth", "visit", "notes", "gender"]
PEOPLE = [
    ["p1", "Ann Smith", "ann@example.org", "020 7946 0958", "34", "SW1A 1AA", "1984-03-02", "2021-05-01", "ok", "F"],
    ["p2", "Bob Jones", "BOB@example.org", "07700 900123", "91", "10115", "1930-12-31", "2021-05-02 10:30", "", "M"],
    ["p1", "Ann Smith", "ann@example.org", "", "35", "SW1A 2AA", "1984-03-02", "2021-06-01", "again", "F"],
    ["p3", "Cy", None, "555", "", "", "", "", None, None],
]
POLICY = """
columns:
  patient_id: {op: encrypt, context: patients}
  name: drop
  email: {op: hash, case_insensitive: true}
  phone: {op: mask, keep_last: 2}
  age: {op: generalize, bucket: 10, top: 90}
  zip: {op: generalize, prefix: 3}
  birth: {op: generalize, date: year}
  visit: {op: date_shift, subject: patient_id, max_days: 30}
  notes: keep
  gender: keep
"""


def run(source: Path, out: Path, text: str = POLICY, key: DeidKey | None = KEY, **options: Any) -> ApplyReport:
    return apply_policy(source, out, policy(text), key=key, **options)


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def people(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "people.csv", HEADER, PEOPLE)


# --- end to end per format ----------------------------------------------------------------------------------------


def test_csv_end_to_end_each_column_through_its_operator_in_row_order(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"

    report = run(people, out)

    header, rows = read_csv(out)
    assert header == [h for h in HEADER if h != "name"]
    col = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    encrypt = Encrypt.from_key(KEY, context="patients")
    assert [encrypt.decrypt(v) for v in col["patient_id"]] == ["p1", "p2", "p1", "p3"]
    email = Hash.from_key(KEY, case_insensitive=True)
    assert col["email"] == [email.pseudonym("ann@example.org"), email.pseudonym("bob@example.org"), col["email"][0], ""]
    # "555": at most half of a short value stays in the clear
    assert col["phone"] == ["*** **** **58", "***** ****23", "", "**5"]
    assert col["age"] == ["30-39", "90+", "30-39", ""]
    assert col["zip"] == ["SW1", "101", "SW1", ""]
    assert col["birth"] == ["1984", "1930", "1984", ""]
    shift = DateShift.from_key(KEY, subject="patient_id", max_days=30).shift
    assert col["visit"][0] == (date(2021, 5, 1) + shift("p1")).isoformat()
    assert col["visit"][2] == (date(2021, 6, 1) + shift("p1")).isoformat()
    assert col["visit"][1] == (date(2021, 5, 2) + shift("p2")).isoformat() + " 10:30"
    assert col["notes"] == ["ok", "", "again", ""]
    assert col["gender"] == ["F", "M", "F", ""]
    assert report.rows == 4
    assert report.columns["name"].op == "drop"
    assert report.columns["email"].stats.to_dict() == {"cells": 4, "changed": 3, "invalid": 0, "entities": {}}


PARQUET = pa.table(
    {
        "patient": pa.array(["a", "b", "a", None], pa.string()),
        "count": pa.array([1, 2, None, 4], pa.int64()),
        "ratio": pa.array([0.5, None, 1.25, 2.0], pa.float64()),
        "born": pa.array([date(1984, 3, 2), date(1990, 1, 1), None, date(2000, 2, 29)], pa.date32()),
        "visit": pa.array([date(2021, 5, 1), None, date(2021, 6, 1), date(2021, 7, 1)], pa.date32()),
        "seen": pa.array(
            [datetime(2021, 5, 1, 9, tzinfo=UTC), None, datetime(2021, 6, 1, 10, tzinfo=UTC), None],
            pa.timestamp("us", tz="UTC"),
        ),
        "age": pa.array([34, 91, None, 5], pa.int32()),
        "id": pa.array([100, 200, 300, 400], pa.int64()),
        "flag": pa.array([True, None, False, True], pa.bool_()),
    }
)
PARQUET_POLICY = """
columns:
  patient: keep
  count: keep
  ratio: keep
  born: {op: generalize, date: month}
  visit: {op: date_shift, subject: patient}
  seen: {op: date_shift, subject: patient}
  age: {op: generalize, bucket: 10}
  id: hash
  flag: keep
"""


def test_parquet_end_to_end_keeps_types_where_the_operator_keeps_them(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(PARQUET, source)

    run(source, tmp_path / "out.parquet", PARQUET_POLICY, chunk_rows=3)

    out = pq.read_table(tmp_path / "out.parquet")
    types = dict(zip(out.column_names, out.schema.types, strict=True))
    assert types == {
        "patient": pa.string(),
        "count": pa.int64(),
        "ratio": pa.float64(),
        "born": pa.date32(),
        "visit": pa.date32(),
        "seen": pa.timestamp("us", tz="UTC"),
        "age": pa.string(),
        "id": pa.string(),
        "flag": pa.bool_(),
    }
    col = out.to_pydict()
    shift = DateShift.from_key(KEY, subject="patient").shift
    assert col["count"] == [1, 2, None, 4]
    assert col["ratio"] == [0.5, None, 1.25, 2.0]
    assert col["born"] == [date(1984, 3, 1), date(1990, 1, 1), None, date(2000, 2, 1)]
    assert col["visit"] == [
        date(2021, 5, 1) + shift("a"),
        None,
        date(2021, 6, 1) + shift("a"),
        date(2021, 7, 1) + shift(None),
    ]
    assert col["seen"] == [
        datetime(2021, 5, 1, 9, tzinfo=UTC) + shift("a"),
        None,
        datetime(2021, 6, 1, 10, tzinfo=UTC) + shift("a"),
        None,
    ]
    assert col["age"] == ["30-39", "90-99", None, "0-9"]
    assert col["id"] == [Hash.from_key(KEY).pseudonym(str(n)) for n in (100, 200, 300, 400)]
    assert col["flag"] == [True, None, False, True]


RECORDS: list[dict[str, Any]] = [
    {"id": 1, "email": "ann@example.org", "meta": {"tags": ["x"]}, "when": "2021-05-01"},
    {"id": 2, "meta": None},
    {"id": 3, "email": "zoë@example.org", "when": "2021-05-03T08:00:00", "meta": [1, 2]},
    {"email": None, "id": 4.5, "note": "東京"},
]


def test_jsonl_end_to_end_keeps_missing_keys_missing_nested_values_and_json_types(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    text = "columns: {id: keep, email: hash, meta: keep, when: {op: date_shift, subject: id}, note: redact}"

    run(source, tmp_path / "out.jsonl", text, chunk_rows=2)

    out = read_jsonl(tmp_path / "out.jsonl")
    pseudonym = Hash.from_key(KEY).pseudonym
    shift = DateShift.from_key(KEY, subject="id").shift
    assert out == [
        {
            "id": 1,
            "email": pseudonym("ann@example.org"),
            "meta": {"tags": ["x"]},
            "when": (date(2021, 5, 1) + shift(1)).isoformat(),
        },
        {"id": 2, "meta": None},
        {
            "id": 3,
            "email": pseudonym("zoë@example.org"),
            "meta": [1, 2],
            "when": (date(2021, 5, 3) + shift(3)).isoformat() + "T08:00:00",
        },
        {"id": 4.5, "email": None, "note": REDACTED},
    ]


def test_text_end_to_end_replaces_entities_and_keeps_every_line_ending(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"mail ann@example.org today\r\nnothing here\n\nPERSON:Ann wrote to bob@x.org")
    deid = Deidentifier(key=KEY, analyzer_factory=regex_analyzer)
    text = "columns: {text: {op: text, entities: {EMAIL: hash}}}"

    report = deid.apply(source, tmp_path / "out.txt", policy(text), chunk_rows=2)

    pseudonym = Hash.from_key(KEY).pseudonym
    assert (tmp_path / "out.txt").read_bytes() == (
        f"mail {pseudonym('ann@example.org')} today\r\nnothing here\n\n"
        f"PERSON:<PERSON> wrote to {pseudonym('bob@x.org')}"
    ).encode()
    assert report.entity_counts() == {"EMAIL": 2, "PERSON": 1}
    assert report.detectors == {"regex": "test-1"}


def test_the_text_operator_on_a_number_column_writes_text(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": pa.array([1, None, 3], pa.int64())}), source)
    analyzer = TextAnalyzer([RegexDetector()])

    def factory(spec: TextSpec, per_entity: dict[Entity, Operator]) -> Operator:
        return TextOperator(analyzer, per_entity)

    run(source, tmp_path / "out.parquet", "columns: {n: text}", text_factory=factory)

    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.types == [pa.string()]
    assert out.to_pydict() == {"n": ["1", None, "3"]}


# --- all or nothing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_when_the_last_chunk_holds_a_bad_value_then_no_output_no_manifest_and_no_temp_file(
    tmp_path: Path, fmt: str
) -> None:
    values = [str(n) for n in range(50)] + ["forty"]
    source = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        write_csv(source, ["age"], [[v] for v in values])
    elif fmt == "jsonl":
        write_jsonl(source, [{"age": v} for v in values])
    else:
        pq.write_table(pa.table({"age": values}), source)
    out = tmp_path / f"out.{fmt}"

    with pytest.raises(InvalidValue, match=r"^row 50: generalize cannot read") as caught:
        run(source, out, "columns: {age: {op: generalize, bucket: 10}}", chunk_rows=7)

    assert caught.value.row == 50
    assert only_files(tmp_path) == [source.name]


def test_when_a_run_fails_over_an_existing_output_then_the_old_output_stays(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("previous\n", encoding="utf-8")

    with pytest.raises(InvalidPolicy):
        run(people, out, "columns: {email: hash}", overwrite=True)

    assert out.read_text(encoding="utf-8") == "previous\n"
    assert only_files(tmp_path) == ["out.csv", "people.csv"]


def test_jsonl_row_numbers_count_records_without_the_key(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"a": 1}, {"b": 2}, {"b": 3}, {"a": 4, "b": "x"}, {"b": 5}])

    with pytest.raises(InvalidValue, match=r"^row 3: ") as caught:
        run(source, tmp_path / "out.jsonl", "columns: {a: keep, b: {op: generalize, bucket: 2}}", chunk_rows=10)
    assert caught.value.row == 3


def test_jsonl_nested_values_under_a_changing_operator_are_invalid_at_their_row(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"a": "x"}, {"b": 1}, {"a": {"nested": True}}])

    with pytest.raises(InvalidValue, match=r"^row 2: column 'a' holds a dict value"):
        run(source, tmp_path / "out.jsonl", "unlisted: keep\ncolumns: {a: hash}")
    assert only_files(tmp_path) == ["in.jsonl"]


def test_when_a_jsonl_key_the_policy_does_not_name_first_appears_mid_file_then_invalid_policy(tmp_path: Path) -> None:
    records = [{"email": f"u{n}@x.org"} for n in range(30)] + [{"email": "z@x.org", "ssn": "078-05-1120"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)

    with pytest.raises(InvalidPolicy, match="'ssn'") as caught:
        run(source, tmp_path / "out.jsonl", "columns: {email: hash}", chunk_rows=4)

    assert caught.value.where == "columns"
    assert only_files(tmp_path) == ["in.jsonl"]


def test_when_a_jsonl_key_the_policy_names_first_appears_mid_file_then_it_is_processed(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [{"email": f"u{n}@x.org"} for n in range(10)] + [{"email": "z@x.org", "ssn": "1"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)

    run(source, tmp_path / "out.jsonl", "columns: {email: hash, ssn: redact}", chunk_rows=3)

    out = read_jsonl(tmp_path / "out.jsonl")
    assert out[-1]["ssn"] == REDACTED
    assert all("ssn" not in r for r in out[:-1])


def test_when_a_jsonl_file_never_has_a_key_the_policy_names_then_invalid_policy(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"email": "a@x.org"}] * 5)

    with pytest.raises(InvalidPolicy, match="no column 'ssn'") as caught:
        run(source, tmp_path / "out.jsonl", "columns: {email: hash, ssn: redact}", chunk_rows=2)
    assert caught.value.where == "columns.ssn"
    assert only_files(tmp_path) == ["in.jsonl"]


def test_a_jsonl_date_shift_without_its_subject_in_some_records_is_deterministic(tmp_path: Path) -> None:
    records = [{"when": "2021-01-01"}, {"when": "2021-01-02", "patient": "p1"}, {"when": "2021-01-03"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    text = "columns: {when: {op: date_shift, subject: patient}, patient: keep}"

    run(source, tmp_path / "a.jsonl", text, chunk_rows=1)
    run(source, tmp_path / "b.jsonl", text, chunk_rows=3)

    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    shift = DateShift.from_key(KEY, subject="patient").shift
    assert read_jsonl(tmp_path / "a.jsonl")[0]["when"] == (date(2021, 1, 1) + shift(None)).isoformat()


# --- paths --------------------------------------------------------------------------------------------------------


def test_when_the_output_is_the_input_then_refused_even_with_overwrite(people: Path, tmp_path: Path) -> None:
    before = people.read_bytes()
    (tmp_path / "link.csv").symlink_to(people)

    for target in (people, tmp_path / "." / "people.csv", tmp_path / "link.csv"):
        with pytest.raises(InvalidArgument, match="must not be the input"):
            run(people, target, overwrite=True)

    assert people.read_bytes() == before


def test_when_the_output_exists_then_refused_without_overwrite_and_replaced_with_it(
    people: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    out.write_text("old\n", encoding="utf-8")

    with pytest.raises(InvalidArgument, match="exists"):
        run(people, out)
    assert out.read_text(encoding="utf-8") == "old\n"

    run(people, out, overwrite=True)
    assert read_csv(out)[0][0] == "patient_id"


@pytest.mark.parametrize(
    ("out", "error", "message"),
    [
        ("out.parquet", InvalidArgument, "must have the input's format"),
        ("out.xlsx", UnsupportedFile, "unknown file type"),
        ("missing/out.csv", InvalidArgument, "does not exist"),
    ],
)
def test_when_the_output_path_is_wrong_then_refused(
    people: Path, tmp_path: Path, out: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        run(people, tmp_path / out)


def test_when_the_input_is_missing_then_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a readable file"):
        run(tmp_path / "absent.csv", tmp_path / "out.csv")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("unlisted: keep\ncolumns: {email: hash}", "columns.email"),
        ("unlisted: keep\ncolumns: {visit: {op: date_shift, subject: patient_id}}", "columns.visit"),
        ("unlisted: keep\ncolumns: {notes: {op: text, entities: {EMAIL: encrypt}}}", "columns.notes.entities.EMAIL"),
    ],
)
def test_when_a_keyed_policy_has_no_key_then_key_required_naming_the_column_before_any_output(
    people: Path, tmp_path: Path, text: str, where: str
) -> None:
    with pytest.raises(KeyRequired, match=rf"^{where}: .*needs a key"):
        run(people, tmp_path / "out.csv", text, key=None)
    assert only_files(tmp_path) == ["people.csv"]


def test_a_policy_without_keyed_operators_needs_no_key(people: Path, tmp_path: Path) -> None:
    report = run(people, tmp_path / "out.csv", "unlisted: drop\ncolumns: {email: redact, age: keep}", key=None)

    assert report.key_id is None
    assert read_csv(tmp_path / "out.csv")[0] == ["email", "age"]


# --- manifest -----------------------------------------------------------------------------------------------------


def test_the_manifest_records_hashes_policy_key_and_counts_and_no_cell_value(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"

    report = run(people, out)

    manifest_path = tmp_path / ("out.csv" + MANIFEST_SUFFIX)
    assert report.manifest_path == manifest_path
    text = manifest_path.read_text(encoding="utf-8")
    manifest = json.loads(text)
    assert manifest["input"] == {"name": "people.csv", "sha256": file_sha256(people), "format": "csv"}
    assert manifest["output"] == {"name": "out.csv", "sha256": file_sha256(out)}
    assert manifest["policy_sha256"] == policy(POLICY).sha256
    assert Policy.parse(manifest["policy"]).sha256 == policy(POLICY).sha256
    assert manifest["key_id"] == KEY.key_id
    assert manifest["rows"] == 4
    assert manifest["columns"]["age"] == {"op": "generalize", "cells": 4, "changed": 3, "invalid": 0, "entities": {}}
    assert manifest["columns"]["name"]["op"] == "drop"
    assert manifest["k_anonymity"] is None
    assert manifest["detectors"] == {}
    assert datetime.fromisoformat(manifest["started"]) <= datetime.fromisoformat(manifest["finished"])
    assert KEY.secret.hex() not in text
    cells = {v for row in PEOPLE for v in row if v and len(v) >= 3} | set(read_csv(out)[1][0])
    leaked = [v for v in cells if v in text and v not in HEADER]
    assert leaked == []


def test_the_manifest_counts_invalid_cells_under_on_invalid_null(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["age"], [["34"], ["n/a"], [None], ["unknown"]])

    report = run(source, tmp_path / "out.csv", "columns: {age: {op: generalize, bucket: 10, on_invalid: null}}")

    assert report.columns["age"].stats.to_dict() == {"cells": 4, "changed": 3, "invalid": 2, "entities": {}}
    assert read_csv(tmp_path / "out.csv")[1] == [["30-39"], [""], [""], [""]]


# --- determinism --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_run_is_deterministic_for_a_key_and_differs_for_another(people: Path, tmp_path: Path, fmt: str) -> None:
    source = people
    if fmt == "parquet":
        source = tmp_path / "people.parquet"
        header, rows = read_csv(people)
        pq.write_table(pa.table({h: [r[i] or None for r in rows] for i, h in enumerate(header)}), source)

    run(source, tmp_path / f"a.{fmt}")
    run(source, tmp_path / f"b.{fmt}")
    run(source, tmp_path / f"c.{fmt}", key=OTHER_KEY)
    run(source, tmp_path / f"d.{fmt}", chunk_rows=1)

    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
    assert (tmp_path / f"a.{fmt}").read_bytes() != (tmp_path / f"c.{fmt}").read_bytes()
    if fmt == "csv":  # Parquet's row groups follow the chunks; the values do not
        assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"d.{fmt}").read_bytes()
    else:
        assert pq.read_table(tmp_path / f"a.{fmt}") == pq.read_table(tmp_path / f"d.{fmt}")


# --- empty files, progress ----------------------------------------------------------------------------------------


def test_a_csv_with_a_header_only_gives_a_header_only_output(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["name", "email"], [])

    report = run(source, tmp_path / "out.csv", "columns: {name: drop, email: hash}")

    assert read_csv(tmp_path / "out.csv") == (["email"], [])
    assert report.rows == 0
    assert set(report.columns) == {"name", "email"}


def test_an_empty_parquet_file_gives_an_empty_output_with_the_output_schema(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(PARQUET.slice(0, 0), source)

    run(source, tmp_path / "out.parquet", PARQUET_POLICY)

    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 0
    assert out.schema.field("count").type == pa.int64()
    assert out.schema.field("id").type == pa.string()


def test_an_empty_file_is_still_checked_against_the_policy(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["name"], [])

    with pytest.raises(InvalidPolicy, match="no column 'email'"):
        run(source, tmp_path / "out.csv", "columns: {name: keep, email: hash}")


def test_progress_reports_bytes_read_up_to_the_file_size(people: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    run(people, tmp_path / "out.csv", progress=lambda done, total: calls.append((done, total)), chunk_rows=1)

    assert calls
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (people.stat().st_size, people.stat().st_size)


# --- k-anonymity through apply ------------------------------------------------------------------------------------


def test_k_anonymity_in_a_policy_generalises_the_quasi_identifiers_to_k(tmp_path: Path) -> None:
    rows = [[str(20 + n % 40), f"{10000 + n * 37 % 500}", "FM"[n % 2], f"u{n}@x.org"] for n in range(200)]
    source = write_csv(tmp_path / "in.csv", ["age", "zip", "gender", "email"], rows)
    text = (
        "columns: {age: keep, zip: keep, gender: keep, email: hash}\n"
        "k_anonymity: {k: 5, quasi_identifiers: [age, zip, gender]}"
    )

    report = run(source, tmp_path / "out.csv", text)

    _, out = read_csv(tmp_path / "out.csv")
    groups = Counter((r[0], r[1], r[2]) for r in out)
    assert min(groups.values()) >= 5
    assert report.k_anonymity is not None
    assert report.k_anonymity.min_group_after >= 5
    assert report.k_anonymity.suppressed_rows <= 0.05 * 200
    manifest = json.loads((tmp_path / ("out.csv" + MANIFEST_SUFFIX)).read_text(encoding="utf-8"))
    assert manifest["k_anonymity"]["k"] == 5


def test_when_a_quasi_identifier_has_its_own_operator_then_invalid_policy(people: Path, tmp_path: Path) -> None:
    text = POLICY + "k_anonymity: {k: 2, quasi_identifiers: [age]}"

    with pytest.raises(InvalidPolicy, match="give it 'keep'") as caught:
        run(people, tmp_path / "out.csv", text)
    assert caught.value.where == "columns.age"


def test_when_a_quasi_identifier_is_not_in_the_file_then_invalid_policy(people: Path, tmp_path: Path) -> None:
    text = "unlisted: keep\ncolumns: {}\nk_anonymity: {k: 2, quasi_identifiers: [age, income]}"

    with pytest.raises(InvalidPolicy, match="no column 'income'") as caught:
        run(people, tmp_path / "out.csv", text)
    assert caught.value.where == "k_anonymity.quasi_identifiers"
    assert only_files(tmp_path) == ["people.csv"]


# --- streaming in bounded memory ----------------------------------------------------------------------------------

_CHILD = """
import json, resource, sys
from pathlib import Path
from warden.privacy.apply import apply_policy
from warden.privacy.keys import DeidKey
from warden.privacy.policy import Policy

policy = Policy.parse({"columns": {
    "id": "keep", "email": "hash", "phone": "redact",
    "age": {"op": "generalize", "bucket": 10, "top": 90}, "zip": {"op": "generalize", "prefix": 2},
    "notes": "keep",
}})
key = DeidKey(bytes(range(32)))
warm, big, out = (Path(a) for a in sys.argv[1:4])
apply_policy(warm, out.with_name("warm-out.csv"), policy, key=key)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = apply_policy(big, out, policy, key=key)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kib": base, "peak_kib": peak, "rows": report.rows}))
"""
_NOTE = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore"


def write_big_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,email,phone,age,zip,notes\n")
        for start in range(0, rows, 10_000):
            handle.write(
                "".join(
                    f'{n},user{n}@example.org,+44 20 7946 {n % 10_000:04d},{n % 97},{10_000 + n % 89_999},"{_NOTE}"\n'
                    for n in range(start, min(rows, start + 10_000))
                )
            )


def test_a_file_bigger_than_the_memory_cap_streams_in_bounded_memory(tmp_path: Path) -> None:
    warm, big = tmp_path / "warm.csv", tmp_path / "big.csv"
    # 41 MiB, more than the CSV reader's read-ahead (32 blocks of 1 MiB): every buffer reaches its steady state.
    write_big_csv(warm, 260_000)
    write_big_csv(big, 650_000)
    size_mib = big.stat().st_size / (1 << 20)
    cap_mib = 64
    assert size_mib > 1.3 * cap_mib

    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(warm), str(big), str(tmp_path / "out.csv")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    growth_mib = (measured["peak_kib"] - measured["base_kib"]) / 1024
    assert measured["rows"] == 650_000
    assert growth_mib < cap_mib, f"peak RSS grew {growth_mib:.0f} MiB over a {size_mib:.0f} MiB file"
    with (tmp_path / "out.csv").open(encoding="utf-8") as handle:
        assert sum(1 for _ in handle) == 650_001


def test_a_typed_column_cannot_take_a_placeholder_and_says_so(tmp_path: Path) -> None:
    shift = DateShift.from_key(KEY, subject="p").shift
    subject = next(s for s in (f"s{n}" for n in range(100)) if shift(s).days > 0)
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"p": [subject], "d": pa.array([date(9999, 12, 31)], pa.date32())}), source)

    with pytest.raises(DeidError, match=r"column 'd': .*choose null rather than redact"):
        run(source, tmp_path / "a.parquet", "columns: {p: keep, d: {op: date_shift, subject: p, on_invalid: redact}}")
    run(source, tmp_path / "b.parquet", "columns: {p: keep, d: {op: date_shift, subject: p, on_invalid: 'null'}}")

    assert only_files(tmp_path) == ["b.parquet", "b.parquet.manifest.json", "in.parquet"]
    assert pq.read_table(tmp_path / "b.parquet").column("d").to_pylist() == [None]


# --- worker processes -------------------------------------------------------------------------------------------


def test_worker_processes_write_the_same_bytes_and_counts_as_one_process(people: Path, tmp_path: Path) -> None:
    many = write_csv(tmp_path / "many.csv", HEADER, PEOPLE * 40)
    alone = run(many, tmp_path / "alone.csv", chunk_rows=7)
    shared = run(many, tmp_path / "shared.csv", chunk_rows=7, workers=2)

    assert (tmp_path / "shared.csv").read_bytes() == (tmp_path / "alone.csv").read_bytes()
    assert {n: r.stats for n, r in shared.columns.items()} == {n: r.stats for n, r in alone.columns.items()}
    assert shared.rows == alone.rows == 160


def test_worker_processes_run_the_text_operator_and_keep_json_lines_absent_keys(tmp_path: Path) -> None:
    records = [{"id": n, "note": f"write to user{n}@example.com"} if n % 3 else {"id": n} for n in range(60)]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    deid = Deidentifier(key=KEY, ner=False)
    text = "columns: {id: keep, note: {op: text, ner: false}}"

    alone = deid.apply(source, tmp_path / "alone.jsonl", policy(text), chunk_rows=8, workers=1)
    shared = deid.apply(source, tmp_path / "shared.jsonl", policy(text), chunk_rows=8, workers=2)

    assert (tmp_path / "shared.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()
    assert shared.columns["note"].stats.entities == alone.columns["note"].stats.entities == {"EMAIL": 40}
    assert '"note"' not in (tmp_path / "shared.jsonl").read_text().splitlines()[0]  # record 0 had no note


def test_an_error_in_a_worker_process_keeps_its_code_and_row_and_leaves_no_output(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["age"], [[str(n)] for n in range(50)] + [["forty"]])

    with pytest.raises(InvalidValue, match=r"^row 50: generalize cannot read") as caught:
        run(source, tmp_path / "out.csv", "columns: {age: {op: generalize, bucket: 10}}", chunk_rows=7, workers=2)

    assert caught.value.row == 50
    assert only_files(tmp_path) == ["in.csv"]


def test_the_text_operator_reads_json_numbers_and_keeps_the_type_of_numbers_without_findings(tmp_path: Path) -> None:
    # A card number stored as a JSON number once passed the text operator untouched.
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": 4111111111111111}, {"n": 42}, {"n": "call 14155552671"}])
    out = tmp_path / "out.jsonl"

    Deidentifier(ner=False).apply(source, out, policy("columns: {n: {op: text, ner: false}}"))

    assert read_jsonl(out) == [{"n": "<CREDIT_CARD>"}, {"n": 42}, {"n": "call <PHONE>"}]


def test_when_the_output_cannot_be_put_in_place_then_no_manifest_describes_it(people: Path, tmp_path: Path) -> None:
    # The manifest used to be written before the output was renamed into place.
    (tmp_path / "out.csv").mkdir()

    with pytest.raises(OSError):  # noqa: PT011 - the operating system's own error (a directory is in the way)
        run(people, tmp_path / "out.csv", overwrite=True)

    assert not (tmp_path / ("out.csv" + MANIFEST_SUFFIX)).exists()
    assert only_files(tmp_path) == ["out.csv", "people.csv"]
