"""Punches stored packed: every punch a gate may send comes back byte for byte, a damaged value is named and
never crashes a read, an older database is repacked without losing a proof, and on PostgreSQL the table
is partitioned by month."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, partitions, schema
from collector.store.packed import Boot, PackError, boot_ref, pack, signed_fields, unpack
from gate_agent.protocol import (
    CARD_KINDS,
    DIRECTIONS,
    GENESIS,
    ROSTER_VERDICTS,
    TECHNOLOGIES,
    GateTopics,
    Punch,
    encode_punches,
    key_id,
    public_key_text,
    sign_punch,
    verify_chain,
)

HEX = "0123456789abcdef"
UPPER = "0123456789ABCDEF"
printable = st.text(st.characters(codec="utf-8").filter(str.isprintable), min_size=1, max_size=64) \
    .filter(lambda s: s.isprintable())


@st.composite
def punches(draw) -> Punch:
    """Any punch ``Punch.from_dict`` accepts, field by field (signature bytes need not verify here)."""
    version = draw(st.sampled_from((1, 2, 3)))
    kind = "uid" if version == 1 else draw(st.sampled_from(CARD_KINDS))
    if kind == "bank":
        card = draw(st.text(UPPER, min_size=32, max_size=32))
    else:
        card = draw(st.text(UPPER, min_size=4, max_size=10).map(lambda s: s * 2))
    sun = ""
    if kind == "ntag424":
        sun = draw(st.text(HEX, min_size=32, max_size=32)) + ":" + draw(st.text(HEX, min_size=16, max_size=16))
    boot = draw(st.one_of(st.uuids().map(str), printable))
    # A version 3 punch's card link: a card's first punch at a gate names 64 zeros (format 3 holds none).
    cprev = draw(st.one_of(st.just(GENESIS), st.text(HEX, min_size=64, max_size=64))) if version == 3 else ""
    return Punch(v=version, site=draw(st.sampled_from(("S1", "site-7"))), gate=draw(st.sampled_from(("north", "g.2"))),
                 seq=draw(st.integers(1, 2**63 - 1)), time="2026-11-02T00:30:00.125Z",
                 mono_ms=draw(st.integers(0, 2**63 - 1)), boot=boot, synced=draw(st.booleans()), card=card,
                 tech=draw(st.sampled_from(TECHNOLOGIES)), reader=draw(printable), dir=draw(st.sampled_from(DIRECTIONS)),
                 roster=draw(st.sampled_from(ROSTER_VERDICTS)), prev=draw(st.text(HEX, min_size=64, max_size=64)),
                 key=draw(st.text(HEX, min_size=16, max_size=16)), sig=draw(st.text(HEX, min_size=128, max_size=128)),
                 kind=kind, sun=sun, cprev=cprev)


def columns(punch: Punch) -> dict:
    return {"site": punch.site, "gate": punch.gate, "seq": punch.seq, "time": punch.time, "card": punch.card,
            "direction": punch.dir}


@settings(max_examples=300, deadline=None)
@given(punches())
def test_every_punch_a_gate_may_send_comes_back_byte_for_byte(punch):
    packed = pack(punch)
    rebuilt = unpack(packed, **columns(punch))
    assert rebuilt == punch
    assert rebuilt.to_json() == punch.to_json() and rebuilt.canonical_bytes() == punch.canonical_bytes()
    # At most: boot and reader of 64 4-byte letters, and a version 3 punch's card link.
    assert len(packed) <= 14 + 3 + 64 * 4 + 2 + 64 * 4 + 104 + 25 + 32


def boots_of(punch: Punch, ref: int) -> dict[int, Boot]:
    """The gate_boots row a format 2 value of ``punch`` names, as a reader finds it."""
    return {ref: Boot(punch.site, punch.gate, punch.boot, punch.reader, punch.key)}


@settings(max_examples=300, deadline=None)
@given(punches(), st.integers(1, 2**32 - 1))
def test_every_punch_comes_back_byte_for_byte_from_the_gate_boot_it_names(punch, ref):
    packed = pack(punch, ref)
    assert packed[0] == (3 if punch.v == 3 else 2) and boot_ref(packed) == ref
    rebuilt = unpack(packed, **columns(punch), boots=boots_of(punch, ref))
    assert rebuilt == punch
    assert rebuilt.to_json() == punch.to_json() and rebuilt.canonical_bytes() == punch.canonical_bytes()
    # Boot, reader and key are the row's: only the head, mono_ms, prev, signature, a card link other than
    # 64 zeros and a SUN message remain.
    linked = 32 if punch.v == 3 and punch.cprev != GENESIS else 0
    assert len(packed) <= 6 + 9 + 96 + linked + 24 and len(packed) < len(pack(punch)) - 6
    # A value is read only with the row it names, of its own gate.
    for boots in ({}, boots_of(punch, ref + 1), {ref: Boot(punch.site, "other", punch.boot, punch.reader, punch.key)}):
        with pytest.raises(PackError, match=f"{punch.site}/{punch.gate} seq {punch.seq}"):
            unpack(packed, **columns(punch), boots=boots)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(punches(), st.sampled_from((None, 7)), st.data())
def test_a_damaged_value_is_named_never_a_crash_nor_another_punch(punch, ref, data):
    packed = bytearray(pack(punch, ref))
    how = data.draw(st.sampled_from(("cut", "extend", "flip")))
    if how == "cut":
        damaged = bytes(packed[:data.draw(st.integers(0, len(packed) - 1))])
    elif how == "extend":
        damaged = bytes(packed) + data.draw(st.binary(min_size=1, max_size=8))
    else:
        at = data.draw(st.integers(0, len(packed) - 1))
        packed[at] ^= data.draw(st.integers(1, 255))
        damaged = bytes(packed)
    try:
        rebuilt = unpack(damaged, **columns(punch), boots=boots_of(punch, 7))
    except PackError as error:
        assert f"{punch.site}/{punch.gate} seq {punch.seq}" in str(error)
        return
    # A flipped byte inside a signature, prev or reader still unpacks: to another punch, which its gate's
    # signature then refuses (tests/test_fault_tamper.py); never to the same one.
    assert how == "flip" and rebuilt != punch


def test_a_value_outside_the_protocol_is_refused_not_packed_as_another():
    punch = sign_punch(_punch(1, GENESIS, "04A1B2C3", "2026-11-02T00:30:00.000Z"), Ed25519PrivateKey.generate())
    for changes in ({"sig": punch.sig.upper()}, {"prev": "0" * 63}, {"tech": "nfc-f"}, {"key": "xyz"}):
        with pytest.raises(ValueError):
            pack(Punch(**(punch.to_dict() | changes)))


def test_a_packed_punch_is_about_a_third_of_its_signed_json():
    punch = sign_punch(_punch(7, "ab" * 32, "04A1B2C3", "2026-11-02T00:30:00.000Z"), Ed25519PrivateKey.generate())
    assert len(pack(punch)) == 14 + 17 + 2 + len(punch.reader) + 104 + 1
    assert len(pack(punch)) * 3 < len(punch.to_json())
    # Naming its gate boot instead (format 2): mono_ms 1007 takes two bytes.
    assert len(pack(punch, 1)) == 6 + 2 + 96 == len(pack(punch)) - 17 - 2 - len(punch.reader) - 8 - 6 - 1


def test_a_version_3_punch_costs_its_card_link_and_a_cards_first_punch_nothing_more():
    """Format 3 is format 2 with the 32 bytes of ``cprev``; a card's first punch (64 zeros) holds none. In
    format 1 (no gate boot to name) the card link follows the SUN message's field."""
    key = Ed25519PrivateKey.generate()
    older = sign_punch(_punch(7, "ab" * 32, "04A1B2C3", "2026-11-02T00:30:00.000Z"), key)
    first = sign_punch(Punch(**(older.to_dict() | {"v": 3, "cprev": GENESIS})), key)
    linked = sign_punch(Punch(**(older.to_dict() | {"v": 3, "cprev": "cd" * 32})), key)
    assert len(pack(first, 1)) == len(pack(older, 1)) and pack(first, 1)[0] == 3
    assert len(pack(linked, 1)) == len(pack(older, 1)) + 32
    assert len(pack(first)) == len(pack(linked)) == len(pack(older)) + 32 and pack(linked)[0] == 1
    for punch in (first, linked):
        for packed, boots in ((pack(punch, 1), boots_of(punch, 1)), (pack(punch), None)):
            assert unpack(packed, **columns(punch), boots=boots).to_json() == punch.to_json()
    # One packed form a punch: 64 zeros held where pack leaves them out is refused.
    held_zeros = bytearray(pack(linked, 1))
    held_zeros[1] |= 1
    held_zeros[-32:] = bytes(32)
    with pytest.raises(PackError, match="64 zeros"):
        unpack(bytes(held_zeros), **columns(first), boots=boots_of(first, 1))


