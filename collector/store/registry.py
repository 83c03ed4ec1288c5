"""The registry: sites, gates and their keys, the bank's keys, workers and their cards."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from gate_agent.protocol import key_id, parse_public_key, valid_id

from ..names import is_reserved_name
from ..text import NAME_MAX_CHARS, entered
from .connection import Connection
from .errors import StoreError

MAX_SHIFT_HOURS = 7 * 24
#: A gate's display name ("北门", "材料门"): what a foreman calls it, short enough for a banner line.
GATE_NAME_MAX_CHARS = 32


@dataclass(frozen=True, slots=True)
class GateKeys:
    site: str
    gate: str
    active: bool
    keys: dict  # key_id -> Ed25519PublicKey
    revoked: frozenset[str]


class RegistryQueries:
    """Mixed into Store, whose ``_one``, ``_rows``, ``transaction`` and ``open_gaps`` it uses."""

    db: Connection

    def registry_version(self) -> int:
        """Moves whenever a gate, key or card changes, by this connection or any other (ingest and the
        roster publisher reload what they cache when it does)."""
        return self.db.value("SELECT version FROM registry_version WHERE id = 1", default=0)

    def _registry_changed(self) -> None:
        """Inside the transaction of a registry change."""
        self.db.execute("UPDATE registry_version SET version = version + 1 WHERE id = 1")

    # ================================================================== sites and gates

    def add_site(self, site: str, *, timezone: str, name: str | None = None, max_shift_hours: float = 16.0) -> None:
        # nan is stored as NULL and inf breaks every day's computation; a week bounds any real shift.
        if not (isinstance(max_shift_hours, int | float) and 0 < max_shift_hours <= MAX_SHIFT_HOURS):
            raise StoreError(f"max_shift_hours must be a number of hours above 0 and at most {MAX_SHIFT_HOURS}, "
                             f"not {max_shift_hours!r}")
        name = entered(name, what="the site's name", limit=NAME_MAX_CHARS, optional=True)
        with self.transaction():
            if self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} already exists")
            self.db.execute("INSERT INTO sites (site, name, timezone, max_shift_hours, created_at) "
                            "VALUES (?, ?, ?, ?, ?)", (site, name or site, timezone, float(max_shift_hours),
                                                       self._now_text()))
            self._registry_changed()

    def site(self, site: str) -> dict | None:
        rows = self._rows("SELECT * FROM sites WHERE site = ?", (site,))
        return rows[0] if rows else None

    def sites(self) -> list[dict]:
        return self._rows("SELECT * FROM sites ORDER BY site")

    def edit_site(self, site: str, *, name: str | None = None, max_shift_hours: float | None = None,
                  timezone: str | None = None) -> dict:
        """Change a site's name, maximum shift or time zone (the zone only while it has no punch: local
        dates already reported must not move). Returns what changed."""
        name = entered(name, what="the site's name", limit=NAME_MAX_CHARS, optional=True)
        with self.transaction():
            current = self.site(site)
            if current is None:
                raise StoreError(f"site {site} does not exist")
            if max_shift_hours is not None and not (
                    isinstance(max_shift_hours, int | float) and 0 < max_shift_hours <= MAX_SHIFT_HOURS):
                raise StoreError(f"max_shift_hours must be above 0 and at most {MAX_SHIFT_HOURS}")
            changes = {k: v for k, v in (("name", name), ("max_shift_hours", max_shift_hours),
                                         ("timezone", timezone)) if v is not None and v != current[k]}
            if "timezone" in changes and self._one("SELECT 1 FROM punches WHERE site = ? LIMIT 1", (site,)):
                raise StoreError(f"site {site} has punches: its time zone decides their local dates and stays "
                                 f"{current['timezone']}")
            if changes:
                columns = ", ".join(f"{k} = ?" for k in changes)
                self.db.execute(f"UPDATE sites SET {columns} WHERE site = ?", (*changes.values(), site))
                self._registry_changed()
                if changes.keys() & {"max_shift_hours", "timezone"}:
                    self._mark_days(site=site, since=None)
            return {k: (current[k], v) for k, v in changes.items()}

    def add_gate(self, site: str, gate: str, public_key: str, *, reserved: Iterable[str] = (),
                 display: str | None = None) -> str:
        """Register a gate, or add a key to one (rotation: earlier keys stay valid for earlier punches).
        Returns 'added', 'rotated' or 'unchanged'.

        The broker knows a gate by its certificate, which is named after the gate id alone, so an id is
        unique across sites and never the name of another certificate of the bank's PKI or of a collector
        session (names.is_reserved_name and ``reserved``, e.g. the broker server's name)."""
        if not valid_id(site) or not valid_id(gate):
            raise StoreError(f"{site!r}/{gate!r} is not a site/gate id (letters, digits, '_', '.', '-'; 1-64)")
        if is_reserved_name(gate) or gate in set(reserved):
            raise StoreError(f"gate id {gate!r} is reserved: a certificate of the bank's PKI or a session of the "
                             "collector has that name, and the broker knows clients by certificate name")
        key = parse_public_key(public_key)
        kid = key_id(key)
        display = self._display_name(display) if display is not None else None
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist (collector site add {site} --timezone ...)")
            elsewhere = self.db.column("SELECT site FROM gates WHERE gate = ? AND site != ? ORDER BY site", (gate, site))
            if elsewhere:
                raise StoreError(f"gate id {gate} is already used at site {', '.join(elsewhere)}; a gate's "
                                 "certificate is named after its id, so ids must be unique across sites")
            other = self.db.record("SELECT site, gate FROM gate_keys WHERE key_id = ? AND NOT (site = ? AND gate = ?)",
                                   (kid, site, gate))
            if other:
                raise StoreError(f"that public key already belongs to gate {other['site']}/{other['gate']}")
            exists = self._one("SELECT 1 FROM gates WHERE site = ? AND gate = ?", (site, gate))
            if display is not None:
                self._set_display(site, gate, display, exists=bool(exists))
            if self._one("SELECT 1 FROM gate_keys WHERE site = ? AND gate = ? AND key_id = ?", (site, gate, kid)):
                return "unchanged"
            now = self._now_text()
            if not exists:
                self.db.execute("INSERT INTO gates (site, gate, active, added_at) VALUES (?, ?, 1, ?)",
                                (site, gate, now))
                self.db.execute("INSERT INTO gate_state (site, gate) VALUES (?, ?) ON CONFLICT (site, gate) DO NOTHING",
                                (site, gate))
                if display is not None:
                    self._set_display(site, gate, display, exists=True)  # the new row takes the name checked above
            self.db.execute("INSERT INTO gate_keys (site, gate, key_id, public_key, added_at) VALUES (?, ?, ?, ?, ?)",
                            (site, gate, kid, public_key.strip(), now))
            self._registry_changed()
            return "rotated" if exists else "added"

    def set_gate_active(self, site: str, gate: str, active: bool) -> None:
        """Activate or deactivate a gate; a deactivation keeps its moment (what the gate sends after it is news)."""
        with self.transaction():
            if self.has("gate_names"):
                # Deactivating a gate already inactive keeps the moment it was first retired.
                cursor = self.db.execute(
                    "UPDATE gates SET active = ?, deactivated_at = CASE WHEN ? = 1 THEN NULL "
                    "WHEN active = 0 AND deactivated_at IS NOT NULL THEN deactivated_at ELSE ? END "
                    "WHERE site = ? AND gate = ?", (int(active), int(active), self._now_text(), site, gate))
            else:
                cursor = self.db.execute("UPDATE gates SET active = ? WHERE site = ? AND gate = ?",
                                         (int(active), site, gate))
            if cursor.rowcount == 0:
                raise StoreError(f"gate {site}/{gate} is not registered")
            self._registry_changed()

    def name_gate(self, site: str, gate: str, display: str | None) -> str | None:
        """Give a gate the name its site calls it by ("北门"), or take it away (None); the id stays what the
        gate, its certificate and its punches are known by. Returns the name it had."""
        display = self._display_name(display) if display is not None else None
        with self.transaction():
            row = self.db.record("SELECT display_name FROM gates WHERE site = ? AND gate = ?", (site, gate))
            if row is None:
                raise StoreError(f"gate {site}/{gate} is not registered")
            self._set_display(site, gate, display, exists=True)
            return row["display_name"]

    def _display_name(self, display: object) -> str:
        if not self.has("gate_names"):
            raise StoreError("this database has no gate names yet (run `collector db upgrade`)")
        return entered(display, what="the gate's display name", limit=GATE_NAME_MAX_CHARS)

    def _set_display(self, site: str, gate: str, display: str | None, *, exists: bool) -> None:
        """Inside a transaction: one name per gate of a site (two gates called 北门 would tell a foreman
        nothing), compared as people read it (letter case aside)."""
        if display is not None:
            for row in self.db.rows("SELECT gate, display_name FROM gates WHERE site = ? AND gate != ? "
                                    "AND display_name IS NOT NULL", (site, gate)):
                if row["display_name"].casefold() == display.casefold():
                    raise StoreError(f"gate {site}/{row['gate']} is already called {row['display_name']!r}; a "
                                     "site's gates have different names")
        if exists:
            self.db.execute("UPDATE gates SET display_name = ? WHERE site = ? AND gate = ?", (display, site, gate))

    def revoke_key(self, site: str, gate: str, kid: str) -> None:
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE gate_keys SET revoked_at = ? WHERE site = ? AND gate = ? AND key_id = ? AND revoked_at IS NULL",
                (self._now_text(), site, gate, kid))
            if cursor.rowcount == 0:
                raise StoreError(f"gate {site}/{gate} has no unrevoked key {kid}")
            self._registry_changed()

    def gate_keys(self) -> dict[tuple[str, str], GateKeys]:
        gates = {(r["site"], r["gate"]): r for r in self._rows("SELECT site, gate, active FROM gates")}
        keys: dict[tuple[str, str], dict] = {k: {} for k in gates}
        revoked: dict[tuple[str, str], set] = {k: set() for k in gates}
        for row in self._rows("SELECT * FROM gate_keys"):
            ident = (row["site"], row["gate"])
            keys.setdefault(ident, {})[row["key_id"]] = parse_public_key(row["public_key"])
            if row["revoked_at"]:
                revoked.setdefault(ident, set()).add(row["key_id"])
        return {ident: GateKeys(g["site"], g["gate"], bool(g["active"]), keys[ident], frozenset(revoked[ident]))
                for ident, g in gates.items()}

    def record_bank_key(self, public_key: str) -> None:
        """Remember a public key the bank signs with (once; the first use is its date)."""
        kid = key_id(public_key)
        with self.transaction():
            self.db.execute("INSERT INTO bank_keys (key_id, public_key, added_at) VALUES (?, ?, ?) "
                            "ON CONFLICT (key_id) DO NOTHING", (kid, public_key.strip(), self._now_text()))

    def bank_keys(self) -> list[dict]:
        """Every bank public key on record, oldest first; empty before the daemon first ran."""
        if not self.db.table_exists("bank_keys"):  # a read-only view of a database not yet migrated
            return []
        return self._rows("SELECT key_id, public_key, added_at FROM bank_keys ORDER BY added_at")

    def public_keys(self, site: str, gate: str) -> list[dict]:
        return self._rows("SELECT key_id, public_key, added_at, revoked_at FROM gate_keys "
                          "WHERE site = ? AND gate = ? ORDER BY added_at", (site, gate))

    def gates(self, site: str | None = None, *, with_gaps: bool = True) -> list[dict]:
        """Each gate with its ingest state, last status and last online heartbeat (with the times the bank
        received them), for `collector gates`, the dashboard and finality."""
        # A read-only view of a database not yet migrated knows no heartbeat: its days stay provisional.
        heartbeat = "s.heartbeat, s.heartbeat_at" if self.has("heartbeats") else "NULL AS heartbeat, NULL AS heartbeat_at"
        named = ("g.display_name, g.deactivated_at" if self.has("gate_names")
                 else "NULL AS display_name, NULL AS deactivated_at")
        sql = f"""SELECT g.site, g.gate, g.active, g.added_at, {named}, s.contiguous_seq, s.max_seq, s.last_punch_at,
                         s.status, s.status_state, s.status_at, {heartbeat}
                  FROM gates g LEFT JOIN gate_state s ON s.site = g.site AND s.gate = g.gate"""
        params: tuple = ()
        if site is not None:
            sql += " WHERE g.site = ?"
            params = (site,)
        rows = self._rows(sql + " ORDER BY g.site, g.gate", params)
        for row in rows:
            row["status"] = json.loads(row["status"]) if row["status"] else None
            row["heartbeat"] = json.loads(row["heartbeat"]) if row["heartbeat"] else None
            row["open_gaps"] = self.open_gaps(row["site"], row["gate"]) if with_gaps else None
        return rows

    # ================================================================== workers and cards

    def add_worker(self, worker: str, *, name: str, employer: str | None = None, cards: Iterable[str] = (),
                   valid_from: str | None = None, sites: Iterable[str] = (), by: str = "operator",
                   team: str | None = None, trade: str | None = None) -> None:
        """A new worker with cards and the sites they work at (both from ``valid_from``; None: always), and
        their work team (班组) and trade (工种) when known."""
        name = entered(name, what="the name", limit=NAME_MAX_CHARS)
        employer = entered(employer, what="the employer", limit=NAME_MAX_CHARS, optional=True)
        team = entered(team, what="the team", limit=NAME_MAX_CHARS, optional=True)
        trade = entered(trade, what="the trade", limit=NAME_MAX_CHARS, optional=True)
        by = entered(by, what="who adds the worker", limit=NAME_MAX_CHARS)
        with self.transaction():
            if self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} already exists")
            if team or trade:
                if not self.has("teams"):
                    raise StoreError("this database has no teams or trades yet (run `collector db upgrade`)")
                self.db.execute("INSERT INTO workers (worker, name, employer, team, trade, created_at) "
                                "VALUES (?, ?, ?, ?, ?, ?)", (worker, name, employer, team, trade, self._now_text()))
            else:
                self.db.execute("INSERT INTO workers (worker, name, employer, created_at) VALUES (?, ?, ?, ?)",
                                (worker, name, employer, self._now_text()))
            for uid in cards:
                self._assign_card(uid, worker, valid_from)
            for site in sites:
                self.assign(worker, site, by=by, valid_from=valid_from)

    def lock_worker(self, worker: str) -> bool:
        """Inside a transaction: wait for every other writer of this worker's limited rows (disputes,
        evidence requests) until it ends, so a count then an insert cannot race past a limit (a row lock on
        PostgreSQL, where READ COMMITTED lets two counts see the same number; SQLite's writer already
        holds the database). False if there is no such worker."""
        return self.db.execute("UPDATE workers SET worker = worker WHERE worker = ?", (worker,)).rowcount == 1

    def lock_site(self, site: str) -> bool:
        """Inside a transaction: wait for every other writer that locked this site until it ends, so a count
        of its workers then an assignment cannot race past a bound (as ``lock_worker``). False if there is
        no such site."""
        return self.db.execute("UPDATE sites SET site = site WHERE site = ?", (site,)).rowcount == 1

    def assign_card(self, uid: str, worker: str, *, valid_from: str | None = None, kind: str = "uid",
                    masked: str | None = None) -> None:
        """``uid`` is what punches name the card by: its UID, or a bank card's keyed identifier (``kind``
        bank, shown by ``masked``, the first 6 and last 4 digits of its number)."""
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            self._assign_card(uid, worker, valid_from, kind=kind, masked=masked)

    def _assign_card(self, uid: str, worker: str, valid_from: str | None, *, kind: str = "uid",
                     masked: str | None = None) -> None:
        """A card belongs to one worker at a time. With no ``valid_from``, a card never held before is
        valid from the beginning (its earlier unattributed punches become the worker's); a card
        held before starts now."""
        if kind == "uid" and len(uid) == 8 and uid.startswith("08"):
            raise StoreError(f"card {uid} is a random UID (4 bytes starting 08): it changes at every tap and "
                             "names no card; register a bank card with `collector card register-bank`")
        holder = self.db.value("SELECT worker FROM cards WHERE uid = ? AND valid_to IS NULL", (uid,))
        if holder is not None:
            raise StoreError(f"card {uid} is held by worker {holder}; revoke it first")
        last_end = self.db.value("SELECT MAX(valid_to) FROM cards WHERE uid = ?", (uid,))
        if valid_from is None:
            valid_from = self._now_text() if last_end else None
        elif last_end and valid_from < last_end:
            raise StoreError(f"card {uid} was held by someone else until {last_end}")
        if kind == "uid" and masked is None:
            self.db.execute("INSERT INTO cards (uid, worker, valid_from, valid_to, added_at) VALUES (?, ?, ?, NULL, ?)",
                            (uid, worker, valid_from, self._now_text()))
        else:
            self.db.execute("INSERT INTO cards (uid, worker, valid_from, valid_to, added_at, kind, masked) "
                            "VALUES (?, ?, ?, NULL, ?, ?, ?)", (uid, worker, valid_from, self._now_text(), kind, masked))
        self._registry_changed()
        self._mark_days(site="", worker=worker, since=valid_from)

    def revoke_card(self, uid: str, *, at: str | None = None) -> str:
        """End the current holder's window (a lost or returned card). Returns the former holder."""
        with self.transaction():
            card = self.db.record("SELECT id, worker, valid_from FROM cards WHERE uid = ? AND valid_to IS NULL", (uid,))
            if card is None:
                raise StoreError(f"card {uid} is not held by anyone")
            at = at or self._now_text()
            if card["valid_from"] and at < card["valid_from"]:
                raise StoreError(f"card {uid} was assigned at {card['valid_from']}, after {at}")
            self.db.execute("UPDATE cards SET valid_to = ? WHERE id = ?", (at, card["id"]))
            self._registry_changed()
            self._mark_days(site="", worker=card["worker"], since=at)
            return card["worker"]

    def worker(self, worker: str) -> dict | None:
        rows = [w for w in self.workers() if w["worker"] == worker]
        return rows[0] if rows else None

    def workers(self, site: str | None = None) -> list[dict]:
        """Every worker (or those assigned to ``site`` now) with cards, the sites they are assigned to now,
        and when they were removed."""
        sites_now = self.has("assignments")
        removed = "removed_at" if sites_now else "NULL AS removed_at"
        workers = self._rows(f"SELECT worker, name, employer{self._team_columns()}, {removed} FROM workers "
                             "ORDER BY worker")
        cards: dict[str, list] = {}
        for row in self._rows(f"SELECT uid, worker, valid_from, valid_to, {self._card_kind_columns()} "
                              "FROM cards ORDER BY id"):
            cards.setdefault(row["worker"], []).append(
                {"uid": row["uid"], "valid_from": row["valid_from"], "valid_to": row["valid_to"],
                 "kind": row["kind"], "masked": row["masked"]})
        assigned: dict[str, list] = {}
        if sites_now:
            for row in self._rows("SELECT worker, site FROM assignments WHERE valid_to IS NULL ORDER BY site"):
                assigned.setdefault(row["worker"], []).append(row["site"])
        for worker in workers:
            worker["cards"] = cards.get(worker["worker"], [])
            worker["sites"] = assigned.get(worker["worker"], [])
        if site is not None:
            workers = [w for w in workers if site in w["sites"]]
        return workers

    def _card_kind_columns(self, prefix: str = "") -> str:
        if self.has("card_kinds"):
            return f"{prefix}kind, {prefix}masked"
        return "'uid' AS kind, NULL AS masked"

    def people(self) -> list[dict]:
        """Every worker ever registered (removed ones too): id, name, employer. What a read names people by."""
        return self._rows(f"SELECT worker, name, employer{self._team_columns()} FROM workers ORDER BY worker")

    def _team_columns(self) -> str:
        return ", team, trade" if self.has("teams") else ", NULL AS team, NULL AS trade"

    def people_named(self, workers: Iterable[str]) -> list[dict]:
        """``people()`` of these workers only (those registered)."""
        workers = sorted(set(workers))
        found: list[dict] = []
        for start in range(0, len(workers), 500):
            chunk = workers[start:start + 500]
            found += self._rows(f"SELECT worker, name, employer{self._team_columns()} FROM workers WHERE worker IN "
                                f"({', '.join('?' for _ in chunk)}) ORDER BY worker", chunk)
        return found

    def card_windows(self, worker: str | None = None) -> list[dict]:
        """Who held which card when (of one worker, or everyone's)."""
        where, params = ("WHERE c.worker = ? ", (worker,)) if worker is not None else ("", ())
        return self._rows(f"SELECT c.uid, c.worker, c.valid_from, c.valid_to, w.name, w.employer, "
                          f"{self._card_kind_columns('c.')} "
                          f"FROM cards c JOIN workers w ON w.worker = c.worker {where}ORDER BY c.uid, c.valid_from", params)

    def cards_valid_at(self, moment: str, site: str | None = None) -> set[str]:
        """Cards held at ``moment``; with ``site``, only those of workers assigned to it then (its roster)."""
        sql = ("SELECT DISTINCT c.uid FROM cards c WHERE (c.valid_from IS NULL OR c.valid_from <= ?) "
               "AND (c.valid_to IS NULL OR c.valid_to > ?)")
        params: tuple = (moment, moment)
        if site is not None:
            sql += (" AND EXISTS (SELECT 1 FROM assignments a WHERE a.worker = c.worker AND a.site = ? "
                    "AND (a.valid_from IS NULL OR a.valid_from <= ?) AND (a.valid_to IS NULL OR a.valid_to > ?))")
            params += (site, moment, moment)
        return set(self.db.column(sql, params))

    # ================================================================== workers at sites

    def assign(self, worker: str, site: str, *, by: str, valid_from: str | None = None,
               valid_to: str | None = None) -> None:
        """The worker works at ``site`` from ``valid_from`` (None: from the beginning) until ``valid_to``."""
        by = entered(by, what="who assigns the worker", limit=NAME_MAX_CHARS)
        with self.transaction():
            self._existing_worker(worker)
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            if valid_from and valid_to and valid_to <= valid_from:
                raise StoreError(f"the assignment would end ({valid_to}) before it starts ({valid_from})")
            for row in self._rows("SELECT valid_from, valid_to FROM assignments WHERE worker = ? AND site = ?",
                                  (worker, site)):
                if _overlap(row["valid_from"], row["valid_to"], valid_from, valid_to):
                    raise StoreError(f"{worker} is already assigned to {site} "
                                     f"from {row['valid_from'] or 'the beginning'} to {row['valid_to'] or 'now'}")
            self.db.execute("INSERT INTO assignments (worker, site, valid_from, valid_to, added_at, added_by) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (worker, site, valid_from, valid_to, self._now_text(), by))
            self._registry_changed()
            self._mark_days(site=site, worker=worker, since=valid_from)

    def unassign(self, worker: str, site: str, *, at: str, by: str) -> None:
        """End the worker's open assignment to ``site`` at ``at`` (earlier days stay the site's)."""
        by = entered(by, what="who ends the assignment", limit=NAME_MAX_CHARS)
        with self.transaction():
            held = self.db.record("SELECT id, valid_from FROM assignments WHERE worker = ? AND site = ? "
                                  "AND valid_to IS NULL", (worker, site))
            if held is None:
                raise StoreError(f"{worker} is not assigned to {site} now")
            if held["valid_from"] and at <= held["valid_from"]:
                raise StoreError(f"{worker} was assigned to {site} at {held['valid_from']}, after {at}")
            self.db.execute("UPDATE assignments SET valid_to = ? WHERE id = ?", (at, held["id"]))
            self._registry_changed()
            self._mark_days(site=site, worker=worker, since=at)

    def move_assignment_start(self, worker: str, site: str, *, valid_from: str | None, by: str) -> str | None:
        """The worker's open assignment to ``site`` starts at ``valid_from`` instead (an entry date
        corrected); the change is kept in ``worker_changes`` (field ``assignment SITE from``) with who made
        it. Returns the start it had. StoreError if it would overlap an earlier assignment to the site."""
        by = entered(by, what="who changes the assignment", limit=NAME_MAX_CHARS)
        with self.transaction():
            held = self.db.record("SELECT id, valid_from FROM assignments WHERE worker = ? AND site = ? "
                                  "AND valid_to IS NULL", (worker, site))
            if held is None:
                raise StoreError(f"{worker} is not assigned to {site} now")
            for row in self._rows("SELECT valid_from, valid_to FROM assignments WHERE worker = ? AND site = ? "
                                  "AND id <> ?", (worker, site, held["id"])):
                if _overlap(row["valid_from"], row["valid_to"], valid_from, None):
                    raise StoreError(f"{worker} was assigned to {site} from {row['valid_from'] or 'the beginning'} "
                                     f"to {row['valid_to']}, after {valid_from or 'the beginning'}")
            if held["valid_from"] == valid_from:
                return valid_from
            self.db.execute("UPDATE assignments SET valid_from = ? WHERE id = ?", (valid_from, held["id"]))
            if self.has("teams"):
                self.db.execute("INSERT INTO worker_changes (worker, field, before, after, changed_at, changed_by) "
                                "VALUES (?, ?, ?, ?, ?, ?)", (worker, f"assignment {site} from", held["valid_from"],
                                                              valid_from, self._now_text(), by))
            self._registry_changed()
            earliest = None if held["valid_from"] is None or valid_from is None else min(held["valid_from"], valid_from)
            self._mark_days(site=site, worker=worker, since=earliest)
            return held["valid_from"]

    def card_taps(self, worker: str, site: str, *, start: str | None = None, end: str | None = None) -> int:
        """Gate punches at ``site`` of cards while ``worker`` held them, in [start, end): the taps an
        assignment's change may leave outside it."""
        sql = ("SELECT COUNT(*) FROM punches p JOIN cards c ON c.uid = p.card AND c.worker = ? WHERE p.site = ? "
               "AND (c.valid_from IS NULL OR p.time >= c.valid_from) AND (c.valid_to IS NULL OR p.time < c.valid_to)")
        params: tuple = (worker, site)
        if start is not None:
            sql, params = sql + " AND p.time >= ?", params + (start,)
        if end is not None:
            sql, params = sql + " AND p.time < ?", params + (end,)
        return self.db.value(sql, params)

    def assignments(self, *, worker: str | None = None, site: str | None = None) -> list[dict]:
        where, params = self._where(worker=worker, site=site)
        return self._rows(f"SELECT worker, site, valid_from, valid_to, added_at, added_by FROM assignments{where} "
                          "ORDER BY worker, site, valid_from", params)

    def edit_worker(self, worker: str, *, name: str | None = None, employer: str | None = None,
                    team: str | None = None, trade: str | None = None, by: str = "operator") -> dict:
        """Change a worker's name, employer, team or trade (returns what changed: field -> (before, after));
        each change is kept in ``worker_changes`` with who made it and when."""
        given = {"name": entered(name, what="the name", limit=NAME_MAX_CHARS, optional=True),
                 "employer": entered(employer, what="the employer", limit=NAME_MAX_CHARS, optional=True),
                 "team": entered(team, what="the team", limit=NAME_MAX_CHARS, optional=True),
                 "trade": entered(trade, what="the trade", limit=NAME_MAX_CHARS, optional=True)}
        by = entered(by, what="who edits the worker", limit=NAME_MAX_CHARS)
        kept = self.has("teams")
        if not kept and (given["team"] is not None or given["trade"] is not None):
            raise StoreError("this database has no teams or trades yet (run `collector db upgrade`)")
        with self.transaction():
            current = self._existing_worker(worker)
            changes = {k: v for k, v in given.items() if v is not None and v != current.get(k)}
            if changes:
                columns = ", ".join(f"{k} = ?" for k in changes)
                self.db.execute(f"UPDATE workers SET {columns} WHERE worker = ?", (*changes.values(), worker))
                if kept:
                    now = self._now_text()
                    self.db.executemany(
                        "INSERT INTO worker_changes (worker, field, before, after, changed_at, changed_by) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [(worker, k, current.get(k), v, now, by) for k, v in changes.items()])
            return {k: (current.get(k), v) for k, v in changes.items()}

    def worker_changes(self, worker: str) -> list[dict]:
        """Every change of the worker's name, employer, team or trade, oldest first."""
        if not self.has("teams"):
            return []
        return self._rows("SELECT field, before, after, changed_at, changed_by FROM worker_changes WHERE worker = ? "
                          "ORDER BY id", (worker,))

    def remove_worker(self, worker: str, *, at: str, by: str) -> dict:
        """The worker leaves: open assignments and cards end at ``at``; nothing of their history is deleted
        (punches, days, wages stay theirs). Returns what was ended."""
        by = entered(by, what="who removes the worker", limit=NAME_MAX_CHARS)
        with self.transaction():
            current = self._existing_worker(worker)
            if current["removed_at"]:
                raise StoreError(f"worker {worker} was removed at {current['removed_at']}")
            ended_sites = self.db.column("SELECT site FROM assignments WHERE worker = ? AND valid_to IS NULL", (worker,))
            ended_cards = self.db.column("SELECT uid FROM cards WHERE worker = ? AND valid_to IS NULL", (worker,))
            self.db.execute("UPDATE assignments SET valid_to = ? WHERE worker = ? AND valid_to IS NULL "
                            "AND (valid_from IS NULL OR valid_from < ?)", (at, worker, at))
            self.db.execute("UPDATE cards SET valid_to = ? WHERE worker = ? AND valid_to IS NULL "
                            "AND (valid_from IS NULL OR valid_from < ?)", (at, worker, at))
            self.db.execute("UPDATE workers SET removed_at = ?, removed_by = ? WHERE worker = ?", (at, by, worker))
            self._registry_changed()
            self._mark_days(site="", worker=worker, since=at)
            return {"sites": ended_sites, "cards": ended_cards}

    def _existing_worker(self, worker: str) -> dict:
        rows = self._rows("SELECT * FROM workers WHERE worker = ?", (worker,))
        if not rows:
            raise StoreError(f"worker {worker} does not exist")
        return rows[0]



def _overlap(start_a: str | None, end_a: str | None, start_b: str | None, end_b: str | None) -> bool:
    """Whether two windows [start, end) overlap (None: unbounded on that side)."""
    return (end_b is None or start_a is None or start_a < end_b) and (end_a is None or start_b is None or start_b < end_a)
