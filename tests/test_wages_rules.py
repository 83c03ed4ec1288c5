"""Rules a regulator expects of the wage table and the batch, each from its reproduction, on both engines:
a pay day on a rest day or holiday paid on the working day before it (Art. 14), the minimum wage held
against standard-time pay only, a day-rate day too short to be a day's pay, a day resting on contested
evidence, and one bound on every amount with warnings for unusual ones.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.money import MAX_CREDIT_FEN, MAX_RATE_FEN, yuan
from collector.wages.batchfile import render
from collector.wages.limits import WageLimits
from collector.wages.payments import make_batch
from collector.wages.table import FULL_MONTH_MINUTES, _line
from collector.wages.workdays import WorkCalendar, library_years, pay_date
from tests.test_wages import Month, local

PAIN001 = "{urn:iso:std:iso:20022:tech:xsd:pain.001.001.09}"


def lines_of(table: dict) -> dict:
    return {line["worker"]: line for line in table["lines"]}


@pytest.fixture
def november(tmp_path, database):
    """November 2026 at S1, paid on day 13 of the next month: Sunday 13 December 2026."""
    month = Month(tmp_path, database)
    month.cli("site", "pay-day", "S1", "--day", "13", "--payer-account", "110000000001", "--payer-name",
              "某建筑总承包公司", "--payer-bank", "中国建设银行", "--from", "2026-11-01", "--by", "ops-li")
    return month


def run(month, *extra) -> dict:
    return month.json("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops-wang", *extra)


def final(month) -> None:
    month.final_through(local("2026-12-02 09:00"))


# ============================================================================== 12: pay day on a rest day


def test_a_pay_day_on_a_sunday_is_paid_on_the_friday_before_in_the_pain001_and_the_csv(november, tmp_path):
    november.cli("worker", "pay", "W1", "--day-rate-yuan", "350", "--from", "2026-01-01", "--by", "ops-li")
    november.shift("W1", "2026-11-03 08:00", "2026-11-03 17:00")
    final(november)
    shown = november.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops-wang").stdout
    assert "due 2026-12-11 (星期五; the pay day 2026-12-13 is Sunday: paid on the working day before it, Art. 14)" in shown
    table = november.json("wages", "show", "--site", "S1", "--period", "2026-11")
    assert (table["pay_day"], table["paid_on"], table["paid_on_why"]) == ("2026-12-13", "2026-12-11", "Sunday")
    november.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao")
    # Made on 1 December (the store's clock is the machine's; the day the batch is made is given here).
    with november.setup.store() as store, store.transaction():
        batch = make_batch(store, "S1", "2026-11", by="ops-qian", now=datetime(2026, 12, 1, 2, tzinfo=UTC))
    assert (batch.batch["execution_date"], batch.batch["execution_rule"]) == ("2026-12-11", "working_day_before")
    assert (batch.pay_date.due, batch.pay_date.why) == (date(2026, 12, 13), "Sunday")
    root = ET.fromstring(render(batch, "pain001", timezone="Asia/Shanghai"))
    assert root.find(f".//{PAIN001}ReqdExctnDt/{PAIN001}Dt").text == "2026-12-11"
    lines = render(batch, "csv", timezone="Asia/Shanghai").decode("utf-8-sig").splitlines()[2:]  # after the totals
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [row["付款日期"] for row in rows] == ["2026-12-11"]


def test_a_pay_day_on_a_working_day_is_not_moved_and_a_passed_one_is_the_batch_date(november):
    november.cli("site", "pay-day", "S1", "--day", "10", "--from", "2026-11-01", "--by", "ops-li",
                 "--payer-account", "110000000001", "--payer-name", "某建筑总承包公司", "--payer-bank", "中国建设银行")
    november.cli("worker", "pay", "W1", "--day-rate-yuan", "350", "--from", "2026-01-01", "--by", "ops-li")
    november.shift("W1", "2026-11-03 08:00", "2026-11-03 17:00")
    final(november)
    run(november)
    november.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao")
    with november.setup.store() as store, store.transaction():
        batch = make_batch(store, "S1", "2026-11", by="ops-qian", now=datetime(2026, 12, 1, 2, tzinfo=UTC))
        assert (batch.batch["execution_date"], batch.batch["execution_rule"]) == ("2026-12-10", "pay_day")
        assert not batch.pay_date.moved


def test_the_national_calendar_knows_holidays_and_the_weekend_days_worked_for_them():
    calendar = WorkCalendar("S1")
    # National Day 2026: 1-7 October off; Saturday 10 October worked in exchange (调休上班).
    moved = pay_date(calendar, date(2026, 10, 1))
    assert (moved.date, moved.warning) == (date(2026, 9, 30), "")
    assert "国庆节 National Day holiday" in moved.why
    assert pay_date(calendar, date(2026, 10, 7)).date == date(2026, 9, 30)
    assert not pay_date(calendar, date(2026, 10, 10)).moved, "a make-up working day is a working day"
    # Spring Festival 2026: 15-23 February off; the Saturday before it worked.
    assert pay_date(calendar, date(2026, 2, 20)).date == date(2026, 2, 14)
    assert calendar.day(date(2026, 2, 14)).why == "Saturday worked for the 春节 Spring Festival holiday (调休上班)"


def test_a_year_the_library_does_not_know_is_weekends_only_and_says_so():
    first, last = library_years()
    assert first <= 2026 <= last
    unknown = last + 1
    calendar = WorkCalendar("S1")
    saturday = next(date(unknown, 1, d) for d in range(8, 15) if date(unknown, 1, d).weekday() == 5)
    moved = pay_date(calendar, saturday)
    assert moved.date == date(unknown, 1, saturday.day - 1)
    assert f"knows {first} to {last}, not {unknown}" in moved.warning and "collector site work-calendar S1" in moved.warning
    # A day the site set itself rests on no guess.
    own = WorkCalendar("S1", {saturday: {"kind": "work", "reason": "notice", "added_at": "t", "added_by": "ops-li"}})
    assert not pay_date(own, saturday).moved and pay_date(own, saturday).warning == ""


def test_a_pay_day_in_a_year_the_library_does_not_know_is_warned_on_the_table(november):
    first, last = library_years()
    period = f"{last}-12"  # paid in January of a year the library does not know
    november.cli("worker", "pay", "W1", "--day-rate-yuan", "350", "--from", "2026-01-01", "--by", "ops-li")
    shown = november.cli("wages", "run", "--site", "S1", "--period", period, "--by", "ops-wang", "--draft").stdout
    assert "warning: the national working-day calendar (chinese-calendar " in shown
    assert f"knows {first} to {last}, not {last + 1}" in shown
    table = november.json("wages", "show", "--site", "S1", "--period", period)
    assert table["pay_day"] == f"{last + 1}-01-13" and len(table["warnings"]) == 1
    # The State Council's notice entered as the site's own days: that day rests on no guess any more.
    november.cli("site", "work-calendar", "S1", "--work", f"{last + 1}-01-13", "--reason", "国务院办公厅通知",
                 "--by", "ops-li")
    assert november.json("wages", "show", "--site", "S1", "--period", period)["warnings"] == []


def test_a_site_sets_its_own_rest_and_working_days_with_who_and_when(november):
    first = november.cli("site", "work-calendar", "S1", "--rest", "2026-12-11", "--reason", "区政府通知停工",
                         "--by", "ops-li").stdout
    assert "2026-12-11 rest     区政府通知停工; set" in first and "by ops-li" in first
    refused = november.cli("site", "work-calendar", "S1", "--rest", "2026-12-10", check=False)
    assert refused.returncode == 2 and "needs --reason and --by" in refused.stderr
    refused = november.cli("site", "work-calendar", "S1", "--rest", "2026-13-01", "--reason", "x", "--by", "y",
                           check=False)
    assert refused.returncode == 2 and "is not a date" in refused.stderr
    with november.setup.store() as store:
        moved = pay_date(WorkCalendar.of(store, "S1"), date(2026, 12, 13))
    assert moved.date == date(2026, 12, 10) and moved.why == "Sunday"
    # The Saturday worked at the site instead (the earlier setting of a day is kept, the latest in force).
    november.cli("site", "work-calendar", "S1", "--work", "2026-12-12", "--reason", "赶工期", "--by", "ops-zhao")
    november.cli("site", "work-calendar", "S1", "--national", "2026-12-11", "--reason", "停工取消", "--by", "ops-zhao")
    with november.setup.store() as store:
        assert pay_date(WorkCalendar.of(store, "S1"), date(2026, 12, 13)).date == date(2026, 12, 12)
    shown = november.json("site", "work-calendar", "S1", "--year", "2026")
    assert [(d["day"], d["kind"], d["added_by"]) for d in shown["days"]] == [
        ("2026-12-11", "rest", "ops-li"), ("2026-12-11", "national", "ops-zhao"), ("2026-12-12", "work", "ops-zhao")]
    listed = {entry["date"]: entry for entry in shown["year"]}
    assert listed["2026-12-12"]["working"] and listed["2026-12-12"]["source"] == "site"
    assert not listed["2026-10-01"]["working"] and listed["2026-10-10"]["working"]
    assert "2026-12-11" not in listed, "back to the national calendar: an ordinary Friday"
    text = november.cli("site", "work-calendar", "S1").stdout
    assert "2026-12-11 rest     区政府通知停工" in text and "(replaced)" in text


def test_the_store_refuses_a_day_that_is_not_one(november):
    from collector.store import StoreError

    with november.setup.store() as store:
        for day, kind in (("2026-02-30", "rest"), ("2026-12-11", "holiday")):
            with pytest.raises(StoreError):
                store.set_work_day("S1", day=day, kind=kind, reason="x", by="y")
        with pytest.raises(StoreError, match="does not exist"):
            store.set_work_day("S9", day="2026-12-11", kind="rest", reason="x", by="y")
        assert store.work_days("S1") == []


# ============================================================================== 13: standard time only


def test_overtime_does_not_lift_a_line_over_the_minimum_wage(november):
    # 9.50 yuan an hour, about 300 hours in the month: the total (2848.73) passes the monthly 2690; the
    # standard time (8 hours a day, 174 hours at most) pays 9.50 x 174 = 1653.00.
    november.cli("worker", "pay", "W2", "--hourly-rate-yuan", "9.50", "--from", "2026-01-01", "--by", "ops-li")
    november.cli("worker", "pay", "W3", "--hourly-rate-yuan", "45.01", "--from", "2026-01-01", "--by", "ops-li")
    for day in range(2, 28):
        november.shift("W2", f"2026-11-{day:02d} 07:00", f"2026-11-{day:02d} 18:32")
    november.shift("W3", "2026-11-03 08:00", "2026-11-03 08:30")  # a half hour, well paid: not below
    final(november)
    lines = lines_of(run(november))
    w2 = lines["W2"]
    assert w2["gross_fen"] > 269000 and "below_minimum" in w2["flags"]
    assert (w2["standard_minutes"], w2["standard_pay_fen"], w2["minimum_fen"]) == (26 * 480, 950 * 174, 269000)
    assert "below_minimum" not in lines["W3"]["flags"]
    assert (lines["W3"]["standard_minutes"], lines["W3"]["minimum_fen"]) == (30, 773)  # 2690 x 0.5 / 174
    shown = november.cli("wages", "show", "--site", "S1", "--period", "2026-11").stdout
    assert ("below the minimum wage: 174.00 h of standard time paid 1653.00 yuan (overtime kept out), the minimum "
            "for it 2690.00") in shown


def test_a_day_rate_counts_only_its_standard_share():
    # 150 yuan for 12-hour days: 100 yuan of it is the standard 8 hours' pay (12.50 an hour, below 2690/174).
    days = [{"date": f"2026-11-{d:02d}", "status": "complete", "flags": [], "worked_minutes": 720,
             "first_in": None, "last_out": None} for d in range(2, 24)]
    terms = [{"basis": "day", "rate_fen": 15000, "effective_from": "2026-01-01"}]
    line = _line("W1", days, terms, [], {"hourly_fen": 2350, "monthly_fen": 269000}, {"bank_account": "1"})
    assert line["gross_fen"] == 22 * 15000 == 330000 and "below_minimum" in line["flags"]
    assert (line["detail"]["standard_minutes"], line["detail"]["standard_pay_fen"]) == (22 * 480, 174 * 1250)


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(1, 5000), monthly=st.integers(100_000, 400_000),
       worked=st.lists(st.integers(1, 16 * 60), min_size=1, max_size=31))
def test_an_hourly_line_is_below_the_minimum_exactly_when_its_rate_is(rate, monthly, worked):
    """Hours and overtime change nothing: an hourly line is below the minimum wage exactly when its rate
    is below the monthly minimum's 174th."""
    days = [{"date": f"2026-10-{n + 1:02d}", "status": "complete", "flags": [], "worked_minutes": minutes,
             "first_in": None, "last_out": None} for n, minutes in enumerate(worked)]
    terms = [{"basis": "hour", "rate_fen": rate, "effective_from": "2026-01-01"}]
    line = _line("W1", days, terms, [], {"hourly_fen": 1, "monthly_fen": monthly}, {"bank_account": "1"})
    assert ("below_minimum" in line["flags"]) == (rate * FULL_MONTH_MINUTES < monthly * 60)


