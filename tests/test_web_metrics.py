"""Every counter ingest and the daemon keep (acks sent, ingest lag...) reaches /metrics of the separate
`collector serve`."""

from __future__ import annotations

import ast
import signal
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.store import Store
from collector.web.metrics import render_metrics
from gate_agent.protocol import GateTopics, encode_punches
from tests.helpers import CollectorSetup, Listener, PunchFactory, start_web, stop_process, wait_for

pytestmark = pytest.mark.slow

BANK = "bank-ops-token-all-sites-0003"


def scrape(url: str) -> dict[str, float]:
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {BANK}"})
    samples = {}
    for line in urllib.request.urlopen(request, timeout=30).read().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_acks_and_ingest_lag_from_the_daemon_reach_metrics(tmp_path, broker):
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, **{"web.tokens": {BANK: "*"}})
    east = PunchFactory(gate="east")
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", "east", "--site", "S1", "--public-key", east.public_key)
    daemon = collector.start()
    web = publisher = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        web, url = start_web(collector)
        publisher = Listener(broker.port)
        punches = [east.next() for _ in range(3)]
        for punch in punches:
            publisher.publish(GateTopics("S1", "east").punch, encode_punches([punch]))
        publisher.publish(GateTopics("S1", "east").punch, encode_punches([punches[0]]))  # a redelivery
        # Ingest counts commit with each burst; the daemon's own counts follow within a housekeeping round.
        samples = wait_for(lambda: (s := scrape(url))["collector_duplicates_total"] == 1 and
                           s["collector_acks_sent_total"] >= 1 and s["collector_ingest_lag_seconds_count"] >= 4
                           and s, timeout=30, interval=0.2, message="the duplicate, acks and lag in /metrics")
        # The figures of the whole bank: computed by the daemon's own thread from its start, not by the scrape.
        figures = wait_for(lambda: (s := scrape(url))['collector_figures_missing{figure="inside"}'] == 0 and
                           s['collector_figures_missing{figure="arrears"}'] == 0 and
                           'collector_figures_age_seconds{figure="punches"}' in s and s,
                           timeout=30, interval=0.2, message="the daemon's figures in /metrics")
    finally:
        if publisher is not None:
            publisher.close()
        for process in (web, daemon):
            if process is not None:
                stop_process(process, signal.SIGKILL)
    assert samples["collector_punches_ingested_total"] == 3
    assert samples["collector_ingest_lag_seconds_sum"] >= 0
    assert 0 <= samples["collector_ingest_lag_last_seconds"] < 30
    assert samples['collector_gate_missing_punches{site="S1",gate="east"}'] == 0
    assert figures['collector_site_read_failed{site="S1"}'] == 0
    assert figures['collector_site_unknown_cards_inside{site="S1"}'] == 0
    assert figures['collector_wages_overdue_fen{site="S1"}'] == 0
    assert figures['collector_figures_age_seconds{figure="arrears",site="S1"}'] >= 0
    assert 0 <= figures["collector_punches_held"] <= 3  # counted as the daemon started, before or among these
    assert figures["collector_day_marks_pending"] >= 0


def counter_names(module) -> set[str]:
    """Every counter name ``module`` increments (``counts["x"]``, ``counters["x"]``); an f-string name
    (``f"quarantined_{reason}"``) is its literal start followed by "example"."""
    names = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr in ("counts", "counters"):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
            elif isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
                names.add(key.values[0].value + "example")
    return names


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_counter_ingest_and_the_daemon_keep_reaches_metrics(tmp_path):
    from collector.ingest import daemon as service
    from collector.ingest import pipeline as ingest

    names = counter_names(ingest) | counter_names(service) | set(service.PERSISTED_COUNTERS)
    assert {"stored", "clock_implausible", "quarantined_example", "acks_sent"} <= names  # the scan works
    now = datetime(2026, 11, 28, 6, tzinfo=UTC)
    with Store(tmp_path / "collector.sqlite3") as store:
        before = samples(render_metrics(store, now))
        missing = []
        # "quarantined" is every quarantined_<reason> together: /metrics has it as one family by reason.
        for name in sorted(names - {"quarantined"}):
            with store.transaction():
                store.add_counters({name: 1000 + len(name)})
            after = samples(render_metrics(store, now))
            if after == before:
                missing.append(name)
            before = after
        assert missing == []
        with store.transaction():
            store.add_counters({"quarantined": 1000 + len("quarantined_example")})
        by_reason = [value for (metric, _), value in samples(render_metrics(store, now)).items()
                     if metric == "collector_quarantined_total"]
        assert sum(by_reason) == store.counters()["quarantined"]
    # What only the daemon counts reaches `collector serve` only if the daemon writes it down.
    assert counter_names(service) <= set(service.PERSISTED_COUNTERS)
