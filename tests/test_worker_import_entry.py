"""The entry date (进场日期) of a worker file starts the worker's assignment to the row's site (issue 22 item 3).

Reproduced: a roster with 进场日期 was imported, the column listed as "not read", and every new worker was
assigned to the site "from the beginning", so taps from before they came counted as theirs at that site and
a worker registered late looked as if they had always been there. Now the entry date is the start of the
assignment, at the beginning of that day in the site's zone; a later file with another entry date moves the
start (and says how many taps that leaves outside any assignment, as `worker unassign` does).
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.workers.problems import Fault
from collector.workers.registry import read_day
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory

CARD = "04A1B2C3D4E5F6"


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    setup.run("site", "add", "GZ01", "--timezone", "Asia/Shanghai", "--name", "广州项目")
    setup.run("site", "add", "IN03", "--timezone", "Asia/Kolkata")
    return setup


def roster(path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def starts(bank, site: str) -> dict[str, str | None]:
    with bank.store() as store:
        return {a["worker"]: a["valid_from"] for a in store.assignments(site=site) if a["valid_to"] is None}


def test_an_entry_date_starts_the_assignment_at_the_beginning_of_that_day_at_the_site(bank, tmp_path):
    path = roster(tmp_path / "roster.csv",
                  "工号,姓名,工地,进场日期\n"
                  "W1,王伟,GZ01,2026-11-01\n"
                  "W2,李娜,GZ01,2026/11/02\n"
                  "W3,张敏,GZ01,2026年11月3日\n"
                  "W4,赵六,GZ01,２０２６年１１月４日\n"  # full-width, as a Chinese input method types it
                  "W5,钱七,GZ01,\n"  # no entry date: from the beginning, as before
                  "W6,孙八,IN03,2026-11-01\n", encoding="gbk")
    dry = bank.run("worker", "import", path, "--dry-run").stdout
    assert "columns read: 工号 -> worker, 姓名 -> name, 工地 -> site, 进场日期 -> assignment from" in dry
    assert "columns not read" not in dry
    assert "  W1: works at GZ01 from 2026-11-01 00:00 (the site's time; entry date)" in dry
    assert "  W6: works at IN03 from 2026-11-01 00:00 (the site's time; entry date)" in dry
    assert starts(bank, "GZ01") == {}, "a dry run changed something"
    report = bank.json("worker", "import", path)
    assert report["assigned"][0] == {"worker": "W1", "site": "GZ01", "from": "2026-11-01",
                                     "start": "2026-10-31T16:00:00.000Z"}
    assert starts(bank, "GZ01") == {"W1": "2026-10-31T16:00:00.000Z", "W2": "2026-11-01T16:00:00.000Z",
                                    "W3": "2026-11-02T16:00:00.000Z", "W4": "2026-11-03T16:00:00.000Z", "W5": None}
    assert starts(bank, "IN03") == {"W6": "2026-10-31T18:30:00.000Z"}  # midnight in India is 18:30 UTC
    # 入场日期 and 进场时间 are the same column; a time of day after the date is left aside.
    for header, cell in (("入场日期", "2026-11-05"), ("进场时间", "2026-11-05 08:30")):
        path = roster(tmp_path / "other.csv", f"工号,姓名,工地,{header}\nW7,周九,GZ01,{cell}\n")
        assert f"{header} -> assignment from" in bank.run("worker", "import", path, "--dry-run").stdout
    bank.run("worker", "import", path)
    assert starts(bank, "GZ01")["W7"] == "2026-11-04T16:00:00.000Z"


def test_a_workbook_gives_the_entry_date_as_a_date_cell_a_date_and_time_or_a_day_number(bank, tmp_path):
    """A date cell; a date-and-time cell under 进场时间; a cell that lost its date format and shows the day
    number (46329 is 2026-11-03), in the usual workbook and in one counting from 1904 (a Mac's)."""
    from openpyxl import Workbook
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    serial = (date(2026, 11, 3) - date(1899, 12, 30)).days
    assert serial == 46329
    for name, epoch, number in (("windows.xlsx", None, serial),
                                ("mac.xlsx", CALENDAR_MAC_1904, (date(2026, 11, 3) - date(1904, 1, 1)).days)):
        book = Workbook()
        if epoch is not None:
            book.epoch = epoch
        sheet = book.active
        sheet.title = "花名册"
        for row in (["工号", "姓名", "工地", "进场时间"], ["W1", "王伟", "GZ01", datetime(2026, 11, 1)],
                    ["W2", "李娜", "GZ01", datetime(2026, 11, 2, 8, 30)], ["W3", "张敏", "GZ01", number]):
            sheet.append(row)
        book.save(tmp_path / name)
        report = bank.json("worker", "import", str(tmp_path / name), "--dry-run")
        assert [(a["worker"], a["from"]) for a in report["assigned"]] == [
            ("W1", "2026-11-01"), ("W2", "2026-11-02"), ("W3", "2026-11-03")], name
    bank.run("worker", "import", str(tmp_path / "mac.xlsx"))
    assert starts(bank, "GZ01")["W3"] == "2026-11-02T16:00:00.000Z"


@pytest.mark.parametrize(("cell", "code", "words"), [
    ("12/01/2026", "bad_date", "进场日期「12/01/2026」不是日期：写成 2026-12-01、2026/12/01 或 2026年12月1日"),
    ("2026-02-30", "no_such_date", "进场日期「2026-02-30」这一天不存在：核对月和日"),
    ("46357", "number_not_date", "进场日期「46357」是一个数，不是日期（这一列丢了日期格式）：把这一列设为日期格式，或写成 2026-12-01"),
    ("2062-12-01", "date_too_late", "进场日期「2062-12-01」比今天晚一个多月：核对年份"),
    ("1926-01-01", "date_too_early", "进场日期「1926-01-01」早于 2000 年：核对年份"),
    ("明天", "bad_date", "进场日期「明天」不是日期"),
    ("2026-11-01 25:00", "bad_date", "进场日期「2026-11-01 25:00」不是日期"),
    ("\u0662\u0660\u0662\u0666-11-01", "bad_date", "不是日期"),  # Arabic-Indic digits: no date of ours
])
def test_an_entry_date_that_is_no_day_is_refused_with_what_to_write(bank, tmp_path, cell, code, words):
    path = roster(tmp_path / "bad.csv", f"工号,姓名,工地,进场日期\nW1,王伟,GZ01,2026-11-01\nW2,李娜,GZ01,{cell}\n")
    refused = bank.run("worker", "import", path, check=False)
    assert refused.returncode == 1 and f"{path} 第3行 " in refused.stderr and words in refused.stderr, refused.stderr
    report = json_of(bank.run("worker", "import", path, "--json", check=False))
    assert [(p["line"], p["code"], p["column"]) for p in report["problems"]] == [(3, code, "进场日期")]
    assert starts(bank, "GZ01") == {}, "nothing of a refused file is imported"


def test_an_entry_date_needs_the_site_it_is_the_entry_to(bank, tmp_path):
    path = roster(tmp_path / "nosite.csv", "工号,姓名,进场日期\nW1,王伟,2026-11-01\n")
    refused = bank.run("worker", "import", path, check=False)
    assert f"{path} 第2行 填了进场日期却没有填工地：进场日期是进哪个工地的？在「工地」一列填上工地编号" in refused.stderr
    english = roster(tmp_path / "nosite-en.csv", "worker,name,entry_date\nW1,Wang,2026-11-01\n")
    refused = bank.run("worker", "import", english, check=False)
    assert f"{english}: line 2: entry_date without a site" in refused.stderr


def json_of(result):
    import json

    return json.loads(result.stdout)


def tap(bank, gate: PunchFactory, moment: datetime) -> None:
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("GZ01", gate.gate).punch,
                                         encode_punches([gate.next(card=CARD, at=moment)]), format_time(moment))])


