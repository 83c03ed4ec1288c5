"""Attendance rules as pure functions: one worker's punches + the site's rules -> daily records.

The rules (what site managers check and the bank pays from):

- IN/OUT pairs are summed; several pairs a day (split shifts) add up. Worked time is elapsed time
  (UTC difference), so a shift across a DST change counts the hours really worked.
- A shift belongs to the local date of its IN: a night shift ending after midnight is one record.
- An IN with no OUT within ``max_shift`` is ``missing_out``: no hours are invented, the record is
  flagged for review. While still within the window it is ``open``.
- An OUT with no IN is ``missing_in``. A second IN while a shift is open, or a second OUT after one
  closed it, is an anomaly: flagged, ignored for the hours (never double-counted).
- A ``toggle`` punch closes the worker's open shift if there is one, otherwise opens one (on a normal
  day: the opposite of the worker's previous punch that day).
- Void punches are shown (flag ``void``) on the worker's day but take no part; a day with nothing but
  void punches is no day. Manual punches take part, flagged ``manual``.
- A punch flagged ``clock_implausible`` (its time cannot be placed on a real working day: before 2020,
  or more than a day after the bank received it) takes no part and belongs to no day, void or not; the
  punch listings show it.
- A punch whose card did not prove itself (``card_forged``, ``card_replay``, ``card_unverified``: see
  docs/cards.md) is shown on its day but takes no part: it is no proof of presence.

Nothing here reads a database or a clock: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.localtime import to_local

_MS = timedelta(milliseconds=1)
STATUS_ORDER = ("missing_out", "missing_in", "anomaly", "open", "complete")  # most severe first
#: The flag of a punch whose time no working day can hold.
UNPLACEABLE = "clock_implausible"
#: Flags of punches that prove no presence: the clock cannot be placed, or the card did not prove itself.
NOT_PRESENCE = frozenset({UNPLACEABLE, "card_forged", "card_replay", "card_unverified"})


@dataclass(frozen=True, slots=True)
class Rules:
    tz: ZoneInfo
    max_shift: timedelta = timedelta(hours=16)


@dataclass(frozen=True, slots=True)
class Event:
    """One punch as attendance sees it (already attributed to a worker)."""

    ref: str  # stable reference: "gate#seq" for gate punches, "manual#id" for manual ones
    worker: str
    time: datetime  # aware, UTC
    direction: str  # in / out / toggle
    gate: str | None = None
    manual: bool = False
    void: bool = False
    flags: frozenset[str] = frozenset()  # the punch's own flags (clock_unsynced, late_upload, ...)


@dataclass(frozen=True, slots=True)
class Shift:
    start: Event | None  # the IN
    end: Event | None  # the OUT
    status: str  # complete / open / missing_out / missing_in

    @property
    def ms(self) -> int:
        """Elapsed milliseconds of a complete shift (0 otherwise): exact, as punch times are whole ms."""
        if self.status != "complete":
            return 0
        return (self.end.time - self.start.time) // _MS

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def anchor(self) -> Event:
        return self.start or self.end


@dataclass
class DayRecord:
    worker: str
    date: date
    shifts: list[Shift] = field(default_factory=list)
    anomalies: list[tuple[Event, str]] = field(default_factory=list)  # ignored punches and why
    voided: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # every punch that shaped this day

    @property
    def worked_seconds(self) -> float:
        return sum(shift.ms for shift in self.shifts) / 1000

    @property
    def worked_minutes(self) -> int:
        # Whole minutes of the day's total, rounded down: never more than the punches prove. Summed in
        # integer milliseconds, as docs/evidence-format.md states it: a float sum can fall just short of
        # a whole minute and lose it.
        return sum(shift.ms for shift in self.shifts) // 60000

    @property
    def first_in(self) -> datetime | None:
        starts = [s.start.time for s in self.shifts if s.start is not None]
        return min(starts) if starts else None

    @property
    def last_out(self) -> datetime | None:
        ends = [s.end.time for s in self.shifts if s.end is not None]
        return max(ends) if ends else None

    @property
    def status(self) -> str:
        found = {s.status for s in self.shifts}
        if self.anomalies:
            found.add("anomaly")
        for status in STATUS_ORDER:
            if status in found:
                return status
        return "complete"

    @property
    def flags(self) -> list[str]:
        flags: set[str] = set()
        for event in self.events:
            flags |= event.flags
            if event.manual:
                flags.add("manual")
        if self.voided:
            flags.add("void")
        flags |= {why for _, why in self.anomalies}
        flags |= {s.status for s in self.shifts if s.status in ("missing_out", "missing_in")}
        return sorted(flags)


def counted(events: Iterable[Event]) -> list[Event]:
    """The events that take part in pairing, in the order they are paired."""
    return sorted((e for e in events if not e.void and not NOT_PRESENCE & e.flags), key=lambda e: (e.time, e.ref))


def fresh_start(events: Iterable[Event], since: datetime, horizon: datetime, rules: Rules) -> bool:
    """Whether pairing one worker's ``events``, read from ``horizon`` on, gives every shift and anomaly
    anchored at or after ``since`` what pairing the worker's whole history gives.

    Pairing carries state from punch to punch (an open IN, the shift an OUT just closed), so a day can
    depend on punches long before it: an IN ignored as repeated decides whether the next IN opens a shift.
    The state is the same whatever came before at a restart point: an IN right after an OUT (every OUT
    leaves no shift open, and an IN with none open starts afresh), or a punch more than ``max_shift``
    after the one before it (nothing that old is paired with it). A restart point at or before the first
    punch from ``since`` on is what a window needs; the punch before the first one read is unknown, so
    the first one read is a restart point only if ``horizon`` lies more than ``max_shift`` before it."""
    previous = None
    for event in counted(events):
        if previous is None:
            restart = event.time - horizon >= rules.max_shift
        else:
            restart = (event.time - previous.time > rules.max_shift
                       or (event.direction == "in" and previous.direction == "out"))
        if restart:
            return True
        if event.time >= since:
            return False
        previous = event
    return True  # nothing from ``since`` on: nothing there can depend on what came before


def resolve_and_pair(events: Iterable[Event], rules: Rules, now: datetime) -> tuple[list[Shift], list[tuple[Event, str, Event | None]]]:
    """One worker's shifts, and the punches ignored as anomalies (with the shift they fell into)."""
    ordered = counted(events)
    shifts: list[Shift] = []
    anomalies: list[tuple[Event, str, Event | None]] = []
    open_in: Event | None = None
    closed: Shift | None = None  # the shift the last OUT closed, until the next IN
    for event in ordered:
        direction = event.direction
        if direction == "toggle":
            direction = "out" if open_in is not None and event.time - open_in.time <= rules.max_shift else "in"
        if direction == "in":
            if open_in is not None and event.time - open_in.time <= rules.max_shift:
                anomalies.append((event, "repeated_in", open_in))
                continue
            if open_in is not None:
                shifts.append(Shift(open_in, None, "missing_out"))
            open_in, closed = event, None
            continue
        # an OUT
        if open_in is not None and event.time - open_in.time <= rules.max_shift:
            closed = Shift(open_in, event, "complete")
            shifts.append(closed)
            open_in = None
            continue
        if open_in is not None:
            shifts.append(Shift(open_in, None, "missing_out"))
            open_in = None
        if closed is not None and event.time - closed.end.time <= rules.max_shift:
            anomalies.append((event, "repeated_out", closed.start))
            continue
        shifts.append(Shift(None, event, "missing_in"))
    if open_in is not None:
        status = "open" if now - open_in.time <= rules.max_shift else "missing_out"
        shifts.append(Shift(open_in, None, status))
    return shifts, anomalies


