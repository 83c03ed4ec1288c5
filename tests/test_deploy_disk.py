"""Disk bounds at the gate: a warning at 80 %, taps refused with their own signal at 100 %, no
unacknowledged punch ever deleted to make room, and taps recorded again once acks and pruning free it."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime

import pytest

from gate_agent.feedback import GpioFeedback, Signal
from gate_agent.outbox import Outbox
from gate_agent.protocol import Ack, GateTopics, key_id, parse_public_key, verify_chain
from gate_agent.reader import acr122_led_buzzer_apdu
from tests.helpers import Listener, fill_outbox, outbox_status, signed_ack, stop_process, wait_for

LIMIT_MB = 1
LIMIT = LIMIT_MB * 1024 * 1024


def used(gate) -> int:
    with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
        return outbox.bytes_used()


def fill_to(gate, fraction: float) -> None:
    """Punches as a long outage leaves them, until the outbox holds ``fraction`` of the limit."""
    while used(gate) < fraction * LIMIT:
        fill_outbox(gate, 100)


def test_pruning_acknowledged_punches_frees_the_buffer_though_the_file_keeps_its_size(gate):
    fill_to(gate, 1.0)
    with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
        size_before = outbox.bytes_on_disk()
        head = outbox.head_seq
        outbox.acknowledge(Ack(head, outbox.punches(head, head)[0].digest()))
        assert outbox.prune(0, datetime.now(UTC)) == head
        # SQLite keeps freed pages in the file: its size is no measure of what the buffer holds.
        assert outbox.bytes_on_disk() >= size_before * 0.9
        assert outbox.bytes_used() < 0.05 * LIMIT


def heartbeats(listener) -> list[dict]:
    return [json.loads(m.payload) for m in listener.received("/status") if json.loads(m.payload)["state"] == "online"]


@pytest.mark.slow
def test_a_full_buffer_refuses_taps_with_their_own_signal_and_keeps_every_punch(gate, broker):
    gate.write_config(max_buffer_mb=LIMIT_MB)
    topics = GateTopics(gate.site, gate.gate)
    fill_to(gate, 0.85)
    bank = Listener(broker.port, topics.status)  # plays the bank: sees heartbeats, sends the ack
    agent = gate.start_agent()
    log = gate.directory / "agent.log"
    try:
        warned = wait_for(lambda: [h for h in heartbeats(bank) if h["buffer_warning"]], message="buffer warning")
        assert 80 <= warned[-1]["buffer_pct"] < 100
        gate.tap("04A1B2C3D4E5F6")  # still room: recorded, and the journal hears about the buffer
        wait_for(lambda: "signal recorded" in log.read_text(), message="the tap recorded")
        # The journal says how full, as the heartbeat did (one tap's punch more; a fill step may end anywhere
        # from 80 to 99 %).
        said = re.search(r"buffer (\d+) % full", log.read_text())
        assert said and 80 <= int(said.group(1)) < 100 and abs(int(said.group(1)) - warned[-1]["buffer_pct"]) <= 2

        fill_to(gate, 1.0)
        full = outbox_status(gate)
        gate.tap("CAFEBABE")
        wait_for(lambda: "signal not_recorded" in log.read_text(), message="the refusal")
        refusal = [line for line in log.read_text().splitlines() if "signal not_recorded" in line][0]
        assert " ERROR " in refusal and "card CAFEBABE NOT recorded: buffer full" in refusal
        assert outbox_status(gate) == full, "a refused tap changed the outbox"
        with Outbox(gate.data_dir, gate.site, gate.gate, readonly=True) as outbox:
            punches = outbox.punches()
        assert [p.seq for p in punches] == list(range(1, full["last_seq"] + 1)), "a punch was deleted"
        key = parse_public_key(gate.public_key)
        verify_chain(punches, {key_id(key): key})
        assert full["pending"] == full["last_seq"]

        # The bank acknowledges everything; acknowledged punches past their retention are pruned (the
        # link does this hourly with retention_days; here at once, with retention 0).
        bank.publish(topics.ack, signed_ack(gate.site, gate.gate, punches[-1].seq, punches[-1].digest()))
        wait_for(lambda: outbox_status(gate)["pending"] == 0, message="the ack")
        with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
            assert outbox.prune(0, datetime.now(UTC)) == len(punches)
        gate.tap("CAFEBABE")
        wait_for(lambda: outbox_status(gate)["last_seq"] == full["last_seq"] + 1, message="a tap recorded again")
        assert f"signal recorded: seq {full['last_seq'] + 1} card CAFEBABE" in log.read_text()
        seen = len(heartbeats(bank))
        calm = wait_for(lambda: heartbeats(bank)[seen:], message="a heartbeat after the prune")
        assert calm[-1]["buffer_warning"] is False and calm[-1]["buffer_pct"] < 10
    finally:
        stop_process(agent, signal.SIGKILL)
        bank.close()


def test_not_recorded_has_a_signal_of_its_own_on_every_backend():
    apdus = {signal: acr122_led_buzzer_apdu(signal) for signal in Signal}
    assert len(set(apdus.values())) == len(Signal), "two outcomes sound alike on the ACR122U"
    patterns = GpioFeedback.PATTERNS
    assert len({patterns[s] for s in Signal}) == len(Signal), "two outcomes look alike on the GPIO LEDs"
