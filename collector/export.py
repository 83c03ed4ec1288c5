"""Output formats for bank ops: JSON for systems, CSV for spreadsheets.

CSV is written for Excel as bank ops in China use it: UTF-8 with a byte order mark (without one, Excel
on Chinese Windows reads 王伟 as 鐜嬩紵), times as the site's local ``YYYY-MM-DD HH:MM`` (which Excel
reads as a time; the site column says whose zone), and flags joined with ``;`` as everywhere else.

Names and employers come from outside (worker CSV files, the CLI), and bank ops open the CSV in a
spreadsheet, which would run a cell such as ``=HYPERLINK(...)`` as a formula. So every text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP's list) gets a leading single
quote, and so does one that already starts with a quote, so that removing one leading quote from any
text cell always gives the value back. Numbers this module formats itself, and amounts in yuan the
system formatted (a negative net included), are written as they are.
"""

from __future__ import annotations

import re

from gate_agent.logsetup import safe_json

#: ``team`` and ``trade`` are the worker's as registered now (what a day keeps names no team).
ATTENDANCE_COLUMNS = ("worker", "name", "employer", "team", "trade", "site", "date", "first_in", "last_out",
                      "worked_minutes", "hours", "status", "flags", "final")
PAYROLL_COLUMNS = ("site", "from", "to", "worker", "name", "employer", "team", "trade", "days_present", "worked_minutes",
                   "hours", "days_flagged", "provisional_days")
#: A workbook's note on its 班组 and 工种 columns.
TEAMS_NOTE = "班组、工种：工人现在的登记"
#: Columns holding a local ISO time with offset (2026-11-28T08:00:00+08:00): written as 2026-11-28 08:00.
TIME_COLUMNS = frozenset({"first_in", "last_out", "since"})
BOM = "\ufeff"
#: Columns whose values are integers we count: written as numbers, never read as formulas.
NUMBER_COLUMNS = frozenset({"worked_minutes", "days_present", "days_flagged", "provisional_days"})
#: Columns of amounts in yuan this system formats itself (collector.money.yuan): written as numbers, a
#: negative one too (a minus sign there starts a number, not a formula); anything else in them is refused.
YUAN_COLUMNS = frozenset({"rate_yuan", "gross_yuan", "deductions_yuan", "net_yuan"})
_YUAN = re.compile(r"-?[0-9]+\.[0-9]{2}")
#: What a spreadsheet may take as the start of a formula, and the quote that marks a neutralised cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def to_json(rows: list[dict]) -> str:
    """Names as they are (Chinese included), control characters as JSON escapes."""
    return safe_json(rows, indent=2)


