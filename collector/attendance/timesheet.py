"""The monthly 考勤表: the sheet a site office prints at the end of the month and each worker signs.

One row per worker assigned to the site during the month (or with days there), one column per day with a
mark, the month's totals and an empty column for the signature. The marks are what the kept days say, in
the words a site office uses; a day the worker disputes shows so whatever the record says, since the
signature is what the worker agrees to:

- ``√`` a complete day of at least ``HALF_DAY_MINUTES``; ``半`` a complete day shorter than that;
- ``补`` a complete day that rests on a manual entry (the bank entered or corrected a punch);
- ``疑`` a day to look at (an IN without OUT, an OUT without IN, an anomaly, a day the rules could not
  compute, or a shift still open);
- ``诉`` a day the worker disputes, still unanswered;
- empty: no day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from collector.attendance.reports import attendance, site_rules
from collector.localtime import local_text_dt, range_bounds
from collector.store import Store
from collector.workers.record import parse_month

HALF_DAY_MINUTES = 4 * 60
MARKS = {"full": "√", "half": "半", "manual": "补", "review": "疑", "disputed": "诉"}
LEGEND = ("√ 出勤  半 不足4小时  补 含补录打卡  疑 待核（缺卡、异常、未下班）  诉 申诉中  空白 无考勤；"
          "出勤天数：√ 与 补 各算 1 天，半 算 0.5 天；工时：完整考勤日的合计")


@dataclass
class Row:
    worker: str
    name: str | None
    employer: str | None
    team: str | None
    trade: str | None
    marks: dict[int, str]  # day of month -> mark
    days: float
    minutes: int
    review: int


def timesheet(store: Store, site: str, month: str, *, now: datetime | None = None,
              grace: timedelta = timedelta(hours=6), employer: str | None = None, team: str | None = None) -> dict:
    """The month's sheet as data: the site, the month's dates, one ``Row`` per worker (by employer, then
    worker number), and when it was made in the site's time."""
    now = now or datetime.now(UTC)
    first, last = parse_month(month, now.date())
    rules = site_rules(store, site)
    row_of = {d["worker"]: d for d in store.people_named(_roster(store, site, first, last, rules.tz))}
    marks: dict[str, dict[int, str]] = {}
    totals: dict[str, list] = {}
    for day in attendance(store, site, first, last, now=now, grace=grace, summary=True):
        worker, number = day["worker"], int(day["date"][8:])
        mark = _mark(day)
        if mark is None:
            continue
        marks.setdefault(worker, {})[number] = mark
        counted = totals.setdefault(worker, [0.0, 0, 0])
        if mark in (MARKS["full"], MARKS["manual"]):
            counted[0] += 1
        elif mark == MARKS["half"]:
            counted[0] += 0.5
        if day["status"] == "complete":
            counted[1] += day["worked_minutes"]
        else:
            counted[2] += 1
        row_of.setdefault(worker, {"worker": worker, "name": day["name"], "employer": day["employer"]})
    for dispute in store.disputes(site=site, status="open", first_day=first.isoformat(), last_day=last.isoformat()):
        marks.setdefault(dispute["worker"], {})[int(dispute["day"][8:])] = MARKS["disputed"]
        row_of.setdefault(dispute["worker"], {"worker": dispute["worker"], "name": None, "employer": None})
    missing = [w for w, p in row_of.items() if "team" not in p]  # named by a day or dispute, not the roster
    row_of.update({p["worker"]: p for p in store.people_named(missing)})
    rows = [Row(w, p.get("name"), p.get("employer"), p.get("team"), p.get("trade"), marks.get(w, {}),
                *totals.get(w, (0.0, 0, 0)))
            for w, p in row_of.items()
            if (employer is None or p.get("employer") == employer) and (team is None or p.get("team") == team)]
    rows.sort(key=lambda r: (r.employer or "", r.team or "", r.worker))
    site_row = store.site(site) or {}
    return {"site": site, "site_name": site_row.get("name") or site, "month": f"{first:%Y-%m}",
            "days": [first + timedelta(days=n) for n in range((last - first).days + 1)], "employer": employer,
            "team": team,
            "rows": rows, "made": local_text_dt(now, rules.tz)}


def _roster(store: Store, site: str, first: date, last: date, tz) -> set[str]:
    """Workers assigned to the site at any moment of the month."""
    start, end = range_bounds(first, last, tz)
    return {a["worker"] for a in store.assignments(site=site)
            if (a["valid_from"] is None or a["valid_from"] < end) and (a["valid_to"] is None or a["valid_to"] > start)}


def _mark(day: dict) -> str | None:
    status = day["status"]
    if status == "complete":
        if "manual" in day["flags"]:
            return MARKS["manual"]
        return MARKS["full"] if day["worked_minutes"] >= HALF_DAY_MINUTES else MARKS["half"]
    if status in ("open", "missing_out", "missing_in", "anomaly", "error"):
        return MARKS["review"]
    return None


def sheet_rows(sheet: dict) -> tuple[list[str], list[list[object]]]:
    """The header and rows as the workbook and the printable page lay them out."""
    weekdays = "一二三四五六日"
    header = ["序号", "姓名", "工号", "单位", "班组", "工种"] + [f"{d.day}\n{weekdays[d.weekday()]}" for d in sheet["days"]] + \
        ["出勤天数", "工时(小时)", "待核", "本人签名"]
    rows = []
    for number, row in enumerate(sheet["rows"], start=1):
        rows.append([number, row.name or "", row.worker, row.employer or "", row.team or "", row.trade or ""]
                    + [row.marks.get(d.day, "") for d in sheet["days"]]
                    + [row.days, round(row.minutes / 60, 1), row.review, ""])
    return header, rows


def workbook(sheet: dict):
    """The sheet as one worksheet (collector.workbook)."""
    from collector.workbook import Sheet

    header, rows = sheet_rows(sheet)
    title = _title(sheet)
    return Sheet(title=f"{sheet['month']} 考勤表", header=header, rows=rows,
                 heading=[title, f"工地 {sheet['site']}，制表 {sheet['made'][:16].replace('T', ' ')}（工地时间）"],
                 notes=[LEGEND, "", "班组长签字：                    工地负责人签字：                    日期："],
                 widths=[5, 10, 10, 14, 10, 8] + [3.6] * len(sheet["days"]) + [8, 9, 6, 12], frozen=2)


def _title(sheet: dict) -> str:
    chosen = "，".join(filter(None, (sheet["employer"], sheet["team"])))
    return f"{sheet['site_name']} {sheet['month']} 考勤表" + (f"（{chosen}）" if chosen else "")


def page(sheet: dict) -> str:
    """The sheet as one printable HTML page (A4 landscape; scrolls sideways on a phone), every value escaped
    by the template's autoescaping, no script."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    header, rows = sheet_rows(sheet)
    title = _title(sheet)
    return environment.get_template("timesheet.html").render(
        title=title, site=sheet["site"], made=sheet["made"][:16].replace("T", " "), header=header,
        rows=[[_shown(v) for v in row] for row in rows], legend=LEGEND)


def _shown(value: object) -> object:
    return f"{value:g}" if isinstance(value, float) else value
