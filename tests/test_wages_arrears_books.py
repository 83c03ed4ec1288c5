"""Arrears as the books stood: an estimate is never negative (a line nothing of which is approved owes
its gross, deductions that exceed it included), and a report as of a past date shows no credit made
after it, nor a failure recorded after it; on both engines, through the CLI and /metrics' kept figures,
and the sums as of a date over generated credit histories.

The final October of tests/test_wages.py: pay day 2026-11-15. W5 worked one overnight shift (400.00).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.localtime import day_bounds
from collector.wages import figures
from gate_agent.protocol import format_time
from tests import test_wages
from tests.test_days_property import Database
from tests.test_wages_arrears import arrears, by_worker
from tests.test_wages_payments import NETS, PERIOD, approve, bank_return, batch, credits, paid_day

month = test_wages.month
GROSS = {"W1": 146000, "W2": 24756, "W3": 10000, "W4": 30000, "W5": 40000}


def deduct_more_than_the_gross(month) -> None:
    month.cli("wages", "deduct", *PERIOD, "--worker", "W5", "--item", "借支", "--amount-yuan", "2000",
              "--reason", "advance claimed by the employer", "--by", "ops-li")


def test_a_held_line_whose_deductions_exceed_its_gross_is_owed_its_gross(month):
    deduct_more_than_the_gross(month)
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    table = month.json("wages", "run", *PERIOD, "--by", "ops-wang")
    w5 = test_wages.lines_of(table)["W5"]
    assert (w5["gross_fen"], w5["net_fen"], w5["status"]) == (40000, -160000, "needs_decision")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W5=the advance is disputed")
    report = arrears(month, "2026-11-20")
    row = by_worker(report)["W5"]
    assert (row["status"], row["estimate"], row["estimate_fen"], row["art27"]) == ("overdue", True, 40000, True)
    site = report["sites"][0]
    assert site["overdue_estimate_fen"] == 40000 and site["overdue_fen"] == sum(NETS.values()) - NETS["W5"]
    text = month.cli("arrears", "--site", "S1", "--as-of", "2026-11-20").stdout
    assert "estimate 400.00" in text and "-1600.00" not in text
    with month.setup.store() as store:
        figures.refresh(store, sites=["S1"])
        (kept,) = [f for f in store.figures(("arrears",)) if f.site == "S1"]
    # /metrics exports what is kept: computed as of the site's today, long past the pay day.
    assert kept.value["overdue_estimate_fen"] == 40000


def test_without_an_approved_table_an_estimate_never_lowers_the_others(month):
    deduct_more_than_the_gross(month)
    report = arrears(month, "2026-11-20")
    rows = by_worker(report)
    assert rows["W5"]["estimate_fen"] == 40000 and rows["W1"]["estimate_fen"] == GROSS["W1"]
    assert all(row["estimate_fen"] is None or row["estimate_fen"] >= 0 for row in rows.values())
    assert report["sites"][0]["overdue_estimate_fen"] == sum(v for k, v in GROSS.items() if k != "W4")


def test_as_of_a_past_date_the_credits_made_later_are_not_there(month, tmp_path):
    approve(month)
    # Not yet made on the 16th of November: the batch is made today, past the pay day.
    before = by_worker(arrears(month, "2026-11-16"))
    assert {(r["status"], r["pending_fen"]) for r in before.values()} == {("overdue", 0)}
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    assert {w: r["pending_fen"] for w, r in by_worker(arrears(month, "2026-11-16")).items()} == dict.fromkeys(NETS, 0)
    assert {w: r["pending_fen"] for w, r in by_worker(arrears(month, paid_day())).items()} == NETS
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        *[(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4", "W5")],
        (ids["W2"][0], "failed", "", "", "account closed")]))
    # Today the failure is recorded: W2's credit is owed again, no longer at the bank.
    assert by_worker(arrears(month, paid_day()))["W2"]["pending_fen"] == 0
    assert by_worker(arrears(month, "2026-11-16"))["W2"]["pending_fen"] == 0, "made after that day"
    with month.setup.store() as store:  # a batch made on the 16th, its failure recorded today
        store.execute("UPDATE wage_batches SET made_at = '2026-11-16T02:00:00.000Z'")
    then = by_worker(arrears(month, "2026-11-16"))
    assert then["W2"]["pending_fen"] == NETS["W2"], "the failure was recorded later: at the bank then"
    assert then["W1"]["pending_fen"] == NETS["W1"] and then["W1"]["paid_fen"] == 0
    assert by_worker(arrears(month, "2026-11-15"))["W1"]["pending_fen"] == 0, "the batch came the day after"


# ============================================================================== the sums as of a date, generated

#: A credit's history: the day its batch was made, the amount, and the bank's word (status, the day it
#: paid, the day its return was recorded), days counted from 2026-11-10 in Shanghai.
CREDITS = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 50_000),
                             st.sampled_from(["pending", "paid", "failed"]), st.integers(0, 4), st.integers(0, 4),
                             st.sampled_from(["W1", "W2"])), max_size=8)
START = date(2026, 11, 10)


def expected_sums(credits: list[tuple], as_of: date) -> dict[str, dict]:
    """What the books said at the end of ``as_of``, worker by worker, from the credits' histories."""
    sums: dict[str, dict] = {}
    for made, amount, status, paid_after, recorded_after, worker in credits:
        if START + timedelta(days=made) > as_of:
            continue  # not made yet
        paid_on = START + timedelta(days=made + paid_after)
        recorded = START + timedelta(days=made + recorded_after)
        row = sums.setdefault(worker, {"paid": 0, "pending": 0})
        if status == "paid" and paid_on <= as_of:
            row["paid"] += amount
        elif status == "pending" or status == "paid" or (status == "failed" and recorded > as_of):
            row["pending"] += amount
    return sums


