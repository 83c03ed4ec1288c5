"""Gate health as site managers need it: online or not, last seen, backlog, clock, gaps."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.store import Store
from gate_agent.protocol import parse_time

#: A gate whose last heartbeat is older than this many heartbeat intervals is 'silent', whatever it said.
SILENT_AFTER_HEARTBEATS = 3


def gate_health(store: Store, site: str | None = None, now: datetime | None = None, *,
                gaps: str | None = "punches") -> list[dict]:
    """Each gate of ``site`` (None: of the bank). ``open_gaps`` comes from ``gaps``: "punches", worked out
    from the punches held (exact, and a gate with a hole costs a read of every punch above it: `collector
    gates`, /api/gates); "recorded", the gaps the daemon recorded open (it reconciles them with the
    punches after each burst, about once a second; a gap is closed in the burst that fills it: the live
    page); None, left empty for what does not show them."""
    if gaps not in ("punches", "recorded", None):
        raise ValueError(f"gaps come from the punches, as recorded, or nowhere, not {gaps!r}")
    rows = store.gates(site, with_gaps=gaps == "punches")
    if gaps == "recorded":
        recorded = store.recorded_gaps(site)
        for row in rows:
            row["open_gaps"] = recorded.get((row["site"], row["gate"]), [])
    return health_of(rows, now)


def health_of(rows: list[dict], now: datetime | None = None) -> list[dict]:
    """Gate health from ``Store.gates`` rows (read once by whoever needs them for more than this)."""
    now = now or datetime.now(UTC)
    result = []
    for row in rows:
        status = row["status"] or {}
        seen = [t for t in (row["status_at"], row["last_punch_at"]) if t]
        last_seen = max(seen) if seen else None
        state = row["status_state"] or "never seen"
        heartbeat = status.get("heartbeat_seconds")
        if state == "online" and row["status_at"] and isinstance(heartbeat, (int, float)):
            age = (now - parse_time(row["status_at"])).total_seconds()
            if age > SILENT_AFTER_HEARTBEATS * heartbeat:
                state = "silent"
        result.append({
            "site": row["site"],
            "gate": row["gate"],
            "display": row.get("display_name"),  # what the site calls it ("北门"), or None
            "active": bool(row["active"]),
            "deactivated_at": row.get("deactivated_at"),
            "state": state,
            "last_seen": last_seen,
            "last_heartbeat": row["status_at"],
            "contiguous_seq": row["contiguous_seq"] or 0,
            "max_seq": row["max_seq"] or 0,
            "open_gaps": [list(gap) for gap in row["open_gaps"] or ()],
            "reported_last_seq": status.get("last_seq"),
            "reported_pending": status.get("pending"),
            "reported_acked_seq": status.get("acked_seq"),
            "oldest_pending_at": status.get("oldest_pending_at"),
            "clock_synced": status.get("synced"),
            "reader": status.get("reader"),
            "buffer_pct": status.get("buffer_pct"),
            "buffer_warning": status.get("buffer_warning"),
            "version": status.get("version"),
        })
    return result


def last_online(row: dict) -> str | None:
    """When the bank last received an online heartbeat of a ``Store.gates`` row's gate (None: never)."""
    if row.get("heartbeat_at"):
        return row["heartbeat_at"]
    return row["status_at"] if row["status_state"] == "online" else None
