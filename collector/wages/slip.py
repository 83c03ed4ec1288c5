"""The worker's wage slip (工资清单): one printable, self-contained HTML page per worker and month.

What the worker keeps (Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15 and 31): each
day's first IN and last OUT in the site's local time with the time worked and whether the day is paid,
the rate, gross, each deduction, net, the payment and the bank's voucher, and the id of the bank-signed
evidence file for those days, with the commands that fetch and check it, so that the days can be proved
later, anywhere, without trusting this page. ID number, phone and account appear masked. The page is
built from the period's approved wage table (else its latest version, marked as not approved, or as a
draft that is never paid); the days are those the attendance gives now, and any difference from the
table is said on the page.

The worker reads it on a phone: Chinese first on every line (English after it), every time in the
site's zone, and on a narrow screen each table row stacks into a card of labelled values instead of
running off the side. A line paid more than its net says so (多付) rather than "paid X of Y".
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jinja2

from collector import masking
from collector.attendance.reports import attendance
from collector.evidence.document import days_id, stated_days
from collector.localtime import local_text, local_text_dt, zone
from collector.money import divide_half_up, yuan
from collector.store import Store
from collector.wages.table import FLAG_WORDS, SAME_PAYEE, STATUS_WORDS, WageError, _in_force, period_bounds
from gate_agent.protocol import format_time

TEMPLATES = Path(__file__).parent / "templates"
#: Statuses of a table a slip can be made from, and the banner the page carries for each.
BANNERS = {
    "approved": None,
    "computed": ("未审批 NOT APPROVED", "本工资表已计算，尚未审批，金额可能变化。This wage table is computed but not "
                 "approved yet: amounts may change."),
    "draft": ("草稿 DRAFT", "本月考勤尚未最终确定，此为草稿，不予支付，也不是工资清单。A draft of a month that is not "
              "final: it is never paid and is not a wage statement."),
}
#: A table's status and a credit's, as the slip says them (Chinese, then English).
TABLE_WORDS = {"approved": "已审批 approved", "computed": "未审批 computed, not approved", "draft": "草稿 draft",
               "superseded": "已被新版本取代 superseded"}
CREDIT_WORDS = {"paid": "已支付 paid", "pending": "银行处理中 at the bank", "failed": "支付失败 failed",
                "reversed": "银行退汇 returned after payment", "withdrawn": "已撤回，未发送 withdrawn, never sent"}
#: Why a day is not paid, in Chinese (table.STATUS_WORDS gives the English).
STATUS_CHINESE = {"open": "仍在场内：没有出场记录", "missing_out": "有进场、在最长班次内没有出场",
                  "missing_in": "有出场、没有进场", "anomaly": "重复进场或出场", "error": "当天无法计算（见银行日志）",
                  "no_time": "进出之间没有工作时间", "not_assigned": "当天未登记在该工地",
                  "no_terms": "当天没有有效的工资标准", "short_day": "工作时间不足一个计薪日",
                  "contested": "当天的打卡有争议（闸机记录冲突或断链），待银行核查"}


def choose_table(store: Store, worker: str, period: str, site: str | None) -> dict:
    """The table a slip shows: the period's approved version at the site, else its latest one, with the
    worker's line only. Refuses when the period has no table there, or the worker is not in it."""
    period_bounds(period)
    if site is None:
        sites = sorted({t["site"] for t in store.wage_tables(period=period)})
        having = [s for s in sites if _table(store, s, period, worker)["lines"]]
        if not sites:
            raise WageError(f"no wage table for {period} at any site (collector wages run)")
        if not having:
            raise WageError(f"{worker} is in no wage table for {period} (sites with a table: {', '.join(sites)})")
        if len(having) > 1:
            raise WageError(f"{worker} is in the {period} wage tables of {', '.join(having)}: say which with --site")
        site = having[0]
    if store.site(site) is None:
        raise WageError(f"site {site} does not exist")
    if not store.wage_tables(site, period):
        raise WageError(f"{site} {period} has no wage table (collector wages run)")
    table = _table(store, site, period, worker)
    if not table["lines"]:
        raise WageError(f"{worker} is not in the {site} {period} wage table (version {table['version']})")
    return table


