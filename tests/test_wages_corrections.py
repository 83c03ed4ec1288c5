"""Corrections that leave a trail (an auditor's controls), on both engines, through the real CLI: terms set
inside an approved period only as a back pay the correction shows; a paid credit the bank returned later
(退汇) reversed and owed again; a batch written but never sent withdrawn; a deduction reversed, and one
entered twice warned of. Each test is the reproduction of its finding.

October 2026 at a Shanghai site, from tests/test_wages.py: W1 (day rate, 1440.00 net), W2 (hourly,
247.56), W3 (100.00), W4 (300.00 once its missing OUT is settled), W5 (400.00).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests import test_wages
from tests.test_wages_payments import NETS, PERIOD, approve, bank_return, batch, credits, paid_day, payments

month = test_wages.month


def line(month, worker: str, *extra: str) -> dict:
    return next(x for x in month.json("wages", "show", *PERIOD, *extra)["lines"] if x["worker"] == worker)


def arrears(month, worker: str, as_of: str | None = None) -> dict:
    report = month.json("arrears", "--site", "S1", *(("--as-of", as_of) if as_of else ("--fresh",)))
    return next(row for row in report["workers"] if row["worker"] == worker and row["period"] == "2026-10")


def pay_all(month, tmp_path, name: str = "r1.csv") -> dict:
    """The first batch, all of it returned paid today; worker -> end-to-end id."""
    batch(month, tmp_path / "b1.xml")
    ids = {w: e2e for w, (e2e, _) in credits(tmp_path / "b1.xml").items()}
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / name, [
        (e2e, "paid", f"V{w}", paid_day(), "") for w, e2e in ids.items()]))
    return ids


# ============================================================================ terms inside an approved period


def test_terms_inside_an_approved_month_are_refused_unless_a_back_pay_the_correction_shows(month):
    approve(month)
    # The reproduction: a new rate for W2 from the 21st, set after October was approved, was accepted, and
    # the next correction (for another worker) paid W2's October at it silently.
    refused = month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-10-21", "--by", "ops-li",
                        check=False)
    assert refused.returncode == 1
    assert ("W2 was paid for 2026-10 by an approved wage table (S1 version 1): terms from 2026-10-21 would pay it "
            "again at another rate; give a date after 2026-10-31, or say why it is a back pay") in refused.stderr
    # So is replacing terms dated long before the month (they are the ones October was paid at).
    assert month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-01-01", "--by", "ops-li",
                     check=False).returncode == 1
    assert [(t["effective_from"], t["rate_fen"]) for t in month.json("wages", "terms", "--worker", "W2")] == \
        [("2026-01-01", 4501)], "nothing changed"
    # A later date needs no reason; a back pay where nothing was approved or used is refused.
    month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-11-01", "--by", "ops-li")
    pointless = month.cli("worker", "pay", "W3", "--hourly-rate-yuan", "30", "--from", "2026-12-01", "--back-pay",
                          "why not", "--by", "ops-li", check=False)
    assert pointless.returncode == 1 and "a back pay is only for those" in pointless.stderr

    said = month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-10-21", "--back-pay",
                     "rate agreed from the 21st (contract of 10-20)", "--by", "ops-li").stdout
    assert "a back pay (rate agreed from the 21st (contract of 10-20))" in said
    terms = month.json("wages", "terms", "--worker", "W2")
    kept = next(t for t in terms if t["effective_from"] == "2026-10-21")
    assert [(b["reason"], b["by"], b["through"], b["earlier"]["rate_fen"]) for b in kept["back_pay"]] == \
        [("rate agreed from the 21st (contract of 10-20)", "ops-li", "2026-10-31", 4501)]

    shown = month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's back pay").stdout
    assert ("back pay: 50.00/hour from 2026-10-21 instead of 45.01/hour (rate agreed from the 21st (contract of "
            "10-20); set") in shown
    w2, w1 = line(month, "W2"), line(month, "W1")
    assert "back_pay" in w2["flags"] and w2["back_pay"][0]["from"] == "2026-10-21"
    assert "back_pay" not in w1["flags"] and w1["back_pay"] == [], "only the line whose pay it changes"
    assert w2["gross_fen"] == (4501 * 270 + 5000 * 60 + 30) // 60  # 60 of its minutes now at 50.00, half up


def test_the_worker_file_cannot_set_terms_inside_an_approved_month_either(month, tmp_path):
    """The store holds the rule, so every path keeps it: a worker file changing W2's rate from the 21st
    of an approved October is refused, and nothing of it is imported."""
    approve(month)
    path = tmp_path / "workers.csv"
    path.write_text("工号,姓名,计薪方式,工资标准,生效日期\nW2,工人W2,时,50,2026-10-21\nW3,工人W3,时,10,2026-01-01\n",
                    encoding="utf-8")
    refused = month.cli("worker", "import", str(path), check=False)
    assert refused.returncode == 1 and "W2 was paid for 2026-10 by an approved wage table" in refused.stderr
    assert [t["rate_fen"] for t in month.json("wages", "terms", "--worker", "W2")] == [4501]
    # From November on, the same file is taken.
    path.write_text("工号,姓名,计薪方式,工资标准,生效日期\nW2,工人W2,时,50,2026-11-01\n", encoding="utf-8")
    month.cli("worker", "import", str(path))
    assert [t["rate_fen"] for t in month.json("wages", "terms", "--worker", "W2")] == [4501, 5000]


def test_a_back_pay_replaces_terms_a_table_used_and_keeps_the_earlier_ones(month):
    approve(month)
    month.cli("worker", "pay", "W1", "--day-rate-yuan", "360", "--from", "2026-10-01", "--back-pay",
              "350 was typed for 360", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W1's rate")
    w1 = line(month, "W1")
    assert w1["gross_fen"] == 2 * 36000 + 2 * 38000
    assert [(b["from"], b["rate_fen"], b["earlier"]["rate_fen"], b["earlier"]["added_by"]) for b in w1["back_pay"]] \
        == [("2026-10-01", 36000, 35000, "ops-li")]
    # The first version keeps what it was approved with.
    assert line(month, "W1", "--version", "1")["gross_fen"] == 2 * 35000 + 2 * 38000


# ============================================================================ a paid credit returned later


def test_a_paid_credit_the_bank_returns_later_is_reversed_owed_again_and_overdue(month, tmp_path):
    approve(month)
    ids = pay_all(month, tmp_path)
    today = paid_day()
    assert arrears(month, "W3")["status"] == "paid"
    # The reproduction: nothing could record the return of a paid credit (退汇); now it is reversed.
    for bad, why in ((("--on", (date.fromisoformat(today) + timedelta(days=1)).isoformat()), "a day still to come"),
                     (("--on", "2026-11-01"), "it cannot have come back on 2026-11-01")):
        refused = month.cli("wages", "reverse", ids["W3"], "--reference", "TH1", *bad, "--reason", "x", "--by",
                            "ops-sun", check=False)
        assert refused.returncode == 1 and why in refused.stderr
    missing = month.cli("wages", "reverse", ids["W3"], "--on", today, "--reason", "x", "--by", "ops-sun", check=False)
    assert missing.returncode == 2 and "--reference" in missing.stderr
    reversed_ = month.json("wages", "reverse", ids["W3"], "--reference", "TH20261207001", "--on", today,
                           "--reason", "收款账户已冻结 account frozen", "--by", "ops-sun")
    assert (reversed_["status"], reversed_["returned_ref"], reversed_["returned_on"], reversed_["undone_by"],
            reversed_["undone_reason"], reversed_["voucher"]) == \
        ("reversed", "TH20261207001", today, "ops-sun", "收款账户已冻结 account frozen", "VW3")
    again = month.cli("wages", "reverse", ids["W3"], "--reference", "TH2", "--on", today, "--reason", "x",
                      "--by", "ops-sun", check=False)
    assert again.returncode == 1 and "was reversed already" in again.stderr and "TH20261207001" in again.stderr

    # Owed again: overdue (the pay day has passed), with Art. 27's warning; as of the day before, paid.
    row = arrears(month, "W3")
    assert (row["status"], row["paid_fen"], row["overdue_fen"], row["art27"] is not None) == \
        ("overdue", 0, NETS["W3"], True)
    assert arrears(month, "W3", as_of=today)["paid_fen"] == 0, "returned on that day: not paid on it"
    listed = {p["worker"]: p for p in month.json("wages", "batches", *PERIOD)[0]["payments"]}
    assert (listed["W3"]["status"], listed["W3"]["returned_ref"], listed["W3"]["settled_by"]) == \
        ("reversed", "TH20261207001", "ops-sun")
    slip = month.json("wages", "slip", "--worker", "W3", "--period", "2026-10", "--out", str(tmp_path / "w3.html"))
    assert slip["payment_status"][0] == "reversed" and "银行退汇" in (tmp_path / "w3.html").read_text()
    # A return naming it again is refused; the next batch pays it alone, under a new id.
    refused = month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r2.csv", [
        (ids["W3"], "paid", "V9", today, "")]), check=False)
    assert refused.returncode == 1 and "the bank returned it after paying it" in refused.stderr
    shown = batch(month, tmp_path / "b2.xml").stdout
    assert "batch S1-202610-V1-B2 (new), version 1: 1 credit(s), 100.00 yuan" in shown
    assert {w: fen for w, (_, fen) in credits(tmp_path / "b2.xml").items()} == {"W3": NETS["W3"]}
    assert "ART.27" in month.cli("arrears", "--site", "S1", "--fresh").stdout


def test_only_a_paid_credit_is_reversed(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    e2e = credits(tmp_path / "b1.xml")["W1"][0]
    refused = month.cli("wages", "reverse", e2e, "--reference", "TH1", "--on", paid_day(), "--reason", "x",
                        "--by", "ops-sun", check=False)
    assert refused.returncode == 1 and "is pending, not paid" in refused.stderr and "wages withdraw" in refused.stderr
    unknown = month.cli("wages", "reverse", "S1-202610-V9-B1-0001", "--reference", "TH1", "--on", paid_day(),
                        "--reason", "x", "--by", "ops-sun", check=False)
    assert unknown.returncode == 1 and "is not a credit of any batch" in unknown.stderr
    assert {p[2] for p in payments(month)} == {"pending"}


# ============================================================================ a batch written, never sent


def test_a_batch_never_sent_is_withdrawn_and_pays_into_the_corrected_account(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.csv", "csv")
    # The reproduction: W2's account was wrong; corrected and approved again, nothing more was owed (the
    # unsent batch's credits were pending), so W2 could not be paid into the right account.
    month.cli("worker", "payee", "W2", "--account", "6222029999999990002")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's own account")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    missing = month.cli("wages", "withdraw", "--batch", "S1-202610-V1-B1", "--by", "ops-qian", check=False)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    withdrawn = month.json("wages", "withdraw", "--batch", "S1-202610-V1-B1", "--reason",
                           "W2's account was wrong; the file was not sent", "--by", "ops-qian")
    assert len(withdrawn["withdrawn"]) == 5 and {p["status"] for p in withdrawn["withdrawn"]} == {"withdrawn"}
    assert {(p["undone_by"], p["undone_reason"]) for p in withdrawn["withdrawn"]} == \
        {("ops-qian", "W2's account was wrong; the file was not sent")}
    shown = batch(month, tmp_path / "v2.csv", "csv").stdout
    assert "batch S1-202610-V2-B1 (new), version 2: 5 credit(s), 2487.56 yuan" in shown
    with open(tmp_path / "v2.csv", encoding="utf-8-sig") as file:
        assert next(file).startswith("总笔数") and next(file).startswith("5,")  # the control totals, then the header
        rows = {row["备注"].split("/")[2].split()[0]: row for row in csv.DictReader(file)}
    assert rows["W2"]["收款账号"] == "6222029999999990002"
    # A return of the withdrawn batch is refused; withdrawing it again too.
    refused = month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        ("S1-202610-V1-B1-0001", "paid", "V1", paid_day(), "")]), check=False)
    assert refused.returncode == 1 and "was withdrawn on" in refused.stderr and "it was never sent" in refused.stderr
    again = month.cli("wages", "withdraw", "--batch", "S1-202610-V1-B1", "--reason", "x", "--by", "ops-qian",
                      check=False)
    assert again.returncode == 1 and "withdrawn already" in again.stderr
    listed = month.json("wages", "batches", *PERIOD)
    assert [(b["batch_id"], {p["status"] for p in b["payments"]}) for b in listed] == [
        ("S1-202610-V1-B1", {"withdrawn"}), ("S1-202610-V2-B1", {"pending"})]


def test_one_credit_withdrawn_leaves_the_batch_written_again_without_it(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = {w: e2e for w, (e2e, _) in credits(tmp_path / "b1.xml").items()}
    said = month.cli("wages", "withdraw", "--credit", ids["W2"], "--reason", "W2 asked to be paid in cash",
                     "--by", "ops-qian").stdout
    assert "1 credit(s) withdrawn, 247.56 yuan, by ops-qian" in said and "--again S1-202610-V1-B1" in said
    again = month.json("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "pain001", "--out",
                       str(tmp_path / "b1-again.xml"), "--again", "S1-202610-V1-B1")
    assert (again["batch_id"], again["new"], again["credits"], again["total_fen"]) == \
        ("S1-202610-V1-B1", False, 4, sum(NETS.values()) - NETS["W2"])
    assert [w["worker"] for w in again["withdrawn"]] == ["W2"]
    assert set(credits(tmp_path / "b1-again.xml")) == {"W1", "W3", "W4", "W5"}
    # What it held is owed again: the next batch pays it.
    shown = batch(month, tmp_path / "b2.xml").stdout
    assert "batch S1-202610-V1-B2 (new), version 1: 1 credit(s), 247.56 yuan" in shown
    # Once the bank has answered for a credit of a batch, the batch was sent: nothing of it is withdrawn.
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        (ids["W1"], "paid", "V1", paid_day(), "")]))
    refused = month.cli("wages", "withdraw", "--credit", ids["W3"], "--reason", "x", "--by", "ops-qian", check=False)
    assert refused.returncode == 1 and "batch S1-202610-V1-B1 was sent" in refused.stderr
    assert "wages reverse" in refused.stderr
    assert sorted(p[2] for p in payments(month) if p[3] == "S1-202610-V1-B1") == \
        ["paid", "pending", "pending", "pending", "withdrawn"]


# ============================================================================ deductions


def test_a_deduction_entered_twice_is_warned_of_and_one_is_reversed(month):
    # The fixture deducted 20.00 个人所得税 from W1; the reproduction enters it again.
    twice = month.cli("wages", "deduct", *PERIOD, "--worker", "W1", "--item", "个人所得税", "--amount-yuan", "20",
                      "--reason", "withholding", "--by", "ops-li")
    assert "warning: the same deduction is recorded already: deduction 1, 个人所得税 20.00 yuan" in twice.stderr
    other = month.cli("wages", "deduct", *PERIOD, "--worker", "W1", "--item", "个人所得税", "--amount-yuan", "5",
                      "--reason", "withholding", "--by", "ops-li", "--json")
    assert json.loads(other.stdout)["identical"] == [] and "warning" not in other.stderr
    listed = month.json("wages", "deductions", *PERIOD)
    assert [(d["id"], d["amount_fen"], d["reversed_at"]) for d in listed] == [(1, 2000, None), (2, 2000, None),
                                                                              (3, 500, None)]
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--draft")  # look: 45.00 deducted
    assert line(month, "W1")["deductions_fen"] == 4500

    reversed_ = month.json("wages", "reverse-deduction", "2", "--reason", "entered twice", "--by", "ops-zhao")
    assert (reversed_["reversed_by"], reversed_["reversed_reason"]) == ("ops-zhao", "entered twice")
    again = month.cli("wages", "reverse-deduction", "2", "--reason", "x", "--by", "ops-zhao", check=False)
    assert again.returncode == 1 and "was reversed already" in again.stderr and "by ops-zhao" in again.stderr
    assert month.cli("wages", "reverse-deduction", "99", "--reason", "x", "--by", "ops-zhao",
                     check=False).returncode == 1
    shown = month.cli("wages", "run", *PERIOD, "--by", "ops-wang").stdout
    assert "deduction reversed: 2 个人所得税 20.00 (entered twice;" in shown
    w1 = line(month, "W1")
    assert w1["deductions_fen"] == 2500 and [d["amount_fen"] for d in w1["deductions"]] == [2000, 500]
    assert [(d["id"], d["reversed_by"]) for d in w1["deductions_reversed"]] == [(2, "ops-zhao")]
    kept = month.json("wages", "deductions", *PERIOD, "--worker", "W1")
    assert [d["reversed_by"] for d in kept] == [None, "ops-zhao", None], "kept, never deleted"


def test_a_sheet_is_compared_with_the_deductions_in_force(month, tmp_path):
    """``--take-deductions`` takes only the difference from the deductions in force: after the operator's
    20.00 is reversed, the sheet's 30.00 is taken whole; before, 10.00 of it."""
    from tests.test_wages_sheet import ACCOUNT, HEADER, Sheets

    path = Sheets(month, tmp_path / "sheets").csv("sheet.csv", [HEADER, ["W1", "工人W1", "4", "1460", "30",
                                                                           ACCOUNT["W1"]]])
    month.cli("wages", "reverse-deduction", "1", "--reason", "the employer withholds it", "--by", "ops-li")
    taken = month.json("wages", "import-sheet", *PERIOD, str(path), "--by", "ops-li", "--take-deductions")
    assert taken["deductions_taken"]["recorded_fen"] == 3000
    in_force = [d for d in month.json("wages", "deductions", *PERIOD) if d["reversed_at"] is None]
    assert [(d["worker"], d["amount_fen"]) for d in in_force] == [("W1", 3000)]


