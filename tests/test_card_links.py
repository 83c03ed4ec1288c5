"""Punch protocol version 3: each punch names its gate's previous punch of the same card (``cprev``). The gate
keeps each card's head in its outbox, in the punch's own transaction, also across restarts and an upgrade
from an outbox of the previous release; the collector stores the link packed (format 3) and reads one
card's punches at a gate (``card_punch_rows``, ``card_punch_before``, ``card_punch_after``)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from collector.store.packed import signed_fields
from gate_agent.keys import generate_key_file, load_private_key
from gate_agent.outbox import Outbox
from gate_agent.protocol import (
    GENESIS,
    Ack,
    GateTopics,
    ProtocolError,
    Punch,
    check_card_link,
    decode_punch_message,
    encode_punch_bodies,
    encode_punches,
    format_time,
    key_id,
    parse_public_key,
    sign_punch,
    utc_now_text,
    verify_chain,
    verify_punch,
)
from tests.helpers import (
    CollectorSetup,
    FakeClock,
    GateSetup,
    PunchFactory,
    cli,
    outbox_status,
    stop_process,
    wait_for,
)
from tests.ports import free_port

KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KEY.public_key()): KEY.public_key()}
BANK_CARD = "8F3A" * 8  # a bank card's keyed identifier: 32 hex digits
CARDS = ("04A1B2C3D4E5F6", "DEADBEEF", "11223344", BANK_CARD)


def kind_of(card: str) -> str:
    return "bank" if len(card) == 32 else "uid"


def append(outbox: Outbox, clock, card: str) -> Punch:
    return outbox.append(card=card, tech="iso14443a", reader="udp:test", direction="in", roster="none", clock=clock,
                         kind=kind_of(card))


def check_card_chains(punches: list[Punch], *, since: dict[str, Punch] | None = None) -> None:
    """Each card's punches among ``punches`` (one gate's, in seq order) form an unbroken card chain from its
    first (GENESIS), or from the punch ``since`` names for the card (one written before an upgrade)."""
    previous: dict[str, Punch | None] = dict(since or {})
    for punch in punches:
        check_card_link(previous.get(punch.card), punch)
        previous[punch.card] = punch


# ---------------------------------------------------------------------------------------------- the wire


def test_a_version_3_punch_travels_and_links_its_card():
    factory = PunchFactory(version=3)
    made = [factory.next(card=card) for card in ("04A1B2C3D4E5F6", "DEADBEEF", "04A1B2C3D4E5F6")]
    decoded = [Punch.from_dict(item) for item in decode_punch_message(encode_punches(made))]
    assert decoded == made and all(b'"cprev"' in punch.to_json() for punch in decoded)
    verify_chain(decoded, {key_id(factory.key.public_key()): factory.key.public_key()})
    first, other, second = decoded
    assert first.cprev == other.cprev == GENESIS and second.cprev == first.digest()
    check_card_chains(decoded)
    for previous, punch in ((other, second), (None, second), (second, first), (first, other)):
        with pytest.raises(ProtocolError) as caught:
            check_card_link(previous, punch)
        assert caught.value.reason == "chain_break"


@pytest.mark.parametrize("cprev, detail", [
    ("A" * 64, "cprev must be 64 lower-case hex digits"),  # upper case: one spelling only
    ("0" * 63, "cprev must be 64 lower-case hex digits"),
    ("g" * 64, "cprev must be 64 lower-case hex digits"),
    ("0" * 64 + "0", "cprev must be 64 lower-case hex digits"),
    (7, "cprev is int, expected str"),
    (None, "punch lacks cprev"),
])
def test_a_malformed_card_link_is_refused(cprev, detail):
    data = PunchFactory(version=3).next().to_dict()
    if cprev is None:
        del data["cprev"]
    else:
        data["cprev"] = cprev
    with pytest.raises(ProtocolError) as caught:
        Punch.from_dict(data)
    assert caught.value.reason == "schema" and detail in caught.value.detail


def test_a_gates_first_punch_has_no_earlier_punch_of_its_card():
    data = PunchFactory(version=3).next().to_dict() | {"cprev": "1" * 64}
    with pytest.raises(ProtocolError, match="seq 1 must link its card to the genesis digest"):
        Punch.from_dict(data)


# ---------------------------------------------------------------------------------------------- the outbox

TAP = st.tuples(st.just("tap"), st.sampled_from(CARDS))
ACTIONS = st.lists(st.one_of(TAP, TAP, TAP, st.just(("reopen",)), st.just(("prune",))), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_each_punch_names_the_previous_punch_of_its_card(actions):
    """For any taps of several cards, with the outbox reopened (a restart) and acknowledged punches pruned
    between them: each punch is version 3 and its cprev is the digest of the gate's previous punch of that
    card, 64 zeros for the card's first; the card's head is on disk with the punch."""
    with tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        outbox = Outbox(directory, "S1", "north", key=KEY)
        heads: dict[str, Punch] = {}
        written = []
        try:
            for action in actions:
                clock.advance(1)
                if action[0] == "tap":
                    card = action[1]
                    punch = append(outbox, clock, card)
                    assert punch.v == 3 and punch.kind == kind_of(card)
                    assert punch.cprev == (heads[card].digest() if card in heads else GENESIS)
                    assert outbox.card_head(card) == (punch.seq, punch.digest())
                    heads[card] = punch
                    written.append(punch)
                elif action[0] == "reopen":
                    outbox.close()
                    outbox = Outbox(directory, "S1", "north", key=KEY)
                else:
                    outbox.acknowledge(Ack(outbox.head_seq, outbox.head_digest))
                    outbox.prune(0, clock.now())
            assert {card: outbox.card_head(card) for card in CARDS} == {
                card: (heads[card].seq, heads[card].digest()) if card in heads else None for card in CARDS}
        finally:
            outbox.close()
    verify_chain(written, KEYS)
    check_card_chains(written)


WRITER = """
import itertools, sys
from gate_agent.clock import SystemClock
from gate_agent.keys import load_private_key
from gate_agent.outbox import Outbox
outbox = Outbox(sys.argv[1], "S1", "north", key=load_private_key(sys.argv[2]))
clock = SystemClock()
print("ready", flush=True)
for card in itertools.cycle(["04A1B2C3D4E5F6", "DEADBEEF", "04A1B2C3D4E5F6", "11223344"]):
    outbox.append(card=card, tech="iso14443a", reader="udp:test", direction="in", roster="none", clock=clock)
