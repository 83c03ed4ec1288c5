"""Mosquitto with its default queue limits (max_queued_messages 1000, max_inflight_messages 20), not the
bank's (`collector broker-config` bounds queues by bytes), and a deliberately slow collector: the broker
drops what does not fit, silently for the publishers, and the acknowledgement and resend path carries
every punch anyway.

The collector is slow for real: it lets the broker have only two unacknowledged messages in flight
([ingest] receive_maximum = 2), so it commits a transaction (with its fsync) for every one or two
messages, while three gates flood it with single-punch messages from their backlogs.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3

import pytest

from collector.deploy.mosquitto import LocalBroker
from collector.store import Store
from gate_agent.outbox import Outbox
from gate_agent.protocol import Punch, key_id, parse_public_key, verify_chain
from tests.helpers import CollectorSetup, GateSetup, fill_outbox, outbox_status, stop_process, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow

GATES = ("g1", "g2", "g3")
BACKLOG = 1500


@pytest.fixture
def broker(tmp_path):
    instance = LocalBroker(tmp_path / "broker", free_port(), default_queue_limits=True).start()
    yield instance
    instance.kill()


def test_broker_drops_to_a_slow_collector_are_recovered_by_acks_and_resends(tmp_path, broker):
    assert "max_queued" not in broker.config_path.read_text()  # Mosquitto's defaults apply
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker,
                                      ingest={"receive_maximum": 2, "gap_wait_seconds": 1,
                                              "resend_interval_seconds": 3})
    gates = []
    with Store(collector.db_path) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        for name in GATES:
            # One punch per message, as live taps travel; the whole backlog may be in flight at once.
            setup = GateSetup.create(tmp_path / name, broker=broker, gate=name,
                                     device=f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                                     batch_size=1, window=BACKLOG, ack_timeout_seconds=3)
            store.add_gate("S1", name, setup.public_key)
            fill_outbox(setup, BACKLOG)
            gates.append(setup)
    process = collector.start()
    wait_for(lambda: "connected to" in collector.log(), message="collector connected")
    agents = [setup.start_agent() for setup in gates]
    try:
        wait_for(lambda: all(outbox_status(g)["pending"] == 0 for g in gates), timeout=240, interval=0.5,
                 message="every gate's backlog acknowledged")
    finally:
        for agent in agents:
            stop_process(agent, signal.SIGKILL)
        stop_process(process)

    # The broker did drop messages: the punches went through the resend paths, not the first send.
    broker_log = (broker.directory / "mosquitto.log").read_text()
    assert "Outgoing messages are being dropped for client collector" in broker_log
    conn = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True)
    try:
        requested = conn.execute("SELECT COALESCE(SUM(requests), 0) FROM gaps").fetchone()[0]
        open_gaps = conn.execute("SELECT COUNT(*) FROM gaps WHERE filled_at IS NULL").fetchone()[0]
        bad = conn.execute("SELECT (SELECT COUNT(*) FROM conflicts) + (SELECT COUNT(*) FROM quarantine)").fetchone()[0]
    finally:
        conn.close()
    resent_after_timeout = sum((g.directory / "agent.log").read_text().count("no acknowledgement for")
                               for g in gates)
    answered = sum((g.directory / "agent.log").read_text().count("collector asked for") for g in gates)
    print(f"resend requests by the collector: {requested} (answered {answered}); "
          f"resends after ack timeouts: {resent_after_timeout}")
    assert requested + resent_after_timeout > 0
    assert open_gaps == 0 and bad == 0

    # Nothing lost, nothing doubled, every chain whole.
    with Store(collector.db_path, readonly=True) as store:
        for setup in gates:
            bodies = store.gate_punch_bodies("S1", setup.gate)
            punches = [Punch.from_dict(json.loads(b)) for b in bodies]
            assert [p.seq for p in punches] == list(range(1, BACKLOG + 1))
            public = parse_public_key(setup.public_key)
            verify_chain(punches, {key_id(public): public})
            with Outbox(setup.data_dir, "S1", setup.gate, readonly=True) as outbox:
                assert [p.digest() for p in outbox.punches()] == [p.digest() for p in punches]
