"""The registry commands: sites, gates, workers, card windows, CSV import; and attribution by window."""

from __future__ import annotations

import json

import pytest

from collector.attendance.cards import CardIndex
from gate_agent.protocol import GateTopics, encode_punches
from tests.helpers import CollectorSetup, PunchFactory


@pytest.fixture
def collector(tmp_path, broker, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=broker, db=database)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai", "--name", "Riverside")
    return setup


def test_site_and_gate_add_print_one_line_or_json(collector):
    factory = PunchFactory()
    result = collector.run("gate", "add", "north", "--site", "S1", "--public-key", factory.public_key)
    assert result.stdout.strip() == "gate S1/north added"
    data = collector.json("gate", "add", "north", "--site", "S1", "--public-key", factory.public_key)
    assert data == {"site": "S1", "gate": "north", "outcome": "unchanged", "display": None}
    site = collector.json("site", "add", "S2", "--timezone", "Europe/London")
    assert site["timezone"] == "Europe/London" and site["max_shift_hours"] == 16.0


@pytest.mark.parametrize("args, message", [
    (["site", "add", "S1", "--timezone", "Asia/Shanghai"], "site S1 already exists"),
    (["site", "add", "S9", "--timezone", "Mars/Olympus"], "not an IANA time zone"),
    (["site", "add", "S/9", "--timezone", "UTC"], "is not an id"),
    (["gate", "add", "g1", "--site", "S9", "--public-key", PunchFactory().public_key], "site S9 does not exist"),
    (["gate", "add", "g1", "--site", "S1", "--public-key", "ssh-rsa AAAA"], "must start with 'ed25519:'"),
    (["worker", "add", "W1", "--name", "A", "--card", "xyz"], "not 4 to 10 bytes of hex"),
    (["card", "revoke", "DEADBEEF"], "not held by anyone"),
])
def test_registry_mistakes_are_one_clear_line(collector, args, message):
    result = collector.run(*args, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_a_key_belongs_to_one_gate(collector):
    key = PunchFactory().public_key
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", key)
    result = collector.run("gate", "add", "south", "--site", "S1", "--public-key", key, check=False)
    assert result.returncode != 0 and "already belongs to gate S1/north" in result.stderr


def test_worker_add_and_list(collector):
    collector.run("worker", "add", "W001", "--name", "Zhang Wei", "--card", "04:a1:b2:c3:d4:e5:f6",
                  "--employer", "Hua Jian")
    collector.run("worker", "add", "W002", "--name", "Li Na", "--card", "DEADBEEF", "--card", "CAFEBABE")
    workers = collector.json("worker", "list")
    assert [w["worker"] for w in workers] == ["W001", "W002"]
    assert workers[0]["name"] == "Zhang Wei" and workers[0]["employer"] == "Hua Jian"
    assert [c["uid"] for c in workers[0]["cards"]] == ["04A1B2C3D4E5F6"]
    assert [c["uid"] for c in workers[1]["cards"]] == ["DEADBEEF", "CAFEBABE"]
    assert set(workers[0]) >= {"worker", "name", "employer", "cards"}
    again = collector.run("worker", "add", "W003", "--name", "X", "--card", "DEADBEEF", check=False)
    assert again.returncode != 0 and "held by worker W002" in again.stderr


def test_csv_import_all_or_nothing(collector, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("worker,name,card,employer,site\nW1,Zhang Wei,04A1B2C3D4E5F6,Hua Jian,S1\nW2,Li Na,DEADBEEF,,S1\n")
    result = collector.run("worker", "import", str(good))
    assert "2 new, 0 changed, 0 unchanged; 2 card(s) added, 0 replaced; 2 site assignment(s)" in result.stdout
    workers = {w["worker"]: w for w in collector.json("worker", "list")}
    assert [c["uid"] for c in workers["W1"]["cards"]] == ["04A1B2C3D4E5F6"] and workers["W1"]["sites"] == ["S1"]

    bad = tmp_path / "bad.csv"
    bad.write_text("worker,name,card,employer\nW3,Wang Fang,11223344,X\nW/4,Bad Id,55667788,\n"
                   "W5,,99AABBCC,\nW6,Card Thief,DEADBEEF,\nW7,Short,1234,\nW8,Dup,11223344,\nW3,Again,,X\n")
    result = collector.run("worker", "import", str(bad), check=False)
    assert result.returncode != 0
    for line, why in ((3, "is not an id"), (4, "name is empty"), (5, "held by worker W2"),
                      (6, "not 4 to 10 bytes"), (7, "also given to W3 on line 2"), (8, "W3 is also on line 2")):
        assert f"line {line}: " in result.stderr and why in result.stderr, (line, why, result.stderr)
    assert "nothing imported" in result.stderr
    assert "W3" not in {w["worker"] for w in collector.json("worker", "list")}


def test_csv_without_the_columns_is_refused(collector, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,fullname\n1,A\n")
    result = collector.run("worker", "import", str(path), check=False)
    assert result.returncode != 0 and "the header lacks worker" in result.stderr and "name" in result.stderr


def test_a_lost_card_replaced_keeps_old_punches_with_the_old_holder(collector):
    collector.run("worker", "add", "W1", "--name", "Zhang Wei", "--card", "DEADBEEF",
                  "--card-from", "2026-01-01T00:00:00+08:00")
    collector.run("card", "revoke", "DEADBEEF", "--at", "2026-03-01T00:00:00+08:00")
    collector.run("worker", "add", "W2", "--name", "Li Na")
    collector.run("card", "assign", "DEADBEEF", "--worker", "W2", "--from", "2026-03-02T00:00:00+08:00")
    with collector.store() as store:
        index = CardIndex(store.card_windows())
    assert index.holder("DEADBEEF", "2026-02-01T00:00:00.000Z").worker == "W1"
    assert index.holder("DEADBEEF", "2026-03-01T12:00:00.000Z") is None  # nobody held it that day
    assert index.holder("DEADBEEF", "2026-06-01T00:00:00.000Z").worker == "W2"
    assert index.holder("DEADBEEF", "2025-12-01T00:00:00.000Z") is None
    overlap = collector.run("card", "assign", "DEADBEEF", "--worker", "W1", "--from", "2026-02-01T00:00:00Z",
                            check=False)
    assert overlap.returncode != 0 and "held by worker W2" in overlap.stderr


def test_an_unregistered_cards_punch_is_stored_flagged_then_attributed(collector):
    factory = PunchFactory()
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", factory.public_key)
    from collector.ingest.pipeline import Incoming, Ingestor

    with collector.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([factory.next(card="CAFEBABE")]),
                                         "2026-11-28T01:00:00.000Z")])
    punch = collector.json("punches", "--site", "S1")[0]
    assert punch["worker"] is None and "unknown_card" in punch["flags"]
    collector.run("worker", "add", "W9", "--name", "Late Registration", "--card", "CAFEBABE")
    punch = collector.json("punches", "--site", "S1")[0]
    assert punch["worker"] == "W9" and "unknown_card" not in punch["flags"]
    assert json.loads(json.dumps(punch))["card"] == "CAFEBABE"


def test_revoking_a_gate_key(collector):
    from gate_agent.protocol import key_id

    factory = PunchFactory()
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", factory.public_key)
    kid = key_id(factory.public_key)
    assert collector.run("gate", "revoke-key", "north", "--site", "S1", "--key", kid).stdout.strip() == \
        f"gate S1/north: key {kid} revoked"
    keys = collector.json("gate", "keys", "north", "--site", "S1")
    assert keys[0]["fingerprint"] == kid and keys[0]["revoked_at"]
    again = collector.run("gate", "revoke-key", "north", "--site", "S1", "--key", kid, check=False)
    assert again.returncode != 0 and "has no unrevoked key" in again.stderr
