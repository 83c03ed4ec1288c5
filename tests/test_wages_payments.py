"""Paying an approved wage table: the bank's batch (CSV and pain.001 validated against ISO 20022's XSD),
the bank's return (CSV and pain.002), corrections paying only the difference, and the refusals; on both
engines, with real files and the real CLI.

October 2026 at a Shanghai site, from tests/test_wages.py: W1 (day rate, 1440.00 net), W2 (hourly,
247.56), W3 (below the minimum, 100.00), W4 (a missing OUT, settled here by a manual punch: 300.00),
W5 (an overnight shift, 400.00); paid from the special wage account 110000000001 on the 15th.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import xmlschema

from collector.money import divide_half_up
from collector.wages.batchfile import SCHEMAS
from tests import test_wages
from tests.helpers import resident_id

#: The final October of tests/test_wages.py, on both engines.
month = test_wages.month
NETS = {"W1": 144000, "W2": 24756, "W3": 10000, "W4": 30000, "W5": 40000}
PAIN = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
PERIOD = ("--site", "S1", "--period", "2026-10")


def paid_day(separator: str = "-") -> str:
    """A day the bank can have paid a credit on: today at the Shanghai site. A batch is made now (by the
    approval of its version), and a credit is paid neither before its batch nor on a day still to come."""
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat().replace("-", separator)


def approve(month, *extra: str) -> None:
    """Settle W4's missing OUT, compute October and approve it."""
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", *extra)
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")


def batch(month, out, fmt: str = "pain001", *extra: str):
    return month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", fmt, "--out", str(out), *extra)


def credits(path) -> dict:
    """worker -> (end-to-end id, fen) of a pain.001 file."""
    root = ET.parse(path).getroot()
    found = {}
    for tx in root.iterfind(".//p:CdtTrfTxInf", PAIN):
        worker = tx.findtext("p:RmtInf/p:Ustrd", namespaces=PAIN).split("/")[2].split()[0]
        found[worker] = (tx.findtext("p:PmtId/p:EndToEndId", namespaces=PAIN),
                         int(Decimal(tx.findtext("p:Amt/p:InstdAmt", namespaces=PAIN)) * 100))
    return found


def bank_return(path, rows: list[tuple], *, header=("end_to_end_id", "status", "voucher", "date", "reason"),
                encoding: str = "utf-8") -> str:
    text = ",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in rows)
    path.write_bytes(text.encode(encoding))
    return str(path)


def payments(month) -> list[tuple]:
    with month.setup.store() as store:
        return [(p["worker"], p["amount_fen"], p["status"], p["batch_id"]) for p in store.wage_payments("S1")]


def test_the_pain001_validates_against_the_xsd_and_its_totals_are_the_lines(month, tmp_path):
    approve(month)
    out = tmp_path / "october.xml"
    shown = batch(month, out).stdout
    assert "batch S1-202610-V1-B1 (new), version 1: 5 credit(s), 2487.56 yuan" in shown
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600, "it holds account and ID numbers"
    schema = xmlschema.XMLSchema(str(SCHEMAS / "pain.001.001.09.xsd"))
    schema.validate(str(out))  # the official schema, read on its own
    root = ET.parse(out).getroot()
    amounts = [Decimal(a.text) for a in root.iterfind(".//p:CdtTrfTxInf/p:Amt/p:InstdAmt", PAIN)]
    assert len(amounts) == 5 and sum(amounts) == Decimal("2487.56") == Decimal(sum(NETS.values())) / 100
    for block in ("p:CstmrCdtTrfInitn/p:GrpHdr", "p:CstmrCdtTrfInitn/p:PmtInf"):
        assert root.findtext(f"{block}/p:NbOfTxs", namespaces=PAIN) == "5"
        assert root.findtext(f"{block}/p:CtrlSum", namespaces=PAIN) == "2487.56"
    assert {w: fen for w, (_, fen) in credits(out).items()} == NETS
    head = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", PAIN)
    with month.setup.store() as store:
        approved_at = store.wage_table("S1", "2026-10")["approved_at"]
    created = datetime.fromisoformat(head.findtext("p:CreDtTm", namespaces=PAIN))
    assert created == datetime.fromisoformat(approved_at.replace("Z", "+00:00")).replace(microsecond=0), \
        "the creation time is the approval's, not the clock's"
    assert head.findtext("p:MsgId", namespaces=PAIN) == "S1-202610-V1-B1"
    info = root.find("p:CstmrCdtTrfInitn/p:PmtInf", PAIN)
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert info.findtext("p:ReqdExctnDt/p:Dt", namespaces=PAIN) == max("2026-11-15", today)
    assert info.findtext("p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=PAIN) == "110000000001"
    assert info.findtext("p:Dbtr/p:Nm", namespaces=PAIN) == "某建筑总承包公司"
    assert info.findtext("p:DbtrAgt/p:FinInstnId/p:Nm", namespaces=PAIN) == "中国建设银行"
    w1 = next(tx for tx in info.iterfind("p:CdtTrfTxInf", PAIN)
              if tx.findtext("p:PmtId/p:EndToEndId", namespaces=PAIN) == credits(out)["W1"][0])
    assert w1.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=PAIN) == "6222021234567890001"
    assert w1.findtext("p:Cdtr/p:Id/p:PrvtId/p:Othr/p:Id", namespaces=PAIN) == resident_id(1)
    assert w1.findtext("p:Cdtr/p:Nm", namespaces=PAIN) == "工人W1"
    assert w1.findtext("p:Purp/p:Cd", namespaces=PAIN) == "SALA"
    assert w1.find("p:Amt/p:InstdAmt", PAIN).get("Ccy") == "CNY"
    assert [p[2] for p in payments(month)] == ["pending"] * 5


