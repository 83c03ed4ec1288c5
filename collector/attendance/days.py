"""Daily records kept as data: recompute what the marks name, read what is kept.

The rules (``rules.py``) stay the one definition of a day; what is kept is their output. A worker's day
depends on ``now`` in one way only: the worker's last shift is ``open`` until ``max_shift`` after its IN,
then ``missing_out``. So each day is kept as the rules make it while that shift is open and, for the day
holding it, as they make it once it has run out, with the moment between: a read at any ``now`` gives
what computing from the punches at that ``now`` gives (``tests/test_days_property.py`` holds this).

Marks (``collector.store.days``) say which (site, worker) days may have changed from which moment. A
change at moment t can reach back two shifts (an OUT closes an IN up to a shift before it; a repeated OUT
is charged to the shift closed up to a shift before that), and further to the shift still open at t
however old it is: with nothing after it, the worker's last IN is kept ``open`` until it runs out, and a
punch after it, however much later, makes it ``missing_out`` at every ``now`` (a punch voided or given to
someone else, the other way round). That shift's IN lies within a shift before the worker's last counted
punch before t. So a worker's days are recomputed from the local date of the earlier of t - 2 x max_shift
and that punch - max_shift, to the end of their history there, reading back as far as pairing needs
(``reports.history``). Marks are removed only after every day they name was recomputed from a read that
began after they were read: a change committed meanwhile keeps its own mark.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from collector.attendance.attribution import Attributor
from collector.attendance.reports import DayProblem, days_of, events_of, history, record_dict, site_rules
from collector.attendance.rules import NOT_PRESENCE, Rules
from collector.errors import InputError
from collector.localtime import (
    FIRST_DATE,
    LAST_DATE,
    PLAUSIBLE_FROM,
    day_bounds,
    parse_or_none,
    plausible_until,
    to_local,
)
from collector.store import Mark, Store, StoredDay, StoreError
from gate_agent.protocol import format_time, parse_time

log = logging.getLogger(__name__)

#: ``now`` at which no shift has run out yet, and at which every shift has.
NEVER = datetime.min.replace(tzinfo=UTC)
ALWAYS = datetime.max.replace(tzinfo=UTC)
#: What a kept record leaves to the read: who the worker is now, and whether the date is final.
READ_TIME = ("worker", "name", "employer", "site", "date", "final")
#: (site, worker) units recomputed per transaction, at most, and for about this long at most.
UNITS_PER_TRANSACTION = 50
TRANSACTION_SECONDS = 0.05
#: The latest moment stored as text (an open shift near the end of time stays open).
END_OF_TIME = "9999-12-31T23:59:59.999Z"
#: Punches read per page when looking back for a worker's last counted punch.
LOOKBACK_PAGE = 50

Unit = tuple[str, str]  # (site, worker)


@dataclass
class Refreshed:
    """What one refresh did: units recomputed, marks removed, and (for a store that may not write) the
    recomputed days themselves, for the read that asked to lay over what is kept."""

    units: int = 0
    dropped: int = 0
    skipped: int = 0  # units another maintainer held: left, with their marks, for later
    overlay: dict[Unit, tuple[str | None, list[StoredDay]]] = field(default_factory=dict)
    #: The units skipped, each with the moment it may have changed from: what is kept of them may be
    #: stale until the maintainer holding them commits.
    held: dict[Unit, str] = field(default_factory=dict)


def refresh(store: Store, *, site: str | None = None, worker: str | None = None, limit: int | None = None,
            persist: bool | None = None) -> Refreshed:
    """Recompute the days the marks name (all, or those that may concern ``site`` or ``worker``; at most
    ``limit`` marks), keep them (``persist``; by default when the store may write) and remove the marks.
    A store that may not write (`collector serve`) returns the recomputed days for the read to use."""
    done = Refreshed()
    if not store.has("days"):
        return done
    persist = not store.db.readonly if persist is None else persist
    cards = store.worker_cards(worker) if worker is not None else ()
    marks = store.day_marks(site=site, worker=worker, cards=cards, limit=limit)
    if not marks:
        return done
    units, covers = resolve(store, marks, only_worker=worker)
    ordered = sorted(units)
    finished: set[Unit] = set()
    rules: dict[str, Rules | None] = {}
    if not persist:
        for unit in ordered:
            done.overlay[unit] = recompute(store, *unit, units[unit], rules)
    position = 0
    while persist and position < len(ordered):
        # Short transactions: on SQLite this one holds the only write lock, and ingest waits for it.
        deadline = time.monotonic() + TRANSACTION_SECONDS
        with store.transaction():
            for unit in ordered[position:position + UNITS_PER_TRANSACTION]:
                position += 1
                if not store.lock_days(*unit):
                    done.skipped += 1
                    done.held[unit] = units[unit]
                else:
                    since_day, days = recompute(store, *unit, units[unit], rules)
                    store.replace_days(*unit, since_day, days)
                    finished.add(unit)
                if time.monotonic() >= deadline:
                    break
    done.units = len(finished) if persist else len(done.overlay)
    if persist:
        done.dropped = store.drop_day_marks(m.id for m in marks if covers[m.id] is not None and covers[m.id] <= finished)
    return done


def resolve(store: Store, marks: list[Mark], *,
            only_worker: str | None = None) -> tuple[dict[Unit, str], dict[int, set[Unit] | None]]:
    """The (site, worker) units the marks name, each with the earliest moment it may have changed from
    ('' : the beginning), and per mark the units whose recomputing settles it. With ``only_worker``, a
    mark for a whole site names only that worker there, and nothing settles it (None): it stays for the
    site's own refresh. A mark naming nobody (a card nobody held) is settled by nothing at all."""
    units: dict[Unit, str] = {}
    covers: dict[int, set[Unit] | None] = {}
    sites_of: dict[str, list[str]] = {}
    holders: dict[str, list[str]] = {}
    for mark in marks:
        if mark.worker is not None:
            workers = [mark.worker]
        elif mark.card is not None:
            if mark.card not in holders:
                holders[mark.card] = store.holders_of(mark.card)
            workers = holders[mark.card]
        elif only_worker is not None:
            workers = [only_worker]
        else:
            workers = store.workers_at_site(mark.site)
        named: set[Unit] = set()
        for worker in workers:
            if mark.site:
                named.add((mark.site, worker))
            else:
                if worker not in sites_of:
                    sites_of[worker] = store.sites_of_worker(worker)
                named |= {(site, worker) for site in sites_of[worker]}
        for unit in named:
            held = units.get(unit)
            units[unit] = mark.since if held is None else min(held, mark.since)
        whole_site = mark.worker is None and mark.card is None
        covers[mark.id] = None if whole_site and only_worker is not None else named
    return units, covers


