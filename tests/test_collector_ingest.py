"""Ingest on a real SQLite file: every message ends stored once, duplicate, equivocation or quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import DatabaseError, Store
from gate_agent.protocol import (
    MAX_MESSAGE_BYTES,
    GateTopics,
    encode_punches,
    encode_status,
    format_time,
    utc_now_text,
)
from tests.helpers import PunchFactory, heartbeat

TOPIC = GateTopics("S1", "north").punch


@pytest.fixture
def store(database):
    store = Store(database)
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_site("S2", timezone="Asia/Shanghai")
    yield store
    store.close()


@pytest.fixture
def gate(store):
    factory = PunchFactory()
    store.add_gate("S1", "north", factory.public_key)
    return factory


@pytest.fixture
def ingestor(store):
    return Ingestor(store)


def incoming(payload: bytes, topic: str = TOPIC, received_at: str | None = None) -> Incoming:
    return Incoming(topic, payload, received_at or utc_now_text())


def send(ingestor, *punches, topic=TOPIC):
    return ingestor.ingest([incoming(encode_punches(list(punches)), topic)])


def stored(store):
    return [(r["seq"], r["card"]) for r in store.punches(site="S1")]


def quarantine_reasons(store):
    return [r["reason"] for r in store.quarantined()]


def test_a_punch_is_stored_once_and_acked(ingestor, gate, store):
    punch = gate.next()
    result = send(ingestor, punch)
    assert stored(store) == [(1, punch.card)]
    assert result.acks[("S1", "north")].seq == 1 and result.acks[("S1", "north")].digest == punch.digest()
    row = store.punches(site="S1")[0]
    assert row["body"] == punch.to_json() and row["digest"] == punch.digest() and row["source"] == "mqtt"


def test_an_identical_redelivery_is_counted_and_ignored(ingestor, gate, store):
    punch = gate.next()
    send(ingestor, punch)
    again = send(ingestor, punch)
    assert stored(store) == [(1, punch.card)]
    assert again.counts["duplicates"] == 1 and again.acks[("S1", "north")].seq == 1
    assert store.counters()["duplicates"] == 1 and store.quarantined() == []


def test_equivocation_keeps_both_and_lets_neither_win(ingestor, gate, store):
    first = gate.next(card="04A1B2C3D4E5F6")
    send(ingestor, first)
    twin = PunchFactory(key=gate.key)
    other = twin.next(card="DEADBEEF")  # same gate key, same seq 1, different content
    result = send(ingestor, other)
    assert result.counts["equivocations"] == 1
    assert stored(store) == [(1, "04A1B2C3D4E5F6")]
    assert "equivocated" in store.punches(site="S1")[0]["flags"]
    conflict = store.conflicts()[0]
    assert conflict["kind"] == "equivocation" and conflict["other_digest"] == other.digest()
    assert conflict["stored_digest"] == first.digest()
    # Seeing the second version again is not a second equivocation.
    assert send(ingestor, other).counts["equivocations"] == 0
    assert store.counters()["equivocations"] == 1


def test_out_of_order_arrival_gaps_and_contiguous_acks(ingestor, gate, store):
    punches = [gate.next() for _ in range(5)]
    result = send(ingestor, punches[0], punches[1], punches[3])
    assert result.acks[("S1", "north")].seq == 2
    assert store.open_gaps("S1", "north") == [(3, 3)]
    result = send(ingestor, punches[4])
    assert result.acks[("S1", "north")].seq == 2
    result = send(ingestor, punches[2])
    assert result.acks[("S1", "north")].seq == 5
    assert result.acks[("S1", "north")].digest == punches[4].digest()
    assert store.open_gaps("S1", "north") == []
    assert [s for s, _ in stored(store)] == [1, 2, 3, 4, 5]


def test_a_gap_at_the_start_is_a_gap(ingestor, gate, store):
    punches = [gate.next() for _ in range(3)]
    result = send(ingestor, punches[2])
    assert ("S1", "north") not in result.acks
    assert store.open_gaps("S1", "north") == [(1, 2)]


def test_a_chain_break_is_flagged_with_evidence(ingestor, gate, store):
    first = gate.next()
    second = gate.next()
    # A validly signed seq 2 whose prev is not the held seq 1.
    fork = PunchFactory(key=gate.key)
    fork.next(card="DEADBEEF")
    forked_second = fork.next()
    send(ingestor, first, forked_second)
    assert store.conflicts()[0]["kind"] == "chain_break"
    assert "chain_break" in store.punches(site="S1")[1]["flags"]
    assert second.prev == first.digest()


def test_a_successor_arriving_first_is_checked_when_the_predecessor_comes(ingestor, gate, store):
    first, second = gate.next(), gate.next()
    fork = PunchFactory(key=gate.key)
    forked_first = fork.next(card="DEADBEEF")
    send(ingestor, second)
    send(ingestor, forked_first)
    assert [c["seq"] for c in store.conflicts()] == [2]
    assert first.digest() != forked_first.digest()


def test_a_batch_with_one_bad_punch_keeps_the_good_ones(ingestor, gate, store):
    good1, good2 = gate.next(), gate.next()
    bad = json.loads(good2.to_json())
    bad["card"] = "DEADBEEF"
    payload = json.dumps({"v": 1, "punches": [json.loads(good1.to_json()), bad, json.loads(good2.to_json())]})
    send_result = ingestor.ingest([incoming(payload.encode())])
    assert stored(store) == [(1, good1.card), (2, good2.card)]
    assert quarantine_reasons(store) == ["bad_signature"]
    assert send_result.counts["quarantined_bad_signature"] == 1


FORGER = Ed25519PrivateKey.generate()


@pytest.mark.parametrize("make, topic, reason", [
    (lambda g: b"garbage \x00\xff", TOPIC, "malformed"),
    (lambda g: b"{}", TOPIC, "schema"),
    (lambda g: b" " * (MAX_MESSAGE_BYTES + 1), TOPIC, "oversized"),
    (lambda g: json.dumps({"v": 2, "punches": []}).encode(), TOPIC, "unsupported_version"),
    (lambda g: encode_punches([PunchFactory(key=FORGER).next()]), TOPIC, "unknown_key"),
    (lambda g: encode_punches([PunchFactory(gate="east").next()]), GateTopics("S1", "east").punch, "unknown_gate"),
    (lambda g: encode_punches([PunchFactory(site="S2", key=g.key).next()]), GateTopics("S2", "north").punch,
     "site_mismatch"),
    (lambda g: encode_punches([g.next()]), GateTopics("S2", "north").punch, "topic_mismatch"),
    (lambda g: encode_punches([g.next()]), "attendance/v1/S1/north/other", "topic"),
    (lambda g: encode_punches([g.next()]), "not/our/topic", "topic"),
])
def test_bad_input_is_quarantined_with_its_reason(ingestor, gate, store, make, topic, reason):
    result = ingestor.ingest([incoming(make(gate), topic)])
    assert stored(store) == []
    assert quarantine_reasons(store) == [reason]
    assert result.counts[f"quarantined_{reason}"] == 1 and store.counters()[f"quarantined_{reason}"] == 1
    row = store.quarantined()[0]
    assert row["topic"] == topic and row["detail"] and row["received_at"]
    assert len(row["raw"]) <= 4096 and row["size"] >= len(row["raw"])


def test_a_flipped_byte_in_a_real_punch_is_quarantined(ingestor, gate, store):
    payload = bytearray(encode_punches([gate.next(card="04A1B2C3D4E5F6")]))
    index = payload.index(b"04A1B2C3D4E5F6")
    payload[index + 3] = ord("9")
    ingestor.ingest([incoming(bytes(payload))])
    assert quarantine_reasons(store) == ["bad_signature"] and stored(store) == []


def test_inactive_gates_and_revoked_keys_are_refused(ingestor, gate, store):
    store.set_gate_active("S1", "north", False)
    send(ingestor, gate.next())
    store.set_gate_active("S1", "north", True)
    from gate_agent.protocol import key_id, parse_public_key

    store.revoke_key("S1", "north", key_id(parse_public_key(gate.public_key)))
    send(ingestor, gate.next())
    assert quarantine_reasons(store) == ["gate_inactive", "key_revoked"]


def test_key_rotation_keeps_old_punches_valid(ingestor, gate, store):
    old = gate.next()
    new_key = Ed25519PrivateKey.generate()
    from gate_agent.protocol import public_key_text

    assert store.add_gate("S1", "north", public_key_text(new_key.public_key())) == "rotated"
    gate.key = new_key
    new = gate.next()
    send(ingestor, new)
    send(ingestor, old)  # signed before the rotation, arriving after it
    assert [s for s, _ in stored(store)] == [1, 2] and store.quarantined() == []


def test_a_gate_registered_after_the_collector_started_is_seen(tmp_path, store, ingestor):
    late = PunchFactory(gate="late")
    send(ingestor, late.next(), topic=GateTopics("S1", "late").punch)
    assert quarantine_reasons(store) == ["unknown_gate"]
    other = Store(store.location)  # an admin command's own connection
    other.add_gate("S1", "late", late.public_key)
    other.close()
    send(ingestor, late.next(), topic=GateTopics("S1", "late").punch)
    assert store.punch_count() == 1


def test_clock_flags_never_rewrite_the_signed_time(ingestor, gate, store):
    now = datetime.now(UTC)
    unsynced = gate.next(at=now - timedelta(minutes=5), synced=False)
    future = gate.next(at=now + timedelta(hours=2))
    backwards = gate.next(at=now - timedelta(hours=3))
    ancient = gate.next(at=datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    send(ingestor, unsynced, future, backwards, ancient)
    rows = store.punches(site="S1")
    by_seq = {r["seq"]: r for r in rows}
    assert "clock_unsynced" in by_seq[1]["flags"]
    assert "clock_future" in by_seq[2]["flags"]
    assert "clock_backwards" in by_seq[3]["flags"]
    assert "clock_implausible" in by_seq[4]["flags"]
    assert by_seq[2]["time"] == format_time(future.moment)


def test_status_messages_are_kept_and_bad_ones_quarantined(ingestor, gate, store):
    status_topic = GateTopics("S1", "north").status
    payload = encode_status("online", **heartbeat(last_seq=3, pending=2, acked_seq=1,
                                                  oldest_pending_at="2026-11-28T06:12:02.123Z"))
    result = ingestor.ingest([incoming(payload, status_topic), incoming(b"{not json", status_topic)])
    assert store.gate_status("S1", "north")["pending"] == 2
    assert result.statuses[("S1", "north")]["last_seq"] == 3
    assert quarantine_reasons(store) == ["malformed"]


def test_a_burst_is_one_transaction(ingestor, gate, store, monkeypatch):
    """If the database fails mid-burst, nothing of the burst is kept (and so nothing is acked)."""
    punches = [gate.next() for _ in range(3)]
    calls = {"n": 0}
    original = store.insert_punch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise DatabaseError("database or disk is full")
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "insert_punch", failing)
    with pytest.raises(DatabaseError):
        ingestor.ingest([incoming(encode_punches([p])) for p in punches])
    monkeypatch.undo()
    assert stored(store) == [] and store.counters() == {}
    assert send(ingestor, *punches).acks[("S1", "north")].seq == 3


def test_a_bug_costs_one_message_visibly_and_leaves_nothing_of_it(ingestor, gate, store, monkeypatch):
    """An unexpected error half-way through a message rolls back that message alone (savepoint) and
    quarantines it as internal_error; the rest of the burst is stored."""
    now = datetime.now(UTC)
    first, second = gate.next(at=now - timedelta(hours=1)), gate.next(at=now - timedelta(hours=3))
    other = PunchFactory(gate="south")
    store.add_gate("S1", "south", other.public_key)

    def broken(*args, **kwargs):
        raise RuntimeError("bug in flagging")

    monkeypatch.setattr(store, "add_flag", broken)  # the clock_backwards flag of `second` hits it
    result = ingestor.ingest([incoming(encode_punches([first, second])),
                              incoming(encode_punches([other.next()]), GateTopics("S1", "south").punch)])
    assert [(r["gate"], r["seq"]) for r in store.punches(site="S1")] == [("south", 1)]
    assert quarantine_reasons(store) == ["internal_error"]
    assert result.counts["stored"] == 1 and result.counts["quarantined_internal_error"] == 1