# ============================================================================== 14: a short day


def test_a_five_minute_day_is_not_a_days_pay_but_a_decision(november):
    november.cli("worker", "pay", "W3", "--day-rate-yuan", "350", "--from", "2026-01-01", "--by", "ops-li")
    november.shift("W3", "2026-11-04 08:00", "2026-11-04 08:05")
    november.shift("W3", "2026-11-05 08:00", "2026-11-05 17:00")
    final(november)
    w3 = lines_of(run(november))["W3"]
    assert (w3["days"], w3["gross_fen"], w3["status"]) == (1, 35000, "needs_decision")
    assert "short_day" in w3["flags"] and [(d["date"], d["status"]) for d in w3["days_to_decide"]] == [
        ("2026-11-04", "short_day")]
    refused = november.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao", check=False)
    assert refused.returncode == 1 and "W3 (days_to_decide, short_day: a day-rate day worked less" in refused.stderr
    from collector.wages.slip import slip

    with november.setup.store() as store:
        shown = {day["date"]: day for day in slip(store, "W3", "2026-11", site="S1")["days"]}
    assert not shown["2026-11-04"]["paid"] and "paid_day_minutes" in shown["2026-11-04"]["why_not"]
    assert shown["2026-11-05"]["paid"]
    # The tap out was a mistake at the gate, the day was not worked: voided, the line is paid.
    november.cli("punch", "void", "--site", "S1", "--gate", "north", "--seq", "1", "--reason", "tapped by mistake",
                 "--by", "ops-li")
    november.cli("punch", "void", "--site", "S1", "--gate", "south", "--seq", "1", "--reason", "tapped by mistake",
                 "--by", "ops-li")
    w3 = lines_of(run(november))["W3"]
    assert (w3["days"], w3["gross_fen"], w3["status"]) == (1, 35000, "payable")


