"""The wage table of a site and a month, computed from final attendance only.

One line per worker (Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15 and 31):
verified days and worked minutes, the basis and rate in force on each day, gross, deductions, net, and
the flags a person must see. The rules, applied in this order:

- Only complete days are paid. A day that is open, missing an OUT or IN, or anomalous is never paid
  silently: the line lists it as a day to decide (a manual punch or a void settles it, with its audit
  trail, and the table is computed again).
- A day rate pays each complete day; an hourly rate pays the day's worked minutes. Each day is paid at
  the terms in force on that day (a change mid-month splits the line into segments).
- A day-rate day worked less than the configured minimum (``[wages] paid_day_minutes``) is not a paid day
  but a decision (``short_day``), unless half days are configured and it reaches ``half_day_minutes``:
  then it pays half the day rate. A five-minute day is never a day's pay silently.
- A day resting on contested evidence, a punch the gate signed twice under one number (``equivocated``)
  or one whose chain link differs from the held one (``chain_break``), is a decision (``contested``)
  until a person voids the contested punch (and enters the true one by hand if need be).
- Money is integer fen. Minutes are paid exactly (rate x minutes / 60), half days too (rate / 2), and
  the line's sum of all its segments is rounded once, half up; whole days need no rounding.
- Deductions (each an item with a reason and who added it) are subtracted; a net below zero is not
  paid, it is a decision, and so are deductions above half the gross (``deductions_over_half``: a
  deduction is capped by law, 20% of the month's wage for damages, and a large one taken from an
  employer's sheet is what a forged sheet would claim), until a person approves over it.
- The local minimum wage is compared with the line's standard-time pay, overtime kept out: each day's
  first 8 hours are standard time (an hourly rate pays them, a day rate is spread evenly over the day's
  minutes and their share counted), and the monthly minimum is for the statutory month of 174 hours
  (21.75 days of 8 hours), prorated by the standard hours worked (a partial month) and never asked for
  more than 174. A line below it is flagged ``below_minimum`` (paid as computed: the bank reports, the
  regulation decides).
- A line's gross or net above ``collector.money.MAX_CREDIT_FEN`` (what no worker's month reaches) is a
  decision (``over_bound``): it could not be batched and returned as one credit.
- A payee another worker of the bank's registry also is, by its bank account (digits only) or its ID
  number, is a decision (``shared_account``, ``duplicate_id``; the other workers named on the line): two
  workers paid into one account, or one person registered as two, is someone holding others' cards or
  wages (Art. 31). One worker paid at two sites is one payee, never flagged.
- A period is computed only when every day of it is final (every gate has shown it holds nothing from
  it); otherwise only as a draft, which can never be approved or paid.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from collector.attendance import days
from collector.attendance.reports import attendance, check_period, site_day_final
from collector.errors import CollectorError
from collector.localtime import day_bounds, zone
from collector.money import MAX_CREDIT_FEN, divide_half_up
from collector.store import Store, StoreError
from collector.wages.limits import WageLimits
from gate_agent.protocol import parse_time

#: Days whose status means nobody knows yet what was worked.
UNDECIDED = ("open", "missing_out", "missing_in", "anomaly", "error")
#: What a day's status means, for the person who must decide it.
STATUS_WORDS = {
    "open": "still inside: no OUT yet",
    "missing_out": "an IN with no OUT within the maximum shift",
    "missing_in": "an OUT with no IN",
    "anomaly": "a repeated IN or OUT",
    "error": "the day could not be computed (the bank's log says why)",
    "no_time": "an IN and an OUT with no time worked between them",
    "not_assigned": "worked at a site the worker was not registered at that day",
    "short_day": "a day-rate day worked less than the minimum for a paid day ([wages] paid_day_minutes)",
    "contested": "a punch of the day is contested: the gate signed two (equivocated) or its chain broke "
                 "(chain_break); void the contested punch",
}
#: Without a collector's config: the defaults of [wages].
DEFAULT_LIMITS = WageLimits()
#: Day flags that put the day's evidence in doubt: the day is a decision until a void settles it.
CONTESTED_FLAGS = ("equivocated", "chain_break")
#: Day flags carried to the line (the rest are about the day's own pairing, shown on the day).
CARRIED_FLAGS = ("manual", "late_upload", "clock_unsynced", "clock_future", "clock_backwards", "equivocated",
                 "chain_break", "void")
_PERIOD = re.compile(r"(\d{4})-(\d{2})")
_NOT_DIGIT = re.compile(r"\D")
_SPACE = re.compile(r"\s")
#: Flags for a payee that other workers of the registry also are -> the line's detail naming them.
SAME_PAYEE = {"shared_account": "shared_account_with", "duplicate_id": "duplicate_id_with"}
#: What a line's flag means where it is shown (Chinese, English), for flags a code alone does not explain.
FLAG_WORDS = {
    "shared_account": ("与其他工人共用同一银行账户", "the same bank account as another worker"),
    "duplicate_id": ("与其他工人身份证号相同", "the same ID number as another worker"),
    "short_day": ("出勤时间不足一个计薪日", "a day-rate day worked less than the minimum for a paid day"),
    "contested": ("考勤记录有争议（闸机重复签名或链断裂）", "a day rests on a contested punch"),
    "over_bound": ("金额超出任何工人一个月的工资", "an amount beyond any worker's month"),
}


class WageError(CollectorError):
    """A wage operation that cannot be done now; the message says why and what to do."""


def period_bounds(period: str) -> tuple[date, date]:
    """``2026-11`` -> (2026-11-01, 2026-11-30)."""
    match = _PERIOD.fullmatch(period or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or not 2000 <= int(match.group(1)) <= 2100:
        raise WageError(f"period {period!r} is not a month YYYY-MM between 2000 and 2100")
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def pay_date(period: str, pay_day: int) -> date:
    """The day of the following month on which the period's wages fall due (a short month pays on its
    last day)."""
    _, last = period_bounds(period)
    following = last + timedelta(days=1)
    return following.replace(day=min(pay_day, calendar.monthrange(following.year, following.month)[1]))


def _in_force(history: list[dict], day: date) -> dict | None:
    """The row of ``history`` (oldest first, by effective_from) in force on ``day``."""
    found = None
    for row in history:
        if row["effective_from"] <= day.isoformat():
            found = row
        else:
            break
    return found


def compute(store: Store, site: str, period: str, *, now: datetime | None = None,
            grace: timedelta = timedelta(hours=6), draft: bool = False, worker: str | None = None,
            limits: WageLimits = DEFAULT_LIMITS) -> dict:
    """The period's table (not saved): ``final``, ``pay_day`` and one line per worker. With ``worker``,
    only that worker's line (none if they have neither days nor deductions there), computed from their
    own days, deductions and terms: the line the whole table has for them. ``limits``: the paid day's
    minimum ([wages] in the collector's config)."""
    now = now or datetime.now(UTC)
    first, last = period_bounds(period)
    site_row = store.site(site)
    if site_row is None:
        raise StoreError(f"site {site} does not exist")
    tz = zone(site_row["timezone"])
    day_end = parse_time(day_bounds(last, tz)[1])
    # Finality is monotonic: the last day final means every day before it is too.
    final = site_day_final(store.gates(site, with_gaps=False), day_end, grace, now)
    if not final and not draft:
        raise WageError(f"{site} {period} is not final yet (a gate has not shown it holds nothing from it, or the "
                        f"month has not ended {grace} ago); compute it with --draft to look, never to pay")
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for record in period_days(store, site, first, last, now=now, grace=grace, worker=worker):
        by_worker[record["worker"]].append(record)
    deductions: dict[str, list[dict]] = defaultdict(list)
    taken_back: dict[str, list[dict]] = defaultdict(list)  # reversed deductions: shown, not deducted
    for row in store.deductions(site, period, worker=worker, with_reversed=True):
        (taken_back if row.get("reversed_at") else deductions)[row["worker"]].append(row)
    terms: dict[str, list[dict]] = defaultdict(list)
    for row in store.wage_terms(worker) if worker is not None else store.wage_terms_of(set(by_worker)):
        terms[row["worker"]].append(row)
    minimum = _in_force(store.minimum_wages(site), last)
    if worker is None:
        # The table's own workers, and whoever in the bank may be one payee with another (not every
        # payee of the bank: a site's table costs its own workers, whatever the bank's size).
        payees = store.payees_of(set(by_worker) | set(deductions))
        same_payee = same_payees(store.payees_sharing())
    else:
        # Whether the payee is another worker too: only those who may share their account or ID number.
        mine = store.payee(worker) or {}
        payees = store.payees_matching(worker, bank_account=payee_key("shared_account", mine),
                                       id_number=payee_key("duplicate_id", mine))
        same_payee = same_payees(payees, only=worker)
    pay_rows = store.site_pay(site)
    site_pay = _in_force([r for r in pay_rows if r["employer"] == ""], last)
    own_pay: dict[str, dict | None] = {}
    lines = []
    for worker_id in sorted(set(by_worker) | set(deductions)):
        payee = payees.get(worker_id) or {"worker": worker_id, "name": worker_id}
        line = _line(worker_id, by_worker.get(worker_id, []), terms.get(worker_id, []),
                     deductions.get(worker_id, []), minimum, payee, limits)
        _corrections(line, terms.get(worker_id, []), taken_back.get(worker_id, []), first)
        for flag, others in same_payee.get(worker_id, {}).items():
            line["flags"] = sorted({*line["flags"], flag})
            line["detail"][SAME_PAYEE[flag]] = others
            line["status"] = "needs_decision"
        # An employer of the site may pay on a day of its own (worked out once per employer).
        employer = payee.get("employer")
        if employer not in own_pay:
            own_pay[employer] = _in_force([r for r in pay_rows if r["employer"] and r["employer"] == employer], last)
        pay = own_pay[employer] or site_pay
        line["detail"]["pay_day"] = pay_date(period, pay["pay_day"]).isoformat() if pay else None
        lines.append(line)
    return {"site": site, "period": period, "final": final, "draft": draft or not final,
            "pay_day": pay_date(period, site_pay["pay_day"]).isoformat() if site_pay else None, "lines": lines}


def _corrections(line: dict, history: list[dict], taken_back: list[dict], first: date) -> None:
    """What a correction changed that a person must see on the line: terms set as a back pay into this
    period after it was approved (flag ``back_pay``, each with its reason, who, when and the terms it
    changed), and deductions reversed (each with who and why)."""
    used = {segment["from"] for segment in line["detail"]["segments"]}
    back_pay = [{"from": row["effective_from"], **entry} for row in history if row["effective_from"] in used
                for entry in row.get("back_pay") or () if entry["through"] >= first.isoformat()]
    if back_pay:
        line["flags"] = sorted({*line["flags"], "back_pay"})
        line["detail"]["back_pay"] = back_pay
    if taken_back:
        line["detail"]["deductions_reversed"] = [
            {"id": d["id"], "item": d["item"], "amount_fen": d["amount_fen"], "reason": d["reason"], "by": d["added_by"],
             "reversed_at": d["reversed_at"], "reversed_by": d["reversed_by"], "reversed_reason": d["reversed_reason"]}
            for d in taken_back]


#: What a line reads of each kept day (``Store.stored_days``): the rest of a record (its shifts) is the day's.
LINE_FIELDS = ("status", "flags", "worked_minutes", "first_in", "last_out")


def period_days(store: Store, site: str, first: date, last: date, *, now: datetime, grace: timedelta,
                worker: str | None = None) -> list[dict]:
    """The days of ``site`` (or ``worker``'s there) for first..last as a line reads them: worker, date
    and ``LINE_FIELDS``, as ``reports.attendance`` gives them at ``now``. Read from the kept days, the
    database taking those fields out of each record; a database the daemon has not upgraded yet is
    computed from its punches."""
    if not store.has("days"):
        return attendance(store, site, first, last, now=now, grace=grace, worker=worker)
    check_period(first, last)
    found = []
    for day in days.read(store, site=site, worker=worker, first=first, last=last, fields=LINE_FIELDS):
        record = day.as_of(now)  # a day recomputed for this read (a store that may not write) is whole
        found.append({"worker": day.worker, "date": day.day, **{name: record[name] for name in LINE_FIELDS}})
    return found


def payee_key(flag: str, payee: dict) -> str:
    """What two payees share when they are one for ``flag``: the account's digits, or the ID number
    without spaces, upper case (a final x is X)."""
    if flag == "shared_account":
        return _NOT_DIGIT.sub("", payee.get("bank_account") or "")
    return _SPACE.sub("", payee.get("id_number") or "").upper()


def same_payees(payees: dict[str, dict], *, only: str | None = None) -> dict[str, dict[str, list[str]]]:
    """Per worker of the registry, per flag of ``SAME_PAYEE``, the other workers with the same account or
    ID number (only workers that have some); with ``only``, that worker's entry alone."""
    if only is not None:
        mine = payees.get(only)
        found_mine: dict[str, list[str]] = {}
        for flag in SAME_PAYEE:
            key = payee_key(flag, mine) if mine else ""
            others = [w for w, p in sorted(payees.items()) if w != only and payee_key(flag, p) == key] if key else []
            if others:
                found_mine[flag] = others
        return {only: found_mine} if found_mine else {}
    holders: dict[tuple[str, str], list[str]] = defaultdict(list)
    for worker, payee in sorted(payees.items()):
        for flag in SAME_PAYEE:
            key = payee_key(flag, payee)
            if key:
                holders[(flag, key)].append(worker)
    found: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for (flag, _), workers in holders.items():
        if len(workers) > 1:
            for worker in workers:
                found[worker][flag] = [other for other in workers if other != worker]
    return dict(found)


def flag_text(flags: list[str], detail: dict | None = None) -> str:
    """A line's flags for a person: each code, with what it means and the other workers it names."""
    shown = []
    for flag in flags:
        words = FLAG_WORDS.get(flag)
        others = (detail or {}).get(SAME_PAYEE.get(flag, ""), [])
        if words and others:
            shown.append(f"{flag}: {words[1]}, {', '.join(others)}")
        elif words:
            shown.append(f"{flag}: {words[1]}")
        else:
            shown.append(flag)
    return ", ".join(shown)


#: A full month's work: the statutory standard month, 21.75 days of 8 hours (174 hours).
FULL_MONTH_MINUTES = 174 * 60
#: A day's standard time (8 hours); what a day is worked beyond it is overtime.
STANDARD_DAY_MINUTES = 8 * 60


def below_minimum(gross_fen: int, minutes: int, minimum: dict) -> bool:
    """Pay below the local minimum wage: for a full month of work the monthly minimum applies, for less
    the hourly (part-time) one, per hour worked. Integers only. (An employer's sheet, which states an
    amount and no standard time; a wage line is compared by ``below_standard_minimum``.)"""
    if minutes >= FULL_MONTH_MINUTES:
        return gross_fen < minimum["monthly_fen"]
    return gross_fen * 60 < minimum["hourly_fen"] * minutes


def standard_minimum(standard_minutes: int, minimum: dict) -> Fraction:
    """The least standard-time pay (fen) for ``standard_minutes``: the monthly minimum for the statutory
    174 hours, prorated for fewer, never more than the monthly minimum."""
    return Fraction(minimum["monthly_fen"] * min(standard_minutes, FULL_MONTH_MINUTES), FULL_MONTH_MINUTES)


def standard_counted(standard_fen: Fraction, standard_minutes: int) -> Fraction:
    """The standard-time pay held against the minimum: past the statutory 174 hours, the pay of 174 of
    them (the month's standard hours beyond are rest days worked, overtime too)."""
    if standard_minutes <= FULL_MONTH_MINUTES:
        return standard_fen
    return standard_fen * FULL_MONTH_MINUTES / standard_minutes


def below_standard_minimum(standard_fen: Fraction, standard_minutes: int, minimum: dict) -> bool:
    """Standard-time pay below the local minimum wage for that standard time (exact: fractions of a fen,
    never a float)."""
    return standard_counted(standard_fen, standard_minutes) < standard_minimum(standard_minutes, minimum)


def over_half(deductions_fen: int, gross_fen: int) -> bool:
    """Deductions above half the gross: a decision for a person, not a line paid as computed."""
    return deductions_fen * 2 > gross_fen


def _undecided(record: dict, status: str) -> dict:
    return {"date": record["date"], "status": status, "why": STATUS_WORDS[status], "first_in": record["first_in"],
            "last_out": record["last_out"]}


def _line(worker: str, records: list[dict], history: list[dict], deductions: list[dict], minimum: dict | None,
          payee: dict, limits: WageLimits = DEFAULT_LIMITS) -> dict:
    flags: set[str] = set()
    to_decide, segments, minutes, days = [], {}, 0, 0
    no_terms = []
    standard_minutes, standard_fen = 0, Fraction(0)
    for record in sorted(records, key=lambda r: r["date"]):
        flags |= {f for f in record["flags"] if f in CARRIED_FLAGS}
        if record["status"] in UNDECIDED:
            to_decide.append(_undecided(record, record["status"]))
            continue
        if record["status"] != "complete":
            continue
        if "not_assigned" in record["flags"]:
            to_decide.append(_undecided(record, "not_assigned"))
            continue
        if not record["worked_minutes"]:
            to_decide.append(_undecided(record, "no_time"))
            continue
        # A void on the day is a person's look at it: the contested punch voided, the day stands as left.
        if any(f in record["flags"] for f in CONTESTED_FLAGS) and "void" not in record["flags"]:
            to_decide.append(_undecided(record, "contested"))
            flags.add("contested")
            continue
        day = date.fromisoformat(record["date"])
        in_force = _in_force(history, day)
        if in_force is None:
            no_terms.append(record["date"])
            continue
        worked = record["worked_minutes"]
        half = False
        if in_force["basis"] == "day" and worked < limits.paid_day_minutes:
            if limits.half_day_minutes and worked >= limits.half_day_minutes:
                half = True
            else:
                to_decide.append(_undecided(record, "short_day"))
                flags.add("short_day")
                continue
        key = (in_force["basis"], in_force["rate_fen"], in_force["effective_from"])
        segment = segments.setdefault(key, {"basis": in_force["basis"], "rate_fen": in_force["rate_fen"],
                                            "from": in_force["effective_from"], "days": 0, "minutes": 0})
        segment["days"] += 1
        segment["minutes"] += worked
        if half:
            segment["half_days"] = segment.get("half_days", 0) + 1
        days += 1
        minutes += worked
        # Standard time: the day's first 8 hours; a day rate's share of them is its pay for those minutes.
        standard = min(worked, STANDARD_DAY_MINUTES)
        standard_minutes += standard
        if in_force["basis"] == "hour":
            standard_fen += Fraction(in_force["rate_fen"] * standard, 60)
        else:
            day_pay = Fraction(in_force["rate_fen"], 2 if half else 1)
            standard_fen += day_pay * standard / worked
    # One rounding for the line: every amount in 120ths of a fen (a half day's and a minute's), rounded once.
    numerator = 0
    for segment in segments.values():
        if segment["basis"] == "day":
            halves = segment.get("half_days", 0)
            numerator += segment["rate_fen"] * (120 * (segment["days"] - halves) + 60 * halves)
            segment["amount_fen_exact"] = (segment["rate_fen"] * segment["days"] if not halves else
                                           f"{segment['rate_fen']} x {segment['days'] - halves} + "
                                           f"{segment['rate_fen']} x {halves} / 2")
        else:
            numerator += segment["rate_fen"] * segment["minutes"] * 2
            segment["amount_fen_exact"] = f"{segment['rate_fen']} x {segment['minutes']} / 60"
    gross = divide_half_up(numerator, 120)
    deducted = sum(row["amount_fen"] for row in deductions)
    net = gross - deducted
    if len(segments) > 1:
        flags.add("rate_changed")
    if to_decide:
        flags.add("days_to_decide")
    if no_terms:
        flags.add("no_terms")
    if net < 0:
        flags.add("deductions_exceed_gross")
    elif over_half(deducted, gross):
        flags.add("deductions_over_half")
    if not payee.get("bank_account"):
        flags.add("no_bank_account")
    # The ledger names each worker by ID number and contact (Art. 15): seen, not held (the bank pays on the account).
    flags |= {flag for flag, field in (("no_id_number", "id_number"), ("no_contact", "phone")) if not payee.get(field)}
    if minimum is not None and below_standard_minimum(standard_fen, standard_minutes, minimum):
        flags.add("below_minimum")
    over_bound = max(gross, net) > MAX_CREDIT_FEN
    if over_bound:
        flags.add("over_bound")
    decision = bool(to_decide or no_terms or net < 0 or over_half(deducted, gross) or not payee.get("bank_account")
                    or over_bound)
    last_segment = max(segments.values(), key=lambda s: s["from"]) if segments else None
    return {
        "worker": worker, "name": payee.get("name") or worker, "employer": payee.get("employer"),
        "id_number": payee.get("id_number"), "phone": payee.get("phone"), "bank_account": payee.get("bank_account"),
        "bank_name": payee.get("bank_name"),
        "days": days, "worked_minutes": minutes,
        "basis": last_segment["basis"] if last_segment else None,
        "rate_fen": last_segment["rate_fen"] if last_segment else None,
        "gross_fen": gross, "deductions_fen": deducted, "net_fen": net,
        "status": "needs_decision" if decision else "payable",
        "flags": sorted(flags),
        "detail": {
            "segments": sorted(segments.values(), key=lambda s: s["from"]),
            "deductions": [{"item": d["item"], "amount_fen": d["amount_fen"], "reason": d["reason"],
                            "source": d["source"], "by": d["added_by"]} for d in deductions],
            "days_to_decide": to_decide,
            "days_without_terms": no_terms,
            "minimum_hourly_fen": minimum["hourly_fen"] if minimum else None,
            # The minimum-wage comparison, in whole fen (rounded half up) for a person to read.
            "standard_minutes": standard_minutes,
            "standard_pay_fen": _whole(standard_counted(standard_fen, standard_minutes)),
            "minimum_fen": None if minimum is None else _whole(standard_minimum(standard_minutes, minimum)),
        },
    }


def _whole(value: Fraction) -> int:
    return divide_half_up(value.numerator, value.denominator)


def run(store: Store, site: str, period: str, *, by: str, reason: str | None = None, draft: bool = False,
        now: datetime | None = None, grace: timedelta = timedelta(hours=6), limits: WageLimits = DEFAULT_LIMITS) -> dict:
    """Compute and save a new version of the period's table (a draft when asked, or when not final)."""
    if not by.strip():
        raise WageError("say who computes the table (--by)")
    # Without their lines: only the latest's status matters here, a draft's none (it is never approved).
    versions = [t for t in store.wage_tables(site, period) if t["status"] != "draft"]
    latest = versions[-1] if versions else None
    if latest is not None and latest["status"] == "approved" and not draft and not (reason or "").strip():
        raise WageError(f"{site} {period} version {latest['version']} is approved; a correction is a new version "
                        "and needs --reason")
    table = compute(store, site, period, now=now, grace=grace, draft=draft, limits=limits)
    saved = store.save_wage_table(site=site, period=period, status="draft" if table["draft"] else "computed",
                                  final=table["final"], lines=table["lines"], by=by.strip(),
                                  reason=(reason or "").strip() or None, pay_day=table["pay_day"])
    return store.wage_table(site, period, saved["version"])


def approve(store: Store, site: str, period: str, *, by: str, overrides: dict[str, str] | None = None,
            override_disputes: str | None = None, approvers: tuple[str, ...] = (), version: int | None = None) -> dict:
    """Freeze the latest version that is not a draft (``version``, when given, must be it: what the
    approver looked at is what is frozen), on four eyes: the approver is not who computed it, and is one of
    ``approvers`` when a list is configured. Lines that still need a decision refuse the approval unless
    each has its own reason in ``overrides`` (worker -> why; kept on the line, which is not paid); so do the
    workers' open disputes of the period, unless ``override_disputes`` says why (recorded with the
    disputes named)."""
    from collector.store.wages import same_person

    by = " ".join((by or "").split())
    if not by:
        raise WageError("say who approves (--by)")
    table = _to_approve(store, site, period, version)
    if table["status"] == "approved":
        raise WageError(f"{site} {period} version {table['version']} is approved already")
    if same_person(by, table["computed_by"]):
        raise WageError(f"{site} {period} version {table['version']} was computed by {table['computed_by']}: "
                        f"{by} cannot approve it too (four eyes: another person approves)")
    if approvers and not any(same_person(by, name) for name in approvers):
        raise WageError(f"{by} is not among who may approve wage tables ([wages] approvers in the collector's "
                        f"config: {', '.join(approvers)})")
    if table["pay_day"] is None:
        raise WageError(f"{site} has no pay day (collector site pay-day {site} --day N ...): the table cannot fall due")
    overrides = {worker.strip(): (reason or "").strip() for worker, reason in (overrides or {}).items()}
    lines = {line["worker"]: line for line in table["lines"]}
    stray = [w for w in overrides if w not in lines or lines[w]["status"] == "payable"]
    if stray:
        raise WageError("an override reason is only for a line held for a decision: "
                        + ", ".join(f"{w} ({'not in the table' if w not in lines else 'payable'})" for w in stray))
    undecided = [line for line in table["lines"] if line["status"] != "payable" and not overrides.get(line["worker"])]
    if undecided:
        names = "; ".join(f"{line['worker']} ({flag_text(line['flags'], line['detail'])})" for line in undecided[:10])
        raise WageError(f"{len(undecided)} line(s) need a decision first: {names}"
                        + (f" and {len(undecided) - 10} more" if len(undecided) > 10 else "")
                        + "; settle them (manual punch, void, pay terms, the payee's own account and ID number) and "
                        "run the table again, or hold each with its own reason: --override WORKER=REASON")
    from collector.workers.disputes import check_approval

    with store.transaction():
        check_approval(store, site, period, table_version=table["version"], override_reason=override_disputes, by=by)
        store.approve_wage_table(table["id"], by=by, overrides=overrides)
    return store.wage_table(site, period, table["version"])


def _to_approve(store: Store, site: str, period: str, version: int | None) -> dict:
    """The version an approval freezes: the latest that is not a draft. A draft computed to look at a
    month that is final (``wages run --draft``) stays out of the way; a draft is never approved."""
    versions = store.wage_tables(site, period)
    if not versions:
        raise WageError(f"{site} {period} has no wage table (collector wages run)")
    computed = [t for t in versions if t["status"] != "draft"]
    chosen = next((t for t in versions if t["version"] == version), None) if version is not None else \
        (computed[-1] if computed else versions[-1])
    if chosen is None:
        raise WageError(f"{site} {period} has no version {version} (versions 1 to {versions[-1]['version']})")
    if chosen["status"] == "draft":
        why = ("computed with --draft to look at it" if chosen["final"]
               else "the period was not final when it was computed")
        raise WageError(f"{site} {period} version {chosen['version']} is a draft ({why}): a draft is never approved "
                        "or paid; run the table without --draft" + (", then approve that version" if chosen["final"]
                                                                     else " once the period is final"))
    if chosen is not computed[-1]:
        raise WageError(f"{site} {period} version {chosen['version']} is not the latest computed version: "
                        f"version {computed[-1]['version']} is; approve that one (--version "
                        f"{computed[-1]['version']})")
    return store.wage_table(site, period, chosen["version"])