def recompute(store: Store, site: str, worker: str, since: str,
              rules_of: dict[str, Rules | None] | None = None) -> tuple[str | None, list[StoredDay]]:
    """The worker's days at ``site`` from the first local date a change at ``since`` can reach ('' or
    None: all of them), as the rules make them. Returns that date (None: all) and the days."""
    rules_of = {} if rules_of is None else rules_of
    if site not in rules_of:
        try:
            rules_of[site] = site_rules(store, site)
        except StoreError:  # a site that no longer exists has no days; any other failure is no answer
            rules_of[site] = None
    rules = rules_of[site]
    if rules is None:
        return None, []
    since_day = _first_day(since, rules)
    attributor = Attributor(store.card_windows(worker), [], only=worker)
    if since_day is not None:
        before = last_counted_before(store, site, worker, since, rules, attributor)
        if before is not None:
            reach = _first_day(format_time(before), rules, reach=rules.max_shift)
            since_day = None if reach is None else min(since_day, reach)
    if since_day is None:
        events, _, _ = history(store, site, rules, attributor, datetime.min.replace(tzinfo=UTC), None, worker=worker)
        first = date.min
    else:
        start = parse_time(day_bounds(since_day, rules.tz)[0])
        events, _, _ = history(store, site, rules, attributor, start, None, worker=worker)
        first = since_day
    events = [e for e in events if e.worker == worker]
    assignments = store.assignments(worker=worker, site=site)
    still_open = days_of(events, rules, NEVER, first, date.max, assignments, site=site)
    run_out = {d.date: d for d in days_of(events, rules, ALWAYS, first, date.max, assignments, site=site)}
    days = []
    for day in still_open:
        record = _kept(record_dict(day, site, rules.tz, None, False))
        open_until, after = None, None
        if not isinstance(day, DayProblem):
            opened = [s.start.time for s in day.shifts if s.status == "open"]
            if opened:
                try:
                    open_until = format_time(max(opened) + rules.max_shift)
                except (OverflowError, ValueError):
                    open_until = END_OF_TIME
                after = _kept(record_dict(run_out[day.date], site, rules.tz, None, False))
        days.append(StoredDay(site, worker, day.date.isoformat(), record, open_until, after))
    return (None if since_day is None else since_day.isoformat()), days


