"""`collector db copy`: a pilot's SQLite database moved into PostgreSQL, verified there, or refused whole.

The pilot is built the way the rest of the suite builds databases (real ingest of signed punches, the
CLI for corrections): several sites, gates and workers, manual punches and voids, quarantined bytes,
statuses, an equivocation and a chain break, gaps filled and open, a rotated and a revoked key, a
deactivated gate, cards revoked and reassigned. Every report must read the same from either backend.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import QuarantineLimits, Store, schema
from collector.store import copy as dbcopy
from collector.store.connection import connect
from gate_agent.protocol import (
    GateTopics,
    Punch,
    encode_punches,
    encode_status,
    format_time,
    key_id,
    public_key_text,
    sign_punch,
)
from tests.helpers import CollectorSetup, PunchFactory, cli, heartbeat
from tests.test_attendance_reports import STRANGER, W1_CARD, W2_CARD, Site, local

W3_CARD, W4_CARD = "0A0B0C0D", "11223344"
#: The pilot's gates were registered when it started, long before the punches below.
PILOT_START = "2026-01-05T02:00:00.000Z"


def ingest(setup: CollectorSetup, site: str, gate: str, payload: bytes, received: datetime,
           kind: str = "punch") -> None:
    topics = GateTopics(site, gate)
    with setup.store() as store:
        Ingestor(store).ingest([Incoming(getattr(topics, kind), payload, format_time(received))])


def send(setup: CollectorSetup, *punches: Punch, delay: timedelta = timedelta(seconds=2)) -> None:
    for punch in punches:
        ingest(setup, punch.site, punch.gate, encode_punches([punch]), punch.moment + delay)


def build_pilot(tmp_path) -> Site:
    """A pilot's SQLite database after a month of use (see the module docstring)."""
    site = Site(tmp_path)  # S1: north (in), south (out); W1, W2
    setup = site.setup
    site.tap(site.north, W1_CARD, local("2026-11-02 08:00"), "in")
    site.tap(site.north, W2_CARD, local("2026-11-02 08:30"), "in")
    site.tap(site.north, STRANGER, local("2026-11-02 09:00"), "in")  # nobody's card: unknown_card
    gate_out = site.tap(site.south, W1_CARD, local("2026-11-02 17:00"), "out")
    site.tap(site.north, W1_CARD, local("2026-11-03 07:58"), "in")
    site.tap(site.south, W1_CARD, local("2026-11-03 16:30"), "out")
    send(setup, gate_out)  # redelivered: a duplicate, counted

    # Equivocation: north signs a second, different punch under a seq it already used.
    held = site.tap(site.north, W2_CARD, local("2026-11-03 08:05"), "in")
    send(setup, sign_punch(Punch(**(held.to_dict() | {"card": STRANGER})), site.north.key))
    # A chain break: south signs a punch that links to a history the bank never saw.
    send(setup, site.south.next(card=W2_CARD, direction="out", at=local("2026-11-03 17:10").astimezone(UTC),
                                prev="ab" * 32))
    # A gap that was filled, and one still open (with a resend request).
    first, missing, third = (site.north.next(card=W1_CARD, at=local(f"2026-11-04 0{h}:00").astimezone(UTC))
                             for h in (7, 8, 9))
    send(setup, first, third)
    with setup.store() as store:
        store.record_gaps("S1", "north", format_time(third.moment))
    send(setup, missing)
    with setup.store() as store:
        store.record_gaps("S1", "north", format_time(missing.moment))

    # Manual corrections and voids (by the CLI, as bank ops enter them).
    setup.run("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-11-02T17:30:00+08:00",
              "--direction", "out", "--reason", "forgot card at exit", "--by", "ops-li")
    wrong = json.loads(setup.run("punch", "add", "--worker", "W1", "--site", "S1", "--at",
                                 "2026-11-03T12:00:00+08:00", "--direction", "out", "--reason", "typo",
                                 "--by", "ops-li", "--json").stdout)
    setup.run("punch", "void", str(wrong["id"]), "--reason", "entered for the wrong day", "--by", "ops-wang")
    south_ids = [p["id"] for p in setup.json("punches", "--site", "S1") if p["gate"] == "south"]
    setup.run("punch", "void", str(south_ids[1]), "--reason", "tapped for a colleague", "--by", "ops-wang")

    # W2's card is lost on the 4th and handed to a new worker W3 from the 5th.
    setup.run("worker", "add", "W3", "--name", "Wang Fang", "--employer", "Zhong Tie", "--card", W3_CARD)
    setup.run("card", "revoke", W2_CARD, "--at", "2026-11-04T18:00:00+08:00")
    setup.run("card", "assign", W2_CARD, "--worker", "W3", "--from", "2026-11-05T06:00:00+08:00")
    site.tap(site.north, W2_CARD, local("2026-11-05 07:30"), "in")
    site.tap(site.south, W2_CARD, local("2026-11-05 16:00"), "out")

    # South's key is rotated and the old one revoked; the old key's punches stay valid.
    old_key = key_id(site.south.key.public_key())
    site.south.key = Ed25519PrivateKey.generate()
    setup.run("gate", "add", "south", "--site", "S1", "--public-key", public_key_text(site.south.key.public_key()))
    setup.run("gate", "revoke-key", "south", "--site", "S1", "--key", old_key)
    site.tap(site.south, W1_CARD, local("2026-11-05 17:00"), "out")

    # A third gate at S1, retired after a few punches; a second site in another zone.
    west = PunchFactory(gate="west")
    setup.run("gate", "add", "west", "--site", "S1", "--public-key", west.public_key)
    send(setup, west.next(card=W1_CARD, at=local("2026-11-05 07:00").astimezone(UTC)),
         west.next(card=W3_CARD, at=local("2026-11-05 07:01").astimezone(UTC), synced=False))
    setup.run("gate", "deactivate", "west", "--site", "S1")
    setup.run("site", "add", "S2", "--timezone", "Europe/Berlin", "--max-shift-hours", "12")
    east = PunchFactory(site="S2", gate="east")
    setup.run("gate", "add", "east", "--site", "S2", "--public-key", east.public_key)
    setup.run("worker", "add", "W4", "--name", "Jonas Bauer", "--card", W4_CARD)
    berlin = datetime(2026, 11, 9, 6, 45, tzinfo=UTC)
    send(setup, east.next(card=W4_CARD, at=berlin, direction="in"),
         east.next(card=W4_CARD, at=berlin + timedelta(hours=8, minutes=15), direction="out"),
         east.next(card=W4_CARD, at=datetime(2019, 3, 1, tzinfo=UTC)))  # clock_implausible

    # Who is inside now (the headcount), and north's open gap, the newest punches.
    now = datetime.now(UTC).replace(microsecond=0)
    site.tap(site.north, W1_CARD, now - timedelta(hours=3), "in")
    site.tap(site.north, W3_CARD, now - timedelta(hours=2), "in")
    site.north.next(card=W4_CARD, at=now - timedelta(minutes=70))  # never arrives
    site.tap(site.north, STRANGER, now - timedelta(hours=1), "in")
    with setup.store() as store:
        gaps = store.record_gaps("S1", "north", format_time(now))
        store.note_resend(gaps[0]["id"], format_time(now))

    # Statuses, and what the quarantine keeps: bytes that are not UTF-8, more refusals in an hour than
    # it keeps rows for, an unknown gate, a bad signature, a bad status, and rows past the byte limit.
    for gate, pending in (("north", 0), ("south", 2)):
        ingest(setup, "S1", gate, encode_status("online", **heartbeat(
            gate=gate, time=format_time(now - timedelta(minutes=5)), last_seq=9, acked_seq=9 - pending,
            pending=pending)), now - timedelta(minutes=5), kind="status")
    refused_at = datetime(2026, 11, 6, 3, 15, tzinfo=UTC)
    for n in range(22):
        ingest(setup, "S1", "north", b"\xff\xfe\x00 not json " + bytes([n]), refused_at + timedelta(seconds=n))
    ghost = PunchFactory(gate="ghost")
    ingest(setup, "S1", "ghost", encode_punches([ghost.next()]), refused_at)
    forged = sign_punch(Punch(**(east.next(card=W4_CARD).to_dict())), Ed25519PrivateKey.generate())
    ingest(setup, "S2", "east", encode_punches([Punch(**(forged.to_dict() | {"key": key_id(east.public_key)}))]),
           refused_at)
    ingest(setup, "S1", "south", b'{"v": 1, "state": "online", "pending": -1}', refused_at, kind="status")
    with setup.store() as store, store.transaction():
        store.trim_quarantine(QuarantineLimits(raw_rows=8))
        store.set_gauges({"ingest_lag_seconds": 0.125, "punches_per_second": 3.5}, format_time(now))
    with setup.store() as store:
        store.record_bank_key(public_key_text(Ed25519PrivateKey.generate().public_key()))  # before a rotation
        store.execute("UPDATE gate_keys SET added_at = ?", (PILOT_START,))
    return site


