"""Evidence files: a worker's days with everything needed to check them offline, and the check.

The file holds, per gate, the unbroken chain segment of signed punches from the worker's first to last
punch in the period (other workers' punches in between are the chain links that prove nothing was
taken out), the gates' public keys, the worker's card windows, the manual entries and voids (marked as
bank entries, not gate-signed), the site rules, and the computed days. ``verify_evidence`` needs
nothing but the file: it checks every signature and link, the segment bounds, which punches are the
worker's, and recomputes the days. It cannot tell whether the embedded gate keys are the bank's: the
key fingerprints it reports are to be compared with the bank's registry (``collector gate keys``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from gate_agent.protocol import (
    ProtocolError,
    Punch,
    check_link,
    format_time,
    key_id,
    parse_public_key,
    parse_time,
    verify_punch,
)

from .attendance import Event, Rules, daily_records
from .cards import CardIndex
from .localtime import zone
from .reports import event_of, events_of, record_dict, site_rules, window
from .store import Store, StoreError

FORMAT = "site-gate-evidence"
VERSION = 1


class EvidenceError(Exception):
    """The file does not verify; the message names the first thing that fails."""


def build_evidence(store: Store, worker: str, first: date, last: date, *, now: datetime | None = None,
                   progress=None) -> dict:
    now = now or datetime.now(UTC)
    person = store.worker(worker)
    if person is None:
        raise StoreError(f"worker {worker} does not exist")
    windows = [w for w in store.card_windows() if w["worker"] == worker]
    cards = CardIndex(windows)
    sites, gates, manual, voids, days = {}, [], [], [], []
    for site_row in store.sites():
        site = site_row["site"]
        rules = site_rules(store, site)
        start, end = window(first, last, rules)
        punches = store.punches(site=site, start=start, end=end)
        events, _ = events_of(punches, cards)
        mine = [e for e in events if e.worker == worker]
        if not mine:
            continue
        sites[site] = {"timezone": site_row["timezone"], "max_shift_hours": site_row["max_shift_hours"]}
        seqs: dict[str, list[int]] = {}
        for event in mine:
            if not event.manual:
                gate, seq = event.ref.split("#")
                seqs.setdefault(gate, []).append(int(seq))
        for gate, numbers in sorted(seqs.items()):
            rows = store.gate_punch_rows(site, gate, min(numbers), max(numbers))
            gates.append({
                "site": site, "gate": gate, "first_seq": min(numbers), "last_seq": max(numbers),
                "public_keys": [k["public_key"] for k in store.public_keys(site, gate)],
                "punches": [json.loads(r["body"]) for r in rows],
                "received_at": [r["received_at"] for r in rows],
            })
            voids += [{"ref": f"{gate}#{r['seq']}", "site": site, "void_at": r["void_at"], "by": r["void_by"],
                       "reason": r["void_reason"]} for r in rows if r["void_at"]]
            if progress is not None:
                progress(len(rows))
        for punch in punches:
            if punch["source"] == "manual" and punch["worker"] == worker:
                manual.append({"ref": f"manual#{punch['id']}", "site": site, "time": punch["time"],
                               "direction": punch["direction"], "by": punch["manual_by"],
                               "reason": punch["manual_reason"], "entered_at": punch["received_at"]})
                if punch["void_at"]:
                    voids.append({"ref": f"manual#{punch['id']}", "site": site, "void_at": punch["void_at"],
                                  "by": punch["void_by"], "reason": punch["void_reason"]})
        for record in daily_records(mine, rules, now):
            if first <= record.date <= last:
                days.append(record_dict(record, site, rules.tz, cards.holders.get(worker), final=False))
    for day in days:
        del day["final"]  # finality depends on gate heartbeats, which the file does not carry
    return {
        "format": FORMAT, "version": VERSION, "generated_at": format_time(now),
        "worker": {"worker": worker, "name": person["name"], "employer": person["employer"]},
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        "cards": [{"uid": w["uid"], "valid_from": w["valid_from"], "valid_to": w["valid_to"]} for w in windows],
        "sites": sites, "gates": gates, "manual": manual, "voids": voids, "days": days,
    }


def verify_evidence(document: dict) -> dict:
    """Check an evidence document; return a summary, or raise EvidenceError naming the first failure."""
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise EvidenceError(f"not a {FORMAT} version {VERSION} document")
    try:
        worker = document["worker"]["worker"]
        first, last = date.fromisoformat(document["period"]["from"]), date.fromisoformat(document["period"]["to"])
        generated = parse_time(document["generated_at"])
        cards = CardIndex([{**c, "worker": worker, "name": document["worker"]["name"],
                            "employer": document["worker"]["employer"]} for c in document["cards"]])
        sites = {site: Rules(zone(r["timezone"]), timedelta(hours=r["max_shift_hours"]))
                 for site, r in document["sites"].items()}
    except (KeyError, TypeError, ValueError, ProtocolError) as error:
        raise EvidenceError(f"malformed header: {error}") from None
    events: dict[str, list[Event]] = {site: [] for site in sites}
    voided = {v["ref"]: v for v in document.get("voids", [])}
    fingerprints = []
    total = 0
    for segment in document.get("gates", []):
        site, gate = segment.get("site"), segment.get("gate")
        name = f"{site}/{gate}"
        if site not in sites:
            raise EvidenceError(f"gate {name}: site {site} has no rules in the file")
        keys = {}
        for text in segment.get("public_keys", []):
            try:
                key = parse_public_key(text)
            except ValueError as error:
                raise EvidenceError(f"gate {name}: bad public key: {error}") from None
            keys[key_id(key)] = key
            fingerprints.append(f"{name} {key_id(key)}")
        previous = None
        expected = segment.get("first_seq")
        received = segment.get("received_at") or []
        for index, raw in enumerate(segment.get("punches", [])):
            try:
                punch = Punch.from_dict(raw)
            except ProtocolError as error:
                raise EvidenceError(f"gate {name} punch #{index + 1}: {error}") from None
            label = f"punch {name} seq {punch.seq}"
            if (punch.site, punch.gate) != (site, gate):
                raise EvidenceError(f"{label}: belongs to {punch.site}/{punch.gate}")
            if punch.seq != expected:
                raise EvidenceError(f"{label}: expected seq {expected} (a punch is missing or out of order)")
            key = keys.get(punch.key)
            if key is None:
                raise EvidenceError(f"{label}: signed by key {punch.key}, which the file does not hold")
            try:
                verify_punch(punch, key)
                if previous is not None:
                    check_link(previous, punch)
            except ProtocolError as error:
                raise EvidenceError(f"{label}: {error.detail}") from None
            holder = cards.holder(punch.card, punch.time)
            if holder is not None:
                row = {"id": None, "gate": gate, "seq": punch.seq, "time": punch.time, "direction": punch.dir,
                       "source": "gate", "void_at": (voided.get(f"{gate}#{punch.seq}") or {}).get("void_at"),
                       "flags": "", "received_at": received[index] if index < len(received) else punch.time,
                       "card": punch.card}
                events[site].append(event_of(row, worker))
            previous, expected, total = punch, expected + 1, total + 1
        if previous is None or previous.seq != segment.get("last_seq"):
            raise EvidenceError(f"gate {name}: segment does not end at its declared seq {segment.get('last_seq')}")
    for entry in document.get("manual", []):
        row = {"id": entry["ref"].split("#")[1], "gate": None, "seq": None, "time": entry["time"],
               "direction": entry["direction"], "source": "manual", "flags": "",
               "void_at": (voided.get(entry["ref"]) or {}).get("void_at"), "received_at": entry["entered_at"]}
        if entry.get("site") in events:
            events[entry["site"]].append(event_of(row, worker))
    stated = {(d["site"], d["date"]): d for d in document.get("days", [])}
    recomputed = {}
    for site, rules in sites.items():
        for record in daily_records(events[site], rules, generated):
            if first <= record.date <= last:
                recomputed[(site, record.date.isoformat())] = record_dict(record, site, rules.tz, None, False)
    for key in sorted(set(stated) | set(recomputed)):
        a, b = stated.get(key), recomputed.get(key)
        if a is None or b is None:
            raise EvidenceError(f"day {key[1]} at {key[0]}: {'not stated' if a is None else 'not supported by the punches'}")
        for field in ("worked_minutes", "status", "first_in", "last_out", "shifts"):
            if a.get(field) != b.get(field):
                raise EvidenceError(f"day {key[1]} at {key[0]}: {field} stated {a.get(field)!r}, "
                                    f"the punches give {b.get(field)!r}")
    return {"worker": worker, "days": len(recomputed), "punches": total,
            "worked_minutes": sum(d["worked_minutes"] for d in recomputed.values()),
            "keys": sorted(set(fingerprints)), "manual_entries": len(document.get("manual", []))}

