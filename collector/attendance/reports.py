"""Punch listings with attribution and flags, shared by the CLI, the exports and the dashboard."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, date, datetime, timedelta

from collector.attendance.attribution import Attributor
from collector.attendance.cards import Holder
from collector.attendance.rules import DayRecord, Event, Rules, daily_records, fresh_start
from collector.errors import InputError
from collector.localtime import (
    check_date,
    day_bounds,
    implausible,
    local_text,
    local_text_dt,
    parse_or_none,
    range_bounds,
    to_local,
    zone,
)
from collector.store import Store, StoreError
from gate_agent.protocol import format_time, parse_time

log = logging.getLogger(__name__)

#: A punch that reached the bank this long after it was made is flagged 'late_upload'.
LATE_UPLOAD_SECONDS = 3600
#: Days computed in one call (a year, leap or not): a period of centuries would run for hours.
MAX_PERIOD_DAYS = 366


def punch_flags(punch: dict, holder: Holder | None) -> list[str]:
    """Stored flags (clock, chain) plus what depends on the registry and on arrival. Whether the time
    can be placed on a working day is decided here again, so that no read path depends on what ingest
    flagged (a database written by an older version, a manual entry)."""
    flags = set(filter(None, (punch.get("flags") or "").split(",")))
    if punch["source"] == "manual":
        flags.add("manual")  # a manual punch names its worker: it has no card to be unknown or forged
    elif holder is None:
        flags.add("unknown_card")
    elif getattr(holder, "card_kind", "uid") == "ntag424" and punch.get("card_kind") != "ntag424":
        flags.add("card_forged")  # the UID of a SUN card, without its SUN message: a copy of the UID
    if punch.get("void_at"):
        flags.add("void")
    if implausible(punch["time"], punch["received_at"]):
        flags.add("clock_implausible")
    # How late a punch arrived is measured from its time; a time no day can hold measures nothing.
    elif punch["source"] != "manual" and \
            (parse_time(punch["received_at"]) - parse_time(punch["time"])).total_seconds() > late_after(punch):
        flags.add("late_upload")
    return sorted(flags)


def late_after(punch: dict) -> float:
    """Seconds after which a punch reached the bank late: an hour for a live gate, its declared delivery
    interval (and an hour) for a gate whose punches are carried by hand."""
    hours = punch.get("delivery_hours")
    return LATE_UPLOAD_SECONDS + (hours * 3600 if hours else 0)


def describe(punch: dict, attributor: Attributor, tz) -> dict:
    who = attributor.attribute(punch)
    person = attributor.person(who.worker) if who.worker else None
    manual = punch["source"] == "manual"
    return {
        "id": punch["id"],
        "site": punch["site"],
        "gate": punch["gate"],
        "seq": punch["seq"],
        "time": punch["time"],
        "local_time": local_text(punch["time"], tz),
        "card": punch["card"],
        # uid / bank (card is then the keyed identifier, never the number) / ntag424; None for manual punches
        "card_kind": None if manual else punch.get("card_kind") or "uid",
        "worker": who.worker,
        "name": person.name if person else None,
        "employer": person.employer if person else None,
        "direction": punch["direction"],
        "flags": punch_flags(punch, who.holder),
        "source": punch["source"],
        "received_at": punch["received_at"],
        "manual_by": punch["manual_by"],
        "manual_reason": punch["manual_reason"],
        "void_by": punch["void_by"],
        "void_reason": punch["void_reason"],
    }


def punch_rows(store: Store, site: str, day: date | None = None) -> list[dict]:
    """The site's punches (of one local date, or all), each with its local time (None when that time
    has no date in the site's zone) and flags."""
    tz = site_rules(store, site).tz
    start, end = day_bounds(day, tz) if day else (None, None)
    attributor = Attributor.of(store)
    return [describe(p, attributor, tz) for p in store.punches(site=site, start=start, end=end)]


# ---------------------------------------------------------------------------------------------- daily records


def site_rules(store: Store, site: str) -> Rules:
    row = store.site(site)
    if row is None:
        raise StoreError(f"site {site} does not exist")
    return Rules(zone(row["timezone"]), timedelta(hours=row["max_shift_hours"]))


def events_of(punches: list[dict], attributor: Attributor) -> tuple[list[Event], list[dict]]:
    """Attendance events of attributed punches, and the gate punches nobody held the card of."""
    events, unattributed = [], []
    for punch in punches:
        if parse_or_none(punch["time"]) is None:
            continue  # not a time at all (a manual entry of an older version): listed, never counted
        who = attributor.attribute(punch)
        if who.worker is None:
            unattributed.append(punch)
            continue
        events.append(event_of(punch, who.worker, who.holder))
    return events, unattributed


