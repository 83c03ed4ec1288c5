"""The faults that took the record down, reproduced as a bank operator met them, with the CLI on a real
database (SQLite and PostgreSQL): a month entered only by hand, a manual IN before the day's first gate
punch, a day asked in different periods, a day whose every punch was voided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def bank(tmp_path, database):
    bank = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    bank.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    bank.run("site", "pay-day", "S1", "--day", "15", "--payer-account", "110000000001", "--payer-name", "某总包",
             "--payer-bank", "中国建设银行", "--from", "2026-01-01", "--by", "ops-li")
    # Each worker with an ID number of their own: one number on two workers holds both lines (duplicate_id).
    for worker, card, id_number in (("W1", "04A1B2C3D4E5F6", "110101199003071217"),
                                    ("W2", "DEADBEEF", "110101199003071225")):
        bank.run("worker", "add", worker, "--name", f"工人{worker}", "--card", card, "--site", "S1",
                 "--employer", "华建劳务")
        bank.run("worker", "payee", worker, "--id-number", id_number, "--phone", "13812345678",
                 "--account", f"62220212345678{worker[1:]}", "--bank", "中国工商银行")
        bank.run("worker", "pay", worker, "--day-rate-yuan", "350", "--from", "2026-01-01", "--by", "ops-li")
    return bank


def manual(bank, worker: str, at: str, direction: str) -> dict:
    return bank.json("punch", "add", "--worker", worker, "--site", "S1", "--at", at, "--direction", direction,
                     "--reason", "reader not installed yet", "--by", "ops-li")


def tap(bank, gate: PunchFactory, card: str, local: str, direction: str) -> None:
    at = datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).astimezone(UTC)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch,
                                         encode_punches([gate.next(card=card, direction=direction, at=at)]),
                                         format_time(at + timedelta(seconds=2)))])


def day(bank, date: str, *period: str) -> dict:
    rows = bank.json("attendance", "--site", "S1", *(period or ("--date", date)))
    return {r["worker"]: {k: r[k] for k in ("worked_minutes", "status")} for r in rows if r["date"] == date}


def test_a_month_entered_only_by_hand_is_computed_approved_and_paid(bank, tmp_path):
    # A site whose gates are not installed yet: every day of the month by hand.
    for date in ("2026-10-08", "2026-10-09", "2026-10-10"):
        manual(bank, "W1", f"{date}T08:00", "in")
        manual(bank, "W1", f"{date}T17:00", "out")
    assert day(bank, "2026-10-08") == {"W1": {"worked_minutes": 540, "status": "complete"}}
    payroll = bank.json("payroll", "--site", "S1", "--from", "2026-10-01", "--to", "2026-10-31")
    assert [(p["worker"], p["days_present"], p["worked_minutes"]) for p in payroll] == [("W1", 3, 1620)]
    assert bank.json("headcount", "--site", "S1")["on_site"] == 0
    table = bank.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    (line,) = table["lines"]
    assert (line["worker"], line["days"], line["gross_fen"], line["status"]) == ("W1", 3, 105000, "payable")
    bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao")
    out = tmp_path / "batch.csv"
    bank.run("wages", "batch", "--by", "ops-qian", "--site", "S1", "--period", "2026-10", "--format", "csv", "--out", str(out))
    assert "1050.00" in out.read_text(encoding="utf-8-sig")
    arrears = bank.json("arrears")
    assert all(row["worker"] == "W1" for row in arrears["workers"])
    evidence = tmp_path / "evidence.json"
    bank.run("evidence", "--worker", "W1", "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(evidence))
    assert "OK" in bank.run("verify", str(evidence), "--config", str(bank.config_path)).stdout


def test_a_manual_in_before_the_first_gate_punch_changes_that_workers_day_only(bank):
    north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
    with bank.store() as store:
        store.add_gate("S1", "north", north.public_key)
        store.add_gate("S1", "south", south.public_key)
    tap(bank, north, "DEADBEEF", "2026-10-08T08:00", "in")
    tap(bank, north, "04A1B2C3D4E5F6", "2026-10-08T08:05", "in")
    tap(bank, south, "04A1B2C3D4E5F6", "2026-10-08T17:00", "out")
    tap(bank, south, "DEADBEEF", "2026-10-08T17:00", "out")
    before = day(bank, "2026-10-08")
    manual(bank, "W1", "2026-10-08T07:30", "in")  # the reader was down when W1 came in
    after = day(bank, "2026-10-08")
    assert after["W2"] == before["W2"] == {"worked_minutes": 540, "status": "complete"}
    # The gate's IN after the manual one is a repeated IN: counted once, from 07:30.
    assert after["W1"] == {"worked_minutes": 570, "status": "anomaly"}


def test_a_day_reads_the_same_whatever_period_it_is_asked_in(bank):
    # Night shifts: each OUT is within a shift of the IN before it and of the OUT before that.
    for start, end in (("2026-11-24T20:00", "2026-11-25T04:00"), ("2026-11-25T20:00", "2026-11-26T04:00")):
        manual(bank, "W1", start, "in")
        manual(bank, "W1", end, "out")
    manual(bank, "W1", "2026-11-26T06:00", "out")  # a second OUT two hours after the last
    alone = day(bank, "2026-11-25")
    assert alone == day(bank, "2026-11-25", "--from", "2026-11-24", "--to", "2026-11-25") == \
        day(bank, "2026-11-25", "--from", "2026-11-25", "--to", "2026-11-28") == \
        {"W1": {"worked_minutes": 480, "status": "anomaly"}}
    assert day(bank, "2026-11-26") == {}  # the repeated OUT counts on the 25th, never again on the 26th


def test_a_day_whose_every_punch_was_voided_is_no_day_and_the_month_is_paid(bank):
    first = manual(bank, "W1", "2026-10-08T08:00", "in")
    second = manual(bank, "W1", "2026-10-08T17:00", "out")
    manual(bank, "W1", "2026-10-09T08:00", "in")
    manual(bank, "W1", "2026-10-09T17:00", "out")
    for punch in (first, second):
        bank.run("punch", "void", str(punch["id"]), "--reason", "entered on the wrong day", "--by", "ops-li")
    assert day(bank, "2026-10-08") == {}
    table = bank.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    (line,) = table["lines"]
    assert (line["days"], line["status"]) == (1, "payable") and "days_to_decide" not in line["flags"]
    bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao")
