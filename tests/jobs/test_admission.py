"""Admission: what ``warden job run`` checks before starting anything, and the run it takes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.backends import BACKENDS, database_url
from tests.jobs.conftest import race
from warden.errors import ApprovalRefusal, ApprovalRefused, InvalidArgument, UnsupportedFile
from warden.jobs.admission import Admission, Input, admit, check_inputs, default_scan, parse_input
from warden.jobs.approvals import ApprovalService, ApprovalView
from warden.storage import Database

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PII = "name,email,amount\nAnn Lee,ann@example.com,10\nBo Chen,bo@example.org,20\nCy Diaz,cy@example.net,5\n"
CLEAN = "amount,category\n10,a\n20,b\n5,c\n"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeScan:
    """A scan hook: files whose name starts with ``pii`` hold an ``email`` column; records what it was asked."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.seen: list[str] = []
        self.fail_on = fail_on

    def __call__(self, path: Path) -> list[str]:
        self.seen.append(path.name)
        if path.name == self.fail_on:
            raise UnsupportedFile(f"{path.name}: does not parse")
        return ["email"] if path.name.startswith("pii") else []


@pytest.fixture(params=BACKENDS)
def approvals(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApprovalService]:
    with database_url(request.param, tmp_path) as url:
        db = Database(url)
        db.migrate()
        try:
            yield ApprovalService(db, Clock())
        finally:
            db.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``clean.csv``, ``pii.csv``, ``notes.bin`` (unsupported) and ``tree/`` (clean.csv, sub/image.png)."""
    root = tmp_path / "data"
    (root / "tree" / "sub").mkdir(parents=True)
    (root / "clean.csv").write_text(CLEAN)
    (root / "pii.csv").write_text(PII)
    (root / "notes.bin").write_bytes(b"\x00\x01")
    (root / "tree" / "clean.csv").write_text(CLEAN)
    (root / "tree" / "sub" / "image.png").write_bytes(b"\x89PNG")
    return root


def clock_of(approvals: ApprovalService) -> Clock:
    clock = approvals._clock
    assert isinstance(clock, Clock)
    return clock


def approve(approvals: ApprovalService, *paths: Path, **options: Any) -> ApprovalView:
    return approvals.create("fraud model training", list(paths), created_by="alice", **options)


# --- input names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "name"),
    [
        ("data/clean.csv", "data/clean.csv", "clean.csv"),
        ("data/clean.csv:train", "data/clean.csv", "train"),
        ("/srv/tx-2026:tx.v2_a-b", "/srv/tx-2026", "tx.v2_a-b"),
        ("a:b:c", "a:b", "c"),
        ("x:" + "a" * 63, "x", "a" * 63),
    ],
)
def test_when_an_input_is_parsed_then_path_and_name_are_split(spec: str, path: str, name: str) -> None:
    assert parse_input(spec) == Input(Path(path), name)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("data/Clean.CSV", id="default name not lowercase"),
        pytest.param("data/x.csv:Train", id="uppercase name"),
        pytest.param("data/x.csv:-x", id="name starting with dash"),
        pytest.param("data/x.csv:.hidden", id="name starting with dot"),
        pytest.param("data/x.csv:a/b", id="slash in name"),
        pytest.param("data/x.csv:" + "a" * 64, id="64 characters"),
        pytest.param("data/x.csv:", id="empty name"),
        pytest.param(":name", id="no path"),
        pytest.param("", id="nothing"),
    ],
)
def test_when_an_input_spec_is_bad_then_invalid_argument(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_input(spec)


def test_when_two_inputs_share_a_name_then_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="given twice"):
        check_inputs([Input(Path("a/x.csv"), "x.csv"), Input(Path("b/x.csv"), "x.csv")])


def test_when_no_inputs_are_given_then_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="at least one input"):
        check_inputs([])


# --- admitted ------------------------------------------------------------------------------------------------


def test_when_everything_checks_out_then_one_run_is_taken_and_inputs_are_reported(
    approvals: ApprovalService, data: Path
) -> None:
    approval = approve(approvals, data / "clean.csv", data / "tree", data / "notes.bin", max_runs=2)
    scan = FakeScan()
    admission = admit(
        approvals,
        approval.id,
        [(data / "clean.csv", "train"), (data / "tree", "tree"), (data / "notes.bin", "notes")],
        scan=scan,
    )
    assert isinstance(admission, Admission)
    assert admission.approval.id == approval.id
    assert admission.approval.runs_used == 1
    assert approvals.get(approval.id).runs_used == 1
    assert admission.purpose == "fraud model training"
    assert admission.scanned
    assert [(i.name, i.sha256) for i in admission.inputs] == [
        ("train", approval.datasets[0].sha256),
        ("tree", approval.datasets[1].sha256),
        ("notes", approval.datasets[2].sha256),
    ]
    assert admission.inputs[1].scanned == ("tree/clean.csv",)
    assert admission.not_scanned == ["tree/sub/image.png", "notes"]
    assert sorted(scan.seen) == ["clean.csv", "clean.csv"]


def test_when_the_approval_allows_identifiers_then_inputs_are_not_scanned(
    approvals: ApprovalService, data: Path
) -> None:
    approval = approve(approvals, data / "pii.csv", allow_identifiers=True)
    scan = FakeScan()
    admission = admit(approvals, approval.id, [(data / "pii.csv", "pii")], scan=scan)
    assert scan.seen == []
    assert not admission.scanned
    assert admission.approval.runs_used == 1


def test_when_the_default_scan_reads_a_table_then_it_reports_its_direct_identifiers(data: Path) -> None:
    assert default_scan(data / "pii.csv") == ["name", "email"]
    assert default_scan(data / "clean.csv") == []


def test_a_table_renamed_to_an_unknown_suffix_is_still_scanned_as_text(
    approvals: ApprovalService, tmp_path: Path
) -> None:
    # "people.csv" renamed "people.dat" was admitted unscanned: the format came from the name alone.
    renamed = tmp_path / "people.dat"
    renamed.write_text(PII, encoding="utf-8")
    approval = approve(approvals, renamed)

    with pytest.raises(ApprovalRefused) as refused:
        admit(approvals, approval.id, [(renamed, "people")], scan=default_scan)

    assert refused.value.reason is ApprovalRefusal.IDENTIFIERS_FOUND
    assert approvals.get(approval.id).runs_used == 0


def test_a_binary_file_of_unknown_kind_is_listed_as_not_scanned(approvals: ApprovalService, tmp_path: Path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01\x02ann@example.com")
    approval = approve(approvals, blob)

    admission = admit(approvals, approval.id, [(blob, "weights")], scan=default_scan)

    assert admission.not_scanned == ["weights"]


def test_when_the_default_scan_finds_identifiers_then_admission_refuses(approvals: ApprovalService, data: Path) -> None:
    approval = approve(approvals, data / "pii.csv", data / "clean.csv")
    with pytest.raises(ApprovalRefused) as caught:
        admit(approvals, approval.id, [(data / "clean.csv", "clean"), (data / "pii.csv", "pii")])
    assert caught.value.reason is ApprovalRefusal.IDENTIFIERS_FOUND
    assert "pii (name, email)" in caught.value.message
    assert admit(approvals, approval.id, [(data / "clean.csv", "clean")]).approval.runs_used == 1


def test_when_the_default_scan_meets_a_directory_then_it_scans_tables_and_lists_the_rest(
    approvals: ApprovalService, data: Path
) -> None:
    approval = approve(approvals, data / "tree")
    admission = admit(approvals, approval.id, [(data / "tree", "t")])
    assert admission.inputs[0].scanned == ("t/clean.csv",)
    assert admission.not_scanned == ["t/sub/image.png"]


# --- refused ---------------------------------------------------------------------------------------------------

Setup = Callable[[ApprovalService, Path], tuple[str, list[tuple[Path, str]]]]


def _not_found(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    return "apr_0000000000000000", [(d / "clean.csv", "c")]


def _revoked(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv")
    a.revoke(approval.id)
    return approval.id, [(d / "clean.csv", "c")]


def _expired(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv", expires_at=T0 + timedelta(hours=1))
    clock_of(a).now = T0 + timedelta(hours=1)
    return approval.id, [(d / "clean.csv", "c")]


def _exhausted(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv", max_runs=1)
    a.consume(approval.id)
    return approval.id, [(d / "clean.csv", "c")]


def _changed(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv")
    (d / "clean.csv").write_text(CLEAN + "7,d\n")
    return approval.id, [(d / "clean.csv", "c")]


def _other_file(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv")
    return approval.id, [(d / "clean.csv", "c"), (d / "notes.bin", "n")]


def _file_in_approved_dir(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "tree")
    return approval.id, [(d / "tree" / "clean.csv", "c")]


def _changed_dir(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "tree")
    (d / "tree" / "extra.csv").write_text(CLEAN)
    return approval.id, [(d / "tree", "t")]


def _pii(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "pii.csv")
    return approval.id, [(d / "pii.csv", "p")]


def _pii_in_dir(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    (d / "tree" / "sub" / "pii-2.csv").write_text(PII)
    approval = approve(a, d / "tree")
    return approval.id, [(d / "tree", "t")]


def _missing(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv")
    return approval.id, [(d / "clean.csv", "c"), (d / "absent.csv", "a")]


def _symlink(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "clean.csv")
    (d / "link.csv").symlink_to(d / "clean.csv")
    return approval.id, [(d / "link.csv", "c")]


def _symlink_in_dir(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    approval = approve(a, d / "tree")
    (d / "tree" / "link").symlink_to(d / "pii.csv")
    return approval.id, [(d / "tree", "t")]


def _unparseable(a: ApprovalService, d: Path) -> tuple[str, list[tuple[Path, str]]]:
    (d / "broken.csv").write_text("a,b\n")
    approval = approve(a, d / "broken.csv")
    return approval.id, [(d / "broken.csv", "b")]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(_not_found, ApprovalRefusal.NOT_FOUND, id="not_found"),
        pytest.param(_revoked, ApprovalRefusal.REVOKED, id="revoked"),
        pytest.param(_expired, ApprovalRefusal.EXPIRED, id="expired"),
        pytest.param(_exhausted, ApprovalRefusal.EXHAUSTED, id="exhausted"),
        pytest.param(_changed, ApprovalRefusal.INPUT_NOT_APPROVED, id="file changed since approval"),
        pytest.param(_other_file, ApprovalRefusal.INPUT_NOT_APPROVED, id="file not in approval"),
        pytest.param(_file_in_approved_dir, ApprovalRefusal.INPUT_NOT_APPROVED, id="part of an approved dir"),
        pytest.param(_changed_dir, ApprovalRefusal.INPUT_NOT_APPROVED, id="directory changed since approval"),
        pytest.param(_pii, ApprovalRefusal.IDENTIFIERS_FOUND, id="identifiers in a file"),
        pytest.param(_pii_in_dir, ApprovalRefusal.IDENTIFIERS_FOUND, id="identifiers in a directory"),
        pytest.param(_missing, ApprovalRefusal.INPUT_UNREADABLE, id="missing input"),
        pytest.param(_symlink, ApprovalRefusal.INPUT_UNREADABLE, id="symlink input"),
        pytest.param(_symlink_in_dir, ApprovalRefusal.INPUT_UNREADABLE, id="symlink in a directory"),
        pytest.param(_unparseable, ApprovalRefusal.INPUT_UNREADABLE, id="supported format that does not parse"),
    ],
)
def test_when_a_check_fails_then_admission_refuses_with_its_reason_and_takes_no_run(
    approvals: ApprovalService, data: Path, setup: Setup, reason: ApprovalRefusal
) -> None:
    approval_id, inputs = setup(approvals, data)
    used = approvals.get(approval_id).runs_used if reason is not ApprovalRefusal.NOT_FOUND else 0
    with pytest.raises(ApprovalRefused) as caught:
        admit(approvals, approval_id, inputs, scan=FakeScan(fail_on="broken.csv"))
    assert caught.value.reason is reason
    assert caught.value.code == "approval_refused"
    assert caught.value.message.startswith(f"{reason.value}: ")
    if reason is not ApprovalRefusal.NOT_FOUND:
        assert approvals.get(approval_id).runs_used == used


def test_when_input_names_are_bad_then_invalid_argument_before_the_approval_is_looked_at(
    approvals: ApprovalService, data: Path
) -> None:
    with pytest.raises(InvalidArgument):
        admit(approvals, "apr_0000000000000000", [(data / "clean.csv", "Bad")], scan=FakeScan())


@pytest.mark.parametrize(("max_runs", "callers"), [(1, 6)])
def test_when_admissions_race_for_the_last_run_then_exactly_one_is_admitted(
    approvals: ApprovalService, data: Path, max_runs: int, callers: int
) -> None:
    approval = approve(approvals, data / "clean.csv", max_runs=max_runs)

    outcomes = race(
        callers, lambda: admit(approvals, approval.id, [(data / "clean.csv", "c")], scan=FakeScan()), "admitted"
    )

    assert outcomes == ["admitted"] + ["exhausted"] * (callers - 1)
    assert approvals.get(approval.id).runs_used == max_runs
