"""The whole chain with real parts: Mosquitto, the collector daemon, the gate agent, virtual cards."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from gate_agent.protocol import (
    Ack,
    GateTopics,
    Punch,
    Resend,
    encode_punches,
    key_id,
    parse_public_key,
    verify_chain,
)
from tests.helpers import (
    BANK_KEYS,
    GateSetup,
    Listener,
    PunchFactory,
    fill_outbox,
    outbox_status,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def agent(gate, collector_process):
    process = gate.start_agent()
    wait_for(lambda: "connected to" in (gate.directory / "agent.log").read_text(), message="agent connected")
    yield process
    stop_process(process, signal.SIGKILL)


def stored_seqs(collector, site="S1", gate="north") -> list[int]:
    return [r[0] for r in collector.rows("SELECT seq FROM punches WHERE site = ? AND gate = ? ORDER BY seq", site, gate)]


def test_taps_reach_the_collector_and_the_gate_forgets_them(gate, collector, agent):
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
    wait_for(lambda: stored_seqs(collector) == [1, 2, 3], message="three punches stored")
    wait_for(lambda: outbox_status(gate)["pending"] == 0, message="pending 0 at the gate")
    rows = collector.json("punches", "--site", "S1")
    assert [r["card"] for r in rows] == ["04A1B2C3D4E5F6", "DEADBEEF", "04112233445566"]
    assert all({"gate", "seq", "time", "card", "worker", "direction", "flags"} <= set(r) for r in rows)
    gates = wait_for(lambda: [g for g in collector.json("gates") if g["reported_pending"] == 0],
                     message="a heartbeat reporting pending 0")
    assert gates[0]["state"] == "online" and gates[0]["contiguous_seq"] == 3 and gates[0]["open_gaps"] == []


def test_collector_sigkill_mid_burst_loses_and_doubles_nothing(gate, collector, broker):
    fill_outbox(gate, 6000)
    process = collector.start()
    agent = gate.start_agent()
    try:
        wait_for(lambda: 0 < len(stored_seqs(collector)) < 6000, timeout=60, message="ingest under way")
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = len(stored_seqs(collector))
        process = collector.start()
        wait_for(lambda: len(stored_seqs(collector)) == 6000, timeout=120, message="all 6000 stored")
        wait_for(lambda: outbox_status(gate)["pending"] == 0, timeout=60, message="pending 0")
    finally:
        stop_process(agent, signal.SIGKILL)
        stop_process(process)
    assert 0 < killed_at < 6000
    assert stored_seqs(collector) == list(range(1, 6001))
    with collector.store() as store:
        punches = [Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")]
    key = parse_public_key(gate.public_key)
    verify_chain(punches, {key_id(key): key})


def test_ten_taps_across_a_gate_kill_and_a_broker_restart(gate, collector, broker, collector_process):
    agent = gate.start_agent()
    try:
        gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        agent = gate.start_agent()
        gate.tap("11223344", "55667788", "99AABBCC")
        broker.stop()
        gate.tap("04A1B2C3D4E5F6", "DEADBEEF")
        broker.start()
        gate.tap("11223344", "55667788")
        wait_for(lambda: len(stored_seqs(collector)) == 10, timeout=90, message="ten punches stored")
        wait_for(lambda: outbox_status(gate)["pending"] == 0, timeout=60, message="pending 0")
    finally:
        stop_process(agent, signal.SIGKILL)
    assert stored_seqs(collector) == list(range(1, 11))
    assert outbox_status(gate)["last_seq"] == 10


def test_forged_and_garbage_messages_are_quarantined_and_change_nothing_else(gate, collector, agent, broker):
    gate.tap("04A1B2C3D4E5F6")
    wait_for(lambda: stored_seqs(collector) == [1], message="one punch")
    with collector.store() as store:
        body = store.gate_punch_bodies("S1", "north")[0]
    before = collector.run("punches", "--site", "S1", "--json").stdout
    message = bytearray(b'{"v":1,"punches":[' + body + b"]}")
    index = message.index(b'"card":"04A1') + len('"card":"04A1')
    message[index] = ord("C")  # one byte of the card UID
    for payload in (bytes(message), b"\x00\x01garbage"):
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", "attendance/v1/S1/north/punch",
                        "-s"], input=payload, check=True)
    rows = wait_for(lambda: len(collector.json("quarantine")) == 2 and collector.json("quarantine"),
                    message="two quarantined messages")
    assert [r["reason"] for r in rows] == ["bad_signature", "malformed"]
    assert rows[0]["topic"] == "attendance/v1/S1/north/punch" and "04A1C" in rows[0]["raw"]
    assert collector.run("punches", "--site", "S1", "--json").stdout == before
    assert collector.json("counters")["quarantined"] == 2


def test_a_gap_is_filled_by_a_resend_request(collector, collector_process, broker):
    east = PunchFactory(gate="east")
    collector.run("gate", "add", "east", "--site", "S1", "--public-key", east.public_key)
    topics = GateTopics("S1", "east")
    gate_side = Listener(broker.port, topics.cmd, topics.ack)
    try:
        punches = [east.next() for _ in range(4)]
        gate_side.publish(topics.punch, encode_punches([punches[0]]))
        gate_side.publish(topics.punch, encode_punches([punches[3]]))
        request = wait_for(lambda: gate_side.received("/cmd"), timeout=15, message="a resend request")[0]
        resend = Resend.decode(request.payload, site="S1", gate="east", keys=BANK_KEYS)
        assert (resend.first, resend.last) == (2, 3)
        gate_side.publish(topics.punch, encode_punches(punches[1:3]))
        wait_for(lambda: any(Ack.decode(m.payload, site="S1", gate="east", keys=BANK_KEYS).seq == 4 for m in gate_side.received("/ack")),
                 message="ack of seq 4")
        # Killed the moment the ack is out: the gap was closed with the punches that filled it, not by
        # a housekeeping round that a stop or a crash can forestall.
        stop_process(collector_process, signal.SIGKILL)
        ack = Ack.decode(gate_side.received("/ack")[-1].payload, site="S1", gate="east", keys=BANK_KEYS)
        assert ack == Ack(4, punches[3].digest())
        gaps = collector_gaps(collector)
        assert [(g["first"], g["last"], g["filled_at"] is not None) for g in gaps] == [(2, 3, True)]
        assert gaps[0]["requests"] >= 1
    finally:
        gate_side.close()


def collector_gaps(collector):
    with collector.store() as store:
        return store.gaps()


def test_equivocation_over_mqtt_is_an_alert_with_evidence(collector, collector_process, broker):
    east = PunchFactory(gate="east")
    collector.run("gate", "add", "east", "--site", "S1", "--public-key", east.public_key)
    twin = PunchFactory(gate="east", key=east.key)
    publisher = Listener(broker.port)
    try:
        publisher.publish(GateTopics("S1", "east").punch, encode_punches([east.next(card="DEADBEEF")]))
        publisher.publish(GateTopics("S1", "east").punch, encode_punches([twin.next(card="CAFEBABE")]))
        conflicts = wait_for(lambda: collector.json("conflicts"), message="the conflict")
    finally:
        publisher.close()
    assert conflicts[0]["kind"] == "equivocation" and conflicts[0]["seq"] == 1
    assert "ALERT equivocation" in collector.log()
    assert stored_seqs(collector, gate="east") == [1]


def test_the_roster_reaches_the_gate_and_marks_unknown_cards(gate, collector, agent):
    collector.run("worker", "add", "W1", "--name", "Zhang Wei", "--card", "04A1B2C3D4E5F6", "--site", "S1")
    wait_for(lambda: gate.status()["roster_cards"] == 1, message="roster at the gate")
    gate.tap("04A1B2C3D4E5F6", "CAFEBABE")
    wait_for(lambda: len(stored_seqs(collector)) == 2, message="two punches")
    rows = collector.json("punches", "--site", "S1")
    with collector.store() as store:
        verdicts = [json.loads(b)["roster"] for b in store.gate_punch_bodies("S1", "north")]
    assert verdicts == ["known", "unknown"]
    assert rows[0]["worker"] == "W1" and "unknown_card" in rows[1]["flags"]


def test_a_second_gate_setup_is_independent(tmp_path, broker, collector, collector_process, udp_device):
    south = GateSetup.create(tmp_path / "south", broker=broker, device=udp_device, gate="south")
    collector.run("gate", "add", "south", "--site", "S1", "--public-key", south.public_key)
    process = south.start_agent()
    try:
        south.tap("DEADBEEF")
        wait_for(lambda: stored_seqs(collector, gate="south") == [1], message="south's punch")
        wait_for(lambda: outbox_status(south)["pending"] == 0, message="south pending 0")
    finally:
        stop_process(process, signal.SIGKILL)