def test_half_days_pay_half_the_rate_when_configured(november):
    november.setup.write_config(wages={"paid_day_minutes": 360, "half_day_minutes": 180})
    november.cli("worker", "pay", "W3", "--day-rate-yuan", "350.05", "--from", "2026-01-01", "--by", "ops-li")
    november.shift("W3", "2026-11-04 08:00", "2026-11-04 12:00")  # 4 h: half a day
    november.shift("W3", "2026-11-05 08:00", "2026-11-05 17:00")  # a day
    november.shift("W3", "2026-11-06 08:00", "2026-11-06 09:00")  # 1 h: a decision
    final(november)
    w3 = lines_of(run(november))["W3"]
    # 35005 + 35005 / 2 = 52507.5 fen, rounded once, half up.
    assert (w3["days"], w3["gross_fen"], w3["status"]) == (2, 52508, "needs_decision")
    assert w3["segments"][0]["half_days"] == 1 and w3["segments"][0]["amount_fen_exact"] == "35005 x 1 + 35005 x 1 / 2"
    assert [d["date"] for d in w3["days_to_decide"]] == ["2026-11-06"]
    november.setup.write_config(wages={"paid_day_minutes": 360, "half_day_minutes": 360})
    refused = november.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "x", check=False)
    assert refused.returncode != 0 and "half_day_minutes: 360 must be below paid_day_minutes (360)" in refused.stderr


