"""A worker file's refusals in the file's own language and headers (issue 22 item 8).

Reproduced: a site office's roster with Chinese headers was refused with "line 2: id_number: '1.38123E+17'
is a number in scientific notation...": English, with a field name the office never wrote, to be passed on
to someone who wrote 身份证号. Now a file with Chinese headers is refused in Chinese, naming its own header,
the line, and what to do; a file with English headers in English as before. The machine code of each
refusal and the counter scripts read stay; --json gives both. No refusal shows a whole ID number, phone or
account: masked, or as the spreadsheet shows a number it rounded (six digits).
"""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.workers import problems
from tests.helpers import CollectorSetup, resident_id

ROOT = Path(__file__).resolve().parent.parent
ID_1, ID_2, ID_3 = resident_id(1234), resident_id(7), resident_id(1238)
WRONG_CHECK = ID_3[:17] + ("0" if ID_3[17] != "0" else "1")
LONG_ACCOUNT = "6" * 33


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    setup.run("site", "add", "GZ01", "--timezone", "Asia/Shanghai", "--name", "广州项目")
    return setup


ROWS = [  # one fault a row, as site offices make them
    ["W1", "王伟", "1.38123E+17", "13812345678", "6222021234567890123", "GZ01"],  # Excel rounded the ID number
    ["W2", "李娜", ID_1, "1.38123E+10", "", "GZ01"],  # and a phone
    ["W3", "张敏", "", "1381234", "", "GZ01"],  # a phone short of digits
    ["W4", "赵六", "", "", LONG_ACCOUNT, "GZ01"],  # an account with a digit too many
    ["W5", "", "", "", "", "GZ01"],  # no name
    ["W6", "钱七", ID_2, "", "", "GZ01"],
    ["W7", "孙八", ID_2, "", "", "GZ01"],  # the ID number of line 7 again
    ["W8", "周九", WRONG_CHECK, "", "", "GZ01"],  # a digit typed wrong
    ["W9", "吴十", "", "", "", "ZZ99"],  # a site the bank does not have
    ["W6", "郑一", "", "", "", "GZ01"],  # the worker of line 7 again
]
CHINESE = ["工号", "姓名", "身份证号码", "手机号", "银行卡号", "工地"]

EXPECTED = [  # line, code, the file's own header, the words after the place
    (2, "number", "身份证号码", "身份证号码「1.38123E+17」被 Excel 当成了数字：把这一列设为文本格式后重新填写"),
    (3, "number", "手机号", "手机号「1.38123E+10」被 Excel 当成了数字：把这一列设为文本格式后重新填写"),
    (4, "bad_phone", "手机号", "手机号「*******」不是电话号码：手机号是 1 开头的 11 位数字，座机要带区号：核对后重新填写"),
    (5, "bad_account", "银行卡号", f"银行卡号「{'*' * 29}6666」不是银行卡号：应为 8 到 32 位数字：对照银行卡重新填写"),
    (6, "missing", "姓名", "姓名没有填：每一行都要填姓名"),
    (8, "duplicate_id_number", "身份证号码", "身份证号码「110***********0007」和第7行（W6）的一样：一个人只登记一次，核对这两行"),
    (9, "bad_id_number", "身份证号码", f"身份证号码「110***********{WRONG_CHECK[-4:]}」不是有效的身份证号：应为 18 位"
                                       "（含出生日期和最后一位校验码），或 1999 年以前的 15 位旧号码：对照身份证重新填写"),
    (10, "unknown_site", "工地", "工地「ZZ99」银行还没有登记这个工地：核对工地编号，或请银行先登记这个工地"),
    (11, "duplicate_worker", "工号", "工号「W6」在第7行也有：一个工人只写一行"),
]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(row) for row in [header, *rows]) + "\n"


