"""An employer's wage sheet kept and checked against the gates and the period's wage table.

The labour subcontractor's sheet says what it will pay each worker for the month (Regulations on
Ensuring Payment of Wages to Migrant Workers, Art. 31: it draws up the table, the general contractor
pays from it). The bank holds what the gates verified. Each difference is a finding, with the worker,
what the sheet says and what the gates say:

- ``ghost``: paid in the sheet with no verified day at the site in the period, or not a registered worker;
- ``other_employer``: a registered worker on the sheet of an employer that is not the worker's (checked
  when the sheet names its employer);
- ``name_differs``, ``id_differs``, ``account_differs``: the sheet's name, ID number or account for a
  registered worker is not the one the bank holds for that worker (a name compared without spaces, in
  NFKC form, middle dots alike; an ID without spaces, upper case; an account by its digits). The bank
  pays the registered account in the registered name, so a sheet naming 王五 with his ID and account under
  W1's number is another person claiming W1's wage, and a name that differs is what makes a credit come
  back (户名不符). Numbers are shown masked, never whole;
- ``unpaid``: verified days and no line in the sheet (of the sheet's employer, when it names one);
- ``days_over``: more days claimed than verified;
- ``below_minimum``: the sheet's amount (before deductions) below the site's local minimum wage in force
  on the period's last day: the monthly minimum for a worker whose verified time is a full month (the
  statutory 174 hours: 21.75 days of 8 hours), otherwise the hourly minimum times the verified hours;
  compared in integer fen (amount x 60 < hourly x minutes);
- ``shared_account``: one payee account (digits only) on several workers' lines, or on one worker's line
  and another worker's registered account (someone holding workers' cards, forbidden by Art. 31);
- ``amount_differs``: the sheet's amount is not the gross of the worker's line in the latest table;
- ``deductions_over_half``: the sheet deducts more than half the line's amount, a decision for a person:
  taken as the period's (``--take-deductions``), they hold the worker's wage line too (wages.over_half).

A verified day is a complete day of the gates' attendance (IN and OUT, worked time, final); days still to
decide and days not final yet are counted beside it, never as verified.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from collector import masking
from collector.attendance.reports import attendance
from collector.money import yuan
from collector.store import Store, StoreError
from collector.wages.sheet import deductions_to_take, read_sheet
from collector.wages.table import (
    FULL_MONTH_MINUTES,
    UNDECIDED,
    WageError,
    below_minimum,
    over_half,
    payee_key,
    period_bounds,
)
from gate_agent.protocol import format_time

KINDS = ("ghost", "other_employer", "name_differs", "id_differs", "account_differs", "unpaid", "days_over", "below_minimum", "shared_account", "amount_differs", "deductions_over_half")
#: The statutory standard month (劳社部发〔2008〕3号): 21.75 days of 8 hours.
#: Bad rows shown before the rest are only counted.
SHOWN_PROBLEMS = 20
#: A deduction the sheet claims, when recorded as the period's.
SHEET_ITEM = "扣款"


class SheetRefused(WageError):
    """The sheet has bad rows: nothing was imported. ``problems`` lists every one."""

    def __init__(self, file_name: str, problems: list):
        self.problems = problems
        super().__init__(f"{file_name}: {len(problems)} bad row(s); nothing imported")

    def shown(self, limit: int = SHOWN_PROBLEMS) -> list[str]:
        """The first bad rows (each naming the file and where in it), then how many more there are."""
        lines = [str(problem) for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more bad row(s)")
        return lines


def source(sheet: dict) -> str:
    """'sheet 1a2b3c4d5e6f': where a deduction taken from a sheet came from."""
    return f"sheet {sheet['sha256'][:12]}"


def _where(sheet: dict) -> str:
    return "row" if sheet["format"] == "xlsx" else "line"


# ============================================================================== import


def import_sheet(store: Store, path: str | Path, *, site: str, period: str, by: str, employer: str = "",
                 take_deductions: bool = False, sheet: str | None = None) -> dict:
    """Read, validate and keep a sheet (all lines or none); the same file again changes nothing. With
    ``take_deductions`` its deductions become the period's (once)."""
    if not by.strip():
        raise WageError("say who imports the sheet (--by)")
    first, last = period_bounds(period)
    if store.site(site) is None:
        raise StoreError(f"site {site} does not exist")
    read, problems = read_sheet(path, period_days=last.day, sheet=sheet)
    if problems:
        raise SheetRefused(read.file_name, problems)
    if take_deductions and not read.deductions_column:
        raise WageError(f"{read.file_name} has no deductions column (扣款): it claims no deductions to take "
                        "(import it without --take-deductions)")
    held = store.wage_sheet_by_sha256(read.sha256)
    if take_deductions and (held is None or held["deductions_taken_at"] is None):
        _deductions_to_take(store, site, period, read.lines)  # refused before the sheet is kept
    if held is None:
        sheet_id = store.add_wage_sheet(site=site, period=period, employer=employer, file_name=read.file_name,
                                        sha256=read.sha256, format=read.format, encoding=read.encoding,
                                        ignored_columns=read.ignored_columns, notes=read.notes, by=by.strip(),
                                        lines=read.lines)
        already = sheet_id is None  # another import of the same file won the race
        held = store.wage_sheet_by_sha256(read.sha256)
    else:
        already = True
    if already and (held["site"], held["period"], held["employer"]) != (site, period, employer):
        raise WageError(f"{read.file_name} was imported as sheet {held['id']} for {held['site']} {held['period']}"
                        + (f" ({held['employer']})" if held["employer"] else "")
                        + "; a sheet belongs to one site, month and employer")
    taken = None
    if take_deductions:
        taken = take_sheet_deductions(store, held, by=by.strip())
        held = store.wage_sheet(held["id"])
    return {**summary(held), "already_imported": already, "deductions_taken": taken,
            "deductions_over_half": deductions_over_half(held)}


