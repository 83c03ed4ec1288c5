"""Live headcount: who is inside a site now, since when and through which gate.

A worker is inside while their latest shift is open: an IN (or a toggle that opened a shift) with no
OUT yet, younger than the site's ``max_shift_hours``. Cards nobody holds are listed by card number. A
punch whose time no working day can hold (``clock_implausible``, say a gate clock at year 9999) opens
no shift: it would otherwise keep its worker "inside" for ever.

Workers are read from the kept days (``attendance.days``): a day whose last shift is open keeps the
moment it runs out (``open_until``), so who is inside now is the site's days open until now or later,
found through an index, and the cards of their INs are among the site's punches of the last shift.
Cards nobody holds are read from the site's punches whose card no window covers (the SQL says so: the
bank's card windows are not loaded), those of the last shift and, for the cards they name, back only
as far as pairing them needs. What a headcount costs is who is inside and what happened at the site
lately, never its history. ``from_punches`` is the computation from the punches alone, the definition
(tests/test_headcount_kept.py holds the two equal), for a database the daemon has not upgraded yet.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.attendance import days as kept_days
from collector.attendance.attribution import Attributor
from collector.attendance.reports import event_of, events_of, history, site_rules
from collector.attendance.rules import Event, Rules, fresh_start, open_shift
from collector.localtime import local_text_dt
from collector.store import Store
from gate_agent.protocol import format_time, parse_time

#: Attributes nothing: the punches it is given are those of cards nobody held.
NOBODY = Attributor([], [])


def headcount(store: Store, site: str, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    if not store.has("days"):
        return from_punches(store, site, now)
    opened = _open_shifts(store, site, now)
    cards = _cards_of(store, site, {worker: shift for worker, (shift, _) in opened.items()}, now - rules.max_shift)
    inside = []
    for worker, (shift, person) in opened.items():
        gate, card = cards[worker]
        person = person or {}
        inside.append({"worker": worker, "name": person.get("name"), "employer": person.get("employer"),
                       "team": person.get("team"), "trade": person.get("trade"), "since": shift["in"], "gate": gate,
                       "card": card})
    unknown = unknown_inside(store, site, rules, now)
    inside.sort(key=lambda w: (w["since"] or "", w["worker"]))
    return _named({"site": site, "on_site": len(inside), "workers": inside, "unknown_cards": len(unknown),
                   "unknown": unknown, "as_of": local_text_dt(now, rules.tz)}, store, site)


def _named(report: dict, store: Store, site: str) -> dict:
    """Each entry's gate by the name its site calls it too (``gate_name``, None for a gate without one or a
    manual entry): one read of the site's gates."""
    names = {row["gate"]: row["display_name"] for row in store.gates(site, with_gaps=False)}
    for entry in report["workers"] + report["unknown"]:
        entry["gate_name"] = names.get(entry["gate"]) if entry["gate"] is not None else None
    return report


def _open_shifts(store: Store, site: str, now: datetime) -> dict[str, tuple[dict, dict | None]]:
    """Per worker inside now: the open shift of their kept day (a ``record`` shift: in, in_ref...) and the
    worker as registered now (name, employer, team, trade). What the marks still name is recomputed first,
    as every read of kept days does (laid over what is kept when the store may not write)."""
    refreshed = kept_days.refresh(store, site=site)
    now_text = format_time(now)  # stored times have milliseconds; ``now`` may have more (``exact`` below)
    days = store.open_days(site, now_text)
    overlaid = {worker: since_day for (unit_site, worker), (since_day, _) in refreshed.overlay.items()
                if unit_site == site}
    if overlaid:
        days = [d for d in days if d[0] not in overlaid or (overlaid[d[0]] is not None and d[1] < overlaid[d[0]])]
        recomputed = [d for (unit_site, _), (_, kept) in refreshed.overlay.items() if unit_site == site
                      for d in kept if d.open_until is not None and d.open_until >= now_text]
        people = {p["worker"]: p for p in store.people_named({d.worker for d in recomputed})}
        days += [(d.worker, d.day, d.open_until, d.record, people.get(d.worker)) for d in recomputed]
    exact = now.microsecond % 1000 == 0  # a shift open until now_text is open only if now is not past it
    latest: dict[str, tuple] = {}
    for day in days:
        worker, date_text, open_until = day[0], day[1], day[2]
        if (open_until > now_text or exact) and (worker not in latest or date_text > latest[worker][1]):
            latest[worker] = day
    opened = {}
    for worker, (_, _, _, record, person) in latest.items():
        # The open shift is the record's last (the latest IN: what comes after it within a shift closes
        # it or is an anomaly); shifts of the same moment may sort either way.
        shift = next((s for s in reversed(record["shifts"]) if s["status"] == "open"), None)
        if shift is not None:
            opened[worker] = (shift, person)
    return opened


