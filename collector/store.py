"""The collector's storage: schema (sqlite-utils Migrations) and every query.

All SQL lives here, so another backend (PostgreSQL) can replace this module behind the same methods.
Times are UTC text with milliseconds (``2026-11-28T06:12:02.123Z``), which sorts as it reads.

Gate punches are stored exactly as signed (``body``) next to the fields queries need. They are never
edited: a correction is a separate manual punch, a void is a mark beside the punch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from gate_agent.files import create_private
from gate_agent.protocol import (
    TOPIC_ROOT,
    ProtocolError,
    Punch,
    decode_status,
    key_id,
    parse_public_key,
    utc_now_text,
    valid_id,
)

from .pki import RESERVED_NAMES

log = logging.getLogger(__name__)

QUARANTINE_RAW_BYTES = 4096
#: Names, cards and times: the daemon's user only (`collector serve` runs as that user too).
DATABASE_MODE = 0o600
MAX_SHIFT_HOURS = 7 * 24

migrations = Migrations("collector")


@migrations()
def m001_initial(db: Database) -> None:
    db["sites"].create({
        "site": str, "name": str, "timezone": str, "max_shift_hours": float, "created_at": str,
    }, pk="site", not_null={"timezone", "max_shift_hours", "created_at"})
    db["gates"].create({
        "site": str, "gate": str, "active": int, "added_at": str,
    }, pk=("site", "gate"), not_null={"active", "added_at"}, foreign_keys=[("site", "sites", "site")])
    db["gate_keys"].create({
        "site": str, "gate": str, "key_id": str, "public_key": str, "added_at": str, "revoked_at": str,
    }, pk=("site", "gate", "key_id"), not_null={"public_key", "added_at"})
    # What ingest knows per gate: the contiguous prefix it holds (what acks report) and the last status.
    db["gate_state"].create({
        "site": str, "gate": str, "contiguous_seq": int, "contiguous_digest": str, "max_seq": int,
        "last_punch_at": str, "status": str, "status_state": str, "status_at": str,
    }, pk=("site", "gate"), defaults={"contiguous_seq": 0, "max_seq": 0})
    db.execute("""
        CREATE TABLE punches (
            id          INTEGER PRIMARY KEY,
            site        TEXT NOT NULL,
            gate        TEXT,            -- NULL for manual punches
            seq         INTEGER,         -- NULL for manual punches
            time        TEXT NOT NULL,   -- the signed gate time (or the manual time), UTC
            card        TEXT,
            worker      TEXT,            -- manual punches name the worker; gate punches go by card
            direction   TEXT NOT NULL,
            tech        TEXT,
            roster      TEXT,
            synced      INTEGER,
            boot        TEXT,
            mono_ms     INTEGER,
            reader      TEXT,
            prev        TEXT,
            digest      TEXT,
            key_id      TEXT,
            body        BLOB,            -- the punch exactly as the gate signed it
            received_at TEXT NOT NULL,
            source      TEXT NOT NULL,   -- mqtt / import / manual
            flags       TEXT NOT NULL DEFAULT '',
            manual_by   TEXT,
            manual_reason TEXT,
            void_at     TEXT,
            void_by     TEXT,
            void_reason TEXT
        )
    """)
    db.execute("CREATE UNIQUE INDEX punches_gate_seq ON punches (site, gate, seq)")
    db.execute("CREATE INDEX punches_site_time ON punches (site, time)")
    db.execute("CREATE INDEX punches_card_time ON punches (card, time)")
    db.execute("CREATE INDEX punches_worker_time ON punches (worker, time)")
    db["conflicts"].create({
        "id": int, "site": str, "gate": str, "seq": int, "kind": str, "stored_digest": str,
        "other_digest": str, "other_body": bytes, "detail": str, "detected_at": str,
    }, pk="id")
    db.execute("CREATE UNIQUE INDEX conflicts_unique ON conflicts (site, gate, seq, kind, other_digest)")
    db["gaps"].create({
        "id": int, "site": str, "gate": str, "first": int, "last": int, "detected_at": str,
        "requested_at": str, "requests": int, "filled_at": str,
    }, pk="id", defaults={"requests": 0})
    db["quarantine"].create({
        "id": int, "received_at": str, "topic": str, "reason": str, "detail": str, "size": int, "raw": bytes,
    }, pk="id")
    db.execute("CREATE INDEX quarantine_reason ON quarantine (reason)")
    db["counters"].create({"name": str, "value": int}, pk="name")
    db["workers"].create({
        "worker": str, "name": str, "employer": str, "created_at": str,
    }, pk="worker", not_null={"name", "created_at"})
    db["cards"].create({
        "id": int, "uid": str, "worker": str, "valid_from": str, "valid_to": str, "added_at": str,
    }, pk="id", not_null={"uid", "worker", "added_at"}, foreign_keys=[("worker", "workers", "worker")])
    db.execute("CREATE INDEX cards_uid ON cards (uid)")


@migrations()
def m002_gauges(db: Database) -> None:
    # Last values the daemon measured (ingest lag...), for the separate read-only `collector serve`.
    db["gauges"].create({"name": str, "value": float, "updated_at": str}, pk="name",
                        not_null={"value", "updated_at"})


@migrations()
def m003_bank_keys(db: Database) -> None:
    # Public halves of every key the bank has signed with (acks, rosters, evidence): a verifier with the
    # registry accepts evidence signed before a rotation.
    db["bank_keys"].create({"key_id": str, "public_key": str, "added_at": str}, pk="key_id",
                           not_null={"public_key", "added_at"})


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


@migrations()
def m004_quarantine_limits(db: Database) -> None:
    # The SHA-256 of each refused message (whole, not only the bytes kept), a tally of every refusal per
    # hour, topic and reason (rows are kept only up to a limit), and an index to find rows holding bytes.
    db.execute("ALTER TABLE quarantine ADD COLUMN sha256 TEXT")
    db.execute("""
        CREATE TABLE quarantine_tally (
            hour     TEXT NOT NULL,     -- UTC, YYYY-MM-DDTHH
            topic    TEXT NOT NULL,     -- a registered gate's topic, or OTHER_TOPICS
            reason   TEXT NOT NULL,
            count    INTEGER NOT NULL,  -- refused
            kept     INTEGER NOT NULL,  -- of those, written as rows
            first_at TEXT NOT NULL,
            last_at  TEXT NOT NULL,
            PRIMARY KEY (hour, topic, reason)
        )""")
    db.execute("CREATE INDEX quarantine_with_raw ON quarantine (id) WHERE raw IS NOT NULL")
    gates = {(row[0], row[1]) for row in db.execute("SELECT site, gate FROM gates").fetchall()}
    db.execute("CREATE TEMP TABLE gate_topics (topic TEXT PRIMARY KEY)")
    db.conn.executemany("INSERT INTO gate_topics VALUES (?)", [(f"{TOPIC_ROOT}/{site}/{gate}/{kind}",)
                                                               for site, gate in gates for kind in ("punch", "status")])
    db.execute("""
        INSERT INTO quarantine_tally (hour, topic, reason, count, kept, first_at, last_at)
        SELECT substr(received_at, 1, 13), CASE WHEN topic IN (SELECT topic FROM gate_topics) THEN topic ELSE ? END,
               reason, COUNT(*), COUNT(*), MIN(received_at), MAX(received_at)
        FROM quarantine GROUP BY 1, 2, 3""", (OTHER_TOPICS,))
    db.execute("DROP TABLE temp.gate_topics")


@migrations()
def m005_statuses_checked(db: Database) -> None:
    # Statuses were once stored without validation: one that would be refused now leaves the gate's state
    # for the quarantine (the status read paths trust what is stored).
    rows = db.execute("SELECT site, gate, status, status_at FROM gate_state WHERE status IS NOT NULL").fetchall()
    for site, gate, text, status_at in rows:
        payload = text.encode("utf-8")
        try:
            decode_status(payload)
        except ProtocolError as error:
            received_at = status_at or utc_now_text()
            topic = f"{TOPIC_ROOT}/{site}/{gate}/status"
            _quarantine_row(db.conn, topic=topic, reason=error.reason, raw=payload, received_at=received_at,
                            detail=f"stored status, refused on upgrade: {error.detail}", allowance=topic)
            db.conn.executemany(
                "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
                [("quarantined",), (f"quarantined_{error.reason}",)])
            db.execute("UPDATE gate_state SET status = NULL, status_state = NULL, status_at = NULL "
                       "WHERE site = ? AND gate = ?", (site, gate))


@migrations()
def m006_heartbeats(db: Database) -> None:
    # Finality rests on the last online heartbeat: a last will or a clean stop ("offline", no facts) is the
    # gate's latest status but must not replace what the gate last said it holds. Kept apart, with the
    # time the bank received it.
    db.execute("ALTER TABLE gate_state ADD COLUMN heartbeat TEXT")
    db.execute("ALTER TABLE gate_state ADD COLUMN heartbeat_at TEXT")
    db.execute("UPDATE gate_state SET heartbeat = status, heartbeat_at = status_at WHERE status_state = 'online'")


#: The tally's topic for messages on topics of no registered gate: those are unbounded in number, so
#: they share one allowance of rows.
OTHER_TOPICS = "(other topics)"


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """How much of what is refused the quarantine keeps; every refusal is counted whatever is kept.

    Per topic, reason and hour the first ``rows_per_hour`` are kept as rows with their first 4 KiB;
    later ones are counted (counters and tally) only. Past ``raw_rows`` rows holding bytes, the oldest
    rows lose their bytes (their SHA-256, size and detail stay); past ``rows`` rows, the oldest rows go.
    """

    rows_per_hour: int = 20
    raw_rows: int = 8192  # at most 4 KiB each: 32 MiB
    rows: int = 100_000


def _quarantine_row(conn: sqlite3.Connection, *, topic: str, reason: str, detail: str, raw: bytes,
                    received_at: str, allowance: str, rows_per_hour: int | None = None) -> bool:
    """Tally a refused message against ``allowance`` and write its row unless that allowance already
    kept ``rows_per_hour`` rows for this reason and hour (None: always). True if the row was written."""
    allowance, hour = allowance[:512], received_at[:13]
    row = conn.execute("SELECT kept FROM quarantine_tally WHERE hour = ? AND topic = ? AND reason = ?",
                       (hour, allowance, reason)).fetchone()
    keep = rows_per_hour is None or (row[0] if row else 0) < rows_per_hour
    conn.execute(
        """INSERT INTO quarantine_tally (hour, topic, reason, count, kept, first_at, last_at)
           VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO UPDATE SET count = count + 1,
           kept = kept + excluded.kept, last_at = max(last_at, excluded.last_at)""",
        (hour, allowance, reason, int(keep), received_at, received_at))
    if keep:
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, reason, detail, size, raw, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (received_at, topic[:512], reason, detail[:1000], len(raw), raw[:QUARANTINE_RAW_BYTES],
             hashlib.sha256(raw).hexdigest()))
    return keep


class StoreError(Exception):
    """A registry operation that cannot be done; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class GateKeys:
    site: str
    gate: str
    active: bool
    keys: dict  # key_id -> Ed25519PublicKey
    revoked: frozenset[str]