def last_counted_before(store: Store, site: str, worker: str, since: str, rules: Rules,
                        attributor: Attributor) -> datetime | None:
    """When the worker's last punch before ``since`` that takes part in pairing at ``site`` was made, or
    None. Read back in pages; a page of punches that count for nothing moves on to the one before it
    (punches sharing the time that ends a page may be passed over: the one found is then earlier, and
    recomputing from it only recomputes more)."""
    before = since
    while True:
        punches = store.worker_punches_before(site, worker, before, LOOKBACK_PAGE)
        if not punches:
            return None
        events, _ = events_of(punches, attributor)
        for event in events:
            if event.worker == worker and not event.void and not NOT_PRESENCE & event.flags \
                    and to_local(event.time, rules.tz) is not None:
                return event.time
        before = punches[-1]["time"]


def _first_day(since: str | None, rules: Rules, *, reach: timedelta | None = None) -> date | None:
    """The first local date a change at ``since`` can reach (``reach`` before it; two shifts by
    default), or None (all of them)."""
    if not since:
        return None
    try:
        moment = to_local(parse_time(since) - (2 * rules.max_shift if reach is None else reach), rules.tz)
        if moment is None:
            return None
        day_bounds(moment.date(), rules.tz)  # a date reports cover, or recompute everything
        return moment.date()
    except (OverflowError, ValueError, InputError):
        return None


def _kept(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in READ_TIME}


def read(store: Store, *, site: str | None = None, worker: str | None = None, first: date, last: date,
         fields: tuple[str, ...] | None = None) -> list[StoredDay]:
    """The kept days of ``site`` or ``worker`` (or both) for local dates first..last, with whatever the
    marks still name recomputed first (kept, or laid over what is kept when the store may not write).
    With ``fields``, what is kept holds those fields of each record only (``Store.stored_days``); a
    day laid over it is whole."""
    refreshed = refresh(store, site=site, worker=worker)
    # A unit another maintainer holds is being recomputed there, uncommitted: what is kept of it may
    # not hold a change already committed (its mark waits for that maintainer), so it is computed here.
    rules: dict[str, Rules | None] = {}
    for unit, since in refreshed.held.items():
        refreshed.overlay[unit] = recompute(store, *unit, since, rules)
    kept = store.stored_days(site=site, worker=worker, first=first.isoformat(), last=last.isoformat(), fields=fields)
    if not refreshed.overlay:
        return kept
    wanted = [unit for unit in refreshed.overlay
              if (site is None or unit[0] == site) and (worker is None or unit[1] == worker)]
    replaced = {}
    for unit in wanted:
        since_day, days = refreshed.overlay[unit]
        replaced[unit] = (since_day, [d for d in days if first.isoformat() <= d.day <= last.isoformat()])
    merged = [d for d in kept
              if (d.site, d.worker) not in replaced
              or (replaced[(d.site, d.worker)][0] is not None and d.day < replaced[(d.site, d.worker)][0])]
    for _, days in replaced.values():
        merged += days
    return sorted(merged, key=lambda d: (d.site, d.worker, d.day))


