"""The punches table by month on PostgreSQL: one partition per calendar month of the punch's time (UTC),
so that a month the bank no longer reads every day can move to cheaper storage (``ALTER TABLE
punches_2026_01 SET TABLESPACE ...``) and vacuum and index upkeep stay the size of a month.

Partitions are made ahead: the current month and the next ``AHEAD`` exist at any time (the daemon checks
every 5 minutes, ``collector db partitions --make`` on demand). A punch whose month has none (a gate's clock
years off, a backlog older than the first partition) lands in ``punches_other``, the default partition;
when its month's partition is made, the rows it held for that month move into it in the same
transaction, so none is ever in two places or none.

Each partition holds its own unique index on (site, gate, seq); PostgreSQL cannot make one index unique
across partitions unless it includes the partition key. A resent punch carries the same signed time, so
it meets its copy in the same partition; the ingest pipeline looks for a held seq before storing one at
or below the gate's highest (collector.ingest.pipeline), which is the only way two punches of one seq
could fall in different months: a gate that signed two different punches under one seq.

Punches' ids have a block-range index (schema step 33): a look-up by id reads the ranges that may hold
it and every range not summarised yet. Autovacuum summarises a range once the next one is begun
(``autosummarize``), when it gets to it and as long as its queue of such requests is not full (a burst
may fill it); the daemon summarises what is left (``summarise``) at each check, so a look-up reads at
most what arrived since, and each partition's last range (16 pages).

SQLite keeps one table: an embedded site's database is small, and archiving there is a file copy.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from . import Store
from .background import BackgroundRounds
from .connection import Connection

log = logging.getLogger(__name__)

#: Months made beyond the current one.
AHEAD = 2
#: Seconds between the daemon's checks (a month is made two months before it starts; what a look-up by id
#: reads unsummarised is what arrived since the last check).
CHECK_SECONDS = 300.0
#: Serialises collectors making the same month (an arbitrary advisory-lock key).
_LOCK = 4242_0026
DEFAULT = "punches_other"
_NAME = re.compile(r"punches_(\d{4})_(\d{2})")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    month: str  # YYYY-MM, or "" for the default partition
    rows: int  # the planner's estimate (pg_class.reltuples): counting a month exactly reads it
    bytes: int  # table, TOAST and indexes
    tablespace: str  # "" : the database's default


def is_partitioned(conn: Connection) -> bool:
    return conn.dialect == "postgresql" and conn.value(
        "SELECT 1 FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid "
        "WHERE c.relname = 'punches' AND c.relnamespace = current_schema()::regnamespace") is not None


def month_after(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def months(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` (YYYY-MM), both included."""
    found, month = [], first
    while month <= last:
        found.append(month)
        month = month_after(month)
    return found


def partition_name(month: str) -> str:
    return f"punches_{month[:4]}_{month[5:7]}"


def create_default(conn: Connection) -> None:
    conn.execute(f"CREATE TABLE {DEFAULT} PARTITION OF punches DEFAULT")
    conn.execute(f"CREATE UNIQUE INDEX {DEFAULT}_gate_seq ON {DEFAULT} (site, gate, seq)")


def existing(conn: Connection) -> set[str]:
    """The months that have a partition."""
    names = conn.column("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'punches' "
                        "AND p.relnamespace = current_schema()::regnamespace")
    return {f"{m.group(1)}-{m.group(2)}" for name in names if (m := _NAME.fullmatch(name))}


def ensure(conn: Connection, *, now: datetime | None = None, wanted: list[str] = ()) -> list[str]:
    """Make the partitions of the current month, the next ``AHEAD`` and ``wanted``, moving any rows the
    default partition holds for them; returns the months made. Call it inside a transaction."""
    if not is_partitioned(conn):
        return []
    conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK,))
    moment = now or datetime.now(UTC)
    current = moment.astimezone(UTC).strftime("%Y-%m")
    ahead = months(current, _plus(current, AHEAD))
    # A backlog older than the partitions (or a gate's clock that was off, put right) waits in the default.
    waiting = held_months(conn, table=DEFAULT, now=moment)
    have = existing(conn)
    made = []
    for month in sorted(set(ahead) | set(wanted) | set(waiting)):
        if month in have:
            continue
        _make(conn, month)
        made.append(month)
    return made


