"""The running gate agent against a real Mosquitto: delivery, acknowledgement, outages, resends.

A plain MQTT client plays the collector here: it sees what the gate publishes and sends acks.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from gate_agent.outbox import Outbox
from gate_agent.protocol import (
    GateTopics,
    Punch,
    Resend,
    Roster,
    key_id,
    parse_public_key,
    utc_now_text,
    verify_chain,
)
from tests.helpers import BANK_KEY, Listener, fill_outbox, outbox_status, signed_ack, stop_process, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def topics(gate):
    return GateTopics(gate.site, gate.gate)


@pytest.fixture
def listener(broker, topics):
    client = Listener(broker.port, topics.punch, topics.status)
    yield client
    client.close()


@pytest.fixture
def agent(gate):
    process = gate.start_agent()
    yield process
    stop_process(process, signal.SIGKILL)


def received_punches(listener) -> list[Punch]:
    return [Punch.from_dict(p) for p in listener.punches()]


def unique_by_seq(punches):
    return sorted({p.seq: p for p in punches}.values(), key=lambda p: p.seq)


def test_three_taps_are_pending_and_published_signed(gate, listener, agent):
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
    wait_for(lambda: outbox_status(gate)["last_seq"] == 3, message="three punches in the outbox")
    status = gate.status()
    assert (status["last_seq"], status["pending"], status["acked_seq"]) == (3, 3, 0)
    assert status["oldest_pending_at"] is not None
    punches = wait_for(lambda: len(unique_by_seq(received_punches(listener))) == 3 and
                       unique_by_seq(received_punches(listener)), message="three punches on the punch topic")
    assert [p.card for p in punches] == ["04A1B2C3D4E5F6", "DEADBEEF", "04112233445566"]
    key = parse_public_key(gate.public_key)
    verify_chain(punches, {key_id(key): key})
    assert {p.dir for p in punches} == {"in"} and {p.roster for p in punches} == {"none"}


def test_only_a_matching_ack_lets_the_gate_forget(gate, listener, agent, topics):
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
    punches = wait_for(lambda: len(unique_by_seq(received_punches(listener))) == 3 and
                       unique_by_seq(received_punches(listener)), message="three punches")
    listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 2, "0" * 64))  # not the gate's punch 2
    listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 9, punches[2].digest()))  # beyond what the gate wrote
    time.sleep(1.0)
    assert outbox_status(gate)["pending"] == 3
    listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 2, punches[1].digest()))
    wait_for(lambda: outbox_status(gate)["acked_seq"] == 2, message="ack of seq 2")
    assert outbox_status(gate)["pending"] == 1
    log = (gate.directory / "agent.log").read_text()
    assert "differs from this gate's" in log and "has written only 3" in log


def test_unacknowledged_punches_are_resent_and_acked_ones_are_not(gate, listener, agent, topics):
    gate.tap("DEADBEEF")
    first = wait_for(lambda: received_punches(listener), message="the punch")[0]
    # No ack: the gate publishes it again after ack_timeout_seconds (2 s here).
    wait_for(lambda: len(received_punches(listener)) >= 2, timeout=10, message="a resend")
    listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 1, first.digest()))
    wait_for(lambda: outbox_status(gate)["pending"] == 0, message="pending 0 after the ack")
    count = len(received_punches(listener))
    time.sleep(5)
    assert len(received_punches(listener)) == count, "an acknowledged punch was published again"


def test_a_resend_request_is_answered(gate, listener, agent, topics):
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF")
    punches = wait_for(lambda: len(unique_by_seq(received_punches(listener))) == 2 and
                       unique_by_seq(received_punches(listener)), message="two punches")
    listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 2, punches[1].digest()))
    wait_for(lambda: outbox_status(gate)["pending"] == 0, message="acked")
    before = len(received_punches(listener))
    listener.publish(topics.cmd, Resend(1, 2).sign(gate.site, gate.gate, utc_now_text(), BANK_KEY))
    again = wait_for(lambda: received_punches(listener)[before:] if len(received_punches(listener)) >= before + 2
                     else None, message="resent punches")
    assert [p.seq for p in again] == [1, 2] and again == punches


def test_broker_outage_while_tapping_loses_nothing(gate, broker, agent, topics):
    wait_for(lambda: "connected to" in (gate.directory / "agent.log").read_text(), message="agent connected")
    broker.stop()
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
    assert outbox_status(gate)["pending"] == 3  # each tap was on disk before the card left the field
    broker.start()
    listener = Listener(broker.port, topics.punch)
    try:
        punches = wait_for(lambda: len(unique_by_seq(received_punches(listener))) == 3 and
                           unique_by_seq(received_punches(listener)), timeout=40,
                           message="the three punches after the broker returned")
        assert [p.seq for p in punches] == [1, 2, 3]
        assert outbox_status(gate)["pending"] == 3  # broker PUBACKs prove nothing; still pending
        listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 3, punches[2].digest()))
        wait_for(lambda: outbox_status(gate)["pending"] == 0, message="pending 0")
    finally:
        listener.close()


def test_backlog_goes_in_batches_within_the_window(gate, broker, topics):
    """A gate that comes back with a large backlog sends consecutive batches, never more than
    `window` punches beyond the last ack, each punch keeping its own signature."""
    gate.write_config(batch_size=50, window=120)
    fill_outbox(gate, 300)
    listener = Listener(broker.port, topics.punch)
    process = gate.start_agent()
    try:
        wait_for(lambda: len(received_punches(listener)) >= 120, message="the first window")
        time.sleep(1.0)
        sizes = [len(json.loads(m.payload)["punches"]) for m in listener.received("/punch")]
        assert sizes[:3] == [50, 50, 20]
        assert max(p.seq for p in received_punches(listener)) == 120
        last = unique_by_seq(received_punches(listener))[-1]
        listener.publish(topics.ack, signed_ack(gate.site, gate.gate, 120, last.digest()))
        punches = wait_for(lambda: len(unique_by_seq(received_punches(listener))) == 240 and
                           unique_by_seq(received_punches(listener)), message="the second window")
        public = parse_public_key(gate.public_key)
        verify_chain(punches, {key_id(public): public})
    finally:
        listener.close()
        stop_process(process, signal.SIGKILL)


def test_status_is_retained_with_counters_and_offline_on_stop(gate, broker, topics):
    process = gate.start_agent()
    try:
        gate.tap("DEADBEEF")
        wait_for(lambda: outbox_status(gate)["last_seq"] == 1, message="one punch")
        time.sleep(1.5)  # a heartbeat after the tap
        late = Listener(broker.port, topics.status)  # subscribes after the fact: retained status
        status = json.loads(wait_for(lambda: late.received(), message="retained status")[-1].payload)
        assert status["state"] == "online"
        assert status["last_seq"] == 1 and status["pending"] == 1 and status["acked_seq"] == 0
        assert status["version"] and status["reader"] == "ok" and isinstance(status["synced"], bool)
        late.close()
    finally:
        assert stop_process(process) == 0
    after = Listener(broker.port, topics.status)
    status = json.loads(wait_for(lambda: after.received(), message="status after stop")[-1].payload)
    assert status["state"] == "offline"
    after.close()


def test_last_will_says_offline_when_the_agent_dies(gate, broker, topics):
    gate.write_config(mqtt={"keepalive": 5})
    process = gate.start_agent()
    listener = Listener(broker.port, topics.status)
    try:
        wait_for(lambda: any(json.loads(m.payload)["state"] == "online" for m in listener.received()),
                 message="online status")
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_for(lambda: json.loads(listener.received()[-1].payload)["state"] == "offline", timeout=20,
                 message="the last will")
    finally:
        listener.close()


def test_roster_verdicts_and_debounce(gate, broker, topics):
    gate.write_config(debounce_seconds=60)
    publisher = Listener(broker.port)
    roster = Roster(gate.site, "2026-11-28T06:00:00.000Z", frozenset({"04A1B2C3D4E5F6"}))
    publisher.publish(topics.roster, roster.sign(BANK_KEY), retain=True)
    process = gate.start_agent()
    try:
        wait_for(lambda: "roster of S1" in (gate.directory / "agent.log").read_text(), message="roster")
        gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04A1B2C3D4E5F6")
        time.sleep(0.5)
    finally:
        stop_process(process)
        publisher.close()
    with Outbox(gate.data_dir, gate.site, gate.gate, readonly=True) as outbox:
        punches = outbox.punches()
        assert outbox.load_roster() == roster
    assert [(p.card, p.roster) for p in punches] == [("04A1B2C3D4E5F6", "known"), ("DEADBEEF", "unknown")]
    log = (gate.directory / "agent.log").read_text()
    assert "signal unknown_card" in log and "signal duplicate" in log and "not a new punch" in log
