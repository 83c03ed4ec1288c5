"""The monthly wage table from final attendance, on both engines, against hand-computed amounts.

October 2026 at a Shanghai site: day-rate and hourly workers, a rate change mid-month, an overnight
shift, a missing OUT settled by a manual punch, a below-minimum line, a deduction, approval, a
correction as a new version, and a month that is not final yet.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.money import MoneyError, divide_half_up, parse_yuan, yuan
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory, heartbeat, resident_id

SHANGHAI = ZoneInfo("Asia/Shanghai")
CARDS = {f"W{n}": f"04A1B2C3D4E5{n:02X}" for n in range(1, 6)}


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


class Month:
    def __init__(self, tmp_path, database):
        self.setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
        self.north, self.south = PunchFactory(gate="north"), PunchFactory(gate="south")
        with self.setup.store() as store:
            store.add_site("S1", timezone="Asia/Shanghai")
            store.add_gate("S1", "north", self.north.public_key)
            store.add_gate("S1", "south", self.south.public_key)
            for worker, card in CARDS.items():
                store.add_worker(worker, name=f"工人{worker}", employer="华建劳务", cards=[card], sites=["S1"])
        for worker in CARDS:
            self.cli("worker", "payee", worker, "--id-number", resident_id(int(worker[1:])),
                     "--phone", "13812345678", "--account", f"622202123456789{int(worker[1:]):04d}",
                     "--bank", "中国工商银行")
        self.cli("site", "pay-day", "S1", "--day", "15", "--payer-account", "110000000001", "--payer-name",
                 "某建筑总承包公司", "--payer-bank", "中国建设银行", "--from", "2026-01-01", "--by", "ops-li")
        self.cli("site", "minimum-wage", "S1", "--hourly-yuan", "23.50", "--monthly-yuan", "2690",
                 "--from", "2026-01-01", "--by", "ops-li")

    def cli(self, *args, check: bool = True):
        return self.setup.run(*args, check=check)

    def json(self, *args):
        return self.setup.json(*args)

    def shift(self, worker: str, start: str, end: str | None) -> None:
        self.tap(self.north, worker, local(start), "in")
        if end is not None:
            self.tap(self.south, worker, local(end), "out")

    def tap(self, gate: PunchFactory, worker: str, when: datetime, direction: str) -> None:
        punch = gate.next(card=CARDS[worker], direction=direction, at=when.astimezone(UTC))
        with self.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                             format_time(when + timedelta(seconds=2)))])

    def final_through(self, when: datetime) -> None:
        """Both gates heartbeat after ``when``, holding nothing unacknowledged."""
        with self.setup.store() as store, store.transaction():
            for gate in ("north", "south"):
                store.save_status("S1", gate, {"v": 1, "state": "online", **heartbeat(
                    gate=gate, time=format_time(when), pending=0, oldest_pending_at=None)}, format_time(when))


@pytest.fixture
def month(tmp_path, database):
    month = Month(tmp_path, database)
    month.cli("worker", "pay", "W1", "--day-rate-yuan", "350", "--from", "2026-10-01", "--by", "ops-li")
    month.cli("worker", "pay", "W1", "--day-rate-yuan", "380", "--from", "2026-10-16", "--by", "ops-li")
    month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "45.01", "--from", "2026-01-01", "--by", "ops-li")
    month.cli("worker", "pay", "W3", "--hourly-rate-yuan", "10", "--from", "2026-01-01", "--by", "ops-li")
    month.cli("worker", "pay", "W4", "--day-rate-yuan", "300", "--from", "2026-01-01", "--by", "ops-li")
    month.cli("worker", "pay", "W5", "--hourly-rate-yuan", "50", "--from", "2026-01-01", "--by", "ops-li")
    # In the order the gates saw them (a gate's clock never runs backwards here).
    month.shift("W4", "2026-10-10 08:00", None)  # no OUT
    for day in (14, 15, 16, 17):  # two days at 350, two at 380
        month.shift("W1", f"2026-10-{day} 08:00", f"2026-10-{day} 17:00")
    month.tap(month.north, "W2", local("2026-10-20 08:00"), "in")
    month.tap(month.north, "W3", local("2026-10-20 08:01"), "in")
    month.tap(month.south, "W2", local("2026-10-20 12:30"), "out")  # 270 min
    month.tap(month.south, "W3", local("2026-10-20 18:01"), "out")  # 600 min at 10 yuan: below the minimum
    month.shift("W2", "2026-10-21 08:00", "2026-10-21 08:30")  # 30
    month.shift("W2", "2026-10-22 08:00", "2026-10-22 08:30")  # 30: 330 min in all
    month.shift("W5", "2026-10-25 22:00", "2026-10-26 06:00")  # overnight: one day, the 25th, 480 min
    month.cli("wages", "deduct", "--site", "S1", "--period", "2026-10", "--worker", "W1", "--item", "个人所得税",
              "--amount-yuan", "20", "--reason", "withholding", "--by", "ops-li")
    month.final_through(local("2026-11-02 09:00"))
    return month


def lines_of(table: dict) -> dict:
    return {line["worker"]: line for line in table["lines"]}


def test_the_table_is_what_the_rules_give_by_hand(month):
    table = month.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    assert (table["version"], table["status"], table["final"], table["pay_day"]) == (1, "computed", 1, "2026-11-15")
    lines = lines_of(table)
    w1 = lines["W1"]
    assert (w1["days"], w1["worked_minutes"], w1["basis"], w1["rate_fen"]) == (4, 4 * 540, "day", 38000)
    assert (w1["gross_fen"], w1["deductions_fen"], w1["net_fen"]) == (2 * 35000 + 2 * 38000, 2000, 144000)
    assert "rate_changed" in w1["flags"] and [s["rate_fen"] for s in w1["segments"]] == [35000, 38000]
    assert w1["status"] == "payable" and w1["deductions"][0]["item"] == "个人所得税"
    w2 = lines["W2"]  # 4501 fen an hour x 330 minutes = 24755.5 fen: rounded once, half up
    assert (w2["worked_minutes"], w2["gross_fen"]) == (330, 24756) and divide_half_up(4501 * 330, 60) == 24756
    w3 = lines["W3"]
    assert (w3["gross_fen"], w3["flags"], w3["status"]) == (10000, ["below_minimum"], "payable")
    w4 = lines["W4"]
    assert (w4["days"], w4["gross_fen"], w4["status"]) == (0, 0, "needs_decision")
    assert w4["days_to_decide"] == [{"date": "2026-10-10", "status": "missing_out",
                                     "why": "an IN with no OUT within the maximum shift",
                                     "first_in": "2026-10-10T08:00:00+08:00", "last_out": None}]
    w5 = lines["W5"]
    assert (w5["days"], w5["worked_minutes"], w5["gross_fen"]) == (1, 480, 40000)
    # Personal data is masked everywhere but the payment batch.
    assert w1["id_number"] == "110***********0001" and w1["bank_account"].endswith("0001")
    assert "1234567" not in str(table)


def test_a_missing_out_refuses_approval_until_a_manual_punch_settles_it(month):
    month.cli("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    refused = month.cli("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao", check=False)
    assert refused.returncode == 1 and "1 line(s) need a decision first: W4 (days_to_decide)" in refused.stderr
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    table = month.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    w4 = lines_of(table)["W4"]
    assert (table["version"], w4["days"], w4["gross_fen"], w4["status"]) == (2, 1, 30000, "payable")
    assert "manual" in w4["flags"]
    approved = month.cli("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao")
    assert "version 2 approved by ops-zhao" in approved.stdout and "due 2026-11-13 (星期五; the pay day 2026-11-15 is Sunday" in approved.stdout


def test_a_correction_after_approval_is_a_new_version_and_the_old_one_is_kept(month):
    month.cli("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")
    month.cli("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao", "--override",
              "W4=the day is disputed; paid next month")
    again = month.cli("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang", check=False)
    assert again.returncode == 1 and "needs --reason" in again.stderr
    # W2's rate was agreed higher from the 21st: new terms (a back pay: October was approved), a new
    # version with the reason.
    month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-10-21", "--by", "ops-li",
              "--back-pay", "rate agreed from the 21st")
    table = month.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang", "--reason",
                       "W2's rate from the 21st")
    assert table["version"] == 2 and table["status"] == "computed"
    assert lines_of(table)["W2"]["gross_fen"] == divide_half_up(4501 * 270 + 5000 * 60, 60)
    month.cli("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao", "--override", "W4=again")
    history = month.json("wages", "history", "--site", "S1", "--period", "2026-10")
    assert [(t["version"], t["status"]) for t in history] == [(1, "superseded"), (2, "approved")]
    assert history[0]["held"] == {"W4": "the day is disputed; paid next month"} and history[1]["reason"]
    first = month.json("wages", "show", "--site", "S1", "--period", "2026-10", "--version", "1")
    assert lines_of(first)["W2"]["gross_fen"] == 24756, "an earlier version is kept as it was"
    # The terms an approved table used are not rewritten: the same date again is refused, a later one is fine.
    refused = month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "55", "--from", "2026-10-21", "--by", "x",
                        check=False)
    assert refused.returncode == 1 and "was paid for 2026-10 by an approved wage table" in refused.stderr


def test_a_month_that_is_not_final_is_only_a_draft_and_a_draft_is_never_approved(month):
    month.shift("W1", "2026-11-02 08:00", "2026-11-02 17:00")
    refused = month.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops", check=False)
    assert refused.returncode == 1 and "is not final yet" in refused.stderr and "--draft" in refused.stderr
    draft = month.json("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops", "--draft")
    assert (draft["status"], draft["final"]) == ("draft", 0)
    assert lines_of(draft)["W1"]["gross_fen"] == 38000
    refused = month.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao", "--override", "W1=x",
                        check=False)
    assert refused.returncode == 1 and "a draft is never approved or paid" in refused.stderr


def test_the_csv_is_for_spreadsheets_masked_and_neutralised(month):
    with month.setup.store() as store:
        store.execute("UPDATE workers SET name = ? WHERE worker = 'W3'", ("=HYPERLINK(\"http://x\")",))
    month.cli("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops")
    text = month.cli("wages", "show", "--site", "S1", "--period", "2026-10", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    w1 = next(r for r in rows if r["worker"] == "W1")
    assert (w1["site"], w1["period"], w1["version"], w1["gross_yuan"], w1["net_yuan"]) == \
        ("S1", "2026-10", "1", "1460.00", "1440.00")
    assert w1["id_number"] == "110***********0001"
    assert next(r for r in rows if r["worker"] == "W3")["name"].startswith("'=")


def test_money_is_exact_yuan_never_a_float():
    assert parse_yuan("350") == 35000 and parse_yuan("0.5") == 50 and parse_yuan("45.01") == 4501
    for bad in ("350.555", "-1", "1e3", "3,500", "", "NaN", "350.", "１００"):
        with pytest.raises(MoneyError):
            parse_yuan(bad)
    assert yuan(24756) == "247.56" and yuan(5) == "0.05"
    with pytest.raises(TypeError):
        yuan(1.5)
    assert [divide_half_up(n, 60) for n in (29, 30, 89, 90)] == [0, 1, 1, 2]


def test_a_night_shift_across_a_month_end_is_paid_in_the_month_of_its_in(month):
    east = PunchFactory(gate="east")
    with month.setup.store() as store:
        store.add_gate("S1", "east", east.public_key)
    month.tap(east, "W3", local("2026-09-30 22:00"), "in")   # into October's first morning: September's
    month.tap(east, "W3", local("2026-10-01 06:00"), "out")
    month.shift("W2", "2026-10-31 22:00", "2026-11-01 06:00")  # into November's first morning: October's
    with month.setup.store() as store, store.transaction():
        when = format_time(local("2026-11-02 09:00"))
        store.save_status("S1", "east", {"v": 1, "state": "online", **heartbeat(
            gate="east", time=when, pending=0, oldest_pending_at=None)}, when)
    october = lines_of(month.json("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops"))
    assert (october["W2"]["days"], october["W2"]["worked_minutes"]) == (4, 330 + 480)
    assert october["W2"]["gross_fen"] == divide_half_up(4501 * 810, 60) == 60764
    assert (october["W3"]["days"], october["W3"]["worked_minutes"], october["W3"]["gross_fen"]) == (1, 600, 10000)
    september = lines_of(month.json("wages", "run", "--site", "S1", "--period", "2026-09", "--by", "ops"))
    assert list(september) == ["W3"] and (september["W3"]["days"], september["W3"]["worked_minutes"]) == (1, 480)
    november = month.json("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops", "--draft")
    assert november["lines"] == [], "the OUT on 1 November closes October's shift: no November day"
