"""The worker's wage slip (工资清单): one printable, self-contained HTML page per worker and month.

What the worker keeps (Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15 and 31): each
day's first IN and last OUT in the site's local time with the time worked and whether the day is paid,
the rate, gross, each deduction, net, the payment and the bank's voucher, and the id of the bank-signed
evidence file for those days, with the commands that fetch and check it, so that the days can be proved
later, anywhere, without trusting this page. ID number, phone and account appear masked. The page is
built from the period's approved wage table (else its latest version, marked as not approved, or as a
draft that is never paid); the days are those the attendance gives now, and any difference from the
table is said on the page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html import escape

from gate_agent.protocol import format_time

from . import masking
from .evidence import evidence_body, evidence_id
from .localtime import local_text_dt, zone
from .money import divide_half_up, yuan
from .reports import attendance
from .store import Store
from .wages import STATUS_WORDS, WageError, _in_force, period_bounds

#: Statuses of a table a slip can be made from, and the banner the page carries for each.
BANNERS = {
    "approved": None,
    "computed": ("未审批 NOT APPROVED", "This wage table is computed but not approved yet: amounts may change."),
    "draft": ("草稿 DRAFT", "A draft of a month that is not final: it is never paid and is not a wage statement."),
}


def choose_table(store: Store, worker: str, period: str, site: str | None) -> dict:
    """The table a slip shows: the period's approved version at the site, else its latest one. Refuses
    when the period has no table there, or the worker is not in it."""
    period_bounds(period)
    if site is None:
        sites = sorted({t["site"] for t in store.wage_tables(period=period)})
        having = [s for s in sites if any(line["worker"] == worker for line in _table(store, s, period)["lines"])]
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
    table = _table(store, site, period)
    if not any(line["worker"] == worker for line in table["lines"]):
        raise WageError(f"{worker} is not in the {site} {period} wage table (version {table['version']})")
    return table


def _table(store: Store, site: str, period: str) -> dict:
    approved = [t for t in store.wage_tables(site, period) if t["status"] == "approved"]
    version = approved[-1]["version"] if approved else None
    return store.wage_table(site, period, version)


def slip(store: Store, worker: str, period: str, *, site: str | None = None, now: datetime | None = None,
         grace: timedelta = timedelta(hours=6)) -> dict:
    """Everything the slip shows, as data (personal data already masked)."""
    now = now or datetime.now(UTC)
    table = choose_table(store, worker, period, site)
    site = table["site"]
    first, last = period_bounds(period)
    line = next(line for line in table["lines"] if line["worker"] == worker)
    site_row = store.site(site)
    tz = zone(site_row["timezone"])
    segments = line["detail"]["segments"]
    history = store.wage_terms(worker)
    days, counted_days, counted_minutes = [], 0, 0
    for record in attendance(store, site, first, last, now=now, grace=grace):
        if record["worker"] != worker:
            continue
        day = _day(record, history)
        if day["paid"]:
            counted_days += 1
            counted_minutes += record["worked_minutes"]
        days.append(day)
    versions = store.wage_tables(site, period)
    payments = [p for p in store.wage_payments(site, period) if p["worker"] == worker]
    paid = sum(p["amount_fen"] for p in payments if p["status"] == "paid")
    pending = sum(p["amount_fen"] for p in payments if p["status"] == "pending")
    body = evidence_body(store, worker, first, last, now=now)
    keys = store.bank_keys()
    return {
        "site": site, "site_name": site_row.get("name") or site, "timezone": site_row["timezone"],
        "period": period, "from": first.isoformat(), "to": last.isoformat(),
        "generated_at": format_time(now), "generated_local": local_text_dt(now, tz),
        "table": {k: table[k] for k in ("version", "status", "final", "computed_at", "computed_by", "reason",
                                        "approved_at", "approved_by", "pay_day")},
        "later_version": max(t["version"] for t in versions) if versions[-1]["version"] != table["version"] else None,
        "banner": BANNERS.get(table["status"]) if table["final"] else BANNERS["draft"],
        "worker": worker, "name": line["name"], "employer": line["employer"],
        "id_number": masking.id_number(line["id_number"]), "phone": masking.phone(line["phone"]),
        "bank_account": masking.account(line["bank_account"]), "bank_name": line["bank_name"],
        "line": {k: line[k] for k in ("days", "worked_minutes", "basis", "rate_fen", "gross_fen", "deductions_fen",
                                      "net_fen", "status", "flags")},
        "segments": segments, "deductions": line["detail"]["deductions"],
        "days_to_decide": line["detail"]["days_to_decide"],
        "days": days,
        "differs": (counted_days, counted_minutes) != (line["days"], line["worked_minutes"]),
        "attendance_now": {"days": counted_days, "worked_minutes": counted_minutes},
        "payments": [{k: p[k] for k in ("batch_id", "end_to_end_id", "amount_fen", "status", "voucher", "paid_on",
                                        "reason", "table_version")} for p in payments],
        "paid_fen": paid, "pending_fen": pending,
        "payment_status": _payment_status(table, line, paid, pending, payments),
        "evidence": {
            "id": evidence_id(body), "days": len(body["days"]),
            "punches": sum(len(g["punches"]) for g in body["gates"]), "manual": len(body["manual"]),
            "voids": len(body["voids"]),
            "get": f"collector evidence --worker {worker} --from {first} --to {last} --out {worker}-{period}.json",
            "verify": f"collector verify {worker}-{period}.json --bank-key bank.pub",
            "bank_keys": [k["key_id"] for k in keys],
        },
    }


def _day(record: dict, history: list[dict]) -> dict:
    """A day as the slip lists it: its times, what it counts, and why it is not paid when it is not."""
    why = None
    if record["status"] != "complete":
        why = STATUS_WORDS.get(record["status"], record["status"])
    elif "not_assigned" in record["flags"]:
        why = STATUS_WORDS["not_assigned"]
    elif not record["worked_minutes"]:
        why = STATUS_WORDS["no_time"]
    terms = _in_force(history, date.fromisoformat(record["date"])) if why is None else None
    if why is None and terms is None:
        why = "no pay terms in force that day"
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
    if paid >= line["net_fen"]:
        return "paid", "已支付 Paid"
    if pending:
        return "at_bank", "银行处理中 At the bank, not confirmed yet"
    if any(p["status"] == "failed" for p in payments):
        return "failed", "支付失败，将重新支付 Failed; it is paid again in the next batch"
    if paid:
        return "part_paid", "部分支付 Partly paid"
    return "due", f"应于 {table['pay_day']} 支付 Due on {table['pay_day']}"


# ============================================================================== the page


_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
 margin:2em auto;max-width:60em;color:#111;line-height:1.4;font-size:11pt}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #bbb;padding:.2em .4em;text-align:left;
 vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{border:3px solid #b00;color:#b00;padding:.5em;font-weight:bold;font-size:1.2em;margin:.6em 0}
.warn{border:1px solid #b60;background:#fff6e0;padding:.4em;margin:.5em 0}
.no{color:#b00}.total td{font-weight:bold}code{font-family:monospace;word-break:break-all}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0}dt{color:#555}dd{margin:0}
@media print{body{margin:0;max-width:none;font-size:10pt}.banner{-webkit-print-color-adjust:exact;
 print-color-adjust:exact}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


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
    """The slip as one HTML document: no script, no external font, style or image; every value escaped."""
    line, table, ev = data["line"], data["table"], data["evidence"]
    out = ["<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
           f"<title>工资清单 Wage slip {_e(data['worker'])} {_e(data['period'])}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>工资清单 Wage slip — {_e(data['period'])}</h1>"]
    if data["banner"]:
        out.append(f'<div class="banner">{_e(data["banner"][0])}: {_e(data["banner"][1])}</div>')
    out.append("<dl>")
    for label, value in (
        ("姓名 Name", data["name"]), ("工号 Worker", data["worker"]), ("用工单位 Employer", data["employer"] or "—"),
        ("项目 Site", f"{data['site_name']} ({data['site']})"), ("身份证号 ID number", data["id_number"] or "—"),
        ("电话 Phone", data["phone"] or "—"),
        ("收款账户 Account", f"{data['bank_account'] or '—'} {data['bank_name'] or ''}".strip()),
        ("工资期 Period", f"{data['from']} – {data['to']}"),
        ("发薪日 Pay day", table["pay_day"] or "—"),
        ("工资表 Wage table", f"version {table['version']}, {table['status']}, computed {table['computed_at']} by "
                            f"{table['computed_by']}" + (f", approved {table['approved_at']} by {table['approved_by']}"
                                                         if table["approved_at"] else "")),
        ("时区 Times in", data["timezone"]),
    ):
        out.append(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>")
    out.append("</dl>")
    if data["later_version"]:
        out.append(f'<div class="warn">A later version ({_e(data["later_version"])}) of this table is computed '
                   "and not approved yet: this slip shows the approved one.</div>")

    out.append("<h2>考勤 Days worked</h2>")
    if data["differs"]:
        now = data["attendance_now"]
        out.append(f'<div class="warn">考勤已变更 The attendance now gives {_e(now["days"])} paid day(s), '
                   f'{_e(_hours(now["worked_minutes"]))} h; the wage table counted {_e(line["days"])} day(s), '
                   f'{_e(_hours(line["worked_minutes"]))} h (a manual punch or a void since it was computed). '
                   "The amounts below are the table's; ask the bank for the next version.</div>")
    out.append('<table><tr><th>日期 Date</th><th>首次进 First in</th><th>最后出 Last out</th>'
               '<th class="n">工时 Hours</th><th>计薪 Paid</th><th>标记 Flags</th></tr>')
    for day in data["days"]:
        paid = ("是 yes, " + _rate(day["basis"], day["rate_fen"])) if day["paid"] else f"否 no: {day['why_not']}"
        out.append(f"<tr><td>{_e(day['date'])}</td><td>{_e(_clock(day['first_in'], day['date']))}</td>"
                   f"<td>{_e(_clock(day['last_out'], day['date']))}</td>"
                   f'<td class="n">{_e(_hours(day["worked_minutes"]))}</td>'
                   f'<td{"" if day["paid"] else " class=no"}>{_e(paid)}</td>'
                   f"<td>{_e(', '.join(day['flags']))}</td></tr>")
    if not data["days"]:
        out.append('<tr><td colspan="6">无考勤 No days recorded at this site</td></tr>')
    out.append(f'<tr class="total"><td colspan="3">计薪合计 Paid days (table)</td>'
               f'<td class="n">{_e(_hours(line["worked_minutes"]))}</td>'
               f'<td colspan="2">{_e(line["days"])} 天 day(s)</td></tr></table>')

    out.append("<h2>工资 Pay</h2>")
    out.append('<table><tr><th>项目 Item</th><th>计薪依据 Basis</th><th class="n">金额 Amount (元 yuan)</th></tr>')
    for segment in data["segments"]:
        if segment["basis"] == "day":
            basis, amount = f"{segment['days']} 天 day(s) × {_rate('day', segment['rate_fen'])}", \
                yuan(segment["rate_fen"] * segment["days"])
        else:
            basis = f"{_hours(segment['minutes'])} h × {_rate('hour', segment['rate_fen'])}"
            amount = "≈ " + yuan(divide_half_up(segment["rate_fen"] * segment["minutes"], 60))
        out.append(f"<tr><td>工资 Wage from {_e(segment['from'])}</td><td>{_e(basis)}</td>"
                   f'<td class="n">{_e(amount)}</td></tr>')
    out.append(f'<tr class="total"><td colspan="2">应发工资 Gross</td><td class="n">{_e(yuan(line["gross_fen"]))}</td></tr>')
    for deduction in data["deductions"]:
        out.append(f"<tr><td>扣款 Deduction: {_e(deduction['item'])}</td><td>{_e(deduction['reason'])} "
                   f"({_e(deduction['source'])})</td><td class=\"n\">−{_e(yuan(deduction['amount_fen']))}</td></tr>")
    minus = "−" if line["deductions_fen"] else ""
    out.append(f'<tr><td colspan="2">扣款合计 Deductions</td><td class="n">{minus}{_e(yuan(line["deductions_fen"]))}</td></tr>')
    out.append(f'<tr class="total"><td colspan="2">实发工资 Net</td><td class="n">{_e(yuan(line["net_fen"]))}</td></tr>'
               "</table>")
    if any(s["basis"] == "hour" for s in data["segments"]):
        out.append("<p>Hourly pay is exact to the minute; the line's hourly total is rounded once, half up, to the "
                   "fen (≈ per row).</p>")
    if line["flags"]:
        out.append(f"<p>标记 Flags: {_e(', '.join(line['flags']))}</p>")
    for day in data["days_to_decide"]:
        out.append(f'<div class="warn">待核定 To decide: {_e(day["date"])} {_e(day["why"])} (not paid until the '
                   "bank settles it with a manual punch or a void)</div>")

    out.append("<h2>支付 Payment</h2>")
    out.append(f"<p><b>{_e(data['payment_status'][1])}</b> — paid {_e(yuan(data['paid_fen']))} of "
               f"{_e(yuan(line['net_fen']))} 元 yuan</p>")
    if data["payments"]:
        out.append('<table><tr><th>业务参考号 Reference</th><th class="n">金额 Amount</th><th>状态 Status</th>'
                   "<th>凭证号 Voucher</th><th>日期 Date</th><th>说明 Note</th></tr>")
        for p in data["payments"]:
            out.append(f"<tr><td><code>{_e(p['end_to_end_id'])}</code></td><td class=\"n\">{_e(yuan(p['amount_fen']))}"
                       f"</td><td>{_e(p['status'])}</td><td>{_e(p['voucher'] or '—')}</td>"
                       f"<td>{_e(p['paid_on'] or '—')}</td><td>{_e(p['reason'] or '')}</td></tr>")
        out.append("</table>")

    out.append("<h2>银行签名的考勤证据 Bank-signed evidence of these days</h2>")
    out.append(f"<p>Evidence id (SHA-256): <code>{_e(ev['id'])}</code><br>{_e(ev['days'])} day(s), {_e(ev['punches'])} "
               f"gate-signed punch(es), {_e(ev['manual'])} manual entr(y/ies), {_e(ev['voids'])} void(s), "
               f"{_e(data['from'])} – {_e(data['to'])}, every site.</p>")
    out.append("<p>The bank writes the evidence file; anyone checks it offline with the bank's published key. "
               "The file <code>collector verify</code> accepts shows this same evidence id.</p>"
               f"<p>Get it: <code>{_e(ev['get'])}</code><br>Check it: <code>{_e(ev['verify'])}</code></p>")
    if ev["bank_keys"]:
        out.append(f"<p>Bank key(s) on record: <code>{_e(', '.join(ev['bank_keys']))}</code></p>")
    out.append(f"<p>Printed {_e(data['generated_local'])}.</p></body></html>")
    return "\n".join(out) + "\n"