def test_an_hourly_line_pays_a_short_day_by_the_minute(november):
    november.cli("worker", "pay", "W2", "--hourly-rate-yuan", "45", "--from", "2026-01-01", "--by", "ops-li")
    november.shift("W2", "2026-11-04 08:00", "2026-11-04 08:05")
    final(november)
    w2 = lines_of(run(november))["W2"]
    assert (w2["gross_fen"], w2["status"]) == (375, "payable")


# ============================================================================== 15: contested evidence


def test_a_day_on_an_equivocated_punch_is_a_decision_until_the_punch_is_voided(november):
    november.cli("worker", "pay", "W2", "--hourly-rate-yuan", "45", "--from", "2026-01-01", "--by", "ops-li")
    gate = november.north
    before = (gate.seq, gate.prev)
    november.tap(gate, "W2", local("2026-11-04 08:00"), "in")
    after = (gate.seq, gate.prev)
    gate.seq, gate.prev = before  # the gate signs a second punch under the same number: an equivocation
    november.tap(gate, "W2", local("2026-11-04 06:00"), "in")
    gate.seq, gate.prev = after
    november.tap(november.south, "W2", local("2026-11-04 17:00"), "out")
    november.shift("W2", "2026-11-05 08:00", "2026-11-05 17:00")
    final(november)
    w2 = lines_of(run(november))["W2"]
    assert (w2["status"], w2["days"], w2["gross_fen"]) == ("needs_decision", 1, 40500)
    assert {"equivocated", "contested"} <= set(w2["flags"])
    assert [(d["date"], d["status"]) for d in w2["days_to_decide"]] == [("2026-11-04", "contested")]
    # The gate's record is not trusted: the IN voided and entered by hand as the foreman saw it.
    november.cli("punch", "void", "--site", "S1", "--gate", "north", "--seq", "1", "--reason", "equivocated seq",
                 "--by", "ops-li")
    november.cli("punch", "add", "--worker", "W2", "--site", "S1", "--at", "2026-11-04T08:00:00+08:00",
                 "--direction", "in", "--reason", "foreman's roll-call", "--by", "ops-li")
    w2 = lines_of(run(november))["W2"]
    assert (w2["status"], w2["days"], w2["gross_fen"]) == ("payable", 2, 81000)


