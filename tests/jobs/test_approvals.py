"""Approvals: content hashes of datasets, creation rules, revocation, and the atomic run counter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.backends import BACKENDS, migrated_database
from tests.jobs.conftest import race
from warden.errors import ApprovalNotFound, ApprovalRefusal, ApprovalRefused, InvalidArgument
from warden.jobs.approvals import ID_PATTERN, MAX_DATASETS, ApprovalService, ApprovalState, content_sha256
from warden.storage import Database
from warden.storage.tables import Base

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the service."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database: SQLite, then PostgreSQL."""
    with migrated_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(db: Database, clock: Clock) -> ApprovalService:
    return ApprovalService(db, clock)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A file ``a.csv`` and a directory ``tree`` with two files, one in a subdirectory."""
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.csv").write_text("a\n1\n")
    (tree / "sub" / "two.txt").write_text("hello\n")
    return tmp_path


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- content hashes ---------------------------------------------------------------------------------


def test_when_a_file_is_hashed_then_it_is_its_plain_sha256(data: Path) -> None:
    assert content_sha256(data / "a.csv") == hashlib.sha256(b"x,y\n1,2\n").hexdigest()


def test_when_two_directories_hold_the_same_tree_written_in_another_order_then_their_hashes_agree(
    tmp_path: Path,
) -> None:
    files = {"b.csv": "2", "a.csv": "1", "z/y.txt": "3", "z/x.txt": "4"}
    first = make_tree(tmp_path / "first", files)
    second = make_tree(tmp_path / "second", dict(reversed(list(files.items()))))
    assert content_sha256(first) == content_sha256(second)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: (d / "one.csv").write_text("a\n2\n"), id="file content"),
        pytest.param(lambda d: (d / "one.csv").rename(d / "uno.csv"), id="file renamed"),
        pytest.param(lambda d: (d / "sub" / "two.txt").rename(d / "two.txt"), id="file moved"),
        pytest.param(lambda d: (d / "three.txt").write_text(""), id="file added"),
        pytest.param(lambda d: (d / "sub" / "two.txt").unlink(), id="file removed"),
        pytest.param(lambda d: (d / "empty").mkdir(), id="empty directory added"),
    ],
)
def test_when_anything_in_a_directory_changes_then_its_hash_changes(data: Path, change: object) -> None:
    tree = data / "tree"
    before = content_sha256(tree)
    assert callable(change)
    change(tree)
    assert content_sha256(tree) != before


def test_when_a_directory_and_a_file_have_the_same_bytes_then_their_hashes_differ(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"f": "x"})
    assert content_sha256(tree) != content_sha256(tree / "f")


@pytest.mark.parametrize("where", ["top", "inside", "directory inside"])
def test_when_a_dataset_holds_a_symlink_then_it_is_refused(data: Path, where: str) -> None:
    tree = data / "tree"
    if where == "top":
        target = data / "link"
        target.symlink_to(tree)
    elif where == "inside":
        (tree / "link.csv").symlink_to(data / "a.csv")
        target = tree
    else:
        (tree / "sub" / "elsewhere").symlink_to(data, target_is_directory=True)
        target = tree
    with pytest.raises(InvalidArgument, match="symbolic link"):
        content_sha256(target)


def test_when_a_dataset_holds_a_fifo_then_it_is_refused(data: Path) -> None:
    os.mkfifo(data / "tree" / "pipe")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        content_sha256(data / "tree")


def test_when_a_dataset_is_missing_then_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        content_sha256(tmp_path / "absent")


# --- schema -------------------------------------------------------------------------------------------


def test_when_migrated_then_the_schema_matches_the_table_classes(db: Database) -> None:
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


# --- create, get, list, revoke --------------------------------------------------------------------


def test_when_an_approval_is_created_then_it_records_purpose_datasets_and_limits(
    service: ApprovalService, data: Path
) -> None:
    expires = T0 + timedelta(days=30)
    created = service.create(
        "fraud model v3 training",
        [data / "a.csv", data / "tree"],
        created_by="alice",
        expires_at=expires,
        max_runs=3,
        allow_identifiers=True,
    )
    assert ID_PATTERN.fullmatch(created.id)
    assert created.purpose == "fraud model v3 training"
    assert [(d.path, d.sha256) for d in created.datasets] == [
        (str(data / "a.csv"), content_sha256(data / "a.csv")),
        (str(data / "tree"), content_sha256(data / "tree")),
    ]
    assert (created.created_at, created.created_by, created.expires_at) == (T0, "alice", expires)
    assert (created.max_runs, created.runs_used, created.revoked_at, created.allow_identifiers) == (3, 0, None, True)
    assert created.state(T0) is ApprovalState.ACTIVE
    assert service.get(created.id) == created


def test_when_approvals_are_created_then_ids_differ_and_list_is_oldest_first(
    service: ApprovalService, clock: Clock, data: Path
) -> None:
    ids = []
    for n in range(3):
        clock.now = T0 + timedelta(minutes=n)
        ids.append(service.create(f"purpose {n}", [data / "a.csv"], created_by="bob").id)
    assert len(set(ids)) == 3
    assert [a.id for a in service.list_approvals()] == ids


@pytest.mark.parametrize(
    ("purpose", "datasets", "expires", "max_runs", "message"),
    [
        pytest.param("", 1, None, None, "must not be empty", id="empty purpose"),
        pytest.param("  \n ", 1, None, None, "must not be empty", id="blank purpose"),
        pytest.param("x" * 501, 1, None, None, "at most 500", id="long purpose"),
        pytest.param("a\x00b", 1, None, None, "control characters", id="control character"),
        pytest.param("ok", 0, None, None, "at least one dataset", id="no dataset"),
        pytest.param("ok", MAX_DATASETS + 1, None, None, f"at most {MAX_DATASETS}", id="too many datasets"),
        pytest.param("ok", 1, T0, None, "not in the future", id="expires now"),
        pytest.param("ok", 1, T0 - timedelta(seconds=1), None, "not in the future", id="expired already"),
        pytest.param("ok", 1, datetime(2027, 1, 1), None, "UTC offset", id="naive expiry"),
        pytest.param("ok", 1, None, 0, "at least 1", id="zero runs"),
        pytest.param("ok", 1, None, -2, "at least 1", id="negative runs"),
    ],
)
def test_when_create_is_given_a_bad_value_then_invalid_argument(
    service: ApprovalService,
    data: Path,
    purpose: str,
    datasets: int,
    expires: datetime | None,
    max_runs: int | None,
    message: str,
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        service.create(purpose, [data / "a.csv"] * datasets, created_by="x", expires_at=expires, max_runs=max_runs)
    assert service.list_approvals() == []


def test_when_a_purpose_is_exactly_500_characters_then_it_is_accepted(service: ApprovalService, data: Path) -> None:
    assert service.create("é" * 500, [data / "a.csv"], created_by="x").purpose == "é" * 500


@pytest.mark.parametrize("approval_id", ["apr_doesnotexist0000", "nope", "apr_\x00aaaaaaaaaaaaaaa", ""])
def test_when_an_unknown_id_is_asked_for_then_approval_not_found(service: ApprovalService, approval_id: str) -> None:
    with pytest.raises(ApprovalNotFound) as caught:
        service.get(approval_id)
    assert caught.value.code == "approval_not_found"
    with pytest.raises(ApprovalNotFound):
        service.revoke(approval_id)


def test_when_revoked_twice_then_the_first_time_is_kept(service: ApprovalService, clock: Clock, data: Path) -> None:
    created = service.create("p", [data / "a.csv"], created_by="x")
    clock.now = T0 + timedelta(hours=1)
    first = service.revoke(created.id)
    clock.now = T0 + timedelta(hours=2)
    again = service.revoke(created.id)
    assert first.revoked_at == again.revoked_at == T0 + timedelta(hours=1)
    assert again.state(clock.now) is ApprovalState.REVOKED


# --- consume -------------------------------------------------------------------------------------------


def test_when_runs_are_taken_then_each_counts_until_max_runs(service: ApprovalService, data: Path) -> None:
    created = service.create("p", [data / "a.csv"], created_by="x", max_runs=2)
    assert service.consume(created.id).runs_used == 1
    assert service.consume(created.id).runs_used == 2
    with pytest.raises(ApprovalRefused) as caught:
        service.consume(created.id)
    assert caught.value.reason is ApprovalRefusal.EXHAUSTED
    assert service.get(created.id).runs_used == 2
    assert service.get(created.id).state(T0) is ApprovalState.EXHAUSTED


def test_when_no_max_runs_then_runs_are_unlimited(service: ApprovalService, data: Path) -> None:
    created = service.create("p", [data / "a.csv"], created_by="x")
    for n in range(1, 6):
        assert service.consume(created.id).runs_used == n


@pytest.mark.parametrize(
    ("offset", "admitted"),
    [
        pytest.param(timedelta(microseconds=-1), True, id="a microsecond before"),
        pytest.param(timedelta(0), False, id="at the expiry"),
        pytest.param(timedelta(microseconds=1), False, id="a microsecond after"),
    ],
)
def test_when_the_expiry_is_reached_then_no_run_is_taken(
    service: ApprovalService, clock: Clock, data: Path, offset: timedelta, admitted: bool
) -> None:
    expires = T0 + timedelta(days=1)
    created = service.create("p", [data / "a.csv"], created_by="x", expires_at=expires)
    clock.now = expires + offset
    if admitted:
        assert service.consume(created.id).runs_used == 1
        return
    with pytest.raises(ApprovalRefused) as caught:
        service.consume(created.id)
    assert caught.value.reason is ApprovalRefusal.EXPIRED
    assert service.get(created.id).runs_used == 0


def test_when_revoked_then_no_run_is_taken(service: ApprovalService, data: Path) -> None:
    created = service.create("p", [data / "a.csv"], created_by="x")
    service.revoke(created.id)
    with pytest.raises(ApprovalRefused) as caught:
        service.consume(created.id)
    assert (caught.value.reason, caught.value.code) == (ApprovalRefusal.REVOKED, "approval_refused")


@pytest.mark.parametrize("approval_id", ["apr_doesnotexist0000", "bad\x00id"])
def test_when_consuming_an_unknown_approval_then_refused_not_found(service: ApprovalService, approval_id: str) -> None:
    with pytest.raises(ApprovalRefused) as caught:
        service.consume(approval_id)
    assert caught.value.reason is ApprovalRefusal.NOT_FOUND


@pytest.mark.parametrize(("max_runs", "callers"), [(1, 8), (3, 10)])
def test_when_callers_race_for_the_last_runs_then_exactly_max_runs_win(
    service: ApprovalService, data: Path, max_runs: int, callers: int
) -> None:
    created = service.create("p", [data / "a.csv"], created_by="x", max_runs=max_runs)

    outcomes = race(callers, lambda: service.consume(created.id), "taken")

    assert outcomes == sorted(["taken"] * max_runs + ["exhausted"] * (callers - max_runs))
    assert service.get(created.id).runs_used == max_runs


# --- import weight -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        ("warden.jobs", {"sqlalchemy", "pyarrow", "typer", "fastapi"}),
        ("warden.jobs.admission", {"pyarrow", "typer", "fastapi", "spacy"}),
    ],
)
def test_when_the_package_is_imported_then_nothing_heavy_loads(module: str, heavy: set[str]) -> None:
    script = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert heavy.isdisjoint(name.split(".")[0] for name in loaded)
