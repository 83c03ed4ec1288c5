"""The collector's schema: versioned steps, written once for both engines, applied in order.

A step is SQL (``{id}``, ``{serial}`` and ``{blob}`` stand for the engine's auto-numbered key, one never given
twice, and byte-string types;
TEXT, BIGINT and DOUBLE PRECISION read the same in both) or a function of the connection and the time
of the upgrade (UTC text) for data that must be rewritten. Each step and its record in ``schema_migrations`` commit together; the daemon
applies what is pending at start, and so does ``collector db upgrade``. Concurrent starts (several
collectors) serialise: SQLite has one writer, PostgreSQL takes an advisory lock.

Times are UTC text with milliseconds (``2026-11-28T06:12:02.123Z``), which sorts as it reads; flags and
booleans are plain integers and text, so every statement means the same on both engines.
"""

from __future__ import annotations

import calendar
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gate_agent.protocol import TOPIC_ROOT, ProtocolError, Punch, decode_status, format_time, parse_time

from .clock import Clock, system_clock
from .connection import Connection
from .packed import pack, unpack

log = logging.getLogger(__name__)

#: An arbitrary advisory-lock key for "the schema is being changed" (PostgreSQL).
_SCHEMA_LOCK = 4242_0001


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    name: str
    apply: str | Callable[[Connection, str], None]


def _quarantine_backfill(conn: Connection, now: str) -> None:
    """Tally the quarantine rows kept before refusals were counted per hour, topic and reason."""
    from .quarantine import OTHER_TOPICS

    gates = conn.rows("SELECT site, gate FROM gates")
    topics = {f"{TOPIC_ROOT}/{g['site']}/{g['gate']}/{kind}" for g in gates for kind in ("punch", "status")}
    tally: dict[tuple[str, str, str], dict] = {}
    for row in conn.rows("SELECT received_at, topic, reason FROM quarantine ORDER BY id"):
        key = (row["received_at"][:13], row["topic"] if row["topic"] in topics else OTHER_TOPICS, row["reason"])
        entry = tally.setdefault(key, {"count": 0, "first": row["received_at"]})
        entry["count"] += 1
        entry["last"] = row["received_at"]
    conn.executemany("INSERT INTO quarantine_tally (hour, topic, reason, count, kept, first_at, last_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(*key, entry["count"], entry["count"], entry["first"], entry["last"])
                      for key, entry in tally.items()])


def _assign_existing_workers(conn: Connection, now: str) -> None:
    """Workers registered before they belonged to sites were on every site's roster: they stay so (from
    the beginning, with no end) until an operator says otherwise; nothing changes at the upgrade."""
    conn.execute("INSERT INTO assignments (worker, site, valid_from, valid_to, added_at, added_by) "
                 "SELECT w.worker, s.site, NULL, NULL, ?, 'schema upgrade' FROM workers w CROSS JOIN sites s",
                 (now,))


def _statuses_checked(conn: Connection, now: str) -> None:
    """Statuses were once stored without validation: one that would be refused now leaves the gate's
    state for the quarantine (the status read paths trust what is stored)."""
    from .quarantine import quarantine_row

    rows = conn.rows("SELECT site, gate, status, status_at FROM gate_state WHERE status IS NOT NULL")
    for row in rows:
        payload = row["status"].encode("utf-8")
        try:
            decode_status(payload)
        except ProtocolError as error:
            topic = f"{TOPIC_ROOT}/{row['site']}/{row['gate']}/status"
            quarantine_row(conn, topic=topic, reason=error.reason, raw=payload,
                           received_at=row["status_at"] or now,
                           detail=f"stored status, refused on upgrade: {error.detail}", allowance=topic)
            conn.executemany("INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) "
                             "DO UPDATE SET value = counters.value + 1",
                             [("quarantined",), (f"quarantined_{error.reason}",)])
            conn.execute("UPDATE gate_state SET status = NULL, status_state = NULL, status_at = NULL "
                         "WHERE site = ? AND gate = ?", (row["site"], row["gate"]))


def _payer_history(conn: Connection, now: str) -> None:
    """The site's pay settings become a history (a change for the same date is a new row, the earlier one
    kept), and each approved version holds the payer it was approved with. A version approved before this
    step gets the payer its first batch debited, else the one in force on its period's last day now (the
    one its next batch would have debited)."""
    conn.script("""
        DROP INDEX site_pay_from;
        CREATE INDEX site_pay_history ON site_pay (site, employer, effective_from, id);
        ALTER TABLE wage_tables ADD COLUMN payer_account TEXT;
        ALTER TABLE wage_tables ADD COLUMN payer_name TEXT;
        ALTER TABLE wage_tables ADD COLUMN payer_bank TEXT;
    """)
    tables = conn.rows("SELECT id, site, period, version FROM wage_tables WHERE status IN ('approved', 'superseded')")
    for table in tables:
        payer = conn.record("SELECT payer_account, payer_name, payer_bank FROM wage_batches WHERE site = ? AND "
                            "period = ? AND table_version = ? ORDER BY seq LIMIT 1",
                            (table["site"], table["period"], table["version"]))
        if payer is None:
            year, month = (int(part) for part in table["period"].split("-"))
            last = f"{table['period']}-{calendar.monthrange(year, month)[1]:02d}"
            payer = conn.record("SELECT payer_account, payer_name, payer_bank FROM site_pay WHERE site = ? AND "
                                "employer = '' AND effective_from <= ? ORDER BY effective_from DESC, id DESC LIMIT 1",
                                (table["site"], last))
        if payer is not None:
            conn.execute("UPDATE wage_tables SET payer_account = ?, payer_name = ?, payer_bank = ? WHERE id = ?",
                         (payer["payer_account"], payer["payer_name"], payer["payer_bank"], table["id"]))
    if tables:
        log.info("payer frozen into %d wage table version(s) approved before the upgrade", len(tables))


