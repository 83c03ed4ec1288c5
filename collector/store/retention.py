"""Retention: what `collector prune` may delete, what it must keep, and the log of what it deleted."""

from __future__ import annotations

import json

from .connection import Connection

#: The tables holding a site's month of wages (tables and their versions and lines, deductions, employer
#: sheets, batches with the files written of them, and payments), children first: the order they are deleted in.
WAGE_PERIOD_TABLES = ("wage_payments", "wage_batch_files", "wage_batches", "wage_sheet_lines", "wage_sheets",
                      "wage_lines", "wage_tables", "wage_deductions")
#: A site's month of batches: the files written of them go with them.
BATCHES = "SELECT batch_id FROM wage_batches WHERE site = ? AND period = ?"


class RetentionQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    # ================================================================== what may go

    def quarantine_counts_before(self, cutoff: str) -> dict[str, int]:
        """Quarantined rows received before ``cutoff`` (UTC text) and tally hours before it."""
        return {"quarantine": self.db.value("SELECT COUNT(*) FROM quarantine WHERE received_at < ?", (cutoff,)),
                "quarantine_tally": self.db.value("SELECT COUNT(*) FROM quarantine_tally WHERE hour < ?",
                                                  (cutoff[:13],))}

    def delete_quarantine_before(self, cutoff: str) -> dict[str, int]:
        """Delete them (inside the caller's transaction); the counters keep every total."""
        counts = self.quarantine_counts_before(cutoff)
        self.db.execute("DELETE FROM quarantine WHERE received_at < ?", (cutoff,))
        self.db.execute("DELETE FROM quarantine_tally WHERE hour < ?", (cutoff[:13],))
        return counts

    # ================================================================== what is kept

    def wage_periods_before(self, month: str) -> list[tuple[str, str]]:
        """Every (site, period) holding wage data for a period before ``month`` (YYYY-MM)."""
        found: set[tuple[str, str]] = set()
        for table in ("wage_tables", "wage_deductions", "wage_sheets", "wage_batches"):
            found |= {(r["site"], r["period"]) for r in self.db.rows(
                f"SELECT DISTINCT site, period FROM {table} WHERE period < ?", (month,))}
        return sorted(found)

    def wage_period_counts(self, site: str, period: str) -> dict[str, int]:
        """Rows per table that a site's month of wages holds."""
        tables = "SELECT id FROM wage_tables WHERE site = ? AND period = ?"
        sheets = "SELECT id FROM wage_sheets WHERE site = ? AND period = ?"
        where = {"wage_lines": f"table_id IN ({tables})", "wage_sheet_lines": f"sheet_id IN ({sheets})",
                 "wage_batch_files": f"batch_id IN ({BATCHES})"}
        return {table: self.db.value(f"SELECT COUNT(*) FROM {table} WHERE "
                                     f"{where.get(table, 'site = ? AND period = ?')}", (site, period))
                for table in WAGE_PERIOD_TABLES}

    def wage_period_unsettled(self, site: str, period: str) -> str | None:
        """Why a month's wages are not settled (Art. 28: kept until settled, then 3 years), or None."""
        pending = self.db.value("SELECT COUNT(*) FROM wage_payments WHERE site = ? AND period = ? "
                                "AND status = 'pending'", (site, period))
        if pending:
            return f"{pending} credit(s) still at the bank"
        approved = self._rows("SELECT id, version FROM wage_tables WHERE site = ? AND period = ? "
                              "AND status = 'approved'", (site, period))
        if not approved:
            return "no approved wage table"
        paid = {r["worker"]: r["fen"] for r in self._rows(
            "SELECT worker, SUM(amount_fen) AS fen FROM wage_payments WHERE site = ? AND period = ? "
            "AND status = 'paid' GROUP BY worker", (site, period))}
        unpaid = [r["worker"] for r in self._rows(
            "SELECT worker, net_fen FROM wage_lines WHERE table_id = ? AND net_fen > 0", (approved[0]["id"],))
            if paid.get(r["worker"], 0) < r["net_fen"]]
        if unpaid:
            return f"version {approved[0]['version']} is not paid in full ({', '.join(unpaid[:5])}" \
                   + (f" and {len(unpaid) - 5} more" if len(unpaid) > 5 else "") + ")"
        return None

    def delete_wage_period(self, site: str, period: str) -> dict[str, int]:
        """Delete a site's month of wages, children first (inside the caller's transaction)."""
        counts = self.wage_period_counts(site, period)
        tables = "SELECT id FROM wage_tables WHERE site = ? AND period = ?"
        sheets = "SELECT id FROM wage_sheets WHERE site = ? AND period = ?"
        for table in WAGE_PERIOD_TABLES:
            where = {"wage_lines": f"table_id IN ({tables})", "wage_sheet_lines": f"sheet_id IN ({sheets})",
                     "wage_batch_files": f"batch_id IN ({BATCHES})"}
            self.db.execute(f"DELETE FROM {table} WHERE {where.get(table, 'site = ? AND period = ?')}",
                            (site, period))
        return counts

    def punch_span_before(self, cutoff: str) -> list[dict]:
        """Per site: how many punches (gate and manual) before ``cutoff`` (UTC text), the first and last."""
        return self._rows("SELECT site, COUNT(*) AS punches, MIN(time) AS first, MAX(time) AS last FROM punches "
                          "WHERE time < ? GROUP BY site ORDER BY site", (cutoff,))

    # ================================================================== the log

    def log_retention(self, *, by: str, what: str, cutoff: str, rows: int, detail: dict) -> None:
        self.db.execute("INSERT INTO retention_log (pruned_at, pruned_by, what, cutoff, row_count, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (self._now_text(), by, what, cutoff, rows, json.dumps(detail, sort_keys=True, ensure_ascii=False)))

    def retention_log(self) -> list[dict]:
        if not self.db.table_exists("retention_log"):  # a reader of a database not migrated yet
            return []
        rows = self._rows("SELECT * FROM retention_log ORDER BY id")
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows
