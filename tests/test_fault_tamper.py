"""Tampering: deleting, reordering or altering punches in a gate's history, in the bank's database or in
an evidence file is detected.

"Detected" means the gate's own chain check fails (``verify_chain``), or the collector refuses or flags
what it receives (quarantine, conflict, open gap, an ack that stops short), or ``verify_evidence`` fails.
One thing is undetectable by construction and stated here rather than hidden: whoever holds a gate's
private key can re-sign a whole rewritten history before any of it reaches the bank. Once a punch has
been delivered, no rewrite around it goes unnoticed.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.evidence import format2
from collector.evidence.document import EvidenceError, build_evidence, verify_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.keys import generate_key_file
from gate_agent.outbox import Outbox
from gate_agent.protocol import (
    GateTopics,
    ProtocolError,
    Punch,
    encode_punch_bodies,
    key_id,
    public_key_text,
    sign_punch,
    utc_now_text,
    verify_chain,
)
from tests.helpers import BANK_KEY, BANK_KEYS, FakeClock, PunchFactory

TOPIC = GateTopics("S1", "north").punch
CARDS = [f"04A1B2C3D4E5{i:02X}" for i in range(12)]


@pytest.fixture
def gate(tmp_path):
    """A real gate outbox with 12 punches, and the gate's key."""
    key = generate_key_file(tmp_path / "gate.key")
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3))
    with Outbox(tmp_path / "data", "S1", "north", key=key) as outbox:
        for card in CARDS:
            outbox.append(card=card, tech="iso14443a", reader="usb", direction="in", roster="known", clock=clock)
            clock.advance(60)
    return tmp_path / "data", key


@pytest.fixture
def bank(tmp_path, gate):
    store = Store(tmp_path / "collector.sqlite3")
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", public_key_text(gate[1].public_key()))
    yield store, Ingestor(store)
    store.close()


def keys_of(key) -> dict:
    return {key_id(key.public_key()): key.public_key()}


def history(data_dir) -> list[Punch]:
    with Outbox(data_dir, "S1", "north", readonly=True) as outbox:
        return outbox.punches()


def rows(data_dir) -> list[tuple[int, bytes]]:
    with Outbox(data_dir, "S1", "north", readonly=True) as outbox:
        return outbox.bodies(1, outbox.head_seq + 100)


def edit_outbox(data_dir, sql: str, *params) -> None:
    """What someone with a shell on the Pi could do to the gate's SQLite file."""
    conn = sqlite3.connect(data_dir / "outbox.sqlite3")
    with conn:
        conn.execute(sql, params)
    conn.close()


def deliver(ingestor, bodies: list[bytes]):
    return ingestor.ingest([Incoming(TOPIC, encode_punch_bodies([body]), utc_now_text()) for body in bodies])


def resign(punches: list[Punch], key, prev: str) -> list[Punch]:
    """Renumber and re-chain ``punches`` after a predecessor with digest ``prev``, signed with the gate key."""
    out = []
    for punch in punches:
        data = punch.to_dict() | {"prev": prev}
        fresh = sign_punch(Punch(**data), key)
        out.append(fresh)
        prev = fresh.digest()
    return out


def test_an_untouched_history_verifies(gate):
    data_dir, key = gate
    punches = history(data_dir)
    assert [p.seq for p in punches] == list(range(1, 13))
    verify_chain(punches, keys_of(key))


# ---------------------------------------------------------------------------------------------- deletion


def test_a_deleted_punch_breaks_the_gate_chain_and_leaves_an_open_gap_at_the_bank(gate, bank):
    data_dir, key = gate
    store, ingestor = bank
    deliver(ingestor, [body for _, body in rows(data_dir)[:6]])
    edit_outbox(data_dir, "DELETE FROM punches WHERE seq = 8")

    with pytest.raises(ProtocolError, match="seq 9 does not follow seq 7") as error:
        verify_chain(history(data_dir), keys_of(key))
    assert error.value.reason == "chain_break"

    result = deliver(ingestor, [body for seq, body in rows(data_dir) if seq > 6])
    assert result.acks[("S1", "north")].seq == 7  # the ack stops short: the gate keeps 8..12 pending
    assert store.open_gaps("S1", "north") == [(8, 8)]
    assert [r["seq"] for r in store.punches(site="S1")] == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12]


def test_a_deleted_and_renumbered_history_is_equivocation_at_the_bank(gate, bank):
    """Dropping a delivered tap and re-signing the rest with the gate's own key: the bank holds the
    originals, so every rewritten seq it held is an equivocation and the next one a chain break."""
    data_dir, key = gate
    store, ingestor = bank
    original = history(data_dir)
    deliver(ingestor, [p.to_json() for p in original[:6]])
    # The tap at seq 5 is gone; 6..12 become 5..11, re-chained and re-signed.
    renumbered = [Punch(**(p.to_dict() | {"seq": seq})) for seq, p in enumerate(original[5:], start=5)]
    rewritten = resign(renumbered, key, original[3].digest())
    verify_chain(original[:4] + rewritten, keys_of(key))  # internally consistent: only the bank can tell

    result = deliver(ingestor, [p.to_json() for p in rewritten])
    conflicts = {(c["seq"], c["kind"]) for c in store.conflicts()}
    assert {(5, "equivocation"), (6, "equivocation"), (7, "chain_break")} <= conflicts
    assert result.counts["equivocations"] == 2
    flags = {r["seq"]: r["flags"] for r in store.punches(site="S1")}
    assert "equivocated" in flags[5] and "equivocated" in flags[6] and "chain_break" in flags[7]
    held = {r["seq"]: r["digest"] for r in store.punches(site="S1")}
    assert [held[s] for s in range(1, 7)] == [p.digest() for p in original[:6]]  # the originals stay


# ---------------------------------------------------------------------------------------------- reordering


def test_swapped_rows_break_the_gate_chain_but_cannot_change_what_the_bank_stores(gate, bank):
    data_dir, key = gate
    store, ingestor = bank
    bodies = dict(rows(data_dir))
    edit_outbox(data_dir, "UPDATE punches SET body = ? WHERE seq = 3", bodies[4])
    edit_outbox(data_dir, "UPDATE punches SET body = ? WHERE seq = 4", bodies[3])
    with pytest.raises(ProtocolError) as error:
        verify_chain(history(data_dir), keys_of(key))
    assert error.value.reason == "chain_break"
    deliver(ingestor, [body for _, body in rows(data_dir)])
    # Each punch carries its own seq and signature: the bank files them where they belong.
    assert [r["digest"] for r in store.punches(site="S1")] == [json_digest(bodies[s]) for s in range(1, 13)]
    assert store.conflicts() == [] and store.quarantined() == []


def json_digest(body: bytes) -> str:
    return Punch.from_dict(json.loads(body)).digest()


def test_reordered_and_resigned_taps_are_caught_by_the_bank(gate, bank):
    """Two taps' times and cards swapped, re-signed with the gate key after seq 9 was delivered."""
    data_dir, key = gate
    store, ingestor = bank
    original = history(data_dir)
    deliver(ingestor, [p.to_json() for p in original[:9]])
    nine, ten = original[8].to_dict(), original[9].to_dict()
    swapped = [Punch(**(nine | {"card": ten["card"], "time": ten["time"], "mono_ms": ten["mono_ms"]})),
               Punch(**(ten | {"card": nine["card"], "time": nine["time"], "mono_ms": nine["mono_ms"]}))]
    rewritten = resign(swapped + original[10:], key, original[7].digest())
    verify_chain(original[:8] + rewritten, keys_of(key))

    deliver(ingestor, [p.to_json() for p in rewritten])
    conflicts = {(c["seq"], c["kind"]) for c in store.conflicts()}
    assert (9, "equivocation") in conflicts and (10, "chain_break") in conflicts


# ---------------------------------------------------------------------------------------------- alteration


