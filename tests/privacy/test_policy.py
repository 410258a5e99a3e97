"""Policies: what a valid file means, and every way a bad one stops the run with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.privacy.conftest import KEY, policy
from warden.errors import InvalidPolicy, KeyRequired
from warden.privacy.entities import Entity
from warden.privacy.operators import (
    DatePart,
    DateShift,
    Encrypt,
    GeneralizeDate,
    GeneralizeNumber,
    GeneralizePrefix,
    Hash,
    Keep,
    Mask,
    OnInvalid,
    Operator,
    Redact,
)
from warden.privacy.policy import (
    DateShiftSpec,
    DropSpec,
    GeneralizeSpec,
    HashSpec,
    KeepSpec,
    MaskSpec,
    Policy,
    TextSpec,
    build_operator,
)

FULL = """
version: 1
unlisted: error
columns:
  name: drop
  email: hash
  phone: {op: mask, keep_last: 2}
  birth_date: {op: generalize, date: year}
  zip: {op: generalize, prefix: 3}
  age: {op: generalize, bucket: 10, top: 90}
  visit: {op: date_shift, subject: patient_id, max_days: 180}
  patient_id: {op: encrypt, context: patients}
  notes: {op: text, entities: {PERSON: hash, PHONE: {op: mask, keep_last: 2}}}
  gender: keep