def _cards_of(store: Store, site: str, opened: dict[str, dict],
              earliest: datetime) -> dict[str, tuple[str | None, str | None]]:
    """Per worker, the gate and card of their open shift's IN (``gate#seq``; a manual IN, ``manual#id``,
    has neither). An IN still open was made at ``earliest`` (one shift ago) or later: the site's gate
    punches since then are read in one go (``from_punches`` reads them too, and more)."""
    manual = {worker: int(shift["in_ref"][len("manual#"):]) for worker, shift in opened.items()
              if shift["in_ref"].startswith("manual#") and shift["in_ref"][len("manual#"):].isdigit()}
    # A gate may be called "manual": then "manual#7" is its punch 7 or the manual punch 7, and the
    # manual punch is the one whose time is the shift's.
    if manual and any(g["gate"] == "manual" for g in store.gates(site, with_gaps=False)):
        tz = site_rules(store, site).tz
        times = store.manual_punch_times(site, manual.values())
        manual = {worker: number for worker, number in manual.items() if number in times
                  and local_text_dt(parse_time(times[number]), tz) == opened[worker]["in"]}
    found: dict[str, tuple[str | None, str | None]] = {worker: (None, None) for worker in manual}
    by_gate: dict[str, dict[str, int]] = {}
    for worker, shift in opened.items():
        if worker not in manual:
            gate, _, seq = shift["in_ref"].rpartition("#")
            by_gate.setdefault(gate, {})[worker] = int(seq)
    cards = store.gate_punch_cards_since(site, format_time(earliest)) if by_gate else {}
    for gate, seqs in by_gate.items():
        found.update({worker: (gate, cards.get((gate, seq))) for worker, seq in seqs.items()})
    return found


def unknown_inside(store: Store, site: str, rules: Rules, now: datetime) -> list[dict]:
    """Cards nobody holds that are inside now: ``{"card", "since", "gate"}``, by since and card.

    A card inside opened its shift at most one shift ago, with a punch nobody held: only such cards are
    read, from one shift before that; a card whose pairing there may depend on what came before
    (``rules.fresh_start``) is read further back, doubling, until it does not or its first punch at the
    site is read."""
    since = now - rules.max_shift
    cards = store.unattributed_cards(site, start=format_time(since))
    if not cards:
        return []
    lookback = rules.max_shift
    start = _back(since, lookback)
    events = _card_events(store.unattributed_punches(site, cards, start=start))
    earliest: str | None = None
    while start is not None:
        horizon = parse_time(start)
        pending = {card for card, mine in events.items() if not fresh_start(mine, since, horizon, rules)}
        if not pending:
            break
        if earliest is None:
            earliest = store.first_card_punch_time(site, pending) or ""
        if earliest >= start:
            break  # every punch of those cards at the site is read
        read_to, lookback = start, lookback * 2
        start = _back(since, lookback)
        for card, more in _card_events(store.unattributed_punches(site, pending, start=start, end=read_to)).items():
            events[card] = more + events.get(card, [])
    unknown = []
    for card, card_events in sorted(events.items()):
        shift = open_shift(card_events, rules, now)
        if shift is not None:
            unknown.append({"card": card, "since": local_text_dt(shift.start.time, rules.tz), "gate": shift.start.gate})
    unknown.sort(key=lambda u: (u["since"] or "", u["card"]))
    return unknown


def _back(since: datetime, lookback: timedelta) -> str | None:
    """The moment ``lookback`` before ``since`` as stored, or None (the beginning) past the calendar's start."""
    try:
        return format_time(since - lookback)
    except (OverflowError, ValueError):
        return None


def _card_events(punches: list[dict]) -> dict[str, list[Event]]:
    _, unattributed = events_of(punches, NOBODY)  # a time that is no time at all is left out, as everywhere
    by_card: dict[str, list[Event]] = {}
    for punch in unattributed:
        by_card.setdefault(punch["card"], []).append(event_of(punch, punch["card"], None))
    return by_card


def from_punches(store: Store, site: str, now: datetime | None = None) -> dict:
    """The headcount computed from the punches alone: the definition ``headcount`` reads kept days for."""
    now = now or datetime.now(UTC)
    rules = site_rules(store, site)
    # Whoever is inside now opened their shift at most one shift ago; history reads back from there to
    # where each worker's pairing starts afresh, so a repeated IN long ago cannot flip who is inside.
    # No upper bound: a gate whose clock runs a little ahead must still show the worker inside.
    attributor = Attributor.of(store)
    events, unattributed, punches = history(store, site, rules, attributor, now - rules.max_shift, None)
    # The card each gate punch was made with (a manual punch has none): the roll-call lists it.
    card_of = {f"{p['gate']}#{p['seq']}": p.get("card") for p in punches if p["source"] != "manual"}
    by_worker: dict[str, list] = {}
    for event in events:
        by_worker.setdefault(event.worker, []).append(event)
    inside = []
    for worker, worker_events in by_worker.items():
        shift = open_shift(worker_events, rules, now)
        if shift is None:
            continue
        person = attributor.person(worker)
        inside.append({
            "worker": worker,
            "name": person.name,
            "employer": person.employer,
            "team": person.team,
            "trade": person.trade,
            "since": local_text_dt(shift.start.time, rules.tz),
            "gate": shift.start.gate,
            "card": card_of.get(shift.start.ref),
        })
    by_card: dict[str, list] = {}
    for punch in unattributed:
        by_card.setdefault(punch["card"], []).append(event_of(punch, punch["card"], None))
    unknown = []
    for card, card_events in sorted(by_card.items()):
        shift = open_shift(card_events, rules, now)
        if shift is not None:
            unknown.append({"card": card, "since": local_text_dt(shift.start.time, rules.tz), "gate": shift.start.gate})
    unknown.sort(key=lambda u: (u["since"] or "", u["card"]))
    inside.sort(key=lambda w: (w["since"] or "", w["worker"]))
    return _named({"site": site, "on_site": len(inside), "workers": inside, "unknown_cards": len(unknown),
                   "unknown": unknown, "as_of": local_text_dt(now, rules.tz)}, store, site)