# ============================================================================== 16: plausible amounts


def test_an_implausible_rate_is_refused_at_entry_on_every_path(november, tmp_path):
    refused = november.cli("worker", "pay", "W1", "--day-rate-yuan", "1000000000", "--from", "2026-01-01",
                           "--by", "ops-li", check=False)
    assert refused.returncode == 1 and "1000000000.00 yuan per day is not a plausible wage" in refused.stderr
    assert "at most 32258.06 yuan per day" in refused.stderr
    workers = tmp_path / "workers.csv"
    workers.write_text("worker,name,card,site,basis,rate_yuan,rate_from\n"
                       "W7,王七,04A1B2C3D4E5F7,S1,hour,2000,2026-01-01\n", encoding="utf-8")
    refused = november.cli("worker", "import", str(workers), check=False)
    assert refused.returncode == 1 and "2000.00 yuan per hour is not a plausible wage" in refused.stderr
    with november.setup.store() as store:
        from collector.store import StoreError

        with pytest.raises(StoreError, match="not a plausible wage"):
            store.set_wage_terms("W1", basis="hour", rate_fen=MAX_RATE_FEN["hour"] + 1, effective_from="2026-01-01",
                                 by="x")
        with pytest.raises(StoreError, match="more than one worker's month"):
            store.add_deduction(site="S1", period="2026-11", worker="W1", item="x", amount_fen=MAX_CREDIT_FEN + 1,
                                reason="x", source="operator", by="x")
        assert store.wage_terms("W1") == []