def daily_records(events: Iterable[Event], rules: Rules, now: datetime) -> list[DayRecord]:
    """Records of every worker and local date the events touch, ordered by worker and date."""
    by_worker: dict[str, list[Event]] = {}
    for event in events:
        # A time with no local date in the zone (year 1 or 9999) is unplaceable whatever its flags say.
        if UNPLACEABLE not in event.flags and to_local(event.time, rules.tz) is not None:
            by_worker.setdefault(event.worker, []).append(event)
    records: list[DayRecord] = []
    for worker in sorted(by_worker):
        worker_events = by_worker[worker]
        days: dict[date, DayRecord] = {}

        def day_of(moment: datetime, worker=worker, days=days) -> DayRecord:
            local_day = moment.astimezone(rules.tz).date()
            if local_day not in days:
                days[local_day] = DayRecord(worker, local_day)
            return days[local_day]

        shifts, anomalies = resolve_and_pair(worker_events, rules, now)
        for shift in shifts:
            record = day_of(shift.anchor.time)
            record.shifts.append(shift)
            record.events += [e for e in (shift.start, shift.end) if e is not None]
        for event, why, anchor in anomalies:
            record = day_of((anchor or event).time)
            record.anomalies.append((event, why))
            record.events.append(event)
        for event in worker_events:
            # A void punch, or one that proves no presence, shows on a day the worker has and makes no day:
            # a day whose every punch was voided is no day (nothing to pay, nothing to decide).
            local_day = event.time.astimezone(rules.tz).date()
            if local_day not in days:
                continue
            if event.void:
                days[local_day].voided.append(event)
                days[local_day].events.append(event)
            elif NOT_PRESENCE & event.flags:
                days[local_day].events.append(event)
        records += [days[d] for d in sorted(days)]
    return records


def open_shift(events: Iterable[Event], rules: Rules, now: datetime) -> Shift | None:
    """The worker's shift in progress now, if any (for the live headcount)."""
    shifts, _ = resolve_and_pair(events, rules, now)
    if shifts and shifts[-1].status == "open":
        return shifts[-1]
    return None