def neutralise(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading quote before a formula start (or a quote)."""
    return QUOTE + text if text.startswith(FORMULA_STARTS + (QUOTE,)) else text


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    """One row per record, after a byte order mark; flags joined with ';'; hours as a decimal a
    spreadsheet sums; local times as Excel reads them."""
    lines = [BOM + _csv_line(columns)]
    for row in rows:
        values = []
        for column in columns:
            if column == "hours":
                values.append(f"{row['worked_minutes'] / 60:.2f}")
            elif column in NUMBER_COLUMNS:
                values.append(_integer(row, column))
            elif column in YUAN_COLUMNS:
                values.append(_yuan(row, column))
            elif column == "flags":
                values.append(neutralise(";".join(row["flags"])))
            elif column == "final":
                values.append("yes" if row["final"] else "no")
            elif column in TIME_COLUMNS and row.get(column):
                values.append(spreadsheet_time(row[column]))
            else:
                value = row.get(column)
                values.append("" if value is None else neutralise(str(value)))
        lines.append(_csv_line(values))
    return "".join(lines)


def spreadsheet_time(local_iso: str) -> str:
    """2026-11-28T08:00:00+08:00 -> 2026-11-28 08:00 (the offset is the site's, named by the row)."""
    return f"{local_iso[:10]} {local_iso[11:16]}"


def _csv_line(cells) -> str:
    """RFC 4180 quoting, one line ending in LF. The csv module leaves a lone CR in a cell unquoted when
    lines end in LF, and a reader then splits the row there."""
    quoted = ['"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell for cell in cells]
    return ",".join(quoted) + "\n"


def _yuan(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _YUAN.fullmatch(value):
        raise TypeError(f"{column} must be an amount in yuan with two decimals, not {value!r}")
    return value


def _integer(row: dict, column: str) -> str:
    value = row[column]
    # bool is an int too, and anything else would be text reaching a number column: refuse both.
    if type(value) is not int:
        raise TypeError(f"{column} must be an integer, not {value!r}")
    return str(value)


def attendance_sheet(rows: list[dict], *, site: str, first: str, last: str):
    """The attendance rows as a worksheet (collector.workbook): Chinese headers, statuses and flags in the
    words of the foreman's page, times as the site's ``HH:MM`` (with the date when it is not the day's)."""
    from collector import words
    from collector.workbook import Sheet

    header = ["工号", "姓名", "单位", "班组", "工种", "工地", "日期", "上班", "下班", "工时(小时)", "工作分钟", "状态", "标记",
              "已确定"]
    body = [[r["worker"], r["name"] or "", r["employer"] or "", r.get("team") or "", r.get("trade") or "", r["site"],
             r["date"], _clock(r["first_in"], r["date"]), _clock(r["last_out"], r["date"]),
             round(r["worked_minutes"] / 60, 2), r["worked_minutes"], words.status(r["status"]), words.flags(r["flags"]),
             r["final"]] for r in rows]
    return Sheet(title="考勤", header=header, rows=body, heading=[f"{site} 考勤 {first} 至 {last}（工地时间）"],
                 notes=[TEAMS_NOTE], widths=[10, 10, 16, 10, 10, 8, 11, 8, 12, 10, 9, 14, 40, 7], frozen=2)


def payroll_sheet(rows: list[dict], *, site: str, first: str, last: str):
    """The payroll rows (days and hours per worker) as a worksheet with Chinese headers."""
    from collector.workbook import Sheet

    header = ["工号", "姓名", "单位", "班组", "工种", "出勤天数", "工作分钟", "工时(小时)", "待核天数", "未确定天数"]
    body = [[r["worker"], r["name"] or "", r["employer"] or "", r.get("team") or "", r.get("trade") or "",
             r["days_present"], r["worked_minutes"], round(r["worked_minutes"] / 60, 2), r["days_flagged"],
             r["provisional_days"]] for r in rows]
    return Sheet(title="出勤汇总", header=header, rows=body, heading=[f"{site} 出勤汇总 {first} 至 {last}"],
                 notes=[TEAMS_NOTE], widths=[10, 10, 16, 10, 10, 9, 9, 10, 9, 10], frozen=2)


def _clock(local_iso: str | None, day: str) -> str:
    """08:00, or 11-03 06:00 for a time on another date than the day's (an overnight shift's OUT)."""
    if not local_iso:
        return ""
    return local_iso[11:16] if local_iso[:10] == day else f"{local_iso[5:10]} {local_iso[11:16]}"


#: A wage line's own flags in Chinese (a day's flags are in the page's words, collector.words).
WAGE_FLAG_WORDS = {
    "rate_changed": "月内工资标准有变化", "days_to_decide": "有待决定的天", "no_terms": "没有工资标准",
    "no_bank_account": "没有银行账号", "no_id_number": "没有身份证号", "no_contact": "没有联系方式",
    "deductions_exceed_gross": "扣款超过应发", "deductions_over_half": "扣款超过应发的一半",
    "below_minimum": "低于最低工资", "back_pay": "补发", "shared_account": "与其他工人共用银行账户",
    "duplicate_id": "与其他工人身份证号相同", "short_day": "出勤时间不足一个计薪日", "contested": "考勤记录有争议",
    "over_bound": "金额超出上限", "payee_refused": "银行拒收过此收款人",
}
LINE_STATUS_WORDS = {"payable": "可支付", "needs_decision": "待决定"}


def wage_table_sheet(table: dict, lines: list[dict]):
    """A version of a wage table as a worksheet: Chinese headers, amounts in yuan as exact numbers, statuses
    and flags in words; no ID number, phone or account (the batch file is where a payment needs them)."""
    from decimal import Decimal

    from collector import words
    from collector.money import yuan
    from collector.workbook import Sheet

    def amount(fen: int | None):
        return None if fen is None else Decimal(yuan(fen))

    def flagged(flags: list[str]) -> str:
        wage = [WAGE_FLAG_WORDS[f] for f in flags if f in WAGE_FLAG_WORDS]
        day = words.flags([f for f in flags if f not in WAGE_FLAG_WORDS])
        return "；".join(wage + ([day] if day else []))

    header = ["工号", "姓名", "单位", "班组", "工种", "天数", "工时(小时)", "计薪方式", "单价(元)", "应发(元)", "扣款(元)",
              "实发(元)", "状态", "标记"]
    body = [[line["worker"], line["name"] or "", line["employer"] or "", line.get("team") or "", line.get("trade") or "",
             line["days"],
             round(line["worked_minutes"] / 60, 2), {"day": "按日", "hour": "按时"}.get(line["basis"] or "", ""),
             amount(line["rate_fen"]), amount(line["gross_fen"]), amount(line["deductions_fen"]), amount(line["net_fen"]),
             LINE_STATUS_WORDS.get(line["status"], line["status"]), flagged(line["flags"])] for line in lines]
    state = {"approved": "已审批", "computed": "未审批", "draft": "草稿", "superseded": "已被新版本取代"}
    heading = (f"{table['site']} {table['period']} 工资表 第 {table['version']} 版（"
               f"{state.get(table['status'], table['status'])}{'' if table['final'] else '，不是最终版，不支付'}）")
    return Sheet(title=f"{table['period']} 工资表", header=header, rows=body,
                 heading=[heading, f"计算 {table['computed_by']}" + (f"，审批 {table['approved_by']}" if table["approved_by"] else "")],
                 notes=[f"实发合计 {yuan(sum(line['net_fen'] for line in lines if line['status'] == 'payable'))} 元（可支付的行）",
                        TEAMS_NOTE],
                 widths=[10, 10, 16, 10, 10, 6, 10, 8, 10, 11, 10, 11, 8, 40], frozen=2)
