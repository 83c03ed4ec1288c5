"""Output formats for bank ops: JSON for systems, CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
import json

ATTENDANCE_COLUMNS = ("worker", "name", "employer", "site", "date", "first_in", "last_out", "worked_minutes",
                      "hours", "status", "flags", "final")
PAYROLL_COLUMNS = ("worker", "name", "employer", "days_present", "worked_minutes", "hours", "days_flagged",
                   "provisional_days")


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False)


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    """One row per record; flags joined with ';'; hours as a decimal a spreadsheet sums."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = []
        for column in columns:
            if column == "hours":
                values.append(f"{row['worked_minutes'] / 60:.2f}")
            elif column == "flags":
                values.append(";".join(row["flags"]))
            elif column == "final":
                values.append("yes" if row["final"] else "no")
            else:
                value = row.get(column)
                values.append("" if value is None else value)
        writer.writerow(values)
    return buffer.getvalue()