def history(store: Store, site: str, rules: Rules, attributor: Attributor, since: datetime,
            until: datetime | None, *, worker: str | None = None) -> tuple[list[Event], list[dict], list[dict]]:
    """The site's events that shape whatever is anchored in [since, until): its attributed events, the
    unattributed punches and every punch read. It reads back one shift from ``since``, then further
    (doubling) until each worker met there has a restart point (``attendance.fresh_start``) or the
    site's history begins, so that a day never depends on the dates asked for. ``until`` None reads to
    the end. With ``worker``, only the punches that may be theirs are read (``Store.worker_punches``)."""
    if worker is None:
        def read(start: str | None, end: str | None) -> list[dict]:
            return store.punches(site=site, start=start, end=end)

        def first() -> str | None:
            return store.first_punch_time(site)
    else:
        def read(start: str | None, end: str | None) -> list[dict]:
            return store.worker_punches(site, worker, start=start, end=end)

        def first() -> str | None:
            return store.first_worker_punch_time(site, worker)
    lookback = rules.max_shift
    try:
        horizon = since - lookback
        start = format_time(horizon)
    except (OverflowError, ValueError):
        horizon, start = datetime.min.replace(tzinfo=UTC), None
    end = format_time(until) if until is not None else None
    punches = read(start, end)
    earliest: str | None = None
    while start is not None:
        events, unattributed = events_of(punches, attributor)
        by_worker: dict[str, list[Event]] = {}
        for event in events:
            by_worker.setdefault(event.worker, []).append(event)
        if all(fresh_start(mine, since, horizon, rules) for mine in by_worker.values()):
            return events, unattributed, punches
        if earliest is None:
            earliest = first() or ""
        read_from = start
        if earliest >= read_from:
            return events, unattributed, punches  # the site's whole history is read
        lookback *= 2
        try:
            horizon = since - lookback
            start = format_time(horizon)
        except (OverflowError, ValueError):
            horizon, start = datetime.min.replace(tzinfo=UTC), None
        punches = read(start, read_from) + punches
    events, unattributed = events_of(punches, attributor)
    return events, unattributed, punches


def mark_unassigned(events: list[Event], assignments: list[dict]) -> list[Event]:
    """Flag ``not_assigned`` what a worker did at the site while not assigned to it (real-name management:
    nobody works on a site without being registered there). Counted as worked, never silently."""
    windows: dict[str, list[tuple[str, str | None]]] = {}
    for row in assignments:
        windows.setdefault(row["worker"], []).append((row["valid_from"] or "", row["valid_to"]))
    marked = []
    for event in events:
        moment = format_time(event.time)
        inside = any(start <= moment and (end is None or moment < end) for start, end in windows.get(event.worker, ()))
        marked.append(event if inside else dataclasses.replace(event, flags=event.flags | {"not_assigned"}))
    return marked


def event_of(punch: dict, worker: str, holder: Holder | None) -> Event:
    """``holder``: the card window a gate punch was made under (``Attributor``); None for a manual punch."""
    manual = punch["source"] == "manual"
    own = set(punch_flags(punch, holder)) - {"manual", "void", "unknown_card"}
    return Event(
        ref=f"manual#{punch['id']}" if manual else f"{punch['gate']}#{punch['seq']}",
        worker=worker, time=parse_time(punch["time"]), direction=punch["direction"], gate=punch["gate"],
        manual=manual, void=bool(punch["void_at"]), flags=frozenset(own),
    )


def check_period(first: date, last: date) -> tuple[date, date]:
    """A period reports compute at once: dates in range, in order, at most MAX_PERIOD_DAYS long."""
    check_date(first)
    check_date(last)
    if last < first:
        raise InputError(f"the period ends ({last.isoformat()}) before it starts ({first.isoformat()})")
    days = (last - first).days + 1
    if days > MAX_PERIOD_DAYS:
        raise InputError(f"the period {first.isoformat()}..{last.isoformat()} is {days} days; "
                         f"at most {MAX_PERIOD_DAYS} are computed at once")
    return first, last


def reach(first: date, last: date, rules: Rules, now: datetime) -> tuple[datetime, datetime | None]:
    """The UTC moments whose punches shape the records of local dates first..last: from the first day's
    start (history reads back from there), to two shifts after the last day's end (an OUT closing a
    shift of the last day, an OUT repeated up to a shift after that), or to the end when a shift of the
    period may still be open now (any punch after it decides whether it is open or missing its OUT).
    InputError for a date outside the range reports cover."""
    start, end = (parse_time(t) for t in range_bounds(first, last, rules.tz))
    if end > now - rules.max_shift:
        return start, None
    return start, end + 2 * rules.max_shift


