"""Punch listings with attribution and flags, shared by the CLI, the exports and the dashboard."""

from __future__ import annotations

from datetime import date

from gate_agent.protocol import parse_time

from .cards import CardIndex
from .localtime import day_bounds, local_text, zone
from .store import Store, StoreError

#: A punch that reached the bank this long after it was made is flagged 'late_upload'.
LATE_UPLOAD_SECONDS = 3600


def site_zone(store: Store, site: str):
    row = store.site(site)
    if row is None:
        raise StoreError(f"site {site} does not exist")
    return zone(row["timezone"])


def punch_flags(punch: dict, holder) -> list[str]:
    """Stored flags (clock, chain) plus what depends on the registry and on arrival."""
    flags = set(filter(None, (punch.get("flags") or "").split(",")))
    if punch["source"] == "manual":
        flags.add("manual")
    elif holder is None:
        flags.add("unknown_card")
    if punch.get("void_at"):
        flags.add("void")
    if punch["source"] != "manual" and \
            (parse_time(punch["received_at"]) - parse_time(punch["time"])).total_seconds() > LATE_UPLOAD_SECONDS:
        flags.add("late_upload")
    return sorted(flags)


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
    tz = site_zone(store, site)
    start, end = day_bounds(day, tz) if day else (None, None)
    cards = CardIndex(store.card_windows())
    return [describe(p, cards, tz) for p in store.punches(site=site, start=start, end=end)]
