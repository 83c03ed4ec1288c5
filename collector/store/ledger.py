"""The ledger: gate punches exactly as signed, their links and conflicts, each gate's progress and gaps,
and the manual entries and voids people add beside them (a gate's punch is never edited)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from gate_agent.protocol import Punch

from ..text import NAME_MAX_CHARS, REASON_MAX_CHARS, entered
from .connection import Connection
from .errors import StoreError
from .gate_boots import GateBoots
from .packed import digest_of, pack


def _ranges(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted((row["first"], row["last"]) for row in rows)


@dataclass(frozen=True, slots=True)
class Link:
    """A stored gate punch as a link of its gate's hash chain."""

    digest: str
    prev: str  # the digest of the punch before it, as the gate signed it
    time: str
    boot: str
    flags: str  # comma-separated, sorted


@dataclass(frozen=True, slots=True)
class Tail:
    """The gate's punch with the highest seq held."""

    seq: int
    digest: str
    time: str


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a gate's punches are held: every seq through ``contiguous_seq`` (0: not seq 1 yet), whose
    digest is ``contiguous_digest``, and nothing above ``max_seq``."""

    contiguous_seq: int = 0
    contiguous_digest: str | None = None
    max_seq: int = 0

    @property
    def has_holes(self) -> bool:
        return self.max_seq > self.contiguous_seq


class LedgerQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    # ================================================================== ingest (inside one transaction)

    def insert_punch(self, punch: Punch, *, received_at: str, source: str, flags: str,
                     card_counter: int | None = None) -> bool:
        """Insert a gate punch; False if (site, gate, seq) is already held (the caller compares digests).
        The proof is stored packed (collector.store.packed), naming its gate boot (collector.store.gate_boots);
        the signed bytes and the digest are rebuilt from the row when asked for. ``card_counter``: an NTAG 424 card's read counter, decrypted from its
        SUN message (collector.ingest.sun)."""
        if not self.db.in_transaction:  # the punch and its day mark commit together
            with self.db.transaction():
                return self.insert_punch(punch, received_at=received_at, source=source, flags=flags,
                                         card_counter=card_counter)
        if self.has("packed_punches"):
            signed = pack(punch, self._gate_boots().ref(punch)) if self.has("gate_boots") else pack(punch)
            cursor = self.db.execute(
                """INSERT INTO punches (site, gate, seq, time, card, direction, signed, received_at, source, flags,
                       card_kind, card_counter)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT DO NOTHING""",
                (punch.site, punch.gate, punch.seq, punch.time, punch.card, punch.dir, signed, received_at,
                 source, flags, punch.kind, card_counter))
        else:  # a database as an earlier release left it, which step 26 repacks (tests of upgrades write so)
            cursor = self.db.execute(
                """INSERT INTO punches (site, gate, seq, time, card, direction, tech, roster, synced, boot, mono_ms,
                       reader, prev, digest, key_id, body, received_at, source, flags, card_kind, card_counter)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT DO NOTHING""",
                (punch.site, punch.gate, punch.seq, punch.time, punch.card, punch.dir, punch.tech, punch.roster,
                 int(punch.synced), punch.boot, punch.mono_ms, punch.reader, punch.prev, digest_of(punch), punch.key,
                 punch.to_json(), received_at, source, flags, punch.kind, card_counter))
        if cursor.rowcount != 1:
            return False
        self._mark_card_days(site=punch.site, card=punch.card or "", since=punch.time)
        return True

    def _gate_rows(self, where: str, params: Sequence, tail: str = "") -> list[dict]:
        """Gate punches as rows that rebuild what the gate signed (``punch_row``): the columns it needs."""
        wanted = "seq, time, card, direction, signed, body, flags, site, gate" if self.has("packed_punches") else \
            "seq, time, card, direction, body, flags, site, gate, digest, prev, boot"
        return self._gate_boots().rows(self._rows(f"SELECT {wanted} FROM punches WHERE {where} {tail}", params))

    def highest_punch(self, site: str, gate: str) -> Tail | None:
        """The gate's punch with the highest seq held, if any."""
        rows = self._gate_rows("site = ? AND gate = ? AND seq IS NOT NULL", (site, gate), "ORDER BY seq DESC LIMIT 1")
        return None if not rows else Tail(rows[0]["seq"], rows[0]["digest"], rows[0]["time"])

    def stored_link(self, site: str, gate: str, seq: int) -> Link | None:
        """A stored gate punch as a link of its chain, if held."""
        rows = self._gate_rows("site = ? AND gate = ? AND seq = ?", (site, gate, seq))
        if not rows:
            return None
        row = rows[0]
        return Link(row["digest"], row["prev"], row["time"], row["boot"], row["flags"])

    def add_flag(self, site: str, gate: str, seq: int, flag: str) -> None:
        held = self.db.record("SELECT flags, time, card FROM punches WHERE site = ? AND gate = ? AND seq = ?",
                              (site, gate, seq))
        if held is None:
            return
        flags = set(filter(None, held["flags"].split(",")))
        if flag not in flags:
            flags.add(flag)
            self.db.execute("UPDATE punches SET flags = ? WHERE site = ? AND gate = ? AND seq = ?",
                            (",".join(sorted(flags)), site, gate, seq))
            self._mark_card_days(site=site, card=held["card"] or "", since=held["time"])

    def add_conflict(self, site: str, gate: str, seq: int, *, kind: str, stored_digest: str, other_digest: str,
                     other_body: bytes | None, detail: str) -> bool:
        cursor = self.db.execute(
            """INSERT INTO conflicts (site, gate, seq, kind, stored_digest, other_digest, other_body, detail,
                   detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (site, gate, seq, kind, stored_digest, other_digest, other_body, detail, self._now_text()))
        return cursor.rowcount == 1

    def conflicts(self) -> list[dict]:
        return self._rows("SELECT id, site, gate, seq, kind, stored_digest, other_digest, detail, detected_at "
                          "FROM conflicts ORDER BY id")

    def gate_progress(self, site: str, gate: str) -> Progress:
        row = self.db.record("SELECT contiguous_seq, contiguous_digest, max_seq FROM gate_state "
                             "WHERE site = ? AND gate = ?", (site, gate))
        if row is None:
            return Progress()
        return Progress(row["contiguous_seq"] or 0, row["contiguous_digest"], row["max_seq"] or 0)

    def advance_contiguous(self, site: str, gate: str, received_at: str) -> Progress:
        """Move the gate's contiguous prefix over every seq now held, and close the gaps this transaction
        filled; returns the progress now (its contiguous prefix is what to ack). Inside the transaction
        that stored the punches, under the gate's lock: a gap is never seen open once its last missing
        punch is on disk, and the ack that tells the gate so cannot go out before the gap is closed."""
        before = self.gate_progress(site, gate)
        seq, digest = before.contiguous_seq, before.contiguous_digest
        start = seq
        while True:
            numbers = self.db.column("SELECT seq FROM punches WHERE site = ? AND gate = ? AND seq > ? ORDER BY seq "
                                     "LIMIT 1000", (site, gate, seq))
            advanced = False
            for next_seq in numbers:
                if next_seq != seq + 1:
                    break
                seq, advanced = next_seq, True
            if not advanced or len(numbers) < 1000:
                break
        if seq != start:  # one digest rebuilt: the last punch of the prefix, which the ack names
            digest = self.stored_link(site, gate, seq).digest
        max_seq = self.db.value("SELECT MAX(seq) FROM punches WHERE site = ? AND gate = ?", (site, gate)) or 0
        self.db.execute(
            """INSERT INTO gate_state (site, gate, contiguous_seq, contiguous_digest, max_seq, last_punch_at)
               VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,
               contiguous_digest = excluded.contiguous_digest, max_seq = excluded.max_seq,
               last_punch_at = excluded.last_punch_at""",
            (site, gate, seq, digest, max_seq, received_at))
        # A gap row is only recorded below the highest seq held, so without a hole before this transaction
        # none can be open: the usual in-order punch pays no look at the gaps table.
        if before.has_holes:
            self._close_filled_gaps(site, gate, seq, received_at)
        return Progress(seq, digest, max_seq)

    def _close_filled_gaps(self, site: str, gate: str, contiguous: int, now: str) -> None:
        """Mark filled the gate's open gaps whose every seq is now held (those at or below the contiguous
        prefix certainly are; above it, counting is exact: (site, gate, seq) is unique)."""
        self.db.execute(
            """UPDATE gaps SET filled_at = ? WHERE site = ? AND gate = ? AND filled_at IS NULL
               AND (last <= ? OR (SELECT COUNT(*) FROM punches p WHERE p.site = gaps.site AND p.gate = gaps.gate
                                  AND p.seq BETWEEN gaps.first AND gaps.last) = gaps.last - gaps.first + 1)""",
            (now, site, gate, contiguous))

    def gate_status(self, site: str, gate: str) -> dict | None:
        status = self.db.value("SELECT status FROM gate_state WHERE site = ? AND gate = ?", (site, gate))
        return json.loads(status) if status else None

    def save_status(self, site: str, gate: str, status: dict, received_at: str) -> None:
        """The gate's latest status; an online one is also its latest heartbeat, which an offline one
        leaves in place."""
        text = json.dumps(status, sort_keys=True)
        heartbeat = (text, received_at) if status["state"] == "online" else (None, None)
        self.db.execute(
            """INSERT INTO gate_state (site, gate, status, status_state, status_at, heartbeat, heartbeat_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (site, gate) DO UPDATE SET status = excluded.status,
               status_state = excluded.status_state, status_at = excluded.status_at,
               heartbeat = coalesce(excluded.heartbeat, gate_state.heartbeat),
               heartbeat_at = coalesce(excluded.heartbeat_at, gate_state.heartbeat_at)""",
            (site, gate, text, status["state"], received_at, *heartbeat))

    def set_gate_delivery(self, site: str, gate: str, hours: float | None) -> None:
        """Declare how often a gate's punches reach the bank (bundles carried by hand), or None: live."""
        if hours is not None and not 0 < hours <= 24 * 90:
            raise StoreError("a delivery interval is above 0 and at most 90 days")
        with self.transaction():
            cursor = self.db.execute("UPDATE gates SET delivery_hours = ? WHERE site = ? AND gate = ?", (hours, site, gate))
            if cursor.rowcount == 0:
                raise StoreError(f"gate {site}/{gate} is not registered")
            self._mark_days(site=site, since=None)  # which punches arrived late depends on it

    def save_heartbeat_if_newer(self, site: str, gate: str, heartbeat: dict, received_at: str, *, made) -> bool:
        """Keep ``heartbeat`` as the gate's last one unless the one held was made later by ``made(heartbeat,
        received_at)`` (a bundle carried by hand may arrive after the gate's own, newer, heartbeats).
        True if kept."""
        heartbeat_made = made
        with self.transaction():
            row = self.db.record("SELECT heartbeat, heartbeat_at FROM gate_state WHERE site = ? AND gate = ?",
                                 (site, gate))
            if row and row["heartbeat"]:
                held = heartbeat_made(json.loads(row["heartbeat"]), row["heartbeat_at"])
                if held >= heartbeat_made(heartbeat, received_at):
                    return False
            self.db.execute(
                """INSERT INTO gate_state (site, gate, heartbeat, heartbeat_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (site, gate) DO UPDATE SET heartbeat = excluded.heartbeat,
                   heartbeat_at = excluded.heartbeat_at""",
                (site, gate, json.dumps(heartbeat, sort_keys=True), received_at))
            return True

    # ================================================================== manual corrections

    def add_manual_punch(self, *, site: str, worker: str, time: str, direction: str, reason: str, by: str) -> int:
        """A punch entered by a person, never a change to a gate's punch; who, why and when are kept."""
        if direction not in ("in", "out"):
            raise StoreError(f"direction must be in or out, not {direction!r}")
        reason = entered(reason, what="a manual punch's reason", limit=REASON_MAX_CHARS)
        by = entered(by, what="who adds a manual punch", limit=NAME_MAX_CHARS)
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            punch_id = self.db.value(
                """INSERT INTO punches (site, time, worker, direction, received_at, source, manual_by, manual_reason)
                   VALUES (?, ?, ?, ?, ?, 'manual', ?, ?) RETURNING id""",
                (site, time, worker, direction, self._now_text(), by, reason))
            self._mark_days(site=site, worker=worker, since=time)
            return punch_id

    def void_punch(self, punch_id: int, *, reason: str, by: str) -> dict:
        """Mark a punch void (kept and shown, no longer counted)."""
        reason = entered(reason, what="a void's reason", limit=REASON_MAX_CHARS)
        by = entered(by, what="who voids a punch", limit=NAME_MAX_CHARS)
        with self.transaction():
            rows = self._rows("SELECT id, site, gate, seq, void_at FROM punches WHERE id = ?", (punch_id,))
            if not rows:
                raise StoreError(f"there is no punch {punch_id}")
            if rows[0]["void_at"]:
                raise StoreError(f"punch {punch_id} is already void (since {rows[0]['void_at']})")
            self.db.execute("UPDATE punches SET void_at = ?, void_by = ?, void_reason = ? WHERE id = ?",
                            (self._now_text(), by, reason, punch_id))
            self._mark_punch_days(punch_id)
            return rows[0]

    def punch(self, punch_id: int) -> dict | None:
        rows = self._punch_rows("SELECT * FROM punches WHERE id = ?", (punch_id,))
        return rows[0] if rows else None

    # ================================================================== gaps

    def open_gaps(self, site: str, gate: str) -> list[tuple[int, int]]:
        """Missing seq ranges below the highest seq held."""
        progress = self.gate_progress(site, gate)
        contiguous = progress.contiguous_seq
        if not progress.has_holes:
            return []
        rows = self.db.execute(
            """SELECT seq, next_seq FROM (
                   SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS next_seq FROM punches
                   WHERE site = ? AND gate = ? AND seq >= ?) AS neighbours
               WHERE next_seq > seq + 1""", (site, gate, contiguous)).fetchall()
        gaps = [(seq + 1, next_seq - 1) for seq, next_seq in rows]
        if contiguous == 0:
            first = self.db.value("SELECT MIN(seq) FROM punches WHERE site = ? AND gate = ?", (site, gate))
            if first and first > 1:
                gaps.insert(0, (1, first - 1))
        return gaps

    def record_gaps(self, site: str, gate: str, now: str) -> list[dict]:
        """Reconcile the gaps table with the gaps open now; returns the open rows.

        The gaps are worked out again inside the write transaction, under the gate's lock: a view taken
        before another writer's fill committed (this process's own earlier look, or another collector's
        burst) would record as missing punches that are on disk, and nothing would close that row."""
        open_rows = self._open_gap_rows(site, gate)
        if _ranges(open_rows) == sorted(self.open_gaps(site, gate)):
            return open_rows  # nothing changed: no write (an unlocked look may be stale, but writes nothing)
        with self.transaction():
            self.db.lock_gates([(site, gate)])
            current = sorted(self.open_gaps(site, gate))
            open_rows = self._open_gap_rows(site, gate)
            if _ranges(open_rows) == current:
                return open_rows
            covered = set()
            for row in open_rows:
                if not any(first <= row["first"] and row["last"] <= last for first, last in current):
                    self.db.execute("UPDATE gaps SET filled_at = ? WHERE id = ?", (now, row["id"]))
                else:
                    covered.add((row["first"], row["last"]))
            for first, last in current:
                if (first, last) not in covered:
                    self.db.execute("INSERT INTO gaps (site, gate, first, last, detected_at) VALUES (?, ?, ?, ?, ?)",
                                    (site, gate, first, last, now))
            return self._open_gap_rows(site, gate)

    def _open_gap_rows(self, site: str, gate: str) -> list[dict]:
        return self._rows("SELECT * FROM gaps WHERE site = ? AND gate = ? AND filled_at IS NULL ORDER BY first, id",
                          (site, gate))

    def note_resend(self, gap_id: int, now: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE gaps SET requested_at = ?, requests = requests + 1 WHERE id = ?", (now, gap_id))

    def gaps(self) -> list[dict]:
        return self._rows("SELECT * FROM gaps ORDER BY id")

    # ================================================================== reading

    def punch_count(self) -> int:
        return self.db.value("SELECT COUNT(*) FROM punches")

    def punches(self, *, site: str | None = None, start: str | None = None, end: str | None = None,
                gate: str | None = None) -> list[dict]:
        """Gate and manual punches (void ones included, marked) in [start, end), oldest first."""
        clauses, params = [], []
        for column, op, value in (("site", "=", site), ("gate", "=", gate), ("time", ">=", start),
                                  ("time", "<", end)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(f"p.{c}" for c in clauses)) if clauses else ""
        # NULLS FIRST: manual punches (no gate, no seq) sort the same on both engines.
        return self._punch_rows(f"SELECT p.*, {self._delivery()} FROM punches p LEFT JOIN gates g ON g.site = p.site "
                                f"AND g.gate = p.gate{where} ORDER BY p.time, p.site, p.gate NULLS FIRST, "
                                "p.seq NULLS FIRST, p.id", params)

    def _delivery(self) -> str:
        """The gate's declared delivery interval (hours), NULL for a live gate or an older schema."""
        return "g.delivery_hours" if self.has("gate_delivery") else "NULL AS delivery_hours"

    def gate_punch_rows(self, site: str, gate: str, first: int, last: int) -> list[dict]:
        return self._punch_rows(f"SELECT p.*, {self._delivery()} FROM punches p LEFT JOIN gates g ON g.site = p.site "
                                "AND g.gate = p.gate WHERE p.site = ? AND p.gate = ? AND p.seq BETWEEN ? AND ? "
                                "ORDER BY p.seq", (site, gate, first, last))

    def gate_punch_bodies(self, site: str, gate: str, first: int = 1, last: int | None = None) -> list[bytes]:
        """The gate's punches from seq ``first`` to ``last`` as the gate signed them (None where damaged)."""
        return [row["body"] for row in self._gate_rows("site = ? AND gate = ? AND seq BETWEEN ? AND ?",
                                                       (site, gate, first, last if last is not None else 2**62),
                                                       "ORDER BY seq")]

    # ------------------------------------------------------------------ one card's punches at one gate
    #
    # A version 3 punch names its gate's previous punch of the same card (``cprev``): these are the reads
    # that follow that chain. Rows are gate_punch_rows' (``signed_fields`` gives back what the gate signed);
    # manual punches, which no gate signed, have no gate and are never among them. They go through the
    # card's index (SQLite: punches_card_time; PostgreSQL: punches_card in each month), which holds the
    # card's own few punches a day, and no index is added for them. The gate's unique (site, gate, seq)
    # index would walk every other card's punches between two of this card's, and, for a card's nearest
    # punch before or after a seq, as far as it takes (a card that never came back: to the end of the
    # gate's history). SQLite's planner, which has no statistics here, takes that index whenever it may:
    # ``p.site || ''`` (the same text) keeps it off, since the site is the index's first column.

    def card_punch_rows(self, site: str, gate: str, card: str, first_seq: int, last_seq: int) -> list[dict]:
        """The punches of ``card`` at ``gate`` with first_seq <= seq <= last_seq, in seq order."""
        return self._card_rows(site, gate, card, "BETWEEN ? AND ?", (first_seq, last_seq), "")

    def card_punch_before(self, site: str, gate: str, card: str, seq: int) -> dict | None:
        """The punch of ``card`` at ``gate`` with the highest seq below ``seq``, or None."""
        rows = self._card_rows(site, gate, card, "< ?", (seq,), "DESC LIMIT 1")
        return rows[0] if rows else None

    def card_punch_after(self, site: str, gate: str, card: str, seq: int) -> dict | None:
        """The punch of ``card`` at ``gate`` with the lowest seq above ``seq``, or None."""
        rows = self._card_rows(site, gate, card, "> ?", (seq,), "LIMIT 1")
        return rows[0] if rows else None

    def _card_rows(self, site: str, gate: str, card: str, seq_test: str, seqs: tuple, order: str) -> list[dict]:
        return self._punch_rows(f"SELECT p.*, {self._delivery()} FROM punches p LEFT JOIN gates g ON g.site = p.site "
                                f"AND g.gate = p.gate WHERE p.card = ? AND p.site || '' = ? AND p.gate = ? "
                                f"AND p.seq {seq_test} ORDER BY p.seq {order}", (card, site, gate, *seqs))

    def _punch_rows(self, sql: str, params=()) -> list[dict]:
        return self._gate_boots().rows(self._rows(sql, params))

    def _gate_boots(self) -> GateBoots:
        """The gate boots of this Store's connection, with the ids it has met (collector.store.gate_boots)."""
        boots = self.__dict__.get("_boots")
        if boots is None:
            boots = self.__dict__["_boots"] = GateBoots(self.db)
        return boots
