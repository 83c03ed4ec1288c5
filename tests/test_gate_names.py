"""Gates by the names their site calls them ("北门"), ids kept for the bank; `collector gates` in the site's
time; retired gates; the headcount with names, teams and trades. On both engines (issue 22, items 1, 6, 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, schema
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory, heartbeat

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("site", "add", "S2", "--timezone", "Europe/London")
    setup.gates = {gate: PunchFactory(site=site, gate=gate) for site, gate in (("S1", "north"), ("S1", "east"),
                                                                               ("S2", "west"))}
    return setup


def add(bank, site: str, gate: str, *more: str):
    return bank.run("gate", "add", gate, "--site", site, "--public-key", bank.gates[gate].public_key, *more)


def names(bank, site: str = "S1") -> dict:
    return {g["gate"]: g["display"] for g in bank.json("gates", "--site", site)}


def test_a_gate_is_named_as_its_site_calls_it_and_the_name_is_checked_as_a_persons_text(bank):
    assert "the site calls it 北门" in add(bank, "S1", "north", "--display", "北门").stdout
    add(bank, "S1", "east")
    assert names(bank) == {"east": None, "north": "北门"}
    said = bank.run("gate", "name", "east", "--site", "S1", "--display", " 材料门 ").stdout
    assert said.strip() == "gate S1/east: called 材料门"
    # What would hide or reorder what a foreman reads, or fill the banner, is refused; the name stays.
    for hostile in ("北\x07门", "\u202e门北", "北\u200b门", "门" * 33, "   ", "\u3164"):
        refused = bank.run("gate", "name", "east", "--site", "S1", "--display", hostile, check=False)
        assert refused.returncode == 1 and refused.stderr.startswith("Error: the gate's display name "), hostile
        assert "Traceback" not in refused.stderr and (not hostile.strip() or hostile not in refused.stderr)
    # Two gates of a site never share a name (as people read it); another site's gate may.
    refused = bank.run("gate", "name", "east", "--site", "S1", "--display", "北门", check=False)
    assert refused.returncode == 1 and "already called '北门'" in refused.stderr
    add(bank, "S2", "west", "--display", "北门")
    assert names(bank) == {"east": "材料门", "north": "北门"} and names(bank, "S2") == {"west": "北门"}
    assert bank.json("gate", "name", "east", "--site", "S1", "--clear") == {
        "site": "S1", "gate": "east", "display": None, "before": "材料门"}
    assert names(bank)["east"] is None
    usage = bank.run("gate", "name", "east", "--site", "S1", check=False)
    assert usage.returncode == 2 and "--display NAME or --clear" in usage.stderr
    missing = bank.run("gate", "name", "south", "--site", "S1", "--display", "南门", check=False)
    assert missing.returncode == 1 and "is not registered" in missing.stderr


def test_gates_lists_times_in_the_sites_time_with_its_zone_and_a_retired_gate_as_such(bank):
    """Reproduction (issue 22, item 6): `collector gates` printed `last seen 2026-11-28T06:15:00.000Z`."""
    add(bank, "S1", "north", "--display", "北门")
    add(bank, "S2", "west")
    seen = datetime(2026, 11, 28, 6, 15, 7, tzinfo=UTC)
    with bank.store() as store, store.transaction():
        store.save_status("S1", "north", {"v": 1, "state": "online", **heartbeat(gate="north")}, format_time(seen))
        store.save_status("S2", "west", {"v": 1, "state": "online", **heartbeat(site="S2", gate="west")},
                          format_time(seen))
    bank.run("gate", "deactivate", "west", "--site", "S2")
    lines = dict(line.split(": ", 1) for line in bank.run("gates").stdout.splitlines())
    assert lines["S1/north (北门)"].startswith("silent, last seen 2026-11-28 14:15:07, last heartbeat 2026-11-28 "
                                              "14:15:07 (Asia/Shanghai), stored through seq 0")
    west = lines["S2/west"]
    assert "last seen 2026-11-28 06:15:07, last heartbeat 2026-11-28 06:15:07 (Europe/London)" in west
    deactivated = next(g for g in bank.json("gates") if g["gate"] == "west")["deactivated_at"]
    assert deactivated.endswith("Z") and west.endswith(
        f"[deactivated {datetime.fromisoformat(deactivated).astimezone(ZoneInfo('Europe/London')):%Y-%m-%d %H:%M:%S}]")
    text = bank.run("gates").stdout
    assert ".000Z" not in text and "T06:15" not in text

    # The retired gate sends again: it is listed as still sending (the banner's judgement).
    with bank.store() as store, store.transaction():
        store.save_status("S2", "west", {"v": 1, "state": "online", **heartbeat(site="S2", gate="west")},
                          format_time(datetime.now(UTC)))
    west = dict(line.split(": ", 1) for line in bank.run("gates").stdout.splitlines())["S2/west"]
    assert west.endswith("; STILL SENDING]")
    assert next(g for g in bank.json("gates") if g["gate"] == "west")["retired_sending"] is True


def test_the_headcount_names_gates_teams_and_trades(bank):
    add(bank, "S1", "north", "--display", "北门")
    with bank.store() as store:
        store.add_worker("W1", name="张伟", employer="华建劳务", cards=["04A1B2C3D4E5F6"], sites=["S1"], team="钢筋班",
                         trade="钢筋工")
        store.add_worker("W2", name="欧阳建国", employer="华建劳务", cards=["04A1B2C3D4E5F7"], sites=["S1"])
        now = datetime.now(UTC).replace(microsecond=0)
        for minutes, card in ((30, "04A1B2C3D4E5F6"), (20, "04A1B2C3D4E5F7"), (10, "CAFEBABE")):
            punch = bank.gates["north"].next(card=card, at=now - timedelta(minutes=minutes))
            Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                             format_time(now))])
    data = bank.json("headcount", "--site", "S1")
    assert [(w["worker"], w["team"], w["trade"], w["gate"], w["gate_name"]) for w in data["workers"]] == [
        ("W1", "钢筋班", "钢筋工", "north", "北门"), ("W2", None, None, "north", "北门")]
    assert [(u["card"], u["gate_name"]) for u in data["unknown"]] == [("CAFEBABE", "北门")]
    lines = bank.run("headcount", "--site", "S1").stdout.splitlines()
    assert lines[0] == "S1: 2 on site, and 1 unknown card(s)"
    assert lines[1].split()[:4] == ["W1", "张伟", "钢筋班", "钢筋工"] and lines[1].endswith("via 北门 (north)")
    assert lines[2].split()[:4] == ["W2", "欧阳建国", "-", "-"]
    # Columns line up by display width: the "since" column starts at the same screen column in both rows.
    from collector.cli.display import width

    assert width(lines[1][:lines[1].index("since")]) == width(lines[2][:lines[2].index("since")])


def test_a_gate_retired_before_the_bank_kept_when_counts_as_retired_from_the_upgrade(tmp_path):
    path = tmp_path / "older.sqlite3"
    with Store(path, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["teams"])
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", PunchFactory().public_key)
        store.set_gate_active("S1", "north", False)
        with pytest.raises(Exception, match="no gate names yet"):
            store.name_gate("S1", "north", "北门")
    with Store(path, readonly=True) as reader:  # a reader of the older database sees no names, no moment
        (row,) = reader.gates("S1", with_gaps=False)
        assert row["display_name"] is None and row["deactivated_at"] is None
    with Store(path) as store:
        applied = dict(store.execute("SELECT version, applied_at FROM schema_migrations").fetchall())
        (row,) = store.gates("S1", with_gaps=False)
        assert row["deactivated_at"] == applied[schema.CAPABILITIES["gate_names"]]
