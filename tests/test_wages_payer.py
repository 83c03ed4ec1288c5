"""The payer account (the special wage account, Art. 26 and 31) is history, and part of what is approved:
a change for the same date never overwrites the earlier row, and a batch debits the account frozen in
the approved version, never the site's current row; on both engines, through the real CLI.

October 2026 at a Shanghai site, from tests/test_wages.py: paid from 110000000001 on the 15th.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import date

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from collector.store import Store, schema
from collector.wages.table import _in_force
from tests import test_wages
from tests.test_wages_payments import PAIN, PERIOD, approve, batch, payments

month = test_wages.month
MALLORY = ("site", "pay-day", "S1", "--day", "15", "--payer-account", "888888888888", "--payer-name", "某某公司",
           "--payer-bank", "某某银行", "--from", "2026-01-01", "--by", "mallory")


def debtor(path) -> str:
    return ET.parse(path).getroot().findtext(".//p:PmtInf/p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=PAIN)


def test_a_same_date_change_is_kept_and_the_approved_version_is_not_paid_from_it(month, tmp_path):
    """The attack of issue 23 item 8: mallory sets another account for the same date after the approval."""
    approve(month)
    said = month.cli(*MALLORY).stdout
    assert "takes the place of the setting for that date recorded" in said and "by ops-li (kept in the history)" in said
    history = month.json("site", "pay-day", "S1")
    assert [(r["effective_from"], r["payer_account"], r["added_by"], r["replaced"]) for r in history] == [
        ("2026-01-01", "********0001", "ops-li", True), ("2026-01-01", "********8888", "mallory", False)]
    shown = month.cli("site", "pay-day", "S1").stdout
    assert "paid from ********0001 (某建筑总承包公司, 中国建设银行)" in shown and "(replaced)" in shown
    with month.setup.store() as store:
        kept = [(r["payer_account"], r["added_by"]) for r in store.site_pay("S1")]
    assert kept == [("110000000001", "ops-li"), ("888888888888", "mallory")], "nothing is overwritten"

    out = tmp_path / "october.xml"
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "pain001", "--out", str(out), check=False)
    assert refused.returncode == 1
    assert "S1's payer changed after 2026-10 version 1 was approved: approved account ********0001 " \
           "(某建筑总承包公司, 中国建设银行), now account ********8888 (某某公司, 某某银行)" in refused.stderr
    assert "by mallory" in refused.stderr and "compute and approve a new version" in refused.stderr
    assert "888888888888" not in refused.stderr, "accounts are shown masked"
    assert not out.exists() and payments(month) == []

    # Setting the approved payer back (a new row again) lets the approved version be paid, from it.
    month.cli("site", "pay-day", "S1", "--day", "15", "--payer-account", "110000000001", "--payer-name",
              "某建筑总承包公司", "--payer-bank", "中国建设银行", "--from", "2026-01-01", "--by", "ops-li")
    batch(month, out)
    assert debtor(out) == "110000000001" and len(payments(month)) == 5
    assert len(month.json("site", "pay-day", "S1")) == 3


def test_a_batch_made_before_the_change_is_written_again_from_the_approved_account(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    month.cli(*MALLORY)
    batch(month, tmp_path / "again.xml")
    assert (tmp_path / "again.xml").read_bytes() == (tmp_path / "b1.xml").read_bytes()
    assert debtor(tmp_path / "again.xml") == "110000000001"


def test_a_version_approved_after_the_change_carries_the_new_account(month, tmp_path):
    approve(month)
    month.cli(*MALLORY)
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "the contractor's new special account")
    said = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao").stdout
    assert "paid from ********8888" in said
    history = month.cli("wages", "history", *PERIOD).stdout
    assert "paid from ********0001" in history and "paid from ********8888" in history
    out = tmp_path / "v2.xml"
    assert "version 2: 5 credit(s)" in batch(month, out).stdout
    assert debtor(out) == "888888888888"
    with month.setup.store() as store:
        tables = {t["version"]: (t["status"], t["payer_account"]) for t in store.wage_tables("S1", "2026-10")}
    assert tables == {1: ("superseded", "110000000001"), 2: ("approved", "888888888888")}


def test_setting_the_pay_day_needs_day_from_and_by(month):
    refused = month.cli("site", "pay-day", "S1", "--payer-account", "888888888888", check=False)
    assert refused.returncode == 2 and "needs --day, --from and --by" in refused.stderr
    refused = month.cli("site", "pay-day", "S1", "--day", "15", "--by", "x", check=False)
    assert refused.returncode == 2 and "needs --from and --by" in refused.stderr
    refused = month.cli("site", "pay-day", "S9", check=False)
    assert refused.returncode == 1 and "site S9 does not exist" in refused.stderr


# ================================================================================== the row in force

SITES = itertools.count(1)
DATES = ["2026-01-01", "2026-03-01", "2026-03-15", "2026-06-30"]
change = st.tuples(st.sampled_from(["", "E1"]), st.sampled_from(DATES), st.integers(1, 28),
                   st.from_regex(r"[1-9][0-9]{11}", fullmatch=True))


@pytest.fixture
def store(database):
    with Store(database) as store:
        yield store


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(changes=st.lists(change, min_size=1, max_size=8))
def test_the_row_in_force_on_a_date_is_the_latest_recorded_for_the_latest_date_not_after_it(store, changes):
    site = f"P{next(SITES)}"
    store.add_site(site, timezone="Asia/Shanghai")
    for employer, start, day, account in changes:
        store.set_site_pay(site, pay_day=day, employer=employer, effective_from=start, by="ops",
                           payer_account=account, payer_name="总包", payer_bank="建行")
    rows = store.site_pay(site)
    assert len(rows) == len(changes), "every change is a row; none is overwritten"
    for employer in ("", "E1"):
        recorded = [(d, a) for e, d, _, a in changes if e == employer]  # in the order recorded
        for query in ["2025-12-31", *DATES, "2026-02-01", "2026-12-31"]:
            started = [d for d, _ in recorded if d <= query]
            expected = [a for d, a in recorded if d == max(started)][-1] if started else None
            found = store.site_pay_in_force(site, query, employer)
            assert (found["payer_account"] if found else None) == expected
            read = _in_force([r for r in rows if r["employer"] == employer], date.fromisoformat(query))
            assert (read["payer_account"] if read else None) == expected, "what the wage table and arrears read"


# ================================================================================== older databases


def test_an_older_database_keeps_its_rows_and_its_approved_versions_get_their_payer(empty_database):
    """A database as step 22 left it: one approved version already paid (its payer is the batch's), one
    approved and not paid yet (the payer in force on its period's last day)."""
    line = {"worker": "W1", "name": "张伟", "employer": "", "id_number": None, "phone": None,
            "bank_account": "6222021234567890001", "bank_name": "中国工商银行", "days": 1, "worked_minutes": 480,
            "basis": "day", "rate_fen": 30000, "gross_fen": 30000, "deductions_fen": 0, "net_fen": 30000,
            "status": "payable", "flags": [], "detail": {}}
    location = empty_database
    with Store(location, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["payer_history"] - 1)
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_worker("W1", name="张伟")
        store.set_site_pay("S1", pay_day=15, effective_from="2026-01-01", by="ops", payer_account="110000000001",
                           payer_name="总包", payer_bank="建行")
        store.set_site_pay("S1", pay_day=10, effective_from="2026-10-01", by="ops", payer_account="110000000002",
                           payer_name="总包", payer_bank="建行")
        for period in ("2026-09", "2026-10"):
            saved = store.save_wage_table(site="S1", period=period, status="computed", final=True, lines=[line],
                                          by="t", reason=None, pay_day=f"{period}-28")
            store.execute("UPDATE wage_tables SET status = 'approved', approved_at = 'x', approved_by = 't' "
                          "WHERE id = ?", (saved["id"],))
        # As that release wrote a batch (before who made it was recorded).
        store.execute("INSERT INTO wage_batches (batch_id, site, period, table_version, seq, created, execution_date, "
                      "execution_rule, payer_account, payer_name, payer_bank, made_at) VALUES ('S1-202609-V1-B1', "
                      "'S1', '2026-09', 1, 1, 'x', '2026-10-15', 'pay_day', '110000000009', '旧总包', '工行', 'x')")
        store.execute("INSERT INTO wage_payments (batch_id, position, site, period, worker, table_version, "
                      "end_to_end_id, amount_fen, status) VALUES ('S1-202609-V1-B1', 1, 'S1', '2026-09', 'W1', 1, "
                      "'S1-202609-V1-B1-0001', 30000, 'pending')")
        before = store.site_pay("S1")
    with Store(location) as store:
        assert store.site_pay("S1") == before, "every row is kept as it was"
        frozen = {t["period"]: (t["payer_account"], t["payer_name"], t["payer_bank"])
                  for t in store.wage_tables("S1")}
        assert frozen == {"2026-09": ("110000000009", "旧总包", "工行"), "2026-10": ("110000000002", "总包", "建行")}
        assert store.set_site_pay("S1", pay_day=10, effective_from="2026-10-01", by="ops",
                                  payer_account="110000000003")["payer_account"] == "110000000002"
        assert [r["payer_account"] for r in store.site_pay("S1")] == ["110000000001", "110000000002", "110000000003"]
        assert store.has("payer_history")
