"""Working days in China, and the day a pay day that falls on a rest day or holiday is paid instead.

Art. 14 of the Regulations on Ensuring Payment of Wages to Migrant Workers (and Art. 7 of the Interim
Provisions on Wage Payment, 工资支付暂行规定): wages are paid on the agreed day, and when that day is a
statutory holiday or a rest day, before it, on the nearest working day. Which days
are working days is the State Council's yearly notice (放假安排): the holidays, and the weekend days
worked in exchange for them (调休上班). That calendar is the kept library chinese-calendar, which knows
each year from 2004 to the last one published when it was released; a site's own rules (a local
holiday, a site closed by the authorities, a year the library does not know yet) are the site's own
calendar, kept in the store with who set each day, when and why (``collector site work-calendar``).

A year the library does not know is never guessed silently: its weekends are taken as rest days and
its other days as working days, with the site's own days over them, and every answer that rests on
such a year carries a warning naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from collector.store import Store
from collector.wages.table import WageError

#: How far back a working day is looked for: a site whose own calendar rests a whole month is a mistake.
MAX_MOVE_DAYS = 31
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


def library():
    """The national calendar (the bank extra's chinese-calendar)."""
    from gate_agent.extras import require

    return require("chinese_calendar", "bank")


def library_years() -> tuple[int, int]:
    """The first and last year the installed library knows."""
    days = library().holidays
    return min(days).year, max(days).year


def library_name() -> str:
    return f"chinese-calendar {library().__version__}"


@dataclass(frozen=True)
class Day:
    """What the calendar says of one date: a working day or not, and why (for a person)."""

    day: date
    working: bool
    why: str
    #: "site" (the site's own calendar), "national" (the library) or "unknown" (a year the library does
    #: not know: weekends only).
    source: str


@dataclass(frozen=True)
class WorkCalendar:
    """The national calendar with a site's own days over it (each: kind, reason, who, when)."""

    site: str
    own: dict[date, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store, site: str) -> WorkCalendar:
        """The site's calendar as recorded now: the latest row of each date is in force."""
        own: dict[date, dict] = {}
        for row in store.work_days(site):
            own[date.fromisoformat(row["day"])] = row
        return cls(site, {day: row for day, row in own.items() if row["kind"] != "national"})

    def day(self, day: date) -> Day:
        mine = self.own.get(day)
        if mine is not None:
            working = mine["kind"] == "work"
            return Day(day, working, f"{'a working day' if working else 'a rest day'} of site {self.site}: "
                                     f"{mine['reason']} (set {mine['added_at']} by {mine['added_by']})", "site")
        first, last = library_years()
        weekend = day.weekday() >= 5
        if not first <= day.year <= last:
            return Day(day, not weekend, WEEKDAYS[day.weekday()], "unknown")
        holiday, name = library().get_holiday_detail(day)
        if name is None:
            return Day(day, not holiday, WEEKDAYS[day.weekday()], "national")
        chinese = _chinese(name)
        if holiday:
            return Day(day, False, f"{WEEKDAYS[day.weekday()]}, {chinese} {name} holiday", "national")
        return Day(day, True, f"{WEEKDAYS[day.weekday()]} worked for the {chinese} {name} holiday (调休上班)",
                   "national")

    def unknown_years(self, days: list[date]) -> list[int]:
        first, last = library_years()
        return sorted({d.year for d in days if not first <= d.year <= last})


def _chinese(english: str) -> str:
    for holiday in library().Holiday:
        if holiday.value == english:
            return holiday.chinese
    return ""


@dataclass(frozen=True)
class PayDate:
    """The day a pay day is paid on: the pay day itself when it is a working day, else the working day
    before it (Art. 14)."""

    due: date          # the agreed pay day
    date: date         # the day it is paid
    why: str           # why the pay day is not a working day ('' when it is)
    warning: str       # a year the national calendar does not know ('' when it knows every day looked at)

    @property
    def moved(self) -> bool:
        return self.date != self.due

    def text(self) -> str:
        """One line for a person: the day paid and, when moved, why."""
        if not self.moved:
            return self.date.isoformat()
        return (f"{self.date.isoformat()} ({WEEKDAYS_ZH[self.date.weekday()]}; the pay day {self.due.isoformat()} is "
                f"{self.why}: paid on the working day before it, Art. 14)")


def pay_date(calendar: WorkCalendar, due: date) -> PayDate:
    """The working day on or before ``due``; WageError when the site's calendar leaves none in the
    ``MAX_MOVE_DAYS`` before it."""
    looked: list[date] = []
    first = calendar.day(due)
    day = first
    while True:
        looked.append(day.day)
        if day.working:
            break
        if len(looked) > MAX_MOVE_DAYS:
            raise WageError(f"no working day in the {MAX_MOVE_DAYS} days up to the pay day {due} at {calendar.site} "
                            "(collector site work-calendar shows the site's own rest days)")
        day = calendar.day(day.day - timedelta(days=1))
    return PayDate(due, day.day, "" if first.working else first.why, unknown_warning(calendar, looked))


def unknown_warning(calendar: WorkCalendar, days: list[date]) -> str:
    """The warning for days of a year the national calendar does not know (those the site's own calendar
    does not set), or ''."""
    years = calendar.unknown_years([d for d in days if d not in calendar.own])
    if not years:
        return ""
    first, last = library_years()
    listed = ", ".join(map(str, years))
    return (f"the national working-day calendar ({library_name()}) knows {first} to {last}, not {listed}: "
            f"only weekends were taken as rest days there, no holiday and no make-up working day (调休); set the "
            f"State Council's {listed} holidays as the site's own days (collector site work-calendar "
            f"{calendar.site} --rest DATE --reason ...), or upgrade chinese-calendar once it knows {listed}")
