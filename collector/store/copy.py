"""Moving a pilot: copy a collector's SQLite database into an empty PostgreSQL database, and prove it.

Every table of the schema is copied row for row with its ids (a manual punch is ``manual#ID`` in
attendance and evidence, and ``punch void ID`` names it), bytes byte for byte, in one transaction on the
target that also brings the target to the current schema. Before that transaction commits, the copy is
verified on the target: every table's row count and content (an order-free SHA-256 sum over its rows)
equal to the source's, every gate's chain re-verified from the stored bodies against the registered
keys, each gate's contiguous progress and digest equal to what the source recorded, the identity
sequences past the copied ids, and the source unchanged since its snapshot. Anything short of that
rolls the whole copy back: the target ends as a verified copy or as it was.

The source is opened read-only and must be at the current schema version (its own daemon, or
`collector db upgrade`, brings it there); the copy never writes to the pilot's file. Tables are read
and written in batches by primary key, so a pilot of millions of punches never sits in memory; the
chains of a large copy are verified in chunks by worker processes (spawned, so a script calling this
guards its entry point, as multiprocessing asks).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from collector.errors import CollectorError
from collector.store import partitions, schema
from collector.store.connection import Connection, DatabaseError, connect, display, is_postgresql, sqlite_path
from collector.store.gate_boots import GateBoots
from gate_agent.protocol import ProtocolError, Punch, key_id, parse_public_key, verify_chain

log = logging.getLogger(__name__)

#: Rows read and written per statement (and per page of a gate's punches when its chain is verified).
BATCH = 5000
#: Punches of one gate verified per job (signatures and links, by gate_agent.protocol.verify_chain).
CHUNK = 1000
#: Processes verifying chunks of a large copy (the reader feeds about eight).
VERIFY_PROCESSES = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: tuple[str, ...]  # the primary key: batches are read in its order


#: Every table holding the collector's data, parents before children (gates name sites, cards workers).
TABLES = (
    Table("sites", ("site",)),
    Table("gates", ("site", "gate")),
    Table("gate_keys", ("site", "gate", "key_id")),
    Table("gate_key_register", ("idx",)),
    Table("gate_state", ("site", "gate")),
    Table("workers", ("worker",)),
    Table("worker_changes", ("id",)),
    Table("cards", ("id",)),
    Table("bank_keys", ("key_id",)),
    Table("registry_version", ("id",)),
    Table("gate_boots", ("id",)),
    Table("punches", ("id",)),
    Table("days", ("site", "worker", "day")),
    Table("day_marks", ("id",)),
    Table("bank_figures", ("site", "figure")),
    Table("conflicts", ("id",)),
    Table("gaps", ("id",)),
    Table("quarantine", ("id",)),
    Table("quarantine_tally", ("hour", "topic", "reason")),
    Table("counters", ("name",)),
    Table("gauges", ("name",)),
    Table("assignments", ("id",)),
    Table("wage_terms", ("id",)),
    Table("site_pay", ("id",)),
    Table("minimum_wages", ("id",)),
    Table("work_calendar", ("id",)),
    Table("wage_deductions", ("id",)),
    Table("wage_tables", ("id",)),
    Table("wage_lines", ("id",)),
    Table("wage_batches", ("batch_id",)),
    Table("wage_batch_files", ("id",)),
    Table("wage_payments", ("id",)),
    Table("wage_sheets", ("id",)),
    Table("wage_sheet_lines", ("id",)),
    Table("retention_log", ("id",)),
    Table("web_signin_links", ("id",)),
    Table("web_sessions", ("id",)),
    Table("worker_links", ("id",)),
    Table("worker_sessions", ("id",)),
    Table("record_access", ("id",)),
    Table("disputes", ("id",)),
    Table("dispute_overrides", ("id",)),
    Table("evidence_requests", ("id",)),
)

#: Tables the schema itself fills with a row (not data of the target's): the source's rows replace it.
SEEDED = frozenset({"registry_version"})

#: Tables of the schema holding only what running processes hold at this moment, never copied
#: (name -> why). A target holding rows in one is in use all the same, and refused.
RUNTIME_ONLY: dict[str, str] = {
    "leases": "which collector process holds each partition of the sites now, expiring by the database's clock "
              "(fencing is per database: the processes that run on the target take their own leases)",
    "members": "the collector processes alive now (the pilot's are stopped; those that run on the target "
               "announce themselves)",
}

#: What a database records about itself: the target keeps the record of its own upgrade.
OWN_RECORDS = frozenset({"schema_migrations", "_sqlite_migrations"})


class CopyError(CollectorError):
    """The copy was refused or failed; nothing of it is in the target. The message is one line."""


@dataclass
class TableResult:
    table: str
    source_rows: int
    copied_rows: int
    target_rows: int
    same_content: bool
    next_id: int | None = None  # what the target's identity sequence gives next (tables with ids)
    max_id: int | None = None

    @property
    def ok(self) -> bool:
        return (self.source_rows == self.copied_rows == self.target_rows and self.same_content
                and (self.next_id is None or self.max_id is None or self.next_id > self.max_id))

    def problem(self) -> str | None:
        if self.source_rows != self.copied_rows or self.copied_rows != self.target_rows:
            return (f"table {self.table}: {self.source_rows} row(s) in the source, {self.copied_rows} copied, "
                    f"{self.target_rows} in the target")
        if not self.same_content:
            return f"table {self.table}: the rows in the target differ from the source's (same count, other content)"
        if not self.ok:
            return (f"table {self.table}: the next id would be {self.next_id}, not past the highest copied id "
                    f"{self.max_id}")
        return None


@dataclass
class GateResult:
    site: str
    gate: str
    punches: int = 0
    chain_breaks: int = 0  # links the source's ingest already recorded as broken (flag chain_break)
    contiguous_seq: int = 0  # derived from the punches in the target
    contiguous_digest: str | None = None
    source_contiguous_seq: int = 0  # what the source's ingest recorded (and acked)
    source_contiguous_digest: str | None = None
    chain_problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.chain_problem is None and self.same_progress

    @property
    def same_progress(self) -> bool:
        return (self.contiguous_seq, self.contiguous_digest) == (self.source_contiguous_seq,
                                                                 self.source_contiguous_digest)

    def problem(self) -> str | None:
        if self.chain_problem is not None:
            return f"gate {self.site}/{self.gate}: {self.chain_problem}"
        if not self.same_progress:
            return (f"gate {self.site}/{self.gate}: the target's punches are contiguous to seq {self.contiguous_seq} "
                    f"({_short(self.contiguous_digest)}), the source recorded seq {self.source_contiguous_seq} "
                    f"({_short(self.source_contiguous_digest)})")
        return None


@dataclass
class CopyReport:
    source: str
    target: str  # without a password
    tables: list[TableResult] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    committed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.committed and not self.problems

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "ok": self.ok, "committed": self.committed,
                "seconds": round(self.seconds, 3), "problems": self.problems,
                "tables": [asdict(t) | {"ok": t.ok} for t in self.tables],
                "gates": [asdict(g) | {"ok": g.ok} for g in self.gates]}


#: progress(label, total) -> a context manager whose value has update(n) (a click progress bar).
Progress = Callable[[str, int], AbstractContextManager]


class _Silent:
    def update(self, n: int) -> None:
        pass


def _silent(label: str, total: int) -> AbstractContextManager:
    return nullcontext(_Silent())


class _Rollback(Exception):
    """Verification found a difference: the target's transaction must not commit."""


