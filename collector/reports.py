"""Punch listings with attribution and flags, shared by the CLI, the exports and the dashboard."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from gate_agent.protocol import format_time, parse_time

from .attendance import DayRecord, Event, Rules, daily_records
from .cards import CardIndex
from .localtime import (
    check_date,
    day_bounds,
    implausible,
    local_text,
    local_text_dt,
    parse_or_none,
    range_bounds,
    zone,
)
from .store import Store, StoreError

#: A punch that reached the bank this long after it was made is flagged 'late_upload'.
LATE_UPLOAD_SECONDS = 3600
#: Days computed in one call (a year, leap or not): a period of centuries would run for hours.
MAX_PERIOD_DAYS = 366


def punch_flags(punch: dict, holder) -> list[str]:
    """Stored flags (clock, chain) plus what depends on the registry and on arrival. Whether the time
    can be placed on a working day is decided here again, so that no read path depends on what ingest
    flagged (a database written by an older version, a manual entry)."""
    flags = set(filter(None, (punch.get("flags") or "").split(",")))
    if punch["source"] == "manual":
        flags.add("manual")
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


def describe(punch: dict, cards: CardIndex, tz) -> dict:
    if punch["source"] == "manual":
        holder = cards.holders.get(punch["worker"])
        worker = punch["worker"]
    else:
        holder = cards.holder(punch["card"], punch["time"])
        worker = holder.worker if holder else None
    return {
        "id": punch["id"],
        "site": punch["site"],
        "gate": punch["gate"],
        "seq": punch["seq"],
        "time": punch["time"],
        "local_time": local_text(punch["time"], tz),
        "card": punch["card"],
        # uid / bank (card is then the keyed identifier, never the number) / ntag424; None for manual punches
        "card_kind": None if punch["source"] == "manual" else punch.get("card_kind") or "uid",
        "worker": worker,
        "name": holder.name if holder else None,
        "employer": holder.employer if holder else None,
        "direction": punch["direction"],
        "flags": punch_flags(punch, holder if punch["source"] != "manual" else True),
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
    cards = CardIndex(store.card_windows())
    return [describe(p, cards, tz) for p in store.punches(site=site, start=start, end=end)]


# ---------------------------------------------------------------------------------------------- daily records


def site_rules(store: Store, site: str) -> Rules:
    row = store.site(site)
    if row is None:
        raise StoreError(f"site {site} does not exist")
    return Rules(zone(row["timezone"]), timedelta(hours=row["max_shift_hours"]))


def events_of(punches: list[dict], cards: CardIndex) -> tuple[list[Event], list[dict]]:
    """Attendance events of attributed punches, and the punches nobody held the card of."""
    events, unattributed = [], []
    for punch in punches:
        if parse_or_none(punch["time"]) is None:
            continue  # not a time at all (a manual entry of an older version): listed, never counted
        if punch["source"] == "manual":
            worker = punch["worker"]
        else:
            holder = cards.holder(punch["card"], punch["time"])
            if holder is None:
                unattributed.append(punch)
                continue
            worker = holder.worker
        events.append(event_of(punch, worker, holder))
    return events, unattributed


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


def event_of(punch: dict, worker: str, holder=None) -> Event:
    manual = punch["source"] == "manual"
    own = set(punch_flags(punch, holder or True)) - {"manual", "void", "unknown_card"}
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
        raise ValueError(f"the period ends ({last.isoformat()}) before it starts ({first.isoformat()})")
    days = (last - first).days + 1
    if days > MAX_PERIOD_DAYS:
        raise ValueError(f"the period {first.isoformat()}..{last.isoformat()} is {days} days; "
                         f"at most {MAX_PERIOD_DAYS} are computed at once")
    return first, last


def window(first: date, last: date, rules: Rules) -> tuple[str, str]:
    """The punches that can shape records of first..last: a shift may start up to max_shift before.
    ValueError for a date outside the range reports cover."""
    start, end = range_bounds(first, last, rules.tz)
    return (format_time(parse_time(start) - rules.max_shift), format_time(parse_time(end) + rules.max_shift))


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


def record_dict(record: DayRecord, site: str, tz, holder, final: bool) -> dict:
    return {
        "worker": record.worker,
        "name": holder.name if holder else None,
        "employer": holder.employer if holder else None,
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
            "status": s.status,
        } for s in sorted(record.shifts, key=lambda s: s.anchor.time)],
        "anomalies": [{"ref": e.ref, "why": why} for e, why in record.anomalies],
        "voided": [e.ref for e in record.voided],
    }


def attendance(store: Store, site: str, first: date, last: date, *, now: datetime | None = None,
               grace: timedelta = timedelta(hours=6)) -> list[dict]:
    """Daily records of every worker at ``site`` for local dates first..last, as dicts (ValueError for a
    date outside the range reports cover)."""
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    cards = CardIndex(store.card_windows())
    start, end = window(first, last, rules)
    events, _ = events_of(store.punches(site=site, start=start, end=end), cards)
    events = mark_unassigned(events, store.assignments(site=site))
    gates = store.gates(site, with_gaps=False)
    finals: dict[date, bool] = {}
    rows = []
    for record in daily_records(events, rules, now):
        if not first <= record.date <= last:
            continue
        if record.date not in finals:
            day_end = parse_time(day_bounds(record.date, rules.tz)[1])
            finals[record.date] = site_day_final(gates, day_end, grace, now)
        rows.append(record_dict(record, site, rules.tz, cards.holders.get(record.worker), finals[record.date]))
    return rows


def payroll(records: list[dict]) -> list[dict]:
    """Per worker over the records: days present, minutes, days needing review, provisional days."""
    by_worker: dict[str, dict] = {}
    for record in records:
        row = by_worker.setdefault(record["worker"], {
            "worker": record["worker"], "name": record["name"], "employer": record["employer"],
            "days_present": 0, "worked_minutes": 0, "days_flagged": 0, "provisional_days": 0,
        })
        present = any(s["in"] for s in record["shifts"])
        row["days_present"] += int(present)
        row["worked_minutes"] += record["worked_minutes"]
        review = {f for f in record["flags"] if f not in ("manual",)}
        row["days_flagged"] += int(bool(review) or record["status"] not in ("complete", "open"))
        row["provisional_days"] += int(not record["final"])
    return [by_worker[w] for w in sorted(by_worker)]