def test_a_chinese_roster_is_refused_in_chinese_naming_its_own_headers_lines_and_what_to_do(bank, tmp_path):
    path = tmp_path / "花名册.csv"
    path.write_bytes(csv_text(CHINESE, ROWS).encode("gbk"))
    refused = bank.run("worker", "import", str(path), check=False)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert lines[:-1] == [f"{path} 第{line}行 {words}" for line, _, _, words in EXPECTED]
    # The counter scripts read, then the same in Chinese.
    assert lines[-1] == f"Error: {path}: 9 bad row(s); nothing imported（9 行有问题，什么都没有导入）"
    # Personal data masked: no whole ID number or account anywhere; what Excel showed is six digits.
    for secret in (ID_1, ID_2, WRONG_CHECK, LONG_ACCOUNT, "6222021234567890123", "13812345678"):
        assert secret not in refused.stderr + refused.stdout
    # --json: the code and the message of each, with its line and the file's header.
    report = json.loads(bank.run("worker", "import", str(path), "--json", check=False).stdout)
    assert report["imported"] is False and report["bad_rows"] == 9
    assert [(p["line"], p["code"], p["column"]) for p in report["problems"]] == [e[:3] for e in EXPECTED]
    assert [p["message"] for p in report["problems"]] == lines[:-1]
    assert not any(secret in json.dumps(report, ensure_ascii=False) for secret in (ID_1, ID_2, WRONG_CHECK))
    assert bank.json("worker", "list") == []


