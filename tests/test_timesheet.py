"""The monthly 考勤表 (`collector timesheet`): a row per worker, a mark per day, totals and a signature
column, as an XLSX a site office prints (text cells, frozen header, A4 landscape) and as a printable page
real Chromium shows; on both engines."""

from __future__ import annotations

import io
import json
import stat
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.browser import open_tab
from tests.helpers import CollectorSetup, PunchFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
CARDS = {"W1": "04A1B2C3D4E5F6", "W2": "DEADBEEF", "W4": "CAFEF00D"}
#: A name a spreadsheet would run as a formula if it were written as one.
FORMULA_NAME = "=HYPERLINK(\"http://x\",\"李娜\")"


def local(day: int, clock: str) -> datetime:
    return datetime.strptime(f"2026-11-{day:02d} {clock}", "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


@pytest.fixture
def office(tmp_path, database):
    """November at S1: W1 a full day (2nd), a 2-hour day (3rd), an IN with no OUT (4th), a day closed by a
    manual OUT (5th); W2 a full day (2nd) and a dispute (6th); W3 assigned, never tapped; W4 at S2 only."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    gate = PunchFactory(gate="north")
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="一号工地")
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", gate.public_key)
        store.add_worker("W1", name="张伟", employer="华建劳务", cards=[CARDS["W1"]], sites=["S1"], team="钢筋班",
                         trade="钢筋工")
        store.add_worker("W2", name=FORMULA_NAME, employer="鑫城建筑", cards=[CARDS["W2"]], sites=["S1"])
        store.add_worker("W3", name="王芳", employer="华建劳务", sites=["S1"], team="木工班", trade="木工")
        store.add_worker("W4", name="赵六", employer="华建劳务", cards=[CARDS["W4"]], sites=["S2"])
        taps = [("W1", 2, "08:00", "in"), ("W1", 2, "17:00", "out"), ("W1", 3, "08:00", "in"),
                ("W1", 3, "10:00", "out"), ("W1", 4, "08:00", "in"), ("W1", 5, "08:00", "in"),
                ("W2", 2, "07:30", "in"), ("W2", 2, "18:00", "out")]
        for worker, day, clock, direction in taps:
            moment = local(day, clock)
            punch = gate.next(card=CARDS[worker], direction=direction, at=moment.astimezone(UTC))
            Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])
        store.add_manual_punch(site="S1", worker="W1", time=format_time(local(5, "17:00").astimezone(UTC)),
                               direction="out", reason="gate did not read the card", by="ops-li")
        store.file_dispute(worker="W2", site="S1", day="2026-11-06", note="我那天上班了", via="test", max_open=20)
    return setup


def rows_by_worker(sheet) -> tuple[list, dict[str, list]]:
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    header_at = next(i for i, row in enumerate(values) if row[0] == "序号")
    header = values[header_at]
    rows = {row[2]: row for row in values[header_at + 1:] if isinstance(row[0], int)}
    return header, rows


def test_the_workbook_marks_each_day_and_sums_the_month(office, tmp_path):
    out = tmp_path / "s1-2026-11.xlsx"
    said = json.loads(office.run("timesheet", "--site", "S1", "--month", "2026-11", "--out", str(out), "--json").stdout)
    assert said == {"site": "S1", "month": "2026-11", "file": str(out), "workers": 3, "days_to_review": 1}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    book = openpyxl.load_workbook(io.BytesIO(out.read_bytes()))
    sheet = book.active
    header, rows = rows_by_worker(sheet)
    assert header[:6] == ["序号", "姓名", "工号", "单位", "班组", "工种"]
    assert header[-4:] == ["出勤天数", "工时(小时)", "待核", "本人签名"]
    assert header[6] == "1\n日" and header[7] == "2\n一" and len(header) == 6 + 30 + 4  # 1 Nov 2026 is a Sunday
    day = {n: 5 + n for n in range(1, 31)}  # the column of each date
    assert rows["W1"][4:6] == ["钢筋班", "钢筋工"] and rows["W2"][4:6] == [None, None]
    assert set(rows) == {"W1", "W2", "W3"}  # W4 works at S2 only
    w1 = rows["W1"]
    assert [w1[day[n]] for n in (1, 2, 3, 4, 5, 6)] == [None, "√", "半", "疑", "补", None]
    assert w1[-4:-1] == [2.5, 20.0, 1]  # √ + 半 + 补 days; 9 + 2 + 9 hours; one day to look at
    assert rows["W2"][day[2]] == "√" and rows["W2"][day[6]] == "诉"
    assert rows["W3"][day[2]] is None and rows["W3"][-4:-1] == [0, 0, 0]
    # In employer then team order, numbered; the name that looks like a formula is text, shown as it is.
    assert [rows[w][0] for w in ("W3", "W1", "W2")] == [1, 2, 3]
    cell = next(c for r in sheet.iter_rows() for c in r if c.value == FORMULA_NAME)
    assert cell.data_type == "s"
    # Printed on A4 landscape, one page wide, its heading repeated; the header and names stay in view.
    assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.freeze_panes == "C4"
    assert "一号工地 2026-11 考勤表" in sheet["A1"].value and any("本人签名" in (v or "") for v in header)


def test_an_employers_own_sheet_and_the_refusals(office, tmp_path):
    out = tmp_path / "huajian.xlsx"
    office.run("timesheet", "--site", "S1", "--month", "2026-11", "--employer", "华建劳务", "--out", str(out))
    _, rows = rows_by_worker(openpyxl.load_workbook(out).active)
    assert set(rows) == {"W1", "W3"}
    team = tmp_path / "team.xlsx"
    office.run("timesheet", "--site", "S1", "--month", "2026-11", "--team", "木工班", "--out", str(team))
    sheet = openpyxl.load_workbook(team).active
    assert set(rows_by_worker(sheet)[1]) == {"W3"} and "（木工班）" in sheet["A1"].value
    for args, why in ((["--month", "2026-13", "--out", str(tmp_path / "a.xlsx")], "month must be YYYY-MM"),
                      (["--month", "2026-11", "--out", str(tmp_path / "a.csv")], "written as .xlsx or .html"),
                      (["--month", "2026-11", "--out", str(out)], "already exists")):
        result = office.run("timesheet", "--site", "S1", *args, check=False)
        assert result.returncode != 0 and why in result.stderr and "Traceback" not in result.stderr
    result = office.run("timesheet", "--site", "S9", "--month", "2026-11", "--out", str(tmp_path / "b.xlsx"),
                        check=False)
    assert result.returncode == 1 and "site S9 does not exist" in result.stderr


def test_the_printable_page_prints_on_a4_and_scrolls_on_a_phone(office, tmp_path):
    out = tmp_path / "s1.html"
    office.run("timesheet", "--site", "S1", "--month", "2026-11", "--out", str(out))
    text = out.read_text(encoding="utf-8")
    assert "<script" not in text and "=HYPERLINK(&#34;http://x&#34;" in text
    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        driver.get(out.as_uri())
        cells = driver.execute_script(
            "return [...document.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        assert [row[2] for row in cells] == ["W3", "W1", "W2"]
        assert cells[1][4:6] == ["钢筋班", "钢筋工"]
        assert cells[1][6:12] == ["", "√", "半", "疑", "补", ""] and cells[1][-4:-1] == ["2.5", "20", "1"]
        assert cells[2][1] == FORMULA_NAME  # shown as text, escaped by the template
        # The page itself never runs off the phone: the table scrolls inside its own box.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 412
        pdf = driver.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})
        assert pdf["data"]
    finally:
        driver.quit()


def test_attendance_and_payroll_as_workbooks_in_the_words_of_the_site_page(office, tmp_path):
    out = tmp_path / "attendance.xlsx"
    said = office.run("attendance", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", "--xlsx", str(out))
    assert said.stdout.strip() == f"{out}: 5 record(s)"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    sheet = openpyxl.load_workbook(out).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "S1 考勤 2026-11-01 至 2026-11-30（工地时间）"
    assert values[1] == ["工号", "姓名", "单位", "班组", "工种", "工地", "日期", "上班", "下班", "工时(小时)", "工作分钟",
                         "状态", "标记", "已确定"]
    by_day = {(r[0], r[6]): r for r in values[2:]}
    assert by_day[("W1", "2026-11-02")][3:5] == ["钢筋班", "钢筋工"] and by_day[("W2", "2026-11-02")][3:5] == [None, None]
    assert by_day[("W1", "2026-11-02")][7:12] == ["08:00", "17:00", 9, 540, "完整"]
    assert by_day[("W1", "2026-11-04")][11:13] == ["缺少出场记录", "有进场没有出场"]
    assert "银行人工录入" in by_day[("W1", "2026-11-05")][12]
    assert values[-1][0] == "班组、工种：工人现在的登记"
    formula = next(c for r in sheet.iter_rows() for c in r if c.value == FORMULA_NAME)
    assert formula.data_type == "s"
    out = tmp_path / "payroll.xlsx"
    office.run("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", "--xlsx", str(out))
    rows = [list(r) for r in openpyxl.load_workbook(out).active.iter_rows(values_only=True)]
    assert rows[1][:6] == ["工号", "姓名", "单位", "班组", "工种", "出勤天数"]
    assert next(r for r in rows if r[0] == "W1")[3:8] == ["钢筋班", "钢筋工", 4, 1200, 20]
    for args in (["--xlsx", str(out)], ["--xlsx", str(tmp_path / "x.xlsx"), "--csv"], ["--xlsx", str(tmp_path / "x.csv")]):
        result = office.run("payroll", "--site", "S1", "--from", "2026-11-01", "--to", "2026-11-30", *args, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
