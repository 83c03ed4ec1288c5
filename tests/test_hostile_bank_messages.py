"""What the bank sends to gates, forged by anyone who can publish on the broker.

The broker here has no TLS and no ACLs (the demo's and a careless install's): anyone may publish on a
gate's ack, cmd and roster topics. The gate obeys only messages signed with the bank key it pinned at
enrolment, keeps the newest roster, answers each command once and rate-limits resends.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_agent.link import ResendBudget
from gate_agent.protocol import GateTopics, Punch, Resend, Roster, format_time, utc_now_text
from tests.helpers import BANK_KEY, Listener, outbox_status, signed_ack, stop_process, wait_for

pytestmark = pytest.mark.slow

MALLORY = Ed25519PrivateKey.generate()


@pytest.fixture
def topics(gate):
    return GateTopics(gate.site, gate.gate)


@pytest.fixture
def attacker(broker, topics):
    """A client anyone could run against an open broker: it reads the gate's punches and publishes."""
    client = Listener(broker.port, topics.punch, topics.status)
    yield client
    client.close()


@pytest.fixture
def agent(gate):
    process = gate.start_agent()
    yield process
    stop_process(process, signal.SIGKILL)


def punches(listener) -> list[Punch]:
    found = [Punch.from_dict(p) for p in listener.punches()]
    return sorted({p.seq: p for p in found}.values(), key=lambda p: p.seq)


def agent_log(gate) -> str:
    return (gate.directory / "agent.log").read_text()


def test_a_forged_retained_ack_forgets_nothing(gate, attacker, agent, topics):
    """The collector is down; an attacker reads the digests off the punch topic and acknowledges them,
    retained, in every form it can make: the old unsigned form, signed with its own key, and a genuine
    bank ack for another gate replayed on this gate's topic."""
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF")
    seen = wait_for(lambda: len(punches(attacker)) == 2 and punches(attacker), message="the gate's punches")
    digest = seen[-1].digest()
    forgeries = [
        json.dumps({"v": 1, "seq": 2, "digest": digest}).encode(),
        signed_ack(gate.site, gate.gate, 2, digest, key=MALLORY),
        signed_ack(gate.site, "south", 2, digest),
    ]
    for payload in forgeries:
        attacker.publish(topics.ack, payload, retain=True)
    wait_for(lambda: agent_log(gate).count("ignored a message on " + topics.ack) >= 1, message="the refusal")
    time.sleep(1.5)
    status = outbox_status(gate)
    assert (status["acked_seq"], status["pending"]) == (0, 2)
    log = agent_log(gate)
    assert "not a bank key this side trusts" in log or "ack fields" in log
    # Logged once, then counted: a flood of forgeries does not fill the gate's disk with log lines.
    for _ in range(30):
        attacker.publish(topics.ack, forgeries[1])
    time.sleep(1.0)
    assert agent_log(gate).count("ignored a message on " + topics.ack) <= 2
    # The bank's own ack still works.
    attacker.publish(topics.ack, signed_ack(gate.site, gate.gate, 2, digest), retain=True)
    wait_for(lambda: outbox_status(gate)["pending"] == 0, message="the genuine ack")


