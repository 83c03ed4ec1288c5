"""Retention (Art. 15/28): prune deletes quarantine rows and wages past 3 years and settled, logs it,
and refuses, deleting nothing, whatever must be kept; on both engines, with the real CLI.
"""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from collector.retention import PruneRefused, kept_until, plan, prune
from tests.helpers import CollectorSetup

TODAY = date(2026, 11, 28)


def wage_month(store, period: str, *, paid: bool) -> None:
    """An approved table for ``period`` with one line of 300.00, a deduction, a batch and its credit,
    paid (with its voucher) or still at the bank."""
    line = {"worker": "W1", "name": "张伟", "employer": "华建劳务", "id_number": "110101199003070001",
            "phone": None, "bank_account": "6222021234567890001", "bank_name": "中国工商银行", "days": 1,
            "worked_minutes": 480, "basis": "day", "rate_fen": 30000, "gross_fen": 32000, "deductions_fen": 2000,
            "net_fen": 30000, "status": "payable", "flags": [], "detail": {}}
    store.add_deduction(site="S1", period=period, worker="W1", item="个人所得税", amount_fen=2000, reason="tax",
                        source="operator t", by="t")
    saved = store.save_wage_table(site="S1", period=period, status="computed", final=True, lines=[line], by="t",
                                  reason=None, pay_day=f"{period}-28")
    store.approve_wage_table(saved["id"], by="checker")
    batch_id = f"S1-{period}-V1-B1"
    store.add_wage_batch({"batch_id": batch_id, "site": "S1", "period": period, "table_version": 1, "seq": 1,
                          "created": "x", "execution_date": "x", "execution_rule": "pay_day", "payer_account": "1",
                          "payer_name": "n", "payer_bank": "b", "made_by": "t"},
                         [{"position": 1, "worker": "W1", "end_to_end_id": f"{batch_id}-0001", "amount_fen": 30000}])
    if paid:
        store.settle_payment(f"{batch_id}-0001", status="paid", voucher="V1", paid_on=f"{period}-28", reason=None,
                             settled_from="test", by="t")


@pytest.fixture
def setup(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_worker("W1", name="张伟", employer="华建劳务", cards=["04A1B2C3D4E5F6"], sites=["S1"])
        wage_month(store, "2022-10", paid=True)     # past 3 years and settled: may go
        wage_month(store, "2026-10", paid=True)     # within 3 years
        for when in ("2023-05-01T00:00:00.000Z", "2026-11-27T00:00:00.000Z"):
            store.quarantine(topic="site/S1/gate/north/punch", reason="malformed", detail="x", raw=b"\xff",
                             received_at=when)
    return setup


def count(setup, table: str, where: str = "1 = 1") -> int:
    return setup.rows(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0]


def test_wages_within_three_years_or_unsettled_are_refused_and_nothing_goes(setup):
    assert kept_until("2026-10") == date(2029, 10, 31) and kept_until("2024-02") == date(2027, 2, 28)
    with setup.store() as store:
        with pytest.raises(PruneRefused) as refused:
            prune(store, date(2026, 11, 1), ("quarantine", "wages"), by="ops-li", today=TODAY)
        assert refused.value.plan["refused"] == [
            "wages of S1 2026-10 (1 wage_payments, 1 wage_batches, 1 wage_lines, 1 wage_tables, 1 wage_deductions): "
            "kept until 2029-10-31 (Art. 15/28: at least 3 years after the period)"]
        wage_month(store, "2023-01", paid=False)  # past 3 years, but a credit is still at the bank
        result = plan(store, date(2023, 6, 1), ("wages",), today=TODAY)
        assert [m["period"] for m in result.wages] == ["2022-10"]
        assert result.refused == ["wages of S1 2023-01 (1 wage_payments, 1 wage_batches, 1 wage_lines, 1 wage_tables, "
                                  "1 wage_deductions): not settled (1 credit(s) still at the bank); kept until settled "
                                  "and 3 years more (Art. 28)"]
    assert count(setup, "quarantine") == 2 and count(setup, "wage_tables") == 3 and count(setup, "retention_log") == 0
    # Punches are refused within their 3 years, and never deleted even past them.
    with setup.store() as store:
        store.add_manual_punch(site="S1", worker="W1", time="2026-10-05T01:00:00.000Z", direction="in", reason="r",
                               by="ops")
        store.add_manual_punch(site="S1", worker="W1", time="2021-03-05T01:00:00.000Z", direction="in", reason="r",
                               by="ops")
        refusals = plan(store, date(2026, 11, 1), ("punches",), today=TODAY).refused
    assert refusals == ["punches of S1 before 2026-11-01 (2, the last on 2026-10-05): kept until 2029-10-31 "
                        "(Art. 15/28: the attendance the wage ledger rests on, at least 3 years)"]
    with setup.store() as store:
        refusals = plan(store, date(2022, 1, 1), ("punches",), today=TODAY).refused
    assert len(refusals) == 1 and "past their retention, but prune never deletes punches" in refusals[0]
    refused = setup.run("prune", "--before", "2026-11-01", "--what", "punches", "--by", "ops-li", check=False)
    assert refused.returncode == 1 and "refused: punches of S1" in refused.stderr and "nothing was pruned" in refused.stderr
    assert count(setup, "punches") == 2


def test_what_may_go_is_pruned_all_of_it_and_logged(setup):
    dry = setup.json("prune", "--before", "2026-01-01", "--what", "quarantine", "--by", "ops-li", "--dry-run")
    assert dry["quarantine"] == {"quarantine": 1, "quarantine_tally": 1} and dry["pruned"] is False
    assert count(setup, "quarantine") == 2 and setup.run("prune-log").stdout.strip() == "nothing was ever pruned"
    future = setup.run("prune", "--before", "2099-01-01", "--by", "ops-li", check=False)
    assert future.returncode == 1 and "is in the future" in future.stderr
    done = setup.run("prune", "--before", "2026-01-01", "--by", "ops-li")
    assert "deleted 1 row(s) and 1 tally hour(s)" in done.stdout
    assert count(setup, "quarantine") == 1 and count(setup, "quarantine_tally") == 1
    with setup.store() as store:
        prune(store, date(2023, 6, 1), ("wages",), by="ops-zhao", today=TODAY)
    assert count(setup, "wage_tables", "period = '2022-10'") == 0 and count(setup, "wage_payments") == 1
    assert count(setup, "wage_deductions") == 1 and count(setup, "wage_lines") == 1, "2026-10 is kept whole"
    log = setup.json("prune-log")
    assert [(r["pruned_by"], r["what"], r["cutoff"], r["row_count"]) for r in log] == \
        [("ops-li", "quarantine", "2026-01-01", 2), ("ops-zhao", "wages", "2023-06-01", 5)]
    assert log[1]["detail"]["S1 2022-10"]["wage_payments"] == 1
    assert "ops-zhao: wages before 2023-06-01, 5 row(s)" in setup.run("prune-log").stdout
