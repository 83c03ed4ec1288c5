"""Batch files for Chinese banks: the payee's branch (收款行行号 by CNAPS code, province, city) and the
mobile phone in the common layout, control totals (总笔数/总金额) above the header, an XLSX whose account
and ID numbers are text cells (a CSV re-saved in a spreadsheet loses their digits), a column template per
bank, and a pain.001 naming the creditor's agent by CNAPS (ClrSysMmbId) with an identified initiating
party, still valid against the pain.001.001.09 XSD; on both engines, through the CLI.

The final October of tests/test_wages.py, approved (5 credits, 2487.56 yuan).
"""

from __future__ import annotations

import csv
import io
import os
import stat
import xml.etree.ElementTree as ET

import pytest
import xmlschema
from openpyxl import load_workbook

from collector.errors import InputError
from collector.wages import batchtemplate
from collector.wages.batchfile import SCHEMAS
from tests import test_wages
from tests.helpers import resident_id
from tests.test_wages_payments import PAIN, PERIOD, approve, batch

month = test_wages.month
CODE = "102100099996"  # 中国工商银行 总行清算中心: a 12-digit CNAPS code


@pytest.fixture
def routed(month):
    month.cli("worker", "payee", "W1", "--bank-code", CODE, "--bank-province", "北京", "--bank-city", "北京")
    month.cli("worker", "payee", "W2", "--bank-code", "102290000018", "--bank-province", "上海", "--bank-city", "上海")
    month.cli("worker", "payee", "W2", "--account", "6222021234567899999")  # the code was set for the old account
    approve(month)
    return month


def test_the_csv_names_the_branch_and_opens_with_control_totals(routed, tmp_path):
    out = tmp_path / "october.csv"
    batch(routed, out, "csv")
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert rows[:2] == [["总笔数", "总金额"], ["5", "2487.56"]]
    header = rows[2]
    by_worker = {row[header.index("备注")].split("/")[2].split()[0]: dict(zip(header, row, strict=True))
                 for row in rows[3:]}
    w1 = by_worker["W1"]
    assert (w1["收款行行号"], w1["收款行省份"], w1["收款行城市"], w1["手机号"]) == (CODE, "北京", "北京", "13812345678")
    assert by_worker["W2"]["收款行行号"] == "", "a code kept for another account routes nothing"
    assert by_worker["W2"]["收款账号"] == "6222021234567899999"
    assert sum(int(row["金额"].replace(".", "")) for row in by_worker.values()) == 248756


def test_the_xlsx_keeps_account_and_id_numbers_as_text_and_is_the_same_bytes_again(routed, tmp_path):
    out, again = tmp_path / "october.xlsx", tmp_path / "again.xlsx"
    shown = batch(routed, out, "xlsx").stdout
    assert "5 credit(s), 2487.56 yuan" in shown and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    batch(routed, again, "xlsx")
    assert out.read_bytes() == again.read_bytes(), "the same batch, the same bytes"
    sheet = load_workbook(out).active
    assert [sheet.cell(1, 1).value, sheet.cell(1, 2).value] == ["总笔数", "总金额"]
    assert sheet.cell(2, 1).value == 5 and float(sheet.cell(2, 2).value) == 2487.56
    header = [cell.value for cell in sheet[3]]
    rows = {row[header.index("收款账号")].value: row for row in sheet.iter_rows(min_row=4)}
    w1 = rows["6222021234567890001"]
    for column in ("收款账号", "收款人身份证号", "收款行行号", "手机号", "业务参考号"):
        cell = w1[header.index(column)]
        assert cell.data_type == "s" and cell.number_format == "@", column
    assert w1[header.index("收款人身份证号")].value == resident_id(1)
    assert w1[header.index("收款行行号")].value == CODE
    amount = w1[header.index("金额")]
    assert amount.data_type == "n" and float(amount.value) == 1440.00 and amount.number_format == "0.00"


def test_a_banks_own_template(routed, tmp_path):
    template = tmp_path / "icbc.toml"
    template.write_text('name = "工行代发"\ncontrol_totals = false\ncolumns = [["账号", "payee_account"], '
                        '["户名", "payee_name"], ["金额", "amount"], ["联行号", "payee_bank_code"], '
                        '["参考号", "end_to_end_id"]]\n', "utf-8")
    out = tmp_path / "icbc.csv"
    batch(routed, out, "csv", "--template", str(template))
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert rows[0] == ["账号", "户名", "金额", "联行号", "参考号"] and len(rows) == 6
    assert ["6222021234567890001", "工人W1", "1440.00", CODE] == rows[1][:4]
    bad = tmp_path / "bad.toml"
    bad.write_text('columns = [["账号", "payee_account"], ["金额", "amount"], ["密码", "password"]]\n', "utf-8")
    refused = routed.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                         str(tmp_path / "x.csv"), "--template", str(bad), check=False)
    assert refused.returncode == 1 and "holds 'password', not one of" in refused.stderr
    assert not (tmp_path / "x.csv").exists()


def test_templates_are_checked():
    with pytest.raises(InputError, match="no end_to_end_id column"):
        batchtemplate.Template("t", (("金额", "amount"),))
    with pytest.raises(InputError, match="two columns are headed"):
        batchtemplate.Template("t", (("a", "end_to_end_id"), ("a", "amount")))
    assert batchtemplate.DEFAULT.headers[6] == "收款行行号"


def test_the_pain001_names_agents_by_cnaps_and_identifies_the_initiating_party(routed, tmp_path):
    out = tmp_path / "october.xml"
    batch(routed, out)
    xmlschema.XMLSchema(str(SCHEMAS / "pain.001.001.09.xsd")).validate(str(out))
    root = ET.parse(out).getroot()
    party = root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:InitgPty", PAIN)
    assert party.findtext("p:Nm", namespaces=PAIN) == "某建筑总承包公司"
    assert party.findtext("p:Id/p:OrgId/p:Othr/p:Id", namespaces=PAIN) == "110000000001"
    assert party.findtext("p:Id/p:OrgId/p:Othr/p:SchmeNm/p:Cd", namespaces=PAIN) == "BANK"
    agents = {tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=PAIN): tx.find("p:CdtrAgt/p:FinInstnId", PAIN)
              for tx in root.iterfind(".//p:CdtTrfTxInf", PAIN)}
    w1 = agents["6222021234567890001"]
    assert w1.findtext("p:ClrSysMmbId/p:ClrSysId/p:Cd", namespaces=PAIN) == "CNAPS"
    assert w1.findtext("p:ClrSysMmbId/p:MmbId", namespaces=PAIN) == CODE
    assert (w1.findtext("p:Nm", namespaces=PAIN), w1.findtext("p:PstlAdr/p:TwnNm", namespaces=PAIN),
            w1.findtext("p:PstlAdr/p:Ctry", namespaces=PAIN)) == ("中国工商银行", "北京", "CN")
    w2 = agents["6222021234567899999"]
    assert w2.find("p:ClrSysMmbId", PAIN) is None and w2.findtext("p:Nm", namespaces=PAIN) == "中国工商银行"


def test_a_branch_code_is_twelve_digits_and_goes_with_an_account(month):
    refused = month.cli("worker", "payee", "W1", "--bank-code", "10210009999", check=False)
    assert refused.returncode == 1 and "is 12 digits" in refused.stderr
    alone = month.cli("worker", "payee", "W1", "--bank-city", "北京", check=False)
    assert alone.returncode == 2 and "go with --bank-code" in alone.stderr
