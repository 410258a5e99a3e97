"""The database handle: engine, sessions and migrations for SQLite (embedded) or PostgreSQL.

An SQLite database is private to Warden's user: its directory is created 0700, the file 0600
before SQLite first opens it (SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files the
database file's mode), and the migration lock file 0600; existing files with looser modes are
tightened.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
PRIVATE_FILE: Final = 0o600
PRIVATE_DIRECTORY: Final = 0o700
SQLITE_COMPANIONS: Final = ("-wal", "-shm", "-journal", ".migrate-lock")
"""Files SQLite (and Warden's migration lock) keep beside a database file."""
MIGRATION_LOCK_KEY: Final = 0x5741_5244_454E_0001
"""The PostgreSQL advisory lock (a 64-bit key) held while a process migrates the schema."""

_log = logging.getLogger("warden.storage")


class Database:
    """One engine and its session factory; SQLite gets WAL, foreign keys and a busy timeout."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
                _private_sqlite_files(Path(parsed.database))
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent), once, however many processes start together.

        On PostgreSQL a transaction-scoped advisory lock serialises the replicas (DDL is
        transactional there, so a later one finds the schema at head and does nothing);
        on SQLite an exclusive lock on a file beside the database does.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._migration_file_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def _migration_file_lock(self) -> Iterator[None]:
        database = make_url(self.url).database
        if not self.is_sqlite or not database or database == ":memory:":
            yield
            return
        fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def private_directory(path: Path) -> None:
    """Create ``path`` 0700 (missing parents as usual), or take group and other access from an existing one.

    A directory owned by another user (a volume mounted by the orchestrator) cannot be
    changed: it is left as is, with a warning, and the files Warden puts in it stay private.
    """
    path.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    _tighten(path)


def _private_sqlite_files(database: Path) -> None:
    """The database's directory 0700, the database file created 0600 if new, its companions tightened."""
    private_directory(database.parent)
    fd = os.open(database, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)  # empty: SQLite starts a new database in it
    os.close(fd)
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        _tighten(path)


def _tighten(path: Path) -> None:
    """Take group and other access from ``path`` when it exists, Warden's user owns it, and it has any."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    if info.st_uid != os.geteuid():
        _log.warning("%s is mode %04o and owned by another user; left as is", path, mode)
        return
    os.chmod(path, mode & ~0o077)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
