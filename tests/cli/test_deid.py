"""``warden deid keygen|scan|apply``: files in, de-identified files and manifests out, one error line on failure."""

from __future__ import annotations

import json
import stat
from collections import Counter
from pathlib import Path

import pytest

from tests.cli.conftest import Warden, one_error_line
from tests.privacy.conftest import HEADER, ROWS, read_csv, write_csv
from warden.privacy.apply import MANIFEST_SUFFIX
from warden.privacy.keys import DeidKey
from warden.privacy.operators import Hash

POLICY = """
columns:
  email: hash
  phone: {op: mask, keep_last: 2}
  card: redact
  age: {op: generalize, bucket: 10}
  zip: {op: generalize, prefix: 3}
  gender: keep
  birth_date: {op: generalize, date: year}
  product_name: keep
  notes: drop
  amount: keep
"""


@pytest.fixture
def people(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "people.csv", HEADER, ROWS)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "deid.key"
    DeidKey(bytes(range(32))).save(path)
    return path


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def test_keygen_writes_a_private_key_file_once(warden: Warden, tmp_path: Path) -> None:
    path = tmp_path / "new.key"

    result = warden("deid", "keygen", "--out", path)

    assert result.exit_code == 0, result.stderr
    key = DeidKey.load(path)
    assert result.stdout.strip() == f"key {key.key_id} written to {path}"
    assert key.secret.hex() not in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = warden("deid", "keygen", "--out", path)
    assert again.exit_code == 2
    assert one_error_line(again) == f"warden: error: invalid_argument: {path} exists; a key file is never replaced"
    assert DeidKey.load(path) == key


def test_scan_json_reports_identifiers_and_k(warden: Warden, people: Path) -> None:
    report = warden.json("deid", "scan", people, "--no-ner")

    assert report["file"] == "people.csv"
    assert report["rows"] == 41
    assert report["direct_identifiers"] == ["email", "phone", "card", "notes"]
    assert report["quasi_identifiers"] == ["age", "zip", "gender", "birth_date"]
    assert report["k"] == 10
    assert "patterns" in report["detectors"]
    assert ROWS[0][0] not in json.dumps(report)


def test_scan_prints_a_table_and_the_smallest_group(warden: Warden, people: Path) -> None:
    result = warden("deid", "scan", people, "--no-ner")

    assert result.exit_code == 0, result.stderr
    assert "direct: EMAIL" in result.stdout
    assert "quasi: age" in result.stdout
    assert "smallest group k = 10" in result.stdout