def copy_database(source: str | Path, target: str, *, batch: int = BATCH, progress: Progress | None = None,
                  before_verify: Callable[[Connection], None] | None = None) -> CopyReport:
    """Copy the SQLite database at ``source`` into the empty PostgreSQL database at ``target`` and verify
    the copy; committed only if everything matches (``report.ok``). Refusals raise CopyError before
    anything is written. ``before_verify`` sees the target's connection between copy and verification."""
    if is_postgresql(source):
        raise CopyError(f"--from is the pilot's SQLite file, not {display(source)}")
    if not is_postgresql(target):
        raise CopyError(f"--to must be a postgresql:// URL, not {display(target)}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    try:
        source_name = str(sqlite_path(source))
    except DatabaseError as error:  # a --from that names no file
        raise CopyError(str(error)) from None
    src = _open(source, readonly=True)
    try:
        _check_source(src, source_name)
        tgt = _open(target, readonly=False)
        try:
            return _copy(src, tgt, CopyReport(source_name, display(target)), batch=batch,
                         progress=progress or _silent, before_verify=before_verify)
        finally:
            tgt.close()
    finally:
        src.close()


def _open(location: str | Path, *, readonly: bool) -> Connection:
    try:
        return connect(location, readonly=readonly)
    except DatabaseError as error:
        raise CopyError(str(error)) from None


# ---------------------------------------------------------------------------------------------- refusals

def _check_source(src: Connection, name: str) -> None:
    """The source holds exactly the schema this collector knows: the current version, nothing else."""
    applied = schema.applied(src)
    known = {step.version for step in schema.STEPS}
    newer = sorted(set(applied) - known)
    if newer:
        raise CopyError(f"{name} has schema step(s) {', '.join(map(str, newer))}, which this collector does not "
                        "know: copy it with the collector version that made it")
    missing = [step for step in schema.STEPS if step.version not in applied]
    if missing:
        raise CopyError(f"{name} lacks schema step(s) {', '.join(f'{s.version} {s.name}' for s in missing)}: "
                        "run `collector db upgrade --config` with the pilot's configuration first (db copy "
                        "never writes to the pilot's file)")
    tables = {row[0] for row in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%'").fetchall()}
    unknown = sorted(tables - {t.name for t in TABLES} - set(RUNTIME_ONLY) - OWN_RECORDS)
    if unknown:
        raise CopyError(f"{name} holds table(s) db copy does not know: {', '.join(unknown)}")


def _check_target(tgt: Connection, target: str) -> None:
    newer = sorted(set(schema.applied(tgt)) - {step.version for step in schema.STEPS})
    if newer:
        raise CopyError(f"{target} has schema step(s) {', '.join(map(str, newer))}, which this collector does "
                        "not know")
    held = [name for name in [t.name for t in TABLES if t.name not in SEEDED] + sorted(RUNTIME_ONLY)
            if tgt.table_exists(name) and tgt.one(f"SELECT 1 FROM {name} LIMIT 1") is not None]
    if held:
        raise CopyError(f"{target} is not empty ({', '.join(held)} hold rows): db copy writes only into an empty "
                        "database; nothing was written")


# ---------------------------------------------------------------------------------------------- the copy

def _copy(src: Connection, tgt: Connection, report: CopyReport, *, batch: int, progress: Progress,
          before_verify) -> CopyReport:
    started = time.monotonic()
    try:
        with tgt.transaction():
            _check_target(tgt, report.target)
            schema.upgrade(tgt)  # nested: part of this transaction, and holds the schema lock until it ends
            _check_target(tgt, report.target)  # another copy or collector may have written before the lock
            partitions.ensure(tgt, wanted=partitions.held_months(src))
            source_version = src.change_marker()
            with src.transaction():  # one snapshot of the source for everything read from it
                counts = {t.name: src.one(f"SELECT COUNT(*) FROM {t.name}")[0] for t in TABLES}
                copied: dict[str, _Fingerprint] = {}
                with progress("copying", sum(counts.values())) as bar:
                    for table in TABLES:
                        copied[table.name] = _copy_table(src, tgt, table, batch, bar.update)
                recorded = {(r[0], r[1]): (r[2] or 0, r[3]) for r in src.execute(
                    "SELECT site, gate, contiguous_seq, contiguous_digest FROM gate_state").fetchall()}
            _set_sequences(tgt)
            if before_verify is not None:
                before_verify(tgt)
            with progress("verifying tables", sum(counts.values())) as bar:
                report.tables = [_verify_table(tgt, table, counts[table.name], copied[table.name], batch, bar.update)
                                 for table in TABLES]
            report.problems += [p for p in (t.problem() for t in report.tables) if p]
            report.gates, stray = _verify_gates(tgt, recorded, batch, progress)
            report.problems += [p for p in (g.problem() for g in report.gates) if p]
            if stray:
                report.problems.append(f"{stray} gate punch(es) in the target belong to no registered gate")
            if src.change_marker() != source_version:
                report.problems.append(f"{report.source} changed while it was copied (is its collector still "
                                       "running?): stop it and copy again")
            if report.problems:
                raise _Rollback
        report.committed = True
    except _Rollback:
        log.info("db copy: %d difference(s) found; rolled back", len(report.problems))
    except DatabaseError as error:
        raise CopyError(f"copy into {report.target} failed, nothing was written: {error}") from None
    report.seconds = time.monotonic() - started
    return report


def _columns(conn: Connection, table: str) -> list[str]:
    return [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]


def _copy_table(src: Connection, tgt: Connection, table: Table, batch: int, update) -> _Fingerprint:
    columns = _columns(src, table.name)
    theirs = _columns(tgt, table.name)
    if sorted(columns) != sorted(theirs):
        raise CopyError(f"table {table.name} has columns {', '.join(columns)} in the source but "
                        f"{', '.join(theirs)} in the target")
    if table.name in SEEDED:
        tgt.execute(f"DELETE FROM {table.name}")
    insert = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
              f"VALUES ({', '.join('?' for _ in columns)})")
    fingerprint = _Fingerprint(columns)
    for rows in _scan(src, table, columns, batch):
        fingerprint.add(rows)
        try:
            tgt.executemany(insert, rows)
        except DatabaseError as error:
            raise CopyError(f"copying table {table.name} failed, nothing was written: {error}") from None
        update(len(rows))
    log.debug("db copy: %s: %d row(s)", table.name, fingerprint.count)
    return fingerprint


def _scan(conn: Connection, table: Table, columns: list[str], batch: int) -> Iterator[list[tuple]]:
    """The table's rows in batches, by primary key (a row value comparison pages on both engines)."""
    names, key = ", ".join(columns), ", ".join(table.key)
    positions = [columns.index(k) for k in table.key]
    rows = conn.execute(f"SELECT {names} FROM {table.name} ORDER BY {key} LIMIT ?", (batch,)).fetchall()
    following = (f"SELECT {names} FROM {table.name} WHERE ({key}) > ({', '.join('?' for _ in table.key)}) "
                 f"ORDER BY {key} LIMIT ?")
    while rows:
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1]
        rows = conn.execute(following, (*(last[i] for i in positions), batch)).fetchall()