REPORTS = [
    ("attendance", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-28", "--json"),
    ("attendance", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-28", "--csv"),
    ("attendance", "--site", "S2", "--from", "2026-11-01", "--to", "2026-11-28", "--json"),
    ("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", "--json"),
    ("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", "--csv"),
    ("payroll", "--site", "S2", "--from", "2026-11-01", "--to", "2026-11-30", "--csv"),
    ("punches", "--site", "S1", "--json"),
    ("punches", "--site", "S2", "--json"),
    ("gates", "--json"),
    ("quarantine", "--json"),
    ("quarantine",),
    ("conflicts", "--json"),
    ("counters", "--json"),
    ("worker", "list", "--json"),
    ("bank-key", "--json"),
]


def copy(source, target, *args: str, check: bool = True):
    return cli("collector", "db", "copy", "--from", str(source), "--to", target, *args, check=check, timeout=300)


def pg_setup(tmp_path, url: str) -> CollectorSetup:
    return CollectorSetup.create(tmp_path / "postgresql", broker=SimpleNamespace(port=1883), db=url)


def test_db_copy_of_a_pilot_gives_identical_reports_on_both_backends(tmp_path, postgres_db):
    pilot = build_pilot(tmp_path).setup
    report = json.loads(copy(pilot.db_path, postgres_db, "--json").stdout)
    assert report["ok"] and report["committed"] and report["problems"] == []
    assert [t["table"] for t in report["tables"]] == [t.name for t in dbcopy.TABLES]
    rows = {t["table"]: t["target_rows"] for t in report["tables"]}
    assert all(rows[name] > 0 for name in ("punches", "conflicts", "gaps", "quarantine", "quarantine_tally",
                                           "gauges", "bank_keys", "cards")), rows
    gates = {(g["site"], g["gate"]): g for g in report["gates"]}
    assert set(gates) == {("S1", "north"), ("S1", "south"), ("S1", "west"), ("S2", "east")}
    assert gates[("S1", "south")]["chain_breaks"] == 1
    assert gates[("S1", "north")]["contiguous_seq"] < pilot.count("SELECT MAX(seq) FROM punches WHERE gate = 'north'")

    postgres = pg_setup(tmp_path, postgres_db)
    for args in REPORTS:
        assert pilot.run(*args).stdout == postgres.run(*args).stdout, args
    inside = [{k: v for k, v in setup.json("headcount", "--site", "S1").items() if k != "as_of"}
              for setup in (pilot, postgres)]  # as_of: the second it was asked
    assert inside[0] == inside[1] and inside[0]["on_site"] == 2 and inside[0]["unknown_cards"] == 1
    for sql in ("SELECT id, signed, body FROM punches ORDER BY id", "SELECT id, raw, sha256 FROM quarantine ORDER BY id",
                "SELECT id, other_body FROM conflicts ORDER BY id"):
        assert pilot.rows(sql) == postgres.rows(sql), sql
    assert any(raw is not None and b"\xff" in raw for _, raw, _ in postgres.rows("SELECT id, raw, sha256 FROM quarantine"))

    # An evidence file from either backend verifies against the other's registry, and says the same.
    for worker, first, last in (("W1", "2026-11-02", "2026-11-03"), ("W3", "2026-11-05", "2026-11-05")):
        documents = []
        for made_by, checked_by in ((pilot, postgres), (postgres, pilot)):
            out = tmp_path / f"{worker}-{len(documents)}.json"
            made_by.run("evidence", "--worker", worker, "--from", first, "--to", last, "--out", str(out))
            assert "OK" in checked_by.run("verify", str(out)).stdout
            documents.append({k: v for k, v in json.loads(out.read_text()).items() if k not in ("generated_at", "sig")})
        assert documents[0] == documents[1] and documents[0]["gates"]
    assert W2_CARD in [c["uid"] for c in documents[0]["cards"]]  # W3 holds the card W2 lost

    # Ids go on where the pilot's ended: the next manual punch gets the same id on both backends.
    added = [setup.json("punch", "add", "--worker", "W3", "--site", "S1", "--at", "2026-11-06T17:00:00+08:00",
                        "--direction", "out", "--reason", "after the move", "--by", "ops-li")["id"]
             for setup in (pilot, postgres)]
    assert added[0] == added[1] == pilot.count("SELECT MAX(id) FROM punches")
    postgres.run("punch", "void", str(added[1]), "--reason", "test entry", "--by", "ops-li")


def test_every_table_of_the_schema_is_copied_or_named_runtime_only(tmp_path):
    """A table added by a later schema step must be copied or be declared runtime-only (with why)."""
    with Store(tmp_path / "schema.sqlite3") as store:
        tables = {row[0] for row in store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()}
    assert tables - dbcopy.OWN_RECORDS == {t.name for t in dbcopy.TABLES} | set(dbcopy.RUNTIME_ONLY)
    assert all(why.strip() for why in dbcopy.RUNTIME_ONLY.values())


# ---------------------------------------------------------------------------------------------- refusals

def target_state(url: str) -> dict:
    """Every table of the target with its rows (and what a missing schema looks like)."""
    conn = connect(url, readonly=True)
    try:
        names = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name").fetchall()]
        return {name: sorted(map(repr, conn.execute(f"SELECT * FROM {name}").fetchall())) for name in names}
    finally:
        conn.close()


@pytest.mark.parametrize("use, table", [("site", "sites"), ("counter", "counters"), ("member", "members")])
def test_a_target_holding_rows_is_refused_and_left_unchanged(tmp_path, postgres_db, use, table):
    site = Site(tmp_path)
    site.tap(site.north, W1_CARD, local("2026-11-02 08:00"), "in")
    with Store(postgres_db) as store:
        if use == "site":
            store.add_site("S9", timezone="Asia/Shanghai")
        elif use == "counter":
            with store.transaction():
                store.add_counters({"stored": 1})
        else:  # a collector process is running on it
            store.member_alive("collector-1", 30)
    before = target_state(postgres_db)
    result = copy(site.setup.db_path, postgres_db, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"Error: {postgres_db} is not empty ({table} hold rows): db copy writes only "
                                     "into an empty database; nothing was written")
    assert target_state(postgres_db) == before


def test_a_source_behind_the_current_schema_is_refused_with_what_to_run(tmp_path, postgres_db):
    site = Site(tmp_path)
    with site.setup.store() as store:
        store.execute("DELETE FROM schema_migrations WHERE version = ?", (schema.STEPS[-1].version,))
    result = copy(site.setup.db_path, postgres_db, check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert f"lacks schema step(s) {schema.STEPS[-1].version} {schema.STEPS[-1].name}" in result.stderr
    assert "collector db upgrade --config" in result.stderr
    assert target_state(postgres_db) == {}  # not even the schema was made


def test_copy_goes_from_a_sqlite_file_to_postgresql_only(tmp_path, postgres_db):
    site = Site(tmp_path)
    into_sqlite = copy(site.setup.db_path, str(tmp_path / "other.sqlite3"), check=False)
    assert into_sqlite.returncode == 1 and "--to must be a postgresql:// URL" in into_sqlite.stderr
    from_postgresql = copy(postgres_db, postgres_db, check=False)
    assert from_postgresql.returncode == 1 and "--from is the pilot's SQLite file" in from_postgresql.stderr
    missing = copy(tmp_path / "nothing.sqlite3", postgres_db, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "other.sqlite3").exists() and not (tmp_path / "nothing.sqlite3").exists()


# ---------------------------------------------------------------------------------------------- verification

def test_a_tampered_punch_body_in_the_source_fails_the_copy_and_nothing_is_kept(tmp_path, postgres_db):
    site = Site(tmp_path)
    for hour in (8, 9, 10):
        site.tap(site.north, W1_CARD, local(f"2026-11-02 {hour:02}:00"), "in")
    conn = sqlite3.connect(site.setup.db_path)
    conn.execute("UPDATE punches SET card = ? WHERE gate = 'north' AND seq = 2", (W2_CARD,))
    conn.commit()
    conn.close()
    result = copy(site.setup.db_path, postgres_db, check=False)
    assert result.returncode == 1
    assert "MISMATCH: gate S1/north: signature of north seq 2 does not verify" in result.stderr
    assert "nothing was committed" in result.stderr and "MISMATCH" in result.stdout
    assert target_state(postgres_db) == {}


@pytest.mark.parametrize("sql, params, problems", [
    ("UPDATE workers SET name = ? WHERE worker = 'W1'", ("Mallory",),
     ["table workers: the rows in the target differ from the source's"]),
    ("UPDATE punches SET signed = ? WHERE gate = 'north' AND seq = 1", (b"{}",),
     ["table punches: the rows in the target differ", "gate S1/north: seq 1: the stored punch cannot be rebuilt (its proof is "
                                                               "missing or damaged)"]),
    ("UPDATE gate_boots SET reader = ? WHERE gate = 'north'", ("another reader",),
     ["table gate_boots: the rows in the target differ", "gate S1/north: signature of north seq 1 does not verify"]),
    ("UPDATE punches SET time = ? WHERE gate = 'south' AND seq = 1", ("2026-11-02T08:00:00.000Z",),
     ["table punches: the rows in the target differ", "gate S1/south: signature of south seq 1 does not verify"]),
    ("DELETE FROM quarantine WHERE id = (SELECT MAX(id) FROM quarantine)", (),
     ["table quarantine: 2 row(s) in the source, 2 copied, 1 in the target"]),
    ("UPDATE gate_state SET contiguous_seq = 1 WHERE gate = 'north'", (),
     ["table gate_state: the rows in the target differ"]),
    ("DELETE FROM punches WHERE gate = 'north' AND seq = 2", (),
     ["table punches: 5 row(s) in the source, 5 copied, 4 in the target",
      "gate S1/north: the target's punches are contiguous to seq 1"]),
    ("UPDATE punches SET gate = 'nowhere' WHERE gate = 'south'", (),
     ["table punches: the rows in the target differ", "1 gate punch(es) in the target belong to no registered gate",
      "gate S1/south: the target's punches are contiguous to seq 0 (none), the source recorded seq 1"]),
    ("SELECT setval(pg_get_serial_sequence('punches', 'id'), 2)", (),
     ["table punches: the next id would be 3, not past the highest copied id 5"]),
])
def test_a_target_changed_between_copy_and_verification_is_not_committed(tmp_path, postgres_db, sql, params,
                                                                         problems):
    site = Site(tmp_path)
    site.tap(site.north, W1_CARD, local("2026-11-02 08:00"), "in")
    site.tap(site.north, W2_CARD, local("2026-11-02 08:30"), "in")
    site.tap(site.north, W1_CARD, local("2026-11-02 08:31"), "in")
    site.tap(site.south, W1_CARD, local("2026-11-02 17:00"), "out")
    site.cli("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-11-02T17:30:00+08:00",
             "--direction", "out", "--reason", "forgot card", "--by", "ops-li")
    for n in range(2):
        ingest(site.setup, "S1", "north", b"garbage %d" % n, datetime(2026, 11, 2, tzinfo=UTC))
    report = dbcopy.copy_database(site.setup.db_path, postgres_db,
                                  before_verify=lambda conn: conn.execute(sql, params))
    assert not report.ok and not report.committed
    for expected in problems:
        assert any(expected in problem for problem in report.problems), (expected, report.problems)
    assert len(report.problems) == len(problems), report.problems
    assert target_state(postgres_db) == {}


def test_a_value_postgresql_cannot_hold_fails_the_copy_naming_its_table(tmp_path, postgres_db):
    site = Site(tmp_path)
    conn = sqlite3.connect(site.setup.db_path)
    conn.execute("UPDATE workers SET name = ? WHERE worker = 'W2'", ("Li\x00Na",))  # SQLite text may hold NUL
    conn.commit()
    conn.close()
    result = copy(site.setup.db_path, postgres_db, check=False)
    error = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert result.returncode == 1 and len(error) == 1, result.stderr
    assert "copying table workers failed, nothing was written" in error[0] and "NUL" in error[0]
    assert target_state(postgres_db) == {}


def test_a_source_written_while_it_is_copied_is_not_committed(tmp_path, postgres_db):
    """The pilot's collector must be stopped first: a punch it stores during the copy would be missing."""
    site = Site(tmp_path)
    site.tap(site.north, W1_CARD, local("2026-11-02 08:00"), "in")

    def collector_still_running(conn) -> None:
        site.tap(site.north, W2_CARD, local("2026-11-02 08:30"), "in")

    report = dbcopy.copy_database(site.setup.db_path, postgres_db, before_verify=collector_still_running)
    assert not report.committed
    assert report.problems == [f"{site.setup.db_path} changed while it was copied (is its collector still "
                               "running?): stop it and copy again"]
    assert target_state(postgres_db) == {}


# ---------------------------------------------------------------------------------------------- size

PER_GATE = dbcopy.BATCH + dbcopy.CHUNK + 7


@pytest.fixture(scope="module")
def large_pilot(tmp_path_factory) -> Site:
    """Two gates' punches across several read/write batches and verification chunks, with a chain
    break on a chunk's first punch and a gap just past the first page of each chain."""
    site = Site(tmp_path_factory.mktemp("large"))
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for factory in (site.north, site.south):
        punches = []
        for n in range(PER_GATE):
            if n == dbcopy.CHUNK:  # seq CHUNK + 1 links to another history
                factory.prev = "cd" * 32
            punches.append(factory.next(card=W1_CARD, at=start + timedelta(seconds=30 * n)))
        del punches[dbcopy.BATCH]  # seq BATCH + 1 never arrived
        with site.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S1", factory.gate).punch, encode_punches(punches[i:i + 500]),
                                             format_time(start + timedelta(days=1)))
                                    for i in range(0, len(punches), 500)])
    return site


