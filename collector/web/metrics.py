"""The collector's facts in Prometheus text format (version 0.0.4), read from the database.

Counters come from what ingest and the daemon persist (the web process that serves them is separate
and read-only). A scrape costs a row per site and per gate whatever the bank holds: gauges are read from
the gates' state, the gaps the daemon recorded, the kept days (who is inside) and the day marks waiting;
what covers the bank and takes reading it (arrears per site, cards nobody holds inside, punches held) is
what the daemon keeps in ``bank_figures`` (``collector.wages.figures``), exported with its age and never
computed here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from collector.attendance.health import health_of
from collector.store import Figure, Store
from collector.wages import figures as kept_figures
from gate_agent.protocol import format_time, parse_time

#: metric name, stored counter, help. Each is a monotonic count since the database was created. Every
#: counter ingest and the daemon keep is here or below (quarantined_<reason> as one labelled family,
#: whose sum is the "quarantined" counter; the ingest lag as a summary): tests/test_web_metrics.py
#: checks that none is left out.
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


def render_metrics(store: Store, now: datetime | None = None) -> str:
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

    sites = [row["site"] for row in store.sites()]
    kept = {(f.site, f.figure): f for f in store.figures(kept_figures.KEPT)}  # not the rows a report lists
    bank = kept.get((kept_figures.BANK, "punches"))
    out.family("collector_punches_held", "gauge",
               "Punches in the database (gate and manual), as the daemon last counted them "
               "(collector_figures_age_seconds{figure=\"punches\"}).",
               [("", bank.value["held"])] if bank is not None and bank.value is not None else [])

    gates = health_of(store.gates(with_gaps=False), now)
    missing = store.recorded_gaps()
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
               "Punches missing below the highest seq held (open gaps, as the daemon last recorded them), per gate.",
               [(_labels(site=g["site"], gate=g["gate"]),
                 sum(last - first + 1 for first, last in missing.get((g["site"], g["gate"]), ()))) for g in gates])
    out.family("collector_gate_clock_synced", "gauge", "1 if the gate reported an NTP-synchronised clock.",
               [(_labels(site=g["site"], gate=g["gate"]), int(bool(g["clock_synced"]))) for g in gates
                if g["clock_synced"] is not None])

    if store.has("days"):
        oldest = store.oldest_day_mark()
        out.family("collector_day_marks_pending", "gauge",
                   "Changes whose kept days are still to be recomputed (the daemon's days thread takes them).",
                   [("", store.pending_day_marks())])
        out.family("collector_day_marks_oldest_age_seconds", "gauge",
                   "Seconds since the oldest change still waiting for its days was made (0: none waits).",
                   [("", _age(oldest, now) if oldest else 0.0)])
        now_text = format_time(now)
        out.family("collector_site_on_site", "gauge",
                   "Registered workers inside the site now, from the kept days (collector_day_marks_pending says "
                   "how many changes they still wait for).",
                   [(_labels(site=site), store.workers_inside(site, now_text)) for site in sites])

    def figure_of(name: str) -> list[tuple[str, dict]]:
        return [(site, kept[(site, name)].value) for site in sites
                if (site, name) in kept and kept[(site, name)].value is not None]

    out.family("collector_site_unknown_cards_inside", "gauge",
               "Cards nobody holds that were inside the site, as of the figure's age.",
               [(_labels(site=site), value["unknown_cards"]) for site, value in figure_of("inside")])
    arrears = figure_of("arrears")
    out.family("collector_wages_overdue_fen", "gauge",
               "Approved wages past their pay day and not recorded paid, per site, in fen.",
               [(_labels(site=site), value["overdue_fen"]) for site, value in arrears])
    out.family("collector_wages_overdue_estimate_fen", "gauge",
               "Wages past their pay day without an approved amount (no approved table, or a line held), "
               "estimated from the workers' pay terms, per site, in fen.",
               [(_labels(site=site), value["overdue_estimate_fen"]) for site, value in arrears])
    out.family("collector_wages_overdue_workers", "gauge",
               "Workers with gate-verified days whose wages are overdue, per site (the Art. 27 warning).",
               [(_labels(site=site), value["overdue_workers"]) for site, value in arrears])

    shown = [f for f in kept.values() if f.site == kept_figures.BANK or f.site in sites]
    out.family("collector_figures_age_seconds", "gauge",
               "Seconds since the daemon computed the figure (per site; no site label: of the whole bank).",
               [(_figure_labels(f), _age(f.computed_at, now)) for f in shown])
    out.family("collector_figures_compute_seconds", "gauge", "How long the daemon took to compute the figure.",
               [(_figure_labels(f), f.seconds) for f in shown])
    expected = [name for name in kept_figures.SITE_FIGURES if name != "arrears" or store.has("payments")]
    out.family("collector_figures_missing", "gauge",
               "Sites with no figure of this kind computed yet (their samples are left out, not guessed).",
               [(_labels(figure=name), sum((site, name) not in kept for site in sites)) for name in expected])
    failed = {f.site for f in kept.values() if f.error is not None}
    out.family("collector_site_read_failed", "gauge",
               "1 for a site whose figures could not be computed in the daemon's latest try (its log says why); "
               "those figures are left out rather than guessed.",
               [(_labels(site=site), int(site in failed)) for site in sites])
    return "\n".join(out.lines) + "\n"


def _figure_labels(figure: Figure) -> str:
    return _labels(figure=figure.figure, site=figure.site) if figure.site else _labels(figure=figure.figure)


def _age(text: str, now: datetime) -> float:
    """Seconds from a stored time to ``now``, never below 0 (a clock a little ahead)."""
    return round(max(0.0, (now - parse_time(text)).total_seconds()), 3)


def render_bounds(refused: dict[str, int], working: int, sites: dict[str, int]) -> str:
    """What `collector serve` itself counts (collector/web/bounds.py), since this process started: requests
    refused for want of a slot, by reason, requests being worked on now, and the slots each site holds."""
    out = _Writer()
    out.family("collector_web_refusals_total", "counter",
               "Requests refused by this collector serve process for want of a slot: credential (429: its own "
               "requests in the works), site (503), live_streams (503), live_round (a stream's update put off).",
               [(_labels(reason=reason), count) for reason, count in sorted(refused.items())])
    out.family("collector_web_requests_working", "gauge",
               "Requests of the data routes this collector serve process is working on now.", [("", working)])
    out.family("collector_web_site_slots", "gauge",
               "Slots a site's requests and live-stream rounds hold now in this process ([web] requests_per_site "
               "at most; sites holding none are left out).",
               [(_labels(site=site), held) for site, held in sites.items()])
    return "\n".join(out.lines) + "\n"