"""


def test_a_kill_at_any_instant_leaves_each_cards_head_with_its_punch(tmp_path):
    """The writer is killed at random instants: after each, every card's head is the newest punch of that
    card on disk, and the card chains of everything written are whole."""
    key_file = tmp_path / "gate.key"
    key = generate_key_file(key_file)
    data_dir = tmp_path / "data"
    heads = []
    for round_number in range(8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(data_dir), str(key_file)],
                                  stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.031 * (round_number % 5))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with Outbox(data_dir, "S1", "north") as outbox:
            punches = outbox.punches()
            assert [p.seq for p in punches] == list(range(1, outbox.head_seq + 1))
            newest = {punch.card: punch for punch in punches}
            assert {card: outbox.card_head(card) for card in newest} == {
                card: (punch.seq, punch.digest()) for card, punch in newest.items()}
            heads.append(outbox.head_seq)
    verify_chain(punches, {key_id(key.public_key()): key.public_key()})
    check_card_chains(punches)
    assert heads == sorted(heads) and heads[-1] > heads[0] > 0, heads


#: The outbox as the previous release (schema 1, punch versions 1 and 2) made it, kept here as it was.
PREVIOUS_RELEASE_SCHEMA = """
CREATE TABLE punches (
    seq     INTEGER PRIMARY KEY,
    body    BLOB NOT NULL,
    digest  TEXT NOT NULL,
    card    TEXT NOT NULL,
    time    TEXT NOT NULL,
    boot    TEXT NOT NULL,
    mono_ms INTEGER NOT NULL
);
CREATE INDEX punches_card ON punches (card, mono_ms);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
PRAGMA user_version = 1;
"""


def previous_release_outbox(data_dir: Path, key: Ed25519PrivateKey, cards: list[str], *, site: str = "S1",
                            gate: str = "north", start: datetime | None = None) -> list[Punch]:
    """An outbox the previous release wrote: one punch per card in ``cards``, version 1 for a UID card and
    version 2 for a bank card (as that release chose), chained by ``prev``, none acknowledged."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / "outbox.sqlite3")
    db.executescript(PREVIOUS_RELEASE_SCHEMA)
    made, prev = [], GENESIS
    moment = start or datetime.now(UTC) - timedelta(hours=2)
    for seq, card in enumerate(cards, 1):
        extra = {"v": 2, "kind": "bank", "sun": ""} if kind_of(card) == "bank" else {"v": 1}
        punch = sign_punch(Punch(**{
            "site": site, "gate": gate, "seq": seq, "time": format_time(moment + timedelta(minutes=seq)),
            "mono_ms": 1000 * seq, "boot": "boot-old", "synced": True, "card": card, "tech": "iso14443a",
            "reader": "udp:test", "dir": "in", "roster": "none", "prev": prev, "key": "", "sig": "", **extra}), key)
        db.execute("INSERT INTO punches VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (seq, punch.to_json(), punch.digest(), card, punch.time, punch.boot, punch.mono_ms))
        made.append(punch)
        prev = punch.digest()
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("site", site), ("gate", gate), ("head_seq", str(len(made))), ("head_digest", prev), ("acked_seq", "0")])
    db.commit()
    db.close()
    return made


