"""Writing a format 2 evidence file (collector/evidence/build2.py) where the bank's history is uneven: a
card that changed hands, a gate upgraded within the period, a punch not delivered yet, a gate key the
register lacks, kept days from before shifts carried their milliseconds; each file the builder hands out
verifies, and what it cannot prove it refuses with a reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from collector.evidence.document import build_evidence, days_id, evidence_body, stated_days, verify_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, StoreError
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_KEY, BANK_KEYS, PunchFactory

W1, W2 = "04A1B2C3D4E5F6", "DEADBEEF"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))


class Bank:
    def __init__(self, store: Store, *versions: int):
        self.store = store
        self.ingestor = Ingestor(store)
        store.add_site("S1", timezone="Asia/Shanghai")
        self.gates = {}
        for index, version in enumerate(versions or (3,)):
            name = f"g{index}"
            self.gates[name] = PunchFactory(gate=name, version=version)
            store.add_gate("S1", name, self.gates[name].public_key)
        store.execute("UPDATE gate_keys SET added_at = '2026-09-01T00:00:00.000Z'")

    def tap(self, card: str, direction: str, when: str, gate: str = "g0", *, deliver: bool = True):
        moment = datetime.fromisoformat(when).replace(tzinfo=UTC)
        punch = self.gates[gate].next(card=card, direction=direction, at=moment)
        if deliver:
            self.deliver(punch)
        return punch

    def deliver(self, punch) -> None:
        moment = datetime.fromisoformat(punch.time[:-1]).replace(tzinfo=UTC)
        self.ingestor.ingest([Incoming(GateTopics("S1", punch.gate).punch, encode_punches([punch]),
                                       format_time(moment + timedelta(seconds=2)))])


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "bank.sqlite3") as store:
        yield store


def chains(document: dict) -> list[tuple]:
    return [(g["gate"], c["link"], c.get("card"), c.get("end"), [p["seq"] for p in c["punches"]])
            for g in document["gates"] for c in g["chains"]]


def test_a_card_passed_on_brings_its_other_holders_punches_back_to_the_period_start(store):
    """W2 held the card until 10 October, W1 from then: W1's chain of it reaches back through W2's punches
    of October to one before the period; they are links, not W1's days."""
    bank = Bank(store)
    store.add_worker("W2", name="Li Na", cards=[W2], sites=["S1"])
    store.add_worker("W1", name="Zhang Wei", sites=["S1"])
    for day in ("2026-09-29", "2026-10-03", "2026-10-06"):
        bank.tap(W2, "in", f"{day}T00:00:00")
        bank.tap(W2, "out", f"{day}T08:00:00")
    store.revoke_card(W2, at="2026-10-10T00:00:00.000Z")
    store.assign_card(W2, "W1", valid_from="2026-10-10T00:00:00.000Z")
    bank.tap(W2, "in", "2026-10-12T00:00:00")
    bank.tap(W2, "out", "2026-10-12T08:00:00")
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    assert chains(document) == [("g0", "card", W2, "newest", [2, 3, 4, 5, 6, 7, 8])]
    assert [d["date"] for d in document["days"]] == ["2026-10-12"]
    summary = verify_evidence(document, BANK_KEYS)
    assert summary["own_punches"] == 2 and summary["punches"] == 7


def upgrade(bank: Bank, gate: str = "g0") -> None:
    """The gate's agent upgraded to protocol 3: it goes on from its chain's head, and each card's chain
    from the newest punch of the card its outbox holds (gate_agent/outbox.py)."""
    old = bank.gates[gate]
    upgraded = PunchFactory(gate=gate, key=old.key, version=3)
    upgraded.seq, upgraded.prev, upgraded.time = old.seq, old.prev, old.time
    for row in bank.store.gate_punch_rows("S1", gate, 1, old.seq):
        upgraded.card_heads[row["card"]] = row["digest"]
    bank.gates[gate] = upgraded


def test_a_gate_upgraded_before_the_period_starts_the_card_chain_at_a_punch_of_protocol_1(store):
    """The card's chain starts at its last punch of protocol 1, before the period: it names no
    predecessor, and needs none, being before the period."""
    bank = Bank(store, 1)
    store.add_worker("W1", name="Zhang Wei", cards=[W1], sites=["S1"])
    bank.tap(W1, "in", "2026-09-28T00:00:00")
    bank.tap(W1, "out", "2026-09-28T08:00:00")
    upgrade(bank)
    bank.tap(W1, "in", "2026-10-07T00:00:00")
    bank.tap(W1, "out", "2026-10-07T08:00:00")
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    assert chains(document) == [("g0", "card", W1, "newest", [2, 3, 4])]
    assert [p["v"] for p in document["gates"][0]["chains"][0]["punches"]] == [1, 3, 3]
    verify_evidence(document, BANK_KEYS)


