"""Employer sheets as site offices make them: a header on two rows (工资 merged over 应发, 扣款, 实发; 工号
merged over nothing), the worksheet named with --worksheet, no deductions column, and amounts a
spreadsheet computed (a formula's stored 1050.3000000000002 is 1050.30; one that is not a whole fen is
refused: use ROUND(...,2)). Files written here with openpyxl, the formulas' stored results set in the
file as a spreadsheet saves them; imported through the CLI on both engines.
"""

from __future__ import annotations

import re

import pytest
from openpyxl import Workbook

from collector.tabular import InputError, amount_text, cell_text, read_table
from collector.wages.sheet import read_sheet
from tests.test_hostile_tables import SHEET, edited, workbook_bytes
from tests.test_wages import month  # noqa: F401 - the October fixture, shared
from tests.test_wages_sheet import ACCOUNT, Sheets

UPPER = ["工号", "姓名", "出勤天数", "工资", None, None, "银行卡号"]
LOWER = [None, None, None, "应发", "扣款", "实发", None]


@pytest.fixture
def sheets(month, tmp_path):  # noqa: F811 - the imported fixture
    return Sheets(month, tmp_path / "sheets")


def two_row_workbook(rows: list[list], *, title: str = "十月", other: str | None = "说明") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    sheet.append(["华建劳务 2026年10月 农民工工资表"])
    sheet.append(UPPER)
    sheet.append(LOWER)
    for row in rows:
        sheet.append(row)
    sheet.merge_cells("D2:F2")
    for column in "ABCG":
        sheet.merge_cells(f"{column}2:{column}3")
    if other:
        notes = workbook.create_sheet(other)
        notes.append(UPPER)  # a second worksheet with a header: --worksheet says which
        notes.append(LOWER)
        notes.append(["W1", "x", "1", 1, 0, 1, ACCOUNT["W1"]])
    return workbook_bytes(workbook)


def stored(data: bytes, cell: str, formula: str, value: str) -> bytes:
    """The cell a formula whose stored result is ``value``, as a spreadsheet saves it."""
    def edit(xml: bytes) -> bytes:
        changed, count = re.subn(rf'<c r="{cell}"([^>]*)>(<v>[^<]*</v>)?</c>'.encode(),
                                 f'<c r="{cell}"><f>{formula}</f><v>{value}</v></c>'.encode(), xml)
        if count == 0:  # openpyxl wrote no cell there: add one at the row's end
            row = re.search(r"[0-9]+", cell).group()
            changed, count = re.subn(rf'(<row r="{row}"[^>]*>.*?)(</row>)'.encode(),
                                     rf'\1<c r="{cell}"><f>{formula}</f><v>{value}</v></c>\2'.encode(), xml, flags=re.S)
        assert count == 1
        return changed
    return edited(data, SHEET, edit)


def test_a_two_row_header_a_named_worksheet_and_computed_amounts(sheets, tmp_path):
    data = two_row_workbook([
        ["W1", "工人W1", "4", 1460, 20, 1440, ACCOUNT["W1"]],
        ["W2", "工人W2", "3", 247.56, 0, 247.56, ACCOUNT["W2"]],
        ["W5", "工人W5", "1", 400, 0, 400, ACCOUNT["W5"]],
    ])
    base = stored(data, "F4", "D4-E4", "1440")
    path = tmp_path / "october.xlsx"
    path.write_bytes(stored(base, "D5", "5.5*45.01", "247.55500000000001"))  # not a whole fen
    several = sheets.import_(path, check=False)
    assert several.returncode == 1 and "2 worksheets have a header row" in several.stderr
    refused = sheets.import_(path, "--worksheet", "十月", check=False)
    assert refused.returncode == 1
    assert ("D5 is a formula result ('=5.5*45.01', '247.55500000000001') that is not a whole fen: use ROUND(...,2)"
            in refused.stderr)
    path.write_bytes(stored(base, "D5", "ROUND(5.5*45.01,2)", "247.56000000000003"))
    result = sheets.month.json("wages", "import-sheet", "--site", "S1", "--period", "2026-10", str(path),
                               "--by", "ops-li", "--worksheet", "十月")
    assert (result["lines"], result["amount_fen"], result["deductions_fen"]) == (3, 210756, 2000)
    assert "read the worksheet '十月'; not read: '说明'" in result["notes"]
    assert any(note.startswith("amount: 1 formula result(s) read as the spreadsheet stored them, to the fen (D5)")
               for note in result["notes"])
    assert any(note.startswith("net: 1 formula result(s)") for note in result["notes"])
    sheet, problems = read_sheet(path, period_days=31, sheet="十月")
    assert problems == [] and [(line["amount_fen"], line["deductions_fen"], line["net_fen"]) for line in sheet.lines] \
        == [(146000, 2000, 144000), (24756, 0, 24756), (40000, 0, 40000)]
    assert "skipped 1 row(s) above the header (十月 row 3)" in sheet.notes


def test_a_csv_header_on_two_rows_and_no_deductions_column(sheets):
    rows = [
        ["工号", "姓名", "出勤天数", "工资", "", "银行卡号"],
        ["", "", "", "应发", "实发", ""],
        ["W1", "工人W1", "4", "1460.00", "1460.00", ACCOUNT["W1"]],
        ["W5", "工人W5", "1", "400.00", "400.00", ACCOUNT["W5"]],
    ]
    path = sheets.csv("october.csv", rows)
    taking = sheets.import_(path, "--take-deductions", check=False)
    assert taking.returncode == 1 and "has no deductions column (扣款): it claims no deductions to take" in taking.stderr
    imported = sheets.import_(path).stdout
    assert "2 line(s), 1860.00 yuan claimed" in imported
    assert "no deductions column (扣款): the sheet claims no deductions" in imported


def test_amount_text_within_a_thousandth_of_a_fen():
    assert amount_text("1050.3000000000002") == "1050.30"
    assert amount_text("1050.2999999999999") == "1050.30"
    assert amount_text("1460") == "1460.00"
    assert amount_text("1050.30001") == "1050.30", "a thousandth of a fen is 0.00001 yuan"
    assert amount_text("1050.3001") == "1050.3001", "left for the caller to refuse"
    assert cell_text(1050.3000000000002, amount=True) == "1050.30"
    assert cell_text(1050.3000000000002) == "1050.3000000000002", "not an amount: as it is"
    with pytest.raises(InputError, match="use ROUND"):
        from collector.tabular import Formula
        cell_text(Formula("D4", "=D2*1.05", "1050.305"), amount=True)


def test_a_literal_formula_storing_another_number_is_still_refused():
    data = workbook_bytes(_one(["工号", "金额"], ["W1", 99999]))
    data = stored(data, "B2", "1460", "99999")
    table = read_table(data, name="t.xlsx", fields={"worker": ("工号",), "amount": ("金额",)}, identify=("worker", "amount"),
                       amounts=("amount",), max_bytes=1 << 20)
    assert list(table) == [] and "B2 is a formula ('=1460', stored as '99999')" in str(table.problems[0])


def _one(*rows: list) -> Workbook:
    workbook = Workbook()
    workbook.active.title = "工资表"
    for row in rows:
        workbook.active.append(row)
    return workbook