def test_an_upgraded_outbox_goes_on_from_each_cards_newest_punch_it_holds(tmp_path):
    """The first start of this release fills each card's head from the newest punch the outbox still holds
    (of version 1 or 2); a card whose punches were all pruned, and a new card, start from 64 zeros."""
    a, b, c = "04A1B2C3D4E5F6", "DEADBEEF", "11223344"
    old = previous_release_outbox(tmp_path, KEY, [a, BANK_CARD, a, b, c])
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:  # punches 1 and 2 acknowledged and pruned
        db.execute("UPDATE meta SET value = '2' WHERE key = 'acked_seq'")
        db.execute("DELETE FROM punches WHERE seq <= 2")
    clock = FakeClock()
    with Outbox(tmp_path, "S1", "north", key=KEY) as outbox:
        assert outbox._db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert {card: outbox.card_head(card) for card in (a, b, c, BANK_CARD, "CAFEBABE")} == {
            a: (3, old[2].digest()), b: (4, old[3].digest()), c: (5, old[4].digest()), BANK_CARD: None,
            "CAFEBABE": None}
        new = [append(outbox, clock, card) for card in (b, BANK_CARD, "CAFEBABE", a, b)]
    assert [p.v for p in new] == [3] * 5 and [p.seq for p in new] == [6, 7, 8, 9, 10]
    assert [p.cprev for p in new] == [old[3].digest(), GENESIS, GENESIS, old[2].digest(), new[0].digest()]
    with Outbox(tmp_path, "S1", "north", key=KEY) as outbox:  # the heads are filled once, not again
        assert outbox.card_head(b) == (10, new[4].digest()) and outbox.card_head(BANK_CARD) == (7, new[1].digest())
        verify_chain(outbox.punches(3), KEYS)
    check_card_chains(new, since={a: old[2], b: old[3]})


# ---------------------------------------------------------------------------------------------- ingest


@pytest.fixture
def store(database):
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        yield store


def ingest(store: Store, punches: list[Punch | dict], topic: str = GateTopics("S1", "north").punch):
    bodies = [json.dumps(p).encode() if isinstance(p, dict) else p.to_json() for p in punches]
    return Ingestor(store).ingest([Incoming(topic, encode_punch_bodies([body]), utc_now_text()) for body in bodies])


def test_versions_1_2_and_3_are_stored_and_verify_as_signed(store):
    """A gate upgraded mid-chain: its version 1 and 2 punches and then its version 3 ones are stored (formats
    2 and 3), each row gives back exactly what the gate signed, and every signature verifies."""
    factory = PunchFactory()
    store.add_gate("S1", "north", factory.public_key)
    made = [factory.next(card="DEADBEEF"), factory.next(card=BANK_CARD, v=2, kind="bank", sun="")]
    factory.version = 3
    factory.card_heads = {punch.card: punch.digest() for punch in made}  # as the upgraded outbox fills them
    made += [factory.next(card="DEADBEEF"), factory.next(card=BANK_CARD, kind="bank"), factory.next(card="DEADBEEF"),
             factory.next(card="11223344")]
    assert [p.cprev for p in made[2:]] == [made[0].digest(), made[1].digest(), made[2].digest(), GENESIS]
    result = ingest(store, made)
    assert result.counts["stored"] == 6 and result.acks[("S1", "north")].seq == 6
    rows = store.gate_punch_rows("S1", "north", 1, 6)
    assert [bytes(row["signed"])[0] for row in rows] == [2, 2, 3, 3, 3, 3]
    assert [len(bytes(row["signed"])) for row in rows] == [104, 104, 136, 136, 136, 104]  # a GENESIS link: 0 B
    for row, punch in zip(rows, made, strict=True):
        assert signed_fields(row) == json.loads(punch.to_json())
        verify_punch(Punch.from_dict(signed_fields(row)), parse_public_key(factory.public_key))
        assert row["digest"] == punch.digest() and row["cprev"] == (punch.cprev if punch.v == 3 else None)