def deductions_over_half(sheet: dict) -> list[dict]:
    """The lines whose deductions are above half their amount: each a decision for a person."""
    return [{"worker": line["worker"], "row": line["source_row"], "amount_fen": line["amount_fen"],
             "deductions_fen": line["deductions_fen"]}
            for line in sheet["lines"] if line["deductions_fen"] and over_half(line["deductions_fen"], line["amount_fen"])]


def summary(sheet: dict) -> dict:
    """A kept sheet without its lines, with their count and totals."""
    head = {k: sheet[k] for k in ("id", "site", "period", "employer", "file_name", "sha256", "format", "encoding",
                                  "ignored_columns", "notes", "imported_at", "imported_by", "deductions_taken_at",
                                  "deductions_taken_by")}
    lines = sheet["lines"]
    return {**head, "lines": len(lines), "amount_fen": sum(line["amount_fen"] for line in lines),
            "deductions_fen": sum(line["deductions_fen"] for line in lines)}


def take_sheet_deductions(store: Store, sheet: dict, *, by: str) -> dict:
    """The sheet's deductions recorded as the period's, each with its source (``sheet <sha256 prefix>``),
    once per sheet, and only what it claims beyond the worker's deductions recorded already
    (sheet.deductions_to_take: a sheet that agrees adds nothing; one that claims less is refused,
    DeductionsDisagree). A worker the registry does not know has nothing to deduct from: listed, not recorded."""
    registered = store.payees()
    where = _where(sheet)
    claimed = [line for line in sheet["lines"] if line["deductions_fen"] > 0]
    known = {line["worker"]: line for line in sheet["lines"] if line["worker"] in registered}
    taking = {} if sheet["deductions_taken_at"] else \
        _deductions_to_take(store, sheet["site"], sheet["period"], list(known.values()))
    deductions = []
    for worker, amount in sorted(taking.items()):
        line = known[worker]
        before = line["deductions_fen"] - amount
        deductions.append({
            "site": sheet["site"], "period": sheet["period"], "worker": worker, "item": SHEET_ITEM, "amount_fen": amount,
            "source": source(sheet), "by": by,
            "reason": f"claimed in the employer's wage sheet {sheet['file_name']}, {where} {line['source_row']}"
                      + (f": {yuan(line['deductions_fen'])} yuan, {yuan(before)} of it recorded before" if before else "")})
    recorded = store.take_sheet_deductions(sheet["id"], by=by, deductions=deductions)
    return {"recorded": len(deductions) if recorded else 0,
            "recorded_fen": sum(d["amount_fen"] for d in deductions) if recorded else 0,
            "taken_before": not recorded,
            "not_registered": [line["worker"] for line in claimed if line["worker"] not in registered]}


class DeductionsDisagree(WageError):
    """A sheet deducts less from a worker than is recorded for the period: nothing is taken."""