def open_database(path: str | Path, *, readonly: bool = False) -> Database:
    """WAL and synchronous=FULL: an acknowledged punch is on disk; readers never block ingest.

    A new database is created 0600 whatever the umask (it holds names, cards and times), and SQLite
    gives the -wal and -shm files it makes beside it the same mode. `collector serve` reads it as the
    daemon's user (the unit files say so)."""
    if readonly:
        conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            created = create_private(path, DATABASE_MODE)
        except OSError as error:
            raise StoreError(f"cannot create {path}: {error.strerror}") from None
        if not created:
            warn_if_public(path)
        conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    return Database(conn)


class Store:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise StoreError(f"{self.path} does not exist (run the collector or an admin command first)")
        self.db = open_database(path, readonly=readonly)
        if not readonly:
            migrations.apply(self.db)
        self._conn = self.db.conn
        self._depth = 0  # nesting of savepoints inside transaction()
        #: Bumped by this connection's registry changes (other connections show in PRAGMA data_version).
        self.registry_changes = 0

    def registry_version(self) -> tuple[int, int]:
        """Changes when the registry may have changed, by this connection or any other."""
        return self.registry_changes, self._one("PRAGMA data_version")[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One transaction; nested ones are savepoints. The outermost takes the write lock at once
        (BEGIN IMMEDIATE): a deferred one that has read cannot upgrade to a write after another
        connection (the daemon, an admin command) committed, and SQLite then fails it at once,
        "database is locked", instead of waiting its turn."""
        if self._conn.in_transaction:
            # A savepoint named by its depth: sqlite-utils' atomic() draws a random name from the OS each
            # time, a measurable cost at one savepoint per ingested message.
            name = f"nested_{self._depth}"
            self._depth += 1
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self._conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                self._conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _one(self, sql: str, params: Iterable = ()) -> tuple | None:
        return self._conn.execute(sql, tuple(params)).fetchone()

    def _rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        cursor = self._conn.execute(sql, tuple(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # ================================================================== registry: sites and gates

    def add_site(self, site: str, *, timezone: str, name: str | None = None, max_shift_hours: float = 16.0) -> None:
        # nan is stored as NULL and inf breaks every day's computation; a week bounds any real shift.
        if not (isinstance(max_shift_hours, int | float) and 0 < max_shift_hours <= MAX_SHIFT_HOURS):
            raise StoreError(f"max_shift_hours must be a number of hours above 0 and at most {MAX_SHIFT_HOURS}, "
                             f"not {max_shift_hours!r}")
        with self.transaction():
            if self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} already exists")
            self.db["sites"].insert({"site": site, "name": name or site, "timezone": timezone,
                                     "max_shift_hours": max_shift_hours, "created_at": utc_now_text()})

    def site(self, site: str) -> dict | None:
        rows = self._rows("SELECT * FROM sites WHERE site = ?", (site,))
        return rows[0] if rows else None

    def sites(self) -> list[dict]:
        return self._rows("SELECT * FROM sites ORDER BY site")

    def add_gate(self, site: str, gate: str, public_key: str, *, reserved: Iterable[str] = ()) -> str:
        """Register a gate, or add a key to one (rotation: earlier keys stay valid for earlier punches).
        Returns 'added', 'rotated' or 'unchanged'.

        The broker knows a gate by its certificate, which is named after the gate id alone, so an id is
        unique across sites and never the name of another certificate of the bank's PKI (RESERVED_NAMES
        and ``reserved``, e.g. the broker server's name)."""
        if not valid_id(site) or not valid_id(gate):
            raise StoreError(f"{site!r}/{gate!r} is not a site/gate id (letters, digits, '_', '.', '-'; 1-64)")
        if gate in RESERVED_NAMES or gate in set(reserved):
            raise StoreError(f"gate id {gate!r} is reserved: a certificate of the bank's PKI has that name, and "
                             "the broker knows clients by certificate name")
        key = parse_public_key(public_key)
        kid = key_id(key)
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist (collector site add {site} --timezone ...)")
            elsewhere = [row[0] for row in self._conn.execute(
                "SELECT site FROM gates WHERE gate = ? AND site != ? ORDER BY site", (gate, site))]
            if elsewhere:
                raise StoreError(f"gate id {gate} is already used at site {', '.join(elsewhere)}; a gate's "
                                 "certificate is named after its id, so ids must be unique across sites")
            other = self._one("SELECT site, gate FROM gate_keys WHERE key_id = ? AND NOT (site = ? AND gate = ?)",
                              (kid, site, gate))
            if other:
                raise StoreError(f"that public key already belongs to gate {other[0]}/{other[1]}")
            exists = self._one("SELECT 1 FROM gates WHERE site = ? AND gate = ?", (site, gate))
            if self._one("SELECT 1 FROM gate_keys WHERE site = ? AND gate = ? AND key_id = ?", (site, gate, kid)):
                return "unchanged"
            now = utc_now_text()
            if not exists:
                self.db["gates"].insert({"site": site, "gate": gate, "active": 1, "added_at": now})
                self.db["gate_state"].insert({"site": site, "gate": gate}, pk=("site", "gate"))
            self.db["gate_keys"].insert({"site": site, "gate": gate, "key_id": kid,
                                         "public_key": public_key.strip(), "added_at": now})
            self.registry_changes += 1
            return "rotated" if exists else "added"

    def set_gate_active(self, site: str, gate: str, active: bool) -> None:
        with self.transaction():
            cursor = self._conn.execute("UPDATE gates SET active = ? WHERE site = ? AND gate = ?",
                                        (int(active), site, gate))
            if cursor.rowcount == 0:
                raise StoreError(f"gate {site}/{gate} is not registered")
            self.registry_changes += 1

    def revoke_key(self, site: str, gate: str, kid: str) -> None:
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE gate_keys SET revoked_at = ? WHERE site = ? AND gate = ? AND key_id = ? AND revoked_at IS NULL",
                (utc_now_text(), site, gate, kid))
            if cursor.rowcount == 0:
                raise StoreError(f"gate {site}/{gate} has no unrevoked key {kid}")
            self.registry_changes += 1

    def gate_keys(self) -> dict[tuple[str, str], GateKeys]:
        gates = {(r["site"], r["gate"]): r for r in self._rows("SELECT site, gate, active FROM gates")}
        keys: dict[tuple[str, str], dict] = {k: {} for k in gates}
        revoked: dict[tuple[str, str], set] = {k: set() for k in gates}
        for row in self._rows("SELECT * FROM gate_keys"):
            ident = (row["site"], row["gate"])
            keys.setdefault(ident, {})[row["key_id"]] = parse_public_key(row["public_key"])
            if row["revoked_at"]:
                revoked.setdefault(ident, set()).add(row["key_id"])
        return {ident: GateKeys(ident[0], ident[1], bool(g["active"]), keys[ident], frozenset(revoked[ident]))
                for ident, g in gates.items()}

    def record_bank_key(self, public_key: str) -> None:
        """Remember a public key the bank signs with (once; the first use is its date)."""
        kid = key_id(public_key)
        with self.transaction():
            self._conn.execute("INSERT INTO bank_keys (key_id, public_key, added_at) VALUES (?, ?, ?) "
                               "ON CONFLICT (key_id) DO NOTHING", (kid, public_key.strip(), utc_now_text()))

    def bank_keys(self) -> list[dict]:
        """Every bank public key on record, oldest first; empty before the daemon first ran."""
        try:
            return self._rows("SELECT key_id, public_key, added_at FROM bank_keys ORDER BY added_at")
        except sqlite3.OperationalError:  # a read-only view of a database not yet migrated
            return []

    def public_keys(self, site: str, gate: str) -> list[dict]:
        return self._rows("SELECT key_id, public_key, added_at, revoked_at FROM gate_keys "
                          "WHERE site = ? AND gate = ? ORDER BY added_at", (site, gate))

    def gates(self, site: str | None = None, *, with_gaps: bool = True) -> list[dict]:
        """Each gate with its ingest state, last status and last online heartbeat (with the times the bank
        received them), for `collector gates`, the dashboard and finality."""
        sql = """SELECT g.site, g.gate, g.active, g.added_at, s.contiguous_seq, s.max_seq, s.last_punch_at,
                        s.status, s.status_state, s.status_at, s.heartbeat, s.heartbeat_at
                 FROM gates g LEFT JOIN gate_state s USING (site, gate)"""
        params: tuple = ()
        if site is not None:
            sql += " WHERE g.site = ?"
            params = (site,)
        try:
            rows = self._rows(sql + " ORDER BY g.site, g.gate", params)
        except sqlite3.OperationalError:  # a read-only view of a database not yet migrated: no heartbeat known
            sql = sql.replace("s.heartbeat, s.heartbeat_at", "NULL AS heartbeat, NULL AS heartbeat_at")
            rows = self._rows(sql + " ORDER BY g.site, g.gate", params)
        for row in rows:
            row["status"] = json.loads(row["status"]) if row["status"] else None
            row["heartbeat"] = json.loads(row["heartbeat"]) if row["heartbeat"] else None
            row["open_gaps"] = self.open_gaps(row["site"], row["gate"]) if with_gaps else None
        return rows

    # ================================================================== registry: workers and cards

    def add_worker(self, worker: str, *, name: str, employer: str | None = None, cards: Iterable[str] = (),
                   valid_from: str | None = None) -> None:
        with self.transaction():
            if self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} already exists")
            self.db["workers"].insert({"worker": worker, "name": name, "employer": employer,
                                       "created_at": utc_now_text()})
            for uid in cards:
                self._assign_card(uid, worker, valid_from)

    def assign_card(self, uid: str, worker: str, *, valid_from: str | None = None) -> None:
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            self._assign_card(uid, worker, valid_from)

    def _assign_card(self, uid: str, worker: str, valid_from: str | None) -> None:
        """A card belongs to one worker at a time. With no ``valid_from``, a card never held before is
        valid from the beginning (its earlier unattributed punches become the worker's); a card
        held before starts now."""
        holder = self._one("SELECT worker FROM cards WHERE uid = ? AND valid_to IS NULL", (uid,))
        if holder:
            raise StoreError(f"card {uid} is held by worker {holder[0]}; revoke it first")
        last_end = self._one("SELECT MAX(valid_to) FROM cards WHERE uid = ?", (uid,))[0]
        if valid_from is None:
            valid_from = utc_now_text() if last_end else None
        elif last_end and valid_from < last_end:
            raise StoreError(f"card {uid} was held by someone else until {last_end}")
        self.db["cards"].insert({"uid": uid, "worker": worker, "valid_from": valid_from, "valid_to": None,
                                 "added_at": utc_now_text()})

    def revoke_card(self, uid: str, *, at: str | None = None) -> str:
        """End the current holder's window (a lost or returned card). Returns the former holder."""
        with self.transaction():
            row = self._one("SELECT id, worker, valid_from FROM cards WHERE uid = ? AND valid_to IS NULL", (uid,))
            if row is None:
                raise StoreError(f"card {uid} is not held by anyone")
            at = at or utc_now_text()
            if row[2] and at < row[2]:
                raise StoreError(f"card {uid} was assigned at {row[2]}, after {at}")
            self._conn.execute("UPDATE cards SET valid_to = ? WHERE id = ?", (at, row[0]))
            return row[1]

    def worker(self, worker: str) -> dict | None:
        rows = [w for w in self.workers() if w["worker"] == worker]
        return rows[0] if rows else None

    def workers(self) -> list[dict]:
        workers = self._rows("SELECT worker, name, employer FROM workers ORDER BY worker")
        cards: dict[str, list] = {}
        for row in self._rows("SELECT uid, worker, valid_from, valid_to FROM cards ORDER BY id"):
            cards.setdefault(row["worker"], []).append(
                {"uid": row["uid"], "valid_from": row["valid_from"], "valid_to": row["valid_to"]})
        for worker in workers:
            worker["cards"] = cards.get(worker["worker"], [])
        return workers

    def card_windows(self) -> list[dict]:
        return self._rows("SELECT c.uid, c.worker, c.valid_from, c.valid_to, w.name, w.employer "
                          "FROM cards c JOIN workers w USING (worker) ORDER BY c.uid, c.valid_from")

    def cards_valid_at(self, moment: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT uid FROM cards WHERE (valid_from IS NULL OR valid_from <= ?) "
            "AND (valid_to IS NULL OR valid_to > ?)", (moment, moment))
        return {r[0] for r in rows}

    def import_workers(self, rows: list[dict], *, progress=None) -> int:
        """All rows or none (the caller has validated them)."""
        with self.transaction():
            for row in rows:
                if not self._one("SELECT 1 FROM workers WHERE worker = ?", (row["worker"],)):
                    self.db["workers"].insert({"worker": row["worker"], "name": row["name"],
                                               "employer": row.get("employer"), "created_at": utc_now_text()})
                held = self._one("SELECT worker FROM cards WHERE uid = ? AND valid_to IS NULL", (row["card"],))
                if held is None:
                    self._assign_card(row["card"], row["worker"], None)
                elif held[0] != row["worker"]:
                    raise StoreError(f"card {row['card']} is held by worker {held[0]}")
                if progress is not None:
                    progress(1)
        return len(rows)

    # ================================================================== ingest (called inside one transaction)

    def insert_punch(self, punch: Punch, *, digest: str, body: bytes, received_at: str, source: str,
                     flags: str) -> bool:
        """Insert a gate punch; False if (site, gate, seq) is already held (the caller compares digests)."""
        cursor = self._conn.execute(
            """INSERT INTO punches (site, gate, seq, time, card, direction, tech, roster, synced, boot, mono_ms,
                   reader, prev, digest, key_id, body, received_at, source, flags)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (site, gate, seq) DO NOTHING""",
            (punch.site, punch.gate, punch.seq, punch.time, punch.card, punch.dir, punch.tech, punch.roster,
             int(punch.synced), punch.boot, punch.mono_ms, punch.reader, punch.prev, digest, punch.key, body,
             received_at, source, flags),
        )
        return cursor.rowcount == 1

    def highest_punch(self, site: str, gate: str) -> tuple[int, str, str] | None:
        """(seq, digest, time) of the gate's punch with the highest seq held."""
        return self._one("SELECT seq, digest, time FROM punches WHERE site = ? AND gate = ? AND seq IS NOT NULL "
                         "ORDER BY seq DESC LIMIT 1", (site, gate))

    def stored_link(self, site: str, gate: str, seq: int) -> tuple[str, str, str, str, str] | None:
        """(digest, prev, time, boot, flags) of a stored gate punch."""
        return self._one("SELECT digest, prev, time, boot, flags FROM punches WHERE site = ? AND gate = ? AND seq = ?",
                         (site, gate, seq))

    def add_flag(self, site: str, gate: str, seq: int, flag: str) -> None:
        row = self._one("SELECT flags FROM punches WHERE site = ? AND gate = ? AND seq = ?", (site, gate, seq))
        if row is None:
            return
        flags = set(filter(None, row[0].split(",")))
        if flag not in flags:
            flags.add(flag)
            self._conn.execute("UPDATE punches SET flags = ? WHERE site = ? AND gate = ? AND seq = ?",
                               (",".join(sorted(flags)), site, gate, seq))

    def add_conflict(self, site: str, gate: str, seq: int, *, kind: str, stored_digest: str, other_digest: str,
                     other_body: bytes | None, detail: str) -> bool:
        cursor = self._conn.execute(
            """INSERT INTO conflicts (site, gate, seq, kind, stored_digest, other_digest, other_body, detail,
                   detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (site, gate, seq, kind, stored_digest, other_digest, other_body, detail, utc_now_text()))
        return cursor.rowcount == 1

    def conflicts(self) -> list[dict]:
        rows = self._rows("SELECT id, site, gate, seq, kind, stored_digest, other_digest, detail, detected_at "
                          "FROM conflicts ORDER BY id")
        return rows

    def gate_progress(self, site: str, gate: str) -> tuple[int, str | None, int]:
        row = self._one("SELECT contiguous_seq, contiguous_digest, max_seq FROM gate_state WHERE site = ? AND gate = ?",
                        (site, gate))
        return (row[0] or 0, row[1], row[2] or 0) if row else (0, None, 0)

    def advance_contiguous(self, site: str, gate: str, received_at: str) -> tuple[int, str | None]:
        """Move the gate's contiguous prefix over every seq now held; returns (seq, digest) to ack."""
        seq, digest, _ = self.gate_progress(site, gate)
        while True:
            rows = self._conn.execute(
                "SELECT seq, digest FROM punches WHERE site = ? AND gate = ? AND seq > ? ORDER BY seq LIMIT 1000",
                (site, gate, seq)).fetchall()
            advanced = False
            for next_seq, next_digest in rows:
                if next_seq != seq + 1:
                    break
                seq, digest, advanced = next_seq, next_digest, True
            if not advanced or len(rows) < 1000:
                break
        max_seq = self._one("SELECT MAX(seq) FROM punches WHERE site = ? AND gate = ?", (site, gate))[0] or 0
        self._conn.execute(
            """INSERT INTO gate_state (site, gate, contiguous_seq, contiguous_digest, max_seq, last_punch_at)
               VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,
               contiguous_digest = excluded.contiguous_digest, max_seq = excluded.max_seq,
               last_punch_at = excluded.last_punch_at""",
            (site, gate, seq, digest, max_seq, received_at))
        return seq, digest

    def gate_status(self, site: str, gate: str) -> dict | None:
        row = self._one("SELECT status FROM gate_state WHERE site = ? AND gate = ?", (site, gate))
        return json.loads(row[0]) if row and row[0] else None

    def save_status(self, site: str, gate: str, status: dict, received_at: str) -> None:
        """The gate's latest status; an online one is also its latest heartbeat, which an offline one
        leaves in place."""
        text = json.dumps(status, sort_keys=True)
        heartbeat = (text, received_at) if status["state"] == "online" else (None, None)
        self._conn.execute(
            """INSERT INTO gate_state (site, gate, status, status_state, status_at, heartbeat, heartbeat_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (site, gate) DO UPDATE SET status = excluded.status,
               status_state = excluded.status_state, status_at = excluded.status_at,
               heartbeat = coalesce(excluded.heartbeat, heartbeat),
               heartbeat_at = coalesce(excluded.heartbeat_at, heartbeat_at)""",
            (site, gate, text, status["state"], received_at, *heartbeat))

    def quarantine(self, *, topic: str, reason: str, detail: str, raw: bytes, received_at: str,
                   allowance: str | None = None, limits: QuarantineLimits | None = None) -> bool:
        """Tally a refused message and keep it as a row unless ``allowance`` (the topic it counts against,
        default ``topic``) has had its rows for this reason and hour. True if the row was kept."""
        limits = limits or QuarantineLimits()
        return _quarantine_row(self._conn, topic=topic, reason=reason, detail=detail, raw=raw,
                               received_at=received_at, allowance=topic if allowance is None else allowance,
                               rows_per_hour=limits.rows_per_hour)

    def trim_quarantine(self, limits: QuarantineLimits | None = None) -> None:
        """Oldest first: past ``limits.rows`` rows the oldest rows go, past ``limits.raw_rows`` rows with
        bytes the oldest lose their bytes. The tally and the counters keep every count."""
        limits = limits or QuarantineLimits()
        rows = self._one("SELECT COUNT(*) FROM quarantine")[0]
        if rows > limits.rows:
            self._conn.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)",
                               (rows - limits.rows,))
        with_raw = self._one("SELECT COUNT(*) FROM quarantine WHERE raw IS NOT NULL")[0]
        if with_raw > limits.raw_rows:
            self._conn.execute("UPDATE quarantine SET raw = NULL WHERE id IN (SELECT id FROM quarantine "
                               "WHERE raw IS NOT NULL ORDER BY id LIMIT ?)", (with_raw - limits.raw_rows,))

    def add_counters(self, counts: dict[str, int]) -> None:
        self._conn.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            list(counts.items()))

    def set_gauges(self, values: dict[str, float], updated_at: str) -> None:
        self._conn.executemany(
            "INSERT INTO gauges (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at",
            [(name, value, updated_at) for name, value in values.items()])

    # ================================================================== manual corrections

    def add_manual_punch(self, *, site: str, worker: str, time: str, direction: str, reason: str, by: str) -> int:
        """A punch entered by a person, never a change to a gate's punch; who, why and when are kept."""
        if direction not in ("in", "out"):
            raise StoreError(f"direction must be in or out, not {direction!r}")
        if not reason.strip() or not by.strip():
            raise StoreError("a manual punch needs a reason and the user who adds it")
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            cursor = self._conn.execute(
                """INSERT INTO punches (site, time, worker, direction, received_at, source, manual_by, manual_reason)
                   VALUES (?, ?, ?, ?, ?, 'manual', ?, ?)""",
                (site, time, worker, direction, utc_now_text(), by.strip(), reason.strip()))
            return cursor.lastrowid

    def void_punch(self, punch_id: int, *, reason: str, by: str) -> dict:
        """Mark a punch void (kept and shown, no longer counted)."""
        if not reason.strip() or not by.strip():
            raise StoreError("voiding a punch needs a reason and the user who does it")
        with self.transaction():
            rows = self._rows("SELECT id, site, gate, seq, void_at FROM punches WHERE id = ?", (punch_id,))
            if not rows:
                raise StoreError(f"there is no punch {punch_id}")
            if rows[0]["void_at"]:
                raise StoreError(f"punch {punch_id} is already void (since {rows[0]['void_at']})")
            self._conn.execute("UPDATE punches SET void_at = ?, void_by = ?, void_reason = ? WHERE id = ?",
                               (utc_now_text(), by.strip(), reason.strip(), punch_id))
            return rows[0]

    def punch(self, punch_id: int) -> dict | None:
        rows = self._rows("SELECT * FROM punches WHERE id = ?", (punch_id,))
        return rows[0] if rows else None

    # ================================================================== gaps

    def open_gaps(self, site: str, gate: str) -> list[tuple[int, int]]:
        """Missing seq ranges below the highest seq held."""
        contiguous, _, max_seq = self.gate_progress(site, gate)
        if max_seq <= contiguous:
            return []
        rows = self._conn.execute(
            """SELECT seq, next_seq FROM (
                   SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS next_seq FROM punches
                   WHERE site = ? AND gate = ? AND seq >= ?)
               WHERE next_seq > seq + 1""", (site, gate, contiguous)).fetchall()
        gaps = [(seq + 1, next_seq - 1) for seq, next_seq in rows]
        if contiguous == 0:
            first = self._one("SELECT MIN(seq) FROM punches WHERE site = ? AND gate = ?", (site, gate))[0]
            if first and first > 1:
                gaps.insert(0, (1, first - 1))
        return gaps

    def record_gaps(self, site: str, gate: str, current: list[tuple[int, int]], now: str) -> list[dict]:
        """Reconcile the gaps table with the gaps open now; returns the open rows."""
        open_rows = self._rows("SELECT * FROM gaps WHERE site = ? AND gate = ? AND filled_at IS NULL ORDER BY first",
                               (site, gate))
        if sorted((r["first"], r["last"]) for r in open_rows) == sorted(current):
            return open_rows  # nothing changed: no write
        with self.transaction():
            covered = set()
            for row in open_rows:
                if not any(first <= row["first"] and row["last"] <= last for first, last in current):
                    self._conn.execute("UPDATE gaps SET filled_at = ? WHERE id = ?", (now, row["id"]))
                else:
                    covered.add((row["first"], row["last"]))
            for first, last in current:
                if (first, last) not in covered:
                    self.db["gaps"].insert({"site": site, "gate": gate, "first": first, "last": last,
                                            "detected_at": now})
            return self._rows("SELECT * FROM gaps WHERE site = ? AND gate = ? AND filled_at IS NULL ORDER BY first",
                              (site, gate))

    def note_resend(self, gap_id: int, now: str) -> None:
        with self.transaction():
            self._conn.execute("UPDATE gaps SET requested_at = ?, requests = requests + 1 WHERE id = ?", (now, gap_id))

    def gaps(self) -> list[dict]:
        return self._rows("SELECT * FROM gaps ORDER BY id")

    # ================================================================== reading

    def counters(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall())

    def gauges(self) -> dict[str, tuple[float, str]]:
        """name -> (value, updated_at); empty on a database the daemon has not migrated yet."""
        try:
            rows = self._conn.execute("SELECT name, value, updated_at FROM gauges ORDER BY name").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {name: (value, updated_at) for name, value, updated_at in rows}

    def quarantined(self, limit: int | None = None) -> list[dict]:
        # SELECT *: `collector serve` may read a database the daemon has not migrated yet (no sha256).
        sql = "SELECT * FROM quarantine ORDER BY id"
        if limit is not None:
            sql += f" DESC LIMIT {int(limit)}"
        rows = self._rows(sql)
        return sorted(rows, key=lambda r: r["id"])

    def quarantine_tally(self) -> list[dict]:
        """Every refusal counted per hour, topic (or OTHER_TOPICS) and reason, with how many were kept."""
        try:
            return self._rows("SELECT * FROM quarantine_tally ORDER BY hour, topic, reason")
        except sqlite3.OperationalError:  # not migrated yet (a read-only reader of an older database)
            return []

    def punch_count(self) -> int:
        return self._one("SELECT COUNT(*) FROM punches")[0]

    def punches(self, *, site: str | None = None, start: str | None = None, end: str | None = None,
                gate: str | None = None) -> list[dict]:
        """Gate and manual punches (void ones included, marked) in [start, end), oldest first."""
        clauses, params = [], []
        for column, op, value in (("site", "=", site), ("gate", "=", gate), ("time", ">=", start),
                                  ("time", "<", end)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._rows(f"SELECT * FROM punches{where} ORDER BY time, site, gate, seq", params)

    def gate_punch_rows(self, site: str, gate: str, first: int, last: int) -> list[dict]:
        return self._rows("SELECT * FROM punches WHERE site = ? AND gate = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                          (site, gate, first, last))

    def gate_punch_bodies(self, site: str, gate: str, first: int = 1, last: int | None = None) -> list[bytes]:
        rows = self._conn.execute(
            "SELECT body FROM punches WHERE site = ? AND gate = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (site, gate, first, last if last is not None else 2**62)).fetchall()
        return [r[0] for r in rows]