def _scan_pages(conn: Connection, table: Table, columns: list[str], batch: int) -> Iterator[list[tuple]]:
    """The target's rows of a table in batches of pages, partition by partition, in no order (the
    fingerprint needs none): punches' ids have a block-range index, which cannot page by id through a
    table that nothing has summarised yet (rows copied in this transaction)."""
    names = ", ".join(columns)
    pages = max(1, batch // 32)  # a page holds about 30 punches
    for leaf in conn.column(f"SELECT relid::regclass::text FROM pg_partition_tree('{table.name}') WHERE isleaf "
                            f"UNION ALL SELECT '{table.name}' WHERE NOT EXISTS (SELECT 1 FROM pg_partitioned_table "
                            f"WHERE partrelid = '{table.name}'::regclass)"):
        size = conn.value("SELECT pg_relation_size(?::regclass) / current_setting('block_size')::int", (leaf,))
        for first in range(0, size, pages):
            rows = conn.execute(f"SELECT {names} FROM ONLY {leaf} WHERE ctid >= ?::tid AND ctid < ?::tid",
                                (f"({first},0)", f"({first + pages},0)")).fetchall()
            if rows:
                yield rows


class _Fingerprint:
    """An order-free digest of a table's rows: the sum of each row's SHA-256 (mod 2**256). A row is its
    values' repr in one column order, so the type counts too (3 is not 3.0, bytes are not text)."""

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.count = 0
        self.total = 0

    def add(self, rows: list[tuple]) -> None:
        total = self.total
        for row in rows:
            # Both drivers give tuples of None, int, float, str and bytes.
            total += int.from_bytes(hashlib.sha256(repr(row).encode("utf-8", "surrogatepass")).digest(), "big")
        self.total = total % (1 << 256)
        self.count += len(rows)


def _set_sequences(tgt: Connection) -> None:
    """Identity columns go on after the highest copied id (an empty table's starts where it was)."""
    for table in TABLES:
        sequence = _sequence(tgt, table)
        if sequence is not None:
            tgt.execute(f"SELECT setval(?, (SELECT MAX(id) FROM {table.name}))", (sequence,))


def _sequence(tgt: Connection, table: Table) -> str | None:
    if table.key != ("id",):
        return None
    return tgt.one("SELECT pg_get_serial_sequence(?, 'id')", (table.name,))[0]


# ---------------------------------------------------------------------------------------------- verification

def _verify_table(tgt: Connection, table: Table, source_rows: int, copied: _Fingerprint, batch: int,
                  update) -> TableResult:
    target_rows = tgt.one(f"SELECT COUNT(*) FROM {table.name}")[0]
    found = _Fingerprint(copied.columns)
    scan = _scan_pages if table.name == "punches" else _scan
    for rows in scan(tgt, table, copied.columns, batch):
        found.add(rows)
        update(len(rows))
    result = TableResult(table.name, source_rows, copied.count, target_rows,
                         same_content=(found.count, found.total) == (copied.count, copied.total))
    sequence = _sequence(tgt, table)
    if sequence is not None:
        last = tgt.one("SELECT pg_sequence_last_value(?::regclass)", (sequence,))[0]
        result.next_id = (last or 0) + 1
        result.max_id = tgt.one(f"SELECT MAX(id) FROM {table.name}")[0]
    return result


def _verify_gates(tgt: Connection, recorded: dict, batch: int, progress: Progress) -> tuple[list[GateResult], int]:
    """Every registered gate's chain from the target's stored bodies; returns the results and the number
    of gate punches of no registered gate."""
    keys: dict[tuple[str, str], dict[str, str]] = {}
    for site, gate, text in tgt.execute("SELECT site, gate, public_key FROM gate_keys").fetchall():
        try:
            keys.setdefault((site, gate), {})[key_id(parse_public_key(text))] = text
        except ValueError:
            continue  # the gate's punches under that key id fail below, naming it
    gates = tgt.execute("SELECT site, gate FROM gates ORDER BY site, gate").fetchall()
    total = tgt.one("SELECT COUNT(*) FROM punches WHERE gate IS NOT NULL")[0]
    stray = tgt.one("SELECT COUNT(*) FROM punches p WHERE gate IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM gates g WHERE g.site = p.site AND g.gate = p.gate)")[0]
    results = []
    with progress("verifying chains", total) as bar, _verifiers(total) as pool:
        for site, gate in gates:
            result = GateResult(site, gate)
            result.source_contiguous_seq, result.source_contiguous_digest = recorded.get((site, gate), (0, None))
            _verify_chain(tgt, result, keys.get((site, gate), {}), batch, bar.update, pool)
            results.append(result)
    return results, stray


def _verifiers(punches: int):
    """Worker processes for the chunks of a large copy: decoding, digests and Ed25519 are all CPU, and
    most of it holds the GIL. Spawned, not forked: a child must not inherit the database connections."""
    if punches < 2 * CHUNK or VERIFY_PROCESSES < 2:
        return _Inline()
    # Ctrl-C is the parent's to handle (it rolls the copy back); workers would only print tracebacks.
    return ProcessPoolExecutor(VERIFY_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))