def test_the_highest_rate_is_batched_and_returned_and_unusual_amounts_are_warned(november, tmp_path):
    november.setup.write_config(wages={"unusual_day_rate_yuan": 1000, "unusual_line_yuan": 5000,
                                       "unusual_batch_yuan": 10000})
    top = yuan(MAX_RATE_FEN["day"])
    entered = november.cli("worker", "pay", "W1", "--day-rate-yuan", top, "--from", "2026-01-01", "--by", "ops-li")
    assert f"warning: {top} yuan per day is above 1000.00 ([wages] unusual_day_rate_yuan)" in entered.stderr
    for day in range(1, 31):  # every day of November
        november.shift("W1", f"2026-11-{day:02d} 08:00", f"2026-11-{day:02d} 17:00")
    final(november)
    shown = november.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops-wang").stdout
    w1 = lines_of(november.json("wages", "show", "--site", "S1", "--period", "2026-11"))["W1"]
    assert w1["gross_fen"] == 30 * MAX_RATE_FEN["day"] <= MAX_CREDIT_FEN and w1["status"] == "payable"
    assert "warning: W1: " in shown and "([wages] unusual_line_yuan)" in shown
    november.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao")
    made = november.cli("wages", "batch", "--site", "S1", "--period", "2026-11", "--format", "csv", "--out",
                        str(tmp_path / "b.csv"), "--by", "ops-qian")
    assert "([wages] unusual_batch_yuan)" in made.stdout
    credit = november.json("wages", "batches", "--site", "S1", "--period", "2026-11")[0]["payments"][0]
    today = datetime.now(UTC).astimezone(local("2026-11-01 00:00").tzinfo).date().isoformat()
    returned = tmp_path / "return.csv"
    returned.write_text(f"end_to_end_id,status,voucher,date,reason,amount\n{credit['end_to_end_id']},paid,V1,{today},,"
                        f"{yuan(credit['amount_fen'])}\n", encoding="utf-8")
    recorded = november.json("wages", "paid", str(returned), "--by", "ops-sun")
    assert [r["status"] for r in recorded["recorded"]] == ["paid"]


def test_a_line_beyond_the_bound_from_terms_entered_before_it_is_held(november):
    with november.setup.store() as store:  # terms kept before the bound: written as they were then
        store.execute("INSERT INTO wage_terms (worker, basis, rate_fen, effective_from, added_at, added_by) "
                      "VALUES ('W1', 'day', ?, '2026-01-01', '2026-01-01T00:00:00.000Z', 'ops-li')",
                      (100_000_000_000,))
    november.shift("W1", "2026-11-03 08:00", "2026-11-03 17:00")
    final(november)
    w1 = lines_of(run(november))["W1"]
    assert (w1["status"], w1["gross_fen"]) == ("needs_decision", 100_000_000_000) and "over_bound" in w1["flags"]


def test_the_limits_are_checked(tmp_path):
    from collector.config import ConfigError, load_config

    with pytest.raises(ValueError):
        WageLimits(paid_day_minutes=120, half_day_minutes=120)
    config = tmp_path / "collector.toml"
    config.write_text('db = "x.sqlite3"\n[wages]\npaid_day_minutes = 300\nhalf_day_minutes = 120\n'
                      'unusual_day_rate_yuan = 800\nunusual_batch_yuan = 20000000\n')
    limits = load_config(config).wage_limits
    assert (limits.paid_day_minutes, limits.half_day_minutes, limits.unusual_day_rate_fen,
            limits.unusual_hourly_rate_fen, limits.unusual_batch_fen) == (300, 120, 80000, 25000, 2_000_000_000)
    for bad, problem in (("paid_day_minutes = -1", "below the minimum"),
                         ("unusual_line_yuan = 2000000", "above the maximum"),
                         ("unusual_day_rate_yuan = 99.5", "must be an integer"),
                         ("paid_day_minutes = 60\nhalf_day_minutes = 90", "must be below paid_day_minutes"),
                         ("paid_day = 60", "unknown key")):
        config.write_text(f'db = "x.sqlite3"\n[wages]\n{bad}\n')
        with pytest.raises(ConfigError, match=problem):
            load_config(config)


def test_without_the_bank_extra_the_calendar_says_which_to_install(monkeypatch):
    from gate_agent.extras import MissingExtra
    from tests.test_install_extras import BANK_LINE, without

    without(monkeypatch, "chinese_calendar")
    with pytest.raises(MissingExtra) as caught:
        pay_date(WorkCalendar("S1"), date(2026, 12, 13))
    assert str(caught.value) == f"chinese_calendar is not installed; {BANK_LINE}"
