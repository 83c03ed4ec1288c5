"""Disputes: days a worker says are wrong, their answers, and approvals made over open ones."""

from __future__ import annotations

from ..text import NAME_MAX_CHARS, REASON_MAX_CHARS, entered
from .connection import Connection
from .errors import StoreError

_COLUMNS = ("ref, worker, site, day, note, filed_at, filed_via, status, answered_at, answered_by, answer, "
            "answer_kind, punch_id")


class DisputeQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def file_dispute(self, *, worker: str, site: str, day: str, note: str, via: str, max_open: int) -> dict:
        """Record a dispute; its reference is D-<year filed>-<number>. At most ``max_open`` open per worker."""
        with self.transaction():
            self.lock_worker(worker)
            if self.db.value("SELECT COUNT(*) FROM disputes WHERE worker = ? AND status = 'open'", (worker,)) >= max_open:
                raise StoreError(f"worker {worker} has {max_open} open disputes already; wait for their answers")
            now = self._now_text()
            new_id = self.db.value(
                "INSERT INTO disputes (worker, site, day, note, filed_at, filed_via, status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'open') RETURNING id", (worker, site, day, note, now, via))
            ref = f"D-{now[:4]}-{new_id:04d}"
            self.db.execute("UPDATE disputes SET ref = ? WHERE id = ?", (ref, new_id))
            return self.dispute(ref)

    def dispute(self, ref: str) -> dict | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM disputes WHERE ref = ?", (ref,))
        return rows[0] if rows else None

    def disputes(self, *, site: str | None = None, worker: str | None = None, status: str | None = None,
                 first_day: str | None = None, last_day: str | None = None) -> list[dict]:
        """Disputes matching every filter given, oldest first."""
        clauses, params = [], []
        for sql, value in (("site = ?", site), ("worker = ?", worker), ("status = ?", status),
                           ("day >= ?", first_day), ("day <= ?", last_day)):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._rows(f"SELECT {_COLUMNS} FROM disputes{where} ORDER BY id", params)

    def dispute_counts(self, site: str) -> dict[str, int]:
        """How many of the site's disputes are open and how many answered (any change to either is news to
        the site's live page)."""
        rows = self._rows("SELECT status, COUNT(*) AS n FROM disputes WHERE site = ? GROUP BY status", (site,))
        counts = {row["status"]: row["n"] for row in rows}
        return {"open": counts.get("open", 0), "answered": sum(n for s, n in counts.items() if s != "open")}

    def answer_dispute(self, ref: str, *, status: str, by: str, answer: str, kind: str | None = None,
                       punch_id: int | None = None) -> dict:
        """Close an open dispute: accepted (with the manual punch or void that corrects the day, which is
        marked with the reference) or rejected (with the reason the worker sees)."""
        if status not in ("accepted", "rejected"):
            raise StoreError(f"a dispute is answered accepted or rejected, not {status!r}")
        with self.transaction():
            held = self.db.value("SELECT status FROM disputes WHERE ref = ?", (ref,))
            if held is None:
                raise StoreError(f"there is no dispute {ref}")
            if held != "open":
                raise StoreError(f"dispute {ref} is {held} already")
            self.db.execute("UPDATE disputes SET status = ?, answered_at = ?, answered_by = ?, answer = ?, "
                            "answer_kind = ?, punch_id = ? WHERE ref = ?",
                            (status, self._now_text(), by, answer, kind, punch_id, ref))
            if punch_id is not None:
                self.db.execute("UPDATE punches SET dispute = ? WHERE id = ?", (ref, punch_id))
            return self.dispute(ref)

    def punch_dispute(self, punch_id: int) -> str | None:
        """The dispute a correction answers, if any."""
        return self.db.value("SELECT dispute FROM punches WHERE id = ?", (punch_id,))

    def record_dispute_override(self, *, site: str, period: str, table_version: int, refs: list[str], reason: str,
                                by: str) -> None:
        reason = entered(reason, what="the override's reason", limit=REASON_MAX_CHARS)
        by = entered(by, what="who overrides", limit=NAME_MAX_CHARS)
        with self.transaction():
            self.db.execute("INSERT INTO dispute_overrides (site, period, table_version, refs, reason, by_user, at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (site, period, table_version, ",".join(refs), reason, by, self._now_text()))

    def dispute_overrides(self, site: str | None = None, period: str | None = None) -> list[dict]:
        clauses, params = [], []
        for sql, value in (("site = ?", site), ("period = ?", period)):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._rows("SELECT site, period, table_version, refs, reason, by_user AS by, at "
                          f"FROM dispute_overrides{where} ORDER BY id", params)
        for row in rows:
            row["refs"] = [r for r in row["refs"].split(",") if r]
        return rows
