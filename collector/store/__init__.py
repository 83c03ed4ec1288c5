"""The collector's storage: every query, written once for SQLite (the embedded default) and PostgreSQL.

``Store`` is the one object the rest of the collector talks to: registry (``registry.py``), ledger
(``ledger.py``), quarantine, counters; ``schema.py`` holds the versioned schema and ``connection.py``
with a module per engine what differs between them. A location is a path (or ``sqlite:PATH``) or a
``postgresql://`` URL.

A gate punch is stored as the fields queries need, in columns, and the rest of what its gate signed,
packed (``packed.py``); the exact signed bytes and the digest are rebuilt from the row, so every proof
stays checkable at a third of the bytes. On PostgreSQL the punches table is partitioned by month
(``partitions.py``). Punches are never edited: a correction is a separate manual punch, a void is a
mark beside the punch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from gate_agent.protocol import format_time

from . import schema
from .card_counters import CardCounterQueries, PunchRef
from .clock import Clock, system_clock
from .connection import (
    Connection,
    DatabaseBusy,
    DatabaseError,
    Timeouts,
    connect,
    display,
    is_postgresql,
    sqlite_path,
)
from .counters import CounterQueries, Gauge
from .days import DayQueries, Mark, StoredDay
from .disputes import DisputeQueries
from .errors import StoreError
from .evidence_requests import EvidenceRequestQueries
from .figures import Figure, FigureQueries
from .inside import InsideQueries
from .leases import Lease, LeaseQueries
from .ledger import LedgerQueries, Link, Progress, Tail
from .payments import PaymentQueries
from .quarantine import OTHER_TOPICS, QUARANTINE_RAW_BYTES, QuarantineLimits, QuarantineQueries
from .register import RegisterQueries
from .registry import MAX_SHIFT_HOURS, GateKeys, RegistryQueries
from .retention import RetentionQueries
from .signin import SignInQueries
from .wage_sheets import WageSheetQueries
from .wages import WageQueries
from .worker_access import WorkerAccessQueries

__all__ = ["Store", "StoreError", "DatabaseError", "DatabaseBusy", "Timeouts",
           "Clock", "system_clock", "GateKeys", "Lease", "QuarantineLimits",
           "OTHER_TOPICS", "QUARANTINE_RAW_BYTES", "MAX_SHIFT_HOURS", "Link", "Tail", "Progress", "PunchRef", "Gauge", "Mark", "StoredDay", "Figure",
           "database_exists", "display"]


class Store(RegistryQueries, LedgerQueries, QuarantineQueries, CounterQueries, LeaseQueries, WageQueries,
            WageSheetQueries, PaymentQueries, RetentionQueries, CardCounterQueries, SignInQueries,
            WorkerAccessQueries, DisputeQueries, EvidenceRequestQueries, DayQueries, FigureQueries, InsideQueries,
            RegisterQueries):
    """A connection to the collector's database. Opening it for writing applies pending schema steps;
    ``readonly`` never writes (`collector serve`, reports), and fails if there is no database yet.
    ``clock`` is where the times it stamps come from (``clock.py``): the host's clock unless given.
    ``timeouts`` bound a PostgreSQL connection's waits (``Timeouts``)."""

    def __init__(self, location: str | Path, *, readonly: bool = False, upgrade: bool = True,
                 clock: Clock = system_clock, timeouts: Timeouts | None = None):
        self.location = location
        self.clock = clock
        try:
            self.db: Connection = connect(location, readonly=readonly, timeouts=timeouts)
        except DatabaseError as error:
            raise StoreError(str(error)) from None
        if not readonly and upgrade:
            try:
                schema.upgrade(self.db, clock=clock)
            except BaseException:
                self.db.close()
                raise

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        return None if is_postgresql(self.location) else sqlite_path(self.location)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One transaction; nested ones are savepoints (a failure costs only its own block)."""
        with self.db.transaction():
            yield self

    def execute(self, sql: str, params: Sequence = ()):
        """A statement of the caller's own (tools and tests); queries of the product live in the mixins."""
        return self.db.execute(sql, params)

    def has(self, capability: str) -> bool:
        """Whether the schema has this capability (``schema.CAPABILITIES``): a read-only reader may meet
        a database the daemon has not upgraded yet. Remembered once true."""
        step = schema.CAPABILITIES[capability]
        known = self.__dict__.setdefault("_steps", set())
        if step not in known and step in schema.applied(self.db):
            known.update(schema.applied(self.db))
        return step in known

    def now(self) -> datetime:
        """What the store's clock says it is (aware; naive answers are refused)."""
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the store's clock answered a naive datetime: times are stored as UTC")
        return moment

    def _now_text(self) -> str:
        """The store's clock as stored: UTC text with milliseconds."""
        return format_time(self.now())

    def change_marker(self) -> object:
        """Changes whenever another connection may have committed (the live stream polls it)."""
        return self.db.change_marker()

    def _one(self, sql: str, params: Iterable = ()) -> tuple | None:
        return self.db.one(sql, tuple(params))

    def _rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        return self.db.rows(sql, tuple(params))

    @staticmethod
    def _where(**equal: object) -> tuple[str, list]:
        """`` WHERE a = ? AND b = ?`` for the filters given (None means any), and their parameters."""
        given = {column: value for column, value in equal.items() if value is not None}
        where = (" WHERE " + " AND ".join(f"{column} = ?" for column in given)) if given else ""
        return where, list(given.values())


def database_exists(location: str | Path) -> bool:
    """Whether there is a database to read (a PostgreSQL server is taken to have one)."""
    return is_postgresql(location) or sqlite_path(location).exists()