@pytest.mark.parametrize("cprev", ["A" * 64, "0" * 63, "z" * 64, None])
def test_a_malformed_card_link_is_quarantined_with_its_reason_and_counted(store, cprev):
    factory = PunchFactory(version=3)
    store.add_gate("S1", "north", factory.public_key)
    good = factory.next()
    bad = factory.next().to_dict()
    if cprev is None:
        del bad["cprev"]
    else:
        bad["cprev"] = cprev
    result = ingest(store, [good, bad])
    assert result.counts["stored"] == 1 and result.counts["quarantined_schema"] == 1
    assert store.counters()["quarantined_schema"] == 1
    [held] = store.quarantined()
    assert held["reason"] == "schema" and "cprev" in held["detail"]
    assert [row["seq"] for row in store.punches(site="S1")] == [1]


# ---------------------------------------------------------------------------------------------- reads

_examples = itertools.count(1)

HISTORY = st.lists(st.tuples(st.sampled_from(("north", "south")), st.sampled_from(CARDS[:3]), st.booleans()),
                   min_size=1, max_size=25)
QUERIES = st.lists(st.tuples(st.sampled_from(("north", "south")), st.sampled_from(CARDS[:3] + ("CAFEBABE",)),
                             st.integers(0, 16), st.integers(0, 16)), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(history=HISTORY, queries=QUERIES)
def test_one_cards_punches_at_a_gate_are_read_as_a_model_says(database, history, queries):
    """Any taps of a few cards at two gates, of which the collector holds some (the rest not arrived yet),
    beside a manual punch and the punches of the same cards at earlier examples' sites and gates (gate ids
    are unique across sites): the three reads give exactly the held punches of that card at that gate, in
    seq order, as the gate signed them."""
    number = next(_examples)
    site = f"P{number}"
    factories = {gate: PunchFactory(site=site, gate=f"{gate}{number}", version=3) for gate in ("north", "south")}
    held: dict[tuple[str, str], list[Punch]] = {}
    with Store(database) as store:
        store.add_site(site, timezone="Asia/Shanghai")
        for factory in factories.values():
            store.add_gate(site, factory.gate, factory.public_key)
        store.add_worker(f"W{site}", name="Zhang Wei", employer="Steel team")
        store.add_manual_punch(site=site, worker=f"W{site}", time=utc_now_text(), direction="in", by="ops",
                               reason="the gate did not read the card")
        with store.transaction():
            for gate, card, arrived in history:
                punch = factories[gate].next(card=card)
                if arrived or card == CARDS[0]:
                    assert store.insert_punch(punch, received_at=utc_now_text(), source="mqtt", flags="")
                    held.setdefault((gate, card), []).append(punch)
        for name, card, low, high in queries:
            mine, gate = held.get((name, card), []), factories[name].gate
            rows = store.card_punch_rows(site, gate, card, low, high)
            assert [signed_fields(row) for row in rows] == [p.to_dict() for p in mine if low <= p.seq <= high]
            before = store.card_punch_before(site, gate, card, high)
            after = store.card_punch_after(site, gate, card, low)
            assert store.card_punch_rows("S1", gate, card, low, high) == []  # another site's gate of that id: none
            assert (before and before["seq"]) == max((p.seq for p in mine if p.seq < high), default=None)
            assert (after and after["seq"]) == min((p.seq for p in mine if p.seq > low), default=None)
            for row in rows + [r for r in (before, after) if r]:
                punch = Punch.from_dict(signed_fields(row))
                verify_punch(punch, parse_public_key(factories[name].public_key))
                assert row["gate"] == gate and row["card"] == card and row["source"] == "mqtt"
        # Where every punch of a card arrived, its chain is whole from its first.
        for name, card in held:
            if card == CARDS[0]:
                rows = store.card_punch_rows(site, factories[name].gate, card, 1, 2**62)
                check_card_chains([Punch.from_dict(signed_fields(row)) for row in rows])


# ---------------------------------------------------------------------------------------------- real gates


def stored_seqs(collector) -> list[int]:
    return [row[0] for row in collector.rows("SELECT seq FROM punches WHERE site = 'S1' AND gate = 'north' "
                                             "ORDER BY seq")]


def held_card_chains(collector, gate: GateSetup, cards, last: int) -> dict[str, list[Punch]]:
    """Each card's punches as the bank holds them (the card reads), their signatures checked."""
    key = parse_public_key(gate.public_key)
    chains = {}
    with collector.store() as store:
        for card in cards:
            chains[card] = [Punch.from_dict(signed_fields(row)) for row in store.card_punch_rows("S1", "north", card,
                                                                                                 1, last)]
            for punch in chains[card]:
                verify_punch(punch, key)
    return chains


@pytest.mark.slow
def test_a_gate_links_interleaved_cards_across_a_kill_and_a_restart(gate, collector, collector_process):
    """Real taps through nfcpy's udp driver, the agent killed and started again between them: the bank holds
    every punch, each card's punches form its own chain, and the reads follow it."""
    a, b, c = "04A1B2C3D4E5F6", "DEADBEEF", "04112233445566"
    agent = gate.start_agent()
    try:
        gate.tap(a, b, a, c)
        wait_for(lambda: outbox_status(gate)["last_seq"] == 4, message="four punches on disk")
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        agent = gate.start_agent()
        gate.tap(b, a, c, b)
        wait_for(lambda: stored_seqs(collector) == list(range(1, 9)), timeout=60, message="eight punches stored")
    finally:
        stop_process(agent, signal.SIGKILL)
    with Outbox(gate.data_dir, "S1", "north", readonly=True) as outbox:
        at_gate = outbox.punches()
    assert [p.card for p in at_gate] == [a, b, a, c, b, a, c, b] and {p.v for p in at_gate} == {3}
    check_card_chains(at_gate)
    chains = held_card_chains(collector, gate, (a, b, c), 8)
    assert {card: [p.seq for p in chain] for card, chain in chains.items()} == {a: [1, 3, 6], b: [2, 5, 8], c: [4, 7]}
    for chain in chains.values():
        check_card_chains(chain)
    with collector.store() as store:
        assert store.card_punch_before("S1", "north", a, 6)["seq"] == 3
        assert store.card_punch_after("S1", "north", c, 4)["seq"] == 7
        assert store.card_punch_after("S1", "north", b, 8) is None


@pytest.mark.slow
def test_a_gate_upgraded_over_an_outbox_of_the_previous_release(gate, collector, collector_process):
    """The outbox holds version 1 and 2 punches not yet delivered; the new agent delivers them as they are
    and links its first punch of each card to that card's newest one among them."""
    a, b = "04A1B2C3D4E5F6", "DEADBEEF"
    old = previous_release_outbox(gate.data_dir, load_private_key(gate.key_file), [a, BANK_CARD, a])
    agent = gate.start_agent()
    try:
        gate.tap(a, b, a)
        wait_for(lambda: stored_seqs(collector) == list(range(1, 7)), timeout=60, message="six punches stored")
    finally:
        stop_process(agent, signal.SIGKILL)
    chains = held_card_chains(collector, gate, (a, b, BANK_CARD), 6)
    assert [p.v for p in chains[a]] == [1, 1, 3, 3] and chains[a][:2] == [old[0], old[2]]
    assert chains[BANK_CARD] == [old[1]] and [p.v for p in chains[b]] == [3]
    check_card_chains(chains[a][2:], since={a: old[2]})
    check_card_chains(chains[b])
    assert collector.count("SELECT COUNT(*) FROM quarantine") == 0


def test_bundles_carry_version_3_punches_to_the_bank(tmp_path, udp_device, database):
    """gate-agent export and collector import: the punches arrive as signed, card links and all."""
    gate = GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=free_port()), device=udp_device)
    bank = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=free_port()), db=database)
    bank.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    with Outbox(gate.data_dir, "S1", "north", key=load_private_key(gate.key_file)) as outbox:
        made = []
        for card in ("DEADBEEF", BANK_CARD, "DEADBEEF", "11223344", BANK_CARD, "DEADBEEF"):
            clock.advance(60)
            made.append(append(outbox, clock, card))
    cli("gate-agent", "export", "--config", str(gate.config_path), "--out", str(tmp_path / "a.bundle"))
    bank.run("import", str(tmp_path / "a.bundle"))
    chains = held_card_chains(bank, gate, ("DEADBEEF", BANK_CARD, "11223344"), 6)
    assert chains == {card: [p for p in made if p.card == card] for card in chains}
    for chain in chains.values():
        check_card_chains(chain)