# ---------------------------------------------------------------------------------------------- the store

KEY = Ed25519PrivateKey.generate()


def _punch(seq: int, prev: str, card: str, time: str, direction: str = "in") -> Punch:
    return Punch(v=1, site="S1", gate="north", seq=seq, time=time, mono_ms=1000 + seq, boot=str(uuid.uuid4()),
                 synced=True, card=card, tech="iso14443a", reader="usb:072f:2200", dir=direction, roster="known",
                 prev=prev, key="")


def chain(times: list[str]) -> list[Punch]:
    made, prev = [], GENESIS
    for seq, time in enumerate(times, 1):
        punch = sign_punch(_punch(seq, prev, "04A1B2C3", time, "in" if seq % 2 else "out"), KEY)
        made.append(punch)
        prev = punch.digest()
    return made


def register(store: Store) -> None:
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", public_key_text(KEY.public_key()))


TIMES = ["2019-03-01T01:00:00.000Z",  # a clock years off: no month of its own
         "2026-10-31T23:59:59.999Z", "2026-11-01T00:00:00.000Z", "2026-11-02T09:00:00.000Z",
         "2026-12-01T00:00:00.000Z"]


def test_an_older_database_is_repacked_without_losing_a_proof(empty_database):
    """Punches stored before step 26 (the signed JSON in ``body``, its digest and fields in columns) come
    out of the upgrade giving the same bodies and digests; a row whose columns disagree with its body keeps
    the body, which is what it was; a manual punch stays one."""
    before = chain(TIMES)
    with Store(empty_database, upgrade=False) as store:
        schema.upgrade(store.db, until=25)
        register(store)
        for punch in before:
            store.execute(
                """INSERT INTO punches (site, gate, seq, time, card, direction, tech, roster, synced, boot, mono_ms,
                   reader, prev, digest, key_id, body, received_at, source, flags, card_kind)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (punch.site, punch.gate, punch.seq, punch.time, punch.card, punch.dir, punch.tech, punch.roster, 1,
                 punch.boot, punch.mono_ms, punch.reader, punch.prev, punch.digest(), punch.key, punch.to_json(),
                 "2026-12-01T00:00:00.000Z", "mqtt", "", "uid"))
        # A row whose direction column was edited once: its body is what the gate signed, and stays.
        store.execute("UPDATE punches SET direction = 'toggle' WHERE seq = 3")
        store.execute("INSERT INTO punches (site, time, worker, direction, received_at, source, manual_by, "
                      "manual_reason) VALUES ('S1', '2026-11-02T10:00:00.000Z', 'W1', 'out', "
                      "'2026-11-03T00:00:00.000Z', 'manual', 'ops', 'forgot card')")
        ids = store.db.column("SELECT id FROM punches ORDER BY id")
        schema.upgrade(store.db)
        rows = {row["seq"]: row for row in store.punches()}
        assert sorted(row["id"] for row in store.punches()) == ids
        for punch in before:
            row = rows[punch.seq]
            assert row["body"] == punch.to_json() and row["digest"] == punch.digest()
            assert signed_fields(row) == json.loads(punch.to_json())  # the evidence file's form of it
            assert (row["prev"], row["key_id"], row["boot"], row["reader"]) == (punch.prev, punch.key, punch.boot,
                                                                                punch.reader)
        kept = store.db.column("SELECT seq FROM punches WHERE body IS NOT NULL")
        assert kept == [3]
        assert store.db.value("SELECT COUNT(*) FROM punches WHERE signed IS NULL") == 1  # the manual one
        manual = rows[None]
        assert manual["worker"] == "W1" and manual["body"] is None and manual["digest"] is None
        verify_chain([Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")],
                     {before[0].key: KEY.public_key()})
        # Ids go on after the highest repacked one.
        store.add_worker("W1", name="Zhang Wei", employer="Steel team")
        added = store.add_manual_punch(worker="W1", site="S1", time="2026-11-04T10:00:00.000Z", direction="in",
                                       by="ops", reason="forgot card")
        assert added > max(ids)


def test_postgresql_keeps_a_month_a_partition_and_the_default_holds_a_clock_years_off(postgres_schema_db):
    """The months ahead exist before a punch needs them; a backlog older than the partitions waits in the
    default one until the next check makes its month and moves it there; a clock years off stays."""
    with Store(postgres_schema_db) as store:
        register(store)
        ingest(store, chain(TIMES))
        assert store.db.value("SELECT COUNT(*) FROM punches_other") >= 1
        with store.db.transaction():
            made = partitions.ensure(store.db, now=datetime(2026, 12, 6, tzinfo=UTC))
        assert {"2026-10", "2026-11"} <= set(made)
        where = {r["seq"]: r["part"] for r in store.db.rows("SELECT seq, tableoid::regclass::text AS part "
                                                              "FROM punches")}
        assert where == {1: "punches_other", 2: "punches_2026_10", 3: "punches_2026_11", 4: "punches_2026_11",
                         5: "punches_2026_12"}
        listed = {p.month: p for p in partitions.listing(store.db)}
        assert {"2026-10", "2026-11", "2026-12", "2027-01", "2027-02", ""} <= set(listed)
        # Asked for, the month of the clock that was off gets one too: its row moves, none is lost or doubled.
        with store.db.transaction():
            assert partitions.ensure(store.db, wanted=["2019-03"]) == ["2019-03"]
        assert store.db.value("SELECT tableoid::regclass::text FROM punches WHERE seq = 1") == "punches_2019_03"
        assert store.db.value("SELECT COUNT(*) FROM punches") == len(TIMES)
        verify_chain([Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")],
                     {key_id(KEY.public_key()): KEY.public_key()})


def test_one_seq_in_two_months_is_an_equivocation_not_a_second_punch(database):
    """Each partition holds its own unique index on (site, gate, seq); a gate signing a second punch
    under a held seq with a time in another month is caught by the look-up ingest makes first."""
    with Store(database) as store:
        register(store)
        genuine = chain(TIMES[1:4])
        ingest(store, genuine)
        other = sign_punch(_punch(2, genuine[0].digest(), "04A1B2C3", "2026-12-05T08:00:00.000Z", "out"), KEY)
        counts = ingest(store, [other])
        assert counts["equivocations"] == 1 and counts.get("stored", 0) == 0
        assert store.db.value("SELECT COUNT(*) FROM punches WHERE seq = 2") == 1
        assert [c["kind"] for c in store.conflicts()] == ["equivocation"]


def ingest(store: Store, made: list[Punch]) -> dict:
    result = Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                              "2026-12-06T00:00:00.000Z") for punch in made])
    return dict(result.counts)


def test_db_partitions_lists_the_months_and_makes_what_is_due(tmp_path, empty_database):
    from types import SimpleNamespace

    from tests.helpers import CollectorSetup

    collector = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=empty_database)
    collector.json("db", "upgrade")
    listed = collector.json("db", "partitions", "--make")
    if isinstance(empty_database, str):  # PostgreSQL
        now = datetime.now(UTC)
        current = f"{now.year:04d}-{now.month:02d}"
        months = [p["month"] for p in listed["partitions"]]
        assert listed["partitioned"] and listed["made"] == []  # the upgrade made them
        assert months[-1] is None  # the default partition, listed last
        assert set(partitions.months(current, partitions.month_after(partitions.month_after(current)))) <= set(months)
        with Store(empty_database) as store:
            store.execute("DROP TABLE " + partitions.partition_name(partitions.month_after(current)))
        remade = collector.json("db", "partitions", "--make")
        assert remade["made"] == [partitions.month_after(current)]
    else:
        assert listed == {"database": listed["database"], "partitioned": False, "partitions": [], "made": []}
        assert "one table" in collector.run("db", "partitions").stdout


def test_a_transactions_punch_marks_are_written_once_at_commit_and_forgotten_at_rollback(database):
    """Ingest stores hundreds of punches a transaction: their day marks are gathered per card (from the
    earliest time) and written just before the commit; a rollback takes them with the punches."""
    made = chain(TIMES[1:4])
    with Store(database) as store:
        register(store)
        store.execute("DELETE FROM day_marks")
        with store.transaction():
            for punch in made:
                assert store.insert_punch(punch, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
            assert store.db.value("SELECT COUNT(*) FROM day_marks") == 0  # not yet: at the commit
        assert store.db.rows("SELECT site, worker, card, since FROM day_marks") == [
            {"site": "S1", "worker": None, "card": "04A1B2C3", "since": TIMES[1]}]
        store.execute("DELETE FROM day_marks")
        later = sign_punch(_punch(4, made[-1].digest(), "04D5E6F7", "2026-12-02T08:00:00.000Z"), KEY)
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_punch(later, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
            raise RuntimeError("the burst failed")
        assert store.db.value("SELECT COUNT(*) FROM day_marks") == 0
        assert store.db.value("SELECT COUNT(*) FROM punches WHERE seq = 4") == 0
        # Outside a transaction a punch and its mark commit together, in one of their own.
        assert store.insert_punch(later, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
        assert store.db.column("SELECT card FROM day_marks") == ["04D5E6F7"]


# ---------------------------------------------------------------------------------------------- gate boots

BOOT = "5c1b9f0e-8d7a-4c2b-9e3f-1a2b3c4d5e6f"


def booted_chain(times: list[str], boot: str = BOOT, first: int = 1, prev: str = GENESIS) -> list[Punch]:
    """Punches of one gate boot (as a gate signs them between two boots)."""
    made = []
    for seq, time in enumerate(times, first):
        punch = sign_punch(Punch(**(_punch(seq, prev, "04A1B2C3", time).to_dict() | {"boot": boot})), KEY)
        made.append(punch)
        prev = punch.digest()
    return made


def formats(store: Store) -> list[int]:
    return [bytes(signed)[0] for signed in store.db.column("SELECT signed FROM punches ORDER BY seq")]


def held_chain(store: Store) -> list[Punch]:
    punches = [Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")]
    verify_chain(punches, {key_id(KEY.public_key()): KEY.public_key()})
    return punches


def test_punches_stored_before_gate_boots_read_as_they_are_and_new_ones_name_their_boot(empty_database):
    """Step 33 rewrites no punch: those stored before keep their format 1 proof, read as before; the
    punches stored after it name their gate boot, one row for all of them, and the chain goes across."""
    made = booted_chain(TIMES[1:])
    with Store(empty_database, upgrade=False) as store:
        schema.upgrade(store.db, until=32)
        register(store)
        ingest(store, made[:2])
        assert formats(store) == [1, 1] and not store.db.table_exists("gate_boots")
        schema.upgrade(store.db)
        assert formats(store) == [1, 1]  # as they were
        ingest(store, made[2:])
        assert formats(store) == [1, 1, 2, 2]
        assert store.db.rows("SELECT site, gate, boot, reader, key_id FROM gate_boots") == [
            {"site": "S1", "gate": "north", "boot": BOOT, "reader": made[0].reader, "key_id": made[0].key}]
        assert held_chain(store) == made
        for row in store.punches():
            punch = made[row["seq"] - 1]
            assert (row["body"], row["digest"], row["boot"], row["reader"], row["key_id"]) == (
                punch.to_json(), punch.digest(), BOOT, punch.reader, punch.key)
            assert signed_fields(row) == json.loads(punch.to_json())
        assert store.highest_punch("S1", "north").digest == made[-1].digest()
    # A reader of its own, as `collector serve` is, reads them alike.
    with Store(empty_database, readonly=True) as reader:
        assert [row["digest"] for row in reader.punches()] == [punch.digest() for punch in made]


def test_a_gate_boot_made_by_a_transaction_rolled_back_is_never_named(database):
    """A rolled-back transaction (or savepoint) takes its gate boot row with it: the Store must not name
    that id in a later punch, where it names nothing, or, on SQLite, which gives the id again, another
    collector's gate boot."""
    made = booted_chain(TIMES[1:4])
    with Store(database) as store, Store(database) as other:
        register(store)
        with pytest.raises(RuntimeError), store.transaction():
            assert store.insert_punch(made[0], received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
            raise RuntimeError("the burst failed")
        with store.transaction():
            with pytest.raises(RuntimeError), store.transaction():  # a savepoint
                store.insert_punch(made[0], received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
                raise RuntimeError("one message failed")
        assert store.db.value("SELECT COUNT(*) FROM gate_boots") == 0
        # Another collector's gate boot takes the next id (on SQLite, the very id rolled back).
        south = Ed25519PrivateKey.generate()
        foreign = sign_punch(Punch(**(_punch(1, GENESIS, "04D5E6F7", TIMES[1]).to_dict() | {"gate": "south"})), south)
        other.add_gate("S1", "south", public_key_text(south.public_key()))
        assert other.insert_punch(foreign, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
        for punch in made:
            assert store.insert_punch(punch, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
        assert held_chain(store) == made
        assert store.db.value("SELECT COUNT(*) FROM gate_boots") == 2
        assert [row["boot"] for row in other.gate_punch_rows("S1", "south", 1, 1)] == [foreign.boot]


def test_collectors_storing_one_gate_boot_at_once_share_its_row(database):
    """Two collectors meet a new gate boot at once: the second waits for the first's row, then names it."""
    made = booted_chain(TIMES[1:3])
    with Store(database) as first, Store(database) as second:
        register(first)
        stored = []
        with first.transaction():
            first.insert_punch(made[0], received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
            waiting = threading.Thread(target=lambda: stored.append(second.insert_punch(
                made[1], received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")))
            waiting.start()
            waiting.join(0.5)
        waiting.join(30)
        assert stored == [True]
        assert first.db.value("SELECT COUNT(*) FROM gate_boots") == 1
        assert [boot_ref(signed) for signed in first.db.column("SELECT signed FROM punches ORDER BY seq")] == \
            [first.db.value("SELECT id FROM gate_boots")] * 2
        assert held_chain(first) == held_chain(second) == made


def test_a_database_holding_both_formats_copies_into_postgresql_and_verifies(tmp_path, postgres_db):
    """`collector db copy` carries the gate boots with their ids, and verifies every chain from them."""
    from collector.store import copy as dbcopy

    made = booted_chain(TIMES[1:]) + booted_chain(["2026-12-02T08:00:00.000Z"], boot="second-boot", first=5,
                                                  prev="00" * 32)
    made[-1] = sign_punch(Punch(**(made[-1].to_dict() | {"prev": made[-2].digest()})), KEY)
    path = tmp_path / "pilot.sqlite3"
    with Store(path, upgrade=False) as store:
        schema.upgrade(store.db, until=32)
        register(store)
        ingest(store, made[:2])
        schema.upgrade(store.db)
        ingest(store, made[2:])
        assert formats(store) == [1, 1, 2, 2, 2]
    report = dbcopy.copy_database(path, postgres_db)
    assert report.ok, report.problems
    assert [g.contiguous_seq for g in report.gates] == [5]
    with Store(postgres_db) as copied:
        assert held_chain(copied) == made
        assert copied.db.value("SELECT COUNT(*) FROM gate_boots") == 2


def test_postgresql_finds_a_punch_by_id_through_a_block_range_index_the_daemon_keeps_summarised(
        postgres_schema_db):
    """Ids have a block-range index (a B-tree for manual punches only): a look-up finds gate and manual
    punches alike before and after the daemon's check summarises the complete ranges autovacuum left."""
    made = booted_chain([f"2026-11-{2 + n // 500:02d}T{n // 60 % 8:02d}:{n % 60:02d}:00.000Z" for n in range(700)])
    with Store(postgres_schema_db) as store:
        register(store)
        store.add_worker("W1", name="Zhang Wei", employer="Steel team")
        with store.transaction():
            for punch in made:
                store.insert_punch(punch, received_at="2026-12-06T00:00:00.000Z", source="mqtt", flags="")
        manual = store.add_manual_punch(worker="W1", site="S1", time=TIMES[2], direction="out", by="ops",
                                        reason="forgot card")
        methods = {row["relname"]: row["amname"] for row in store.db.rows(
            "SELECT c.relname, a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
            "WHERE c.relname IN ('punches_id', 'punches_manual_id')")}
        assert methods == {"punches_id": "brin", "punches_manual_id": "btree"}
        held = store.db.value("SELECT tableoid::regclass::text FROM punches WHERE gate IS NOT NULL LIMIT 1")
        assert store.db.value("SELECT pg_relation_size(?::regclass) / 8192", (held,)) > 16  # a complete range
        ids = store.db.column("SELECT id FROM punches WHERE gate IS NOT NULL ORDER BY seq")
        leaves = store.db.column("SELECT relid FROM pg_partition_tree('punches_id') WHERE isleaf")
        for check in (False, True):
            assert [store.punch(i)["digest"] for i in ids[::50]] == [punch.digest() for punch in made[::50]]
            assert store.punch(manual)["worker"] == "W1"
            if not check:
                partitions.summarise(store.db)
                assert partitions.summarise(store.db) == 0
                assert [store.db.value("SELECT brin_summarize_new_values(?::regclass)", (leaf,))
                        for leaf in leaves] == [0] * len(leaves)  # nothing left to summarise
        store.void_punch(ids[1], reason="test", by="ops")
        assert store.punch(ids[1])["void_at"] is not None
