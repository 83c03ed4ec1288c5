"""The collector's facts in Prometheus text format (version 0.0.4), read from the database.

Counters come from what ingest and the daemon persist (the web process that serves them is separate
and read-only); gauges are computed at scrape time from gate health and the live headcount.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from collector.attendance.headcount import headcount
from collector.attendance.health import gate_health
from collector.store import Store
from collector.wages.arrears import arrears
from gate_agent.protocol import parse_time

#: metric name, stored counter, help. Each is a monotonic count since the database was created. Every
#: counter ingest and the daemon keep is here or below (quarantined_<reason> as one labelled family,
#: whose sum is the "quarantined" counter; the ingest lag as a summary): tests/test_web_metrics.py
#: checks that none is left out.
log = logging.getLogger(__name__)

COUNTERS = (
    ("collector_punches_ingested_total", "stored", "Gate punches verified and stored (each once)."),
    ("collector_duplicates_total", "duplicates", "Identical redeliveries of punches already held."),
    ("collector_equivocations_total", "equivocations", "Different signed punches under a held seq."),
    ("collector_chain_breaks_total", "chain_breaks", "Punches whose chain link differs from the held one."),
    ("collector_punch_messages_total", "messages", "Punch messages decoded."),
    ("collector_status_messages_total", "statuses", "Gate heartbeats and status messages stored."),
    ("collector_status_unknown_gate_total", "status_unknown_gate",
     "Status messages from gates not registered, ignored."),
    ("collector_clock_implausible_total", "clock_implausible",
     "Gate punches stored with a time no working day can hold (flagged clock_implausible, never counted)."),
    ("collector_card_forged_total", "card_forged",
     "NTAG 424 punches whose SUN message is not the card's (flagged card_forged, never counted)."),
    ("collector_card_replay_total", "card_replay",
     "NTAG 424 punches shown to replay a SUN message (flagged card_replay, never counted)."),
    ("collector_card_unverified_total", "card_unverified",
     "NTAG 424 punches stored without a master key to check them (flagged card_unverified, never counted)."),
    ("collector_acks_sent_total", "acks_sent", "Acknowledgements published to gates."),
    ("collector_resend_requests_total", "resend_requests", "Resend requests published to gates."),
    ("collector_rosters_published_total", "rosters_published", "Signed rosters published to sites."),
    ("collector_refusals_sent_total", "refusals_sent", "Gates told (signed) why their messages are refused."),
    ("collector_write_failures_total", "write_failures", "Bursts the database refused (retried)."),
    ("collector_lock_timeouts_total", "lock_timeouts",
     "Bursts that timed out waiting on another writer or a statement (set aside, retried, nothing acknowledged)."),
    ("collector_messages_deferred_total", "messages_deferred",
     "Messages set aside, unacknowledged, because another writer held their gate (each time; written later)."),
    ("collector_quarantine_not_kept_total", "quarantine_not_kept",
     "Quarantined messages counted but not kept as rows (their topic's hourly allowance was used up)."),
)


def _escape(value: str) -> str:
    """A label value as the exposition format requires: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{name}="{_escape(str(value))}"' for name, value in labels.items()) + "}"


