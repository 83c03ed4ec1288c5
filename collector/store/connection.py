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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CollectorError


class DatabaseError(CollectorError):
    """The database failed an operation (disk full, connection lost, lock timeout): nothing of the
    transaction was kept and it may be tried again. The driver's own error is the ``__cause__``. Not the
    mistake of whoever asked: a command exits 75 and a web request is answered 503 for it. ``connect``
    also raises it, before opening anything, for a location that names no database (``Store`` turns
    that into a StoreError: a configuration to correct)."""


class DatabaseBusy(DatabaseError):
    """What the operation needed was held by another writer for longer than this connection waits (its
    lock timeout), or a statement ran past its statement timeout: nothing was kept, and trying the same
    again later is right (the holder may be paused, cut off or slow). ``gates`` names the gates whose locks
    could not be had, when that is what was busy."""

    def __init__(self, message: str, gates: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.gates = frozenset(gates)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds every PostgreSQL connection is opened with (seconds), so that no process that hangs, pauses
    or loses its network can stop the others for longer:

    ``lock``: the longest a statement waits for a lock another connection holds (a row, a gate);
    ``idle_in_transaction``: a transaction left idle this long is ended by the server, which frees its
    locks (its process was paused, hung or cut off; it finds its work rolled back when it comes back);
    ``statement``: the longest one statement may run.

    These defaults are for commands and the web service (generous: a large import keeps its transaction
    open while it reads its file); the daemon derives shorter ones from its lease (``config.py``)."""

    statement: float = 300.0
    lock: float = 30.0
    idle_in_transaction: float = 600.0

    def __post_init__(self) -> None:
        for name in ("statement", "lock", "idle_in_transaction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 86400:
                raise ValueError(f"timeout {name} must be a number of seconds in (0, 86400], not {value!r}")


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

    def __init__(self, location: str, readonly: bool, timeouts: Timeouts | None = None):
        self.location = location
        self.readonly = readonly
        self.timeouts = timeouts or Timeouts()
        self._depth = 0  # open transaction (1) and savepoints inside it
        self._at_commit: dict[str, tuple[Callable[[dict], None], dict]] = {}

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
            while self._at_commit:
                flush, data = self._at_commit.pop(next(iter(self._at_commit)))
                flush(data)
        except BaseException:
            self._depth = 0
            self._at_commit.clear()
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    def at_commit(self, key: str, flush: Callable[[dict], None]) -> dict:
        """A dict that lives as long as the open transaction: ``flush(it)`` runs in the transaction just
        before it commits (its failure rolls the whole transaction back); a rollback forgets it. For
        writes that many statements of one transaction would each make, made once (a burst's day marks).
        A savepoint rolled back keeps what was put in it: use it only for what may be written twice."""
        if not self._depth:
            raise RuntimeError("at_commit outside a transaction")
        entry = self._at_commit.get(key)
        if entry is None:
            entry = self._at_commit[key] = (flush, {})
        return entry[1]

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

    def lock_gates(self, gates: Iterable[tuple[str, str]], *, partial: bool = False,
                   wait: float | None = None) -> set[tuple[str, str]]:
        """Inside a transaction: hold these gates until it ends, against every other writer, waiting at most
        ``wait`` seconds (the lock timeout if None) for a gate another writer holds. Without ``partial``, raises DatabaseBusy unless
        every gate was had; with it, returns the gates that were not (the caller leaves their work for
        later). A single-writer engine needs no gate locks."""
        return set()

    def try_lock(self, name: str) -> bool:
        """Inside a transaction: hold ``name`` until it ends against every other writer, or False at once if
        another holds it now. A single-writer engine already holds everything."""
        return True

    @abstractmethod
    def table_exists(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


#: What every refusal of a location says is wanted.
WANTED = "a SQLite file (a path, or sqlite:PATH) or a postgresql:// URL"


def is_postgresql(location: str | Path) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0] in ("postgresql", "postgres")


def connect(location: str | Path, *, readonly: bool = False, timeouts: Timeouts | None = None) -> Connection:
    """``postgresql://...`` (or ``postgres://``) is PostgreSQL; a path, or ``sqlite:PATH``, is SQLite.
    Anything else (None, an empty name, a directory) is refused with DatabaseError, before anything is
    opened or created. ``timeouts`` bound a PostgreSQL connection's waits (``Timeouts``' defaults if None)."""
    if is_postgresql(location):
        if "://" not in location:
            raise DatabaseError(f"{display(location)} is not a URL: the database must be {WANTED}")
        from .postgresql import PostgresConnection

        return PostgresConnection(location, readonly, timeouts)
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