def _plus(month: str, count: int) -> str:
    for _ in range(count):
        month = month_after(month)
    return month


def _make(conn: Connection, month: str) -> None:
    """One month's partition. The default partition may hold rows of that month: they move first (a
    partition cannot be attached while the default holds rows of its range)."""
    name, first, after = partition_name(month), month, month_after(month)
    conn.execute(f"CREATE TABLE {name} (LIKE punches INCLUDING DEFAULTS)")
    conn.execute(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE time >= ? AND time < ? RETURNING *) "
                 f"INSERT INTO {name} SELECT * FROM moved", (first, after))
    conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_month CHECK (time >= '{first}' AND time < '{after}')")
    conn.execute(f"CREATE UNIQUE INDEX {name}_gate_seq ON {name} (site, gate, seq)")
    # With the CHECK in place, attaching proves the range without scanning the month's rows again.
    conn.execute(f"ALTER TABLE punches ATTACH PARTITION {name} FOR VALUES FROM ('{first}') TO ('{after}')")
    conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_month")


def listing(conn: Connection) -> list[Partition]:
    """Every partition of the punches table, oldest month first, the default last."""
    if not is_partitioned(conn):
        return []
    rows = conn.rows(
        "SELECT c.relname AS name, GREATEST(c.reltuples, 0)::bigint AS rows, pg_total_relation_size(c.oid) AS bytes, "
        "COALESCE(t.spcname, '') AS tablespace FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
        "WHERE p.relname = 'punches' AND p.relnamespace = current_schema()::regnamespace")
    found = []
    for row in rows:
        match = _NAME.fullmatch(row["name"])
        month = f"{match.group(1)}-{match.group(2)}" if match else ""
        found.append(Partition(row["name"], month, int(row["rows"]), int(row["bytes"]), row["tablespace"]))
    return sorted(found, key=lambda p: (p.month == "", p.month))


def held_months(conn: Connection, *, table: str = "punches", now: datetime | None = None) -> list[str]:
    """The months ``table`` holds punches of, from 2020 to now: a clock years off gets no partition of its
    own, its rows stay in the default one."""
    until = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    return conn.column(f"SELECT DISTINCT substr(time, 1, 7) FROM {table} WHERE time >= '2020-01' AND time <= ?",
                       (until,))


def summarise(conn: Connection) -> int:
    """Summarise every complete range of the punches' id index that is not yet; returns how many. (A
    partition's last range, still filling or left so when its month ended, stays unsummarised: at most
    16 pages each that a look-up reads.)"""
    if conn.dialect != "postgresql" or conn.value(
            "SELECT 1 FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'punches_id' "
            "AND c.relnamespace = current_schema()::regnamespace AND a.amname = 'brin'") is None:
        return 0
    return sum(conn.value("SELECT brin_summarize_new_values(?::regclass)", (index,))
               for index in conn.column("SELECT relid FROM pg_partition_tree('punches_id') WHERE isleaf"))


class PartitionKeeper(BackgroundRounds):
    """The daemon's thread that makes the months ahead and summarises the id index's new ranges
    (PostgreSQL; nothing to do on SQLite)."""

    what = "punch partitions"

    def round(self, store: Store) -> float:
        with store.db.transaction():
            made = ensure(store.db)
        if made:
            log.info("punches: partition(s) made for %s", ", ".join(made))
        ranges = summarise(store.db)
        log.debug("punches: %d id range(s) summarised", ranges)
        return CHECK_SECONDS
