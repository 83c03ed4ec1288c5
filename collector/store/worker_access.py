"""Workers' personal links and the sessions of the browsers they opened (only a hash of each secret is
kept), and the log of who looked at whose record."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gate_agent.protocol import format_time

from .connection import Connection
from .errors import StoreError

#: Entries of the access log a worker's page shows (newest first), besides as many of the bank's own looks,
#: which the others cannot push off the page.
ACCESS_SHOWN = 50
#: Who looks at a record as the bank (the access log keeps their looks visible).
BANK_VIAS = ("bank CLI", "bank token")
#: Looks of one viewer at one thing less than this after the last are the same look: a page reloaded, or
#: asking again, is not another look (an access-log entry counts the looks an hour or more apart).
SAME_LOOK = timedelta(hours=1)


class WorkerAccessQueries:
    """Mixed into Store, whose ``_one``, ``_rows``, ``has`` and ``transaction`` it uses."""

    db: Connection

    def issue_worker_link(self, worker: str, secret_sha256: str, *, by: str) -> dict:
        """A new link for ``worker``; the links issued before end now, and the sessions opened with them
        (one valid link per worker)."""
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            now = self._now_text()
            revoked = self.db.execute("UPDATE worker_links SET revoked_at = ?, revoked_by = ? "
                                      "WHERE worker = ? AND revoked_at IS NULL", (now, by, worker)).rowcount
            self._end_sessions_of(worker, now)
            self.db.execute("INSERT INTO worker_links (worker, secret_sha256, issued_at, issued_by) "
                            "VALUES (?, ?, ?, ?)", (worker, secret_sha256, now, by))
            return {"worker": worker, "issued_at": now, "issued_by": by, "revoked": revoked}

    def revoke_worker_links(self, worker: str, *, by: str) -> int:
        """End the worker's valid link and its sessions; returns how many links ended (0: there was none)."""
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            now = self._now_text()
            self._end_sessions_of(worker, now)
            return self.db.execute("UPDATE worker_links SET revoked_at = ?, revoked_by = ? "
                                   "WHERE worker = ? AND revoked_at IS NULL", (now, by, worker)).rowcount

    def _end_sessions_of(self, worker: str, now: str) -> None:
        if self.db.table_exists("worker_sessions"):
            self.db.execute("UPDATE worker_sessions SET revoked_at = ? WHERE worker = ? AND revoked_at IS NULL",
                            (now, worker))

    def worker_link(self, secret_sha256: str) -> dict | None:
        """The valid (unrevoked) link with this hash, or None."""
        rows = self._rows("SELECT worker, secret_sha256, issued_at FROM worker_links "
                          "WHERE secret_sha256 = ? AND revoked_at IS NULL", (secret_sha256,))
        return rows[0] if rows else None

    def worker_links(self, worker: str) -> list[dict]:
        """Every link issued to the worker (without the hashes), oldest first."""
        return self._rows("SELECT id, worker, issued_at, issued_by, revoked_at, revoked_by FROM worker_links "
                          "WHERE worker = ? ORDER BY id", (worker,))

    # ------------------------------------------------------------------ sessions of browsers

    def open_worker_session(self, link_sha256: str, session_sha256: str, *, now: str, expires_at: str,
                            keep: int) -> dict | None:
        """A session for the valid link with this hash ({worker, expires_at}), or None. The worker's sessions
        that ended are deleted, and beyond ``keep`` live ones the oldest end: rows per worker stay bounded."""
        with self.transaction():
            link = self.db.record("SELECT id, worker FROM worker_links WHERE secret_sha256 = ? "
                                  "AND revoked_at IS NULL", (link_sha256,))
            if link is None:
                return None
            worker = link["worker"]
            self.db.execute("DELETE FROM worker_sessions WHERE worker = ? AND (revoked_at IS NOT NULL "
                            "OR expires_at <= ?)", (worker, now))
            live = self.db.column("SELECT id FROM worker_sessions WHERE worker = ? ORDER BY id DESC", (worker,))
            for old in live[keep - 1:] if keep > 0 else live:
                self.db.execute("DELETE FROM worker_sessions WHERE id = ?", (old,))
            self.db.execute("INSERT INTO worker_sessions (secret_sha256, worker, link_id, created_at, expires_at) "
                            "VALUES (?, ?, ?, ?, ?)", (session_sha256, worker, link["id"], now, expires_at))
        return {"worker": worker, "expires_at": expires_at}

    def worker_session(self, secret_sha256: str, now: str) -> dict | None:
        """The live session with this hash ({worker, link_issued_at}): not signed out, not expired, its link
        still valid. Before step 22 the cookie held the link itself, and is looked up as one."""
        if not self.has("worker_sessions"):
            link = self.worker_link(secret_sha256)
            return {"worker": link["worker"], "link_issued_at": link["issued_at"]} if link else None
        rows = self._rows("SELECT s.worker, l.issued_at AS link_issued_at FROM worker_sessions s "
                          "JOIN worker_links l ON l.id = s.link_id WHERE s.secret_sha256 = ? "
                          "AND s.revoked_at IS NULL AND s.expires_at > ? AND l.revoked_at IS NULL",
                          (secret_sha256, now))
        return rows[0] if rows else None

    def end_worker_session(self, secret_sha256: str, now: str) -> bool:
        """Sign one browser out; whether a live session ended."""
        if not self.has("worker_sessions"):
            return False
        with self.transaction():
            return self.db.execute("UPDATE worker_sessions SET revoked_at = ? WHERE secret_sha256 = ? "
                                   "AND revoked_at IS NULL", (now, secret_sha256)).rowcount == 1

    # ------------------------------------------------------------------ who looked

    def log_access(self, worker: str, *, via: str, who: str, what: str) -> None:
        """Note that someone looked at the worker's record (shown to the worker): one row per viewer, thing
        looked at and day of the worker's site (``record_zone``), counting the looks; a look less than
        ``SAME_LOOK`` after that row's last one only moves its time (a reload is not another look)."""
        with self.transaction():
            now = self._now_text()
            if not self.has("worker_sessions"):  # before step 22: one row per look
                self.db.execute("INSERT INTO record_access (worker, at, via, who, what) VALUES (?, ?, ?, ?, ?)",
                                (worker, now, via, who, what))
                return
            day = self._record_day(worker)
            recent = format_time(self.now() - SAME_LOOK)
            key = (worker, day, via, who, what)
            if self.db.execute("UPDATE record_access SET looks = looks + CASE WHEN COALESCE(last_at, at) > ? "
                               "THEN 0 ELSE 1 END, last_at = ? WHERE worker = ? AND day = ? AND via = ? AND who = ? "
                               "AND what = ?", (recent, now, *key)).rowcount == 0:
                self.db.execute("INSERT INTO record_access (worker, at, via, who, what, day, looks, last_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, 1, ?)", (worker, now, via, who, what, day, now))

    def _record_day(self, worker: str) -> str:
        """Today in the zone the worker's record is read in (UTC's day for a worker assigned nowhere)."""
        found = self.record_zone(worker)
        if found is not None:
            try:
                return self.now().astimezone(ZoneInfo(found["timezone"])).date().isoformat()
            except (ZoneInfoNotFoundError, ValueError):
                pass  # a zone this machine does not know (the registry checks zones when a site is added)
        return self._now_text()[:10]

    def record_zone(self, worker: str) -> dict | None:
        """The site in whose time the worker's record is read ({site, name, timezone, zones: how many zones
        the worker's sites have}): the site of their latest current assignment, else of their latest one;
        None for a worker assigned nowhere."""
        rows = self._rows("SELECT a.site, s.name, s.timezone, a.valid_from, a.valid_to FROM assignments a "
                          "JOIN sites s ON s.site = a.site WHERE a.worker = ?", (worker,))
        if not rows:
            return None
        # Current first, then the latest ended, then the latest begun (NULL: from the beginning); a tie by site.
        rows.sort(key=lambda r: r["site"])
        rows.sort(key=lambda r: (r["valid_to"] is None, r["valid_to"] or "", r["valid_from"] or ""), reverse=True)
        chosen = rows[0]
        return {"site": chosen["site"], "name": chosen["name"], "timezone": chosen["timezone"],
                "zones": len({r["timezone"] for r in rows})}

    def access_log(self, worker: str, limit: int = ACCESS_SHOWN) -> list[dict]:
        """Who looked at the worker's record, newest first ({at: the last look, first_at, looks, via, who,
        what}): the latest ``limit`` entries, and the bank's latest ``limit`` besides, so that nobody's
        looks push the bank's off the page."""
        if not self.has("worker_sessions"):
            rows = self._rows("SELECT at, via, who, what FROM record_access WHERE worker = ? "
                              "ORDER BY at DESC, id DESC LIMIT ?", (worker, limit))
            return [{**row, "first_at": row["at"], "looks": 1} for row in rows]
        # Rows of one key are summed: two writers may each have inserted one (or an older process one per look).
        grouped = ("SELECT MAX(COALESCE(last_at, at)) AS last_look, MIN(at) AS first_at, SUM(looks) AS looks, via, who, what "
                   "FROM record_access WHERE worker = ? {only} GROUP BY COALESCE(day, substr(at, 1, 10)), via, who, what "
                   "ORDER BY last_look DESC, via, who, what LIMIT ?")
        everyone = self._rows(grouped.format(only=""), (worker, limit))
        bank = self._rows(grouped.format(only="AND via IN (?, ?)"), (worker, *BANK_VIAS, limit))
        shown = {(r["last_look"], r["first_at"], r["via"], r["who"], r["what"]): r for r in [*everyone, *bank]}
        rows = sorted(shown.values(), key=lambda r: (r["last_look"], r["via"], r["who"], r["what"]), reverse=True)
        return [{"at": r["last_look"], "first_at": r["first_at"], "looks": int(r["looks"]), "via": r["via"],
                 "who": r["who"], "what": r["what"]} for r in rows]
