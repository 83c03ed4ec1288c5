"""A worker's month as a calendar grid for their own page: each date worked, paid, to check, disputed or
without any record, read from that worker's own days, disputes and wage rows only (``workers.record``),
so it costs what their page costs whatever the size of the site.

A date's state is the most telling of its days at every site: disputed (a dispute of it waits for the
bank's answer), to check (a flag beyond a manual entry, or a day that is not complete), paid (worked in a
month whose wage row at that site is paid), worked (an IN), else no record; dates after today are blank.
Each state has a colour, a pattern or a mark, and a word in the legend: it prints in black and white.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from collector.charts.svg import INK, MUTED, SIZE, SMALL, Canvas, escape, legend, tag, visible
from collector.charts.words import Words
from collector.localtime import to_local, zone
from collector.store import Store
from collector.workers.record import parse_month, worker_days, worker_sites, worker_wages

KEY = "calendar"
#: The states a date can be in, the most telling first (a date of several days takes the first that fits).
STATES = ("disputed", "flagged", "paid", "worked", "absent")
CELL, GAP, HEADER = 48, 2, 18
LEFT = 6


def calendar_figures(store: Store, worker: str, month: str | None = None, *, now: datetime | None = None,
                     grace: timedelta = timedelta(hours=6)) -> dict:
    now = now or datetime.now(UTC)
    first, last = parse_month(month, now.date())
    days = worker_days(store, worker, first, last, now=now, grace=grace)
    paid = {(w["site"], w["period"]) for w in worker_wages(store, worker, grace=grace, now=now) or []
            if w["status"] == "paid"}
    found: dict[str, str] = {}
    for day in days:
        present = day["first_in"] is not None
        if set(day["flags"]) - {"manual"} or day["status"] not in ("complete", "open"):
            state = "flagged"
        elif present and (day["site"], day["date"][:7]) in paid:
            state = "paid"
        else:
            state = "worked" if present else "flagged"
        if day["date"] not in found or STATES.index(state) < STATES.index(found[day["date"]]):
            found[day["date"]] = state
    for dispute in store.disputes(worker=worker, status="open", first_day=first.isoformat(),
                                  last_day=last.isoformat()):
        found[dispute["day"]] = "disputed"
    sites = worker_sites(store, worker)
    tz = zone(sites[0]["timezone"]) if sites else UTC
    today = (to_local(now, tz) or now).date()
    dates = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    shown = [{"date": d.isoformat(), "state": found.get(d.isoformat(), "absent" if d <= today else "future")}
             for d in dates]
    return {"worker": worker, "month": f"{first:%Y-%m}", "today": today.isoformat(), "days": shown,
            "counts": {state: sum(1 for d in shown if d["state"] == state) for state in STATES}}


def calendar_chart(figures: dict, words: Words) -> str:
    month = figures["month"]
    title = words("chart.calendar.title", month=words.month(month))
    canvas = Canvas(KEY)
    first = date.fromisoformat(figures["days"][0]["date"])
    top = 0
    if not any(figures["counts"][s] for s in STATES if s != "absent"):
        canvas.text(canvas.width / 2, 14, words("chart.calendar.none"), anchor="middle", fill=MUTED, data_none="1")
        top = 22
    for column, name in enumerate(words("chart.calendar.weekdays").split(",")[:7]):
        canvas.text(LEFT + column * (CELL + GAP) + CELL / 2, top + 13, name, size=SMALL, anchor="middle",
                    fill=MUTED if column >= 5 else INK)
    top += HEADER
    lead = first.weekday()  # Monday first, as a Chinese calendar is
    for index, day in enumerate(figures["days"]):
        place = lead + index
        x, y = LEFT + (place % 7) * (CELL + GAP), top + (place // 7) * (CELL + GAP)
        state, moment = day["state"], date.fromisoformat(day["date"])
        said = words("chart.calendar.cell", month=moment.month, day=moment.day,
                     state=words(f"chart.calendar.{state}") if state != "future" else "")
        today = day["date"] == figures["today"]
        cell = tag("title", escape(visible(said.rstrip("：: ")))) + tag(
            "rect", x=x, y=y, width=CELL, height=CELL, rx=4, fill=canvas.paint(state),
            stroke=INK if today else "#afb8c1", stroke_width=2 if today else 0.6,
            stroke_dasharray="3 2" if state == "future" else None)
        ink = "#ffffff" if state == "paid" else INK
        cell += tag("text", str(moment.day), x=x + 4, y=y + 13, font_size=SMALL, fill=ink,
                    font_weight="bold" if today else None)
        if state not in ("absent", "future"):
            if state in ("flagged", "disputed"):  # the mark on a plate of its own: stripes behind it blur it
                cell += tag("circle", cx=x + CELL / 2, cy=y + 30, r=11, fill="#ffffff", stroke=INK, stroke_width=0.5)
            cell += tag("text", escape(words(f"chart.calendar.mark_{state}")), x=x + CELL / 2, y=y + 35.5,
                        font_size=15, font_weight="bold", text_anchor="middle", fill=ink)
        canvas.add(tag("g", cell, data_date=day["date"], data_state=state))
    rows = -(-(lead + len(figures["days"])) // 7)
    bottom = legend(canvas, top + rows * (CELL + GAP) + 6, [
        (state, words("chart.calendar.legend", mark=words(f"chart.calendar.mark_{state}") if state != "absent" else "",
                      state=words(f"chart.calendar.{state}"), count=figures["counts"][state]).strip())
        for state in STATES])
    counts = "; ".join(f"{words(f'chart.calendar.{s}')} {figures['counts'][s]}" for s in STATES)
    return canvas.render(bottom + SIZE // 3, title=title, description=counts)

