"""--auto: the policy derived from a scan, and the whole scan-decide-apply run with Warden's pattern detectors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.privacy.conftest import HEADER, KEY, ROWS, policy, read_csv, regex_analyzer, write_csv, write_jsonl
from warden.errors import InvalidPolicy
from warden.privacy.apply import MANIFEST_SUFFIX
from warden.privacy.auto import auto_policy
from warden.privacy.deid import Deidentifier
from warden.privacy.entities import Entity
from warden.privacy.operators import DatePart, OnInvalid
from warden.privacy.policy import (
    ColumnSpec,
    GeneralizeSpec,
    HashSpec,
    KeepSpec,
    Policy,
    RedactSpec,
    TextSpec,
)
from warden.privacy.scan import ColumnProfile, EntityProfile, QuasiKind, ScanReport
from warden.privacy.tables import Format
from warden.privacy.text import TextAnalyzer


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> ScanReport:
    path = write_csv(tmp_path_factory.mktemp("auto") / "people.csv", HEADER, ROWS)
    return Deidentifier(ner=False).scan(path)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "people.csv", HEADER, ROWS)


AGE = GeneralizeSpec(op="generalize", bucket=10, top=90, on_invalid=OnInvalid.REDACT)
ZIP = GeneralizeSpec(op="generalize", prefix=3, on_invalid=OnInvalid.REDACT)
YEAR = GeneralizeSpec(op="generalize", date=DatePart.YEAR, on_invalid=OnInvalid.REDACT)
KEEP = KeepSpec(op="keep")
HASH = HashSpec(op="hash")


def test_with_a_key_direct_identifiers_are_hashed_notes_go_through_text_and_quasi_identifiers_are_generalised(
    scanned: ScanReport,
) -> None:
    policy = auto_policy(scanned, keyed=True)

    assert policy.columns == {
        "email": HASH,
        "phone": HASH,
        "card": HASH,
        "age": AGE,
        "zip": ZIP,
        "gender": KEEP,
        "birth_date": YEAR,
        "product_name": KEEP,
        "notes": TextSpec(op="text"),
        "amount": KEEP,
    }
    assert policy.unlisted == "error"
    assert policy.k_anonymity is None


def test_without_a_key_direct_identifiers_are_redacted_with_their_type(scanned: ScanReport) -> None:
    columns = auto_policy(scanned, keyed=False).columns

    assert columns["email"] == RedactSpec(op="redact", entity=Entity.EMAIL)
    assert columns["phone"] == RedactSpec(op="redact", entity=Entity.PHONE)
    assert columns["card"] == RedactSpec(op="redact", entity=Entity.CREDIT_CARD)
    assert not Policy(columns=columns).needs_key()


def test_with_k_the_quasi_identifiers_are_kept_for_the_k_procedure(scanned: ScanReport) -> None:
    policy = auto_policy(scanned, keyed=True, k=5, max_suppressed=0.1)

    assert policy.k_anonymity is not None
    assert policy.k_anonymity.k == 5
    assert policy.k_anonymity.quasi_identifiers == ["age", "zip", "gender", "birth_date"]
    assert policy.k_anonymity.max_suppressed == 0.1
    assert {name: policy.columns[name] for name in policy.k_anonymity.quasi_identifiers} == dict.fromkeys(
        ["age", "zip", "gender", "birth_date"], KEEP
    )
    assert policy.columns["email"] == HASH


def profile(name: str, **fields: object) -> ColumnProfile:
    column = ColumnProfile(name)
    for key, value in fields.items():
        setattr(column, key, value)
    return column


def found(entity: Entity, cells: int, whole: int) -> dict[Entity, EntityProfile]:
    return {entity: EntityProfile(findings=cells, cells=cells, whole_cells=whole, score_sum=0.9 * cells)}


@pytest.mark.parametrize(
    ("column", "keyed", "expected"),
    [
        pytest.param(
            profile(
                "dob",
                cells=10,
                scanned=10,
                text_chars=100,
                direct=Entity.DATE_OF_BIRTH,
                entities=found(Entity.DATE_OF_BIRTH, 10, 10),
            ),
            True,
            YEAR,
            id="date-of-birth-to-year",
        ),
        pytest.param(
            profile(
                "contact",
                cells=10,
                scanned=10,
                text_chars=300,
                direct=Entity.EMAIL,
                entities=found(Entity.EMAIL, 10, 10),
            ),
            True,
            HASH,
            id="long-emails-filling-cells-are-hashed",
        ),
        pytest.param(
            profile(
                "memo", cells=100, scanned=100, text_chars=5000, direct=Entity.PHONE, entities=found(Entity.PHONE, 5, 5)
            ),
            True,
            TextSpec(op="text"),
            id="long-text-with-a-few-whole-cell-phones-is-text",
        ),
        pytest.param(
            profile("surname", cells=10, scanned=10, text_chars=60, direct=Entity.PERSON),
            False,
            RedactSpec(op="redact", entity=Entity.PERSON),
            id="name-hint-without-findings",
        ),
        pytest.param(
            profile("comment", cells=100, scanned=100, text_chars=4000, entities=found(Entity.URL, 1, 0)),
            True,
            TextSpec(op="text"),
            id="one-finding-in-long-text",
        ),
        pytest.param(profile("city", cells=10, scanned=10, quasi=QuasiKind.LOCATION), True, KEEP, id="location-kept"),
        pytest.param(profile("code", cells=10, scanned=10), True, KEEP, id="nothing-found"),
    ],
)
def test_auto_decisions_per_kind_of_column(column: ColumnProfile, keyed: bool, expected: ColumnSpec) -> None:
    report = ScanReport(Path("x.csv"), Format.CSV, 10, [column], [], None, {})

    assert auto_policy(report, keyed=keyed).columns[column.name] == expected


def test_a_quasi_identifier_with_some_text_findings_is_left_to_k() -> None:
    city = profile(
        "city", cells=200, scanned=200, text_chars=8000, quasi=QuasiKind.LOCATION, entities=found(Entity.ADDRESS, 1, 0)
    )
    report = ScanReport(Path("x.csv"), Format.CSV, 200, [city], ["city"], 1, {})

    assert auto_policy(report, keyed=True, k=3).columns["city"] == KEEP
    assert auto_policy(report, keyed=True).columns["city"] == TextSpec(op="text")


def test_auto_end_to_end_leaves_no_identifier_in_the_output(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"

    result = Deidentifier(key=KEY, ner=False).auto(people, out)

    text = out.read_text(encoding="utf-8")
    for row in ROWS:
        for value in row[:3]:
            assert value not in text
        if "020 7946" in row[8]:
            assert row[8].split(" on ")[1].split(" about")[0] not in text
    header, rows = read_csv(out)
    assert header == HEADER
    column = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    assert set(column["age"]) == {"30-39"}
    assert set(column["zip"]) == {"101"}
    assert set(column["birth_date"]) == {"1980", "1981", "1982", "1983"}
    assert column["product_name"] == [r[7] for r in ROWS]
    assert "<PHONE>" in column["notes"][1]
    assert result.applied.entity_counts() == {"PHONE": sum(1 for n in range(41) if n % 3)}
    manifest = json.loads((tmp_path / ("out.csv" + MANIFEST_SUFFIX)).read_text(encoding="utf-8"))
    assert manifest["policy_sha256"] == result.policy.sha256
    assert manifest["key_id"] == KEY.key_id
    assert manifest["detectors"]["patterns"]


def test_auto_with_k_reaches_k_over_the_quasi_identifiers(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"

    result = Deidentifier(key=KEY, ner=False).auto(people, out, k=15, max_suppressed=0.0)

    _, rows = read_csv(out)
    groups = Counter((r[3], r[4], r[5], r[6]) for r in rows)
    assert min(groups.values()) >= 15
    report = result.applied.k_anonymity
    assert report is not None
    assert report.min_group_before == 10
    assert report.min_group_after >= 15
    assert report.suppressed_rows == 0


def test_auto_without_a_key_redacts(people: Path, tmp_path: Path) -> None:
    result = Deidentifier(ner=False).auto(people, tmp_path / "out.csv")

    _, rows = read_csv(tmp_path / "out.csv")
    assert {r[0] for r in rows} == {"<EMAIL>"}
    assert {r[2] for r in rows} == {"<CREDIT_CARD>"}
    assert result.applied.key_id is None


def test_the_deidentifier_builds_one_analyzer_per_setting_for_every_file_and_column(tmp_path: Path) -> None:
    built: list[dict[str, object]] = []

    def factory(**settings: object) -> TextAnalyzer:
        built.append(settings)
        return regex_analyzer()

    deid = Deidentifier(key=KEY, analyzer_factory=factory, national_ids=["us.ssn"])
    source = write_csv(tmp_path / "in.csv", ["a", "b"], [["mail x@y.org", "PERSON:Ann"]])
    text = "columns: {a: text, b: {op: text, ner: false, min_score: 0.7}}"

    deid.scan(source)
    deid.apply(source, tmp_path / "one.csv", policy(text))
    deid.apply(source, tmp_path / "two.csv", policy(text))

    assert built == [
        {"ner": True, "national_ids": ["us.ssn"], "min_score": 0.5},
        {"ner": False, "national_ids": ["us.ssn"], "min_score": 0.7},
    ]
    assert deid.versions() == {"regex": "test-1"}
    assert read_csv(tmp_path / "two.csv")[1] == [["mail <EMAIL>", "PERSON:<PERSON>"]]


def test_a_deidentifier_without_ner_never_asks_for_it() -> None:
    asked: list[object] = []

    def factory(**settings: object) -> TextAnalyzer:
        asked.append(settings["ner"])
        return regex_analyzer()

    deid = Deidentifier(ner=False, analyzer_factory=factory)
    deid.analyzer(ner=True)
    deid.analyzer()

    assert asked == [False]


def test_a_rare_entity_in_a_short_column_is_not_kept(tmp_path: Path) -> None:
    # 5 e-mails among 1,000 "ok" cells (0.5%) once fell under the direct-identifier share and were kept as is.
    rows = [["ok"]] * 995 + [[f"user{n}@example.com"] for n in range(5)]
    source = write_csv(tmp_path / "status.csv", ["status"], rows)
    out = tmp_path / "clean.csv"

    result = Deidentifier(ner=False).auto(source, out)

    assert result.policy.columns["status"].op == "text"
    assert "@example.com" not in out.read_text(encoding="utf-8")


def test_numbers_and_nested_values_in_json_lines_are_scanned_not_kept(tmp_path: Path) -> None:
    records = [
        {"contact": {"email": f"ann{n}@example.com"}, "acct": 4111111111111111, "tel": 14155552671} for n in range(20)
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "clean.jsonl"

    result = Deidentifier(ner=False).auto(source, out)

    assert {n: s.op for n, s in result.policy.columns.items()} == {"contact": "drop", "acct": "redact", "tel": "redact"}
    written = out.read_text(encoding="utf-8")
    assert "4111111111111111" not in written
    assert "14155552671" not in written
    assert "example.com" not in written


def test_with_ner_off_the_auto_policy_says_so_and_a_policy_asking_for_ner_is_refused(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "notes.csv", ["notes"], [["write to ann@example.com please, it is urgent"]] * 3)

    result = Deidentifier(ner=False).auto(source, tmp_path / "clean.csv")

    assert result.policy.columns["notes"] == TextSpec(op="text", ner=False)
    with pytest.raises(InvalidPolicy, match="--no-ner"):
        Deidentifier(ner=False).apply(source, tmp_path / "again.csv", policy("columns: {notes: text}"))