#: The punches table with the gate's proof packed (collector.store.packed); columns that are fixed-width come
#: first (PostgreSQL pads each to its alignment).
_PUNCHES = """
    CREATE TABLE punches (
        id            {id},
        seq           BIGINT,          -- NULL for manual punches
        card_counter  BIGINT,          -- an NTAG 424 card's read counter
        site          TEXT NOT NULL,
        gate          TEXT,            -- NULL for manual punches
        time          TEXT {collate} NOT NULL,   -- the signed gate time (or the manual time), UTC
        card          TEXT,
        worker        TEXT,            -- manual punches name the worker; gate punches go by card
        direction     TEXT NOT NULL,
        received_at   TEXT NOT NULL,
        source        TEXT NOT NULL,   -- mqtt / import / manual
        flags         TEXT NOT NULL DEFAULT '',
        card_kind     TEXT,
        signed        {blob},          -- the rest of what the gate signed, packed; NULL for manual punches
        manual_by     TEXT,
        manual_reason TEXT,
        void_at       TEXT,
        void_by       TEXT,
        void_reason   TEXT,
        dispute       TEXT,
        body          {blob}           -- kept only for a punch its fields cannot rebuild byte for byte
    ){partitioned}
"""
_PUNCH_INDEXES = """
    CREATE INDEX punches_site_time ON punches (site, time);
    CREATE INDEX punches_worker_time ON punches (worker, time) WHERE worker IS NOT NULL;
    CREATE INDEX punches_card_counter ON punches (card, card_counter) WHERE card_counter IS NOT NULL;
"""
#: PostgreSQL: a month's partition already bounds the time, so a card's punches need the card only (a
#: sixth of the index: PostgreSQL keeps a repeated key once per page). Ids keep a B-tree: a block-range
#: index would save 24 bytes a punch, but a look-up in rows not summarised yet (a transaction's own, a
#: month's last pages) reads them all, and the headcount looks manual punches up by id.
_PARTITIONED_INDEXES = """
    CREATE INDEX punches_card ON punches (card);
    CREATE INDEX punches_id ON punches (id);
"""
_SQLITE_INDEXES = """
    CREATE UNIQUE INDEX punches_gate_seq ON punches (site, gate, seq);
    CREATE INDEX punches_card_time ON punches (card, time);
"""
_REPACK_ROWS = 5000