def test_a_copy_larger_than_a_batch_pages_through_every_table(tmp_path, postgres_db, large_pilot):
    pilot = large_pilot.setup
    total = 2 * (PER_GATE - 1)
    assert pilot.count("SELECT COUNT(*) FROM punches") == total

    report = json.loads(copy(pilot.db_path, postgres_db, "--json").stdout)
    assert report["ok"], report["problems"]
    assert {t["table"]: t["target_rows"] for t in report["tables"]}["punches"] == total
    for gate in report["gates"]:
        assert (gate["punches"], gate["chain_breaks"], gate["contiguous_seq"]) == (PER_GATE - 1, 1, dbcopy.BATCH)
    postgres = pg_setup(tmp_path, postgres_db)
    assert postgres.rows("SELECT id, signed, body FROM punches ORDER BY id") == pilot.rows(
        "SELECT id, signed, body FROM punches ORDER BY id")
    added = postgres.json("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-10-02T17:30:00+08:00",
                          "--direction", "out", "--reason", "forgot card", "--by", "ops-li")
    assert added["id"] == total + 1


def flip_direction(*seqs: int):
    def tamper(conn) -> None:
        for seq in seqs:
            conn.execute("UPDATE punches SET direction = 'out' WHERE gate = 'south' AND seq = ?", (seq,))
    return tamper