def site_day_final(gates: list[dict], day_end: datetime, grace: timedelta, now: datetime) -> bool:
    """Every active gate of the site has shown, in an online heartbeat made after day end + grace, that
    nothing it recorded before then is still unacknowledged. A last will or a clean stop ("offline") says
    nothing of what a gate still holds, so only the gate's last heartbeat counts, never its last status.
    A gate never heard from keeps the day provisional."""
    horizon = day_end + grace
    if now < horizon:
        return False
    for gate in gates:
        if not gate["active"]:
            continue
        heartbeat, received_at = gate["heartbeat"], gate["heartbeat_at"]
        if not heartbeat or not received_at or heartbeat_made(heartbeat, received_at) < horizon:
            return False
        oldest = heartbeat.get("oldest_pending_at")
        if heartbeat.get("pending") and (not isinstance(oldest, str) or parse_time(oldest) < horizon):
            return False
    return True


def heartbeat_made(heartbeat: dict, received_at: str) -> datetime:
    """The latest a heartbeat can have been made: when the bank received it, or the gate's own time if
    earlier and its clock says it is synchronised (an unsynchronised clock proves nothing). A gate clock
    running ahead cannot place a heartbeat after the moment it reached the bank."""
    made = parse_time(received_at)
    if heartbeat.get("synced") is True and isinstance(heartbeat.get("time"), str):
        made = min(made, parse_time(heartbeat["time"]))
    return made


def record_dict(record: DayRecord | DayProblem, site: str, tz, person, final: bool) -> dict:
    """A day as reports, pages and files show it; ``person`` names the worker (name, employer)."""
    if isinstance(record, DayProblem):
        # Never paid, never final: the day is held for a person to look at, with the reason.
        return {"worker": record.worker, "name": person.name if person else None,
                "employer": person.employer if person else None, "site": site, "date": record.date.isoformat(),
                "first_in": None, "last_out": None, "worked_minutes": 0, "status": "error", "flags": ["error"],
                "final": False, "shifts": [], "anomalies": [], "voided": [], "error": record.reason}
    return {
        "worker": record.worker,
        "name": person.name if person else None,
        "employer": person.employer if person else None,
        "site": site,
        "date": record.date.isoformat(),
        "first_in": local_text_dt(record.first_in, tz),
        "last_out": local_text_dt(record.last_out, tz),
        "worked_minutes": record.worked_minutes,
        "status": record.status,
        "flags": record.flags,
        "final": final,
        "shifts": [{
            "in": local_text_dt(s.start.time if s.start else None, tz),
            "out": local_text_dt(s.end.time if s.end else None, tz),
            "in_ref": s.start.ref if s.start else None,
            "out_ref": s.end.ref if s.end else None,
            "minutes": round(s.seconds / 60, 2),
            "ms": s.ms,  # exact: what an evidence file states (docs/evidence-format.md)
            "status": s.status,
        } for s in sorted(record.shifts, key=lambda s: s.anchor.time)],
        "anomalies": [{"ref": e.ref, "why": why} for e, why in record.anomalies],
        "voided": [e.ref for e in record.voided],
    }


#: What a list of days shows (`collector attendance`'s table and CSV, payroll): each day without its shifts,
#: anomalies and voided punches, which a read then leaves in the database (a site's month is 44,000 days).
SUMMARY_FIELDS = ("first_in", "last_out", "worked_minutes", "status", "flags", "error")


def attendance(store: Store, site: str, first: date, last: date, *, now: datetime | None = None,
               grace: timedelta = timedelta(hours=6), worker: str | None = None,
               summary: bool = False, teams: bool = False) -> list[dict]:
    """Daily records of every worker (or of ``worker``) at ``site`` for local dates first..last, as dicts,
    by worker and date (InputError for a date outside the range reports cover). Read from the kept days
    (``attendance.days``); a database the daemon has not upgraded yet is computed from its punches. With
    ``summary``, a day holds ``SUMMARY_FIELDS`` and ``final`` only. With ``teams``, each day also names the
    worker's ``team`` and ``trade`` as registered now (from the same read of the workers as the names: a
    list of days, not what a day states, so an evidence file's days never carry them)."""
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    range_bounds(first, last, rules.tz)  # dates reports cover
    if not store.has("days"):
        rows = from_punches(store, site, first, last, now=now, grace=grace, worker=worker)
        return _with_teams(rows, {}) if teams else rows  # teams came after kept days: none to name
    from collector.attendance import days

    kept = days.read(store, site=site, worker=worker, first=first, last=last,
                     fields=SUMMARY_FIELDS if summary else None)
    people = {p["worker"]: p for p in store.people_named({d.worker for d in kept})}
    finality = Finality(store.gates(site, with_gaps=False), rules.tz, grace, now)
    rows = [days.day_dict(d, now, people.get(d.worker), finality(date.fromisoformat(d.day))) for d in kept]
    return _with_teams(rows, people) if teams else rows


