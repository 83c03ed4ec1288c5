"""Live headcount: who is inside a site now, since when and through which gate.

A worker is inside while their latest shift is open: an IN (or a toggle that opened a shift) with no
OUT yet, younger than the site's ``max_shift_hours``. Cards nobody holds are listed by card number. A
punch whose time no working day can hold (``clock_implausible``, say a gate clock at year 9999) opens
no shift: it would otherwise keep its worker "inside" for ever.
"""

from __future__ import annotations

from datetime import UTC, datetime

from collector.attendance.attribution import Attributor
from collector.attendance.reports import event_of, history, site_rules
from collector.attendance.rules import open_shift
from collector.localtime import local_text_dt
from collector.store import Store


def headcount(store: Store, site: str, now: datetime | None = None) -> dict:
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
    return {"site": site, "on_site": len(inside), "workers": inside, "unknown_cards": len(unknown),
            "unknown": unknown,
            "as_of": local_text_dt(now, rules.tz)}