def flags(bank, day: str) -> list[str]:
    return next(r for r in bank.json("attendance", "--site", "GZ01", "--date", day) if r["worker"] == "W1")["flags"]


def test_a_later_file_with_another_entry_date_moves_the_start_and_says_which_taps_it_leaves_outside(bank, tmp_path):
    """What a site office expects: the roster it sends is what is true now, so a corrected entry date moves
    the start of the assignment (it is not a second one). A later start leaves the taps before it outside
    any assignment: the dry run and the import say how many, their days are flagged not_assigned, and the
    change is kept with who made it. An earlier start takes them back."""
    gate = PunchFactory(site="GZ01", gate="gz-north")
    bank.run("gate", "add", "gz-north", "--site", "GZ01", "--public-key", gate.public_key)
    first = roster(tmp_path / "first.csv", f"工号,姓名,卡号,工地,进场日期\nW1,王伟,{CARD},GZ01,2026-11-01\n")
    bank.run("worker", "import", first)
    for day in (2, 3):
        tap(bank, gate, datetime(2026, 11, day, 0, 0, tzinfo=UTC))  # 08:00 at the site
    assert "not_assigned" not in flags(bank, "2026-11-02")

    later = roster(tmp_path / "later.csv", f"工号,姓名,卡号,工地,进场日期\nW1,王伟,{CARD},GZ01,2026-11-03\n")
    dry = bank.run("worker", "import", later, "--dry-run").stdout
    assert "0 site assignment(s), 1 start(s) moved to the entry date" in dry
    assert "  W1: at GZ01 from 2026-11-01 00:00 -> 2026-11-03 00:00 (the site's time; entry date)" in dry
    assert ("warning: 1 tap(s) of W1 at GZ01 before 2026-11-03 00:00 would be left outside any assignment: their "
            "days are flagged not_assigned") in dry
    assert starts(bank, "GZ01") == {"W1": "2026-10-31T16:00:00.000Z"}, "a dry run changed something"
    report = bank.json("worker", "import", later, "--by", "ops-li")
    assert report["starts_moved"] == [{"worker": "W1", "site": "GZ01", "from": "2026-11-03",
                                       "start": "2026-11-02T16:00:00.000Z", "before": "2026-10-31T16:00:00.000Z",
                                       "outside": 1}]
    assert starts(bank, "GZ01") == {"W1": "2026-11-02T16:00:00.000Z"}
    assert "not_assigned" in flags(bank, "2026-11-02") and "not_assigned" not in flags(bank, "2026-11-03")
    history = bank.json("worker", "history", "W1")
    assert [(c["field"], c["before"], c["after"], c["changed_by"]) for c in history] == [
        ("assignment GZ01 from", "2026-10-31T16:00:00.000Z", "2026-11-02T16:00:00.000Z", "ops-li")]
    # The same file again changes nothing; the first one takes the start back, and the day with it.
    assert bank.json("worker", "import", later)["unchanged"] == 1
    said = bank.run("worker", "import", first).stdout
    assert "W1: at GZ01 from 2026-11-03 00:00 -> 2026-11-01 00:00" in said and "warning" not in said
    assert "not_assigned" not in flags(bank, "2026-11-02")


