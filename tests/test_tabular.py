"""One way to read a table (collector/tabular.py): CSV in UTF-8, UTF-8 with a BOM or GB18030, and XLSX
workbooks, as site offices send them; the three importers that read through it.

Files are made here as a site office's spreadsheet makes them: real GB18030 bytes, a BOM, workbooks
written by openpyxl with typed cells, title rows, total rows and several worksheets.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from collector.cli import root as collector_cli
from collector.errors import InputError
from collector.tabular import (
    TOTAL_WORDS,
    Problem,
    TableError,
    cell_text,
    header_key,
    in_order,
    read_table,
)
from collector.wages import bankreturn
from tests.helpers import CollectorSetup
from tests.test_cli_errors import _logging_restored  # noqa: F401 - the CLI in process sets up logging

FIELDS = {
    "worker": ("worker id", "工号", "编号"),
    "name": ("姓名",),
    "amount": ("gross", "应发工资", "金额"),
    "account": ("bank account", "银行账号"),
    "day": ("日期",),
    "note": ("备注",),
}
LIMIT = 1024 * 1024


def read(data: bytes, name: str = "t.csv", **options):
    """The table and its rows as (number, values)."""
    options = {"fields": FIELDS, "identify": ("worker", "name"), "max_bytes": LIMIT, **options}
    table = read_table(data, name=name, **options)
    return table, [(row.number, row.values) for row in table]


def csv_bytes(rows: list[list], encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode(encoding)


def xlsx_bytes(*sheets: tuple[str, list[list]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        worksheet = workbook.create_sheet(title)
        for row in rows:
            worksheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# ============================================================================== CSV: encodings, headers


@pytest.mark.parametrize(("encoding", "reported"), [("utf-8", "utf-8"), ("utf-8-sig", "utf-8 with BOM"),
                                                    ("gb18030", "gb18030"), ("gbk", "gb18030")])
def test_a_csv_in_each_encoding_a_site_office_saves(encoding, reported):
    # 王 and 李 are in GBK; 𠀀 (U+20000) only in GB18030, written as four bytes.
    name = "王𠀀" if encoding != "gbk" else "王"
    data = csv_bytes([["工号", "姓名"], ["W1", name], ["W2", "李娜"]], encoding)
    if encoding == "gb18030":
        assert "𠀀".encode("gb18030") == b"\x95\x32\x82\x36"
    table, rows = read(data)
    assert table.encoding == reported and table.format == "csv" and table.sheet is None
    assert rows == [(2, {"worker": "W1", "name": name}), (3, {"worker": "W2", "name": "李娜"})]


def test_headers_are_compared_without_bom_width_case_spaces_or_a_unit():
    assert header_key("\ufeff工号") == header_key(" 工 号 ") == header_key("工\u3000号") == "工号"
    assert header_key("ＢＡＮＫ＿ＡＣＣＯＵＮＴ") == header_key("Bank-Account") == header_key("bank account") == "bankaccount"
    assert header_key("应发工资（元）") == header_key("应发工资 (元)") == "应发工资"
    assert header_key("工\u200b号") == "工号" and header_key(None) == "" and header_key(12) == "12"
    # A BOM that Excel writes before a header in a file read as UTF-8 without one (a BOM counted twice).
    data = "\ufeff\ufeffＷＯＲＫＥＲ ＩＤ,姓名（全名）,应发工资（元）\nW1,王伟,350\n".encode()
    table, rows = read(data)
    assert table.columns == {"worker": 0, "name": 1, "amount": 2}
    assert rows == [(2, {"worker": "W1", "name": "王伟", "amount": "350"})]


def test_title_rows_above_the_header_are_skipped_and_said():
    data = csv_bytes([["华建劳务 2026年10月 农民工花名册"], [], ["制表：李", "", ""], ["工号", "姓名", "备注", "电话"],
                      ["W1", "王伟", "", "138"], ["W2", "李娜", "", ""]])
    table, rows = read(data)
    assert table.header == "line 4" and table.notes == ["skipped 2 row(s) above the header (line 4)"]
    assert [number for number, _ in rows] == [5, 6] and table.ignored_columns == ["电话"]


def test_blank_rows_and_line_breaks_in_a_cell_do_not_shift_the_numbers():
    text = "\r\n\r\n工号,姓名,备注\r\n\r\nW1,王伟,\"first\nsecond\r\nthird\"\r\n  ,  , \r\n,,\r\nW2,李娜,x\r\n\r\nW3,张敏,\r\n"
    table, rows = read(text.encode())
    assert [(number, values["worker"]) for number, values in rows] == [(5, "W1"), (10, "W2"), (12, "W3")]
    assert rows[0][1]["note"] == "first\nsecond\r\nthird"
    with pytest.raises(RuntimeError, match="read once"):
        list(table)


def test_a_header_is_looked_for_only_in_the_first_rows():
    data = csv_bytes([[f"title {n}"] for n in range(10)] + [["工号", "姓名"], ["W1", "x"]])
    with pytest.raises(TableError, match=r"^t.csv: no header row in the first 10 rows: the header lacks worker "
                                         r"\(工号/编号\), name \(姓名\); the columns are worker, name, amount"):
        read(data)
    assert read(data, header_within=11)[1] == [(12, {"worker": "W1", "name": "x"})]


def test_a_header_must_name_what_is_required_and_each_field_once():
    with pytest.raises(TableError, match=r"^t.csv: line 2: the header lacks amount \(应发工资/金额\), account \(银行账号\)$"):
        read(csv_bytes([["title"], ["工号", "姓名"], ["W1", "x"]]), require=("amount", "account"))
    with pytest.raises(TableError, match=r"line 1: two columns mean worker \('工号' and 'Worker ID'\)"):
        read(csv_bytes([["工号", "姓名", "Worker ID"], ["W1", "x", "W1"]]))


# ============================================================================== cells


def test_numbers_typed_as_numbers_are_their_decimal_text_and_identifiers_are_not_guessed():
    assert cell_text(350.1) == "350.1" and cell_text(4) == "4" and cell_text(2600.18) == "2600.18"
    assert cell_text(6222021234567.0, identifier=True) == "6222021234567"
    with pytest.raises(InputError, match=r"a number cell \(6.22202E\+18\) whose digits"):
        cell_text(6222021234567899001.0, identifier=True)
    with pytest.raises(InputError, match="scientific notation"):
        cell_text(" 6.22202E+18 ", identifier=True)
    assert cell_text("1E456789", identifier=True) == "1E456789"  # a card UID, not a number
    assert cell_text("6.22202E+18") == "6.22202E+18"  # not an identifier: the caller's to judge
    with pytest.raises(InputError, match="TRUE is a true/false cell"):
        cell_text(True)
    with pytest.raises(InputError, match="is not a number"):
        cell_text(float("nan"))
    with pytest.raises(InputError, match="a date or time cell"):
        cell_text(datetime(2026, 11, 1))
    assert cell_text(datetime(2026, 11, 1), as_date=True) == cell_text(date(2026, 11, 1), as_date=True) == "2026-11-01"
    with pytest.raises(InputError, match="a date or time cell"):
        cell_text(datetime(2026, 11, 1, 8, 30), as_date=True)


def test_a_workbook_with_typed_cells_a_title_and_a_total_row():
    data = xlsx_bytes(("十月", [
        ["华建劳务 2026年10月 工资表"],
        [],
        ["工号", "姓名", "应发工资（元）", "银行账号", "日期", None, "备注"],
        ["W1", "王伟", 1460, "6222021234567890001", datetime(2026, 11, 1), None, None],
        [],
        ["W2", "李娜", 247.56, 6222021234567.0, date(2026, 11, 2), "stray", None],
        ["W3", "张敏", True, 6.222021234567899e18, datetime(2026, 11, 2, 9), None, None],
        ["合 计：", None, 1707.56, None, None, None, None],
    ]))
    table = read_table(data, name="wages.xlsx", fields=FIELDS, identify=("worker", "amount"), max_bytes=LIMIT,
                       identifiers=("worker", "account"), dates=("day",), totals="keep")
    rows = list(table)
    assert (table.format, table.encoding, table.sheet, table.header) == ("xlsx", "xlsx", "十月", "十月 row 3")
    assert [(row.where, row.number, row.total) for row in rows] == [
        ("wages.xlsx: 十月 row 4", 4, False), ("wages.xlsx: 十月 row 6", 6, False), ("wages.xlsx: 十月 row 8", 8, True)]
    assert rows[0].values == {"worker": "W1", "name": "王伟", "amount": "1460", "account": "6222021234567890001",
                              "day": "2026-11-01", "note": ""}
    assert rows[1].values["amount"] == "247.56" and rows[1].values["account"] == "6222021234567"
    assert rows[2].cells[2] == 1707.56  # a kept total row: its cells, for the caller to check
    assert [(p.where, p.message, p.line, p.code) for p in table.problems] == [(
        "wages.xlsx: 十月 row 7", "amount: TRUE is a true/false cell; account: a number cell (6.22202E+18) whose "
        "digits the spreadsheet may have changed: type the column as text; day: a date or time cell "
        "(2026-11-02 09:00:00)", 7, "cells")]
    assert [(name, error.code, error.shown) for name, error in table.problems[0].causes] == [
        ("amount", "true_false", "TRUE"), ("account", "number", "6.22202E+18"), ("day", "date_cell", "2026-11-02 09:00:00")]
    assert str(table.problems[0]).startswith("wages.xlsx: 十月 row 7: amount: TRUE")
    assert table.ignored_columns == ["column F (no header)"]
    assert table.notes == ["skipped 1 row(s) above the header (十月 row 3)"]


@pytest.mark.parametrize(("totals", "kept", "problems", "notes"), [
    ("skip", ["W1", "W2"], [], ["skipped a total row (line 4)"]),
    ("keep", ["W1", "W2", "Total"], [], []),
    ("problem", ["W1", "W2"], [Problem("t.csv: line 4", "a total row: leave it out of the file", 4, "total_row")],
     []),
])
def test_a_total_row_is_skipped_kept_or_a_problem_as_the_caller_says(totals, kept, problems, notes):
    assert "total" in TOTAL_WORDS
    table, rows = read(csv_bytes([["工号", "姓名"], ["W1", "x"], ["W2", "y"], ["Total", "2"]]), totals=totals)
    assert [values["worker"] for _, values in rows] == kept
    assert (table.problems, table.notes) == (problems, notes)


def test_several_worksheets_the_one_named_or_the_only_one_with_a_header():
    roster = [["工号", "姓名"], ["W1", "王伟"]]
    data = xlsx_bytes(("说明", [["填表说明：每人一行"]]), ("名册", roster))
    table, rows = read(data, name="w.xlsx")
    assert table.sheet == "名册" and rows == [(2, {"worker": "W1", "name": "王伟"})]
    assert table.notes == ["read the worksheet '名册'; not read: '说明'"]
    both = xlsx_bytes(("一月", roster), ("二月", [[], *roster, ["W2", "李娜"]]))
    with pytest.raises(TableError, match=r"^w.xlsx: 2 worksheets have a header row \('一月', '二月'\): say which"):
        read(both, name="w.xlsx")
    table, rows = read(both, name="w.xlsx", sheet="二月")
    assert table.sheet == "二月" and [number for number, _ in rows] == [3, 4]
    with pytest.raises(TableError, match=r"no worksheet '三月'; it has '一月', '二月'"):
        read(both, name="w.xlsx", sheet="三月")
    with pytest.raises(TableError, match="no header row in the first 10 rows of any of its 2 worksheets"):
        read(xlsx_bytes(("a", [["x"]]), ("b", [["工号"]])), name="w.xlsx")
    with pytest.raises(TableError, match="a CSV file, not a workbook: it has no worksheet '一月'"):
        read(csv_bytes(roster), sheet="一月")


# ============================================================================== files that are not tables


@pytest.mark.parametrize(("data", "why"), [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), r"an old binary Excel file \(\.xls\)"),
    ("工号,姓名\n".encode("utf-16"), "NUL bytes"),
    (b"worker,name\nW1,\xff\xfe\xfd\n", r"neither UTF-8 nor GBK/GB18030 text \(byte 15\)"),
    (b"\xef\xbb\xbfworker,name\nW1,\xff\n", "starts with a UTF-8 BOM but is not UTF-8"),
    (b"", "it is empty"),
    (b"\r\n ,\r\n", "it is empty"),
    ("工号,姓名\n\n,,\n".encode(), r"no rows under the header \(line 1\)"),
    ("工号,姓名\n合计,3\n".encode(), r"no rows under the header"),
    (b"PK\x03\x04broken", "not a readable .xlsx"),
    (b"worker,name\nW1,\"" + b"x" * 200_000 + b"\"\n", "line 2: a cell longer than 131072 characters"),
])
def test_a_file_that_is_not_a_table_is_one_error_naming_it(data, why):
    with pytest.raises(TableError, match=why) as raised:
        read(data, name="in.csv")
    assert str(raised.value).startswith("in.csv: ") and "\n" not in str(raised.value)


def test_the_size_limits_hold(tmp_path):
    with pytest.raises(TableError, match=r"^big.csv: larger than a worker file can be \(10 bytes at most\)"):
        read(b"worker,name\n", name="big.csv", max_bytes=10, what="a worker file")
    with pytest.raises(TableError, match="more than 3 rows: too many for a table"):
        read(csv_bytes([["工号", "姓名"], [], [], ["W1", "x"]]), max_rows=3)
    clean = xlsx_bytes(("S", [["工号", "姓名"], ["W1", "x"]]))
    large = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(clean)) as source, zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        target.writestr("xl/padding.bin", bytes(2_000_000))
    with pytest.raises(TableError, match=r"it unpacks to \d+ bytes, more than a table \(1000000 at most\)"):
        read(large.getvalue(), name="w.xlsx", max_unpacked=1_000_000)
    missing = tmp_path / "missing.csv"
    with pytest.raises(TableError, match=f"^{missing}: cannot read it: No such file"):
        read_table(missing, fields=FIELDS, identify=("worker",), max_bytes=LIMIT)


def test_problems_name_the_file_and_sort_by_their_place():
    problems = [Problem("w.csv: line 10", "b"), Problem("w.csv: line 9", "a"), Problem("w.xlsx: 二月 row 2", "c"),
                Problem("w.xlsx: 一月 row 12", "d")]
    assert [p.message for p in in_order(problems)] == ["a", "b", "d", "c"]
    assert str(problems[0]) == "w.csv: line 10: b" and str(Problem("", "whole")) == "whole"


# ============================================================================== the importers


def test_the_bank_return_names_the_right_line_after_blank_rows():
    """Blank rows before the header and between credits, and a reason over two lines, shift nothing."""
    text = ("\r\n\r\nend_to_end_id,status,voucher,date,reason\r\n\r\n"
            "E1,paid,V1,2026-11-15,\r\n"           # line 5
            "\r\n"
            "E2,failed,,,\"account closed\r\nby the holder\"\r\n"  # lines 7-8
            "E3,paid,,2026-11-15,\r\n"             # line 9: no voucher
            ",,,,\r\n"
            "E4,maybe,V4,2026-11-15,\r\n")         # line 11
    kind, entries, notes = bankreturn.read(text.encode("gbk"), "r.csv")
    assert kind == "csv" and notes == []
    problems = [entry["problem"] for entry in entries if "problem" in entry]
    assert problems == ["r.csv: line 9: E3 is paid but has no voucher (the bank's payment reference)",
                        "r.csv: line 11: E4: status 'maybe' is not paid (交易成功) or failed (交易失败)"]
    good = {entry["end_to_end_id"]: entry["where"] for entry in entries if "problem" not in entry}
    assert good == {"E1": "r.csv: line 5", "E2": "r.csv: line 7"}
    assert next(e for e in entries if e.get("end_to_end_id") == "E2")["reason"] == "account closed\r\nby the holder"


def test_a_bank_return_as_a_workbook_with_chinese_headers_and_date_cells():
    data = xlsx_bytes(("回单", [["批量代发结果"], ["业务参考号", "处理状态", "银行流水号", "交易日期", "失败原因", "金额"],
                                ["E1", "成功", "V1", datetime(2026, 11, 20), None, 247.56],
                                ["E2", "失败", None, None, "户名不符", 100],
                                ["合计", None, None, None, None, 347.56]]))
    kind, entries, notes = bankreturn.read(data, "r.xlsx")
    assert kind == "xlsx"
    assert [(e["where"], e["status"], e["date"], e["amount_fen"]) for e in entries] == [
        ("r.xlsx: 回单 row 3", "paid", "2026-11-20", 24756), ("r.xlsx: 回单 row 4", "failed", None, 10000)]
    assert notes == ["skipped 1 row(s) above the header (回单 row 2)", "skipped a total row (回单 row 5)"]


def test_an_xlsx_roster_imports_end_to_end_through_the_cli(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))

    def collector(*args: str):
        return CliRunner().invoke(collector_cli.main, [*args, "--config", str(setup.config_path)],
                                  prog_name="collector")

    assert collector("site", "add", "GZ01", "--timezone", "Asia/Shanghai").exit_code == 0
    workbook = Workbook()
    notes = workbook.active
    notes.title = "填表说明"
    notes.append(["每位工人一行；身份证号、银行卡号请设为文本格式"])
    roster = workbook.create_sheet("花名册")
    for row in (["华建劳务 广州项目 花名册"],
                ["工号", "姓名", "卡号", "工地", "手机号", "银行卡号", "计薪方式", "工资标准", "生效日期", "备注"],
                ["W1", "王伟", "04A1B2C3D4E5F6", "GZ01", 13812345678, "6222021234567890123", "日", 350,
                 datetime(2026, 11, 1), None],
                [],
                ["W2", "李娜", "DEADBEEF", "GZ01", None, None, "时", 43.75, None, "新人"],
                ["合计", "2人", None, None, None, None, None, None, None, None]):
        roster.append(row)
    path = tmp_path / "花名册.xlsx"
    workbook.save(path)

    result = collector("worker", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["new"] == ["W1", "W2"] and report["encoding"] == "xlsx"
    assert report["terms"][0] == {"worker": "W1", "basis": "day", "rate_fen": 35000, "from": "2026-11-01"}
    assert report["terms"][1]["rate_fen"] == 4375
    assert "read the worksheet '花名册'; not read: '填表说明'" in report["notes"]
    assert "skipped a total row (花名册 row 6)" in report["notes"]
    workers = {w["worker"]: w for w in json.loads(collector("worker", "list", "--json").stdout)}
    assert [c["uid"] for c in workers["W2"]["cards"]] == ["DEADBEEF"] and workers["W1"]["sites"] == ["GZ01"]
    with setup.store() as store:
        assert (store.payee("W1")["phone"], store.payee("W1")["bank_account"]) == ("13812345678",
                                                                                   "6222021234567890123")
    # An account a spreadsheet kept as a number is refused with its worksheet and row; nothing imported.
    roster.append(["W3", "张敏", None, None, None, 6.222021234567899e18, None, None, None, None])
    roster.delete_rows(6)  # the total row, so that W3's row is a data row
    workbook.save(path)
    refused = collector("worker", "import", str(path))
    assert refused.exit_code == 1
    # Said as the roster is written: in Chinese, its own header, the worksheet's row, what to do.
    assert f"{path} 工作表「花名册」第6行 银行卡号「6.22202E+18」被 Excel 当成了数字：把这一列设为文本格式后重新填写" \
        in refused.stderr
    assert "1 bad row(s); nothing imported（1 行有问题，什么都没有导入）" in refused.stderr
    assert "W3" not in {w["worker"] for w in json.loads(collector("worker", "list", "--json").stdout)}


# ============================================================================== properties

#: Cell text a spreadsheet can hold (no control characters, surrogates or non-characters): Chinese,
#: full-width forms, line separators, a line break inside a cell.
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")) | st.sampled_from(["\n", "王", "Ｗ", " "]),
               max_size=12)
TITLES = ["华建劳务 2026年10月 农民工花名册", "制表人：李", "Roster"]


@st.composite
def tables(draw):
    """(header, titles above it, data rows with blank rows among them as None)."""
    order = draw(st.permutations(["worker", "name", "amount", "note"]))
    columns = [name for name in order[:draw(st.integers(2, 4))]]
    columns += [name for name in ("worker", "name") if name not in columns]
    header = ["工号" if name == "worker" else draw(st.sampled_from([name, *FIELDS[name]])) for name in columns]
    titles = draw(st.lists(st.sampled_from(TITLES), max_size=3))
    rows = draw(st.lists(st.none() | st.lists(TEXT, min_size=len(columns), max_size=len(columns)), min_size=1,
                         max_size=12))
    data = []
    for row in rows:
        if row is None:
            data.append(None)
            continue
        cells = [cell.strip() for cell in row]
        cells[columns.index("worker")] = cells[columns.index("worker")] or "W"
        first = next(cell for cell in cells if cell)
        # A cell that a spreadsheet would take for a formula, or a row that reads as a total, is not data.
        assume(not any(cell.startswith("=") for cell in cells))
        assume(header_key(first).rstrip(":") not in TOTAL_WORDS)
        data.append(cells)
    assume(any(row is not None for row in data))
    return columns, header, titles, data


def expected_rows(columns, data, first_number):
    rows, number = [], first_number
    for row in data:
        if row is not None:
            rows.append((number, dict(zip(columns, row, strict=True))))
        number += 1 if row is None else 1 + sum(cell.count("\n") for cell in row)
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(tables(), st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_any_table_reads_back_the_same_from_csv_in_each_encoding_and_from_xlsx(drawn, encoding):
    columns, header, titles, data = drawn
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    for title in titles:
        writer.writerow([title])
    writer.writerow(header)
    for row in data:
        writer.writerow(row if row is not None else [])
    table, rows = read(text.getvalue().encode(encoding))
    assert rows == expected_rows(columns, data, len(titles) + 2)
    assert table.encoding == {"utf-8": "utf-8", "utf-8-sig": "utf-8 with BOM", "gb18030": "gb18030"}[encoding]

    workbook = xlsx_bytes(("Sheet1", [[title] for title in titles] + [header]
                           + [row if row is not None else [] for row in data]))
    table, rows = read(workbook, name="t.xlsx")
    # A workbook's row is one row whatever its cells hold: the same values, numbered by position.
    assert rows == [(len(titles) + 2 + index, dict(zip(columns, row, strict=True)))
                    for index, row in enumerate(data) if row is not None]
    assert (table.encoding, table.header) == ("xlsx", f"Sheet1 row {len(titles) + 1}")


VALID_XLSX = xlsx_bytes(("S", [["工号", "姓名", "金额"], ["W1", "王伟", 350.5], [], ["W2", "李娜", 3]]))


def read_all(data: bytes) -> None:
    """Read a file through to its last row: a TableError is the only failure allowed."""
    try:
        table = read_table(data, name="x", fields=FIELDS, identify=("worker", "name"), identifiers=("worker",),
                           dates=("day",), totals="keep", max_bytes=LIMIT, max_rows=5000)
        for _ in table:
            pass
    except TableError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"", b"\xef\xbb\xbf", b"PK\x03\x04", "工号,姓名\n".encode("gbk"),
                                                   "工号,姓名\n".encode()]))
def test_random_bytes_raise_nothing_but_the_table_error(data, prefix):
    read_all(prefix + data)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID_XLSX) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_a_damaged_workbook_raises_nothing_but_the_table_error(changes):
    data = bytearray(VALID_XLSX)
    for position, value in changes:
        data[position] = value
    read_all(bytes(data))
