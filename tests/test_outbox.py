"""The gate's durable outbox: chained appends, acknowledgements, pruning, and crash consistency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_agent.keys import generate_key_file
from gate_agent.outbox import AckResult, Outbox, OutboxError
from gate_agent.protocol import GENESIS, Ack, Roster, key_id, verify_chain
from tests.helpers import FakeClock


def append(outbox, clock, card="04A1B2C3D4E5F6"):
    return outbox.append(card=card, tech="iso14443a", reader="udp:test", direction="in", roster="none", clock=clock)


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def test_appends_are_signed_chained_and_numbered_from_one(tmp_path, key):
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        punches = [append(outbox, clock) for _ in range(5)]
        assert [p.seq for p in punches] == [1, 2, 3, 4, 5]
        assert punches[0].prev == GENESIS
        verify_chain(outbox.punches(), {key_id(key.public_key()): key.public_key()})
        status = outbox.status()
        assert (status.last_seq, status.acked_seq, status.pending) == (5, 0, 5)
        assert status.oldest_pending_at == punches[0].time


def test_sequence_continues_after_reopening(tmp_path, key):
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        first = append(outbox, clock)
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        second = append(outbox, clock)
    assert second.seq == 2 and second.prev == first.digest()


def test_a_data_dir_belongs_to_one_gate(tmp_path, key):
    Outbox(tmp_path, "S1", "north", key=key).close()
    with pytest.raises(OutboxError, match="belongs to gate S1/north"):
        Outbox(tmp_path, "S1", "south", key=key)


def test_ack_needs_the_same_digest_and_never_goes_beyond_the_head(tmp_path, key):
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        punches = [append(outbox, clock) for _ in range(3)]
        assert outbox.acknowledge(Ack(2, "0" * 64)) is AckResult.DIGEST_MISMATCH
        assert outbox.acknowledge(Ack(9, punches[2].digest())) is AckResult.BEYOND_HEAD
        assert outbox.acked_seq == 0
        assert outbox.acknowledge(Ack(2, punches[1].digest())) is AckResult.ADVANCED
        assert outbox.acknowledge(Ack(1, punches[0].digest())) is AckResult.STALE
        assert outbox.status().pending == 1
        assert outbox.status().oldest_pending_at == punches[2].time


def test_prune_removes_only_acknowledged_punches_past_retention(tmp_path, key):
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        punches = [append(outbox, clock) for _ in range(4)]
        outbox.acknowledge(Ack(2, punches[1].digest()))
        clock.advance(10 * 86400)
        assert outbox.prune(7, clock.now()) == 2
        assert [p.seq for p in outbox.punches()] == [3, 4]
        # Unacknowledged punches stay however old they are.
        clock.advance(1000 * 86400)
        assert outbox.prune(7, clock.now()) == 0
        assert outbox.status().pending == 2
        # The sequence goes on after a prune.
        assert append(outbox, clock).seq == 5


def test_roster_is_kept_across_restarts(tmp_path, key):
    roster = Roster("S1", "2026-11-28T06:00:00.000Z", frozenset({"DEADBEEF"}))
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        assert outbox.load_roster() is None
        outbox.save_roster(roster)
    with Outbox(tmp_path, "S1", "north", readonly=True) as outbox:
        assert outbox.load_roster() == roster


def test_last_taps_of_this_boot_for_debounce(tmp_path, key):
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=key) as outbox:
        append(outbox, clock, card="AAAAAAAA")
        clock.advance(30)
        append(outbox, clock, card="BBBBBBBB")
        assert outbox.last_taps("boot-a", clock.mono - 10_000) == {"BBBBBBBB": clock.mono}
        assert outbox.last_taps("other-boot", 0) == {}


def test_readonly_open_of_a_missing_outbox_says_so(tmp_path):
    with pytest.raises(OutboxError, match="does not exist"):
        Outbox(tmp_path / "nothing", "S1", "north", readonly=True)


WRITER = """
import sys
from gate_agent.clock import SystemClock
from gate_agent.keys import load_private_key
from gate_agent.outbox import Outbox
outbox = Outbox(sys.argv[1], "S1", "north", key=load_private_key(sys.argv[2]))
clock = SystemClock()
print("ready", flush=True)
while True:
    outbox.append(card="04A1B2C3D4E5F6", tech="iso14443a", reader="udp:test", direction="in", roster="none",
                  clock=clock)
"""


def test_sigkill_while_appending_leaves_no_gap_and_an_intact_chain(tmp_path):
    """A writer killed at random instants, many times over: every reopen finds a whole chain."""
    key_file = tmp_path / "gate.key"
    key = generate_key_file(key_file)
    keys = {key_id(key.public_key()): key.public_key()}
    data_dir = tmp_path / "data"
    heads = []
    for round_number in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(data_dir), str(key_file)],
                                  stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.037 * (round_number % 5))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with Outbox(data_dir, "S1", "north") as outbox:
            punches = outbox.punches()
            head = outbox.head_seq
            assert [p.seq for p in punches] == list(range(1, head + 1)), "a gap in the sequence"
            verify_chain(punches, keys)
            assert punches[-1].digest() == outbox.head_digest
        heads.append(head)
    assert heads == sorted(heads) and heads[-1] > heads[0] > 0, heads
