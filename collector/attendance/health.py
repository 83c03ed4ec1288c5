"""Gate health as site managers need it: online or not, last seen, backlog, clock, gaps."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.store import Store
from gate_agent.protocol import parse_time

#: A gate whose last heartbeat is older than this many heartbeat intervals is 'silent', whatever it said.
SILENT_AFTER_HEARTBEATS = 3


def gate_health(store: Store, site: str | None = None, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    result = []
    for row in store.gates(site):
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
            "active": bool(row["active"]),
            "state": state,
            "last_seen": last_seen,
            "last_heartbeat": row["status_at"],
            "contiguous_seq": row["contiguous_seq"] or 0,
            "max_seq": row["max_seq"] or 0,
            "open_gaps": [list(gap) for gap in row["open_gaps"]],
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
