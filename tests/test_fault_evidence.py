"""A worker's evidence request must not stall ingest.

A real `collector run` holds a gate's chain of 40,000 punches, one card in a thousand the worker's. The gate
is one from before card links (punch protocol 2), so a day of evidence carries the whole chain segment
(seconds to build, hundreds of MB); a gate of protocol 3 gives a file of the worker's own punches, built in
a fraction of a second, which would leave nothing to measure here. While the file is built, the
gate keeps publishing: every punch published during the build is acknowledged before the build ends (it
used to wait for the whole build, on the ingest loop). Then the same daemon, restarted with a 64 MB cap
on a build, fails the next request for memory, says so, and keeps ingesting; stopped mid-build it exits
cleanly and gives the request back. The ack latencies during the build are printed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as paho
import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import Ack, GateTopics, encode_punch_bodies, format_time, parse_bank_keys, parse_time
from tests.bench.fakegates import public_keys, signed_bodies
from tests.helpers import BANK_PUBLIC, CollectorSetup, stop_process, wait_for

pytestmark = pytest.mark.slow

SITE, GATE, SEED = "S1", "S1-g000", "evidence"
HELD = 40_000  # punches on disk before the daemon starts
MORE = 2_000  # punches the gate publishes afterwards
BATCH = 10  # punches per message
DAY = "2026-11-02"


class Gate:
    """The gate's side of MQTT: publishes its next punches, records when each ack arrives."""

    def __init__(self, port: int, bodies: list[bytes], sent: int):
        self.bodies, self.sent = bodies, sent
        self.acks: list[tuple[float, int]] = []  # (wall time, acked seq)
        self.published: list[tuple[float, int]] = []  # (wall time, last seq of the message)
        self._keys = parse_bank_keys(BANK_PUBLIC)
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="evidence-gate", protocol=paho.MQTTv5)
        self.client.on_message = self._on_ack
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda client, *a: client.subscribe([(GateTopics(SITE, GATE).ack, 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_ack(self, client, userdata, message) -> None:
        ack = Ack.decode(message.payload, site=SITE, gate=GATE, keys=self._keys)
        with self._lock:
            self.acks.append((time.time(), ack.seq))

    def publish(self) -> int:
        last = min(len(self.bodies), self.sent + BATCH)
        self.published.append((time.time(), last))
        self.client.publish(GateTopics(SITE, GATE).punch, encode_punch_bodies(self.bodies[self.sent:last]), qos=1)
        self.sent = last
        return last

    def acked(self) -> int:
        with self._lock:
            return max((seq for _, seq in self.acks), default=0)

    def acked_at(self, seq: int) -> float | None:
        with self._lock:
            return next((moment for moment, acked in self.acks if acked >= seq), None)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _request(setup: CollectorSetup, first: str, last: str) -> int:
    with setup.store() as store:
        return store.request_evidence("W1", first, last, by="worker link issued 2026-11-01T00:00:00.000Z")["id"]


def _state(setup: CollectorSetup, number: int) -> dict:
    with setup.store(readonly=True) as store:
        return store.evidence_request(number)


def test_acks_flow_while_evidence_is_built_and_a_build_past_its_memory_fails(tmp_path, broker):
    start = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
    bodies = signed_bodies(SEED, SITE, GATE, HELD + MORE, start, version=2)
    setup = CollectorSetup.create(tmp_path / "bank", broker=broker, evidence={"memory_megabytes": 4096})
    with setup.store() as store:
        store.add_site(SITE, timezone="Asia/Shanghai", name="Site one")
        store.add_gate(SITE, GATE, public_keys(SEED, SITE, 1)[GATE])
        store.add_worker("W1", name="Worker one", employer="E", cards=["BE000001"], sites=[SITE])
        ingestor, now = Ingestor(store), format_time(datetime.now(UTC))
        for first in range(0, HELD, 500):
            ingestor.ingest([Incoming(GateTopics(SITE, GATE).punch, encode_punch_bodies(bodies[first:first + 500]),
                                      now)])
        ingestor.flush_log(force=True)
    daemon = setup.start()
    gate = Gate(broker.port, bodies, HELD)
    try:
        # The daemon ingests and acks before anything is asked (subscribed once it published the roster).
        wait_for(lambda: "roster of S1 published" in setup.log(), timeout=30, message="the daemon subscribed")
        seq = gate.publish()
        wait_for(lambda: gate.acked() >= seq, timeout=30, message="the first ack")

        number = _request(setup, DAY, DAY)
        wait_for(lambda: _state(setup, number)["state"] != "pending", timeout=30, message="the build started")
        while _state(setup, number)["state"] == "working":
            gate.publish()
            time.sleep(0.1)
        built = _state(setup, number)
        assert built["state"] == "done", built
        claimed, finished = (parse_time(built[k]).timestamp() for k in ("claimed_at", "finished_at"))
        during = [(moment, seq) for moment, seq in gate.published if claimed < moment and moment < finished - 1.0]
        assert len(during) >= 3, f"the build ({finished - claimed:.1f} s) was too short to publish during it"
        late = [(seq, gate.acked_at(seq)) for _, seq in during if (gate.acked_at(seq) or 1e99) > finished]
        assert not late, f"punches published during the build were acknowledged only after it: {late[:5]}"
        latencies = sorted(gate.acked_at(seq) - moment for moment, seq in during)
        print(f"\nbuild of {HELD} punches' evidence: {finished - claimed:.1f} s; {len(during)} messages published "
              f"during it; ack latency median {1000 * latencies[len(latencies) // 2]:.0f} ms, "
              f"max {1000 * latencies[-1]:.0f} ms")
        # The child logs after it stored the file, into the daemon's log.
        wait_for(lambda: f"evidence request {number} for worker W1 ({DAY}..{DAY}) signed" in setup.log(),
                 message="the builder's log line")
        assert f"evidence request {number} for worker W1 ({DAY}..{DAY}): building in process" in setup.log()

        # A build past its memory cap: the request fails with the reason; the daemon keeps ingesting.
        assert stop_process(daemon) == 0
        setup.write_config(evidence={"memory_megabytes": 64})
        daemon = setup.start()
        wait_for(lambda: setup.log().count("collector stopped") == 1 and setup.log().count(" running: ") == 2,
                 timeout=30, message="the daemon restarted")
        number = _request(setup, "2026-11-01", DAY)
        wait_for(lambda: _state(setup, number)["state"] == "failed", timeout=60, message="the capped build failed")
        assert "the file needs more memory than the 64 MB the bank allows" in _state(setup, number)["reason"]
        seq = gate.publish()
        wait_for(lambda: gate.acked() >= seq, timeout=30, message="acks after the failed build")
        assert daemon.poll() is None

        # Stopped mid-build, the daemon exits cleanly and the request waits for the next start.
        assert stop_process(daemon) == 0
        setup.write_config(evidence={"memory_megabytes": 4096})
        daemon = setup.start()
        number = _request(setup, DAY, "2026-11-03")
        wait_for(lambda: _state(setup, number)["state"] == "working", timeout=30, message="the build started")
        assert stop_process(daemon) == 0
        given_back = _state(setup, number)
        assert given_back["state"] == "pending" and given_back["attempts"] == 0, given_back
        assert "given back unbuilt" in setup.log()
    finally:
        gate.close()
        stop_process(daemon)
