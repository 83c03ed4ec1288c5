"""Hostile spreadsheets and bank returns, each built from its attack: a worksheet hidden behind the one a
person sees, formulas whose stored value lies, workbooks small on disk and costly to parse, a header
naming a field twice, a file in two encodings, a field too large for the CSV reader.

The workbooks are written with openpyxl and, where openpyxl cannot express the attack, edited in the
zip's XML. The parse-cost attacks assert that the file is refused and why, not how fast (the table
benchmark measures time).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from collector.cli import root as collector_cli
from collector.tabular import MAX_COLUMNS, MAX_RATIO, MAX_TOKEN, Formula, TableError, mixed_lines, read_table
from collector.wages import bankreturn
from collector.wages.sheet import read_sheet
from collector.workers.registry import read_worker_file
from tests.helpers import CollectorSetup
from tests.test_cli_errors import _logging_restored  # noqa: F401 - the CLI in process sets up logging
from tests.test_wages import month  # noqa: F401 - the October fixture, shared
from tests.test_wages_sheet import ACCOUNT, HEADER, Sheets

FIELDS = {"worker": ("工号",), "name": ("姓名",), "amount": ("金额",), "deductions": ("扣款",)}
LIMIT = 1024 * 1024
SHEET = "xl/worksheets/sheet1.xml"


def read(data: bytes, name: str = "t.xlsx", **options):
    options = {"fields": FIELDS, "identify": ("worker", "name"), "max_bytes": 64 * LIMIT, **options}
    table = read_table(data, name=name, **options)
    return table, [(row.number, row.values) for row in table]


def workbook_bytes(workbook: Workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def one_sheet(rows: list[list], title: str = "Sheet") -> bytes:
    workbook = Workbook()
    workbook.active.title = title
    for row in rows:
        workbook.active.append(row)
    return workbook_bytes(workbook)


def edited(data: bytes, part: str, edit) -> bytes:
    """The workbook with one part's XML changed by ``edit`` (bytes -> bytes); the rest as it was."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            target.writestr(info.filename, edit(content) if info.filename == part else content)
    return out.getvalue()


