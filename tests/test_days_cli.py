"""`collector days status|refresh|rebuild` and `collector db upgrade` building the days of an older
database, through the real command line (in process), on both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, schema
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory

W1_CARD, W2_CARD = "04A1B2C3D4E5F6", "DEADBEEF"
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 08:00 at the site three days ago: every shift below has run out by now.
DAY = datetime.now(SHANGHAI).date() - timedelta(days=3)
START = datetime.combine(DAY, time(8), tzinfo=SHANGHAI).astimezone(UTC)


def setup_for(tmp_path: Path, database) -> CollectorSetup:
    return CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                 db=None if isinstance(database, Path) else database)


def tap_days(store: Store, north: PunchFactory, south: PunchFactory) -> None:
    """Three days of W1 (an 8-hour shift each) and a forgotten OUT of W2, stored as ingest stores them:
    marks left, days not recomputed."""
    punches = []
    for day in range(3):
        at = START + timedelta(days=day)
        punches += [(north, W1_CARD, at, "in"), (south, W1_CARD, at + timedelta(hours=8), "out")]
    punches.append((north, W2_CARD, START + timedelta(hours=1), "in"))
    # Each gate signs in the order of its clock.
    for gate, card, at, direction in sorted(punches, key=lambda p: p[2]):
        punch = gate.next(card=card, direction=direction, at=at)
        Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                         format_time(at + timedelta(seconds=1)))])


@pytest.fixture
def bank(tmp_path, database):
    setup = setup_for(tmp_path, database)
    north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("gate", "add", "north", "--site", "S1", "--public-key", north.public_key)
    setup.run("gate", "add", "south", "--site", "S1", "--public-key", south.public_key)
    setup.run("worker", "add", "W1", "--name", "王伟", "--card", W1_CARD, "--site", "S1")
    setup.run("worker", "add", "W2", "--name", "李娜", "--card", W2_CARD, "--site", "S1")
    with setup.store() as store:
        tap_days(store, north, south)
    return setup


def rebuild(setup: CollectorSetup, *args: str) -> tuple[int, dict]:
    result = setup.run("days", "rebuild", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_status_refresh_and_a_rebuild_that_finds_nothing(bank):
    waiting = bank.json("days", "status")
    assert waiting["marks"] == 7 and waiting["oldest"] is not None and waiting["days"] == 0
    done = bank.json("days", "refresh")
    assert (done["units"], done["marks"], done["skipped"]) == (2, 7, 0)
    assert bank.json("days", "status") == {"marks": 0, "oldest": None, "days": 4}
    code, found = rebuild(bank)
    assert code == 0 and found["differences"] == [] and found["sites"] == ["S1"]
    assert found["days_checked"] >= 4 and found["recomputed"]["units"] == 2
    text = bank.run("days", "rebuild").stdout
    assert "0 difference(s)" in text and "DIFFERENT" not in text
    assert bank.json("days", "status")["marks"] == 0


@pytest.mark.parametrize("corruption", ["record changed", "day removed", "day invented", "day invented long before"])
def test_a_kept_day_changed_behind_the_collectors_back_is_reported_and_repaired(bank, corruption):
    bank.json("days", "refresh")
    day = DAY
    with bank.store() as store:
        kept = {(d.worker, d.day): d for d in store.stored_days()}
        w1 = kept[("W1", day.isoformat())]
        if corruption == "record changed":
            record = {**w1.record, "worked_minutes": 600}
            store.execute("UPDATE days SET record = ? WHERE worker = 'W1' AND day = ?",
                          (json.dumps(record), day.isoformat()))
        elif corruption == "day removed":
            store.execute("DELETE FROM days WHERE worker = 'W1' AND day = ?", (day.isoformat(),))
        else:
            invented = (day + timedelta(days=1)).isoformat() if corruption == "day invented" else "2021-03-01"
            store.execute("INSERT INTO days (site, worker, day, record, open_until, after, computed_at) "
                          "VALUES ('S1', 'W2', ?, ?, NULL, NULL, 'x')", (invented, json.dumps(w1.record)))
    code, found = rebuild(bank)
    assert code == 1
    (difference,) = found["differences"]
    if corruption.startswith("day invented"):
        assert (difference["worker"], difference["date"]) == ("W2", invented)
        assert difference["from_punches"] is None and difference["kept"]["worked_minutes"] == 480
    else:
        assert (difference["worker"], difference["date"]) == ("W1", day.isoformat())
        assert difference["from_punches"]["worked_minutes"] == 480
        assert (difference["kept"] or {}).get("worked_minutes") == (600 if corruption == "record changed" else None)
    text = bank.run("days", "rebuild", check=False)
    assert text.returncode == 0, "the first rebuild repaired the day"
    assert "0 difference(s)" in text.stdout
    rows = bank.json("attendance", "--site", "S1", "--date", day.isoformat())
    assert [(r["worker"], r["worked_minutes"], r["status"]) for r in rows] == \
        [("W1", 480, "complete"), ("W2", 0, "missing_out")]


def test_rebuild_says_what_it_checks_and_refuses_what_does_not_exist(bank):
    day = DAY
    code, found = rebuild(bank, "--site", "S1", "--from", day.isoformat(), "--to", day.isoformat())
    assert code == 0 and found["days_checked"] == 1 and found["differences"] == []
    missing = bank.run("days", "rebuild", "--site", "S9", check=False)
    assert missing.returncode == 1 and "site S9 does not exist" in missing.stderr
    backwards = bank.run("days", "rebuild", "--from", day.isoformat(),
                         "--to", (day - timedelta(days=1)).isoformat(), check=False)
    assert backwards.returncode == 1 and "--to is before --from" in backwards.stderr


def test_db_upgrade_builds_the_days_of_a_database_made_before_them(tmp_path, empty_database):
    """A database as step 23 left it, with punches stored then (no marks: there were no days yet)."""
    setup = setup_for(tmp_path, empty_database)
    north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
    with Store(setup.location, upgrade=False) as store:
        schema.upgrade(store.db, until=23)
        assert not store.has("days")
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_gate("S1", "south", south.public_key)
        store.add_worker("W1", name="王伟", cards=[W1_CARD], sites=["S1"])
        store.add_worker("W2", name="李娜", cards=[W2_CARD], sites=["S1"])
        tap_days(store, north, south)
        store.add_manual_punch(site="S1", worker="W2", time=format_time(START + timedelta(hours=9)),
                               direction="out", reason="side gate", by="ops")
    before = setup.run("days", "status", check=False)
    assert before.returncode == 1 and "collector db upgrade" in before.stderr
    upgraded = setup.json("db", "upgrade")
    assert 24 in upgraded["applied"] and upgraded["days_recomputed"] == 2
    assert setup.json("days", "status") == {"marks": 0, "oldest": None, "days": 4}
    code, found = rebuild(setup)
    assert code == 0 and found["differences"] == []
    day = DAY
    rows = setup.json("attendance", "--site", "S1", "--date", day.isoformat())
    assert [(r["worker"], r["worked_minutes"], r["status"]) for r in rows] == \
        [("W1", 480, "complete"), ("W2", 480, "complete")]


@pytest.mark.parametrize("broken", [datetime(2150, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 20, tzinfo=UTC),
                                    datetime(2005, 1, 1, tzinfo=UTC)])
def test_a_punch_no_working_day_can_hold_neither_stops_nor_stretches_the_check(bank, broken):
    """A gate whose clock says 2150, 9999 or 2005 signs punches no day holds (listed, never counted): the
    check covers the days the site's plausible punches and its kept days span."""
    gate = PunchFactory(gate="east")
    bank.run("gate", "add", "east", "--site", "S1", "--public-key", gate.public_key)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", "east").punch, encode_punches(
            [gate.next(card=W1_CARD, direction="in", at=broken)]), format_time(datetime.now(UTC)))])
    code, found = rebuild(bank)
    assert code == 0 and found["differences"] == [] and found["sites"] == ["S1"]
    assert found["days_checked"] == (datetime.now(SHANGHAI).date() - DAY).days + 1