def _table(store: Store, site: str, period: str, worker: str) -> dict:
    approved = [t for t in store.wage_tables(site, period) if t["status"] == "approved"]
    version = approved[-1]["version"] if approved else None
    return store.wage_table(site, period, version, worker=worker)


def slip(store: Store, worker: str, period: str, *, site: str | None = None, now: datetime | None = None,
         grace: timedelta = timedelta(hours=6)) -> dict:
    """Everything the slip shows, as data (personal data already masked)."""
    now = now or datetime.now(UTC)
    table = choose_table(store, worker, period, site)
    site = table["site"]
    first, last = period_bounds(period)
    line = table["lines"][0]
    site_row = store.site(site)
    tz = zone(site_row["timezone"])
    segments = line["detail"]["segments"]
    history = store.wage_terms(worker)
    days, counted_days, counted_minutes = [], 0, 0
    # What the table held of a day it could not tell from the attendance alone (too short, contested).
    held = {d["date"]: d["status"] for d in line["detail"]["days_to_decide"] if d["status"] in ("short_day", "contested")}
    for record in attendance(store, site, first, last, now=now, grace=grace, worker=worker):
        day = _day(record, history, held)
        if day["paid"]:
            counted_days += 1
            counted_minutes += record["worked_minutes"]
        days.append(day)
    versions = store.wage_tables(site, period)
    payments = store.wage_payments(site, period, worker=worker)
    paid = sum(p["amount_fen"] for p in payments if p["status"] == "paid")
    pending = sum(p["amount_fen"] for p in payments if p["status"] == "pending")
    stated = stated_days(store, worker, first, last, now=now)
    keys = store.bank_keys()
    return {
        "site": site, "site_name": site_row.get("name") or site, "timezone": site_row["timezone"],
        "period": period, "from": first.isoformat(), "to": last.isoformat(),
        "generated_at": format_time(now), "generated_local": local_text_dt(now, tz),
        "table": {**{k: table[k] for k in ("version", "status", "final", "computed_at", "computed_by", "reason",
                                           "approved_at", "approved_by", "pay_day")},
                  # Times in the site's zone, as every time on the slip.
                  "computed_local": local_text(table["computed_at"], tz),
                  "approved_local": local_text(table["approved_at"], tz),
                  "status_words": TABLE_WORDS.get(table["status"], table["status"])},
        "later_version": max(t["version"] for t in versions) if versions[-1]["version"] != table["version"] else None,
        "banner": BANNERS.get(table["status"]) if table["final"] else BANNERS["draft"],
        "worker": worker, "name": line["name"], "employer": line["employer"],
        "id_number": masking.id_number(line["id_number"]), "phone": masking.phone(line["phone"]),
        "bank_account": masking.account(line["bank_account"]), "bank_name": line["bank_name"],
        "line": {k: line[k] for k in ("days", "worked_minutes", "basis", "rate_fen", "gross_fen", "deductions_fen",
                                      "net_fen", "status", "flags")},
        # What the line's flags mean; the workers another flag names are not the worker's to see.
        "flag_words": {flag: list(FLAG_WORDS[flag]) for flag in line["flags"] if flag in FLAG_WORDS},
        "same_payee": [flag for flag in line["flags"] if flag in SAME_PAYEE],
        "segments": segments, "deductions": line["detail"]["deductions"],
        "days_to_decide": line["detail"]["days_to_decide"],
        "days": days,
        "differs": (counted_days, counted_minutes) != (line["days"], line["worked_minutes"]),
        "attendance_now": {"days": counted_days, "worked_minutes": counted_minutes},
        "payments": [{**{k: p[k] for k in ("batch_id", "end_to_end_id", "amount_fen", "status", "voucher", "paid_on",
                                           "reason", "table_version")},
                      "status_words": CREDIT_WORDS.get(p["status"], p["status"])} for p in payments],
        "paid_fen": paid, "pending_fen": pending, "overpaid_fen": max(0, paid - line["net_fen"]),
        "payment_status": _payment_status(table, line, paid, pending, payments),
        "evidence": {
            "days_id": days_id(stated), "days": len(stated),
            "worked_minutes": sum(d["worked_minutes"] for d in stated),
            "get": f"collector evidence --worker {worker} --from {first} --to {last} --out {worker}-{period}.json",
            "verify": f"collector verify {worker}-{period}.json --bank-key bank.pub",
            "bank_keys": [k["key_id"] for k in keys],
        },
    }