def test_an_english_roster_is_refused_in_english_naming_its_own_headers(bank, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(csv_text(["worker", "name", "ID Number", "phone", "bank_account", "site"], ROWS[:2] + ROWS[4:5]),
                    encoding="utf-8")
    refused = bank.run("worker", "import", str(path), check=False)
    assert refused.stderr.strip().splitlines() == [
        f"{path}: line 2: ID Number: '1.38123E+17' is a number in scientific notation, whose digits the spreadsheet "
        "has changed: type the column as text",
        f"{path}: line 3: phone: '1.38123E+10' is a number in scientific notation, whose digits the spreadsheet has "
        "changed: type the column as text",
        f"{path}: line 4: name is empty",
        f"Error: {path}: 3 bad row(s); nothing imported"]
    report = json.loads(bank.run("worker", "import", str(path), "--json", check=False).stdout)
    assert [(p["code"], p["field"], p["column"]) for p in report["problems"]] == [
        ("number", "id_number", "ID Number"), ("number", "phone", "phone"), ("missing", "name", "name")]


def test_a_workbook_number_cell_is_named_as_excel_shows_it_on_its_worksheets_row(bank, tmp_path):
    """An 18-digit ID number typed into a General cell: Excel keeps 15 digits and shows 1.38123E+17. The
    refusal shows that, never the digits the file holds (an ID number, less its last three)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "花名册"
    sheet.append(["工号", "姓名", "身份证号", "银行卡号"])
    sheet.append(["W1", "王伟", 138123199001061234, 6.222021234567899e18])
    book.save(tmp_path / "花名册.xlsx")
    refused = bank.run("worker", "import", str(tmp_path / "花名册.xlsx"), check=False)
    assert (f"{tmp_path / '花名册.xlsx'} 工作表「花名册」第2行 身份证号「1.38123E+17」被 Excel 当成了数字：把这一列设为文本格式后"
            "重新填写；银行卡号「6.22202E+18」被 Excel 当成了数字：把这一列设为文本格式后重新填写") in refused.stderr
    assert "1381231990" not in refused.stderr and "622202123" not in refused.stderr
    assert "1 bad row(s); nothing imported（1 行有问题，什么都没有导入）" in refused.stderr


def test_a_file_in_two_encodings_is_refused_in_the_language_of_its_headers_with_its_code(bank, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes("工号,姓名\r\nW1,王伟\r\n".encode() + "W2,李娜\r\n".encode("gbk"))
    refused = bank.run("worker", "import", str(path), check=False)
    assert refused.stderr.strip() == (f"Error: {path}：编码不一致：第1行是 UTF-8，第3行不是（GBK？）；把整个文件另存为同一种编码"
                                      "（「CSV UTF-8」）")
    report = json.loads(bank.run("worker", "import", str(path), "--json", check=False).stdout)
    assert report["error"] == {"code": "mixed_encodings", "message": refused.stderr.strip().removeprefix("Error: ")}
    path.write_bytes(b"\xef\xbb\xbf" + "工号,姓名\r\n".encode("gbk"))
    assert f"{path} 第1行 文件开头标着 UTF-8，内容却不是" in bank.run("worker", "import", str(path), check=False).stderr
    (tmp_path / "nohead.csv").write_text("人员,名字\nW1,王伟\n", encoding="utf-8")
    refused = bank.run("worker", "import", str(tmp_path / "nohead.csv"), check=False)
    assert "nohead.csv：前 10 行里找不到表头：表头要有「工号、姓名」这几列" in refused.stderr


def test_a_workbook_that_cannot_be_read_as_a_roster_is_refused_in_the_language_of_its_cells(bank, tmp_path):
    """Refused before its header is read (none found) or because of what it hides: still in Chinese."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["人员", "名字"])
    book.active.append(["W1", "王伟"])
    book.save(tmp_path / "nohead.xlsx")
    refused = bank.run("worker", "import", str(tmp_path / "nohead.xlsx"), check=False)
    assert f"{tmp_path / 'nohead.xlsx'}：前 10 行里找不到表头：表头要有「工号、姓名」这几列" in refused.stderr
    book = Workbook()
    sheet = book.active
    sheet.title = "花名册"
    sheet.append(["工号", "姓名", "身份证号"])
    sheet.append(["W1", "王伟", ID_1])
    sheet.column_dimensions["C"].hidden = True
    book.save(tmp_path / "hidden.xlsx")
    refused = bank.run("worker", "import", str(tmp_path / "hidden.xlsx"), check=False)
    assert f"{tmp_path / 'hidden.xlsx'} 工作表「花名册」：「身份证号」列被隐藏了，不会读取：取消隐藏后再保存" in refused.stderr
    report = json.loads(bank.run("worker", "import", str(tmp_path / "hidden.xlsx"), "--json", check=False).stdout)
    assert report["error"]["code"] == "hidden_columns" and ID_1 not in refused.stderr


# ---------------------------------------------------------------------------------------------- the words


def literal_codes(path: Path, call: str) -> set[str]:
    """The string codes a module's source passes to ``call(...)`` (first argument, or code=)."""
    codes = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == call:
            arguments = [node.args[0]] if node.args and call == "Fault" else []
            arguments += [k.value for k in node.keywords if k.arg == "code"]
            codes |= {a.value for a in arguments if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value}
    return codes


def test_every_refusal_a_worker_file_can_get_has_its_chinese_words():
    row_codes = literal_codes(ROOT / "collector" / "workers" / "registry.py", "Fault")
    row_codes |= literal_codes(ROOT / "collector" / "tabular.py", "CellError")
    row_codes |= {"missing", "control_character", "combining_marks", "no_visible_letter", "not_text", "hidden_row",
                  "total_row"}  # from collector.text and the table reader
    assert row_codes <= set(problems.ROW_WORDS), row_codes - set(problems.ROW_WORDS)
    file_codes = literal_codes(ROOT / "collector" / "tabular.py", "TableError")
    # A workbook's hostile structure (a zip bomb, rows out of order) is said as "cannot read it (...)".
    assert file_codes <= set(problems.FILE_WORDS), file_codes - set(problems.FILE_WORDS)


#: What the Chinese words may hold in Latin letters: names of formats and programs, and examples.
ALLOWED_LATIN = {"Excel", "WPS", "CSV", "UTF", "GBK", "xlsx", "xls", "A", "F", "limits", "max_workers_per_file"}


@pytest.mark.parametrize("words", [*problems.ROW_WORDS.values(), *problems.FILE_WORDS.values(),
                                   problems.REFUSED_WORDS, problems.MORE_WORDS])
def test_the_chinese_words_say_it_in_chinese_with_what_to_do_and_no_command(words):
    fields = {name for _, name, _, _ in string.Formatter().parse(words) if name}
    # The placeholders, and the example card number (04A1B2C3D4E5F6), are not words.
    latin = set(re.findall(r"[A-Za-z][A-Za-z_]*", re.sub(r"\{[a-z0-9_]+\}|[0-9A-F]{8,}", "", words)))
    assert latin <= ALLOWED_LATIN, latin - ALLOWED_LATIN
    assert "collector" not in words and "--" not in words
    assert problems.is_chinese(words) and fields <= {
        "header", "value", "length", "limit", "point", "basis", "rate", "per", "bound", "site", "other", "worker",
        "holder", "until", "file", "utf8_line", "other_line", "line", "rows", "fields", "field", "first", "second",
        "detail", "english", "count", "sheet", "sheets"}
