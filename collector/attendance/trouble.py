"""What needs a site foreman's attention now: the facts behind the red banner at the top of the site page.

Each fact is a dict with a ``kind`` (a key of the page's message catalog, which says it in words), its
``urgency``, the gate concerned if any, and the figures the words need. Nothing here carries a refused
message's bytes or detail: a site token sees per-gate counts and reasons only. An empty list means all is
well.

``urgency`` is ``act`` for what the site must see to now (a gate offline, silent, refused, its store nearly
full; the bank's ingest behind) and ``inform`` for what the foreman cannot fix and only passes on (a gate
clock not synchronised: tell the bank). The page shows the first red and the second apart, calmly.

A fact about a gate carries ``gate_name``, what the site calls it ("北门"; None when it has no name), beside
its id. A retired (deactivated) gate is nobody's trouble, unless it sends after its deactivation (a
heartbeat, or punches it is refused): then it is ``gate_retired_sending``, since a gate the bank retired
that still runs is a gate someone forgot, or one that should not be there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.attendance.health import health_of, last_online
from collector.localtime import parse_or_none
from collector.store import Store
from gate_agent.protocol import TOPIC_ROOT, format_time

#: A gate is silent once its last heartbeat is older than this many of its intervals (and a few seconds
#: more, so that a heartbeat a little late on a busy network raises nothing).
SILENT_HEARTBEATS, SILENT_SLACK_SECONDS = 2, 5
#: A gate's buffer this full (percent of its disk allowance) needs its network fixed before taps are lost.
BUFFER_LIMIT_PCT = 80
#: Refused messages from a gate are trouble while the latest came this recently.
REFUSED_WINDOW = timedelta(hours=1)
#: A retired gate heard from after its deactivation, this recently, is still sending.
SENDING_WINDOW = REFUSED_WINDOW
#: Facts the foreman passes on rather than acts upon (``urgency`` inform).
INFORM = frozenset({"gate_clock"})
#: Ingest slower than this (arrival to commit) is trouble, while the measurement is this recent.
LAG_LIMIT_SECONDS, LAG_FRESH = 60.0, timedelta(minutes=10)


def trouble(store: Store, site: str, now: datetime | None = None) -> list[dict]:
    """Everything at ``site`` that needs the foreman, gates in name order, the collector last."""
    now = now or datetime.now(UTC)
    facts: list[dict] = []
    refused = _refused_by_gate(store, site, now)
    # One read of the site's gates (no gaps: the banner does not show them, and working them out reads
    # every punch above a gate's first hole), the refusals of the last hours and one gauge: what this
    # costs is the site's gates and its recent problems, never its history.
    rows = store.gates(site, with_gaps=False)
    heartbeats = {row["gate"]: (row["status"] or {}).get("heartbeat_seconds") for row in rows}
    online = {row["gate"]: last_online(row) for row in rows}
    names = {row["gate"]: row["display_name"] for row in rows}
    for gate in health_of(rows, now):
        name = gate["gate"]
        if not gate["active"]:
            refusals = refused.pop(name, None)
            if gate["deactivated_at"] is None:  # retired before the bank kept when (a database not upgraded)
                if refusals is not None:
                    facts.append({"kind": "gate_refused", "gate": name, **refusals})
                continue
            sent = sent_after_retiring(gate["deactivated_at"], online[name], refusals, now)
            if sent is not None:
                facts.append({"kind": "gate_retired_sending", "gate": name, "since": gate["deactivated_at"],
                              "last_at": sent, "count": refusals["count"] if refusals else 0,
                              "reasons": refusals["reasons"] if refusals else {}})
            continue
        state = gate["state"]
        heartbeat = heartbeats.get(name)
        heartbeat = heartbeat if isinstance(heartbeat, (int, float)) and heartbeat > 0 else None
        beat = parse_or_none(gate["last_heartbeat"]) if gate["last_heartbeat"] else None
        if state == "offline":
            facts.append({"kind": "gate_offline", "gate": name, "since": gate["last_seen"]})
        elif state == "never seen":
            facts.append({"kind": "gate_never_seen", "gate": name})
        elif state == "silent" or (
                state == "online" and beat is not None and heartbeat is not None
                and (now - beat).total_seconds() > SILENT_HEARTBEATS * heartbeat + SILENT_SLACK_SECONDS):
            facts.append({"kind": "gate_silent", "gate": name, "since": gate["last_heartbeat"]})
        if state != "offline":
            if gate["clock_synced"] is False:
                facts.append({"kind": "gate_clock", "gate": name})
            pct = gate["buffer_pct"]
            if (isinstance(pct, (int, float)) and pct > BUFFER_LIMIT_PCT) or gate["buffer_warning"]:
                facts.append({"kind": "gate_buffer", "gate": name, "percent": pct})
        if name in refused:
            facts.append({"kind": "gate_refused", "gate": name, **refused.pop(name)})
    for name in sorted(refused):  # a gate deactivated or gone: its refusals still need explaining
        facts.append({"kind": "gate_refused", "gate": name, **refused[name]})
    lag = store.gauges().get("ingest_lag_seconds_last")
    if lag is not None:
        value, updated = lag.value, lag.updated_at
        measured = parse_or_none(updated) if isinstance(updated, str) else None
        if value > LAG_LIMIT_SECONDS and measured is not None and now - measured <= LAG_FRESH:
            facts.append({"kind": "ingest_lag", "gate": None, "seconds": round(value)})
    for fact in facts:
        if fact["gate"] is not None:
            fact["gate_name"] = names.get(fact["gate"])
        fact["urgency"] = "inform" if fact["kind"] in INFORM else "act"
    return facts


def sent_after_retiring(retired_at: str, heartbeat_at: str | None, refusals: dict | None,
                        now: datetime) -> str | None:
    """When a gate retired at ``retired_at`` last sent (an online heartbeat received, a refused message) after
    its retirement and within ``SENDING_WINDOW`` of ``now``; None if it has been quiet."""
    since = format_time(now - SENDING_WINDOW)
    heard = [moment for moment in (heartbeat_at, refusals["last_at"] if refusals else None)
             if moment is not None and moment > retired_at and moment >= since]
    return max(heard) if heard else None


def retired_sending(facts: list[dict]) -> set[str]:
    """The retired gates that still send, among ``trouble``'s facts (the page shows them, marked)."""
    return {fact["gate"] for fact in facts if fact["kind"] == "gate_retired_sending"}


