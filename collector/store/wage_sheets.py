"""Employers' wage sheets: what a labour subcontractor claimed for a site and month, kept as it was read
(each file once, by its SHA-256), so that the check against the gates can be repeated and shown later."""

from __future__ import annotations

import json

from .connection import Connection
from .errors import StoreError

#: The columns of a sheet's line, in the order they are stored.
LINE_FIELDS = ("source_row", "worker", "name", "id_number", "days", "hours", "amount_fen", "deductions_fen",
               "net_fen", "bank_account")


class WageSheetQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def add_wage_sheet(self, *, site: str, period: str, employer: str, file_name: str, sha256: str, format: str,
                       encoding: str, ignored_columns: list[str], notes: list[str], by: str,
                       lines: list[dict]) -> int | None:
        """Keep a sheet and its lines; None (and nothing written) when a sheet with this SHA-256 is held."""
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            # ON CONFLICT: two imports of one file at once still keep it once.
            sheet_id = self.db.value(
                """INSERT INTO wage_sheets (site, period, employer, file_name, sha256, format, encoding, ignored_columns,
                       notes, imported_at, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (sha256) DO NOTHING RETURNING id""",
                (site, period, employer, file_name, sha256, format, encoding,
                 json.dumps(ignored_columns, ensure_ascii=False), json.dumps(notes, ensure_ascii=False),
                 self._now_text(), by))
            if sheet_id is None:
                return None
            self.db.executemany(
                f"INSERT INTO wage_sheet_lines (sheet_id, {', '.join(LINE_FIELDS)}) "
                f"VALUES (?, {', '.join('?' for _ in LINE_FIELDS)})",
                [(sheet_id, *(line[field] for field in LINE_FIELDS)) for line in lines])
            return sheet_id

    def wage_sheet_by_sha256(self, sha256: str) -> dict | None:
        rows = self._rows("SELECT * FROM wage_sheets WHERE sha256 = ?", (sha256,))
        return self._sheet(rows[0]) if rows else None

    def wage_sheets(self, site: str, period: str, employer: str | None = None) -> list[dict]:
        """The sheets of a site and month (of one employer, when given), oldest first, without lines."""
        sql, params = "SELECT * FROM wage_sheets WHERE site = ? AND period = ?", [site, period]
        if employer is not None:
            sql += " AND employer = ?"
            params.append(employer)
        return [self._sheet(row, lines=False) for row in self._rows(sql + " ORDER BY id", params)]

    def wage_sheet(self, sheet_id: int) -> dict | None:
        rows = self._rows("SELECT * FROM wage_sheets WHERE id = ?", (sheet_id,))
        return self._sheet(rows[0]) if rows else None

    def take_sheet_deductions(self, sheet_id: int, *, by: str, deductions: list[dict]) -> bool:
        """Record ``deductions`` (``add_deduction`` keyword arguments) as the period's, once per sheet:
        False (and nothing recorded) when the sheet's deductions were taken before."""
        with self.transaction():
            taken = self.db.execute(
                "UPDATE wage_sheets SET deductions_taken_at = ?, deductions_taken_by = ? "
                "WHERE id = ? AND deductions_taken_at IS NULL RETURNING id", (self._now_text(), by, sheet_id)).fetchall()
            if not taken:
                return False
            for deduction in deductions:
                self.add_deduction(**deduction)
            return True

    def _sheet(self, row: dict, *, lines: bool = True) -> dict:
        row["ignored_columns"] = json.loads(row["ignored_columns"])
        row["notes"] = json.loads(row["notes"])
        if lines:
            row["lines"] = self._rows(f"SELECT {', '.join(LINE_FIELDS)} FROM wage_sheet_lines WHERE sheet_id = ? "
                                      "ORDER BY source_row", (row["id"],))
        return row