def _packed_punches(conn: Connection, now: str) -> None:
    """Punches keep the gate's proof packed (about 150 bytes) instead of the signed JSON, its digest and the
    proof's fields in columns (about 600 more), and on PostgreSQL the table is partitioned by month. Every
    row is rebuilt from its new form and compared with the body it had, byte for byte; a row whose fields
    cannot rebuild its body (none that this collector stored) keeps the body."""
    from . import partitions  # it imports the store, which imports this module

    postgres = conn.dialect == "postgresql"
    for index in ("punches_gate_seq", "punches_site_time", "punches_card_time", "punches_worker_time",
                  "punches_card_counter"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute("ALTER TABLE punches RENAME TO punches_before")
    types = dict(conn.types)
    if postgres:
        types.update(id="BIGINT GENERATED BY DEFAULT AS IDENTITY", collate='COLLATE "C"',
                     partitioned=" PARTITION BY RANGE (time)")
    else:
        types.update(collate="", partitioned="")
    conn.execute(_PUNCHES.format(**types))
    if postgres:
        conn.script(_PARTITIONED_INDEXES)
        partitions.create_default(conn)
        moment = parse_time(now)
        partitions.ensure(conn, now=moment, wanted=partitions.held_months(conn, table="punches_before", now=moment))
    else:
        conn.script(_SQLITE_INDEXES)
    conn.script(_PUNCH_INDEXES)
    columns = ("id", "seq", "card_counter", "site", "gate", "time", "card", "worker", "direction", "received_at",
               "source", "flags", "card_kind", "manual_by", "manual_reason", "void_at", "void_by", "void_reason",
               "dispute")
    insert = (f"INSERT INTO punches ({', '.join(columns)}, signed, body) "
              f"VALUES ({', '.join('?' * (len(columns) + 2))})")
    last, kept, moved = 0, 0, 0
    while True:
        rows = conn.rows(f"SELECT * FROM punches_before WHERE id > ? ORDER BY id LIMIT {_REPACK_ROWS}", (last,))
        if not rows:
            break
        batch = []
        for row in rows:
            signed, body = None, row.get("body")
            body = bytes(body) if body is not None else None
            if row["gate"] is not None and body is not None:
                signed, body = _repacked(row, body)
                kept += body is not None
            batch.append((*(row.get(name) for name in columns), signed, body))
        conn.executemany(insert, batch)
        moved += len(rows)
        last = rows[-1]["id"]
    if postgres and moved:
        conn.execute("SELECT setval(pg_get_serial_sequence('punches', 'id'), (SELECT MAX(id) FROM punches))")
    conn.execute("DROP TABLE punches_before")
    if moved:
        log.info("punches repacked: %d row(s)%s", moved,
                 f", {kept} kept with their body (their fields do not rebuild it)" if kept else "")


def _repacked(row: dict, body: bytes) -> tuple[bytes | None, bytes | None]:
    """The packed proof of a stored gate punch and, if its columns and that proof do not give back its
    body byte for byte, the body too."""
    try:
        punch = Punch.from_dict(json.loads(body))
        signed = pack(punch)
        rebuilt = unpack(signed, site=row["site"], gate=row["gate"], seq=row["seq"], time=row["time"],
                         card=row["card"], direction=row["direction"])
    except (ValueError, TypeError):
        return None, body
    return signed, (None if rebuilt.to_json() == body else body)


_GATE_BOOTS = """
    CREATE TABLE gate_boots (
        id      {id},
        site    TEXT NOT NULL,
        gate    TEXT NOT NULL,
        boot    TEXT NOT NULL,
        reader  TEXT NOT NULL,
        key_id  TEXT NOT NULL
    );
    CREATE UNIQUE INDEX gate_boots_boot ON gate_boots (site, gate, boot, reader, key_id);
"""
#: PostgreSQL: a punch's id is looked up by an operator's void or a dispute's answer (a few a day) and the
#: headcount's manual punches, never read in ranges; ids grow with the rows, so a block-range index of 16
#: pages finds one by reading its range (about 450 rows) and the ranges not summarised yet: a month's last
#: one, and those filled since autovacuum last summarised (``autosummarize``). 22 bytes a punch for the
#: B-tree, next to nothing for this; manual punches, which the headcount looks up by id, keep a B-tree.
_PUNCH_IDS = """
    DROP INDEX punches_id;
    CREATE INDEX punches_id ON punches USING brin (id) WITH (pages_per_range = 16, autosummarize = on);
    CREATE INDEX punches_manual_id ON punches (id) WHERE source = 'manual';
"""


def _gate_boots(conn: Connection, now: str) -> None:
    """Gate boots held once (collector.store.gate_boots); punches stored before keep their format 1
    proof, which reads as before. On PostgreSQL the punches' ids get their block-range index."""
    conn.script(_GATE_BOOTS)
    if conn.dialect == "postgresql":
        conn.script(_PUNCH_IDS)


STEPS = [
    Step(1, "initial", """
        CREATE TABLE sites (
            site            TEXT PRIMARY KEY,
            name            TEXT,
            timezone        TEXT NOT NULL,
            max_shift_hours DOUBLE PRECISION NOT NULL,
            created_at      TEXT NOT NULL
        );
        CREATE TABLE gates (
            site     TEXT NOT NULL REFERENCES sites (site),
            gate     TEXT NOT NULL,
            active   BIGINT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (site, gate)
        );
        CREATE TABLE gate_keys (
            site       TEXT NOT NULL,
            gate       TEXT NOT NULL,
            key_id     TEXT NOT NULL,
            public_key TEXT NOT NULL,
            added_at   TEXT NOT NULL,
            revoked_at TEXT,
            PRIMARY KEY (site, gate, key_id)
        );
        -- What ingest knows per gate: the contiguous prefix it holds (what acks report), the last status.
        CREATE TABLE gate_state (
            site              TEXT NOT NULL,
            gate              TEXT NOT NULL,
            contiguous_seq    BIGINT DEFAULT 0,
            contiguous_digest TEXT,
            max_seq           BIGINT DEFAULT 0,
            last_punch_at     TEXT,
            status            TEXT,
            status_state      TEXT,
            status_at         TEXT,
            PRIMARY KEY (site, gate)
        );
        CREATE TABLE punches (
            id            {id},
            site          TEXT NOT NULL,
            gate          TEXT,            -- NULL for manual punches
            seq           BIGINT,          -- NULL for manual punches
            time          TEXT NOT NULL,   -- the signed gate time (or the manual time), UTC
            card          TEXT,
            worker        TEXT,            -- manual punches name the worker; gate punches go by card
            direction     TEXT NOT NULL,
            tech          TEXT,
            roster        TEXT,
            synced        BIGINT,
            boot          TEXT,
            mono_ms       BIGINT,
            reader        TEXT,
            prev          TEXT,
            digest        TEXT,
            key_id        TEXT,
            body          {blob},          -- the punch exactly as the gate signed it
            received_at   TEXT NOT NULL,
            source        TEXT NOT NULL,   -- mqtt / import / manual
            flags         TEXT NOT NULL DEFAULT '',
            manual_by     TEXT,
            manual_reason TEXT,
            void_at       TEXT,
            void_by       TEXT,
            void_reason   TEXT
        );
        CREATE UNIQUE INDEX punches_gate_seq ON punches (site, gate, seq);
        CREATE INDEX punches_site_time ON punches (site, time);
        CREATE INDEX punches_card_time ON punches (card, time);
        CREATE INDEX punches_worker_time ON punches (worker, time);
        CREATE TABLE conflicts (
            id            {id},
            site          TEXT,
            gate          TEXT,
            seq           BIGINT,
            kind          TEXT,
            stored_digest TEXT,
            other_digest  TEXT,
            other_body    {blob},
            detail        TEXT,
            detected_at   TEXT
        );
        CREATE UNIQUE INDEX conflicts_unique ON conflicts (site, gate, seq, kind, other_digest);
        CREATE TABLE gaps (
            id           {id},
            site         TEXT,
            gate         TEXT,
            first        BIGINT,
            last         BIGINT,
            detected_at  TEXT,
            requested_at TEXT,
            requests     BIGINT DEFAULT 0,
            filled_at    TEXT
        );
        CREATE TABLE quarantine (
            id          {id},
            received_at TEXT,
            topic       TEXT,
            reason      TEXT,
            detail      TEXT,
            size        BIGINT,
            raw         {blob}
        );
        CREATE INDEX quarantine_reason ON quarantine (reason);
        CREATE TABLE counters (
            name  TEXT PRIMARY KEY,
            value BIGINT
        );
        CREATE TABLE workers (
            worker     TEXT PRIMARY KEY,
            name       TEXT NOT NULL,
            employer   TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE cards (
            id         {id},
            uid        TEXT NOT NULL,
            worker     TEXT NOT NULL REFERENCES workers (worker),
            valid_from TEXT,
            valid_to   TEXT,
            added_at   TEXT NOT NULL
        );
        CREATE INDEX cards_uid ON cards (uid);
    """),
    # Last values the daemon measured (ingest lag...), for the separate read-only `collector serve`.
    Step(2, "gauges", """
        CREATE TABLE gauges (
            name       TEXT PRIMARY KEY,
            value      DOUBLE PRECISION NOT NULL,
            updated_at TEXT NOT NULL
        );
    """),
    # Public halves of every key the bank has signed with (acks, rosters, evidence): a verifier with the
    # registry accepts evidence signed before a rotation.
    Step(3, "bank_keys", """
        CREATE TABLE bank_keys (
            key_id     TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            added_at   TEXT NOT NULL
        );
    """),
    # The SHA-256 of each refused message (whole, not only the bytes kept), a tally of every refusal per
    # hour, topic and reason (rows are kept only up to a limit), and an index to find rows holding bytes.
    Step(4, "quarantine_limits", """
        ALTER TABLE quarantine ADD COLUMN sha256 TEXT;
        CREATE TABLE quarantine_tally (
            hour     TEXT NOT NULL,     -- UTC, YYYY-MM-DDTHH
            topic    TEXT NOT NULL,     -- a registered gate's topic, or OTHER_TOPICS
            reason   TEXT NOT NULL,
            count    BIGINT NOT NULL,   -- refused
            kept     BIGINT NOT NULL,   -- of those, written as rows
            first_at TEXT NOT NULL,
            last_at  TEXT NOT NULL,
            PRIMARY KEY (hour, topic, reason)
        );
        CREATE INDEX quarantine_with_raw ON quarantine (id) WHERE raw IS NOT NULL;
    """),
    Step(5, "quarantine_tally_backfill", _quarantine_backfill),
    Step(6, "statuses_checked", _statuses_checked),
    # Moves with every change of gates, keys and cards, so that every process caching them (ingest, the
    # roster publisher) sees another process's change; one row.
    Step(7, "registry_version", """
        CREATE TABLE registry_version (
            id      BIGINT PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL
        );
        INSERT INTO registry_version (id, version) VALUES (1, 0);
    """),
    # Several collector processes share the work: each partition of the sites (and so each MQTT session)
    # is leased to one process at a time; members say they are alive. Times are the database's clock
    # (seconds since 1970), so the hosts' clocks do not matter.
    Step(8, "leases", """
        CREATE TABLE leases (
            name       TEXT PRIMARY KEY,
            owner      TEXT,
            epoch      BIGINT NOT NULL DEFAULT 0,
            expires_at DOUBLE PRECISION NOT NULL DEFAULT 0
        );
        CREATE TABLE members (
            instance   TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        );
    """),
    # Finality rests on the last online heartbeat: a last will or a clean stop ("offline", no facts) is the
    # gate's latest status but must not replace what the gate last said it holds. Kept apart, with the
    # time the bank received it.
    Step(9, "heartbeats", """
        ALTER TABLE gate_state ADD COLUMN heartbeat TEXT;
        ALTER TABLE gate_state ADD COLUMN heartbeat_at TEXT;
        UPDATE gate_state SET heartbeat = status, heartbeat_at = status_at WHERE status_state = 'online';
    """),
    # Wages (Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15 and 31): who is paid
    # where and how much per day or hour, with history (a change never rewrites an earlier period); each
    # site's pay day and the special wage account it pays from; the local minimum wage; deductions; and
    # the wage tables, versioned (a correction is a new version, the old one is kept) with one line per
    # worker holding what the ledger must show at the time it was made.
    Step(10, "wages", """
        ALTER TABLE workers ADD COLUMN id_number TEXT;
        ALTER TABLE workers ADD COLUMN phone TEXT;
        ALTER TABLE workers ADD COLUMN bank_account TEXT;
        ALTER TABLE workers ADD COLUMN bank_name TEXT;
        CREATE TABLE wage_terms (
            id             {id},
            worker         TEXT NOT NULL REFERENCES workers (worker),
            basis          TEXT NOT NULL,      -- day / hour
            rate_fen       BIGINT NOT NULL,    -- per day or per hour
            effective_from TEXT NOT NULL,      -- local date, YYYY-MM-DD
            added_at       TEXT NOT NULL,
            added_by       TEXT NOT NULL
        );
        CREATE UNIQUE INDEX wage_terms_worker_from ON wage_terms (worker, effective_from);
        CREATE TABLE site_pay (
            id             {id},
            site           TEXT NOT NULL REFERENCES sites (site),
            employer       TEXT NOT NULL DEFAULT '',   -- '' for every employer of the site
            pay_day        BIGINT NOT NULL,            -- day of the month after the period
            payer_account  TEXT,                       -- the general contractor's special wage account
            payer_name     TEXT,
            payer_bank     TEXT,
            effective_from TEXT NOT NULL,
            added_at       TEXT NOT NULL,
            added_by       TEXT NOT NULL
        );
        CREATE UNIQUE INDEX site_pay_from ON site_pay (site, employer, effective_from);
        CREATE TABLE minimum_wages (
            id             {id},
            site           TEXT NOT NULL REFERENCES sites (site),
            hourly_fen     BIGINT NOT NULL,
            monthly_fen    BIGINT NOT NULL,
            effective_from TEXT NOT NULL,
            added_at       TEXT NOT NULL,
            added_by       TEXT NOT NULL
        );
        CREATE UNIQUE INDEX minimum_wages_from ON minimum_wages (site, effective_from);
        CREATE TABLE wage_deductions (
            id         {id},
            site       TEXT NOT NULL,
            period     TEXT NOT NULL,          -- YYYY-MM
            worker     TEXT NOT NULL,
            item       TEXT NOT NULL,
            amount_fen BIGINT NOT NULL,
            reason     TEXT NOT NULL,
            source     TEXT NOT NULL,          -- who says so: an operator, or an employer's sheet
            added_at   TEXT NOT NULL,
            added_by   TEXT NOT NULL
        );
        CREATE INDEX wage_deductions_period ON wage_deductions (site, period, worker);
        CREATE TABLE wage_tables (
            id          {id},
            site        TEXT NOT NULL,
            period      TEXT NOT NULL,
            version     BIGINT NOT NULL,
            status      TEXT NOT NULL,          -- draft / computed / approved / superseded
            final       BIGINT NOT NULL,        -- every day of the period was final when computed
            computed_at TEXT NOT NULL,
            computed_by TEXT NOT NULL,
            reason      TEXT,                   -- why this version (a correction)
            approved_at TEXT,
            approved_by TEXT,
            override    TEXT,                   -- approved with lines still needing a decision: why
            pay_day     TEXT                    -- YYYY-MM-DD: when its lines fall due
        );
        CREATE UNIQUE INDEX wage_tables_version ON wage_tables (site, period, version);
        CREATE TABLE wage_lines (
            id             {id},
            table_id       BIGINT NOT NULL REFERENCES wage_tables (id),
            worker         TEXT NOT NULL,
            name           TEXT NOT NULL,
            employer       TEXT,
            id_number      TEXT,
            phone          TEXT,
            bank_account   TEXT,
            bank_name      TEXT,
            days           BIGINT NOT NULL,
            worked_minutes BIGINT NOT NULL,
            basis          TEXT,
            rate_fen       BIGINT,
            gross_fen      BIGINT NOT NULL,
            deductions_fen BIGINT NOT NULL,
            net_fen        BIGINT NOT NULL,
            status         TEXT NOT NULL,      -- payable / needs_decision / held
            flags          TEXT NOT NULL,
            detail         TEXT NOT NULL        -- JSON: rate segments, deduction items, days to decide
        );
        CREATE UNIQUE INDEX wage_lines_worker ON wage_lines (table_id, worker);
    """),
    # Payments (Art. 15: the bank's payment voucher; Art. 31: paid from the special wage account into the
    # worker's own): each batch made for an approved table, kept with what its file said (payer, dates),
    # so that writing it again gives the same bytes; and each credit in it, with the bank's return. A
    # worker's pending and paid credits for a period never add up to more than the approved net.
    Step(11, "payments", """
        CREATE TABLE wage_batches (
            batch_id       TEXT PRIMARY KEY,   -- the message id of the file (stable: site, period, version, seq)
            site           TEXT NOT NULL,
            period         TEXT NOT NULL,
            table_version  BIGINT NOT NULL,    -- the approved version it pays
            seq            BIGINT NOT NULL,    -- 1 for the version's first batch, then each retry or remainder
            created        TEXT NOT NULL,      -- the file's creation time (the approval's, for the first batch)
            execution_date TEXT NOT NULL,      -- requested execution date (local date)
            execution_rule TEXT NOT NULL,      -- pay_day / batch_date (the pay day had passed)
            payer_account  TEXT NOT NULL,
            payer_name     TEXT NOT NULL,
            payer_bank     TEXT NOT NULL,
            made_at        TEXT NOT NULL
        );
        CREATE UNIQUE INDEX wage_batches_seq ON wage_batches (site, period, table_version, seq);
        CREATE TABLE wage_payments (
            id             {id},
            batch_id       TEXT NOT NULL REFERENCES wage_batches (batch_id),
            position       BIGINT NOT NULL,    -- the credit's place in its batch, from 1
            site           TEXT NOT NULL,
            period         TEXT NOT NULL,
            worker         TEXT NOT NULL,
            table_version  BIGINT NOT NULL,
            end_to_end_id  TEXT NOT NULL,
            amount_fen     BIGINT NOT NULL CHECK (amount_fen > 0),
            status         TEXT NOT NULL,      -- pending / paid / failed
            voucher        TEXT,               -- the bank's payment voucher (paid)
            paid_on        TEXT,               -- the date the bank paid it (paid)
            reason         TEXT,               -- why the bank could not pay it (failed)
            settled_at     TEXT,               -- when the bank's return was recorded
            settled_from   TEXT                -- that return: its kind and the SHA-256 of its bytes
        );
        CREATE UNIQUE INDEX wage_payments_e2e ON wage_payments (end_to_end_id);
        CREATE UNIQUE INDEX wage_payments_position ON wage_payments (batch_id, position);
        CREATE INDEX wage_payments_worker ON wage_payments (site, period, worker);
    """),
    # What an employer (the labour subcontractor) claims for a month, kept as read, to be checked against
    # the gates and the wage table now and later: the file's name, SHA-256 (the same file is imported
    # once), how it was read, who brought it, and one row per worker. Deductions it claims become the
    # period's deductions only when asked (deductions_taken_*).
    Step(12, "wage_sheets", """
        CREATE TABLE wage_sheets (
            id                  {id},
            site                TEXT NOT NULL REFERENCES sites (site),
            period              TEXT NOT NULL,          -- YYYY-MM
            employer            TEXT NOT NULL DEFAULT '',   -- '' when the sheet names none
            file_name           TEXT NOT NULL,
            sha256              TEXT NOT NULL,
            format              TEXT NOT NULL,          -- csv / xlsx
            encoding            TEXT NOT NULL,          -- utf-8, utf-8 with BOM, gb18030; xlsx
            ignored_columns     TEXT NOT NULL,          -- JSON list of the headers not read
            notes               TEXT NOT NULL,          -- JSON list: title rows, other worksheets, a total row
            imported_at         TEXT NOT NULL,
            imported_by         TEXT NOT NULL,
            deductions_taken_at TEXT,
            deductions_taken_by TEXT
        );
        CREATE UNIQUE INDEX wage_sheets_sha256 ON wage_sheets (sha256);
        CREATE INDEX wage_sheets_period ON wage_sheets (site, period, employer);
        CREATE TABLE wage_sheet_lines (
            id             {id},
            sheet_id       BIGINT NOT NULL REFERENCES wage_sheets (id),
            source_row     BIGINT NOT NULL,         -- the file's line (CSV) or row (XLSX)
            worker         TEXT NOT NULL,
            name           TEXT,
            id_number      TEXT,
            days           TEXT NOT NULL,           -- a decimal as written: 22, 21.5
            hours          TEXT,
            amount_fen     BIGINT NOT NULL,         -- gross claimed (应发)
            deductions_fen BIGINT NOT NULL,
            net_fen        BIGINT,                  -- when the sheet has the column (实发)
            bank_account   TEXT NOT NULL            -- digits only
        );
        CREATE UNIQUE INDEX wage_sheet_lines_worker ON wage_sheet_lines (sheet_id, worker);
    """),
    # What `collector prune` deleted: who, when, what, up to which date and how many rows (Art. 15/28: the
    # ledger, wage tables and payments are kept at least 3 years; only what may go goes, and is recorded).
    Step(13, "retention_log", """
        CREATE TABLE retention_log (
            id         {id},
            pruned_at  TEXT NOT NULL,
            pruned_by  TEXT NOT NULL,
            what       TEXT NOT NULL,      -- quarantine / quarantine_tally / wages
            cutoff     TEXT NOT NULL,      -- --before: the date asked for (YYYY-MM-DD; UTC for rows with a time)
            row_count  BIGINT NOT NULL,
            detail     TEXT NOT NULL       -- JSON: per table, or per site and period
        );
    """),
    # Workers belong to sites over time (a worker moves between projects): a site's roster holds only the
    # cards of the workers assigned to it, and a punch at a site the worker was not assigned to is flagged.
    Step(14, "assignments", """
        CREATE TABLE assignments (
            id         {id},
            worker     TEXT NOT NULL REFERENCES workers (worker),
            site       TEXT NOT NULL REFERENCES sites (site),
            valid_from TEXT,                -- UTC; NULL: from the beginning
            valid_to   TEXT,                -- UTC; NULL: still assigned
            added_at   TEXT NOT NULL,
            added_by   TEXT NOT NULL
        );
        CREATE INDEX assignments_worker ON assignments (worker, site);
        CREATE INDEX assignments_site ON assignments (site);
        ALTER TABLE workers ADD COLUMN removed_at TEXT;
        ALTER TABLE workers ADD COLUMN removed_by TEXT;
    """),
    Step(15, "assign_existing_workers", _assign_existing_workers),
    # A gate at a site without network delivers by hand (bundles) on a declared schedule: a punch is late
    # only beyond it (NULL: a live gate, late after an hour).
    Step(16, "gate_delivery", """
        ALTER TABLE gates ADD COLUMN delivery_hours DOUBLE PRECISION;
    """),
    # Card kinds (docs/cards.md): a bank card is registered by the keyed identifier of its PAN, shown by
    # the masked PAN (first 6 / last 4), never the PAN; an NTAG 424 DNA by its UID, its punches carry a
    # SUN message whose read counter the bank decrypts and keeps per punch.
    Step(17, "card_kinds", """
        ALTER TABLE cards ADD COLUMN kind TEXT NOT NULL DEFAULT 'uid';
        ALTER TABLE cards ADD COLUMN masked TEXT;
        ALTER TABLE punches ADD COLUMN card_kind TEXT;
        ALTER TABLE punches ADD COLUMN card_counter BIGINT;
        CREATE INDEX punches_card_counter ON punches (card, card_counter);
    """),
    # A site foreman signs in on a phone with a short-lived single-use link the bank issues; it becomes a
    # browser session. Only SHA-256 digests of the secrets are kept: the database holds nothing to sign in with.
    Step(18, "web_sessions", """
        CREATE TABLE web_signin_links (
            id            {id},
            secret_sha256 TEXT NOT NULL UNIQUE,
            site          TEXT NOT NULL,
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL,       -- UTC; the link is refused after this
            session_hours DOUBLE PRECISION NOT NULL,
            used_at       TEXT,                -- UTC; a link signs in once
            note          TEXT
        );
        CREATE TABLE web_sessions (
            id            {id},
            secret_sha256 TEXT NOT NULL UNIQUE,
            site          TEXT NOT NULL,
            link_id       BIGINT,
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL,
            revoked_at    TEXT                 -- UTC; signed out (or revoked by the bank)
        );
        CREATE INDEX web_sessions_site ON web_sessions (site);
    """),
    # The worker's own view: personal links (only the SHA-256 of each secret is kept; issuing a new one
    # revokes the old), every look at a worker's record (who and when: the worker sees it), and the days
    # a worker says are wrong, with their answers (a manual punch or a void, or a reason).
    Step(19, "worker_access", """
        CREATE TABLE worker_links (
            id            {id},
            worker        TEXT NOT NULL REFERENCES workers (worker),
            secret_sha256 TEXT NOT NULL,
            issued_at     TEXT NOT NULL,
            issued_by     TEXT NOT NULL,
            revoked_at    TEXT,
            revoked_by    TEXT
        );
        CREATE UNIQUE INDEX worker_links_secret ON worker_links (secret_sha256);
        CREATE INDEX worker_links_worker ON worker_links (worker);
        CREATE TABLE record_access (
            id      {id},
            worker  TEXT NOT NULL,
            at      TEXT NOT NULL,
            via     TEXT NOT NULL,      -- worker link / bank CLI / site token / bank token
            who     TEXT NOT NULL,      -- the site of a token, the login name at the bank, 'the worker'
            what    TEXT NOT NULL       -- what was looked at: days 2026-11, evidence, disputes
        );
        CREATE INDEX record_access_worker ON record_access (worker, at);
        CREATE TABLE disputes (
            id          {id},
            ref         TEXT,               -- D-YYYY-NNNN, set from the id once inserted
            worker      TEXT NOT NULL REFERENCES workers (worker),
            site        TEXT NOT NULL REFERENCES sites (site),
            day         TEXT NOT NULL,      -- the local date said to be wrong, YYYY-MM-DD
            note        TEXT NOT NULL,
            filed_at    TEXT NOT NULL,
            filed_via   TEXT NOT NULL,
            status      TEXT NOT NULL,      -- open / accepted / rejected
            answered_at TEXT,
            answered_by TEXT,
            answer      TEXT,               -- the reason given (shown to the worker)
            answer_kind TEXT,               -- manual / void (accepted)
            punch_id    BIGINT              -- the manual punch or the voided punch (accepted)
        );
        CREATE UNIQUE INDEX disputes_ref ON disputes (ref);
        CREATE INDEX disputes_site ON disputes (site, status, day);
        CREATE INDEX disputes_worker ON disputes (worker, day);
    """),
    # A correction that answers a dispute names it; approving a pay period over open disputes is an
    # explicit override, kept with who, why and which disputes were open.
    Step(20, "dispute_answers", """
        ALTER TABLE punches ADD COLUMN dispute TEXT;
        CREATE TABLE dispute_overrides (
            id            {id},
            site          TEXT NOT NULL,
            period        TEXT NOT NULL,     -- YYYY-MM
            table_version BIGINT NOT NULL,
            refs          TEXT NOT NULL,     -- the open disputes, comma-separated
            reason        TEXT NOT NULL,
            by_user       TEXT NOT NULL,
            at            TEXT NOT NULL
        );
        CREATE INDEX dispute_overrides_period ON dispute_overrides (site, period);
    """),
    # Evidence a worker asks for on their page: `collector serve` holds no signing key, so it records the
    # request and a collector process claims it, builds and signs the file, and keeps the signed bytes here
    # until they are pruned (docs/worker.md).
    Step(21, "evidence_requests", """
        CREATE TABLE evidence_requests (
            id           {id},
            worker       TEXT NOT NULL REFERENCES workers (worker),
            first_day    TEXT NOT NULL,      -- YYYY-MM-DD, the period asked for
            last_day     TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            requested_by TEXT NOT NULL,      -- the access that asked: worker link (issued ...)
            state        TEXT NOT NULL,      -- pending / working / done / failed
            claim        TEXT,               -- who is building it: instance and a one-off token
            claimed_at   TEXT,
            attempts     BIGINT NOT NULL DEFAULT 0,
            finished_at  TEXT,
            document     TEXT,               -- done: the signed file exactly as served (ASCII JSON)
            reason       TEXT                -- failed: why
        );
        CREATE INDEX evidence_requests_state ON evidence_requests (state, id);
        CREATE INDEX evidence_requests_worker ON evidence_requests (worker, state);
    """),
    # A worker's link opens a session per browser (only the SHA-256 of its secret is kept), which sign-out
    # revokes and which ends with its link; the cookie no longer holds the link itself. Looks at a record
    # are kept one row per viewer, thing and UTC day, with how many and the last, so that a token polling
    # a list cannot push the bank's looks off the worker's page.
    Step(22, "worker_sessions", """
        CREATE TABLE worker_sessions (
            id            {id},
            secret_sha256 TEXT NOT NULL UNIQUE,
            worker        TEXT NOT NULL,
            link_id       BIGINT NOT NULL,     -- worker_links.id: the session ends with its link
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL,
            revoked_at    TEXT                 -- UTC; signed out, or its link re-issued or revoked
        );
        CREATE INDEX worker_sessions_worker ON worker_sessions (worker);
        ALTER TABLE record_access ADD COLUMN day TEXT;
        ALTER TABLE record_access ADD COLUMN looks BIGINT NOT NULL DEFAULT 1;
        ALTER TABLE record_access ADD COLUMN last_at TEXT;
        UPDATE record_access SET day = substr(at, 1, 10), last_at = at;
        CREATE INDEX record_access_look ON record_access (worker, day, via, who, what);
    """),
    # The special wage account (Art. 26, 31) is part of what is approved: a change of a site's pay day or
    # payer is a new row (who, when, what), never an overwrite, and the row in force on a date is the
    # latest recorded for the latest date not after it; each approved version holds the payer it was
    # approved with, and its batches debit that account.
    Step(23, "payer_history", _payer_history),
    # Days are data (collector.store.days): one record per worker, site and local date, kept up to date
    # through marks each change leaves in its own transaction. Every site is marked here, so an upgraded
    # database builds its days from the punches it holds (the daemon, `db upgrade` or the first read).
    Step(24, "days", """
        CREATE TABLE days (
            site        TEXT NOT NULL,
            worker      TEXT NOT NULL,
            day         TEXT NOT NULL,   -- the local date, YYYY-MM-DD
            record      TEXT NOT NULL,   -- JSON: the day as the rules made it
            open_until  TEXT,            -- UTC: from then on the day's last shift has run out ...
            after       TEXT,            -- ... and the day reads as this JSON
            computed_at TEXT NOT NULL,
            PRIMARY KEY (site, worker, day)
        );
        CREATE INDEX days_site_day ON days (site, day);
        CREATE INDEX days_worker_day ON days (worker, day);
        CREATE TABLE day_marks (
            id      {serial},
            site    TEXT NOT NULL,   -- '' : every site
            worker  TEXT,
            card    TEXT,            -- a gate punch's card: whoever held it
            since   TEXT NOT NULL,   -- UTC; '' : from the beginning
            made_at TEXT NOT NULL
        );
        CREATE INDEX day_marks_site ON day_marks (site);
        CREATE INDEX day_marks_worker ON day_marks (worker);
        CREATE INDEX day_marks_card ON day_marks (card);
        INSERT INTO day_marks (site, worker, card, since, made_at) SELECT site, NULL, NULL, '', created_at FROM sites;
    """),
    # Figures that cover the whole bank (collector.wages.figures: arrears per site, cards nobody holds inside,
    # punches held) are kept here by the daemon, with when they were computed, so that /metrics reads
    # them instead of computing the bank at every scrape. The indexes let a read find the days open now
    # and the gaps still open without going through the others.
    Step(25, "bank_figures", """
        CREATE TABLE bank_figures (
            site        TEXT NOT NULL,      -- '' : the bank as a whole
            figure      TEXT NOT NULL,      -- arrears / inside / punches
            value       TEXT,               -- JSON; NULL when it could not be computed
            error       TEXT,               -- why it could not
            computed_at TEXT NOT NULL,      -- UTC: when it was computed (or tried)
            seconds     DOUBLE PRECISION NOT NULL,  -- how long computing it took
            PRIMARY KEY (site, figure)
        );
        CREATE INDEX days_open ON days (site, open_until) WHERE open_until IS NOT NULL;
        CREATE INDEX gaps_open ON gaps (site, gate) WHERE filled_at IS NULL;
    """),
    # Punches keep the gate's proof packed (collector.store.packed), a third of the bytes, and on PostgreSQL
    # the table is partitioned by month (collector.store.partitions).
    Step(26, "packed_punches", _packed_punches),
    # A worker's cards are read at every recomputation of their days (and a worker's page): without this
    # index each read went through every card of the bank (41,000 workers' marks took 950 s to settle).
    Step(27, "cards_by_worker", """
        CREATE INDEX cards_worker ON cards (worker);
    """),
    # Four eyes on money (an auditor's controls): each held line of an approved version keeps its own
    # override reason (a version approved before keeps its one reason, now on each line it held); each batch
    # keeps who made it, each file written of it who wrote it, when, and its digest; each credit who
    # recorded the bank's return of it (made_by, settled_by NULL: before this was recorded).
    Step(28, "four_eyes", """
        ALTER TABLE wage_lines ADD COLUMN override TEXT;
        UPDATE wage_lines SET override = (SELECT t.override FROM wage_tables t WHERE t.id = wage_lines.table_id)
            WHERE status != 'payable'
              AND table_id IN (SELECT id FROM wage_tables WHERE override IS NOT NULL);
        ALTER TABLE wage_batches ADD COLUMN made_by TEXT;
        CREATE TABLE wage_batch_files (
            id         {id},
            batch_id   TEXT NOT NULL REFERENCES wage_batches (batch_id),
            written_at TEXT NOT NULL,
            written_by TEXT NOT NULL,
            format     TEXT NOT NULL,      -- csv / pain001
            file       TEXT NOT NULL,      -- the name it was written as
            sha256     TEXT NOT NULL       -- of the bytes written
        );
        CREATE INDEX wage_batch_files_batch ON wage_batch_files (batch_id, id);
        ALTER TABLE wage_payments ADD COLUMN settled_by TEXT;
    """),
    # Corrections that leave a trail: a credit the bank returned after paying it (退汇) is reversed, with
    # who, why, the return's reference and date, and is owed again; a credit of a batch written but never
    # sent is withdrawn, with who and why, and is owed again; a deduction is reversed, with who and why,
    # never deleted; terms set inside a period already approved are a back pay, with its reason and the
    # terms they change (JSON, a list: each time the row was set so). undone_*: when a credit was withdrawn
    # or reversed, by whom and why; returned_ref and returned_on: the reference and local date of the
    # bank's return of a reversed credit.
    Step(29, "wage_reversals", """
        ALTER TABLE wage_payments ADD COLUMN undone_at TEXT;
        ALTER TABLE wage_payments ADD COLUMN undone_by TEXT;
        ALTER TABLE wage_payments ADD COLUMN undone_reason TEXT;
        ALTER TABLE wage_payments ADD COLUMN returned_ref TEXT;
        ALTER TABLE wage_payments ADD COLUMN returned_on TEXT;
        ALTER TABLE wage_deductions ADD COLUMN reversed_at TEXT;
        ALTER TABLE wage_deductions ADD COLUMN reversed_by TEXT;
        ALTER TABLE wage_deductions ADD COLUMN reversed_reason TEXT;
        ALTER TABLE wage_terms ADD COLUMN back_pay TEXT;
    """),
    # A site's own working days (Art. 14 moves a pay day on a rest day or holiday earlier): what the national
    # calendar (collector.wages.workdays) does not know, a local rule or a year not yet published, each row
    # with who set it, when and why; the latest row for a day is in force, the earlier ones kept.
    Step(30, "work_calendar", """
        CREATE TABLE work_calendar (
            id       {id},
            site     TEXT NOT NULL REFERENCES sites (site),
            day      TEXT NOT NULL,        -- a local date, YYYY-MM-DD
            kind     TEXT NOT NULL,        -- rest / work / national (back to the national calendar)
            reason   TEXT NOT NULL,
            added_at TEXT NOT NULL,
            added_by TEXT NOT NULL
        );
        CREATE INDEX work_calendar_site ON work_calendar (site, day, id);
    """),
    # Where a payee's bank is, as a Chinese bank's bulk payment asks: the account's branch by its CNAPS
    # code (收款行行号, 12 digits), its province and city. Kept with the account they route to, so that a
    # batch uses them only while the account is the one its approved line pays.
    Step(31, "payee_routing", """
        ALTER TABLE workers ADD COLUMN bank_code TEXT;
        ALTER TABLE workers ADD COLUMN bank_province TEXT;
        ALTER TABLE workers ADD COLUMN bank_city TEXT;
        ALTER TABLE workers ADD COLUMN routed_account TEXT;
    """),
    # A gate's boot id, reader and key id, the same in every punch between two boots, are held once and
    # named by the punch's packed proof (collector.store.gate_boots); on PostgreSQL punches' ids keep a
    # block-range index instead of a B-tree. About 60 bytes a punch in all.
    Step(33, "gate_boots", _gate_boots),
    # A worker's work team (班组) and trade (工种), which are not the employer (the labour company); and every
    # change of a worker's name, employer, team or trade from now on, with who made it and when.
    Step(34, "teams", """
        ALTER TABLE workers ADD COLUMN team TEXT;
        ALTER TABLE workers ADD COLUMN trade TEXT;
        CREATE TABLE worker_changes (
            id         {id},
            worker     TEXT NOT NULL REFERENCES workers (worker),
            field      TEXT NOT NULL,      -- name / employer / team / trade
            before     TEXT,
            after      TEXT,
            changed_at TEXT NOT NULL,
            changed_by TEXT NOT NULL
        );
        CREATE INDEX worker_changes_worker ON worker_changes (worker, id);
    """),
    # The register of gate keys the bank publishes (collector.evidence.register): every key it accepted or
    # revoked, one bank-signed entry each, hash-chained, append-only. ``entry`` is the entry's RFC 8785
    # text with its signature, ``digest`` the SHA-256 of it without; the other columns repeat what it
    # says for lookups. One add and at most one revoke per key; an index is written once.
    Step(35, "gate_key_register", """
        CREATE TABLE gate_key_register (
            idx     BIGINT PRIMARY KEY CHECK (idx >= 1),
            entry   TEXT NOT NULL,
            digest  TEXT NOT NULL UNIQUE,
            at      TEXT NOT NULL,       -- UTC: when the entry was written
            action  TEXT NOT NULL CHECK (action IN ('add', 'revoke')),
            site    TEXT NOT NULL,
            gate    TEXT NOT NULL,
            key_id  TEXT NOT NULL,
            since   TEXT NOT NULL,       -- UTC: when the registry says the key was added or revoked
            UNIQUE (site, gate, key_id, action)
        );
    """),
]

#: What a reader may ask of a database (``Store.has``), by name, and the step that brought it. A read-only
#: reader (`collector serve`, reports) may meet a database the daemon has not upgraded yet; the numbers
#: stay here, beside the steps.
CAPABILITIES = {
    "heartbeats": 9,  # gate_state.heartbeat, heartbeat_at
    "payments": 11,  # wage batches, payment lines and their returns
    "assignments": 14,  # workers assigned to sites, with validity
    "gate_delivery": 16,  # gates.delivery_hours (bundles carried by hand)
    "card_kinds": 17,  # cards.kind and masked, punches' card kinds and read counters
    "worker_access": 19,  # worker links, the record access log, disputes
    "dispute_answers": 20,  # answers to disputes and the corrections that cite them
    "evidence_requests": 21,  # evidence files the daemon signs on request
    "worker_sessions": 22,  # a worker's browser sessions; looks at a record counted per viewer and day
    "payer_history": 23,  # site_pay rows as history; wage_tables.payer_account, payer_name, payer_bank
    "days": 24,  # days and day_marks: daily records kept as data
    "bank_figures": 25,  # bank_figures: figures covering the whole bank, kept with their age
    "packed_punches": 26,  # punches.signed: the gate's proof packed; no body, digest or proof columns
    "four_eyes": 28,  # wage_lines.override, wage_batches.made_by, wage_batch_files, wage_payments.settled_by
    "wage_reversals": 29,  # wage_payments.undone_*, returned_*; wage_deductions.reversed_*; wage_terms.back_pay
    "work_calendar": 30,  # a site's own rest and working days (collector site work-calendar)
    "payee_routing": 31,  # workers.bank_code (CNAPS), bank_province, bank_city, routed_account
    "gate_boots": 33,  # gate_boots; punches.signed in format 2 names one of its rows
    "teams": 34,  # workers.team and trade; worker_changes
    "gate_key_register": 35,  # gate_key_register: the bank-signed register of gate keys
}

#: What sqlite-utils' Migrations recorded in databases made before this module (by function name).
_SQLITE_UTILS_NAMES = {"m001_initial": (1,), "m002_gauges": (2,), "m003_bank_keys": (3,),
                       "m004_quarantine_limits": (4, 5), "m005_statuses_checked": (6,), "m006_heartbeats": (9,)}


def applied(conn: Connection) -> dict[int, str]:
    """version -> applied_at; empty for a database that has none (or a reader that cannot tell)."""
    if not conn.table_exists("schema_migrations"):
        return {}
    return {row["version"]: row["applied_at"]
            for row in conn.rows("SELECT version, applied_at FROM schema_migrations ORDER BY version")}


def pending(conn: Connection) -> list[Step]:
    done = applied(conn)
    return [step for step in STEPS if step.version not in done]


def upgrade(conn: Connection, *, until: int | None = None, clock: Clock = system_clock) -> list[Step]:
    """Apply every pending step (up to version ``until``: a database as an older release left it, for
    tests), each in a transaction with its record (applied at ``clock``'s time); returns the steps applied."""
    with conn.transaction():
        _serialise(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                     "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        _adopt_sqlite_utils(conn)
        fresh = conn.one("SELECT 1 FROM schema_migrations") is None
    done = []
    for step in STEPS:
        if until is not None and step.version > until:
            continue
        with conn.transaction():
            _serialise(conn)
            if conn.one("SELECT 1 FROM schema_migrations WHERE version = ?", (step.version,)):
                continue  # another process applied it meanwhile
            now = format_time(clock())
            if isinstance(step.apply, str):
                conn.script(step.apply)
            else:
                step.apply(conn, now)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (step.version, step.name, now))
        done.append(step)
        log.debug("database schema: applied %d %s", step.version, step.name)
    if done and not fresh:  # a new database is not news; an upgraded one is
        log.info("database upgraded: applied %s", ", ".join(f"{s.version} {s.name}" for s in done))
    return done


def _serialise(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))


def _adopt_sqlite_utils(conn: Connection) -> None:
    """A database made when sqlite-utils' Migrations kept the schema: record its steps as applied."""
    if conn.dialect != "sqlite" or not conn.table_exists("_sqlite_migrations"):
        return
    if conn.one("SELECT 1 FROM schema_migrations"):
        return
    for row in conn.rows("SELECT name, applied_at FROM _sqlite_migrations WHERE migration_set = 'collector'"):
        for version in _SQLITE_UTILS_NAMES.get(row["name"], ()):
            step = next(s for s in STEPS if s.version == version)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (version) DO NOTHING", (version, step.name, row["applied_at"]))
