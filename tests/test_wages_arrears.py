"""Wages due, paid and overdue, and the Art. 27 warning, before and after the pay day, with and without an
approved table; and the overdue totals on the bank's dashboard API and in /metrics. Both engines.

The final October of tests/test_wages.py: pay day 2026-11-15; W4's only day lacks an OUT.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from datetime import date

from prometheus_client.parser import text_string_to_metric_families

from collector.wages import figures
from tests import test_wages
from tests.helpers import start_web, stop_process
from tests.test_wages_payments import NETS, PERIOD, approve, bank_return, batch, credits, paid_day

month = test_wages.month
BANK, SITE = "bank-ops-token-all-sites-0003", "site-token-for-s1-only-0004"


def arrears(month, as_of: str) -> dict:
    return month.json("arrears", "--site", "S1", "--as-of", as_of)


def by_worker(report: dict) -> dict:
    return {row["worker"]: row for row in report["workers"]}


def test_without_an_approved_table_verified_workers_are_overdue_after_the_pay_day(month):
    before = arrears(month, "2026-11-15")
    assert before["workers"] == [] and before["sites"][0]["overdue_workers"] == 0
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")  # computed, never approved: still no approved amount
    after = arrears(month, "2026-11-20")
    rows = by_worker(after)
    assert sorted(rows) == ["W1", "W2", "W3", "W4", "W5"]
    w1 = rows["W1"]
    assert (w1["status"], w1["art27"], w1["days_overdue"], w1["verified_days"]) == ("overdue", True, 5, 4)
    assert (w1["due_fen"], w1["estimate_fen"], w1["estimate"], w1["note"]) == \
        (None, 146000, True, "no approved wage table")  # the gross: the 20.00 deducted is not approved
    w4 = rows["W4"]  # a day gates verified with no OUT: no amount can be estimated from it
    assert (w4["verified_days"], w4["estimate_fen"], w4["art27"]) == (1, None, True)
    site = after["sites"][0]
    assert (site["overdue_workers"], site["overdue_fen"], site["overdue_estimate_fen"]) == \
        (5, 0, sum(v for k, v in NETS.items() if k != "W4") + 2000)
    assert after["employers"][0]["employer"] == "华建劳务" and after["employers"][0]["overdue_workers"] == 5
    text = month.cli("arrears", "--site", "S1", "--as-of", "2026-11-20").stdout
    assert "5 worker(s) overdue" in text and "ART.27 S1 2026-10 W1" in text and "estimate 1460.00" in text


def test_with_an_approved_table_the_due_paid_and_overdue_amounts(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    with month.setup.store() as store:  # as if made before the pay day (a past date shows no later credit)
        store.execute("UPDATE wage_batches SET made_at = '2026-11-13T02:00:00.000Z'")
    assert {r["status"] for r in arrears(month, "2026-11-14")["workers"]} == {"not_due"}
    on_the_day = by_worker(arrears(month, "2026-11-15"))
    assert {(r["status"], r["due_fen"], r["pending_fen"], r["overdue_fen"]) for r in on_the_day.values()} == \
        {("due", NETS[w], NETS[w], 0) for w in NETS}
    late = arrears(month, "2026-11-16")
    assert {w: (r["status"], r["overdue_fen"], r["days_overdue"], r["art27"]) for w, r in by_worker(late).items()} \
        == {w: ("overdue", NETS[w], 1, True) for w in NETS}, "credits at the bank are not paid yet"
    ids = credits(tmp_path / "b1.xml")
    # Paid today, the day the batch was made (never before it: tests/test_wages_payee.py).
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        *[(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4", "W5")],
        (ids["W2"][0], "failed", "", "", "account closed")]))
    report = arrears(month, paid_day())
    rows = by_worker(report)
    assert {w: r["status"] for w, r in rows.items()} == {"W1": "paid", "W2": "overdue", "W3": "paid", "W4": "paid",
                                                         "W5": "paid"}
    late_by = (date.fromisoformat(paid_day()) - date(2026, 11, 15)).days
    assert (rows["W2"]["overdue_fen"], rows["W2"]["paid_fen"], rows["W2"]["days_overdue"]) == (24756, 0, late_by)
    assert rows["W1"]["paid_fen"] == 144000 and rows["W1"]["overdue_fen"] == 0
    site = report["sites"][0]
    assert (site["due_fen"], site["paid_fen"], site["overdue_fen"], site["overdue_workers"]) == \
        (sum(NETS.values()), sum(NETS.values()) - 24756, 24756, 1)
    # As of a date before the bank paid, nothing was paid yet.
    assert by_worker(arrears(month, "2026-11-14"))["W1"]["paid_fen"] == 0
    assert by_worker(arrears(month, "2026-11-20"))["W1"]["paid_fen"] == 0


def test_the_dashboard_api_and_metrics_show_overdue_totals_to_the_bank(month, tmp_path):
    month.setup.write_config(**{"web.tokens": {BANK: "*", SITE: "S1"}})
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        *[(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4", "W5")],
        (ids["W2"][0], "failed", "", "", "account closed")]))
    with month.setup.store() as store:
        figures.refresh(store)  # /metrics shows the arrears the daemon keeps (collector.wages.figures)
    web, url = start_web(month.setup)
    try:
        def get(path: str, token: str):
            request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read().decode()

        report = json.loads(get(f"/api/arrears?as_of={paid_day()}", BANK))
        assert report["sites"][0]["overdue_fen"] == 24756 and report["sites"][0]["overdue_workers"] == 1
        assert [row["worker"] for row in report["workers"]] == ["W2"], "paid rows are left out"
        for path, token, status in (("/api/arrears", SITE, 403), ("/api/arrears?as_of=2026-13-01", BANK, 400)):
            try:
                get(path, token)
                raise AssertionError(f"{path} answered")
            except urllib.error.HTTPError as error:
                assert error.code == status
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(get("/metrics", BANK)) for s in family.samples}
    finally:
        stop_process(web, signal.SIGKILL)
    assert samples[("collector_wages_overdue_fen", (("site", "S1"),))] == 24756
    assert samples[("collector_wages_overdue_workers", (("site", "S1"),))] == 1
    assert samples[("collector_wages_overdue_estimate_fen", (("site", "S1"),))] == 0
