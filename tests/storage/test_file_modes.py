"""An SQLite database is private to Warden's user: 0700 directory, 0600 database, WAL, SHM and lock files."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from warden.storage import Database
from warden.storage.db import private_directory


def mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_companions_are_private(tmp_path: Path) -> None:
    database = tmp_path / "state" / "warden.db"
    db = Database(f"sqlite:///{database}")
    try:
        db.migrate()
        with db.session() as session:
            session.execute(text("SELECT 1"))
        files = {p.name: mode(p) for p in database.parent.iterdir()}
    finally:
        db.close()
    assert {"warden.db", "warden.db-wal", "warden.db-shm", "warden.db.migrate-lock"} <= set(files)
    assert set(files.values()) == {0o600}
    assert mode(database.parent) == 0o700


@pytest.mark.parametrize(("before", "after"), [(0o644, 0o600), (0o666, 0o600), (0o640, 0o600), (0o600, 0o600)])
def test_existing_database_files_are_tightened(tmp_path: Path, before: int, after: int) -> None:
    database = tmp_path / "warden.db"
    Database(f"sqlite:///{database}").close()
    for suffix in ("", "-wal", "-shm", ".migrate-lock"):
        path = Path(f"{database}{suffix}")
        path.touch()
        path.chmod(before)
    Database(f"sqlite:///{database}").close()
    assert {mode(Path(f"{database}{suffix}")) for suffix in ("", "-wal", "-shm", ".migrate-lock")} == {after}


@pytest.mark.parametrize(("before", "after"), [(0o755, 0o700), (0o777, 0o700), (0o750, 0o700), (0o700, 0o700)])
def test_a_data_directory_is_created_or_tightened_to_0700(tmp_path: Path, before: int, after: int) -> None:
    fresh = tmp_path / "fresh" / "data"
    private_directory(fresh)
    assert mode(fresh) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(before)
    private_directory(existing)
    assert mode(existing) == after


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_of_another_owner_is_left_as_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mounted = tmp_path / "volume"
    mounted.mkdir(mode=0o775)
    mounted.chmod(0o775)
    os.chown(mounted, 12345, 12345)
    with caplog.at_level(logging.WARNING, logger="warden.storage"):
        private_directory(mounted)
    assert mode(mounted) == 0o775
    assert "owned by another user" in caplog.text
