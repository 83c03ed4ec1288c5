"""A bank's return as banks write it: 交易成功 / 处理成功 / 交易失败 and the like, 处理中 noted and not
recorded, a date with a time of day, amounts with thousands separators, an XLSX whose date cells hold a
time, and pain.002 versions .10 and .12 beside .03; on both engines, with the real CLI.

The final October of tests/test_wages.py, approved and batched (W1 1440.00, W2 247.56, W3 100.00,
W4 300.00, W5 400.00).
"""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from collector.wages import bankreturn
from collector.wages.payments import PaymentError
from tests import test_wages
from tests.test_wages_payments import approve, bank_return, batch, credits, paid_day, pain002, tx

month = test_wages.month
HEADER = ("业务参考号", "交易状态", "银行流水号", "交易日期", "失败原因", "金额")


@pytest.fixture
def ids(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    return {worker: e2e for worker, (e2e, _) in credits(tmp_path / "b1.xml").items()}


def test_a_table_in_the_words_banks_use(month, tmp_path, ids):
    day = paid_day("/")
    path = bank_return(tmp_path / "回单.csv", [
        (ids["W1"], "交易成功", "V1", f"{day} 10:23:45", "", '"1,440.00"'),
        (ids["W2"], "交易失败", "", "", "户名不符", "247.56"),
        (ids["W3"], "处理成功", "V3", f"{paid_day('')} 102345", "", "100.00"),
        (ids["W4"], "处理中", "", "", "", "300.00"),
        (ids["W5"], " 成功 ", "V5", f"{paid_day()}T16:05:00+08:00", "", "400"),
    ], header=HEADER, encoding="gbk")
    result = month.json("wages", "paid", "--by", "ops-sun", path)
    assert sorted((r["worker"], r["status"], r["paid_on"], r["amount_fen"]) for r in result["recorded"]) == [
        ("W1", "paid", paid_day(), 144000), ("W2", "failed", None, 24756), ("W3", "paid", paid_day(), 10000),
        ("W5", "paid", paid_day(), 40000)]
    assert result["not_recorded"] == [f"{ids['W4']}: 处理中 (still in progress at the bank; not recorded)"]


def test_what_is_still_refused(month, tmp_path, ids):
    path = bank_return(tmp_path / "r.csv", [
        (ids["W1"], "交易成功", "V1", f"{paid_day()} 25:61", "", "1440.00"),  # no such time of day
        (ids["W2"], "退回?", "", "", "x", ""),
        (ids["W3"], "交易成功", "V3", paid_day(), "", '"1,00.00"'),
        (ids["W4"], "交易成功", "V4", "2099/01/01 09:00:00", "", "300.00"),
    ], header=HEADER)
    refused = month.cli("wages", "paid", "--by", "ops-sun", path, check=False)
    assert refused.returncode == 1
    assert "is paid on 2099-01-01 in the return, a day still to come" in refused.stderr, "a time changes nothing"
    assert "is not YYYY-MM-DD (a time may follow)" in refused.stderr
    assert "status '退回?' is not paid (交易成功) or failed (交易失败)" in refused.stderr
    assert "1,00.00" in refused.stderr, "a separator not every three digits is not an amount"
    with month.setup.store() as store:
        assert {p["status"] for p in store.wage_payments("S1")} == {"pending"}


def test_an_xlsx_return_whose_date_cells_hold_a_time(month, tmp_path, ids):
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(list(HEADER))
    now = datetime.fromisoformat(f"{paid_day()}T09:30:00")
    for worker in ("W1", "W2", "W3", "W4", "W5"):
        sheet.append([ids[worker], "交易成功", f"V{worker}", now, None, None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    path = tmp_path / "return.xlsx"
    path.write_bytes(buffer.getvalue())
    result = month.json("wages", "paid", "--by", "ops-sun", str(path))
    assert {(r["status"], r["paid_on"]) for r in result["recorded"]} == {("paid", paid_day())}
    assert len(result["recorded"]) == 5


@pytest.mark.parametrize("version", ["10", "12"])
def test_pain002_versions_10_and_12(month, tmp_path, ids, version):
    path = pain002(tmp_path / "r.xml", "S1-202610-V1-B1", [
        tx(ids["W1"], "ACSC", voucher="VCH-001", amount="1440.00"),
        tx(ids["W2"], "RJCT", reason="收款账户已冻结"),
        tx(ids["W3"], "ACSP")])
    text = (tmp_path / "r.xml").read_text("utf-8").replace("pain.002.001.03", f"pain.002.001.{version}")
    (tmp_path / "r.xml").write_text(text, "utf-8")
    result = month.json("wages", "paid", "--by", "ops-sun", path)
    assert result["kind"] == "pain.002"
    assert sorted((r["worker"], r["status"], r["voucher"], r["reason"]) for r in result["recorded"]) == [
        ("W1", "paid", "VCH-001", None), ("W2", "failed", None, "AC04 收款账户已冻结")]
    assert result["not_recorded"] == [f"{ids['W3']}: ACSP (still in progress at the bank; not recorded)"]


def test_a_pain002_of_another_version_or_invalid_is_refused(tmp_path):
    report = pain002(tmp_path / "r.xml", "B1", [tx("E1", "PAID!")])
    data = (tmp_path / "r.xml").read_bytes()
    with pytest.raises(PaymentError, match=r"not a valid pain.002.001.10 payment status report \(checked against "
                                           r"pain.002.001.12.xsd\)"):
        bankreturn.read(data.replace(b"pain.002.001.03", b"pain.002.001.10"), report)
    with pytest.raises(PaymentError, match="its namespace is pain.002.001.07"):
        bankreturn.read(data.replace(b"pain.002.001.03", b"pain.002.001.07"), report)
    with pytest.raises(PaymentError, match="no pain.002 namespace"):
        bankreturn.read(b"<Document/>", report)