def _deductions_to_take(store: Store, site: str, period: str, lines: list[dict]) -> dict[str, int]:
    recorded: dict[str, int] = defaultdict(int)
    for row in store.deductions(site, period):
        recorded[row["worker"]] += row["amount_fen"]
    taking, disagree = deductions_to_take(lines, recorded)
    if disagree:
        shown = "; ".join(disagree[:5]) + (f"; and {len(disagree) - 5} more" if len(disagree) > 5 else "")
        raise DeductionsDisagree(f"the sheet deducts less than {site} {period} has recorded ({shown}): nothing "
                                 "imported; correct the sheet, or the recorded deductions, first (collector wages deductions, "
                                 "collector wages reverse-deduction ID)")
    return taking


# ============================================================================== the check


def chosen_sheet(store: Store, site: str, period: str, *, employer: str | None = None,
                 sheet_id: int | None = None) -> dict:
    """The sheet to check: the one named, or the latest of the site, month (and employer)."""
    if sheet_id is not None:
        sheet = store.wage_sheet(sheet_id)
        if sheet is None or (sheet["site"], sheet["period"]) != (site, period):
            raise WageError(f"{site} {period} has no wage sheet {sheet_id}")
        return sheet
    sheets = store.wage_sheets(site, period, employer)
    if not sheets:
        raise WageError(f"{site} {period} has no wage sheet" + (f" of {employer}" if employer else "")
                        + " (collector wages import-sheet)")
    employers = sorted({s["employer"] for s in sheets})
    if employer is None and len(employers) > 1:
        raise WageError(f"{site} {period} has sheets of several employers ("
                        + ", ".join(e or "none named" for e in employers) + "): say which with --employer")
    return store.wage_sheet(sheets[-1]["id"])


def verified_attendance(store: Store, site: str, period: str, *, now: datetime | None = None,
                        grace: timedelta = timedelta(hours=6)) -> dict[str, dict]:
    """Per worker: verified days and their minutes, days still to decide, days not final yet."""
    first, last = period_bounds(period)
    found: dict[str, dict] = defaultdict(lambda: {"days": 0, "minutes": 0, "to_decide": 0, "not_final": 0})
    for record in attendance(store, site, first, last, now=now, grace=grace):
        worker = found[record["worker"]]
        if not record["final"]:
            worker["not_final"] += 1
        elif record["status"] == "complete" and record["worked_minutes"] > 0:
            worker["days"] += 1
            worker["minutes"] += record["worked_minutes"]
        elif record["status"] in UNDECIDED or record["status"] == "complete":
            worker["to_decide"] += 1
    return dict(found)