def day_dict(kept: StoredDay, now: datetime, person: dict | None, final: bool) -> dict:
    """A kept day as ``reports.record_dict`` gives it at ``now``."""
    record = kept.as_of(now)
    name = person.get("name") if person else None
    employer = person.get("employer") if person else None
    head = {"worker": kept.worker, "name": name, "employer": employer, "site": kept.site, "date": kept.day}
    if record.get("status") == "error":
        whole = {**head, **record, "final": False}
        return whole if "shifts" in record else {k: v for k, v in whole.items() if k not in ("shifts", "anomalies", "voided")}
    day = {**head, "first_in": record["first_in"], "last_out": record["last_out"],
           "worked_minutes": record["worked_minutes"], "status": record["status"], "flags": record["flags"],
           "final": final}
    if "shifts" in record:  # a day read whole, not its summary alone (``stored_days(fields=...)``)
        day.update(shifts=record["shifts"], anomalies=record["anomalies"], voided=record["voided"])
    return day


def day_start(day: date, tz) -> str:
    """The UTC moment a local date starts (what a mark's ``since`` says)."""
    return day_bounds(day, tz)[0]


def pending(store: Store) -> dict:
    """How much the kept days lag the changes: marks waiting and the oldest one's age."""
    return {"marks": store.pending_day_marks(), "oldest": store.oldest_day_mark()}


def differences(store: Store, site: str, first: date, last: date, *, now: datetime) -> list[dict]:
    """Where the kept days of ``site`` (first..last) differ from computing them from the punches alone:
    one entry per worker and date, with both versions (None where one side has no day)."""
    from collector.attendance.reports import attendance, from_punches

    kept = {(d["worker"], d["date"]): d for d in attendance(store, site, first, last, now=now)}
    fresh = {(d["worker"], d["date"]): d for d in from_punches(store, site, first, last, now=now)}
    return [{"site": site, "worker": worker, "date": day, "kept": kept.get((worker, day)),
             "from_punches": fresh.get((worker, day))}
            for worker, day in sorted(kept.keys() | fresh.keys())
            if kept.get((worker, day)) != fresh.get((worker, day))]


def history_span(store: Store, site: str, today: date) -> tuple[date, date] | None:
    """The local dates the site's days may fall on: from its first punch a working day can hold, or its
    first kept day, to today, or its last such punch or kept day if later; None with neither. A punch no
    day holds (a gate clock at 2005, 2150 or 9999: ``localtime.implausible``) neither stretches the span
    nor ends it beyond the dates reports cover."""
    rules = site_rules(store, site)
    bounds: list[date] = []
    earliest, received = store.first_punch_time(site, PLAUSIBLE_FROM), store.last_received_at(site)
    if earliest is not None and received is not None and parse_or_none(received) is not None:
        latest = store.last_punch_time(site, PLAUSIBLE_FROM, plausible_until(received))
        for moment in (earliest, latest):
            local = to_local(parse_time(moment), rules.tz) if moment and parse_or_none(moment) else None
            if local is not None:
                bounds.append(local.date())
    for day in store.kept_day_span(site):
        try:
            bounds.append(date.fromisoformat(day))
        except (TypeError, ValueError):
            pass  # no kept day, or not a date: nothing a read could show
    bounds = [min(max(day, FIRST_DATE), LAST_DATE) for day in bounds]
    if not bounds:
        return None
    return min(bounds), min(max(today, *bounds), LAST_DATE)