def test_the_csv_is_the_banks_bulk_layout(month, tmp_path):
    with month.setup.store() as store:
        store.execute("UPDATE workers SET name = ? WHERE worker = 'W3'", ("=HYPERLINK(\"http://x\")",))
    approve(month)
    out = tmp_path / "october.csv"
    batch(month, out, "csv")
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[:2] == [["总笔数", "总金额"], ["5", "2487.56"]], "the control totals the bank checks"
    assert rows[2] == ["业务参考号", "付款账号", "付款户名", "收款户名", "收款账号", "收款银行", "收款行行号", "收款行省份",
                       "收款行城市", "收款人身份证号", "手机号", "金额", "用途", "备注", "付款日期"]
    by_worker = {row[13].split("/")[2].split()[0]: row for row in rows[3:]}
    assert sorted(by_worker) == sorted(NETS)
    executed = month.json("wages", "batches", "--site", "S1", "--period", "2026-10")[0]["execution_date"]
    assert by_worker["W1"] == ["S1-202610-V1-B1-0001", "110000000001", "某建筑总承包公司", "工人W1", "6222021234567890001",
                               "中国工商银行", "", "", "", resident_id(1), "13812345678", "1440.00", "工资",
                               "S1/2026-10/W1 工资", executed]
    assert by_worker["W3"][3] == "'=HYPERLINK(\"http://x\")" and by_worker["W2"][11] == "247.56"
    # The same batch in GBK for a bank that wants it: the same cells.
    gbk = tmp_path / "october-gbk.csv"
    batch(month, gbk, "csv", "--encoding", "gbk")
    assert list(csv.reader(io.StringIO(gbk.read_bytes().decode("gbk")))) == rows


def test_the_same_batch_again_is_the_same_bytes_and_is_recorded_once(month, tmp_path):
    approve(month)
    first, second, text = tmp_path / "a.xml", tmp_path / "b.xml", tmp_path / "c.csv"
    batch(month, first)
    recorded = payments(month)
    again = batch(month, second).stdout
    assert "the same batch again, no new credit" in again
    assert first.read_bytes() == second.read_bytes() and payments(month) == recorded
    batch(month, text, "csv")
    assert payments(month) == recorded, "another format of the same batch records nothing either"
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(first), check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert first.read_bytes() == second.read_bytes(), "never overwritten"


