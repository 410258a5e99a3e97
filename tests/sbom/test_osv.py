"""Reading an offline OSV export in each of its shapes, and matching PyPI packages against it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from warden.errors import InvalidArgument, UnsupportedFile
from warden.sbom import OsvDatabase, PypiPackage, Severity, VulnerabilityMatch, load_records

HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5


def record(
    osv_id: str,
    *,
    package: str = "foo-bar",
    ecosystem: str = "PyPI",
    events: list[dict[str, str]] | None = None,
    versions: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An OSV record of one affected package, with the schema's field names."""
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": package}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {
        "schema_version": "1.6.0",
        "id": osv_id,
        "modified": "2026-01-01T00:00:00Z",
        "affected": [affected],
        **fields,
    }


BEFORE_2 = [{"introduced": "0"}, {"fixed": "2.0"}]

MATCH_CASES: list[tuple[str, list[dict[str, Any]], list[PypiPackage], list[str]]] = [
    ("introduced/fixed, inside", [record("OSV-1", events=BEFORE_2)], [PypiPackage("foo-bar", "1.9")], ["OSV-1"]),
    ("introduced/fixed, at the fix", [record("OSV-1", events=BEFORE_2)], [PypiPackage("foo-bar", "2.0")], []),
    (
        "last_affected, at it",
        [record("OSV-1", events=[{"introduced": "1.0"}, {"last_affected": "1.4"}])],
        [PypiPackage("foo-bar", "1.4")],
        ["OSV-1"],
    ),
    ("an explicit versions list", [record("OSV-1", versions=["1.2.3"])], [PypiPackage("foo-bar", "1.2.3")], ["OSV-1"]),
    (
        "multiple ranges",
        [record("OSV-1", events=[{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "3.0"}, {"fixed": "3.1"}])],
        [PypiPackage("foo-bar", "3.0.5"), PypiPackage("other", "3.0.5")],
        ["OSV-1"],
    ),
    (
        "withdrawn records are ignored",
        [record("OSV-1", events=BEFORE_2, withdrawn="2026-02-01T00:00:00Z")],
        [PypiPackage("foo-bar", "1.0")],
        [],
    ),
    (
        "another ecosystem is ignored",
        [record("OSV-1", ecosystem="npm", events=BEFORE_2)],
        [PypiPackage("foo-bar", "1.0")],
        [],
    ),
    (
        "Foo_Bar matches foo-bar",
        [record("OSV-1", package="Foo_Bar", events=BEFORE_2)],
        [PypiPackage("foo-bar", "1.0")],
        ["OSV-1"],
    ),
    ("foo.bar matches Foo_Bar", [record("OSV-1", events=BEFORE_2)], [PypiPackage("Foo.Bar", "1.0")], ["OSV-1"]),
    (
        "records of several packages, sorted by package",
        [record("OSV-2", package="zeta", events=BEFORE_2), record("OSV-1", package="alpha", events=BEFORE_2)],
        [PypiPackage("zeta", "1.0"), PypiPackage("alpha", "1.0")],
        ["OSV-1", "OSV-2"],
    ),
]