def with_shared_strings(data: bytes, items: bytes) -> bytes:
    """The workbook with a shared strings part holding ``items`` (openpyxl writes its text inline)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "[Content_Types].xml":
                content = content.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="'
                                          b'application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings'
                                          b'+xml" /></Types>')
            target.writestr(info.filename, content)
        target.writestr("xl/sharedStrings.xml", b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
                        b'main">' + items + b"</sst>")
    return out.getvalue()


def with_formula(data: bytes, cell: str, formula: str, extra: str = "") -> bytes:
    """The cell (a number openpyxl wrote) made a formula whose stored value is the number: what a
    spreadsheet shows is what the formula computes."""
    def edit(xml: bytes) -> bytes:
        changed, count = re.subn(rf'<c r="{cell}"([^>]*)><v>'.encode(),
                                 f'<c r="{cell}"><f{extra}>{formula}</f><v>'.encode(), xml)
        assert count == 1
        return changed
    return edited(data, SHEET, edit)


# ============================================================================== item 7: what a person sees


def hidden_sheet_attack() -> bytes:
    """The first worksheet is veryHidden and claims deductions; the visible, active one says 0."""
    workbook = Workbook()
    hidden = workbook.active
    hidden.title = "Sheet0"
    shown = workbook.create_sheet("十月工资")
    for sheet, deductions in ((hidden, ("900.00", "200.00")), (shown, ("0", "0"))):
        sheet.append(HEADER)
        sheet.append(["W1", "工人W1", "4", "1460.00", deductions[0], ACCOUNT["W1"]])
        sheet.append(["W2", "工人W2", "3", "247.56", deductions[1], ACCOUNT["W2"]])
    hidden.sheet_state = "veryHidden"
    workbook.active = 1
    return workbook_bytes(workbook)


def test_a_hidden_worksheet_is_never_read():
    data = hidden_sheet_attack()
    table, rows = read(data, fields={"worker": (), "deductions": ()}, identify=("worker", "deductions"))
    assert table.sheet == "十月工资" and [values["deductions"] for _, values in rows] == ["0", "0"]
    assert table.notes == ["read the worksheet '十月工资'; not read: 'Sheet0' (veryHidden)"]
    # Named, it is refused: what is hidden from the person who checks the file is never imported.
    with pytest.raises(TableError, match=r"^t.xlsx: the worksheet 'Sheet0' is hidden \(veryHidden\): a hidden "
                                         "worksheet is never read; unhide it"):
        read(data, fields={"worker": (), "deductions": ()}, identify=("worker", "deductions"), sheet="Sheet0")
    workbook = Workbook()
    workbook.active.append(["工号", "姓名"])
    workbook.active.append(["W1", "王伟"])
    workbook.create_sheet("shown")
    workbook.active.sheet_state = "hidden"
    workbook.active = 1
    with pytest.raises(TableError, match=r"it is empty: no header row, no rows; hidden worksheets are never read: "
                                         r"'Sheet' \(hidden\)$"):
        read(workbook_bytes(workbook))


def test_a_hidden_row_or_column_of_the_table_is_a_problem_not_read():
    workbook = Workbook()
    sheet = workbook.active
    for row in (["工号", "姓名", "金额"], ["W1", "王伟", 100], ["W2", "李娜", 200], ["W3", "张敏", 300]):
        sheet.append(row)
    sheet.row_dimensions[3].hidden = True
    table, rows = read(workbook_bytes(workbook))
    assert [number for number, _ in rows] == [2, 4]
    assert [str(problem) for problem in table.problems] == [
        "t.xlsx: Sheet row 3: a hidden row (hidden, filtered or folded): it is never read; show every row, clear "
        "the filters and save the file again"]
    sheet.row_dimensions[3].hidden = False
    sheet.column_dimensions["C"].hidden = True
    with pytest.raises(TableError, match=r"Sheet: the column\(s\) C \(amount\) are hidden"):
        read(workbook_bytes(workbook))
    sheet.append(["W4", "赵六", 400, "a hidden column nobody reads"])
    sheet.column_dimensions["C"].hidden = False
    sheet.column_dimensions["D"].hidden = True
    assert len(read(workbook_bytes(workbook))[1]) == 4


def test_a_formula_is_a_problem_naming_its_cell_whatever_value_it_stores():
    data = one_sheet([["工号", "姓名", "金额", "扣款"], ["W1", "王伟", 99999, 0], ["W2", "李娜", 247.56, 12]], title="工资表")
    table, rows = read(with_formula(data, "C2", "1460"))
    assert [number for number, _ in rows] == [3]
    assert [str(problem) for problem in table.problems] == [
        "t.xlsx: 工资表 row 2: amount: C2 is a formula ('=1460', stored as '99999'): what a spreadsheet shows for "
        "it need not be what the file holds; paste the column as values (选择性粘贴 > 数值)"]
    # A shared formula: the cell that shares it is a formula too (and its text is not worked out).
    shared = with_formula(with_formula(data, "D2", "C2/2", ' t="shared" ref="D2:D3" si="0"'), "D3", "", ' t="shared" si="0"')
    table, rows = read(shared)
    assert rows == []
    assert [problem.message for problem in table.problems] == [
        "deductions: D2 is a formula ('=C2/2', stored as '0'): what a spreadsheet shows for it need not be what the "
        "file holds; paste the column as values (选择性粘贴 > 数值)",
        "deductions: D3 is a formula ('a formula shared with another cell', stored as '12'): what a spreadsheet "
        "shows for it need not be what the file holds; paste the column as values (选择性粘贴 > 数值)"]
    # A formula in a column nobody reads is nobody's concern; a formula's text is never a header.
    table, rows = read(one_sheet([["工号", "姓名", "小计"], ["W1", "王伟", "=1+1"]]))
    assert rows == [(2, {"worker": "W1", "name": "王伟"})] and table.problems == []
    assert str(Formula("C2", "=1", "2")) == "=1"


def test_the_formula_attack_and_the_hidden_sheet_through_the_wage_sheet(tmp_path):
    data = one_sheet([HEADER, ["W1", "工人W1", "4", 99999, "0", ACCOUNT["W1"]]])
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(with_formula(data, "D2", "1460"))
    sheet, problems = read_sheet(path, period_days=31)
    assert sheet.lines == [] and [problem.message for problem in problems] == [
        "amount: D2 is a formula ('=1460', stored as '99999'): what a spreadsheet shows for it need not be what the "
        "file holds; paste the column as values (选择性粘贴 > 数值)"]
    # A total row's SUM is not compared (the lines are values, summed by the bank), and not refused.
    total = one_sheet([HEADER, ["W1", "工人W1", "4", 1460, 20, ACCOUNT["W1"]], ["合计", None, None, 0, 0, None]])
    path.write_bytes(with_formula(with_formula(total, "D3", "SUM(D2:D2)"), "E3", "SUM(E2:E2)"))
    sheet, problems = read_sheet(path, period_days=31)
    assert problems == [] and [line["amount_fen"] for line in sheet.lines] == [146000]
    assert "total row (row 3): amount, deductions a formula, not compared (the lines are summed)" in sheet.notes
    path.write_bytes(hidden_sheet_attack())
    sheet, problems = read_sheet(path, period_days=31)
    assert problems == [] and [line["deductions_fen"] for line in sheet.lines] == [0, 0]


@pytest.fixture
def sheets(month, tmp_path):  # noqa: F811 - the imported fixture
    return Sheets(month, tmp_path / "sheets")


def test_the_hidden_sheet_attack_takes_nothing_and_a_deduction_above_half_is_held(sheets):
    path = sheets.directory / "attack.xlsx"
    path.write_bytes(hidden_sheet_attack())
    # The visible sheet deducts nothing from W1, who has 20.00 of tax recorded: nothing can be taken from it
    # (tests/test_wages_payee.py), and the hidden sheet's 900.00 never is.
    refused = sheets.import_(path, "--take-deductions", check=False)
    assert refused.returncode == 1 and "W1: the sheet deducts 0.00 yuan, 20.00 are recorded" in refused.stderr
    imported = sheets.import_(path, "--json")
    result = json.loads(imported.stdout)
    assert result["deductions_fen"] == 0 and result["deductions_taken"] is None
    assert "read the worksheet '十月工资'; not read: 'Sheet0' (veryHidden)" in result["notes"]
    assert result["deductions_over_half"] == []

    # The visible sheet itself claims 900.00 of W1's 1460.00 (the 20.00 recorded among them): taken, the line
    # needs a person's decision.
    visible = sheets.xlsx("november.xlsx", [HEADER, ["W1", "工人W1", "4", 1460, 900, ACCOUNT["W1"]],
                                            ["W2", "工人W2", "3", 247.56, 100, ACCOUNT["W2"]]])
    said = sheets.import_(visible, "--take-deductions").stdout
    assert ("a decision: W1 (row 2) has 900.00 yuan deducted of 1460.00, more than half (taken as the period's, "
            "the wage line is held until a person approves over it)") in said
    assert "W2 (row 3)" not in said
    sheets.run_table()
    table = sheets.month.json("wages", "show", "--site", "S1", "--period", "2026-10")
    lines = {line["worker"]: line for line in table["lines"]}
    assert (lines["W1"]["net_fen"], lines["W1"]["status"]) == (146000 - 90000, "needs_decision")  # the tax within
    assert "deductions_over_half" in lines["W1"]["flags"] and "deductions_over_half" not in lines["W2"]["flags"]
    refused = sheets.month.cli("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-zhao",
                               check=False)
    assert refused.returncode == 1 and "W1 (deductions_over_half" in refused.stderr
    check = json.loads(sheets.check())
    over = [f for f in check["findings"] if f["kind"] == "deductions_over_half"]
    assert [(f["worker"], f["row"], f["detail"]["sheet_deductions_fen"]) for f in over] == [("W1", 2, 90000)]
    assert check["summary"]["deductions_over_half"] == 1


# ============================================================================== item 9: the cost of a parse


def test_a_workbook_that_packs_a_huge_comment_is_refused_before_it_is_parsed():
    """The attack: 102 KB on disk, a 95 MB XML comment inside (4 min 40 s to parse, and accepted)."""
    data = one_sheet([["工号", "姓名"], ["W1", "王伟"]])
    comment = b"<!--" + b"x" * 95_000_000 + b"-->"
    attack = edited(data, SHEET, lambda xml: xml.replace(b"<sheetData>", comment + b"<sheetData>", 1))
    assert len(attack) < 200_000
    with pytest.raises(TableError, match=rf"^t.xlsx: its part '{SHEET}' unpacks from \d+ to 9\d{{7}} bytes, more "
                                         rf"than {MAX_RATIO} times: not what a spreadsheet writes$"):
        read(attack)
    # Packed no better than text packs, a long run without markup is refused all the same.
    letters = "".join(chr(ord("a") + (n * 7919 % 26)) for n in range(300_000)).encode()
    attack = edited(data, SHEET, lambda xml: xml.replace(b"<sheetData>", b"<!--" + letters + b"--><sheetData>", 1))
    with pytest.raises(TableError, match=rf"its part '{SHEET}' holds more than {MAX_TOKEN} bytes of XML without "
                                         r"markup \(a text, a comment, an attribute\)"):
        read(attack)


def test_a_cell_in_the_last_column_on_every_row_is_refused_at_the_first_row():
    """The attack: 104 KB, a cell in column XFD on 19,990 rows (1 min 57 s)."""
    data = one_sheet([["工号", "姓名"], ["W1", "王伟"]])
    rows = b"".join(b'<row r="%d"><c r="XFD%d"><v>1</v></c></row>' % (n, n) for n in range(3, 19_993))
    attack = edited(data, SHEET, lambda xml: xml.replace(b"</sheetData>", rows + b"</sheetData>"))
    assert len(attack) < 200_000
    with pytest.raises(TableError, match=rf"^t.xlsx: Sheet row 3 reaches column XFD: a table here has at most "
                                         rf"{MAX_COLUMNS} columns; delete what lies beyond it$"):
        read(attack)
    # The cells read are bounded too: rows x their width.
    wide = one_sheet([["工号", "姓名"]] + [["W1", "王伟"] + [None] * 40 + [1]] * 50)
    with pytest.raises(TableError, match=r"more than 1000 cells \(rows x columns\) by Sheet row 25: too many"):
        read(wide, max_cells=1000)
    assert len(read(wide, max_cells=5000)[1]) == 50


def test_millions_of_shared_strings_are_refused_before_openpyxl_reads_them():
    """The attack: 6 million shared strings in 252 KB (50 s, 611 MB)."""
    data = one_sheet([["工号", "姓名"], ["W1", "王伟"]])
    attack = with_shared_strings(data, b"<si><t></t></si>" * 6_000_000)
    with pytest.raises(TableError, match=r"its part 'xl/sharedStrings.xml' unpacks from \d+ to \d+ bytes, more than"):
        read(attack)
    # Not packed so far, they are counted: never more of them than the cells to read.
    many = with_shared_strings(data, b"".join(b"<si><t>%d</t></si>" % n for n in range(1001)))
    with pytest.raises(TableError, match=r"^t.xlsx: 1001 shared strings, more than a table can hold \(1000 at most\)"):
        read(many, max_cells=1000)
    assert len(read(many, max_cells=1001)[1]) == 1


@pytest.mark.parametrize(("edit", "why"), [
    # Two cells A2: the second would silently win.
    (lambda xml: re.sub(rb'(<c r="A2"[^>]*>.*?</c>)', rb"\1\1", xml, count=1),
     r"Sheet row 2: cells out of order or out of their row"),
    (lambda xml: xml.replace(b'<row r="3">', b'<row r="1">', 1), r"Sheet row 1 comes after row 2: rows out of order"),
    (lambda xml: xml.replace(b'<c r="B2"', b'<c r="A2"', 1), r"Sheet row 2: cells out of order or out of their row"),
    (lambda xml: xml.replace(b'<c r="B2"', b'<c r="B9"', 1), r"Sheet row 2: cells out of order or out of their row"),
    (lambda xml: b"\xff\xfe" + xml.decode().encode("utf-16-le"), r"its part 'xl/worksheets/sheet1.xml' is XML in UTF-16"),
])
def test_a_worksheet_a_spreadsheet_would_not_write_is_refused(edit, why):
    data = one_sheet([["工号", "姓名"], ["W1", "王伟"], ["W2", "李娜"]])
    with pytest.raises(TableError, match=why):
        read(edited(data, SHEET, edit))


# ============================================================================== items 12, 15b: the three importers


@pytest.fixture
def collector(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))

    def run(*args: str):
        return CliRunner().invoke(collector_cli.main, [*args, "--config", str(setup.config_path)],
                                  prog_name="collector")

    assert run("site", "add", "S1", "--timezone", "Asia/Shanghai").exit_code == 0
    return run


def csv_file(path, rows: list[list[str]], encoding: str = "utf-8"):
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    return str(path)


IMPORTS = {
    "worker file": (["worker", "import"], ["工号", "姓名", "工地"], ["W1", "王伟", "S1"]),
    "wage sheet": (["wages", "import-sheet", "--site", "S1", "--period", "2026-10", "--by", "ops-li"],
                   HEADER, ["W1", "工人W1", "4", "1460.00", "0", ACCOUNT["W1"]]),
    "bank return": (["wages", "paid", "--by", "ops-sun"], ["end_to_end_id", "status", "voucher", "date", "reason"],
                    ["E1", "paid", "V1", "2026-11-15", ""]),
}


@pytest.mark.parametrize("kind", IMPORTS)
def test_a_header_naming_a_field_twice_is_refused_by_each_importer(kind, collector, tmp_path):
    """The attack: a return with ``status`` twice took the last column ("failed" recorded as paid)."""
    command, header, row = IMPORTS[kind]
    column = 1  # name, name, status: the second field of each
    twice = header[:column + 1] + [header[column]] + header[column + 1:]
    doubled = row[:column + 1] + ["failed" if kind == "bank return" else row[column]] + row[column + 1:]
    path = csv_file(tmp_path / "twice.csv", [twice, doubled])
    result = collector(*command, path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    if kind == "worker file":  # a worker file with Chinese headers is refused in Chinese (issue 22 item 8)
        assert f"{path} 第1行 有两列都是姓名（「姓名」和「姓名」）：删掉或改名其中一列" in result.stderr, result.output
    else:
        assert f"{path}: line 1: two columns mean " in result.stderr, result.output


@pytest.mark.parametrize("kind", IMPORTS)
@pytest.mark.parametrize("size", [200_000, 5_000])
def test_a_field_too_large_is_a_clear_refusal_by_each_importer(kind, size, collector, tmp_path):
    """The attack: a return with a 200,000-character field gave a traceback (the CSV reader's limit)."""
    command, header, row = IMPORTS[kind]
    path = csv_file(tmp_path / "large.csv", [header, [row[0], "x" * size, *row[2:]]])
    result = collector(*command, path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    if kind == "worker file" and size > 131_072:  # Chinese headers: said in Chinese
        assert f"{path} 第2行 有一格超过 131072 个字" in result.stderr, result.output
    elif kind == "worker file":
        assert f"{path} 第2行 姓名有 5000 个字，最多 1000 个字" in result.stderr, result.output
    elif size > 131_072:
        assert f"{path}: line 2: a cell longer than 131072 characters" in result.stderr, result.output
    else:
        assert f"{path}: line 2: " in result.stderr and "5000 characters, more than a cell of this table holds (1000)" \
            in result.stderr, result.output


def test_a_voucher_longer_than_a_payment_reference_is_refused_not_cut():
    data = b"end_to_end_id,status,voucher,date,reason\nE1,paid," + b"V" * 101 + b",2026-11-15,\n"
    kind, entries, _ = bankreturn.read(data, "r.csv")
    assert entries == [{"where": "r.csv: line 2", "problem": "r.csv: line 2: E1: the voucher is longer than 100 "
                        "characters: not a bank's payment reference"}]


# ============================================================================== item 14: one encoding


def gb2312_level_one() -> list[str]:
    characters = []
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            try:
                characters.append(bytes([lead, trail]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return characters


COMMON = gb2312_level_one()


def test_a_utf8_worker_file_with_one_gbk_row_is_refused_naming_both_lines(tmp_path):
    """The attack: one GBK row made the whole file GB18030, every name mojibake, and it was applied."""
    rows = "工号,姓名,用工单位\r\nW1,王伟,华建劳务\r\nW2,李娜,华建劳务\r\n".encode()
    path = tmp_path / "mixed.csv"
    path.write_bytes(rows + "W3,张敏,华建劳务\r\n".encode("gbk"))
    # Chinese headers: said in Chinese (issue 22 item 8), the code kept for scripts.
    with pytest.raises(TableError, match=r"mixed.csv：编码不一致：第1行是 UTF-8，第4行不是（GBK？）；"
                                         r"把整个文件另存为同一种编码（「CSV UTF-8」）$") as refused:
        read_worker_file(str(path))
    assert refused.value.code == "mixed_encodings"
    # And the other way round: a GBK file with one UTF-8 row; and a file with English headers, in English.
    path.write_bytes("工号,姓名\r\nW1,王伟\r\n".encode("gbk") + "W2,李娜\r\n".encode())
    with pytest.raises(TableError, match="编码不一致：第3行是 UTF-8，第1行不是"):
        read_worker_file(str(path))
    path.write_bytes("worker,name\r\nW1,王伟\r\n".encode("gbk") + "W2,李娜\r\n".encode())
    with pytest.raises(TableError, match=r"mixed.csv: mixed encodings: line 3 is UTF-8 and line 2 is not \(GBK\?\): "
                                         r"save the whole file in one encoding \(CSV UTF-8\)$"):
        read_worker_file(str(path))
    # A GBK line that is valid UTF-8 by chance (隆隆 is C2 A1 C2 A1, '¡¡' in UTF-8) is GBK still.
    assert "隆隆".encode("gbk").decode("utf-8") == "¡¡"
    path.write_bytes("工号,姓名\r\nW1,隆隆\r\nW2,李娜\r\n".encode("gbk"))
    parsed = read_worker_file(str(path))
    assert parsed.encoding == "gb18030" and [row["name"] for row in parsed.rows] == ["隆隆", "李娜"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.sampled_from(COMMON), min_size=2, max_size=3), min_size=2, max_size=30), st.data())
def test_one_encoding_is_read_and_two_are_refused(names, data):
    lines = [f"W{n},{name},S1\r\n" for n, name in enumerate(names)]
    gbk = ("工号,姓名,工地\r\n" + "".join(lines)).encode("gbk")
    assert mixed_lines(gbk) is None
    table, rows = read(gbk, name="w.csv", fields={"worker": ("工号",), "name": ("姓名",)})
    assert [values["name"] for _, values in rows] == names
    # One line in the other encoding, anywhere: refused, whichever the file's own encoding was.
    odd = data.draw(st.integers(0, len(lines) - 1))
    for encoding, other in (("utf-8", "gbk"), ("gbk", "utf-8")):
        mixed = "工号,姓名,工地\r\n".encode(encoding) + b"".join(
            line.encode(other if index == odd else encoding) for index, line in enumerate(lines))
        try:
            mixed.decode("utf-8")
        except UnicodeDecodeError:
            with pytest.raises(TableError, match="mixed encodings"):
                read(mixed, name="w.csv", fields={"worker": ("工号",), "name": ("姓名",)})


def test_the_dry_run_shows_the_first_names_as_read(collector, tmp_path):
    path = csv_file(tmp_path / "w.csv", [["工号", "姓名"], ["W1", "王伟"], ["W2", "李娜"], ["W3", "张敏"], ["W4", "赵六"]],
                    encoding="gbk")
    result = collector("worker", "import", path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "  names as read (check them before importing): W1 王伟, W2 李娜, W3 张敏\n" in result.stdout
    report = json.loads(collector("worker", "import", path, "--dry-run", "--json").stdout)
    assert report["sample_names"] == [{"worker": "W1", "name": "王伟"}, {"worker": "W2", "name": "李娜"},
                                      {"worker": "W3", "name": "张敏"}]


# ============================================================================== properties


def _tricky_workbook() -> bytes:
    """Formulas (one shared), a hidden row and column, a hidden worksheet: every new path of the reader."""
    workbook = Workbook()
    sheet = workbook.active
    for row in (["工号", "姓名", "金额", "扣款"], ["W1", "王伟", 1460, 0], ["W2", "李娜", 247.56, 12], ["W3", "张敏", 3, 1]):
        sheet.append(row)
    sheet.row_dimensions[3].hidden = True
    sheet.column_dimensions["E"].hidden = True
    workbook.create_sheet("hidden").sheet_state = "veryHidden"
    data = with_formula(workbook_bytes(workbook), "C2", "1460")
    return with_formula(with_formula(data, "D3", "C3/2", ' t="shared" ref="D3:D4" si="0"'), "D4", "", ' t="shared" si="0"')


TRICKY = _tricky_workbook()


with zipfile.ZipFile(io.BytesIO(TRICKY)) as _archive:
    TRICKY_SHEET = _archive.read(SHEET)
MARKUP = st.sampled_from([b"<", b">", b'"', b"/", b" ", b"0", b"9", b"A", b"Z", b"=", b"r", b"\x00", b"\xff", b"<f>1</f>",
                          b'<row r="1">', b"</row>", b'<c r="XFD2">', b"</c>", b'hidden="1"', b"<!--", b"-->"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(TRICKY_SHEET) - 1), st.integers(0, 3), MARKUP), min_size=1, max_size=6))
def test_a_damaged_tricky_worksheet_raises_nothing_but_the_table_error(changes):
    """The worksheet's XML changed (bytes replaced or inserted), zipped again so that it reaches the parser."""
    xml = bytearray(TRICKY_SHEET)
    for position, removed, inserted in changes:
        xml[position:position + removed] = inserted
    data = edited(TRICKY, SHEET, lambda _: bytes(xml))
    try:
        table = read_table(bytes(data), name="x", fields=FIELDS, identify=("worker", "name"), max_bytes=LIMIT,
                           max_rows=5000, max_cells=50_000)
        for _ in table:
            pass
    except TableError:
        pass


def test_the_tricky_workbook_itself_reads_as_a_person_sees_it():
    table, rows = read(TRICKY)
    assert rows == []  # W1's amount, W3's deductions are formulas; W2's row is hidden
    assert [problem.where for problem in table.problems] == ["t.xlsx: Sheet row 2", "t.xlsx: Sheet row 3",
                                                             "t.xlsx: Sheet row 4"]
    assert table.notes == ["read the worksheet 'Sheet'; not read: 'hidden' (veryHidden)"]