def check(store: Store, site: str, period: str, *, employer: str | None = None, sheet_id: int | None = None,
          now: datetime | None = None, grace: timedelta = timedelta(hours=6)) -> dict:
    """The findings of a kept sheet against the gates' verified attendance and the latest wage table."""
    now = now or datetime.now(UTC)
    _, last = period_bounds(period)
    if store.site(site) is None:
        raise StoreError(f"site {site} does not exist")
    table = store.wage_table(site, period)
    if table is None:
        raise WageError(f"{site} {period} has no wage table: run `collector wages run --site {site} --period "
                        f"{period}` first")
    sheet = chosen_sheet(store, site, period, employer=employer, sheet_id=sheet_id)
    verified = verified_attendance(store, site, period, now=now, grace=grace)
    payees = store.payees()
    gross = {line["worker"]: line["gross_fen"] for line in table["lines"]}
    minimum = next((row for row in reversed(store.minimum_wages(site)) if row["effective_from"] <= last.isoformat()),
                   None)
    where = _where(sheet)
    notes = []
    if minimum is None:
        notes.append(f"{site} has no minimum wage in force on {last}: below_minimum not checked "
                     "(collector site minimum-wage)")
    not_final = sum(v["not_final"] for v in verified.values())
    if not_final:
        notes.append(f"{not_final} worker-day(s) of the period are not final yet: not counted as verified")
    if table["status"] == "draft":
        notes.append(f"wage table version {table['version']} is a draft (the period was not final)")
    if sheet["employer"]:
        notes.append(f"unpaid looks only at workers of {sheet['employer']}")
    else:
        notes.append("the sheet names no employer: other_employer not checked (import-sheet --employer)")

    findings: list[dict] = []

    def found(kind: str, worker: str, name: str | None, row: int | None, sheet_says: str, gates_say: str,
              **detail) -> None:
        findings.append({"kind": kind, "worker": worker, "name": name, "row": row, "sheet_says": sheet_says,
                         "gates_say": gates_say, "detail": detail})

    for line in sheet["lines"]:
        worker, row = line["worker"], line["source_row"]
        payee = payees.get(worker)
        name = payee["name"] if payee else line["name"]
        attended = verified.get(worker, {"days": 0, "minutes": 0, "to_decide": 0, "not_final": 0})
        claim = _claim(line)
        if payee is None:
            found("ghost", worker, name, row, claim, "not a registered worker", sheet_amount_fen=line["amount_fen"])
            continue
        for kind, sheet_says, bank_holds, detail in _identity(line, payee, sheet["employer"]):
            found(kind, worker, name, row, sheet_says, bank_holds, **detail)
        if attended["days"] == 0:
            if line["amount_fen"] > 0:
                found("ghost", worker, name, row, claim, f"no verified day at {site} in {period}"
                      + _undecided(attended), sheet_amount_fen=line["amount_fen"], verified_days=0,
                      to_decide=attended["to_decide"])
            continue
        record = _verified(attended)
        if Decimal(line["days"]) > attended["days"]:
            found("days_over", worker, name, row, f"{line['days']} days", record + _undecided(attended),
                  sheet_days=line["days"], verified_days=attended["days"])
        if minimum is not None:
            below = _below_minimum(line["amount_fen"], attended["minutes"], minimum)
            if below is not None:
                found("below_minimum", worker, name, row, f"{yuan(line['amount_fen'])} yuan", f"{record}: {below[1]}",
                      sheet_amount_fen=line["amount_fen"], worked_minutes=attended["minutes"], minimum_fen=below[0],
                      minimum=below[2])
        if worker not in gross:
            found("amount_differs", worker, name, row, f"{yuan(line['amount_fen'])} yuan",
                  f"{record}; no line in wage table version {table['version']} (run the table again)",
                  sheet_amount_fen=line["amount_fen"], table_gross_fen=None)
        elif gross[worker] != line["amount_fen"]:
            found("amount_differs", worker, name, row, f"{yuan(line['amount_fen'])} yuan",
                  f"{yuan(gross[worker])} yuan gross in wage table version {table['version']}",
                  sheet_amount_fen=line["amount_fen"], table_gross_fen=gross[worker])

    claimed = {line["worker"] for line in sheet["lines"]}
    for worker in sorted(verified):
        attended, payee = verified[worker], payees.get(worker) or {}
        if attended["days"] == 0 or worker in claimed:
            continue
        if sheet["employer"] and payee.get("employer") != sheet["employer"]:
            continue
        found("unpaid", worker, payee.get("name"), None, "no line", _verified(attended)
              + (f"; {yuan(gross[worker])} yuan gross in wage table version {table['version']}" if worker in gross else ""),
              verified_days=attended["days"], worked_minutes=attended["minutes"], table_gross_fen=gross.get(worker))

    for line in sheet["lines"]:
        if line["deductions_fen"] and over_half(line["deductions_fen"], line["amount_fen"]):
            payee = payees.get(line["worker"]) or {}
            found("deductions_over_half", line["worker"], payee.get("name") or line["name"], line["source_row"],
                  f"{yuan(line['amount_fen'])} yuan less {yuan(line['deductions_fen'])} deductions",
                  "more than half the amount deducted: a decision for a person (taken as the period's, they hold "
                  "the wage line)", sheet_amount_fen=line["amount_fen"], sheet_deductions_fen=line["deductions_fen"])

    for line, others in _shared_accounts(sheet, payees, where):
        found("shared_account", line["worker"], (payees.get(line["worker"]) or {}).get("name") or line["name"],
              line["source_row"], f"account {masking.account(line['bank_account'])}",
              "the same account as " + ", ".join(f"{w} ({held})" for w, held in others),
              account=masking.account(line["bank_account"]), shared_with=[w for w, _ in others])

    findings.sort(key=lambda f: (KINDS.index(f["kind"]), f["worker"]))
    return {
        "site": site, "period": period, "checked_at": format_time(now),
        "sheet": summary(sheet),
        "table": {k: table[k] for k in ("version", "status", "final", "computed_at", "computed_by")},
        "notes": notes,
        "summary": {kind: sum(1 for f in findings if f["kind"] == kind) for kind in KINDS},
        "findings": findings,
        "lines": [{**line, "id_number": masking.id_number(line["id_number"]),
                   "bank_account": masking.account(line["bank_account"])} for line in sheet["lines"]],
    }


