"""Records, headcount, corrections and exports from a real database, against hand-computed results."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.attendance.headcount import headcount
from collector.attendance.reports import site_day_final
from collector.evidence import format2
from collector.evidence.document import EvidenceError, build_evidence, verify_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_KEY, BANK_KEYS, BANK_PUBLIC, CollectorSetup, PunchFactory, cli

SHANGHAI = ZoneInfo("Asia/Shanghai")
W1_CARD, W2_CARD, STRANGER = "04A1B2C3D4E5F6", "DEADBEEF", "CAFEBABE"


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


class Site:
    """A collector database with site S1, an IN gate (north), an OUT gate (south) and two workers."""

    def __init__(self, tmp_path, database=None):
        self.setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
        self.north = PunchFactory(gate="north")
        self.south = PunchFactory(gate="south")
        with self.setup.store() as store:
            store.add_site("S1", timezone="Asia/Shanghai")
            store.add_gate("S1", "north", self.north.public_key)
            store.add_gate("S1", "south", self.south.public_key)
            store.add_worker("W1", name="Zhang Wei", employer="Hua Jian", cards=[W1_CARD], sites=["S1"], team="钢筋班",
                             trade="钢筋工")
            store.add_worker("W2", name="Li Na", employer="Hua Jian", cards=[W2_CARD], sites=["S1"])

    def tap(self, gate: PunchFactory, card: str, when: datetime, direction: str, received_delay=timedelta(seconds=1)):
        punch = gate.next(card=card, direction=direction, at=when.astimezone(UTC))
        with self.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                             format_time(when + received_delay))])
        return punch

    def cli(self, *args):
        return self.setup.run(*args)

    def json(self, *args):
        return self.setup.json(*args)

    def heartbeat(self, gate: str, when: datetime, pending: int = 0, oldest: str | None = None):
        status = {"v": 1, "state": "online", "time": format_time(when), "synced": True, "pending": pending,
                  "oldest_pending_at": oldest, "last_seq": 1, "acked_seq": 1}
        with self.setup.store() as store, store.transaction():
            store.save_status("S1", gate, status, format_time(when))


@pytest.fixture
def site(tmp_path, database):
    site = Site(tmp_path, database)
    site.tap(site.north, W1_CARD, local("2026-11-02 08:00"), "in")
    site.tap(site.north, W2_CARD, local("2026-11-02 08:30"), "in")
    site.tap(site.north, STRANGER, local("2026-11-02 09:00"), "in")
    site.tap(site.south, W1_CARD, local("2026-11-02 17:00"), "out")
    return site


EXPECTED_CSV = """\ufeff\
worker,name,employer,team,trade,site,date,first_in,last_out,worked_minutes,hours,status,flags,final
W1,Zhang Wei,Hua Jian,钢筋班,钢筋工,S1,2026-11-02,2026-11-02 08:00,2026-11-02 17:00,540,9.00,complete,,no
W2,Li Na,Hua Jian,,,S1,2026-11-02,2026-11-02 08:30,,0,0.00,missing_out,missing_out,no
"""


def test_attendance_csv_matches_the_hand_computed_file(site):
    assert site.cli("attendance", "--site", "S1", "--date", "2026-11-02", "--csv").stdout == EXPECTED_CSV


def test_attendance_json_records(site):
    records = site.json("attendance", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-03")
    assert [(r["worker"], r["date"], r["worked_minutes"], r["status"]) for r in records] == [
        ("W1", "2026-11-02", 540, "complete"), ("W2", "2026-11-02", 0, "missing_out")]
    w1 = records[0]
    assert set(w1) >= {"worker", "name", "employer", "team", "trade", "site", "date", "first_in", "last_out",
                       "worked_minutes", "status", "flags", "final"}
    # Team and trade as the worker is registered now (issue 22, item 1): W2 has none.
    assert [(r["team"], r["trade"]) for r in records] == [("钢筋班", "钢筋工"), (None, None)]
    table = site.cli("attendance", "--site", "S1", "--date", "2026-11-02").stdout.splitlines()
    assert table[0].split()[2:6] == ["Zhang", "Wei", "钢筋班", "钢筋工"] and table[1].split()[2:6] == ["Li", "Na", "-", "-"]
    assert w1["shifts"] == [{"in": "2026-11-02T08:00:00+08:00", "out": "2026-11-02T17:00:00+08:00",
                             "in_ref": "north#1", "out_ref": "south#1", "minutes": 540.0, "ms": 32400000,
                             "status": "complete"}]


def test_payroll_json_matches_the_hand_computed_rows(site):
    site.tap(site.north, W1_CARD, local("2026-11-03 07:00"), "in")
    site.tap(site.south, W1_CARD, local("2026-11-03 11:30"), "out")
    rows = site.json("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30")
    period = {"site": "S1", "from": "2026-11-01", "to": "2026-11-30"}
    assert rows == [
        {"worker": "W1", "name": "Zhang Wei", "employer": "Hua Jian", "team": "钢筋班", "trade": "钢筋工",
         "days_present": 2, "worked_minutes": 810, "days_flagged": 0, "provisional_days": 2, **period},
        {"worker": "W2", "name": "Li Na", "employer": "Hua Jian", "team": None, "trade": None, "days_present": 1,
         "worked_minutes": 0, "days_flagged": 1, "provisional_days": 1, **period},
    ]
    assert site.cli("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", "--csv").stdout == (
        "\ufeffsite,from,to,worker,name,employer,team,trade,days_present,worked_minutes,hours,days_flagged,"
        "provisional_days\n"
        "S1,2026-11-01,2026-11-30,W1,Zhang Wei,Hua Jian,钢筋班,钢筋工,2,810,13.50,0,2\n"
        "S1,2026-11-01,2026-11-30,W2,Li Na,Hua Jian,,,1,0,0.00,1,1\n")
    # The table names teams and trades once a worker has one; a worker without shows "-".
    table = site.cli("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30").stdout.splitlines()
    assert [line.split()[:4] for line in table] == [["W1", "Zhang", "Wei", "钢筋班"], ["W2", "Li", "Na", "-"]]


def test_a_day_is_final_once_every_gate_has_reported_past_it(site):
    day_end = local("2026-11-03 00:00")
    site.heartbeat("north", day_end + timedelta(hours=7))
    assert {r["final"] for r in site.json("attendance", "--site", "S1", "--date", "2026-11-02")} == {False}
    site.heartbeat("south", day_end + timedelta(hours=7))
    assert {r["final"] for r in site.json("attendance", "--site", "S1", "--date", "2026-11-02")} == {True}
    # A gate still holding an unacknowledged punch from before the horizon keeps the day provisional.
    site.heartbeat("south", day_end + timedelta(hours=8), pending=1, oldest=format_time(day_end))
    assert {r["final"] for r in site.json("attendance", "--site", "S1", "--date", "2026-11-02")} == {False}


@pytest.mark.parametrize("hours_after, pending, oldest_hours, synced, expected", [
    (7, 0, None, True, True),
    (5, 0, None, True, False),  # within the grace period
    (7, 3, 6.5, True, True),  # pending punches are all newer than the horizon
    (7, 3, 2, True, False),
])
def test_site_day_final(hours_after, pending, oldest_hours, synced, expected):
    end = datetime(2026, 11, 2, 16, tzinfo=UTC)
    status = {"time": format_time(end + timedelta(hours=hours_after)), "synced": synced, "pending": pending,
              "oldest_pending_at": format_time(end + timedelta(hours=oldest_hours)) if oldest_hours else None}
    gates = [{"active": True, "heartbeat": status, "heartbeat_at": status["time"]},
             {"active": False, "heartbeat": None, "heartbeat_at": None}]
    assert site_day_final(gates, end, timedelta(hours=6), end + timedelta(days=2)) is expected


def test_manual_punch_and_void_appear_in_records(site):
    added = site.json("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-11-02T17:30:00+08:00",
                      "--direction", "out", "--reason", "forgot card at exit", "--by", "ops-li")
    assert added["manual_by"] == "ops-li" and added["manual_reason"] == "forgot card at exit"
    w2 = site.json("attendance", "--site", "S1", "--date", "2026-11-02")[1]
    assert (w2["worked_minutes"], w2["status"], w2["flags"]) == (540, "complete", ["manual"])
    gate_out = next(p for p in site.json("punches", "--site", "S1") if p["gate"] == "south")
    site.cli("punch", "void", str(gate_out["id"]), "--reason", "tapped for a colleague", "--by", "ops-li")
    w1 = site.json("attendance", "--site", "S1", "--date", "2026-11-02")[0]
    assert (w1["worked_minutes"], w1["status"]) == (0, "missing_out")
    assert "void" in w1["flags"] and w1["voided"] == ["south#1"]
    listed = next(p for p in site.json("punches", "--site", "S1") if p["id"] == gate_out["id"])
    assert "void" in listed["flags"] and listed["void_by"] == "ops-li"
    again = site.setup.run("punch", "void", str(gate_out["id"]), "--reason", "x", "--by", "y", check=False)
    assert again.returncode != 0 and "already void" in again.stderr


def test_manual_punch_reads_a_bare_time_in_the_site_timezone_and_needs_a_known_worker(site):
    base = ("punch", "add", "--site", "S1", "--direction", "out", "--reason", "r", "--by", "b")
    added = site.setup.run(*base, "--worker", "W2", "--at", "2026-11-02T17:30:00")
    assert "2026-11-02T17:30:00+08:00" in added.stdout  # S1 keeps Asia/Shanghai time
    unknown = site.setup.run(*base, "--worker", "W9", "--at", "2026-11-02T17:30:00+08:00", check=False)
    assert unknown.returncode != 0 and "worker W9 does not exist" in unknown.stderr


def test_headcount_is_who_is_inside_now(tmp_path):
    site = Site(tmp_path)
    now = datetime.now(UTC)
    site.tap(site.north, W1_CARD, now - timedelta(hours=2), "in")
    site.tap(site.north, W2_CARD, now - timedelta(hours=3), "in")
    site.tap(site.south, W2_CARD, now - timedelta(hours=1), "out")
    site.tap(site.north, STRANGER, now - timedelta(minutes=30), "in")
    data = site.json("headcount", "--site", "S1")
    assert data["on_site"] == 1 and data["unknown_cards"] == 1
    assert [(w["worker"], w["name"], w["employer"], w["gate"]) for w in data["workers"]] == [
        ("W1", "Zhang Wei", "Hua Jian", "north")]
    assert data["workers"][0]["since"].endswith("+08:00")
    with site.setup.store() as store:
        later = headcount(store, "S1", now + timedelta(hours=16, minutes=5))  # every IN older than 16 h
    assert later["on_site"] == 0 and later["unknown_cards"] == 0


def test_evidence_verifies_and_names_the_first_tampered_punch(site, tmp_path):
    site.tap(site.north, W2_CARD, local("2026-11-03 08:00"), "in")
    site.tap(site.north, W1_CARD, local("2026-11-03 08:10"), "in")
    site.tap(site.south, W1_CARD, local("2026-11-03 16:00"), "out")
    out = tmp_path / "w1.json"
    site.cli("evidence", "--worker", "W1", "--from", "2026-11-02", "--to", "2026-11-03", "--out", str(out))
    result = cli("collector", "verify", str(out), "--bank-key", BANK_PUBLIC)
    assert "OK" in result.stdout and "S1/north" in result.stdout
    document = json.loads(out.read_text())
    assert [d["worked_minutes"] for d in document["days"]] == [540, 470]
    # Gates of protocol 1: a segment of each gate's chain, other cards' punches between the worker's as links.
    north = chain(document, "north")
    assert north["link"] == "gate"
    assert [p["card"] for p in north["punches"]] == [W1_CARD, W2_CARD, STRANGER, W2_CARD, W1_CARD]

    def fails(mutate, message):
        """Any edit breaks the bank's signature; re-signed by the bank (a bank that signs a lie), the
        gates' own signatures and the recomputed days still name what is wrong."""
        tampered = copy.deepcopy(document)
        mutate(tampered)
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(tampered))
        checked = cli("collector", "verify", str(path), "--bank-key", BANK_PUBLIC, check=False)
        assert checked.returncode == 1 and "changed after the bank signed it" in checked.stderr, checked.stderr
        resigned = format2.sign(tampered, BANK_KEY)
        path.write_text(json.dumps(resigned))
        checked = cli("collector", "verify", str(path), "--bank-key", BANK_PUBLIC, check=False)
        assert checked.returncode == 1 and message in checked.stderr, checked.stderr
        with pytest.raises(EvidenceError):
            verify_evidence(resigned, BANK_KEYS)

    def punches(doc, name):
        return chain(doc, name)["punches"]

    fails(lambda d: punches(d, "north")[0].update(time="2026-11-02T00:30:00.000Z"),
          "north seq 1: the gate's signature does not verify")
    fails(lambda d: punches(d, "north")[4].update(card="04A1B2C3D4E5F7"), "north seq 5: the gate's signature")
    fails(lambda d: punches(d, "south")[0].update(dir="in"), "south seq 1: the gate's signature")
    fails(lambda d: [c.pop(2) for c in chain(d, "north").values() if isinstance(c, list)],
          "north seq 4 does not follow seq 2")
    fails(lambda d: [c.reverse() for c in chain(d, "north").values() if isinstance(c, list)],
          "north seq 4 does not follow seq 5")
    fails(lambda d: [c.pop() for c in chain(d, "north").values() if isinstance(c, list)],
          "north seq 4 at its end is not the worker's punch")
    fails(lambda d: d["days"][0].update(worked_minutes=600), "worked_minutes stated 600")
    fails(lambda d: d["days"].pop(), "the file does not state it")
    fails(lambda d: d["cards"].clear(), "is not the worker's punch")
    with pytest.raises(EvidenceError, match="not a site-gate-evidence"):
        verify_evidence(format2.sign(dict(document, format="something else"), BANK_KEY), BANK_KEYS)


def chain(document: dict, gate: str) -> dict:
    """The one chain of ``gate`` in a file."""
    (found,) = next(g for g in document["gates"] if g["gate"] == gate)["chains"]
    return found


def test_evidence_marks_manual_entries(site, tmp_path):
    site.cli("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-11-02T17:30:00+08:00",
             "--direction", "out", "--reason", "forgot card", "--by", "ops-li")
    with site.setup.store() as store:
        document = build_evidence(store, "W2", local("2026-11-02 00:00").date(), local("2026-11-02 00:00").date(),
                                  key=BANK_KEY)
    assert document["manual"][0]["by"] == "ops-li" and document["manual"][0]["reason"] == "forgot card"
    assert document["days"][0]["worked_minutes"] == 540 and "manual" in document["days"][0]["flags"]
    summary = verify_evidence(document, BANK_KEYS)
    assert summary["manual_entries"][0]["by"] == "ops-li" and summary["worked_minutes"] == 540