def test_an_entry_date_inside_an_earlier_stay_at_the_site_is_refused_and_one_after_it_starts_a_new_one(bank,
                                                                                                       tmp_path):
    first = roster(tmp_path / "first.csv", "工号,姓名,工地,进场日期\nW1,王伟,GZ01,2026-11-01\n")
    bank.run("worker", "import", first)
    bank.run("worker", "unassign", "W1", "--site", "GZ01", "--at", "2026-11-10")
    back = roster(tmp_path / "back.csv", "工号,姓名,工地,进场日期\nW1,王伟,GZ01,2026-11-05\n")
    refused = bank.run("worker", "import", back, check=False)
    assert refused.returncode == 1
    assert (f"{back} 第2行 进场日期「2026-11-05」：W1 在工地 GZ01 上一次一直干到 2026-11-10 00:00，进场日期要在那之后"
            in refused.stderr)
    back = roster(tmp_path / "back.csv", "工号,姓名,工地,进场日期\nW1,王伟,GZ01,2026-11-12\n")
    bank.run("worker", "import", back)
    with bank.store() as store:
        assert [(a["valid_from"], a["valid_to"]) for a in store.assignments(worker="W1")] == [
            ("2026-10-31T16:00:00.000Z", "2026-11-09T16:00:00.000Z"), ("2026-11-11T16:00:00.000Z", None)]


def test_an_entry_date_more_than_a_month_ahead_is_refused_and_one_within_it_is_taken(bank, tmp_path):
    ahead = date.today() + timedelta(days=40)
    soon = date.today() + timedelta(days=7)
    path = roster(tmp_path / "ahead.csv", f"工号,姓名,工地,进场日期\nW1,王伟,GZ01,{ahead}\n")
    assert f"进场日期「{ahead}」比今天晚一个多月" in bank.run("worker", "import", path, check=False).stderr
    path = roster(tmp_path / "soon.csv", f"工号,姓名,工地,进场日期\nW1,王伟,GZ01,{soon}\n")
    assert bank.json("worker", "import", path)["assigned"][0]["from"] == soon.isoformat()


# ---------------------------------------------------------------------------------------------- the day's forms


FULL_WIDTH = str.maketrans(string.digits + "-/.", "０１２３４５６７８９－／．")


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), st.booleans(), st.booleans())
def test_every_way_an_office_writes_a_day_reads_as_that_day(day, padded, wide):
    month, dom = (f"{day.month:02d}", f"{day.day:02d}") if padded else (str(day.month), str(day.day))
    forms = [f"{day.year}-{month}-{dom}", f"{day.year}/{month}/{dom}", f"{day.year}.{month}.{dom}",
             f"{day.year}年{month}月{dom}日", f"{day.year}-{month}-{dom} 08:30", f"{day.year}/{month}/{dom}T23:59:59"]
    for form in forms:
        text = form.translate(FULL_WIDTH) if wide else form
        assert read_day(text, "entry_date") == day, text


@given(st.text(max_size=30))
def test_any_text_is_a_day_it_plainly_writes_or_a_refusal_never_a_guess(text):
    read = read_day(text, "entry_date")
    if isinstance(read, Fault):
        assert read.code in ("bad_date", "no_such_date", "number_not_date") and read.field == "entry_date"
        assert len(read.value) <= 41 and all(c.isprintable() for c in read.value)
    else:
        import unicodedata

        normal = unicodedata.normalize("NFKC", text)
        assert str(read.year) in normal and str(read.month) in normal and str(read.day) in normal
        assert normal.strip()[:4] == f"{read.year:04d}", "the year comes first: 12/01/2026 is never read"
