"""What only the daemon knows (acks sent, ingest lag) reaches /metrics of the separate `collector serve`."""

from __future__ import annotations

import signal
import urllib.request

import pytest

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