def _day(record: dict, history: list[dict], held: dict[str, str] | None = None) -> dict:
    """A day as the slip lists it: its times, what it counts, and why it is not paid when it is not
    (``held``: date -> the table's decision for a day it did not pay, ``short_day`` or ``contested``)."""
    why = None
    if record["status"] != "complete":
        why = record["status"]
    elif "not_assigned" in record["flags"]:
        why = "not_assigned"
    elif not record["worked_minutes"]:
        why = "no_time"
    elif (held or {}).get(record["date"]):
        why = held[record["date"]]
    terms = _in_force(history, date.fromisoformat(record["date"])) if why is None else None
    if why is None and terms is None:
        why = "no_terms"
    if why is not None:
        english = STATUS_WORDS.get(why, "no pay terms in force that day" if why == "no_terms" else why)
        why = f"{STATUS_CHINESE[why]} {english}" if why in STATUS_CHINESE else english
    return {"date": record["date"], "first_in": record["first_in"], "last_out": record["last_out"],
            "worked_minutes": record["worked_minutes"], "status": record["status"], "flags": record["flags"],
            "paid": why is None, "why_not": why,
            "basis": terms["basis"] if terms else None, "rate_fen": terms["rate_fen"] if terms else None}


def _payment_status(table: dict, line: dict, paid: int, pending: int, payments: list[dict]) -> tuple[str, str]:
    """(code, words in Chinese and English)."""
    if table["status"] != "approved" or not table["final"]:
        return "not_approved", "未审批，未支付 Not approved, not paid"
    if line["status"] != "payable":
        return "held", "暂缓支付：待核定 Held: needs a decision before it is paid"
    if line["net_fen"] <= 0:
        return "nothing_due", "无应付金额 Nothing to pay"
    if paid > line["net_fen"]:
        return "overpaid", f"多付 Overpaid: {yuan(paid - line['net_fen'])} 元 yuan more than the net"
    if paid >= line["net_fen"]:
        return "paid", "已支付 Paid"
    if pending:
        return "at_bank", "银行处理中 At the bank, not confirmed yet"
    if any(p["status"] == "reversed" for p in payments):
        return "reversed", "银行退汇，将重新支付 Returned by the bank after it was paid; it is paid again"
    if any(p["status"] == "failed" for p in payments):
        return "failed", "支付失败，将重新支付 Failed; it is paid again in the next batch"
    if paid:
        return "part_paid", "部分支付 Partly paid"
    return "due", f"应于 {table['pay_day']} 支付 Due on {table['pay_day']}"


# ============================================================================== the page


def _clock(text: str | None, day: str) -> str:
    """``2026-10-25T22:00:00+08:00`` -> ``22:00``; on another date than the day's, with that date."""
    if not text:
        return "—"
    moment = datetime.fromisoformat(text)
    return moment.strftime("%H:%M") if moment.date().isoformat() == day else moment.strftime("%m-%d %H:%M")


def _hours(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _rate(basis: str | None, rate_fen: int | None) -> str:
    if rate_fen is None:
        return "—"
    return f"{yuan(rate_fen)} 元/{'天 day' if basis == 'day' else '小时 hour'}"


def render(data: dict) -> str:
    """The slip as one HTML document (templates/wage_slip.html): no script, no external font, style or
    image; every value escaped by the template's autoescaping."""
    return _template().render(data)


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    environment.filters.update(clock=_clock, hours=_hours, yuan=yuan)
    environment.globals.update(rate=_rate, hourly=lambda rate_fen, minutes: divide_half_up(rate_fen * minutes, 60))
    return environment.get_template("wage_slip.html")
