"""`wages show --csv` as a spreadsheet reads it (flags joined once, a negative net a number), and a draft
computed only to look at a final month stays out of the approval's way; on both engines, with the CLI.

The final October of tests/test_wages.py (W4's missing OUT settled by a manual punch).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from tests import test_wages
from tests.test_wages_payments import PERIOD

month = test_wages.month


def settle_w4(month) -> None:
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")


def test_the_csv_joins_flags_once_and_keeps_a_negative_net_a_number(month):
    settle_w4(month)
    month.cli("wages", "deduct", *PERIOD, "--worker", "W5", "--item", "借支", "--amount-yuan", "2000",
              "--reason", "advance", "--by", "ops-li")
    month.cli("wages", "deduct", *PERIOD, "--worker", "W1", "--item", "借支", "--amount-yuan", "800",
              "--reason", "advance", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    data = month.cli("wages", "show", *PERIOD, "--csv").stdout
    rows = {row["worker"]: row for row in csv.DictReader(io.StringIO(data.lstrip("\ufeff")))}
    assert rows["W4"]["flags"] == "manual"
    assert sorted(rows["W1"]["flags"].split(";")) == ["deductions_over_half", "rate_changed"]
    assert rows["W5"]["net_yuan"] == "-1600.00" and rows["W5"]["gross_yuan"] == "400.00"
    assert rows["W5"]["flags"] == "deductions_exceed_gross"
    assert ";" not in rows["W4"]["flags"] and "'" not in data.replace("'s", "")
    assert (rows["W1"]["team"], rows["W1"]["trade"]) == ("", "")  # none recorded: empty cells


def test_a_look_only_draft_of_a_final_month_does_not_block_the_approval(month):
    settle_w4(month)
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")  # version 1, computed
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--draft")  # version 2: to look at, never paid
    approved = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    assert "version 1 approved by ops-zhao" in approved.stdout
    history = month.json("wages", "history", "--site", "S1", "--period", "2026-10")
    assert [(t["version"], t["status"]) for t in history] == [(1, "approved"), (2, "draft")]
    # A person reads when each version was run and approved in the site's time, the zone named once.
    heading, first, _ = month.cli("wages", "history", "--site", "S1", "--period", "2026-10").stdout.splitlines()
    site_zone = heading.split("times in ")[1].split(" ")[0]
    local = datetime.fromisoformat(history[0]["computed_at"].replace("Z", "+00:00")).astimezone(ZoneInfo(site_zone))
    assert heading == f"S1: times in {site_zone} (the site's time)"
    assert f"computed {local:%Y-%m-%d %H:%M} by ops-wang" in first and "Z" not in first, first


def test_approve_takes_the_version_looked_at_and_says_why_a_draft_is_not_one(month):
    settle_w4(month)
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--draft")  # version 1: a look-only draft
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", check=False)
    assert refused.returncode == 1
    assert "version 1 is a draft (computed with --draft to look at it)" in refused.stderr
    assert "not final" not in refused.stderr, "the month is final: that is not the reason"
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")  # version 2
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")  # version 3
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--draft")  # version 4
    older = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--version", "2", check=False)
    assert older.returncode == 1 and "version 2 is not the latest computed version: version 3 is" in older.stderr
    draft = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--version", "4", check=False)
    assert draft.returncode == 1 and "version 4 is a draft" in draft.stderr
    missing = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--version", "9", check=False)
    assert missing.returncode == 1 and "has no version 9" in missing.stderr
    assert "version 3 approved" in month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--version", "3").stdout
    # A look-only draft after the approval does not let a correction through without its reason.
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--draft")
    again = month.cli("wages", "run", *PERIOD, "--by", "ops-wang", check=False)
    assert again.returncode == 1 and "needs --reason" in again.stderr


def test_a_draft_of_a_month_not_final_says_so(month, tmp_path):
    settle_w4(month)
    month.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops-wang", "--draft")
    refused = month.cli("wages", "approve", "--site", "S1", "--period", "2026-11", "--by", "ops-zhao", check=False)
    assert refused.returncode == 1
    assert "version 1 is a draft (the period was not final when it was computed)" in refused.stderr


def test_the_table_as_a_workbook_keeps_money_exact_and_says_it_in_chinese(month, tmp_path):
    """`wages show --xlsx`: amounts are exact yuan numbers (a negative net too), flags and statuses in words,
    no ID number or account; the file is new and 0600."""
    import stat
    from decimal import Decimal

    import openpyxl

    settle_w4(month)
    month.cli("wages", "deduct", *PERIOD, "--worker", "W5", "--item", "借支", "--amount-yuan", "2000",
              "--reason", "advance", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    month.cli("worker", "edit", "W1", "--team", "钢筋班", "--trade", "钢筋工", "--by", "ops-li")
    out = tmp_path / "table.xlsx"
    said = month.cli("wages", "show", *PERIOD, "--xlsx", str(out)).stdout
    assert said.startswith(f"{out}: S1 2026-10 version ") and stat.S_IMODE(out.stat().st_mode) == 0o600
    sheet = openpyxl.load_workbook(out).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    header_at = next(i for i, row in enumerate(values) if row[0] == "工号")
    assert values[header_at][:5] == ["工号", "姓名", "单位", "班组", "工种"]
    assert values[header_at][8:12] == ["单价(元)", "应发(元)", "扣款(元)", "实发(元)"]
    rows = {row[0]: row for row in values[header_at + 1:] if row[0] and row[0].startswith("W")}
    assert rows["W5"][9:12] == [Decimal("400"), Decimal("2000"), Decimal("-1600")] or \
        [float(v) for v in rows["W5"][9:12]] == [400.0, 2000.0, -1600.0]
    assert rows["W5"][12] == "待决定" and "扣款超过应发" in rows["W5"][13]
    assert rows["W4"][13] == "银行人工录入" and rows["W1"][7] == "按日"
    # The team and trade the worker has now (the line keeps none), said so under the table.
    assert rows["W1"][3:5] == ["钢筋班", "钢筋工"] and rows["W5"][3:5] == [None, None]
    assert any(row[0] == "班组、工种：工人现在的登记" for row in values)
    net = next(c for r in sheet.iter_rows() for c in r if c.value is not None and c.row == header_at + 2 and c.column == 12)
    assert net.number_format == "0.00" and net.data_type == "n"
    flat = repr(values)
    assert "6222021234567890001" not in flat and "110101" not in flat  # no account, no ID number
    refused = month.cli("wages", "show", *PERIOD, "--xlsx", str(out), check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr


def test_the_table_says_when_it_was_run_and_approved_in_the_sites_time(month):
    """Reproduction (issue 22, item 6): `wages show` said `run by ops-wang at 2026-11-02T01:00:00.000Z`."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    settle_w4(month)
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    table = month.json("wages", "show", *PERIOD)
    heading = month.cli("wages", "show", *PERIOD).stdout.splitlines()[0]

    def local(utc_text: str) -> str:
        return f"{datetime.fromisoformat(utc_text).astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M}"

    assert f"run by ops-wang at {local(table['computed_at'])}" in heading
    assert f"approved by ops-zhao at {local(table['approved_at'])}; Asia/Shanghai time)" in heading
    assert table["computed_at"] not in heading and "Z" not in heading.split("run by")[1]