def _identity(line: dict, payee: dict, employer: str) -> list[tuple[str, str, str, dict]]:
    """Where the sheet's line says another person than the registered worker: (kind, what the sheet says,
    what the bank holds, detail), numbers masked."""
    found = []
    registered_employer = payee.get("employer") or ""
    if employer and registered_employer != employer:
        found.append(("other_employer", f"on the sheet of {employer}",
                      f"registered with {registered_employer or 'no employer'}",
                      {"sheet_employer": employer, "registered_employer": registered_employer or None}))
    if line["name"] and _name_key(line["name"]) != _name_key(payee.get("name") or ""):
        found.append(("name_differs", f"name {line['name']}", f"registered as {payee.get('name')}",
                      {"sheet_name": line["name"], "registered_name": payee.get("name")}))
    for kind, field, what, mask in (("id_differs", "id_number", "ID", masking.id_number),
                                    ("account_differs", "bank_account", "account", masking.account)):
        flag = "duplicate_id" if field == "id_number" else "shared_account"
        said, held = payee_key(flag, {field: line[field]}), payee_key(flag, payee)
        if not said or said == held:
            continue
        shown_said, shown_held = mask(said), mask(held) if held else None
        hidden = " (they differ in the hidden digits)" if shown_said == shown_held else ""
        found.append((kind, f"{what} {shown_said}", f"registered {what} {shown_held or 'none'}{hidden}",
                      {f"sheet_{field}": shown_said, f"registered_{field}": shown_held}))
    return found


#: Middle dots between the parts of a name (买买提·艾力), written several ways.
_MIDDLE_DOTS = str.maketrans({"\u2022": "\u00b7", "\u30fb": "\u00b7", "\u2027": "\u00b7", "\u22c5": "\u00b7",
                              ".": "\u00b7"})


def _name_key(name: str) -> str:
    """A name as compared: NFKC (full-width letters as ASCII), no spaces, one middle dot, case folded."""
    text = unicodedata.normalize("NFKC", name).translate(_MIDDLE_DOTS)
    return re.sub(r"\s", "", text).casefold()


def _claim(line: dict) -> str:
    hours = f", {line['hours']} h" if line["hours"] else ""
    deducted = f" less {yuan(line['deductions_fen'])} deductions" if line["deductions_fen"] else ""
    return f"{line['days']} days{hours}, {yuan(line['amount_fen'])} yuan{deducted}"


def _verified(attended: dict) -> str:
    return f"{attended['days']} verified days, {_hours(attended['minutes'])} h"


def _undecided(attended: dict) -> str:
    parts = []
    if attended["to_decide"]:
        parts.append(f"{attended['to_decide']} day(s) to decide")
    if attended["not_final"]:
        parts.append(f"{attended['not_final']} day(s) not final yet")
    return f" ({', '.join(parts)})" if parts else ""


def _hours(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _below_minimum(amount_fen: int, minutes: int, minimum: dict) -> tuple[int, str, str] | None:
    """(the least pay, why, 'monthly'/'hourly') when ``amount_fen`` is below the minimum; None otherwise."""
    if not minutes or not below_minimum(amount_fen, minutes, minimum):
        return None
    if minutes >= FULL_MONTH_MINUTES:
        return minimum["monthly_fen"], f"a full month: the monthly minimum is {yuan(minimum['monthly_fen'])} yuan", \
            "monthly"
    least = -(-minimum["hourly_fen"] * minutes // 60)  # rounded up: the least that is not below
    return least, f"at the minimum of {yuan(minimum['hourly_fen'])} yuan an hour at least {yuan(least)} yuan", "hourly"


def _shared_accounts(sheet: dict, payees: dict[str, dict], where: str) -> list[tuple[dict, list[tuple[str, str]]]]:
    """Each sheet line whose account (digits only) another worker's line or registered account also has,
    with those workers and where each holds it."""
    holders: dict[str, dict[str, str]] = defaultdict(dict)
    for line in sheet["lines"]:
        holders[line["bank_account"]][line["worker"]] = f"{where} {line['source_row']}"
    for worker, payee in sorted(payees.items()):
        digits = payee_key("shared_account", payee)
        if digits in holders:
            holders[digits].setdefault(worker, "registered account")
    shared = []
    for line in sheet["lines"]:
        others = [(w, held) for w, held in holders[line["bank_account"]].items() if w != line["worker"]]
        if others:
            shared.append((line, sorted(others)))
    return shared