def test_a_reversal_is_as_of_its_day_in_arrears(month, tmp_path):
    """``arrears --as-of`` a day before the return shows the credit paid; from the return's day, owed."""
    approve(month)
    ids = pay_all(month, tmp_path)
    today = paid_day()
    month.cli("wages", "reverse", ids["W5"], "--reference", "TH9", "--on", today, "--reason", "账户冻结",
              "--by", "ops-sun")
    tz = ZoneInfo("Asia/Shanghai")
    assert today == datetime.now(UTC).astimezone(tz).date().isoformat()
    with month.setup.store() as store:
        sums = {row["worker"]: row for row in store.payment_sums("S1", today)}
        before = {row["worker"]: row for row in store.payment_sums("S1", "2026-11-30")}
        store.db.execute("UPDATE wage_payments SET paid_on = '2026-11-20', returned_on = '2026-11-25' "
                         "WHERE end_to_end_id = ?", (ids["W5"],))
        paid_then = {row["worker"]: row["paid"] for row in store.payment_sums("S1", "2026-11-24")}
        returned = {row["worker"]: row["paid"] for row in store.payment_sums("S1", "2026-11-25")}
        at_bank = {row["worker"]: row["pending"] for row in store.payment_sums("S1", "2026-11-19")}
    assert sums["W5"]["paid"] == 0 and sums["W1"]["paid"] == NETS["W1"]
    assert before["W5"]["paid"] == 0 and before["W5"]["pending"] == NETS["W5"], "paid today: at the bank before"
    assert paid_then["W5"] == NETS["W5"] and returned["W5"] == 0 and at_bank["W5"] == NETS["W5"]
