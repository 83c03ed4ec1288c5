"""Daily records kept as data, and the marks that say which of them a change has made stale.

A day (worker, site, local date) is what ``collector.attendance.rules`` makes of the punches; it is kept
in ``days`` so that a read is a look-up. Whatever shapes a day (a punch stored, a manual punch, a void,
a punch's flags, a card window, an assignment, a site's rules, a gate's delivery interval) leaves a mark
in ``day_marks`` in the transaction that makes the change: the mark commits with the change or not at
all. ``collector.attendance.days`` recomputes what the marks name and removes exactly the marks it read,
so a change committed while it worked keeps its own mark (never lost), and recomputing a day twice writes
the same record (never doubled).

A mark names a site ('' for every site the worker has anything at), a worker or a card (neither: every
worker of the site), and the moment from which days may have changed ('' for the beginning).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from gate_agent.protocol import parse_time

from .connection import Connection

#: Marks per INSERT statement (SQLite allows 32,766 parameters in one; four a mark).
_MARK_ROWS = 500


@dataclass(frozen=True, slots=True)
class Mark:
    id: int
    site: str  # '' : every site
    worker: str | None
    card: str | None  # a gate punch's card: whoever held it
    since: str  # UTC text, '' : from the beginning


@dataclass(frozen=True, slots=True, eq=False)
class StoredDay:
    """One kept day: the record as the rules gave it while its last shift may still be open, and (when
    ``open_until`` is set) the record once that shift has run out."""

    site: str
    worker: str
    day: str  # local date, YYYY-MM-DD
    record: dict
    open_until: str | None  # UTC text: the day reads as ``record`` until then, as ``after`` from then on
    after: dict | str | None  # as read from the database: JSON text, decoded only by a read that needs it

    def as_of(self, now: datetime) -> dict:
        # Compared as times, not as text: the text holds milliseconds, and a shift has run out from the
        # first microsecond past ``open_until`` (``rules.resolve_and_pair``).
        if self.open_until is None or now <= parse_time(self.open_until):
            return self.record
        return self.after_record()

    def after_record(self) -> dict | None:
        return json.loads(self.after) if isinstance(self.after, str) else self.after

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredDay):
            return NotImplemented
        return ((self.site, self.worker, self.day, self.record, self.open_until, self.after_record())
                == (other.site, other.worker, other.day, other.record, other.open_until, other.after_record()))

    __hash__ = None


class DayQueries:
    """Mixed into Store, whose ``db``, ``has`` and ``_now_text`` it uses."""

    db: Connection

    # ================================================================== marks (inside the change's transaction)

    def _mark_days(self, *, site: str, since: str | None, worker: str | None = None, card: str | None = None) -> None:
        """Say that days may have changed from ``since`` (None: from the beginning) for ``worker``, for
        whoever held ``card``, or (neither) for everyone at ``site`` ('' : every site)."""
        if not self.has("days"):
            return
        self.db.execute("INSERT INTO day_marks (site, worker, card, since, made_at) VALUES (?, ?, ?, ?, ?)",
                        (site, worker, card, since or "", self._now_text()))

    def _mark_card_days(self, *, site: str, card: str, since: str) -> None:
        """A gate punch's mark. Inside a transaction the marks of its punches are gathered (one per site and
        card, from the earliest time) and written in one statement just before it commits: a mark per
        punch was a second insert for every punch stored. A rollback forgets them with the punches."""
        if not self.has("days"):
            return
        if not self.db.in_transaction:  # a statement of its own, as the change it follows
            self._mark_days(site=site, card=card, since=since)
            return
        pending = self.db.at_commit("card_day_marks", self._write_card_marks)
        key = (site, card)
        if key not in pending or since < pending[key]:
            pending[key] = since

    def _write_card_marks(self, pending: dict) -> None:
        # One statement of many rows: executemany is still a statement per row on PostgreSQL's side.
        made = self._now_text()
        marks = [(site, card, since, made) for (site, card), since in pending.items()]
        for at in range(0, len(marks), _MARK_ROWS):
            chunk = marks[at:at + _MARK_ROWS]
            self.db.execute("INSERT INTO day_marks (site, card, since, made_at) VALUES "
                            + ", ".join(["(?, ?, ?, ?)"] * len(chunk)), [value for mark in chunk for value in mark])

    def _mark_punch_days(self, punch_id: int) -> None:
        """Days a stored punch takes part in: its worker's (a manual punch) or its card holder's."""
        row = self.db.record("SELECT site, time, card, worker, source FROM punches WHERE id = ?", (punch_id,))
        if row is not None:
            if row["source"] == "manual":
                self._mark_days(site=row["site"], worker=row["worker"], since=row["time"])
            else:
                self._mark_days(site=row["site"], card=row["card"] or "", since=row["time"])

    def mark_site_days(self, sites: Iterable[str] | None = None, since: str | None = None) -> None:
        """Every day of these sites (None: of every site) from ``since`` is to be recomputed (a restore, an
        operator's rebuild)."""
        with self.transaction():
            for site in (self.db.column("SELECT site FROM sites ORDER BY site") if sites is None else sites):
                self._mark_days(site=site, since=since)

    # ================================================================== marks (the maintainer)

    def day_marks(self, *, site: str | None = None, worker: str | None = None, cards: Iterable[str] = (),
                  limit: int | None = None) -> list[Mark]:
        """Marks oldest first: all of them, or those that may concern ``site`` (its own and every-site
        ones), or ``worker`` (with the cards they ever held) at any site. With ``limit``: the oldest
        ``limit`` marks and every other mark naming the same site and worker, card or whole site, so that
        one round settles a worker's backlog with one recomputation (a month of a gate's punches leaves a
        mark per punch)."""
        clauses, params = [], []
        if site is not None:
            clauses.append("site IN (?, '')")
            params.append(site)
        if worker is not None:
            cards = list(cards)
            who = ["worker = ?", "(worker IS NULL AND card IS NULL)"]
            params.append(worker)
            if cards:
                who.append(f"card IN ({', '.join('?' for _ in cards)})")
                params += cards
            clauses.append("(" + " OR ".join(who) + ")")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = f"SELECT id, site, worker, card, since FROM day_marks{where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        marks = [Mark(*row) for row in self.db.execute(sql, params).fetchall()]
        if limit is None or not marks:
            return marks
        keys = {(m.site, m.worker, m.card) for m in marks}
        found = {m.id: m for m in marks}
        for column, values in (("card", {c for _, w, c in keys if c is not None}),
                               ("worker", {w for _, w, c in keys if w is not None}),
                               ("site", {s for s, w, c in keys if w is None and c is None})):
            values = sorted(values)
            for start in range(0, len(values), 500):
                chunk = values[start:start + 500]
                extra = "worker IS NULL AND card IS NULL AND " if column == "site" else ""
                for row in self.db.execute(f"SELECT id, site, worker, card, since FROM day_marks WHERE {extra}"
                                           f"{column} IN ({', '.join('?' for _ in chunk)})", chunk).fetchall():
                    mark = Mark(*row)
                    if (mark.site, mark.worker, mark.card) in keys:
                        found[mark.id] = mark
        return [found[ident] for ident in sorted(found)]

    def drop_day_marks(self, ids: Iterable[int]) -> int:
        """Remove exactly these marks (a mark committed since they were read stays)."""
        ids = sorted(set(ids))
        dropped = 0
        with self.transaction():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                dropped += self.db.execute(f"DELETE FROM day_marks WHERE id IN ({', '.join('?' for _ in chunk)})",
                                           chunk).rowcount
        return dropped

    def pending_day_marks(self) -> int:
        return self.db.value("SELECT COUNT(*) FROM day_marks") if self.has("days") else 0

    def oldest_day_mark(self) -> str | None:
        """When the oldest mark still waiting was made (UTC text), or None."""
        return self.db.value("SELECT MIN(made_at) FROM day_marks") if self.has("days") else None

    def workers_at_site(self, site: str) -> list[str]:
        """Everyone whose days at ``site`` may exist: kept days, manual punches, holders of cards that
        punched there."""
        found = set(self.db.column("SELECT DISTINCT worker FROM days WHERE site = ?", (site,)))
        found |= set(self.db.column("SELECT DISTINCT worker FROM punches WHERE site = ? AND source = 'manual' "
                                    "AND worker IS NOT NULL", (site,)))
        found |= set(self.db.column("SELECT DISTINCT c.worker FROM cards c WHERE EXISTS "
                                    "(SELECT 1 FROM punches p WHERE p.card = c.uid AND p.site = ?)", (site,)))
        return sorted(found)

    def sites_of_worker(self, worker: str) -> list[str]:
        """Every site where ``worker`` may have days: kept days, manual punches, punches of their cards."""
        found = set(self.db.column("SELECT DISTINCT site FROM days WHERE worker = ?", (worker,)))
        found |= set(self.db.column("SELECT DISTINCT site FROM punches WHERE source = 'manual' AND worker = ?",
                                    (worker,)))
        found |= set(self.db.column("SELECT DISTINCT p.site FROM punches p WHERE p.card IN "
                                    "(SELECT uid FROM cards WHERE worker = ?)", (worker,)))
        return sorted(found)

    def holders_of(self, card: str) -> list[str]:
        return sorted(set(self.db.column("SELECT worker FROM cards WHERE uid = ?", (card,))))

    def worker_cards(self, worker: str) -> list[str]:
        return sorted(set(self.db.column("SELECT uid FROM cards WHERE worker = ?", (worker,))))

    def worker_punches(self, site: str, worker: str, *, start: str | None = None, end: str | None = None) -> list[dict]:
        """Punches at ``site`` that may be ``worker``'s: manual ones naming them, gate ones of any card they
        ever held (whose they are at each moment is the card windows' to say), in [start, end)."""
        rows = self._worker_punch_rows(site, worker, start, end, "")
        return sorted(rows, key=_punch_order)

    def worker_punches_before(self, site: str, worker: str, before: str, limit: int) -> list[dict]:
        """``worker_punches`` made before ``before``, the latest first, at most ``limit`` of them."""
        rows = self._worker_punch_rows(site, worker, None, before,
                                       " ORDER BY p.time DESC, p.gate DESC NULLS LAST, p.seq DESC NULLS LAST, "
                                       f"p.id DESC LIMIT {int(limit)}")
        return sorted(rows, key=_punch_order, reverse=True)[:limit]

    def first_worker_punch_time(self, site: str, worker: str) -> str | None:
        times = [self.db.value(f"SELECT MIN(p.time) FROM punches p WHERE {where}", params)
                 for where, params in self._worker_punch_wheres(site, worker, None, None)]
        return min((t for t in times if t is not None), default=None)

    def _worker_punch_rows(self, site: str, worker: str, start: str | None, end: str | None, tail: str) -> list[dict]:
        rows: list[dict] = []
        for where, params in self._worker_punch_wheres(site, worker, start, end):
            rows += self._punch_rows(f"SELECT p.*, {self._delivery()} FROM punches p LEFT JOIN gates g ON "
                                     f"g.site = p.site AND g.gate = p.gate WHERE {where}{tail}", params)
        return rows

    def _worker_punch_wheres(self, site: str, worker: str, start: str | None,
                             end: str | None) -> list[tuple[str, list]]:
        """One condition per index: the worker's manual punches (by worker and time), and each card's
        punches (by card and time). One statement with OR between them reads every punch of the site on
        SQLite, whose planner then gives up both indexes."""
        bounds, bound_params = "", []
        for op, value in ((">=", start), ("<", end)):
            if value is not None:
                bounds += f" AND p.time {op} ?"
                bound_params.append(value)
        wheres = [(f"p.worker = ? AND p.source = 'manual' AND p.site = ?{bounds}", [worker, site, *bound_params])]
        wheres += [(f"p.card = ? AND p.source <> 'manual' AND p.site = ?{bounds}", [card, site, *bound_params])
                   for card in self.worker_cards(worker)]
        return wheres

    def lock_days(self, site: str, worker: str) -> bool:
        """Inside a transaction: hold (site, worker)'s days against another maintainer; False if another
        holds them now (it is recomputing them: leave them, and their marks, for later)."""
        return self.db.try_lock(f"days:{site}/{worker}")

    def replace_days(self, site: str, worker: str, since_day: str | None, days: list[StoredDay]) -> None:
        """Inside a transaction: the worker's days at ``site`` from ``since_day`` on (None: all) become ``days``."""
        if since_day is None:
            self.db.execute("DELETE FROM days WHERE site = ? AND worker = ?", (site, worker))
        else:
            self.db.execute("DELETE FROM days WHERE site = ? AND worker = ? AND day >= ?", (site, worker, since_day))
        now = self._now_text()
        self.db.executemany(
            "INSERT INTO days (site, worker, day, record, open_until, after, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(d.site, d.worker, d.day, _json(d.record), d.open_until, None if d.after is None else _json(d.after_record()), now)
             for d in days])

    # ================================================================== reading

    def stored_days(self, *, site: str | None = None, worker: str | None = None, first: str | None = None,
                    last: str | None = None, fields: tuple[str, ...] | None = None) -> list[StoredDay]:
        """Kept days, by site, worker and date; ``first``/``last`` are local dates (inclusive). With
        ``fields`` (names of ``DAY_FIELDS``), each record (and the record after its open shift has run
        out) holds those fields only, taken out of the JSON by the database: a month of a large site
        is read without decoding every day's shifts in Python."""
        clauses, params = [], []
        for column, op, value in (("site", "=", site), ("worker", "=", worker), ("day", ">=", first),
                                  ("day", "<=", last)):
            if value is not None:
                clauses.append(f"d.{column} {op} ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        if fields is None:
            rows = self.db.execute(f"SELECT d.site, d.worker, d.day, d.record, d.open_until, d.after FROM days d{where} "
                                   "ORDER BY d.site, d.worker, d.day", params).fetchall()
            return [StoredDay(site, worker, day, json.loads(record), open_until, after)
                    for site, worker, day, record, open_until, after in rows]
        rows = self.db.execute(f"SELECT d.site, d.worker, d.day, d.open_until, {self._day_fields(fields)}{where} "
                               "ORDER BY d.site, d.worker, d.day", params).fetchall()
        width = len(fields)
        converted = [(name, DAY_FIELDS[name]) for name in fields if DAY_FIELDS[name] is not str]
        days = []
        for row in rows:
            record = dict(zip(fields, row[4:4 + width], strict=True))
            after = None if row[3] is None else dict(zip(fields, row[4 + width:], strict=True))
            for held in (record, after) if after is not None else (record,):
                for name, kind in converted:
                    held[name] = _field(kind, held[name])
            days.append(StoredDay(row[0], row[1], row[2], record, row[3], after))
        return days

    def _day_fields(self, fields: tuple[str, ...]) -> str:
        """The select list and FROM clause taking ``fields`` (of ``DAY_FIELDS``) out of each day's record,
        then out of its record after the open shift: a scalar as its value, an array as JSON text. Each
        record is parsed once (PostgreSQL's ``->>`` parses the text again for every field)."""
        unknown = [name for name in fields if name not in DAY_FIELDS]
        if unknown:
            raise ValueError(f"a kept day has no field {unknown[0]!r} to read alone")
        if self.db.dialect == "postgresql":
            kinds = {str: "text", int: "bigint", list: "text"}
            shape = ", ".join(f"{name} {kinds[DAY_FIELDS[name]]}" for name in fields)
            return (", ".join(f"{alias}.{name}" for alias in ("r", "a") for name in fields)
                    + f" FROM days d CROSS JOIN LATERAL json_to_record(d.record::json) AS r({shape}) "
                      f"LEFT JOIN LATERAL json_to_record(d.after::json) AS a({shape}) ON true")
        return (", ".join(f"json_extract({column}, '$.{name}')" for column in ("d.record", "d.after") for name in fields)
                + " FROM days d")

    def last_received_at(self, site: str) -> str | None:
        """When the bank last received a punch of the site."""
        return self.db.value("SELECT MAX(received_at) FROM punches WHERE site = ?", (site,))

    def last_punch_time(self, site: str, since: str, until: str) -> str | None:
        """The site's last punch time in [since, until]."""
        return self.db.value("SELECT MAX(time) FROM punches WHERE site = ? AND time >= ? AND time <= ?",
                             (site, since, until))

    def kept_day_span(self, site: str) -> tuple[str | None, str | None]:
        """The first and last local dates of the site's kept days."""
        row = self.db.one("SELECT MIN(day), MAX(day) FROM days WHERE site = ?", (site,))
        return (row[0], row[1]) if row else (None, None)

    def day_sites(self, worker: str, first: str, last: str) -> list[str]:
        return self.db.column("SELECT DISTINCT site FROM days WHERE worker = ? AND day >= ? AND day <= ? ORDER BY site",
                              (worker, first, last))


#: Fields of a kept record that a read may take alone (``stored_days(fields=...)``), and their kind.
DAY_FIELDS = {"status": str, "worked_minutes": int, "flags": list, "first_in": str, "last_out": str,
              "error": str}  # a day the rules could not compute: why (``reports.record_dict``)


def _field(kind: type, value):
    if value is None:
        return None
    if kind is list:
        return [] if value == "[]" else json.loads(value)
    return int(value) if kind is int else value


def _json(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _punch_order(row: dict) -> tuple:
    # What ``Store.punches`` orders by: manual punches (no gate, no seq) first at the same time.
    return (row["time"], row["gate"] is not None, row["gate"] or "", row["seq"] is not None, row["seq"] or 0, row["id"])