def test_a_failed_line_is_paid_in_the_next_batch_and_a_line_is_paid_once(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    rows = [(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4", "W5")]
    # A failure that is not the payee's (a refused payee is held: tests/test_wages_refused.py).
    rows.append((ids["W2"][0], "failed", "", "", "系统繁忙 system busy"))
    shown = month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r1.csv", rows)).stdout
    assert "4 credit(s) paid (2240.00 yuan), 1 failed" in shown and "系统繁忙" in shown
    assert sorted(payments(month)) == sorted(
        [(w, NETS[w], "paid", "S1-202610-V1-B1") for w in ("W1", "W3", "W4", "W5")]
        + [("W2", NETS["W2"], "failed", "S1-202610-V1-B1")])
    # The failed credit is owed again: the next batch pays it alone, under a new id.
    shown = batch(month, tmp_path / "b2.xml").stdout
    assert "batch S1-202610-V1-B2 (new), version 1: 1 credit(s), 247.56 yuan" in shown
    retry = credits(tmp_path / "b2.xml")
    assert list(retry) == ["W2"] and retry["W2"][1] == NETS["W2"] and retry["W2"][0] != ids["W2"][0]
    # The bank's return in GBK with Chinese headers, the amount included.
    path = bank_return(tmp_path / "r2.csv", [(retry["W2"][0], "成功", "V-W2", paid_day("/"), "", "247.56")],
                       header=("业务参考号", "状态", "凭证号", "日期", "失败原因", "金额"), encoding="gbk")
    recorded = month.json("wages", "paid", "--by", "ops-sun", path)["recorded"]
    assert [(r["worker"], r["status"], r["voucher"], r["paid_on"]) for r in recorded] == \
        [("W2", "paid", "V-W2", paid_day())]
    # Paid twice: refused, with the line, and nothing of the file is recorded.
    before = payments(month)
    refused = month.cli("wages", "paid", "--by", "ops-sun", path, check=False)
    assert refused.returncode == 1 and f"was recorded paid already on {paid_day()}" in refused.stderr
    assert "nothing recorded" in refused.stderr and payments(month) == before
    # Nothing more is owed: asked again, the last batch is written again, the same bytes.
    batch(month, tmp_path / "b2-again.xml")
    assert (tmp_path / "b2-again.xml").read_bytes() == (tmp_path / "b2.xml").read_bytes()


def test_a_return_with_any_bad_line_records_nothing(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    path = bank_return(tmp_path / "r.csv", [
        (ids["W1"][0], "paid", "V1", paid_day(), ""),              # fine on its own
        ("S1-202610-V9-B1-0001", "paid", "V2", paid_day(), ""),    # not ours
        (ids["W3"][0], "paid", "V3", paid_day(), "", "99.99"),     # another amount
        (ids["W4"][0], "paid", "", paid_day(), ""),                # no voucher
        (ids["W5"][0], "failed", "", "", ""),                      # no reason
        (ids["W1"][0], "failed", "", "", "again"),                 # the same credit twice
    ], header=("end_to_end_id", "status", "voucher", "date", "reason", "amount"))
    refused = month.cli("wages", "paid", "--by", "ops-sun", path, check=False)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert "5 line(s) refused, nothing recorded" in lines[0] and len(lines) == 6
    assert any("'S1-202610-V9-B1-0001' is not a credit of any batch" in line for line in lines)
    assert any("is 99.99 yuan in the return but 100.00 in batch S1-202610-V1-B1" in line for line in lines)
    assert any("has no voucher" in line for line in lines) and any("gives no reason" in line for line in lines)
    assert [p[2] for p in payments(month)] == ["pending"] * 5, "all or nothing"


def test_a_corrected_version_pays_only_the_difference(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "v1.xml")
    ids = credits(tmp_path / "v1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        (ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W2", "W3", "W4")]))  # W5 still at the bank
    # W2's rate was agreed higher from the 21st; W5 owes a deduction found later.
    month.cli("worker", "pay", "W2", "--hourly-rate-yuan", "50", "--from", "2026-10-21", "--by", "ops-li",
              "--back-pay", "rate agreed from the 21st")
    month.cli("wages", "deduct", *PERIOD, "--worker", "W5", "--item", "advance", "--amount-yuan", "50",
              "--reason", "cash advance", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's rate; W5's advance")
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(tmp_path / "x.csv"), check=False)
    assert refused.returncode == 1 and "version 2 (a correction) is computed but not approved" in refused.stderr
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    shown = batch(month, tmp_path / "v2.xml").stdout
    w2 = divide_half_up(4501 * 270 + 5000 * 60, 60)  # 60 of W2's minutes were at 45.01, are now at 50
    assert f"batch S1-202610-V2-B1 (new), version 2: 1 credit(s), {Decimal(w2 - 24756) / 100:.2f} yuan" in shown
    assert {w: fen for w, (_, fen) in credits(tmp_path / "v2.xml").items()} == {"W2": w2 - 24756}
    assert "for a decision: W5 holds 400.00 yuan in credits, 50.00 more than the approved 350.00" in shown
    assert not (set(credits(tmp_path / "v2.xml")) & {"W1", "W3", "W4", "W5"}), "nobody is paid twice"


def test_only_an_approved_table_is_paid_and_only_from_a_payer_account(month, tmp_path):
    out = tmp_path / "batch.csv"
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out), check=False)
    assert refused.returncode == 1 and "S1 2026-10 has no wage table" in refused.stderr
    month.shift("W1", "2026-11-02 08:00", "2026-11-02 17:00")
    month.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops", "--draft")
    refused = month.cli("wages", "batch", "--by", "ops-qian", "--site", "S1", "--period", "2026-11", "--format", "pain001", "--out",
                        str(out), check=False)
    assert refused.returncode == 1 and "version 1 is a draft (the period was not final): a draft is never paid" \
        in refused.stderr
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out), check=False)
    assert refused.returncode == 1 and "version 1 is not approved (collector wages approve)" in refused.stderr
    # From October on the site's pay settings name no account to pay from, and so does the version approved.
    month.cli("site", "pay-day", "S1", "--day", "15", "--from", "2026-10-01", "--by", "ops-li")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W4=the day is disputed")
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out), check=False)
    assert refused.returncode == 1 and "S1 had no --payer-account, --payer-name, --payer-bank in force on " \
        "2026-10-31 when 2026-10 version 1 was approved" in refused.stderr
    assert not out.exists() and payments(month) == []
    month.cli("site", "pay-day", "S1", "--day", "15", "--payer-account", "110000000002", "--payer-name", "总包",
              "--payer-bank", "中国建设银行", "--from", "2026-10-01", "--by", "ops-li")
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out), check=False)
    assert refused.returncode == 1 and "S1 had no --payer-account" in refused.stderr, "the payer is approved"
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "the payer account was set")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W4=the day is disputed")
    shown = batch(month, out, "csv").stdout
    assert "4 credit(s), 2187.56 yuan" in shown and "held: W4 (needs_decision: days_to_decide) is not paid" in shown
    assert sorted(p[0] for p in payments(month)) == ["W1", "W2", "W3", "W5"]
    assert {row[1] for row in list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))[2:]} == {"付款账号", "110000000002"}


