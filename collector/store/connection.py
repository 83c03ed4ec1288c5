"""One database connection, SQLite or PostgreSQL, behind the few operations the queries need.

The queries (``registry.py``, ``ledger.py``, ...) are written once, in the SQL both engines speak, with
``?`` placeholders; a backend module (``sqlite.py``, ``postgresql.py``) supplies what differs: how to
connect, the placeholder style, how a transaction takes the write lock, the column types of the
schema, and the few capabilities one engine has and the other lacks (a cheap "has anyone else
committed?" marker, per-gate locks between concurrent writers).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import CollectorError


class DatabaseError(CollectorError):
    """The database failed an operation (disk full, connection lost, lock timeout): nothing of the
    transaction was kept and it may be tried again. The driver's own error is the ``__cause__``. Not the
    mistake of whoever asked: a command exits 75 and a web request is answered 503 for it. ``connect``
    also raises it, before opening anything, for a location that names no database (``Store`` turns
    that into a StoreError: a configuration to correct)."""


class Connection(ABC):
    """A connection plus its dialect. Not thread-safe: one per thread (the web service opens one per
    request in its worker threads)."""

    #: "sqlite" or "postgresql"
    dialect: str = ""
    #: True when no other connection can write between this one's transactions unnoticed: SQLite has one
    #: writer at a time and ``change_marker`` shows any other commit.
    single_writer: bool = True
    #: Schema types: the rest (TEXT, BIGINT, DOUBLE PRECISION) both engines read alike.
    types: dict[str, str] = {}
    #: The database's clock in seconds since 1970 (leases expire by it, whatever the hosts' clocks say).
    now_sql: str = ""

    def __init__(self, location: str, readonly: bool):
        self.location = location
        self.readonly = readonly
        self._depth = 0  # open transaction (1) and savepoints inside it

    # ------------------------------------------------------------------ statements

    @abstractmethod
    def execute(self, sql: str, params: Sequence = ()):
        """Run one statement; returns a cursor (fetchone, fetchall, rowcount, description)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None: ...

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        cursor = self.execute(sql, params)
        names = [name for name, *_ in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def record(self, sql: str, params: Sequence = ()) -> dict | None:
        """The first row by column name, or None."""
        cursor = self.execute(sql, params)
        row = cursor.fetchone()
        return None if row is None else dict(zip((name for name, *_ in cursor.description), row, strict=True))

    def value(self, sql: str, params: Sequence = (), default=None):
        """The first column of the first row (a count, a maximum, one field), or ``default`` without a row."""
        row = self.execute(sql, params).fetchone()
        return default if row is None else row[0]

    def column(self, sql: str, params: Sequence = ()) -> list:
        """The first column of every row."""
        return [value for value, *_ in self.execute(sql, params).fetchall()]

    def script(self, sql: str) -> None:
        """Statements separated by ';' at line ends (schema steps), types filled in for this engine."""
        for statement in re.split(r";\s*\n", sql.format(**self.types)):
            if statement.strip():
                self.execute(statement)

    # ------------------------------------------------------------------ transactions

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; nested ones are savepoints, so a failure inside costs only its own block."""
        if self._depth:
            # Named by depth: a random name per savepoint is a measurable cost at one per message.
            name = f"nested_{self._depth}"
            self._depth += 1
            self.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                self._rollback_to(name)
                raise
            else:
                self.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    def _rollback_to(self, name: str) -> None:
        try:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
        except DatabaseError:
            pass  # the transaction itself is gone; the outermost block rolls back

    # ------------------------------------------------------------------ what differs

    @abstractmethod
    def change_marker(self) -> object:
        """A value that changes whenever another connection may have committed (cheap to read)."""

    def lock_gates(self, gates: Iterable[tuple[str, str]]) -> None:
        """Inside a transaction: hold these gates until it ends, against every other writer (in sorted
        order, so two writers never wait on each other in a circle). A single-writer engine needs none."""
        return None

    @abstractmethod
    def table_exists(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


#: What every refusal of a location says is wanted.
WANTED = "a SQLite file (a path, or sqlite:PATH) or a postgresql:// URL"


def is_postgresql(location: str | Path) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0] in ("postgresql", "postgres")


def connect(location: str | Path, *, readonly: bool = False) -> Connection:
    """``postgresql://...`` (or ``postgres://``) is PostgreSQL; a path, or ``sqlite:PATH``, is SQLite.
    Anything else (None, an empty name, a directory) is refused with DatabaseError, before anything is
    opened or created."""
    if is_postgresql(location):
        if "://" not in location:
            raise DatabaseError(f"{display(location)} is not a URL: the database must be {WANTED}")
        from .postgresql import PostgresConnection

        return PostgresConnection(location, readonly)
    from .sqlite import SqliteConnection

    path = sqlite_path(location)
    # Path("") is "." (the working directory): a directory is never a database file.
    if str(location).endswith(("/", os.sep)) or path.is_dir():
        raise DatabaseError(f"the database location {str(location)!r} names a directory, not a file: "
                            f"it must be {WANTED}")
    return SqliteConnection(path, readonly)


def sqlite_path(location: str | Path) -> Path:
    """The SQLite file a location names. Only text or a path is taken: ``str(None)`` would be a file
    named ``None`` in whatever the working directory is (one was once committed beside the code)."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if location is None:
        raise DatabaseError(f"no database location given (None): the database must be {WANTED}")
    if not isinstance(location, str):
        raise DatabaseError(f"{location!r} is no database location: the database must be {WANTED}")
    text = location[len("sqlite:"):] if location.startswith("sqlite:") else location
    if not text.strip():
        raise DatabaseError(f"the database location {location!r} names no file: it must be {WANTED}")
    return Path(text)


def display(location: str | Path) -> str:
    """The location for a log line or an error: a password in a URL is never shown."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(location))