def check_sums(location: str | None, credits: list[tuple], as_of_days: int) -> None:
    with Database(location) as bank:
        store = bank.store
        store.add_site("S1", timezone="Asia/Shanghai")
        tz = ZoneInfo("Asia/Shanghai")
        for n, (made, amount, status, paid_after, recorded_after, worker) in enumerate(credits, start=1):
            made_at = datetime.combine(START + timedelta(days=made), time(10), tz)
            store.execute(
                "INSERT INTO wage_batches (batch_id, site, period, table_version, seq, created, execution_date, "
                "execution_rule, payer_account, payer_name, payer_bank, made_at, made_by) "
                "VALUES (?, 'S1', '2026-10', 1, ?, ?, '2026-11-15', 'pay_day', '1', 'p', 'b', ?, 'clerk')",
                (f"B{n}", n, format_time(made_at), format_time(made_at)))
            recorded = format_time(made_at + timedelta(days=recorded_after, hours=1))
            paid_on = (START + timedelta(days=made + paid_after)).isoformat()
            store.execute(
                "INSERT INTO wage_payments (batch_id, position, site, period, worker, table_version, end_to_end_id, "
                "amount_fen, status, paid_on, settled_at) VALUES (?, 1, 'S1', '2026-10', ?, 1, ?, ?, ?, ?, ?)",
                (f"B{n}", worker, f"E{n}", amount, status, paid_on if status == "paid" else None,
                 None if status == "pending" else recorded))
        as_of = START + timedelta(days=as_of_days)
        until = day_bounds(as_of, tz)[1]
        found = {row["worker"]: {"paid": row["paid"], "pending": row["pending"]}
                 for row in store.payment_sums("S1", as_of.isoformat(), until=until)}
        expected = expected_sums(credits, as_of)
        assert found == {w: s for w, s in expected.items()}, (found, expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(credits=CREDITS, as_of_days=st.integers(0, 10))
def test_the_sums_as_of_a_date_are_the_books_then_on_sqlite(credits, as_of_days):
    check_sums(None, credits, as_of_days)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(credits=CREDITS, as_of_days=st.integers(0, 10))
def test_the_sums_as_of_a_date_are_the_books_then_on_postgresql(postgres_schema_db, credits, as_of_days):
    check_sums(postgres_schema_db, credits, as_of_days)
