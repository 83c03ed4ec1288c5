"""The SQLite backend: the embedded default (the demo, a pilot, one branch), one file, one writer.

WAL and synchronous=FULL: an acknowledged punch is on disk, and readers (`collector serve`) never block
ingest. A new database is created 0600 whatever the umask (it holds names, cards and times), and SQLite
gives the -wal and -shm files it makes beside it the same mode.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from gate_agent.files import create_private

from .connection import Connection, DatabaseError

log = logging.getLogger(__name__)

#: Names, cards and times: the daemon's user only (`collector serve` runs as that user too).
DATABASE_MODE = 0o600


class SqliteConnection(Connection):
    dialect = "sqlite"
    single_writer = True
    # {serial}: a key never given twice, even after every row was deleted (a queue's rows are named by it).
    types = {"id": "INTEGER PRIMARY KEY", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"}
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, readonly: bool):
        super().__init__(str(path), readonly)
        self.path = path
        try:
            if readonly:
                if not path.exists():
                    raise DatabaseError(f"{path} does not exist (run the collector or an admin command first)")
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                             isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not create_private(path, DATABASE_MODE):
                    warn_if_public(path)
                self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
                self._conn.execute("PRAGMA foreign_keys = ON")
        except OSError as error:
            raise DatabaseError(f"cannot open {path}: {error.strerror}") from error
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot open {path}: {error}") from error

    def execute(self, sql: str, params: Sequence = ()):
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as error:
            raise DatabaseError(str(error)) from error

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as error:
            raise DatabaseError(str(error)) from error

    def _begin(self) -> None:
        # BEGIN IMMEDIATE takes the write lock at once: a deferred transaction that has read cannot
        # upgrade to a write after another connection committed (SQLite fails it at once, "database is
        # locked", instead of waiting its turn).
        self.execute("BEGIN IMMEDIATE" if not self.readonly else "BEGIN")

    def _commit(self) -> None:
        self.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def change_marker(self) -> object:
        return self.value("PRAGMA data_version")

    def table_exists(self, name: str) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None

    def close(self) -> None:
        self._conn.close()


def warn_if_public(path: str | Path) -> None:
    """Say so when an existing database is readable by every user (one made before databases were
    created 0600): its mode is the operator's to change, but not silently wrong."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning("%s holds personal data but every user may read it (mode %03o): chmod 600 it and its -wal and "
                    "-shm files (0640 for a group that must read it)", path, mode)