@pytest.mark.parametrize(("case", "records", "packages", "ids"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_matching(case: str, records: list[dict[str, Any]], packages: list[PypiPackage], ids: list[str]) -> None:
    assert [m.id for m in OsvDatabase(records).match(packages)] == ids


def test_a_match_says_what_to_upgrade_to_and_how_bad_it_is() -> None:
    osv = record(
        "GHSA-aaaa-bbbb-cccc",
        events=[{"introduced": "1.0"}, {"fixed": "1.5.1"}, {"introduced": "2.0"}, {"fixed": "2.0.4"}],
        aliases=["CVE-2026-0001"],
        summary="Denial of service\n  in the parser",
        severity=[{"type": "CVSS_V3", "score": HIGH}],
    )
    [match] = OsvDatabase([osv]).match([PypiPackage("Foo_Bar", "2.0.1")])
    assert match == VulnerabilityMatch(
        id="GHSA-aaaa-bbbb-cccc",
        aliases=("CVE-2026-0001",),
        package="Foo_Bar",
        version="2.0.1",
        severity=Severity.HIGH,
        fixed="2.0.4",
        summary="Denial of service in the parser",
    )
    assert match.as_json()["severity"] == "high"


def test_records_that_alias_each_other_are_one_match_under_the_best_rated_id() -> None:
    ghsa = record(
        "GHSA-xxxx-yyyy-zzzz",
        events=BEFORE_2,
        aliases=["CVE-2026-7", "PYSEC-2026-3"],
        database_specific={"severity": "HIGH"},
    )
    pysec = record("PYSEC-2026-3", events=BEFORE_2, aliases=["CVE-2026-7", "GHSA-xxxx-yyyy-zzzz"])
    other = record("PYSEC-2026-9", events=BEFORE_2)
    matches = OsvDatabase([pysec, ghsa, other]).match([PypiPackage("foo-bar", "1.0")])
    assert [(m.id, m.aliases, m.severity) for m in matches] == [
        ("GHSA-xxxx-yyyy-zzzz", ("CVE-2026-7", "PYSEC-2026-3"), Severity.HIGH),
        ("PYSEC-2026-9", (), Severity.UNKNOWN),
    ]


RECORDS = [record("OSV-1", events=BEFORE_2), record("OSV-2", package="other", versions=["0.1"])]


def write_single(root: Path) -> Path:
    path = root / "OSV-1.json"
    path.write_text(json.dumps(RECORDS[0]))
    return path


def write_array(root: Path) -> Path:
    path = root / "export.json"
    path.write_text(json.dumps(RECORDS))
    return path


def write_directory(root: Path) -> Path:
    folder = root / "export"
    (folder / "nested").mkdir(parents=True)
    (folder / "OSV-1.json").write_text(json.dumps(RECORDS[0]))
    (folder / "nested" / "OSV-2.json").write_text(json.dumps(RECORDS[1]))
    (folder / "README.txt").write_text("not a record")
    return folder


def write_zip(root: Path) -> Path:
    path = root / "all.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for osv in RECORDS:
            archive.writestr(f"{osv['id']}.json", json.dumps(osv))
        archive.writestr("LICENSE", "not a record")
    return path


@pytest.mark.parametrize(
    ("writer", "ids"),
    [
        (write_single, ["OSV-1"]),
        (write_array, ["OSV-1", "OSV-2"]),
        (write_directory, ["OSV-1", "OSV-2"]),
        (write_zip, ["OSV-1", "OSV-2"]),
    ],
)
def test_an_export_is_read_as_a_record_an_array_a_directory_or_a_zip(
    tmp_path: Path, writer: Any, ids: list[str]
) -> None:
    path = writer(tmp_path)
    assert sorted(r["id"] for r in load_records(path)) == ids
    database = OsvDatabase.load(path)
    assert [m.id for m in database.match([PypiPackage("foo-bar", "1.0"), PypiPackage("other", "0.1")])] == ids


def test_a_missing_export_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read the OSV export"):
        load_records(tmp_path / "nope.json")


BAD_EXPORTS: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{not json", "not JSON"),
    ("not UTF-8", b"\xff\xfe\x00", "not JSON"),
    ("a record without an id", json.dumps({"affected": []}).encode(), "not an OSV record"),
    ("an array with something else in it", json.dumps([RECORDS[0], 3]).encode(), r"\[1\]: not an OSV record"),
    (
        "affected that is not a list",
        json.dumps({"id": "OSV-9", "affected": {"package": {}}}).encode(),
        "OSV-9: 'affected' must be a list",
    ),
    (
        "versions that are not strings",
        json.dumps(record("OSV-9", versions=[1, 2])).encode(),
        "'versions' must be a list of strings",
    ),
    (
        "an event of no known kind",
        json.dumps(record("OSV-9", events=[{"introduced": "0"}, {"patched": "2"}])).encode(),
        "range event",
    ),
    (
        "an event whose version is not a string",
        json.dumps(record("OSV-9", events=[{"introduced": 0}])).encode(),
        "range event",
    ),
    ("an empty array", b"[]", "holds no OSV records"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_EXPORTS, ids=[c[0] for c in BAD_EXPORTS])
def test_an_export_that_is_not_osv_is_refused_naming_the_file(
    tmp_path: Path, case: str, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFile, match=message) as raised:
        load_records(path)
    assert str(path) in raised.value.message


def test_a_bad_record_inside_a_zip_is_named_by_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("GOOD.json", json.dumps(RECORDS[0]))
        archive.writestr("BAD.json", "{")
    with pytest.raises(UnsupportedFile, match=r"all\.zip:BAD\.json: not JSON"):
        load_records(path)


def test_a_directory_without_records_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UnsupportedFile, match="holds no OSV records"):
        load_records(tmp_path)


def test_a_withdrawn_record_is_not_checked_further_nor_counted(tmp_path: Path) -> None:
    withdrawn = {"id": "OSV-8", "withdrawn": "2026-01-01T00:00:00Z", "affected": "whatever it was"}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([withdrawn, RECORDS[0]]))
    assert OsvDatabase.load(path).record_count == 1