def test_an_altered_body_fails_its_signature_at_the_gate_and_is_quarantined_at_the_bank(gate, bank):
    data_dir, key = gate
    store, ingestor = bank
    body = dict(rows(data_dir))[4]
    altered = body.replace(CARDS[3].encode(), b"04A1B2C3D4E5FF")
    assert altered != body
    edit_outbox(data_dir, "UPDATE punches SET body = ? WHERE seq = 4", altered)
    with pytest.raises(ProtocolError) as error:
        verify_chain(history(data_dir), keys_of(key))
    assert error.value.reason == "bad_signature"

    deliver(ingestor, [body for _, body in rows(data_dir)])
    assert [r["reason"] for r in store.quarantined()] == ["bad_signature"]
    assert 4 not in {r["seq"] for r in store.punches(site="S1")}
    assert store.open_gaps("S1", "north") == [(4, 4)]


def test_an_altered_and_resigned_punch_breaks_the_next_link(gate, bank):
    data_dir, key = gate
    store, ingestor = bank
    original = history(data_dir)
    forged = sign_punch(Punch(**(original[3].to_dict() | {"card": "04A1B2C3D4E5FF"})), key)
    edit_outbox(data_dir, "UPDATE punches SET body = ?, digest = ? WHERE seq = 4", forged.to_json(), forged.digest())
    with pytest.raises(ProtocolError, match="seq 5 does not link") as error:
        verify_chain(history(data_dir), keys_of(key))
    assert error.value.reason == "chain_break"

    # Delivered before the forgery: an equivocation. Neighbours delivered: a chain break.
    deliver(ingestor, [p.to_json() for p in original[:4]])
    deliver(ingestor, [forged.to_json()])
    assert [(c["seq"], c["kind"]) for c in store.conflicts()] == [(4, "equivocation")]
    deliver(ingestor, [p.to_json() for p in original[4:]])
    assert store.conflicts()[0]["other_digest"] == forged.digest()