class _Inline:
    """An executor that runs each job at once (small copies: starting processes would cost more)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future


def _verify_chain(tgt: Connection, result: GateResult, keys: dict[str, str], batch: int, update, pool) -> None:
    """One gate's punches, read a page at a time in seq order and verified a chunk at a time by
    ``_verify_run``. Consecutive seqs must link, except to a punch the source's ingest flagged
    chain_break; a gap starts a new run. Stops at the first failure, by seq."""
    pending: deque[Future] = deque()  # runs being verified, lowest seqs first

    def settle(keep: int) -> bool:
        while len(pending) > keep:
            problem = pending.popleft().result()
            if problem is not None:
                result.chain_problem = problem
                return False
        return True

    def submit(run: list, predecessor) -> bool:
        pending.append(pool.submit(_verify_run, result.site, result.gate, keys, predecessor, run))
        return settle(2 * VERIFY_PROCESSES)

    boots = GateBoots(tgt)
    previous = None  # (seq, digest, body) of the punch before
    run: list[tuple[int, str, bytes]] = []
    predecessor = None  # the body the run's first punch must link to, if any
    in_prefix, after = True, 0
    try:
        while True:
            rows = boots.rows(tgt.rows(
                "SELECT seq, flags, site, gate, time, card, direction, signed, body FROM punches WHERE site = ? AND "
                "gate = ? AND seq > ? ORDER BY seq LIMIT ?", (result.site, result.gate, after, batch)))
            for row in rows:
                # The body is rebuilt from the row's columns and packed proof: what is verified below is
                # what the ledger holds, not a copy of it kept beside.
                seq, digest, flags, body = row["seq"], row["digest"], row["flags"], row["body"]
                broken = "chain_break" in (flags or "").split(",")
                linked = previous is not None and seq == previous[0] + 1 and not broken
                if not linked or len(run) >= CHUNK:
                    if run and not submit(run, predecessor):
                        return
                    run, predecessor = [], previous[2] if linked else None
                run.append((seq, digest, None if body is None else bytes(body)))
                result.punches += 1
                result.chain_breaks += broken
                if in_prefix and seq == result.contiguous_seq + 1:
                    result.contiguous_seq, result.contiguous_digest = seq, digest
                else:
                    in_prefix = False
                previous = run[-1]
            update(len(rows))
            if len(rows) < batch:
                break
            after = rows[-1]["seq"]
        if run and not submit(run, predecessor):
            return
        settle(0)
    finally:
        for future in pending:
            future.cancel()


def _verify_run(site: str, gate: str, keys: dict[str, str], predecessor: bytes | None,
                run: list[tuple[int, str, bytes]]) -> str | None:
    """In a worker: each punch of ``run`` is the gate's, at its seq, with its stored digest, signed by one
    of ``keys`` (key id -> public key text), and links to the one before (the first to ``predecessor``,
    when given); gate_agent.protocol's verify_chain decides. Returns the first failure, or None."""
    try:
        public = _public_keys(tuple(sorted(keys.items())))
        chain = [] if predecessor is None else [_decode(predecessor, run[0][0] - 1)]
        for seq, digest, body in run:
            punch = None
            try:
                punch = _decode(body, seq)
                if (punch.site, punch.gate, punch.seq) != (site, gate, seq):
                    raise ProtocolError("schema", f"seq {seq} holds the body of {punch.site}/{punch.gate} "
                                                  f"seq {punch.seq}")
                if punch.digest() != digest:
                    raise ProtocolError("schema", f"seq {seq}: the stored digest is not the body's")
            except ProtocolError:
                # A failure at a lower seq comes first, and a body that is not what its gate signed is
                # better named by its signature than by the digest stored beside it.
                verify_chain(chain if punch is None else [*chain, punch], public)
                raise
            chain.append(punch)
        verify_chain(chain, public)
    except ProtocolError as error:
        return error.detail
    return None


@functools.lru_cache(maxsize=64)
def _public_keys(keys: tuple[tuple[str, str], ...]) -> dict:
    return {kid: parse_public_key(text) for kid, text in keys}


def _decode(body, seq: int) -> Punch:
    if body is None:
        raise ProtocolError("schema", f"seq {seq}: the stored punch cannot be rebuilt (its proof is missing or "
                                      "damaged)")
    try:
        data = json.loads(bytes(body))
    except (ValueError, RecursionError) as error:
        raise ProtocolError("malformed", f"seq {seq}: the stored body is not JSON: {str(error)[:80]}") from None
    try:
        return Punch.from_dict(data)
    except ProtocolError as error:
        raise ProtocolError(error.reason, f"seq {seq}: the stored body is not a punch: {error.detail}") from None


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"