def test_apply_with_a_policy_writes_the_output_and_its_manifest(
    warden: Warden, people: Path, policy_file: Path, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean.csv"

    answer = warden.json("deid", "apply", people, "--out", out, "--policy", policy_file, "--key-file", key_file)

    header, rows = read_csv(out)
    assert header == [h for h in HEADER if h != "notes"]
    assert [r[0] for r in rows] == [Hash.from_key(DeidKey(bytes(range(32)))).pseudonym(row[0]) for row in ROWS]
    assert {r[2] for r in rows} == {"<REDACTED>"}
    manifest = json.loads((tmp_path / ("clean.csv" + MANIFEST_SUFFIX)).read_text(encoding="utf-8"))
    assert answer["manifest_path"] == str(tmp_path / ("clean.csv" + MANIFEST_SUFFIX))
    assert answer["output"] == manifest["output"]
    assert answer["key_id"] == DeidKey.load(key_file).key_id
    assert answer["audit"].startswith("manifest only")


def test_apply_with_worker_processes_writes_what_one_process_writes(
    warden: Warden, people: Path, policy_file: Path, key_file: Path, tmp_path: Path
) -> None:
    common = ["--policy", policy_file, "--key-file", key_file]
    alone = warden.json("deid", "apply", people, "--out", tmp_path / "alone.csv", *common, "--workers", "1")
    shared = warden.json("deid", "apply", people, "--out", tmp_path / "shared.csv", *common, "--workers", "2")

    assert shared["output"]["sha256"] == alone["output"]["sha256"]
    assert shared["columns"] == alone["columns"]


def test_apply_prints_a_table_and_where_the_record_is(
    warden: Warden, people: Path, policy_file: Path, key_file: Path, tmp_path: Path
) -> None:
    result = warden(
        "deid", "apply", people, "--out", tmp_path / "clean.csv", "--policy", policy_file, "--key-file", key_file
    )

    assert result.exit_code == 0, result.stderr
    assert "people.csv → clean.csv: 41 rows" in result.stdout
    assert "manifest only" in result.stdout


def test_apply_auto_without_ner_pseudonymises_what_the_scan_flags(
    warden: Warden, people: Path, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean.csv"

    answer = warden.json("deid", "apply", people, "--out", out, "--auto", "--no-ner", "--key-file", key_file)

    text = out.read_text(encoding="utf-8")
    assert all(row[0] not in text and row[2] not in text for row in ROWS)
    assert answer["policy"]["columns"]["email"]["op"] == "hash"
    assert answer["policy"]["columns"]["notes"]["op"] == "text"
    assert answer["entities"]["PHONE"] > 0


def test_apply_auto_with_k_reports_what_reaching_k_cost(warden: Warden, people: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.csv"

    result = warden("deid", "apply", people, "--out", out, "--auto", "--no-ner", "--k", "15", "--max-suppressed", "0")

    assert result.exit_code == 0, result.stderr
    assert "k-anonymity k=15: smallest group 10 →" in result.stdout
    _, rows = read_csv(out)
    assert min(Counter((r[3], r[4], r[5], r[6]) for r in rows).values()) >= 15


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--auto", "--policy", "POLICY"], "give exactly one of --policy FILE or --auto"),
        ([], "give exactly one of --policy FILE or --auto"),
        (["--policy", "POLICY", "--k", "5"], "--k goes with --auto"),
        (["--auto", "--max-suppressed", "0.2"], "--max-suppressed goes with --k"),
        (["--policy", "POLICY", "--national-id", "us.ssn"], "with --policy, name the schemes in the policy file"),
    ],
)
def test_apply_with_both_or_neither_of_policy_and_auto_is_a_usage_error(
    warden: Warden, people: Path, policy_file: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = [str(policy_file) if a == "POLICY" else a for a in extra]

    result = warden("deid", "apply", people, "--out", tmp_path / "clean.csv", *args)

    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"warden: error: invalid_argument: {message}")
    assert not (tmp_path / "clean.csv").exists()


@pytest.mark.parametrize(
    ("policy", "line"),
    [
        ("columns: {email: shred}", "warden: error: invalid_policy: columns.email: "),
        ("columns: {email: hash}\nbogus: 1", "warden: error: invalid_policy: bogus: "),
        ("columns: {email: {op: mask, keep_lst: 2}}", "warden: error: invalid_policy: columns.email.keep_lst: "),
        ("columns: {email: redact}", "warden: error: invalid_policy: columns: the policy does not say what to do"),
        ("columns: {mail: redact}\nunlisted: keep", "warden: error: invalid_policy: columns.mail: people.csv has no"),
        ("columns: [", "warden: error: invalid_policy: policy "),
    ],
)
def test_a_bad_policy_fails_with_one_line_naming_the_field(
    warden: Warden, people: Path, tmp_path: Path, policy: str, line: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(policy, encoding="utf-8")

    result = warden("deid", "apply", people, "--out", tmp_path / "clean.csv", "--policy", path)

    assert result.exit_code == 1
    assert one_error_line(result).startswith(line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "people.csv"]


def test_a_keyed_policy_without_a_key_fails_with_key_required(
    warden: Warden, people: Path, policy_file: Path, tmp_path: Path
) -> None:
    result = warden("deid", "apply", people, "--out", tmp_path / "clean.csv", "--policy", policy_file)

    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("warden: error: key_required: columns.email: ")
    assert "--key-file" in line
    assert not (tmp_path / "clean.csv").exists()


def test_a_bad_key_file_fails_with_key_required(
    warden: Warden, people: Path, policy_file: Path, tmp_path: Path
) -> None:
    short = tmp_path / "short.key"
    short.write_text("abcd\n", encoding="ascii")

    result = warden("deid", "apply", people, "--out", tmp_path / "c.csv", "--policy", policy_file, "--key-file", short)

    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: key_required: ")


@pytest.mark.parametrize("command", ["scan", "apply"])
def test_an_unsupported_file_fails_with_unsupported_file(
    warden: Warden, policy_file: Path, tmp_path: Path, command: str
) -> None:
    sheet = tmp_path / "people.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not really a spreadsheet")
    args = ["--out", str(tmp_path / "clean.xlsx"), "--policy", str(policy_file)] if command == "apply" else []

    result = warden("deid", command, sheet, *args)

    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: unsupported_file: people.xlsx: unknown file type '.xlsx'")


def test_a_corrupt_csv_fails_with_unsupported_file(warden: Warden, tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"a,b\n1,2\n3,4,5\n")

    result = warden("deid", "scan", broken)

    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: unsupported_file: broken.csv: not a readable CSV file")


def test_a_missing_input_fails_with_one_line(warden: Warden, policy_file: Path, tmp_path: Path) -> None:
    result = warden("deid", "scan", tmp_path / "absent.csv")

    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: io_error: ")


def test_with_an_initialised_data_directory_the_run_is_audited(
    warden: Warden, people: Path, policy_file: Path, key_file: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0

    answer = warden.json(
        "deid", "apply", people, "--out", tmp_path / "clean.csv", "--policy", policy_file, "--key-file", key_file
    )

    assert answer["audit"] == "audit log"
    events = [e["event"] for e in warden.json("audit", "query", "--kind", "admin")]
    [deid] = [e for e in events if e["action"] == "deid.apply"]
    assert deid["target"] == "clean.csv"
    details = deid["details"]
    assert details["input_sha256"] == answer["input"]["sha256"]
    assert details["output_sha256"] == answer["output"]["sha256"]
    assert details["policy_sha256"] == answer["policy_sha256"]
    assert details["key_id"] == answer["key_id"]
    assert details["rows"] == 41
    assert ROWS[0][0] not in json.dumps(events)
    assert warden.json("audit", "verify")["ok"] is True


def test_with_an_initialised_data_directory_a_failed_run_is_audited_with_its_code_only(
    warden: Warden, people: Path, policy_file: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0

    result = warden("deid", "apply", people, "--out", tmp_path / "clean.csv", "--policy", policy_file)

    assert one_error_line(result).startswith("warden: error: key_required: ")
    events = [e["event"] for e in warden.json("audit", "query", "--kind", "admin")]
    [deid] = [e for e in events if e["action"] == "deid.apply"]
    assert deid["target"] == "clean.csv"
    assert deid["details"]["outcome"] == "failed"
    assert deid["details"]["error"] == "key_required"


def test_an_existing_output_is_replaced_only_with_overwrite(
    warden: Warden, people: Path, policy_file: Path, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean.csv"
    out.write_text("old\n", encoding="utf-8")
    args = ["deid", "apply", people, "--out", out, "--policy", policy_file, "--key-file", key_file]

    refused = warden(*args)

    assert refused.exit_code == 2
    assert one_error_line(refused).startswith("warden: error: invalid_argument: ")
    assert "--overwrite" in refused.stderr
    assert out.read_text(encoding="utf-8") == "old\n"
    assert warden(*args, "--overwrite").exit_code == 0
    assert read_csv(out)[0][0] == "email"


def test_column_names_with_markup_are_printed_as_text(warden: Warden, tmp_path: Path) -> None:
    # Rich would read "[/b]" as a closing tag and crash; names come from the file, so they are printed as text.
    source = write_csv(tmp_path / "odd.csv", ["x[/b]", "email"], [["1", "a@example.com"], ["2", "b@example.org"]])

    scanned = warden("deid", "scan", source, "--no-ner")
    applied = warden("deid", "apply", source, "--out", tmp_path / "clean.csv", "--auto", "--no-ner")

    assert scanned.exit_code == 0, scanned.stderr
    assert "x[/b]" in scanned.stdout
    assert applied.exit_code == 0, applied.stderr
    assert "x[/b]" in applied.stdout


def test_k_without_quasi_identifiers_says_it_changed_nothing(warden: Warden, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "plain.csv", ["email"], [["a@example.com"], ["b@example.org"]])

    result = warden("deid", "apply", source, "--out", tmp_path / "clean.csv", "--auto", "--no-ner", "--k", "2")

    assert result.exit_code == 0, result.stderr
    assert "found no quasi-identifiers, so --k 2 changed nothing" in result.stdout


def test_auto_on_a_text_file_with_the_ner_pipeline_replaces_names_addresses_and_numbers(
    warden: Warden, tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text(
        "Dear Mr Smith, call me on +44 20 7946 0958.\r\n"
        "Nothing here.\n"
        "Please ask Noël Allain at 12 Baker Street, London NW1 6XE, or anna.berg@example.se",
        encoding="utf-8",
    )
    out = tmp_path / "clean.txt"

    answer = warden.json("deid", "apply", source, "--out", out, "--auto")

    assert out.read_bytes().decode("utf-8") == (
        "Dear Mr <PERSON>, call me on <PHONE>.\r\nNothing here.\nPlease ask <PERSON> at <ADDRESS>, or <EMAIL>"
    )
    assert answer["entities"] == {"ADDRESS": 1, "EMAIL": 1, "PERSON": 2, "PHONE": 1}
    assert set(answer["detectors"]) == {"patterns", "addresses", "spacy"}