def test_tampering_with_the_banks_database_is_visible_to_a_chain_check(gate, bank):
    data_dir, key = gate
    store, ingestor = bank
    deliver(ingestor, [body for _, body in rows(data_dir)])

    def stored_chain():
        return [Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")]

    verify_chain(stored_chain(), keys_of(key))
    # The columns are what the gate signed: an edited direction rebuilds bytes the signature does not cover.
    store.db.execute("UPDATE punches SET direction = 'out' WHERE seq = 6")
    with pytest.raises(ProtocolError, match="bad_signature"):
        verify_chain(stored_chain(), keys_of(key))
    store.db.execute("UPDATE punches SET direction = 'in' WHERE seq = 6")
    verify_chain(stored_chain(), keys_of(key))
    # So is the packed proof: another punch's signature (or prev, or key) in its place does not verify.
    signed = store.db.value("SELECT signed FROM punches WHERE seq = 6")
    store.db.execute("UPDATE punches SET signed = (SELECT signed FROM punches WHERE seq = 5) WHERE seq = 6")
    with pytest.raises(ProtocolError):
        verify_chain(stored_chain(), keys_of(key))
    store.db.execute("UPDATE punches SET signed = ? WHERE seq = 6", [signed])
    verify_chain(stored_chain(), keys_of(key))
    # And the gate boot its punches name: one edited reader (or boot id, or key id) fails every one of them.
    reader = store.db.value("SELECT reader FROM gate_boots")
    store.db.execute("UPDATE gate_boots SET reader = ?", [reader + " "])
    with Store(store.location, readonly=True) as reader_store:  # it remembers no row from before the edit
        with pytest.raises(ProtocolError, match="bad_signature"):
            verify_chain([Punch.from_dict(json.loads(b)) for b in reader_store.gate_punch_bodies("S1", "north")],
                         keys_of(key))
    store.db.execute("UPDATE gate_boots SET reader = ?", [reader])
    store.db.execute("DELETE FROM punches WHERE seq = 7")
    with pytest.raises(ProtocolError, match="chain_break"):
        verify_chain(stored_chain(), keys_of(key))


# ---------------------------------------------------------------------------------------------- evidence


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """An evidence file for one worker whose days interleave with another worker's punches (at a gate of
    protocol 3: the worker's card chain)."""
    path = tmp_path_factory.mktemp("evidence") / "collector.sqlite3"
    north = PunchFactory(gate="north", start=datetime(2026, 11, 2, 0, 0, tzinfo=UTC), version=3)
    with Store(path) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_worker("W1", name="Zhang Wei", cards=["04A1B2C3D4E5F6"], sites=["S1"])
        store.add_worker("W2", name="Li Na", cards=["DEADBEEF"], sites=["S1"])
        punches = []
        for day in (2, 3):
            for hour, card, direction in ((0, "04A1B2C3D4E5F6", "in"), (1, "DEADBEEF", "in"),
                                          (8, "DEADBEEF", "out"), (9, "04A1B2C3D4E5F6", "out")):
                punches.append(north.next(card=card, direction=direction,
                                          at=datetime(2026, 11, day, hour, 0, tzinfo=UTC)))
        Ingestor(store).ingest([Incoming(TOPIC, encode_punch_bodies([p.to_json() for p in punches]),
                                         "2026-11-04T00:00:00.000Z")])
        document = build_evidence(store, "W1", datetime(2026, 11, 2).date(), datetime(2026, 11, 3).date(),
                                  key=BANK_KEY, now=datetime(2026, 11, 5, tzinfo=UTC))
    verify_evidence(document, BANK_KEYS)
    return document


@st.composite
def evidence_mutation(draw, document: dict) -> tuple[str, dict]:
    tampered = copy.deepcopy(document)
    chain = tampered["gates"][0]["chains"][0]
    punches = chain["punches"]
    # What goes with each punch goes with it: a deleted, duplicated or swapped punch keeps its receipt.
    parallel = [punches, chain["received_at"], chain["card_flags"]]
    index = draw(st.integers(min_value=0, max_value=len(punches) - 1))
    operation = draw(st.sampled_from(["delete", "swap", "alter", "duplicate"]))
    if operation == "delete":
        for array in parallel:
            del array[index]
    elif operation == "duplicate":
        for array in parallel:
            array.insert(index, copy.deepcopy(array[index]))
    elif operation == "swap":
        other = draw(st.integers(min_value=0, max_value=len(punches) - 1).filter(lambda i: i != index))
        for array in parallel:
            array[index], array[other] = array[other], array[index]
    else:
        field = draw(st.sampled_from(["time", "card", "dir", "seq", "mono_ms", "prev", "cprev", "sig", "boot",
                                      "reader"]))
        value = punches[index][field]
        if isinstance(value, int):
            punches[index][field] = value + draw(st.integers(min_value=1, max_value=10**6))
        elif field == "time":
            punches[index][field] = f"2026-11-02T00:{draw(st.integers(min_value=1, max_value=59)):02d}:00.000Z"
        elif field == "dir":
            punches[index][field] = "out" if value == "in" else "in"
        else:  # one character changed, the value still well-formed where it has a format
            where = draw(st.integers(min_value=0, max_value=len(value) - 1))
            choices = "0123456789ABCDEF" if field == "card" else "0123456789abcdef"
            replacement = draw(st.sampled_from(choices).filter(lambda c: c != value[where]))
            punches[index][field] = value[:where] + replacement + value[where + 1:]
    return operation, tampered


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(st.data())
def test_any_deleted_reordered_or_altered_evidence_punch_fails_verification(evidence, data):
    """Caught by the bank's signature over the file; and, should the bank itself sign the edited file,
    by the gates' signatures and links, which the bank cannot make."""
    operation, tampered = data.draw(evidence_mutation(evidence))
    assert tampered != evidence
    with pytest.raises(EvidenceError, match="changed after the bank signed it"):
        verify_evidence(tampered, BANK_KEYS)
    with pytest.raises(EvidenceError):
        verify_evidence(format2.sign(tampered, BANK_KEY), BANK_KEYS)
        print(f"undetected {operation}")
