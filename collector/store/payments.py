"""Payments of the wage tables: the batches made for an approved version and each credit in them, with
the bank's return (paid with its voucher, or failed with the reason)."""

from __future__ import annotations

from ..text import NAME_MAX_CHARS, REASON_MAX_CHARS, entered
from .connection import Connection
from .errors import StoreError

PAYMENT_STATUSES = ("pending", "paid", "failed", "withdrawn", "reversed")
#: The credits that count against what a worker is owed: a failed, withdrawn (never sent) or reversed (the
#: bank returned it after paying it) one is owed again.
OUTSTANDING = ("pending", "paid")


class PaymentQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def lock_wage_period(self, site: str, period: str) -> None:
        """Inside a transaction: wait for any other writer of the period's tables and payments (a row
        lock on PostgreSQL; SQLite's writer already holds the database)."""
        self.db.execute("UPDATE wage_tables SET status = status WHERE site = ? AND period = ?", (site, period))

    def add_wage_batch(self, batch: dict, payments: list[dict]) -> None:
        """A new batch and its credits, all pending; ``batch["made_by"]`` is who made it (recorded)."""
        made_by = entered(batch.get("made_by"), what="who makes the batch", limit=NAME_MAX_CHARS)
        with self.transaction():
            self.db.execute(
                """INSERT INTO wage_batches (batch_id, site, period, table_version, seq, created, execution_date,
                       execution_rule, payer_account, payer_name, payer_bank, made_at, made_by)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (batch["batch_id"], batch["site"], batch["period"], batch["table_version"], batch["seq"],
                 batch["created"], batch["execution_date"], batch["execution_rule"], batch["payer_account"],
                 batch["payer_name"], batch["payer_bank"], self._now_text(), made_by))
            self.db.executemany(
                """INSERT INTO wage_payments (batch_id, position, site, period, worker, table_version, end_to_end_id,
                       amount_fen, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')""",
                [(batch["batch_id"], p["position"], batch["site"], batch["period"], p["worker"],
                  batch["table_version"], p["end_to_end_id"], p["amount_fen"]) for p in payments])

    def add_wage_batch_file(self, batch_id: str, *, by: str, fmt: str, file: str, sha256: str) -> None:
        """A file written of a batch (the first time or again): who wrote it, when, as what and its digest.
        The file holds whole account and ID numbers: each one written is accounted for."""
        by = entered(by, what="who writes the batch file", limit=NAME_MAX_CHARS)
        self.db.execute("INSERT INTO wage_batch_files (batch_id, written_at, written_by, format, file, sha256) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (batch_id, self._now_text(), by, fmt, file, sha256))

    def wage_batch_files(self, site: str, period: str) -> list[dict]:
        """Every file written of the period's batches, oldest first (none before four_eyes was applied)."""
        if not self.has("four_eyes"):  # type: ignore[attr-defined]
            return []
        return self._rows("SELECT f.* FROM wage_batch_files f JOIN wage_batches b ON b.batch_id = f.batch_id "
                          "WHERE b.site = ? AND b.period = ? ORDER BY f.id", (site, period))

    def wage_batches(self, site: str, period: str, version: int | None = None) -> list[dict]:
        """The period's batches (of one approved version if given), oldest first."""
        sql, params = "SELECT * FROM wage_batches WHERE site = ? AND period = ?", [site, period]
        if version is not None:
            sql += " AND table_version = ?"
            params.append(version)
        return self._rows(sql + " ORDER BY table_version, seq", params)

    def wage_batch(self, batch_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM wage_batches WHERE batch_id = ?", (batch_id,))
        if not rows:
            return None
        batch = rows[0]
        batch["payments"] = self._rows("SELECT * FROM wage_payments WHERE batch_id = ? ORDER BY position",
                                       (batch_id,))
        return batch

    def wage_payments(self, site: str | None = None, period: str | None = None, *,
                      worker: str | None = None) -> list[dict]:
        """Every credit (of a site, of a period, to a worker), in the order they were made."""
        where, params = self._where(site=site, period=period, worker=worker)
        return self._rows(f"SELECT * FROM wage_payments{where} ORDER BY site, period, batch_id, position", params)

    def payments_by_end_to_end(self, ids: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self._rows(f"SELECT * FROM wage_payments WHERE end_to_end_id IN ({marks})", chunk):
                found[row["end_to_end_id"]] = row
        return found

    def settle_payment(self, end_to_end_id: str, *, status: str, voucher: str | None, paid_on: str | None,
                       reason: str | None, settled_from: str, by: str) -> None:
        """Record the bank's word on a pending credit, and who recorded it; a credit is settled once
        (StoreError otherwise)."""
        if status not in ("paid", "failed"):
            raise StoreError(f"a credit is settled as paid or failed, not {status!r}")
        voucher = entered(voucher, what="the voucher", limit=NAME_MAX_CHARS, optional=True)
        reason = entered(reason, what="the bank's reason", limit=REASON_MAX_CHARS, optional=True)
        by = entered(by, what="who records the bank's return", limit=NAME_MAX_CHARS)
        rows = self.db.execute(
            "UPDATE wage_payments SET status = ?, voucher = ?, paid_on = ?, reason = ?, settled_at = ?, "
            "settled_from = ?, settled_by = ? WHERE end_to_end_id = ? AND status = 'pending' RETURNING id",
            (status, voucher, paid_on, reason, self._now_text(), settled_from, by, end_to_end_id)).fetchall()
        if not rows:
            raise StoreError(f"credit {end_to_end_id} is not pending any more (settled meanwhile?)")

    def withdraw_payments(self, end_to_end_ids: list[str], *, reason: str, by: str) -> None:
        """Withdraw pending credits of a batch written but never sent, with who and why: they are owed again,
        and a return naming them is refused. All of them or none (StoreError: one is not pending now)."""
        reason = entered(reason, what="the reason for the withdrawal", limit=REASON_MAX_CHARS)
        by = entered(by, what="who withdraws", limit=NAME_MAX_CHARS)
        with self.transaction():
            now = self._now_text()
            for e2e in end_to_end_ids:
                rows = self.db.execute(
                    "UPDATE wage_payments SET status = 'withdrawn', undone_at = ?, undone_by = ?, undone_reason = ? "
                    "WHERE end_to_end_id = ? AND status = 'pending' RETURNING id", (now, by, reason, e2e)).fetchall()
                if not rows:
                    raise StoreError(f"credit {e2e} is not pending any more (settled or withdrawn meanwhile?)")

    def reverse_payment(self, end_to_end_id: str, *, reference: str, returned_on: str, reason: str, by: str) -> None:
        """A paid credit the bank returned later (退汇), with the return's reference and date, who recorded it
        and why: the amount is owed again. Only a paid credit, once (StoreError)."""
        reference = entered(reference, what="the return's reference", limit=NAME_MAX_CHARS)
        reason = entered(reason, what="the reason for the reversal", limit=REASON_MAX_CHARS)
        by = entered(by, what="who records the reversal", limit=NAME_MAX_CHARS)
        rows = self.db.execute(
            "UPDATE wage_payments SET status = 'reversed', undone_at = ?, undone_by = ?, undone_reason = ?, "
            "returned_ref = ?, returned_on = ? WHERE end_to_end_id = ? AND status = 'paid' RETURNING id",
            (self._now_text(), by, reason, reference, returned_on, end_to_end_id)).fetchall()
        if not rows:
            raise StoreError(f"credit {end_to_end_id} is not paid (reversed meanwhile?)")

    def approved_wage_tables(self, site: str | None = None, *, worker: str | None = None) -> list[dict]:
        """Every approved version (one per period at most), with its lines (``worker``'s only, if given)."""
        sql, params = "SELECT * FROM wage_tables WHERE status = 'approved'", []
        if site is not None:
            sql += " AND site = ?"
            params.append(site)
        tables = self._rows(sql + " ORDER BY site, period", params)
        for table in tables:
            table["lines"] = self.wage_lines(table["id"], worker=worker)  # type: ignore[attr-defined]
        return tables

    def payment_sums(self, site: str, as_of: str, *, worker: str | None = None,
                     until: str | None = None) -> list[dict]:
        """Per period and worker of the site (``worker`` only, if given): ``paid``, the credits returned
        paid on or before ``as_of`` (a local date), and ``pending``, those at the bank on it (pending, or
        paid after it), in fen; a failed credit counts in neither. With ``until`` (the UTC end of that
        day), as the books stood then: a credit whose batch was made later is in neither, and one whose
        failure was recorded later was still at the bank."""
        # Cast: PostgreSQL sums a BIGINT as a NUMERIC (a Decimal in Python), and money here is int fen.
        # A credit reversed (the bank returned it after paying it) was paid from its day to the return's.
        if self.has("wage_reversals"):  # type: ignore[attr-defined]
            paid, paid_params = ("(p.status = 'paid' OR (p.status = 'reversed' AND p.returned_on > ?)) "
                                 "AND p.paid_on <= ?"), [as_of, as_of]
            at_bank = "p.status IN ('paid', 'reversed') AND (p.paid_on IS NULL OR p.paid_on > ?)"
            # As the books stood then: a credit withdrawn later was still at the bank.
            withdrawn_later = " OR (p.status = 'withdrawn' AND p.undone_at >= ?)"
        else:
            paid, paid_params = "p.status = 'paid' AND p.paid_on <= ?", [as_of]
            at_bank, withdrawn_later = "p.status = 'paid' AND (p.paid_on IS NULL OR p.paid_on > ?)", ""
        late = "" if until is None else " OR (p.status = 'failed' AND p.settled_at >= ?)" + withdrawn_later
        sql = ("SELECT p.period, p.worker, "
               f"CAST(SUM(CASE WHEN {paid} THEN p.amount_fen ELSE 0 END) AS BIGINT) AS paid, "
               f"CAST(SUM(CASE WHEN p.status = 'pending' OR ({at_bank}){late} "
               "THEN p.amount_fen ELSE 0 END) AS BIGINT) AS pending FROM wage_payments p")
        params = [*paid_params, as_of]
        if until is not None:
            params += [until] * late.count("?")
            sql += " JOIN wage_batches b ON b.batch_id = p.batch_id AND b.made_at < ?"
            params.append(until)
        sql += " WHERE p.site = ?"
        params.append(site)
        if worker is not None:
            sql += " AND p.worker = ?"
            params.append(worker)
        return self._rows(sql + " GROUP BY p.period, p.worker ORDER BY p.period, p.worker", params)

    def approved_lines(self, site: str, *, worker: str | None = None) -> list[dict]:
        """The lines of the site's approved versions (``worker``'s only, if given), as arrears reads them:
        the table's ``period``, ``version`` and ``pay_day``; the line's ``worker``, ``name``, ``employer``,
        ``days``, ``gross_fen``, ``net_fen``, ``status`` and ``flags`` (a list); and of its detail only its own pay day
        (``line_pay_day``) and how many days it left to decide (``to_decide``), taken out by the database
        (decoding every line's detail would cost a month of history what its rates and deductions are)."""
        if self.db.dialect == "postgresql":
            detail = ("x.pay_day AS line_pay_day, COALESCE(json_array_length(x.days_to_decide), 0) AS to_decide "
                      "FROM wage_tables t JOIN wage_lines l ON l.table_id = t.id CROSS JOIN LATERAL "
                      "json_to_record(l.detail::json) AS x(pay_day text, days_to_decide json)")
        else:
            detail = ("json_extract(l.detail, '$.pay_day') AS line_pay_day, "
                      "COALESCE(json_array_length(l.detail, '$.days_to_decide'), 0) AS to_decide "
                      "FROM wage_tables t JOIN wage_lines l ON l.table_id = t.id")
        sql = (f"SELECT t.period, t.version, t.pay_day, l.worker, l.name, l.employer, l.days, l.gross_fen, l.net_fen, "
               f"l.status, "
               f"l.flags, {detail} WHERE t.status = 'approved' AND t.site = ?")
        params = [site]
        if worker is not None:
            sql += " AND l.worker = ?"
            params.append(worker)
        lines = self._rows(sql + " ORDER BY t.period, l.worker", params)
        for line in lines:
            line["flags"] = [f for f in line["flags"].split(",") if f]
        return lines

    def first_punch_time(self, site: str, since: str = "") -> str | None:
        """The earliest punch of a site at or after ``since`` (UTC text; by default, of all it holds)."""
        return self.db.value("SELECT MIN(time) FROM punches WHERE site = ? AND time >= ?", (site, since))

    def has_punches(self, site: str, start: str, end: str) -> bool:
        return self._one("SELECT 1 FROM punches WHERE site = ? AND time >= ? AND time < ? LIMIT 1",
                         (site, start, end)) is not None