k_anonymity: {k: 5, quasi_identifiers: [gender]}
"""


def invalid(text: str) -> InvalidPolicy:
    with pytest.raises(InvalidPolicy) as caught:
        policy(text)
    return caught.value


def test_when_the_documented_example_is_parsed_then_each_column_gets_its_operator() -> None:
    parsed = policy(FULL)

    assert isinstance(parsed.columns["name"], DropSpec)
    assert parsed.columns["email"] == HashSpec(op="hash")
    assert parsed.columns["phone"] == MaskSpec(op="mask", keep_last=2)
    assert parsed.columns["birth_date"] == GeneralizeSpec(op="generalize", date=DatePart.YEAR)
    assert parsed.columns["age"] == GeneralizeSpec(op="generalize", bucket=10, top=90)
    assert parsed.columns["visit"] == DateShiftSpec(op="date_shift", subject="patient_id", max_days=180)
    notes = parsed.columns["notes"]
    assert isinstance(notes, TextSpec)
    assert notes.entities[Entity.PERSON] == HashSpec(op="hash")
    assert notes.entities[Entity.PHONE] == MaskSpec(op="mask", keep_last=2)
    assert parsed.k_anonymity is not None
    assert parsed.k_anonymity.quasi_identifiers == ["gender"]
    assert parsed.k_anonymity.max_suppressed == 0.05


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        pytest.param("columns: {a: keep}\nbogus: 1", "bogus", "Extra inputs", id="unknown-top-level-key"),
        pytest.param("colums: {a: keep}", "colums", "Extra inputs", id="misspelt-columns"),
        pytest.param("columns: {a: shred}", "columns.a", "'shred'", id="unknown-operator"),
        pytest.param("columns: {a: {op: shred}}", "columns.a", "'shred'", id="unknown-operator-long-form"),
        pytest.param("columns: {a: {keep_last: 2}}", "columns.a", "'op'", id="no-operator"),
        pytest.param("columns: {a: {op: mask, keep_lst: 2}}", "columns.a.keep_lst", "Extra", id="unknown-option"),
        pytest.param("columns: {a: {op: hash, context: x}}", "columns.a.context", "Extra", id="option-of-another-op"),
        pytest.param("columns: {a: {op: drop, keep_last: 1}}", "columns.a.keep_last", "Extra", id="option-on-drop"),
        pytest.param(
            "columns: {a: {op: generalize, date: year, bucket: 10}}", "columns.a", "exactly one", id="two-kinds"
        ),
        pytest.param("columns: {a: {op: generalize}}", "columns.a", "exactly one", id="no-kind"),
        pytest.param(
            "columns: {a: {op: generalize, prefix: 3, top: 90}}", "columns.a", "top applies to bucket", id="top-alone"
        ),
        pytest.param("columns: {a: {op: generalize, date: day}}", "columns.a.date", "'year'", id="bad-date-part"),
        pytest.param("columns: {a: {op: generalize, bucket: 0}}", "columns.a.bucket", "greater than", id="bucket-0"),
        pytest.param("columns: {a: {op: generalize, bucket: .inf}}", "columns.a.bucket", "finite", id="bucket-inf"),
        pytest.param(
            "columns: {a: {op: generalize, date: year, on_invalid: skip}}",
            "columns.a.on_invalid",
            "'error', 'null' or 'redact'",
            id="bad-on-invalid",
        ),
        pytest.param("columns: {a: {op: mask, char: x}}", "columns.a.char", "letter or digit", id="mask-char-letter"),
        pytest.param("columns: {a: {op: mask, keep_last: -1}}", "columns.a.keep_last", "greater", id="mask-negative"),
        pytest.param("columns: {a: {op: hash, length: 4}}", "columns.a.length", "greater", id="hash-too-short"),
        pytest.param("columns: {a: {op: date_shift}}", "columns.a.subject", "required", id="date-shift-no-subject"),
        pytest.param(
            "columns: {a: {op: date_shift, subject: p, max_days: 0}}",
            "columns.a.max_days",
            "greater",
            id="date-shift-zero-days",
        ),
        pytest.param(
            "columns: {a: {op: text, entities: {PERSN: hash}}}", "columns.a.entities.PERSN", "'PERSON'", id="entity"
        ),
        pytest.param(
            "columns: {a: {op: text, entities: {PERSON: generalize}}}",
            "columns.a.entities.PERSON",
            "'generalize'",
            id="entity-op-not-for-text",
        ),
        pytest.param(
            "columns: {a: {op: text, entities: {PERSON: {op: mask, bogus: 1}}}}",
            "columns.a.entities.PERSON.bogus",
            "Extra",
            id="entity-option",
        ),
        pytest.param("columns: {a: {op: text, min_score: 0}}", "columns.a.min_score", "greater", id="text-min-score"),
        pytest.param("version: 2\ncolumns: {a: keep}", "version", "1", id="version"),
        pytest.param("unlisted: ignore\ncolumns: {a: keep}", "unlisted", "'error', 'keep' or 'drop'", id="unlisted"),
        pytest.param("columns: [a, b]", "columns", "dictionary", id="columns-as-list"),
        pytest.param("columns: {2024: keep}", "columns.2024", "string", id="unquoted-number-column"),
        pytest.param("k_anonymity: {k: 1, quasi_identifiers: [a]}", "k_anonymity.k", "greater", id="k-1"),
        pytest.param("k_anonymity: {k: 5, quasi_identifiers: []}", "k_anonymity.quasi_identifiers", "1", id="no-qi"),
        pytest.param(
            "k_anonymity: {k: 5, quasi_identifiers: [a], max_suppressed: 2}",
            "k_anonymity.max_suppressed",
            "less than",
            id="max-suppressed",
        ),
    ],
)
def test_when_a_policy_is_wrong_then_invalid_policy_names_the_field(text: str, where: str, message: str) -> None:
    error = invalid(text)

    assert error.where == where
    assert error.code == "invalid_policy"
    assert str(error).startswith(f"{where}: ")
    assert message in str(error)
    assert str(error).count(f"{where}:") == 1


def test_when_several_fields_are_wrong_then_each_is_reported() -> None:
    error = invalid("columns: {a: shred, b: {op: mask, bogus: 1}}\nextra: 1")

    assert error.where == "columns.a"
    assert "columns.b.bogus" in str(error)
    assert "extra" in str(error)


@pytest.mark.parametrize("data", [None, [], ["columns"], "columns: a", 3])
def test_when_the_document_is_not_a_mapping_then_invalid_policy(data: Any) -> None:
    with pytest.raises(InvalidPolicy, match="a policy is a mapping") as caught:
        Policy.parse(data)
    assert caught.value.where == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"columns: {a: keep", "not valid YAML"),
        (b"columns:\n  a: keep\n b: drop\n", "not valid YAML"),
        (b"columns:\n  email: keep\n  email: hash\n", "'email' appears twice"),
        (b"columns: {a: keep}\ncolumns: {a: drop}\n", "'columns' appears twice"),
        (b"", "a policy is a mapping"),
        (b"- a\n- b\n", "a policy is a mapping"),
        (b"columns: {a: \xc3\x28}\n", "not valid YAML"),
    ],
)
def test_when_a_policy_file_is_not_yaml_or_not_a_mapping_then_invalid_policy(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)

    with pytest.raises(InvalidPolicy, match=message):
        Policy.load(path)


def test_when_the_policy_file_is_missing_or_huge_then_invalid_policy(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy, match="cannot read policy"):
        Policy.load(tmp_path / "absent.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (1 << 20) + b"\n")
    with pytest.raises(InvalidPolicy, match="larger than 1 MiB"):
        Policy.load(huge)


def test_a_json_policy_file_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"columns": {"email": "hash", "age": {"op": "generalize", "bucket": 5}}}', encoding="utf-8")

    assert Policy.load(path).sha256 == policy("columns: {email: hash, age: {op: generalize, bucket: 5}}").sha256


@pytest.mark.parametrize(
    "spelling",
    [
        "columns: {email: {op: hash}, age: {op: generalize, bucket: 10}}",
        "columns:\n  age:\n    op: generalize\n    bucket: 10.0\n  email: hash\n",
        "version: 1\nunlisted: error\ncolumns: {email: {op: hash, length: 16, case_insensitive: false}, "
        "age: {bucket: 10, op: generalize, on_invalid: error}}",
        "# a comment\ncolumns: {'email': 'hash', \"age\": {op: generalize, bucket: 1e1}}",
    ],
)
def test_sha256_is_the_same_however_an_equivalent_policy_is_written(spelling: str) -> None:
    reference = policy("columns: {email: hash, age: {op: generalize, bucket: 10}}")

    assert policy(spelling).sha256 == reference.sha256
    assert len(reference.sha256) == 64


@pytest.mark.parametrize(
    "different",
    [
        "columns: {email: {op: hash, length: 20}, age: {op: generalize, bucket: 10}}",
        "columns: {email: hash, age: {op: generalize, bucket: 5}}",
        "unlisted: keep\ncolumns: {email: hash, age: {op: generalize, bucket: 10}}",
        "columns: {email: encrypt, age: {op: generalize, bucket: 10}}",
        "columns: {mail: hash, age: {op: generalize, bucket: 10}}",
    ],
)
def test_sha256_changes_with_any_decision(different: str) -> None:
    assert policy(different).sha256 != policy("columns: {email: hash, age: {op: generalize, bucket: 10}}").sha256


# --- the policy against a file's columns --------------------------------------------------------------------------


def test_when_the_policy_names_a_column_the_file_lacks_then_the_column_is_named() -> None:
    with pytest.raises(InvalidPolicy, match=r"people\.csv has no column 'mail'") as caught:
        policy("columns: {mail: hash, age: keep}").check_columns(["email", "age"], "people.csv")
    assert caught.value.where == "columns.mail"


def test_when_a_file_column_is_not_in_the_policy_under_unlisted_error_then_it_is_named() -> None:
    with pytest.raises(InvalidPolicy, match="'phone'") as caught:
        policy("columns: {email: hash}").check_columns(["email", "phone"], "people.csv")
    assert caught.value.where == "columns"
    assert "unlisted: keep" in str(caught.value)


@pytest.mark.parametrize(("unlisted", "spec"), [("keep", KeepSpec(op="keep")), ("drop", DropSpec(op="drop"))])
def test_when_unlisted_is_keep_or_drop_then_other_columns_follow_it(unlisted: str, spec: Any) -> None:
    parsed = policy(f"unlisted: {unlisted}\ncolumns: {{email: hash}}")

    parsed.check_columns(["email", "phone"], "people.csv")

    assert parsed.spec_for("phone") == spec
    assert parsed.spec_for("email") == HashSpec(op="hash")


def test_when_the_date_shift_subject_is_missing_then_the_subject_field_is_named() -> None:
    with pytest.raises(InvalidPolicy, match="no column 'patient'") as caught:
        policy("columns: {visit: {op: date_shift, subject: patient}}").check_columns(["visit"], "visits.csv")
    assert caught.value.where == "columns.visit.subject"


def test_when_a_quasi_identifier_is_missing_then_k_anonymity_is_named() -> None:
    parsed = policy("unlisted: keep\ncolumns: {}\nk_anonymity: {k: 2, quasi_identifiers: [age, zip]}")

    with pytest.raises(InvalidPolicy, match="no column 'zip'") as caught:
        parsed.check_columns(["age"], "people.csv")
    assert caught.value.where == "k_anonymity.quasi_identifiers"


def test_when_columns_may_still_appear_then_only_unlisted_columns_are_refused() -> None:
    parsed = policy("columns: {email: hash, late: keep, visit: {op: date_shift, subject: patient}}")

    parsed.check_columns(["email"], "records.jsonl", complete=False)

    with pytest.raises(InvalidPolicy, match="'surprise'"):
        parsed.check_columns(["email", "surprise"], "records.jsonl", complete=False)
    with pytest.raises(InvalidPolicy, match="no column 'late'"):
        parsed.check_columns(["email"], "records.jsonl")


# --- keys and operators -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needs"),
    [
        ("columns: {a: hash}", True),
        ("columns: {a: encrypt}", True),
        ("columns: {a: {op: date_shift, subject: b}, b: keep}", True),
        ("columns: {a: {op: text, entities: {EMAIL: hash}}}", True),
        ("columns: {a: {op: text, entities: {EMAIL: encrypt}}}", True),
        ("columns: {a: text, b: redact, c: {op: mask}, d: drop, e: keep}", False),
        ("columns: {a: {op: text, entities: {EMAIL: redact, PHONE: mask}}}", False),
        ("columns: {a: {op: generalize, date: month}}", False),
    ],
)
def test_needs_key_when_any_operator_is_keyed(text: str, needs: bool) -> None:
    assert policy(text).needs_key() is needs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keep", Keep()),
        ("redact", Redact("<REDACTED>")),
        ("{op: redact, entity: EMAIL}", Redact("<EMAIL>")),
        ("{op: redact, entity: EMAIL, placeholder: '[gone]'}", Redact("[gone]")),
        ("{op: mask, keep_last: 2, char: '#'}", Mask(2, "#")),
        ("{op: hash, length: 20, prefix: 'p_'}", Hash.from_key(KEY, length=20, prefix="p_")),
        ("{op: hash, case_insensitive: true}", Hash.from_key(KEY, case_insensitive=True)),
        ("{op: encrypt, context: c}", Encrypt.from_key(KEY, context="c")),
        ("{op: generalize, date: month}", GeneralizeDate(part=DatePart.MONTH)),
        ("{op: generalize, bucket: 5, top: 80, on_invalid: null}", GeneralizeNumber(OnInvalid.NULL, 5, 80)),
        ("{op: generalize, prefix: 2, on_invalid: redact}", GeneralizePrefix(OnInvalid.REDACT, 2)),
        ("{op: generalize, prefix: 2, on_invalid: 'null'}", GeneralizePrefix(OnInvalid.NULL, 2)),
        ("{op: generalize, prefix: 0}", GeneralizePrefix(length=0)),
        ("{op: date_shift, subject: p, max_days: 30}", DateShift.from_key(KEY, subject="p", max_days=30)),
    ],
)
def test_build_operator_makes_the_operator_a_spec_describes(text: str, expected: Operator) -> None:
    spec = policy(f"columns: {{a: {text}}}").columns["a"]

    assert build_operator(spec, KEY) == expected


def test_drop_builds_no_operator() -> None:
    assert build_operator(DropSpec(op="drop"), None) is None


@pytest.mark.parametrize("text", ["hash", "encrypt", "{op: date_shift, subject: p}"])
def test_when_a_keyed_operator_has_no_key_then_key_required_naming_the_column(text: str) -> None:
    spec = policy(f"columns: {{email: {text}}}").columns["email"]

    with pytest.raises(KeyRequired, match=r"^columns\.email: .*needs a key"):
        build_operator(spec, None, where="columns.email")


def test_text_builds_through_the_factory_with_its_per_entity_operators() -> None:
    spec = policy("columns: {notes: {op: text, entities: {PERSON: hash, EMAIL: keep, PHONE: {op: mask}}}}")
    seen: dict[str, Any] = {}

    def factory(text: TextSpec, per_entity: dict[Entity, Operator]) -> Operator:
        seen.update(spec=text, per_entity=per_entity)
        return Keep()

    assert build_operator(spec.columns["notes"], KEY, factory) == Keep()
    assert seen["per_entity"] == {
        Entity.PERSON: Hash.from_key(KEY),
        Entity.EMAIL: Keep(),
        Entity.PHONE: Mask(),
    }


def test_text_without_a_factory_or_with_a_keyed_entity_and_no_key_is_refused() -> None:
    notes = policy("columns: {notes: {op: text, entities: {PERSON: hash}}}").columns["notes"]

    with pytest.raises(InvalidPolicy, match="not available"):
        build_operator(notes, KEY, where="columns.notes")
    with pytest.raises(KeyRequired, match=r"columns\.notes\.entities\.PERSON"):
        build_operator(notes, None, lambda _s, _e: Keep(), where="columns.notes")


def test_a_policy_round_trips_through_its_json_form() -> None:
    parsed = policy(FULL)

    assert Policy.parse(yaml.safe_load(yaml.safe_dump(parsed.model_dump(mode="json")))) == parsed
