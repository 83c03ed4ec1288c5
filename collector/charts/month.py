"""Days worked per worker over a site's month, for bank ops: the 考勤表's count (``attendance.timesheet``:
a full day 1, a short one half, a manual one 1; a day to look at is not counted but shown beside it), from
the kept days' summaries. One bar per worker, most days first, the whole width being the whole month; a
site of more workers than a phone shows bars of is drawn as how many workers worked how many days."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from collector.attendance.timesheet import timesheet
from collector.charts.svg import MUTED, SMALL, BarRow, Canvas, bar_rows, empty, heading, legend, paragraph
from collector.charts.words import Words
from collector.store import Store

KEY = "days"
#: Workers drawn one bar each at most; past this the chart counts workers by days worked.
MOST_BARS = 50


def month_figures(store: Store, site: str, month: str, *, now: datetime | None = None,
                  grace: timedelta = timedelta(hours=6)) -> dict:
    """Each worker of the site's month (assigned during it, or with days there): days worked, days to look
    at; most days first."""
    sheet = timesheet(store, site, month, now=now or datetime.now(UTC), grace=grace)
    workers = [{"worker": row.worker, "name": row.name, "employer": row.employer, "days": row.days,
                "review": row.review} for row in sheet["rows"]]
    workers.sort(key=lambda w: (-w["days"], -w["review"], w["worker"]))
    return {"site": site, "site_name": sheet["site_name"], "month": sheet["month"], "month_days": len(sheet["days"]),
            "workers": workers}


def _days(value: float) -> str:
    return f"{value:g}"


def month_chart(figures: dict, words: Words, *, titled: bool = False) -> str:
    title = words("chart.days.title", site=figures["site_name"], month=words.month(figures["month"]))
    workers = figures["workers"]
    if not workers:
        return empty(KEY, title, words("chart.days.nobody"), titled=titled)
    total = sum(w["days"] for w in workers)
    review = sum(w["review"] for w in workers)
    if not total and not review:
        return empty(KEY, title, words("chart.days.none", workers=len(workers)), titled=titled)
    canvas = Canvas(KEY)
    top = heading(canvas, title) if titled else 0
    caption = words("chart.days.caption", workers=len(workers), days=_days(total), review=review)
    canvas.text(4, top + 14, caption, weight="bold", limit=canvas.width - 8)
    top += 24
    if len(workers) <= MOST_BARS:
        rows = []
        for w in workers:
            said = words("chart.days.said", days=_days(w["days"]))
            if w["review"]:
                said += " · " + words("chart.days.review_said", days=w["review"])
            # Half days as whole units: the bars are integer arithmetic like every other.
            rows.append(BarRow(f"{w['name'] or ''} {w['worker']}".strip(), said,
                               [(round(w["days"] * 2), "days"), (w["review"] * 2, "review")],
                               {"worker": w["worker"], "days": _days(w["days"]), "review": w["review"]}))
        bottom = bar_rows(canvas, top, rows, maximum=2 * figures["month_days"])
        entries = [("days", words("chart.days.legend_days")), ("review", words("chart.days.legend_review"))]
    else:
        counted = Counter(w["days"] for w in workers)
        rows = [BarRow(words("chart.days.bucket", days=_days(days)), words("chart.days.workers", count=count),
                       [(count, "workers")], {"days": _days(days), "workers": count})
                for days, count in sorted(counted.items(), reverse=True)]
        canvas.text(4, top + 8, words("chart.days.histogram"), size=SMALL, fill=MUTED)
        bottom = bar_rows(canvas, top + 14, rows, maximum=max(counted.values()))
        entries = [("workers", words("chart.days.legend_workers"))]
    bottom = legend(canvas, bottom + 6, entries)
    bottom = paragraph(canvas, bottom, words("chart.days.rule"))
    return canvas.render(bottom + 4, title=title, description=caption)