def pain002(path, batch_id: str, transactions: list[str], group: str = "PART", made: str | None = None) -> str:
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>RPT-20261115-1</MsgId><CreDtTm>{made or paid_day()}T18:00:00+08:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>{batch_id}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>{group}</GrpSts>
    </OrgnlGrpInfAndSts>
    {"<OrgnlPmtInfAndSts><OrgnlPmtInfId>" + batch_id + "</OrgnlPmtInfId>" + "".join(transactions)
     + "</OrgnlPmtInfAndSts>" if transactions else ""}
  </CstmrPmtStsRpt>
</Document>
""", encoding="utf-8")
    return str(path)


def tx(e2e: str, status: str, *, voucher: str = "", reason: str = "", amount: str = "", day: str | None = None) -> str:
    parts = [f"<OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{status}</TxSts>"]
    if reason:
        parts.append(f"<StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>{reason}</AddtlInf></StsRsnInf>")
    if status == "ACSC":
        parts.append(f"<AccptncDtTm>{day or paid_day()}T10:00:00+08:00</AccptncDtTm><AcctSvcrRef>{voucher}</AcctSvcrRef>")
    if amount:
        parts.append(f'<OrgnlTxRef><Amt><InstdAmt Ccy="CNY">{amount}</InstdAmt></Amt></OrgnlTxRef>')
    return "<TxInfAndSts>" + "".join(parts) + "</TxInfAndSts>"


def test_a_pain002_return_is_validated_and_recorded(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    # Not a valid report (a transaction status code that does not exist): refused before anything is read.
    bad = pain002(tmp_path / "bad.xml", "S1-202610-V1-B1", [tx(ids["W1"][0], "PAID!")])
    refused = month.cli("wages", "paid", "--by", "ops-sun", bad, check=False)
    assert refused.returncode == 1 and "not a valid pain.002.001.03 payment status report" in refused.stderr
    entity = tmp_path / "entity.xml"
    entity.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><Document>&x;</Document>')
    assert month.cli("wages", "paid", "--by", "ops-sun", str(entity), check=False).returncode == 1
    report = pain002(tmp_path / "r.xml", "S1-202610-V1-B1", [
        tx(ids["W1"][0], "ACSC", voucher="VCH-001", amount="1440.00"),
        tx(ids["W2"][0], "RJCT", reason="收款账户已冻结"),
        tx(ids["W3"][0], "ACSC", voucher="VCH-003"),
        tx(ids["W4"][0], "ACSP"),  # accepted, settlement in progress: not recorded yet
        tx(ids["W5"][0], "ACSC", voucher="VCH-005"),
    ])
    result = month.json("wages", "paid", "--by", "ops-sun", report)
    assert result["kind"] == "pain.002"
    assert sorted((r["worker"], r["status"], r["voucher"], r["paid_on"], r["reason"]) for r in result["recorded"]) == [
        ("W1", "paid", "VCH-001", paid_day(), None), ("W2", "failed", None, None, "AC04 收款账户已冻结"),
        ("W3", "paid", "VCH-003", paid_day(), None), ("W5", "paid", "VCH-005", paid_day(), None)]
    assert result["not_recorded"] == [f"{ids['W4'][0]}: ACSP (still in progress at the bank; not recorded)"]
    # The bank settles the rest of the batch at the group level.
    done = pain002(tmp_path / "r2.xml", "S1-202610-V1-B1", [], group="ACSC")
    assert [(r["worker"], r["status"]) for r in month.json("wages", "paid", "--by", "ops-sun", done)["recorded"]] == [("W4", "paid")]