def forget_chain_break(conn) -> None:
    conn.execute("UPDATE punches SET flags = '' WHERE gate = 'south' AND seq = ?", (dbcopy.CHUNK + 1,))


@pytest.mark.parametrize("tamper, problem", [
    # in different pages and chunks: the lower one is named
    (flip_direction(dbcopy.BATCH + 50, dbcopy.CHUNK + 2), f"signature of south seq {dbcopy.CHUNK + 2} does not verify"),
    # the first punch of a chunk is checked against the last of the one before
    (forget_chain_break, f"south seq {dbcopy.CHUNK + 1} does not link to the seq {dbcopy.CHUNK} held here"),
], ids=["lowest-seq", "across-chunks"])
def test_a_large_copy_names_the_first_failure_of_a_gate(postgres_db, large_pilot, tamper, problem):
    """Chunks are verified in parallel; what is reported is still the gate's first failure by seq."""
    report = dbcopy.copy_database(large_pilot.setup.db_path, postgres_db, before_verify=tamper)
    assert not report.committed
    assert report.problems == ["table punches: the rows in the target differ from the source's (same count, "
                               "other content)", f"gate S1/south: {problem}"]
    assert target_state(postgres_db) == {}


def test_small_batches_page_through_every_table_of_a_pilot(tmp_path, postgres_db):
    pilot = build_pilot(tmp_path).setup
    report = dbcopy.copy_database(pilot.db_path, postgres_db, batch=3)
    assert report.ok, report.problems
    postgres = pg_setup(tmp_path, postgres_db)
    for args in REPORTS:
        assert pilot.run(*args).stdout == postgres.run(*args).stdout, args