def test_a_gate_upgraded_within_the_period_gives_a_segment_of_its_chain(store):
    """W2 held the card in the days of protocol 1, W1 from 6 October, after the gate's upgrade: W1's card
    chain would have to start at W2's punch of protocol 1 within the period, which names no predecessor;
    the gate's chain between W1's punches is carried instead."""
    bank = Bank(store, 1)
    store.add_worker("W2", name="Li Na", cards=[W1], sites=["S1"])
    store.add_worker("W1", name="Zhang Wei", sites=["S1"])
    bank.tap(W1, "in", "2026-10-03T00:00:00")
    bank.tap(W1, "out", "2026-10-03T08:00:00")
    store.revoke_card(W1, at="2026-10-06T00:00:00.000Z")
    store.assign_card(W1, "W1", valid_from="2026-10-06T00:00:00.000Z")
    upgrade(bank)
    bank.tap(W1, "in", "2026-10-07T00:00:00")
    bank.tap(W2, "in", "2026-10-07T00:05:00")
    bank.tap(W1, "out", "2026-10-07T08:00:00")
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    assert chains(document) == [("g0", "gate", None, None, [3, 4, 5])]
    assert verify_evidence(document, BANK_KEYS)["worked_minutes"] == 480


def test_a_card_punch_not_yet_delivered_is_refused_with_the_reason(store):
    """The gate's seq 2 (the card's previous punch) has not reached the bank: the chain cannot be shown whole."""
    bank = Bank(store)
    store.add_worker("W1", name="Zhang Wei", cards=[W1], sites=["S1"])
    bank.tap(W1, "in", "2026-10-05T00:00:00")
    held_back = bank.tap(W1, "out", "2026-10-05T08:00:00", deliver=False)
    bank.tap(W1, "in", "2026-10-06T00:00:00")
    bank.tap(W1, "out", "2026-10-06T08:00:00")
    with pytest.raises(StoreError, match="names a previous punch of the card that the bank does not hold"):
        build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    bank.deliver(held_back)
    verify_evidence(build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW), BANK_KEYS)


def test_a_gate_key_the_register_lacks_is_entered_with_the_banks_key_or_refused_without_it(store):
    bank = Bank(store)
    store.add_worker("W1", name="Zhang Wei", cards=[W1], sites=["S1"])
    bank.tap(W1, "in", "2026-10-05T00:00:00")
    with pytest.raises(StoreError, match="is not in the register of gate keys"):
        evidence_body(store, "W1", *OCTOBER, now=NOW)
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    assert [entry["index"] for entry in document["gates"][0]["keys"]] == [1]
    assert evidence_body(store, "W1", *OCTOBER, now=NOW)["gates"] == document["gates"]


def test_generated_at_is_the_instant_the_days_are_judged_at(store):
    """A shift open exactly max_shift after its IN, at a ``now`` with microseconds: the file states
    generated_at cut to the millisecond, and its days are judged at that instant (open), as a verifier does."""
    bank = Bank(store)
    store.add_worker("W1", name="Zhang Wei", cards=[W1], sites=["S1"])
    bank.tap(W1, "in", "2026-10-05T00:00:00")
    now = datetime(2026, 10, 5, 16, 0, 0, 999, tzinfo=UTC)  # 16 h and 999 microseconds after the IN
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=now)
    assert document["generated_at"] == "2026-10-05T16:00:00.000Z" and document["days"][0]["status"] == "open"
    verify_evidence(document, BANK_KEYS)


def test_days_kept_before_shifts_carried_their_milliseconds_are_computed_for_the_days_id(store):
    """A kept day written by a version whose shifts had minutes only: what a slip names is still the
    days id of the file, computed from the punches for that worker."""
    bank = Bank(store)
    store.add_worker("W1", name="Zhang Wei", cards=[W1], sites=["S1"])
    bank.tap(W1, "in", "2026-10-05T00:00:00")
    bank.tap(W1, "out", "2026-10-05T08:00:00.250")
    document = build_evidence(store, "W1", *OCTOBER, key=BANK_KEY, now=NOW)
    assert days_id(stated_days(store, "W1", *OCTOBER, now=NOW)) == days_id(document["days"])
    import json

    rows = store.execute("SELECT site, worker, day, record FROM days").fetchall()
    assert rows
    for site, worker, day, record in rows:
        kept = json.loads(record)
        for shift in kept["shifts"]:
            del shift["ms"]
        store.execute("UPDATE days SET record = ? WHERE site = ? AND worker = ? AND day = ?",
                      (json.dumps(kept), site, worker, day))
    assert days_id(stated_days(store, "W1", *OCTOBER, now=NOW)) == days_id(document["days"])