def mark_retired_sending(store: Store, gates: list[dict], now: datetime | None = None) -> list[dict]:
    """``gates`` (``health.gate_health`` rows) each with ``retired_sending``, as the banner judges it: the
    sites with a retired gate are looked at, the others cost nothing."""
    now = now or datetime.now(UTC)
    sites = sorted({gate["site"] for gate in gates if not gate["active"] and gate["deactivated_at"]})
    sending = {(site, gate) for site in sites for gate in retired_sending(trouble(store, site, now))}
    for gate in gates:
        gate["retired_sending"] = (gate["site"], gate["gate"]) in sending
    return gates


def report(store: Store, site: str, now: datetime | None = None) -> dict:
    """The facts as the JSON API and the live stream give them."""
    now = now or datetime.now(UTC)
    facts = trouble(store, site, now)
    return {"site": site, "ok": not facts, "act_now": sum(f["urgency"] == "act" for f in facts), "trouble": facts,
            "as_of": format_time(now)}


def _refused_by_gate(store: Store, site: str, now: datetime) -> dict[str, dict]:
    """Per gate: messages refused in the window, by reason, and when the latest was."""
    since = format_time(now - REFUSED_WINDOW)
    prefix = f"{TOPIC_ROOT}/{site}/"
    found: dict[str, dict] = {}
    for row in store.quarantine_tally_since(since[:13], prefix):
        if row["last_at"] < since:
            continue
        gate = row["topic"][len(prefix):].split("/", 1)[0]
        entry = found.setdefault(gate, {"count": 0, "reasons": {}, "last_at": row["last_at"]})
        entry["count"] += row["count"]
        entry["reasons"][row["reason"]] = entry["reasons"].get(row["reason"], 0) + row["count"]
        entry["last_at"] = max(entry["last_at"], row["last_at"])
    return found
