"""Wages due, paid and overdue per worker, employer and site, and the Art. 27 warning.

Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 27: the bank that manages a special
wage account and sees wages not paid as agreed must say so. The rules, as of a date:

- due: the approved net of each payable line whose pay day is on or before the date;
- paid: the credits the bank's returns recorded paid on or before the date; pending: at the bank;
- overdue: due less paid, once the date is past the pay day (days past it are shown);
- the Art. 27 warning: a worker with gate-verified (final) days in a period whose pay day has passed
  and no paid line for it, whether a table was approved and not paid, a line was held at the approval,
  or no table was approved at all. Without an approved amount the worker's pay terms give an
  estimate, marked as one: the gross, since no deduction is approved either (an estimate is never
  below nothing, and never lowers what others are owed); a period whose days are not all final yet is
  named, since its verified days are not all known.
- as of a past date, the books as they stood at its end: a credit of a batch made later is neither
  paid nor at the bank, and one whose failure was recorded later was still at the bank.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from collector.attendance.reports import attendance
from collector.errors import InputError
from collector.localtime import day_bounds, to_local, zone
from collector.store import Store
from collector.wages.table import UNDECIDED, _in_force, compute, pay_date, period_bounds
from gate_agent.protocol import parse_time

log = logging.getLogger(__name__)

#: Punches before this are not on a working day this system can place (clock_implausible).
FIRST_MONTH = date(2020, 1, 1)


def arrears(store: Store, *, site: str | None = None, as_of: date | None = None, now: datetime | None = None,
            grace: timedelta = timedelta(hours=6), worker: str | None = None) -> dict:
    """``{"as_of", "workers": [...], "employers": [...], "sites": [...]}``; ``as_of`` defaults to each
    site's local today. With ``worker``, that worker's rows only (the totals are theirs), read from their
    own approved lines, payments and days: the rows the whole report has for them."""
    now = now or datetime.now(UTC)
    sites = [s for s in store.sites() if site is None or s["site"] == site]
    if site is not None and not sites:
        raise InputError(f"site {site} does not exist")
    rows, summaries = [], []
    for row in sites:
        day = as_of or to_local(now, zone(row["timezone"])).date()
        try:
            site_rows, notes = _site(store, row["site"], day, now, grace, worker)
        except Exception as error:  # noqa: BLE001 - one site that cannot be read must not hide the bank's others
            log.exception("the arrears of site %s cannot be computed", row["site"])
            reason = f"cannot be computed ({type(error).__name__}: {error})"
            summaries.append({"site": row["site"], "as_of": day.isoformat(), **_totals([]), "notes": [reason],
                              "error": reason})
            continue
        rows += site_rows
        summaries.append({"site": row["site"], "as_of": day.isoformat(), **_totals(site_rows), "notes": notes,
                          "error": None})
    employers: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        employers[(row["site"], row["employer"] or "")].append(row)
    return {"as_of": as_of.isoformat() if as_of else None, "workers": rows,
            "employers": [{"site": s, "employer": e, **_totals(r)} for (s, e), r in sorted(employers.items())],
            "sites": summaries}


def _totals(rows: list[dict]) -> dict:
    overdue = [r for r in rows if r["status"] == "overdue"]
    return {"due_fen": sum(r["due_fen"] or 0 for r in rows), "paid_fen": sum(r["paid_fen"] for r in rows),
            "pending_fen": sum(r["pending_fen"] for r in rows),
            "overdue_fen": sum(r["overdue_fen"] for r in overdue),
            "overdue_estimate_fen": sum(r["estimate_fen"] or 0 for r in overdue if r["estimate"]),
            "overdue_workers": len({r["worker"] for r in overdue}),
            "art27_warnings": sum(1 for r in rows if r["art27"])}


def _site(store: Store, site: str, as_of: date, now: datetime, grace: timedelta,
          worker: str | None = None) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    approved = {t["period"] for t in store.wage_tables(site) if t["status"] == "approved"}
    # Paid by the date, and at the bank on it (pending, or paid after it), summed by the database.
    settled: dict[tuple[str, str], dict] = defaultdict(lambda: {"paid": 0, "pending": 0})
    until = day_bounds(as_of, zone(store.site(site)["timezone"]))[1]
    for sums in store.payment_sums(site, as_of.isoformat(), worker=worker, until=until):
        settled[(sums["period"], sums["worker"])] = sums
    pay_days: dict[str, date] = {}
    for line in store.approved_lines(site, worker=worker):
        text = line["line_pay_day"] or line["pay_day"]
        pay_day = pay_days.get(text) or pay_days.setdefault(text, date.fromisoformat(text))
        rows.append(_approved_row(site, line, pay_day, as_of, settled[(line["period"], line["worker"])]))
    pay_rows = [r for r in store.site_pay(site) if r["employer"] == ""]
    for period in _worked_periods(store, site, as_of):
        if period in approved:
            continue
        first, last = period_bounds(period)
        terms = _in_force(pay_rows, last)
        if terms is None:
            notes.append(f"{period}: {site} has no pay day (collector site pay-day): its wages cannot fall due")
            continue
        if pay_date(period, terms["pay_day"]) >= as_of:
            continue
        unpaid, note = _unapproved(store, site, period, as_of, now, grace, worker)
        rows += unpaid
        if note:
            notes.append(note)
    return rows, notes


def _approved_row(site: str, line: dict, pay_day: date, as_of: date, sums: dict) -> dict:
    """A line of an approved table (``Store.approved_lines``) as of ``as_of``, with what was paid of it."""
    verified = line["days"] + line["to_decide"]
    row = _row(site, line["period"], line, pay_day, as_of, verified)
    row.update(table_version=line["version"], paid_fen=sums["paid"], pending_fen=sums["pending"])
    past = as_of > pay_day
    if line["status"] != "payable":
        # Held at the approval: nothing of it is approved for payment, its deductions neither, so what the
        # rules computed for its days is an estimate of what is owed.
        row.update(estimate=True, estimate_fen=_estimate(line) if line["days"] else None,
                   note=f"held at the approval ({', '.join(line['flags']) or line['status']})")
        row["status"] = "overdue" if past and verified and not sums["paid"] else "held"
    else:
        row["due_fen"] = line["net_fen"] if pay_day <= as_of else 0
        row["overdue_fen"] = max(0, row["due_fen"] - sums["paid"]) if past else 0
        if pay_day > as_of:
            row["status"] = "not_due"
        elif sums["paid"] + sums["pending"] > line["net_fen"]:
            row["status"] = "overpaid"
        elif row["overdue_fen"]:
            row["status"] = "overdue"
        elif sums["paid"] >= line["net_fen"]:
            row["status"] = "paid"
        else:
            row["status"] = "due"
    return _finish(row, as_of, pay_day)


def _row(site: str, period: str, line: dict, pay_day: date, as_of: date, verified: int) -> dict:
    return {"site": site, "period": period, "worker": line["worker"], "name": line["name"],
            "employer": line["employer"], "pay_day": pay_day.isoformat(), "table_version": None, "status": "",
            "due_fen": None, "paid_fen": 0, "pending_fen": 0, "overdue_fen": 0, "days_overdue": 0,
            "verified_days": verified, "estimate_fen": None, "estimate": False, "art27": False, "note": None}


def _estimate(line: dict) -> int:
    """What a line nothing of which is approved is estimated to owe: its gross. Its deductions are not
    approved either, and one exceeding the gross would make the estimate negative and lower the total
    owed to the others."""
    return max(0, line["gross_fen"])


def _finish(row: dict, as_of: date, pay_day: date) -> dict:
    if row["status"] == "overdue":
        row["days_overdue"] = (as_of - pay_day).days
        row["art27"] = row["verified_days"] > 0
    return row


def _unapproved(store: Store, site: str, period: str, as_of: date, now: datetime, grace: timedelta,
                worker: str | None = None) -> tuple[list[dict], str | None]:
    """Workers (or ``worker``) with verified days in a period past its pay day that has no approved table."""
    table = compute(store, site, period, now=now, grace=grace, draft=True, worker=worker)
    rows = []
    if table["final"]:
        for line in table["lines"]:
            verified = line["days"] + len(line["detail"]["days_to_decide"])
            pay_day = date.fromisoformat(line["detail"]["pay_day"] or table["pay_day"])
            if not verified or as_of <= pay_day:
                continue
            row = _row(site, period, line, pay_day, as_of, verified)
            known = line["days"] and "no_terms" not in line["flags"]
            row.update(status="overdue", estimate=True, estimate_fen=_estimate(line) if known else None,
                       note="no approved wage table" + ("" if known else "; no pay terms for its days: no estimate"))
            rows.append(_finish(row, as_of, pay_day))
        return rows, None
    # Not final: only the days that are count as verified, and no estimate is made from a partial month.
    first, last = period_bounds(period)
    days: dict[str, set] = defaultdict(set)
    names: dict[str, dict] = {}
    for record in attendance(store, site, first, last, now=now, grace=grace, worker=worker):
        if record["final"] and (record["status"] == "complete" or record["status"] in UNDECIDED):
            days[record["worker"]].add(record["date"])
            names[record["worker"]] = record
    by_worker = {line["worker"]: line for line in table["lines"]}
    for worker in sorted(days):
        line = by_worker.get(worker) or {"worker": worker, "name": names[worker]["name"],
                                         "employer": names[worker]["employer"], "detail": {}}
        pay_day = date.fromisoformat(line["detail"].get("pay_day") or table["pay_day"])
        if as_of <= pay_day:
            continue
        row = _row(site, period, line, pay_day, as_of, len(days[worker]))
        row.update(status="overdue", estimate=True, note="no approved wage table; the period is not final yet")
        rows.append(_finish(row, as_of, pay_day))
    return rows, f"{period}: past its pay day and not final yet (a gate has not shown it holds nothing from it)"


def _worked_periods(store: Store, site: str, as_of: date) -> list[str]:
    """The months, up to the one holding ``as_of``, in which the site has punches."""
    tz = zone(store.site(site)["timezone"])
    first = store.first_punch_time(site, day_bounds(FIRST_MONTH, tz)[0])
    if first is None:
        return []
    moment = to_local(parse_time(first), tz)
    if moment is None:
        return []
    month = moment.date().replace(day=1)
    periods = []
    while month <= as_of:
        last = period_bounds(f"{month:%Y-%m}")[1]
        if store.has_punches(site, day_bounds(month, tz)[0], day_bounds(last, tz)[1]):
            periods.append(f"{month:%Y-%m}")
        month = last + timedelta(days=1)
    return periods
