"""Workers per file and per site are bounded to what the pages are sized for, on both engines. Built from
the attack that worked: a 700,000-row worker file was accepted (55 s, 903 MB), after which one worker's
page took 19 s and the foreman's headcount 5.6 s. A file past ``[limits] max_workers_per_file`` is refused
at its first row past the bound, with the bound named, before anything is planned or written; an import,
an assignment or a new worker that would give a site more than ``max_workers_per_site`` is refused naming
the figures, and nothing of it is written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from collector.config import ConfigError, load_config
from collector.tabular import TableError, TooManyRows, read_table
from collector.workers.registry import TooManyWorkers, read_worker_file
from tests.helpers import CollectorSetup


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database,
                                  limits={"max_workers_per_file": 5, "max_workers_per_site": 4})
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("site", "add", "S2", "--timezone", "Asia/Shanghai")
    return setup


def workers_file(path, count: int, *, site: str | None = "S1", start: int = 1, blank_between: bool = False) -> str:
    lines = ["工号,姓名" + (",工地" if site else "")]
    for n in range(start, start + count):
        lines.append(f"W{n},工人{n}" + (f",{site}" if site else ""))
        if blank_between:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def assigned(bank, site: str) -> list[str]:
    return [w["worker"] for w in bank.json("worker", "list", "--site", site)]


def test_a_file_past_the_bound_is_refused_whole_and_names_it(bank, tmp_path):
    too_many = workers_file(tmp_path / "six.csv", 6)
    for dry in ((), ("--dry-run",)):
        result = bank.run("worker", "import", too_many, *dry, check=False)
        assert result.returncode == 1
        # The file's headers are Chinese: so is the refusal, with the bound the bank configured.
        assert f"{too_many}：超过 5 个工人，一个文件最多 5 人（[limits] max_workers_per_file）：分成几个文件；什么都没有导入" \
            in result.stderr
    assert bank.json("worker", "list") == []
    # At the bound, with blank rows between the workers and a title above: read and imported.
    lines = ["工人名册", *open(workers_file(tmp_path / "five.csv", 5, site=None, blank_between=True), encoding="utf-8")]
    (tmp_path / "five.csv").write_text("\n".join(line.rstrip("\n") for line in lines) + "\n", encoding="utf-8")
    assert bank.json("worker", "import", str(tmp_path / "five.csv"))["new"] == [f"W{n}" for n in range(1, 6)]


def test_the_reader_stops_at_the_first_row_past_the_bound(tmp_path):
    """The rest of the file is never parsed: a bad row after the bound is not even seen, in a CSV and a
    workbook alike; blank rows have their own bound, so a file of blank lines is no way around it."""
    path = tmp_path / "w.csv"
    # After three workers, a cell longer than the CSV reader takes: a refusal of the file, when it is read.
    path.write_text("worker,name\n" + "".join(f"W{n},N{n}\n" for n in range(4)) + "W9," + "x" * 200_000 + "\n",
                    encoding="utf-8")
    with pytest.raises(TooManyWorkers, match="more than 3 workers"):
        read_worker_file(str(path), max_workers=3)
    with pytest.raises(TableError, match="line 6: a cell longer than"):
        read_worker_file(str(path), max_workers=5)

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["工号", "姓名"])
    for n in range(4):
        sheet.append([f"W{n}", f"工人{n}"])
    book.save(tmp_path / "w.xlsx")
    with pytest.raises(TooManyWorkers, match=r"超过 3 个工人.*\[limits\] max_workers_per_file"):
        read_worker_file(str(tmp_path / "w.xlsx"), max_workers=3)
    assert len(read_worker_file(str(tmp_path / "w.xlsx"), max_workers=4).rows) == 4

    blank = tmp_path / "blank.csv"
    blank.write_text("worker,name\nW1,N1\n" + "\n" * 100, encoding="utf-8")
    with pytest.raises(TooManyWorkers, match="more than 30 rows, blank ones included"):
        read_worker_file(str(blank), max_workers=5)
    table = read_table(b"a,b\n1,2\n3,4\n", name="t.csv", fields={"a": (), "b": ()}, identify=("a",), max_bytes=100,
                       max_records=1)
    with pytest.raises(TooManyRows, match=r"t.csv: more than 1 rows under the header \(line 3 is one more\)"):
        list(table)


def test_a_site_past_its_bound_refuses_the_import_assign_and_add_that_would_pass_it(bank, tmp_path):
    assert bank.json("worker", "import", workers_file(tmp_path / "a.csv", 3))["new"] == ["W1", "W2", "W3"]
    # Two more for S1 would make 5 of 4: the whole file is refused, dry run or not, with the figures.
    more = workers_file(tmp_path / "b.csv", 2, start=4)
    for dry in ((), ("--dry-run",)):
        result = bank.run("worker", "import", more, *dry, check=False)
        assert result.returncode == 1
        assert "site S1 would have 5 workers assigned (3 now and 2 more from this file), more than the 4 a site " \
               "may have ([limits] max_workers_per_site): nothing changed" in result.stderr
    assert assigned(bank, "S1") == ["W1", "W2", "W3"] and len(bank.json("worker", "list")) == 3
    # The same file for another site is fine; re-importing workers already at S1 adds nobody there.
    assert bank.json("worker", "import", workers_file(tmp_path / "c.csv", 2, start=4, site="S2"))["new"] == ["W4", "W5"]
    assert bank.json("worker", "import", workers_file(tmp_path / "a2.csv", 3))["unchanged"] == 3

    bank.run("worker", "assign", "W4", "--site", "S1")  # the fourth: at the bound
    result = bank.run("worker", "assign", "W5", "--site", "S1", check=False)
    assert result.returncode == 1 and "site S1 would have 5 workers assigned (4 now and 1 more from assigning W5)" \
        in result.stderr
    result = bank.run("worker", "add", "W9", "--name", "新人", "--site", "S1", check=False)
    assert result.returncode == 1 and "(4 now and 1 more from assigning W9)" in result.stderr
    assert "W9" not in [w["worker"] for w in bank.json("worker", "list")]  # nothing of it written
    # An assignment that ended already adds nobody now; one leaving makes room.
    bank.run("worker", "assign", "W5", "--site", "S1", "--from", "2026-01-01", "--to", "2026-02-01")
    bank.run("worker", "unassign", "W1", "--site", "S1")
    bank.run("worker", "assign", "W5", "--site", "S1")
    assert assigned(bank, "S1") == ["W2", "W3", "W4", "W5"]


def test_the_limits_have_defaults_and_bounds(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n')
    config = load_config(path)
    assert (config.max_workers_per_file, config.max_workers_per_site) == (20_000, 20_000)
    assert (config.requests_per_credential, config.requests_per_site) == (4, 16)
    for table, key, value in (("limits", "max_workers_per_file", 0), ("limits", "max_workers_per_site", -1),
                              ("web", "requests_per_credential", 0), ("web", "requests_per_site", 1.5)):
        path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n[{table}]\n{key} = {json.dumps(value)}\n')
        with pytest.raises(ConfigError, match=key):
            load_config(path)
