"""Wages: pay terms with history, each site's pay day and payer account, the local minimum wage,
deductions, and the versioned wage tables (what the regulation calls the wage payment ledger)."""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable
from datetime import date

from ..identity import PAYEE_CHECKS, bank_account
from ..money import MAX_CREDIT_FEN, rate_problem, yuan
from ..text import NAME_MAX_CHARS, REASON_MAX_CHARS, entered
from .connection import Connection
from .errors import StoreError

BASES = ("day", "hour")
#: What a site's own calendar says of a day: a rest day, a working day, or back to the national calendar.
WORK_DAY_KINDS = ("rest", "work", "national")
#: A payee's columns, as ``payees()`` gives them.
_PAYEE = "worker, name, employer, id_number, phone, bank_account, bank_name"
_NOT_DIGIT = re.compile(r"\D")
_SPACE = re.compile(r"\s")


def _last_day(period: str) -> str:
    """``2026-02`` -> ``2026-02-28``."""
    year, month = (int(part) for part in period.split("-"))
    return f"{period}-{calendar.monthrange(year, month)[1]:02d}"


def same_person(one: str | None, other: str | None) -> bool:
    """Names as people type them: ``Ops-Wang `` is ops-wang (four eyes is not beaten by a capital)."""
    return bool(one and other) and " ".join(one.split()).casefold() == " ".join(other.split()).casefold()


class WageQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    # ================================================================== the worker as a payee

    def set_payee(self, worker: str, **fields: str | None) -> None:
        """ID number, phone, bank account and bank: only the fields given change, each checked (and
        normalised) by collector.identity, so no path writes a payee that is not one (PayeeError)."""
        allowed = {"id_number", "phone", "bank_account", "bank_name"}
        unknown = set(fields) - allowed
        if unknown:
            raise StoreError(f"unknown payee field(s) {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in fields.items() if v is not None}
        if "bank_name" in changes:
            changes["bank_name"] = entered(changes["bank_name"], what="the bank's name", limit=NAME_MAX_CHARS)
        for name, check in PAYEE_CHECKS.items():
            if name in changes:
                changes[name] = check(changes[name])
        if not changes:
            return
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            columns = ", ".join(f"{name} = ?" for name in changes)
            self.db.execute(f"UPDATE workers SET {columns} WHERE worker = ?", (*changes.values(), worker))

    def set_payee_routing(self, worker: str, *, bank_code: str, province: str | None = None,
                          city: str | None = None) -> None:
        """Where the worker's account is held, as a Chinese bulk payment names it: the branch's CNAPS code
        (收款行行号: 12 digits), province and city; set as a whole, for the account the worker has now
        (a batch uses them only while its line pays that account)."""
        code = _SPACE.sub("", bank_code or "")
        if not re.fullmatch(r"[0-9]{12}", code):
            raise StoreError(f"a bank's CNAPS code (收款行行号) is 12 digits, not {code[:20]!r}")
        province = entered(province, what="the bank's province", limit=NAME_MAX_CHARS, optional=True)
        city = entered(city, what="the bank's city", limit=NAME_MAX_CHARS, optional=True)
        with self.transaction():
            row = self._one("SELECT bank_account FROM workers WHERE worker = ?", (worker,))
            if row is None:
                raise StoreError(f"worker {worker} does not exist")
            if not row[0]:
                raise StoreError(f"worker {worker} has no bank account: set it (--account) with its bank's code")
            self.db.execute("UPDATE workers SET bank_code = ?, bank_province = ?, bank_city = ?, routed_account = ? "
                            "WHERE worker = ?", (code, province, city, row[0], worker))

    def payee_routing(self, workers: Iterable[str]) -> dict[str, dict]:
        """worker -> ``bank_code``, ``bank_province``, ``bank_city`` and ``routed_account`` (the account
        they were set for), for the workers given that have a code."""
        workers = sorted(set(workers))
        found: dict[str, dict] = {}
        for start in range(0, len(workers), 500):
            chunk = workers[start:start + 500]
            for row in self._rows("SELECT worker, bank_code, bank_province, bank_city, routed_account FROM workers "
                                  f"WHERE bank_code IS NOT NULL AND worker IN ({', '.join('?' for _ in chunk)})", chunk):
                found[row["worker"]] = row
        return found

    def payee(self, worker: str) -> dict | None:
        rows = self._rows("SELECT worker, name, employer, id_number, phone, bank_account, bank_name FROM workers "
                          "WHERE worker = ?", (worker,))
        return rows[0] if rows else None

    def payees(self) -> dict[str, dict]:
        return {row["worker"]: row for row in self._rows(
            "SELECT worker, name, employer, id_number, phone, bank_account, bank_name FROM workers")}

    def payees_of(self, workers: Iterable[str]) -> dict[str, dict]:
        """``payees()`` of these workers only (those registered): a site's table reads its own workers."""
        workers = sorted(set(workers))
        found: dict[str, dict] = {}
        for start in range(0, len(workers), 500):
            chunk = workers[start:start + 500]
            for row in self._rows(f"SELECT {_PAYEE} FROM workers WHERE worker IN ({', '.join('?' for _ in chunk)})",
                                  chunk):
                found[row["worker"]] = row
        return found

    def payees_sharing(self) -> dict[str, dict]:
        """``payees()`` narrowed to those who may be one payee with another worker: an account or ID number
        kept by two workers or more, any kept in another form (written before the store checked payees),
        and those kept with what such another form reads as. Every payee sharing an account or ID number
        with someone (compared as ``collector.wages.table.payee_key`` compares them) is among them; one
        look at the registry in SQL instead of every payee of the bank in Python."""
        found = {}
        for column in ("bank_account", "id_number"):
            found |= {row["worker"]: row for row in self._rows(
                f"SELECT {_PAYEE} FROM workers WHERE {column} IN (SELECT {column} FROM workers WHERE {column} <> '' "
                f"GROUP BY {column} HAVING COUNT(*) > 1)")}
        if self.db.dialect == "postgresql":
            other_form = "bank_account ~ '[^0-9]' OR id_number ~ '[^0-9X]'"
        else:
            other_form = "bank_account GLOB '*[^0-9]*' OR id_number GLOB '*[^0-9X]*'"
        others = {row["worker"]: row for row in self._rows(f"SELECT {_PAYEE} FROM workers WHERE {other_form}")}
        found |= others
        # What another form reads as, for the payees kept in the usual form with the same value.
        accounts = sorted({_NOT_DIGIT.sub("", r["bank_account"] or "") for r in others.values()} - {""})
        ids = sorted({_SPACE.sub("", r["id_number"] or "").upper() for r in others.values()} - {""})
        for column, values in (("bank_account", accounts), ("id_number", ids)):
            for start in range(0, len(values), 500):
                chunk = values[start:start + 500]
                found |= {row["worker"]: row for row in self._rows(
                    f"SELECT {_PAYEE} FROM workers WHERE {column} IN ({', '.join('?' for _ in chunk)})", chunk)}
        return found

    def payees_matching(self, worker: str, *, bank_account: str, id_number: str) -> dict[str, dict]:
        """``payees()`` narrowed to ``worker`` and whoever may share their account or ID number (given as
        kept: digits; upper case without spaces): those kept with the same value, and any kept in another
        form (written before the store checked payees), whom only the caller can compare."""
        if self.db.dialect == "postgresql":
            other_form = "bank_account ~ '[^0-9]' OR id_number ~ '[^0-9X]'"
        else:
            other_form = "bank_account GLOB '*[^0-9]*' OR id_number GLOB '*[^0-9X]*'"
        return {row["worker"]: row for row in self._rows(
            "SELECT worker, name, employer, id_number, phone, bank_account, bank_name FROM workers "
            f"WHERE worker = ? OR bank_account = ? OR id_number = ? OR {other_form}",
            (worker, bank_account or None, id_number or None))}

    # ================================================================== terms with history

    def set_wage_terms(self, worker: str, *, basis: str, rate_fen: int, effective_from: str, by: str,
                       used_from: str | None = None, back_pay: str | None = None) -> str:
        """A day or hourly rate from a local date on. Earlier terms stay for earlier days. Terms for the
        same date replace the ones given for it, unless a wage table already used them (``used_from``: the
        first day of the earliest period with a table that is not a draft); then a later date is needed.
        Terms from a date inside a period the worker was approved for would pay that period again at
        another rate: refused, unless ``back_pay`` says why (a back pay: kept on the terms with what they
        change, and shown on the line of the correction that pays it). Returns 'added' or 'replaced'."""
        if basis not in BASES:
            raise StoreError(f"basis must be day or hour, not {basis!r}")
        if not isinstance(rate_fen, int) or rate_fen <= 0:
            raise StoreError("a rate is a positive number of fen")
        problem = rate_problem(basis, rate_fen)
        if problem:
            raise StoreError(problem)
        by = entered(by, what="who sets the terms", limit=NAME_MAX_CHARS)
        back_pay = entered(back_pay, what="the back pay's reason", limit=REASON_MAX_CHARS, optional=True)
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            held = self.db.record("SELECT id, basis, rate_fen, added_at, added_by FROM wage_terms "
                                  "WHERE worker = ? AND effective_from = ?", (worker, effective_from))
            approved = self.last_approved_period(worker)
            through = _last_day(approved["period"]) if approved else None
            inside = through is not None and effective_from <= through
            used = held is not None and used_from is not None and used_from <= effective_from
            if inside and back_pay is None:
                raise StoreError(
                    f"{worker} was paid for {approved['period']} by an approved wage table ({approved['site']} version "
                    f"{approved['version']}): terms from {effective_from} would pay it again at another rate; give a "
                    f"date after {through}, or say why it is a back pay (--back-pay REASON: the correction that pays "
                    "it shows it)")
            if used and back_pay is None:
                raise StoreError(f"the terms of {worker} from {effective_from} were used by a wage table; "
                                 "give new terms a later date (earlier periods are never rewritten)")
            if back_pay is not None and not (inside or used):
                raise StoreError(f"terms of {worker} from {effective_from} change no period a wage table was approved "
                                 "or computed with: a back pay is only for those (set them without --back-pay)")
            trail = None
            if back_pay is not None:
                earlier = held or self.db.record(
                    "SELECT basis, rate_fen, added_at, added_by FROM wage_terms WHERE worker = ? AND effective_from < ? "
                    "ORDER BY effective_from DESC LIMIT 1", (worker, effective_from))
                kept = json.loads(self.db.value("SELECT back_pay FROM wage_terms WHERE id = ?", (held["id"],)) or "[]"
                                  ) if held else []
                kept.append({"reason": back_pay, "by": by, "at": self._now_text(), "through": through or used_from,
                             "basis": basis, "rate_fen": rate_fen,
                             "earlier": {k: earlier[k] for k in ("basis", "rate_fen", "added_at", "added_by")}
                             if earlier else None})
                trail = json.dumps(kept, sort_keys=True, ensure_ascii=False)
            if held is not None:
                self.db.execute("UPDATE wage_terms SET basis = ?, rate_fen = ?, added_at = ?, added_by = ?"
                                + (", back_pay = ?" if trail else "") + " WHERE id = ?",
                                (basis, rate_fen, self._now_text(), by, *((trail,) if trail else ()), held["id"]))
                return "replaced"
            self.db.execute("INSERT INTO wage_terms (worker, basis, rate_fen, effective_from, added_at, added_by"
                            + (", back_pay" if trail else "") + ") VALUES (?, ?, ?, ?, ?, ?" + (", ?" if trail else "")
                            + ")", (worker, basis, rate_fen, effective_from, self._now_text(), by,
                                    *((trail,) if trail else ())))
            return "added"

    def last_approved_period(self, worker: str) -> dict | None:
        """The latest period (``site``, ``period``, ``version``) whose approved wage table has a line for
        ``worker``: what terms from an earlier date would pay again."""
        return self.db.record("SELECT t.site, t.period, t.version FROM wage_tables t JOIN wage_lines l "
                              "ON l.table_id = t.id WHERE l.worker = ? AND t.status = 'approved' "
                              "ORDER BY t.period DESC, t.site LIMIT 1", (worker,))

    def wage_terms(self, worker: str | None = None) -> list[dict]:
        """Terms oldest first (per worker)."""
        sql = f"SELECT {self._terms_columns()} FROM wage_terms"
        params: tuple = ()
        if worker is not None:
            sql += " WHERE worker = ?"
            params = (worker,)
        return self._terms_rows(sql + " ORDER BY worker, effective_from", params)

    def _terms_columns(self) -> str:
        columns = "worker, basis, rate_fen, effective_from, added_at, added_by"
        return columns + (", back_pay" if self.has("wage_reversals") else "")  # type: ignore[attr-defined]

    def _terms_rows(self, sql: str, params) -> list[dict]:
        """Terms with ``back_pay`` decoded: each time they were set as a back pay (empty list: never)."""
        rows = self._rows(sql, params)
        for row in rows:
            row["back_pay"] = json.loads(row.get("back_pay") or "[]")
        return rows

    def wage_terms_of(self, workers: Iterable[str]) -> list[dict]:
        """``wage_terms()`` of these workers only: a site's table reads its own workers' terms."""
        workers = sorted(set(workers))
        found: list[dict] = []
        for start in range(0, len(workers), 500):
            chunk = workers[start:start + 500]
            found += self._terms_rows(f"SELECT {self._terms_columns()} FROM wage_terms "
                                f"WHERE worker IN ({', '.join('?' for _ in chunk)}) ORDER BY worker, effective_from",
                                chunk)
        return found

    # ================================================================== sites: pay day, payer, minimum wage

    def set_site_pay(self, site: str, *, pay_day: int, effective_from: str, by: str, employer: str = "",
                     payer_account: str | None = None, payer_name: str | None = None,
                     payer_bank: str | None = None) -> dict | None:
        """Record the site's (or one employer's) pay day and payer from a date on. Every change is a new
        row with who and when, never an overwrite: a second row for the same date takes its place from
        then on and the first is kept. Returns the row it takes the place of, if any."""
        if not 1 <= pay_day <= 31:
            raise StoreError("the pay day is a day of the month, 1 to 31 (a short month pays on its last day)")
        by = entered(by, what="who sets the pay day", limit=NAME_MAX_CHARS)
        employer = entered(employer, what="the employer", limit=NAME_MAX_CHARS, optional=True) or ""
        payer_name = entered(payer_name, what="the payer's name", limit=NAME_MAX_CHARS, optional=True)
        payer_bank = entered(payer_bank, what="the payer's bank", limit=NAME_MAX_CHARS, optional=True)
        # The debtor account of every batch: an account as a payee's is (collector.identity), digits only.
        payer_account = bank_account(payer_account) if payer_account is not None else None
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            earlier = self.db.record("SELECT * FROM site_pay WHERE site = ? AND employer = ? AND effective_from = ? "
                                     "ORDER BY id DESC LIMIT 1", (site, employer, effective_from))
            self.db.execute(
                """INSERT INTO site_pay (site, employer, pay_day, payer_account, payer_name, payer_bank, effective_from,
                       added_at, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (site, employer, pay_day, payer_account, payer_name, payer_bank, effective_from, self._now_text(), by))
            return earlier

    def site_pay(self, site: str) -> list[dict]:
        """Every row ever recorded, per employer ('' first) by date and then in the order recorded: the last
        row not after a date (``_in_force``) is the latest recorded for the latest date, the one in force."""
        return self._rows("SELECT * FROM site_pay WHERE site = ? ORDER BY employer, effective_from, id", (site,))

    def site_pay_in_force(self, site: str, day: str, employer: str = "") -> dict | None:
        """The row in force on a local date (YYYY-MM-DD): the latest recorded for the latest date not after it."""
        return self.db.record("SELECT * FROM site_pay WHERE site = ? AND employer = ? AND effective_from <= ? "
                              "ORDER BY effective_from DESC, id DESC LIMIT 1", (site, employer, day))

    def set_minimum_wage(self, site: str, *, hourly_fen: int, monthly_fen: int, effective_from: str, by: str) -> None:
        if hourly_fen <= 0 or monthly_fen <= 0:
            raise StoreError("a minimum wage is a positive amount")
        by = entered(by, what="who sets the minimum wage", limit=NAME_MAX_CHARS)
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            self.db.execute(
                """INSERT INTO minimum_wages (site, hourly_fen, monthly_fen, effective_from, added_at, added_by)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, effective_from) DO UPDATE SET
                   hourly_fen = excluded.hourly_fen, monthly_fen = excluded.monthly_fen,
                   added_at = excluded.added_at, added_by = excluded.added_by""",
                (site, hourly_fen, monthly_fen, effective_from, self._now_text(), by))

    def minimum_wages(self, site: str) -> list[dict]:
        return self._rows("SELECT hourly_fen, monthly_fen, effective_from FROM minimum_wages WHERE site = ? "
                          "ORDER BY effective_from", (site,))

    # ================================================================== a site's own working days

    def set_work_day(self, site: str, *, day: str, kind: str, reason: str, by: str) -> dict | None:
        """Record what a site's own calendar says of a local date: ``rest``, ``work`` or ``national`` (the
        national calendar again). A new row each time, never an overwrite: the latest for a day is in
        force. Returns the row it takes the place of, if any."""
        if kind not in WORK_DAY_KINDS:
            raise StoreError(f"a day of a site's calendar is {', '.join(WORK_DAY_KINDS)}, not {kind!r}")
        try:
            day = date.fromisoformat(day).isoformat()
        except (TypeError, ValueError):
            raise StoreError(f"{day!r} is not a date YYYY-MM-DD") from None
        reason = entered(reason, what="the reason", limit=REASON_MAX_CHARS)
        by = entered(by, what="who sets the day", limit=NAME_MAX_CHARS)
        with self.transaction():
            if not self._one("SELECT 1 FROM sites WHERE site = ?", (site,)):
                raise StoreError(f"site {site} does not exist")
            earlier = self.db.record("SELECT * FROM work_calendar WHERE site = ? AND day = ? ORDER BY id DESC LIMIT 1",
                                     (site, day))
            self.db.execute("INSERT INTO work_calendar (site, day, kind, reason, added_at, added_by) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (site, day, kind, reason, self._now_text(), by))
            return earlier

    def work_days(self, site: str) -> list[dict]:
        """Every row of the site's own calendar, by date and then in the order recorded (the last row of a
        date is the one in force); none on a database without them yet."""
        if not self.has("work_calendar"):  # type: ignore[attr-defined]
            return []
        return self._rows("SELECT * FROM work_calendar WHERE site = ? ORDER BY day, id", (site,))

    # ================================================================== deductions

    def add_deduction(self, *, site: str, period: str, worker: str, item: str, amount_fen: int, reason: str,
                      source: str, by: str) -> int:
        if amount_fen <= 0:
            raise StoreError("a deduction is a positive amount")
        if amount_fen > MAX_CREDIT_FEN:
            raise StoreError(f"a deduction of {yuan(amount_fen)} yuan is more than one worker's month is ever paid "
                             f"({yuan(MAX_CREDIT_FEN)} yuan)")
        item = entered(item, what="the deduction's item", limit=NAME_MAX_CHARS)
        reason = entered(reason, what="the deduction's reason", limit=REASON_MAX_CHARS)
        by = entered(by, what="who adds the deduction", limit=NAME_MAX_CHARS)
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            return self.db.value(
                "INSERT INTO wage_deductions (site, period, worker, item, amount_fen, reason, source, added_at, added_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (site, period, worker, item, amount_fen, reason, source, self._now_text(),
                 by))

    def deductions(self, site: str, period: str, *, worker: str | None = None,
                   with_reversed: bool = False) -> list[dict]:
        """The period's deductions in force (with those reversed too, if asked), per worker in the order made."""
        where, params = self._where(site=site, period=period, worker=worker)
        if not with_reversed and self.has("wage_reversals"):  # type: ignore[attr-defined]
            where += " AND reversed_at IS NULL"
        return self._rows(f"SELECT * FROM wage_deductions{where} ORDER BY worker, id", params)

    def deduction(self, deduction_id: int) -> dict | None:
        return self.db.record("SELECT * FROM wage_deductions WHERE id = ?", (deduction_id,))

    def reverse_deduction(self, deduction_id: int, *, reason: str, by: str) -> dict:
        """Take a deduction back, with who and why; it is kept (shown reversed), never deleted. Once."""
        reason = entered(reason, what="the reason for the reversal", limit=REASON_MAX_CHARS)
        by = entered(by, what="who reverses the deduction", limit=NAME_MAX_CHARS)
        with self.transaction():
            row = self.deduction(deduction_id)
            if row is None:
                raise StoreError(f"there is no deduction {deduction_id}")
            if row["reversed_at"] is not None:
                raise StoreError(f"deduction {deduction_id} was reversed already on {row['reversed_at']} by "
                                 f"{row['reversed_by']} ({row['reversed_reason']})")
            self.db.execute("UPDATE wage_deductions SET reversed_at = ?, reversed_by = ?, reversed_reason = ? "
                            "WHERE id = ? AND reversed_at IS NULL", (self._now_text(), by, reason, deduction_id))
            return self.deduction(deduction_id)

    # ================================================================== wage tables

    def save_wage_table(self, *, site: str, period: str, status: str, final: bool, lines: list[dict], by: str,
                        reason: str | None, pay_day: str | None) -> dict:
        """A new version of the period's table; every earlier version is kept as it was."""
        by = entered(by, what="who computes the table", limit=NAME_MAX_CHARS)
        reason = entered(reason, what="the reason", limit=REASON_MAX_CHARS, optional=True)
        with self.transaction():
            version = (self.db.value("SELECT MAX(version) FROM wage_tables WHERE site = ? AND period = ?",
                                     (site, period)) or 0) + 1
            table_id = self.db.value(
                """INSERT INTO wage_tables (site, period, version, status, final, computed_at, computed_by, reason, pay_day)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                (site, period, version, status, int(final), self._now_text(), by, reason, pay_day))
            self.db.executemany(
                """INSERT INTO wage_lines (table_id, worker, name, employer, id_number, phone, bank_account, bank_name,
                       days, worked_minutes, basis, rate_fen, gross_fen, deductions_fen, net_fen, status, flags, detail)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [(table_id, line["worker"], line["name"], line["employer"], line["id_number"], line["phone"],
                  line["bank_account"], line["bank_name"], line["days"], line["worked_minutes"], line["basis"],
                  line["rate_fen"], line["gross_fen"], line["deductions_fen"], line["net_fen"], line["status"],
                  ",".join(line["flags"]), json.dumps(line["detail"], sort_keys=True, ensure_ascii=False))
                 for line in lines])
            return {"id": table_id, "version": version}

    def wage_tables(self, site: str | None = None, period: str | None = None) -> list[dict]:
        where, params = self._where(site=site, period=period)
        return self._rows(f"SELECT * FROM wage_tables{where} ORDER BY site, period, version", params)

    def wage_table(self, site: str, period: str, version: int | None = None, *,
                   worker: str | None = None) -> dict | None:
        """A version of the period's table with its lines (the latest if ``version`` is None; ``worker``'s
        line only, if given)."""
        if version is None:
            rows = self._rows("SELECT * FROM wage_tables WHERE site = ? AND period = ? ORDER BY version DESC LIMIT 1",
                              (site, period))
        else:
            rows = self._rows("SELECT * FROM wage_tables WHERE site = ? AND period = ? AND version = ?",
                              (site, period, version))
        if not rows:
            return None
        table = rows[0]
        table["lines"] = self.wage_lines(table["id"], worker=worker)
        return table

    def wage_lines(self, table_id: int, *, worker: str | None = None) -> list[dict]:
        where, params = self._where(table_id=table_id, worker=worker)
        lines = self._rows(f"SELECT * FROM wage_lines{where} ORDER BY worker", params)
        for line in lines:
            line["flags"] = [f for f in line["flags"].split(",") if f]
            line["detail"] = json.loads(line["detail"])
        return lines

    def approve_wage_table(self, table_id: int, *, by: str, overrides: dict[str, str] | None = None) -> None:
        """Freeze a version: it becomes the period's approved table, the one approved before it superseded.
        Four eyes: whoever computed the version does not approve it, and each line that still needs a
        decision is held with its own reason (``overrides``: worker -> why), none without one. The site's
        payer in force on the period's last day (account, name, bank) is frozen with it: what its batches
        debit, whatever the site's pay settings say later."""
        by = entered(by, what="who approves", limit=NAME_MAX_CHARS)
        reasons = {worker: entered(reason, what=f"the override reason of {worker}'s line", limit=REASON_MAX_CHARS)
                   for worker, reason in (overrides or {}).items()}
        with self.transaction():
            table = self.db.record("SELECT site, period, version, status, computed_by FROM wage_tables WHERE id = ?",
                                   (table_id,))
            if table is None:
                raise StoreError(f"there is no wage table {table_id}")
            if table["status"] != "computed":
                raise StoreError(f"a {table['status']} wage table cannot be approved")
            if same_person(by, table["computed_by"]):
                raise StoreError(f"{table['site']} {table['period']} version {table['version']} was computed by "
                                 f"{table['computed_by']}: {by} cannot approve it too (four eyes: another person approves)")
            held = {row["worker"] for row in self._rows("SELECT worker FROM wage_lines WHERE table_id = ? AND "
                                                        "status != 'payable'", (table_id,))}
            if set(reasons) != held:
                missing, stray = sorted(held - set(reasons)), sorted(set(reasons) - held)
                raise StoreError("each held line needs its own override reason, and only a held line has one"
                                 + (f"; without a reason: {', '.join(missing)}" if missing else "")
                                 + (f"; not held: {', '.join(stray)}" if stray else ""))
            year, month = (int(part) for part in table["period"].split("-"))
            payer = self.site_pay_in_force(table["site"],
                                           f"{table['period']}-{calendar.monthrange(year, month)[1]:02d}") or {}
            self.db.execute("UPDATE wage_tables SET status = 'superseded' WHERE site = ? AND period = ? "
                            "AND status = 'approved'", (table["site"], table["period"]))
            self.db.execute("UPDATE wage_tables SET status = 'approved', approved_at = ?, approved_by = ?, override = ?, "
                            "payer_account = ?, payer_name = ?, payer_bank = ? WHERE id = ?",
                            (self._now_text(), by, None, payer.get("payer_account"), payer.get("payer_name"),
                             payer.get("payer_bank"), table_id))
            self.db.executemany("UPDATE wage_lines SET override = ? WHERE table_id = ? AND worker = ?",
                                [(reason, table_id, worker) for worker, reason in sorted(reasons.items())])

    def line_overrides(self, site: str, period: str | None = None) -> list[dict]:
        """Each held line of an approved (or superseded) version with its reason: table_id, worker, override."""
        if not self.has("four_eyes"):  # type: ignore[attr-defined]
            return []
        where, params = self._where(site=site, period=period)
        return self._rows("SELECT l.table_id, l.worker, l.override FROM wage_lines l WHERE l.override IS NOT NULL "
                          f"AND l.table_id IN (SELECT id FROM wage_tables{where}) ORDER BY l.table_id, l.worker", params)

    def first_period_with_table(self, worker: str) -> str | None:
        """The earliest period (YYYY-MM) in which a wage table that is not a draft has a line for ``worker``."""
        return self.db.value("SELECT MIN(t.period) FROM wage_tables t JOIN wage_lines l ON l.table_id = t.id "
                             "WHERE l.worker = ? AND t.status != 'draft'", (worker,))