def _with_teams(rows: list[dict], people: dict[str, dict]) -> list[dict]:
    """Each row with its worker's team and trade (None where the registry has none)."""
    for row in rows:
        person = people.get(row["worker"]) or {}
        row["team"], row["trade"] = person.get("team"), person.get("trade")
    return rows


def from_punches(store: Store, site: str, first: date, last: date, *, now: datetime | None = None,
                 grace: timedelta = timedelta(hours=6), worker: str | None = None) -> list[dict]:
    """What ``attendance`` gives, computed from the punches alone (nothing kept is read): the definition
    the kept days are checked against (`collector days rebuild`)."""
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    attributor = Attributor.of(store, worker)
    events, _, _ = history(store, site, rules, attributor, *reach(first, last, rules, now), worker=worker)
    if worker is not None:
        events = [e for e in events if e.worker == worker]
    days = days_of(events, rules, now, first, last, store.assignments(site=site, worker=worker), site=site)
    finality = Finality(store.gates(site, with_gaps=False), rules.tz, grace, now)
    return [record_dict(day, site, rules.tz, attributor.person(day.worker), finality(day.date)) for day in days]


class Finality:
    """Whether a local date of a site is final (``site_day_final``), worked out once per date."""

    def __init__(self, gates: list[dict], tz, grace: timedelta, now: datetime):
        self.gates, self.tz, self.grace, self.now = gates, tz, grace, now
        self._known: dict[date, bool] = {}

    def __call__(self, day: date) -> bool:
        if day not in self._known:
            day_end = parse_time(day_bounds(day, self.tz)[1])
            self._known[day] = site_day_final(self.gates, day_end, self.grace, self.now)
        return self._known[day]


@dataclasses.dataclass(frozen=True, slots=True)
class DayProblem:
    """A worker's day that could not be computed: reported as that day's problem, with the reason, while
    every other worker's days are served."""

    worker: str
    date: date
    reason: str


def days_of(events: list[Event], rules: Rules, now: datetime, first: date, last: date,
            assignments: list[dict], *, site: str) -> list[DayRecord | DayProblem]:
    """Each worker's records of first..last, by worker and date. Computed worker by worker: whatever one
    worker's punches do, no other worker's days are lost with them."""
    by_worker: dict[str, list[Event]] = {}
    for event in events:
        by_worker.setdefault(event.worker, []).append(event)
    windows: dict[str, list[dict]] = {}
    for row in assignments:
        windows.setdefault(row["worker"], []).append(row)
    days: list[DayRecord | DayProblem] = []
    for worker in sorted(by_worker):
        mine = by_worker[worker]
        try:
            records = daily_records(mark_unassigned(mine, windows.get(worker, [])), rules, now)
            days += [r for r in records if first <= r.date <= last]
        except Exception as error:  # noqa: BLE001 - a bug in one worker's days must not hide everyone's
            log.exception("the days of worker %s at site %s cannot be computed", worker, site)
            reason = f"cannot be computed ({type(error).__name__}: {error})"
            dates = {to_local(e.time, rules.tz) for e in mine}
            days += [DayProblem(worker, d, reason)
                     for d in sorted({moment.date() for moment in dates if moment is not None})
                     if first <= d <= last]
    return days


def payroll(records: list[dict]) -> list[dict]:
    """Per worker over the records: days present, minutes, days needing review, provisional days."""
    by_worker: dict[str, dict] = {}
    for record in records:
        row = by_worker.setdefault(record["worker"], {
            "worker": record["worker"], "name": record["name"], "employer": record["employer"],
            **({"team": record["team"], "trade": record["trade"]} if "team" in record else {}),
            "days_present": 0, "worked_minutes": 0, "days_flagged": 0, "provisional_days": 0,
        })
        present = any(s["in"] for s in record["shifts"])
        row["days_present"] += int(present)
        row["worked_minutes"] += record["worked_minutes"]
        review = {f for f in record["flags"] if f not in ("manual",)}
        row["days_flagged"] += int(bool(review) or record["status"] not in ("complete", "open"))
        row["provisional_days"] += int(not record["final"])
    return [by_worker[w] for w in sorted(by_worker)]