def _number(value: object) -> str | None:
    """A sample value in the format's own spelling (``NaN``, ``+Inf``, ``-Inf``; Python writes ``nan``,
    ``inf`` and ``True``), or None for anything that is not a number: such a sample is left out."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return None


class _Writer:
    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[str, object]]) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, value in samples:
            text = _number(value)
            if text is not None:
                self.lines.append(f"{name}{suffix} {text}")


def render_metrics(store: Store, now: datetime | None = None, *, grace: timedelta = timedelta(hours=6)) -> str:
    now = now or datetime.now(UTC)
    counters = store.counters()
    out = _Writer()
    for name, key, help_text in COUNTERS:
        out.family(name, "counter", help_text, [("", counters.get(key, 0))])
    by_reason = sorted((k.removeprefix("quarantined_"), v) for k, v in counters.items()
                       if k.startswith("quarantined_"))
    out.family("collector_quarantined_total", "counter", "Messages or punches quarantined, by reason.",
               [(_labels(reason=reason), value) for reason, value in by_reason])

    lag_count = counters.get("ingest_lag_count", 0)
    out.family("collector_ingest_lag_seconds", "summary",
               "Time from a message's arrival at the collector to its commit.",
               [("_sum", counters.get("ingest_lag_ms_sum", 0) / 1000), ("_count", lag_count)])
    out.family("collector_ingest_lock_wait_seconds", "summary",
               "Time a committed burst spent taking its locks (write transaction, gate locks, lease renewal).",
               [("_sum", counters.get("lock_wait_us_sum", 0) / 1e6), ("_count", counters.get("bursts", 0))])
    gauges = store.gauges()
    if "ingest_lag_seconds_last" in gauges:
        out.family("collector_ingest_lag_last_seconds", "gauge",
                   "Arrival-to-commit time of the oldest message of the latest burst.",
                   [("", gauges["ingest_lag_seconds_last"].value)])
    out.family("collector_punches_held", "gauge", "Punches in the database (gate and manual).",
               [("", store.punch_count())])

    gates = gate_health(store)
    out.family("collector_gate_up", "gauge", "1 if the gate's last status is online and recent, else 0.",
               [(_labels(site=g["site"], gate=g["gate"]), int(g["state"] == "online")) for g in gates])
    out.family("collector_gate_pending", "gauge",
               "Punches the gate reported as not yet acknowledged, in its latest heartbeat.",
               [(_labels(site=g["site"], gate=g["gate"]), g["reported_pending"]) for g in gates
                if type(g["reported_pending"]) is int])
    out.family("collector_gate_last_seen_age_seconds", "gauge",
               "Seconds since the collector last heard from the gate (punch or heartbeat).",
               [(_labels(site=g["site"], gate=g["gate"]),
                 round(max(0.0, (now - parse_time(g["last_seen"])).total_seconds()), 3))
                for g in gates if g["last_seen"]])
    out.family("collector_gate_missing_punches", "gauge",
               "Punches missing below the highest seq held (open gaps), per gate.",
               [(_labels(site=g["site"], gate=g["gate"]), sum(b - a + 1 for a, b in g["open_gaps"] or ()))
                for g in gates])
    out.family("collector_gate_clock_synced", "gauge", "1 if the gate reported an NTP-synchronised clock.",
               [(_labels(site=g["site"], gate=g["gate"]), int(bool(g["clock_synced"]))) for g in gates
                if g["clock_synced"] is not None])

    counts, unreadable = [], {}
    for site in store.sites():
        try:
            counts.append((site["site"], headcount(store, site["site"], now)))
        except Exception:  # noqa: BLE001 - one site that cannot be read must not take the bank's scrape down
            log.exception("the headcount of site %s cannot be computed", site["site"])
            unreadable[site["site"]] = 1
    out.family("collector_site_on_site", "gauge", "Registered workers inside the site now.",
               [(_labels(site=site), data["on_site"]) for site, data in counts])
    out.family("collector_site_unknown_cards_inside", "gauge", "Cards nobody holds that are inside now.",
               [(_labels(site=site), data["unknown_cards"]) for site, data in counts])
    if store.has("payments"):  # a database the daemon has not upgraded yet has no payments to judge
        every = arrears(store, now=now, grace=grace)["sites"]
        for summary in every:
            if summary["error"]:
                unreadable[summary["site"]] = 1
        sites = [s for s in every if not s["error"]]
        out.family("collector_wages_overdue_fen", "gauge",
                   "Approved wages past their pay day and not recorded paid, per site, in fen.",
                   [(_labels(site=s["site"]), s["overdue_fen"]) for s in sites])
        out.family("collector_wages_overdue_estimate_fen", "gauge",
                   "Wages past their pay day without an approved amount (no approved table, or a line held), "
                   "estimated from the workers' pay terms, per site, in fen.",
                   [(_labels(site=s["site"]), s["overdue_estimate_fen"]) for s in sites])
        out.family("collector_wages_overdue_workers", "gauge",
                   "Workers with gate-verified days whose wages are overdue, per site (the Art. 27 warning).",
                   [(_labels(site=s["site"]), s["overdue_workers"]) for s in sites])
    out.family("collector_site_read_failed", "gauge",
               "1 for a site whose headcount or arrears could not be computed (the log says why); its other "
               "figures are left out rather than guessed.",
               [(_labels(site=site["site"]), unreadable.get(site["site"], 0)) for site in store.sites()])
    return "\n".join(out.lines) + "\n"