def test_an_old_or_forged_roster_never_replaces_a_newer_one(gate, broker, topics):
    publisher = Listener(broker.port)
    now = datetime.now(UTC)
    current = Roster(gate.site, format_time(now - timedelta(minutes=1)), frozenset({"04A1B2C3D4E5F6"}))
    publisher.publish(topics.roster, current.sign(BANK_KEY), retain=True)
    process = gate.start_agent()
    try:
        wait_for(lambda: "roster of S1 issued" in agent_log(gate), message="the bank's roster")
        # An old roster the bank really signed (replayed from 2020), one signed by an attacker with a
        # later date, and one without any signature: each would make every card "unknown".
        replayed = Roster(gate.site, "2020-01-01T00:00:00.000Z", frozenset()).sign(BANK_KEY)
        forged = Roster(gate.site, format_time(now + timedelta(days=1)), frozenset()).sign(MALLORY)
        unsigned = json.dumps({"v": 1, "site": gate.site, "issued": format_time(now), "cards": []}).encode()
        for payload in (replayed, forged, unsigned):
            publisher.publish(topics.roster, payload, retain=True)
        wait_for(lambda: "this gate holds a newer one" in agent_log(gate), message="the old roster refused")
        wait_for(lambda: agent_log(gate).count("ignored a message on " + topics.roster) >= 1,
                 message="the forged rosters refused")
        gate.tap("04A1B2C3D4E5F6")
        wait_for(lambda: outbox_status(gate)["last_seq"] == 1, message="the tap")
    finally:
        stop_process(process)
    listener_punches = [Punch.from_dict(p) for p in _stored_punches(gate)]
    assert listener_punches[0].roster == "known", "a forged or old roster replaced the bank's"
    # After a restart the gate still holds the newest roster it accepted, and still refuses the old one.
    process = gate.start_agent()
    try:
        publisher.publish(topics.roster, Roster(gate.site, "2021-01-01T00:00:00.000Z", frozenset()).sign(BANK_KEY),
                          retain=True)
        wait_for(lambda: agent_log(gate).count("this gate holds a newer one") >= 2, message="refused after restart")
        newer = Roster(gate.site, format_time(datetime.now(UTC)), frozenset({"DEADBEEF"}))
        publisher.publish(topics.roster, newer.sign(BANK_KEY), retain=True)
        wait_for(lambda: agent_log(gate).count("roster of S1 issued") >= 2, message="a newer genuine roster")
    finally:
        stop_process(process)
        publisher.close()


def _stored_punches(gate) -> list[dict]:
    from gate_agent.outbox import Outbox

    with Outbox(gate.data_dir, gate.site, gate.gate, readonly=True) as outbox:
        return [p.to_dict() for p in outbox.punches()]


def test_forged_and_replayed_resend_commands_are_not_obeyed(gate, attacker, agent, topics):
    gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
    seen = wait_for(lambda: len(punches(attacker)) == 3 and punches(attacker), message="three punches")
    attacker.publish(topics.ack, signed_ack(gate.site, gate.gate, 3, seen[-1].digest()))
    wait_for(lambda: outbox_status(gate)["pending"] == 0, message="acknowledged")
    time.sleep(0.5)
    before = len(attacker.received("/punch"))
    # Forged: the old unsigned form and one signed by the attacker.
    attacker.publish(topics.cmd, json.dumps({"v": 1, "cmd": "resend", "from": 1, "to": 3}).encode())
    attacker.publish(topics.cmd, Resend(1, 3).sign(gate.site, gate.gate, utc_now_text(), MALLORY))
    wait_for(lambda: agent_log(gate).count("ignored a message on " + topics.cmd) >= 1, message="refusals")
    time.sleep(1.0)
    assert len(attacker.received("/punch")) == before, "a forged command made the gate publish"
    # A genuine command is answered once; the same signed bytes replayed are not answered again.
    genuine = Resend(1, 3).sign(gate.site, gate.gate, utc_now_text(), BANK_KEY)
    attacker.publish(topics.cmd, genuine)
    wait_for(lambda: len(attacker.received("/punch")) > before, message="the genuine resend answered")
    time.sleep(0.5)
    answered = len(attacker.received("/punch"))
    for _ in range(5):
        attacker.publish(topics.cmd, genuine)
    wait_for(lambda: "already answered or older than the newest" in agent_log(gate), message="the replay refused")
    time.sleep(1.0)
    assert len(attacker.received("/punch")) == answered, "a replayed command was answered again"


def test_resends_are_rate_limited_per_punch():
    """A token bucket of punches: a burst beyond it is answered in part, and it refills over time."""
    now = [0.0]
    budget = ResendBudget(100, per_seconds=30, clock=lambda: now[0])
    assert budget.take(60) == 60
    assert budget.take(60) == 40
    assert budget.take(10) == 0
    now[0] = 3.0  # a tenth of the period: a tenth of the bucket
    assert budget.take(50) == 10
    now[0] = 1000.0
    assert budget.take(1000) == 100
