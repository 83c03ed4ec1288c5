"""A site's day for its foreman: how many came in and went out in each hour, and how many were on site
over the day (a step line), in the site's time.

Read from the kept days of that date and of the nights before it that a shift can reach across
(``max_shift_hours``, one night by default), and on the current day of the next date (a gate's clock
running ahead): what the foreman's attendance table of the day reads, and a little more, never the site's
month. A shift's IN counts as one in, its OUT as one out; a worker is on site from the IN
to the OUT, while a shift is still open up to now, and for a shift that never got its OUT as long as the
live headcount showed them (``max_shift_hours``). Cards nobody holds are not counted, as in the headcount.
The line ends now on the current day: at the headcount's own figure.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from collector.attendance.reports import attendance, site_rules
from collector.charts.svg import (
    GRID,
    INK,
    MUTED,
    SMALL,
    Canvas,
    empty,
    escape,
    heading,
    legend,
    nice_top,
    number,
    tag,
    visible,
)
from collector.charts.words import Words
from collector.localtime import FIRST_DATE, LAST_DATE, day_bounds
from collector.store import Store
from gate_agent.protocol import parse_time

KEY = "today"
#: Where the plot sits in the chart's width: room for the axis numbers at the left.
LEFT, RIGHT = 30, 8
HEADCOUNT_HEIGHT, HOURS_HEIGHT = 96, 80


def day_figures(store: Store, site: str, day: date, *, now: datetime | None = None,
                grace: timedelta = timedelta(hours=6)) -> dict:
    """The day's ins and outs per hour of the site's clock and the headcount's steps (seconds from the
    day's start, count), up to the day's end or now."""
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    start, end = (parse_time(text) for text in day_bounds(day, rules.tz))
    reach = math.ceil(rules.max_shift / timedelta(days=1))
    first = max(day - timedelta(days=reach), FIRST_DATE)
    today = start <= now < end
    # Today, also tomorrow's: an IN stamped ahead of now by a gate whose clock runs fast (a day at most,
    # or it is implausible) is in the headcount already.
    last = min(day + timedelta(days=1), LAST_DATE) if today else day
    seconds = round((end - start).total_seconds())  # 23 or 25 hours on a day the clocks change
    hours = -(-seconds // 3600)
    ins, outs = [0] * hours, [0] * hours
    changes: list[tuple[datetime, int]] = []
    for record in attendance(store, site, first, last, now=now, grace=grace):
        for shift in record["shifts"]:
            came, left = _moment(shift["in"]), _moment(shift["out"])
            if came is not None and start <= came < end:
                ins[int((came - start).total_seconds() // 3600)] += 1
            if left is not None and start <= left < end:
                outs[int((left - start).total_seconds() // 3600)] += 1
            if came is None:
                continue
            until = (left if shift["status"] == "complete" else None if shift["status"] == "open"
                     else came + rules.max_shift)  # no OUT: on site as long as the headcount showed it
            changes.append((came, 1))
            if until is not None:
                changes.append((until, -1))
    stop = min(end, now)
    steps: list[list[int]] = []
    if stop > start:
        count = sum(delta for moment, delta in changes if moment <= start)
        steps.append([0, count])
        for moment, delta in sorted(c for c in changes if c[0] > start):
            if moment >= stop and not today:
                break  # the next day's
            if moment > stop:
                # Stamped after now by a gate whose clock runs ahead: the headcount counts it already.
                moment = stop
            count += delta
            offset = round((moment - start).total_seconds())
            if steps[-1][0] == offset:
                steps[-1][1] = count
            else:
                steps.append([offset, count])
    peak = max(steps, key=lambda s: s[1], default=None)
    site_row = store.site(site) or {}
    return {
        "site": site, "site_name": site_row.get("name") or site, "date": day.isoformat(), "zone": rules.tz.key,
        "seconds": seconds, "stop": round((stop - start).total_seconds()) if stop > start else None,
        "today": today,
        "hours": [{"hour": (start + timedelta(hours=i)).astimezone(rules.tz).hour, "in": ins[i], "out": outs[i]}
                  for i in range(hours)],
        "steps": steps,
        "peak": None if peak is None else {"count": peak[1], "at": _clock(start + timedelta(seconds=peak[0]),
                                                                          rules.tz)},
        "now": steps[-1][1] if steps and today else None,
    }


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _clock(moment: datetime, tz) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def day_chart(figures: dict, words: Words, *, titled: bool = False) -> str:
    """The day as SVG: the headcount's step line above, the ins and outs of each hour under it, one time
    axis of the site's clock."""
    title = words("chart.today.title", site=figures["site_name"], date=figures["date"])
    hours, steps = figures["hours"], figures["steps"]
    came, went = sum(h["in"] for h in hours), sum(h["out"] for h in hours)
    if not came and not went and not any(count for _, count in steps):
        return empty(KEY, title, words("chart.today.none"), titled=titled)
    canvas = Canvas(KEY)
    top = heading(canvas, title) if titled else 0
    plot = canvas.width - LEFT - RIGHT
    seconds = figures["seconds"]

    def x_of(offset: float) -> float:
        return LEFT + plot * offset / seconds

    # What a glance wants first: the most on site, and how many now.
    peak = figures["peak"]
    if peak is not None:
        canvas.text(4, top + 14, words("chart.today.peak", count=peak["count"], time=peak["at"]), weight="bold",
                    data_peak=peak["count"])
    if figures["now"] is not None:
        canvas.text(canvas.width - 4, top + 14, words("chart.today.now", count=figures["now"]), anchor="end",
                    weight="bold", data_now=figures["now"])

    # The headcount over the day.
    panel = top + 26
    axis, step = nice_top(max((count for _, count in steps), default=0))
    unit = HEADCOUNT_HEIGHT / axis
    base = panel + HEADCOUNT_HEIGHT
    _grid(canvas, panel, base, axis, step, unit)
    canvas.add(f'<g data-panel="headcount" data-top="{number(panel)}" data-height="{HEADCOUNT_HEIGHT}" '
               f'data-max="{axis}" data-left="{LEFT}" data-width="{plot}" data-seconds="{seconds}">')
    if steps:
        line = f"M{number(x_of(steps[0][0]))} {number(base - steps[0][1] * unit)}"
        for offset, count in steps[1:]:
            line += f"H{number(x_of(offset))}V{number(base - count * unit)}"
        line += f"H{number(x_of(figures['stop']))}"
        canvas.add(tag("path", d=f"{line}V{number(base)}H{number(x_of(steps[0][0]))}Z", fill=canvas.paint("headcount")),
                   tag("path", d=line, fill="none", stroke=INK, stroke_width=2, data_series="headcount"))
        if figures["today"]:
            now_x = number(x_of(figures["stop"]))
            canvas.add(tag("path", d=f"M{now_x} {number(panel)}V{number(base)}", stroke=MUTED, stroke_width=1,
                           stroke_dasharray="3 2", data_now_line="1"))
    canvas.add("</g>")

    # Ins and outs per hour.
    canvas.text(4, base + 22, words("chart.today.per_hour"), size=SMALL, fill=MUTED)
    panel = base + 34
    base = panel + HOURS_HEIGHT
    axis, step = nice_top(max([h["in"] for h in hours] + [h["out"] for h in hours]))
    unit = HOURS_HEIGHT / axis
    _grid(canvas, panel, base, axis, step, unit)
    slot = plot / len(hours)
    canvas.add(f'<g data-panel="hours" data-top="{number(panel)}" data-height="{HOURS_HEIGHT}" data-max="{axis}">')
    for index, hour in enumerate(hours):
        for kind, shift in (("in", 0.12), ("out", 0.5)):
            if not hour[kind]:
                continue
            said = words(f"chart.today.bar_{kind}", hour=hour["hour"], count=hour[kind])
            height = hour[kind] * unit
            canvas.add(tag("rect", tag("title", escape(visible(said))), x=LEFT + index * slot + slot * shift, y=base - height,
                           width=slot * 0.38, height=height, fill=canvas.paint(kind), stroke=INK, stroke_width=0.4,
                           data_kind=kind, data_index=index, data_hour=hour["hour"], data_count=hour[kind]))
    canvas.add("</g>")
    canvas.add(tag("path", d=f"M{LEFT} {number(base)}H{canvas.width - RIGHT}", stroke=INK, stroke_width=1))
    for index in range(0, len(hours) + 1, 3):
        if index < len(hours):
            canvas.text(LEFT + index * slot, base + 14, words("chart.today.hour", hour=hours[index]["hour"]),
                        size=SMALL, anchor="middle", fill=MUTED)
        else:  # the day's end, "24", kept inside the chart
            canvas.text(canvas.width - 1, base + 14, words("chart.today.hour", hour=hours[-1]["hour"] + 1), size=SMALL,
                        anchor="end", fill=MUTED)
    bottom = legend(canvas, base + 24, [("line", words("chart.today.headcount")), ("in", words("chart.today.in")),
                                        ("out", words("chart.today.out"))])
    canvas.text(4, bottom + 10, words("chart.today.zone", zone=figures["zone"]), size=SMALL, fill=MUTED)
    return canvas.render(bottom + 16, title=title,
                         description=words("chart.today.totals", came=came, went=went))


def _grid(canvas: Canvas, top: float, base: float, axis: int, step: int, unit: float) -> None:
    for value in range(0, axis + 1, step):
        y = base - value * unit
        canvas.add(tag("path", d=f"M{LEFT} {number(y)}H{canvas.width - RIGHT}", stroke=GRID, stroke_width=0.6))
        canvas.text(LEFT - 4, y + 4, value, size=SMALL, anchor="end", fill=MUTED)

