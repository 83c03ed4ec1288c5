"""An employer's wage sheet: what the labour subcontractor claims for a month, read from CSV or XLSX.

Per worker: the days, the amount (gross, 应发) and the payee account; optionally the deductions (none
without the column), the name, the ID number, the hours and the net pay. Headers in Chinese or English
(``HEADERS``; a unit in brackets after a header, ``应发工资（元）``, is allowed; a header on two rows, 工资
merged over 应发, 扣款, 实发, is read as one; other columns are ignored and listed). A CSV is
UTF-8 (with or without a BOM) or, failing a strict UTF-8 reading, GB18030 (which contains GBK); the
encoding used is reported. An XLSX is read through openpyxl in the visible worksheet with the header
(a hidden one is never read); a number cell is taken through its shortest decimal text (``350.1`` stays
350.10 yuan, never the binary ``350.09999...``), and an account or ID number a spreadsheet stored as a
number with more digits than it keeps exactly is refused, and so is a formula in a line (what the file
stores for it need not be what the spreadsheet shows), but for an amount: the result the spreadsheet
stored is read when it is a whole fen within a thousandth of one (``1050.3000000000002`` is 1050.30;
``=D4*1.05`` stored as ``1050.305`` is refused: use ROUND(...,2)), and each one read is noted. Title rows above the header are skipped and said
so; a last row whose worker cell is a total (合计, total) is checked against the sum of the lines (where
its cells are values, not formulas) and not kept as a line.

An ID number and an account are checked as every payee's is (collector/identity.py: a check digit, a
birth date, 8 to 32 digits), and a 15-digit ID number is read in its 18-character form, the one the
registry keeps. Every bad row is reported with its line (CSV) or row (XLSX); the caller imports nothing when there is
any. Nothing is guessed: an amount with more than two decimals, a thousands separator or a currency sign
is a bad row, not a rounded one. The file is hostile until read: its size, its rows, and for a workbook
the size it unpacks to are bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from collector import identity
from collector.money import MoneyError, parse_yuan, yuan
from collector.tabular import (
    MAX_UNPACKED_BYTES,
    Formula,
    Problem,
    Row,
    Table,
    TableError,
    cell_text,
    read_table,
)
from gate_agent.protocol import valid_id

#: Field -> the headers that mean it (compared as collector/tabular.header_key compares them).
HEADERS = {
    "worker": ("worker", "worker id", "工号", "工人编号"),
    "name": ("name", "姓名"),
    "id_number": ("id number", "身份证号", "身份证号码"),
    "days": ("days", "出勤天数"),
    "hours": ("hours", "工时"),
    "amount": ("amount", "gross", "应发工资", "应发金额", "金额", "应发", "工资应发"),
    "deductions": ("deductions", "扣款", "扣款合计", "工资扣款", "代扣款"),
    "net": ("net", "实发", "实发工资", "实发金额", "工资实发"),
    "bank_account": ("bank account", "account", "银行账号", "银行卡号"),
}
REQUIRED = ("worker", "days", "amount", "bank_account")
#: Amounts a spreadsheet may have computed (a formula's result, to the fen: collector/tabular.amount_text).
AMOUNTS = ("amount", "deductions", "net")
IDENTIFIERS = ("worker", "id_number", "bank_account")
#: Bounds a real sheet never reaches, so that a hostile file cannot exhaust the bank's machine (what a
#: workbook may unpack to: tabular.MAX_UNPACKED_BYTES).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 20_000
MAX_TEXT = 100

_DAYS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2})?")
_HOURS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,2})?")

#: The file as a whole cannot be read as a wage sheet (one line naming it and saying why): a table that
#: cannot be read, whether tabular or this module finds it.
SheetError = TableError


@dataclass
class Sheet:
    file_name: str
    sha256: str
    format: str  # csv / xlsx
    encoding: str  # utf-8, utf-8 with BOM, gb18030; xlsx
    lines: list[dict] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deductions_column: bool = True  # without one, the sheet claims no deductions


def read_sheet(path: str | Path, *, period_days: int, sheet: str | None = None) -> tuple[Sheet, list[Problem]]:
    """The sheet and every bad row (SheetError when the file as a whole is not one). ``period_days``
    bounds the days a line can claim; ``sheet`` names the worksheet of a workbook."""
    table = read_table(path, fields=HEADERS, identify=("worker", "amount"), require=REQUIRED, identifiers=IDENTIFIERS,
                       amounts=AMOUNTS, sheet=sheet, totals="keep", what="a wage sheet", max_bytes=MAX_FILE_BYTES,
                       max_unpacked=MAX_UNPACKED_BYTES, max_rows=MAX_ROWS)
    result = Sheet(Path(path).name, table.sha256, table.format, table.encoding, ignored_columns=table.ignored_columns,
                   notes=table.notes, deductions_column="deductions" in table.columns)
    if not result.deductions_column:
        result.notes.append("no deductions column (扣款): the sheet claims no deductions")
    problems = table.problems
    seen: dict[str, str] = {}
    total: Row | None = None
    for row in table:
        if row.total:
            if total is not None:
                problems.append(row.problem(f"a second total row (the first is {total.position})"))
            total = row
            continue
        if total is not None:
            problems.append(total.problem("a total row must be the last row"))
            total = None
        line, errors = _line(row, period_days, seen)
        if errors:
            problems.append(row.problem("; ".join(errors)))
        elif line is not None:
            result.lines.append(line)
    if total is not None and not problems:  # with a bad row the sum means nothing
        problems.extend(_check_total(result, total, table))
    return result, problems


def _line(row: Row, period_days: int, seen: dict[str, str]) -> tuple[dict | None, list[str]]:
    errors = [f"{name} is longer than {MAX_TEXT} characters" for name, text in row.values.items() if len(text) > MAX_TEXT]
    if errors:
        return None, errors
    values = row.values
    worker = values["worker"]
    if not worker:
        errors.append("no worker id")
    elif not valid_id(worker):
        errors.append(f"worker id {worker!r} is not an id (letters, digits, '_', '.', '-')")
    elif worker in seen:
        errors.append(f"worker {worker} is also on {seen[worker]}")
    else:
        seen[worker] = row.position
    days = values["days"]
    if not _DAYS.fullmatch(days) or Decimal(days) > period_days:
        errors.append(f"days {days!r} is not a number of days from 0 to {period_days} (at most two decimals)")
    hours = values.get("hours") or None
    if hours is not None and (not _HOURS.fullmatch(hours) or Decimal(hours) > 24 * period_days):
        errors.append(f"hours {hours!r} is not a number of hours in the month (at most two decimals)")
    amounts: dict[str, int | None] = {}
    for name in ("amount", "deductions", "net"):
        text = values.get(name, "")
        if not text and name != "amount":
            amounts[name] = 0 if name == "deductions" else None  # an empty deductions cell: none
            continue
        try:
            amounts[name] = parse_yuan(text, what=name)
        except MoneyError as error:
            errors.append(str(error))
    amount, deducted, net = amounts.get("amount"), amounts.get("deductions"), amounts.get("net")
    if amount is not None and deducted is not None:
        if deducted > amount:
            errors.append(f"deductions {yuan(deducted)} exceed the amount {yuan(amount)}")
        elif net is not None and net != amount - deducted:
            errors.append(f"net {yuan(net)} is not the amount {yuan(amount)} less deductions {yuan(deducted)}")
    # The rules every payee is written under (collector.identity): a sheet's ID number and account are
    # compared with the registered ones, so a 15-digit ID number is read in its 18-character form.
    id_number = values.get("id_number", "").replace(" ", "") or None
    if id_number is not None:
        try:
            id_number = identity.id_number(id_number)
        except identity.PayeeError as error:
            errors.append(str(error))
    account = re.sub(r"[\s\-]", "", values["bank_account"])
    try:
        account = identity.bank_account(account)
    except identity.PayeeError as error:
        errors.append(str(error))
    if errors:
        return None, errors
    return {"source_row": row.number, "worker": worker, "name": values.get("name") or None, "id_number": id_number,
            "days": _canonical(days), "hours": None if hours is None else _canonical(hours),
            "amount_fen": amount, "deductions_fen": deducted, "net_fen": net, "bank_account": account}, []


def deductions_to_take(lines: list[dict], recorded: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """What taking a sheet's deductions adds per worker: the sheet's deductions column is the worker's
    whole deduction for the month, so only what it claims beyond ``recorded`` (the fen already recorded
    for the worker in the period, whatever their item or source) is taken; a sheet agreeing with what is
    recorded adds nothing. A sheet claiming less than is recorded is a disagreement, never a negative
    deduction: each such worker is named with the two figures (the second list), and nothing is taken."""
    taken, disagree = {}, []
    for line in lines:
        claimed, held = line["deductions_fen"], recorded.get(line["worker"], 0)
        if claimed < held:
            disagree.append(f"{line['worker']}: the sheet deducts {yuan(claimed)} yuan, {yuan(held)} are recorded")
        elif claimed > held:
            taken[line["worker"]] = claimed - held
    return taken, disagree


def _check_total(sheet: Sheet, total: Row, table: Table) -> list[Problem]:
    """A total row's amounts, where given, are the sums of the lines."""
    wrong, formulas = [], []
    for name, key in (("amount", "amount_fen"), ("deductions", "deductions_fen"), ("net", "net_fen")):
        if name not in table.columns or table.columns[name] >= len(total.cells):
            continue
        if isinstance(total.cells[table.columns[name]], Formula):
            # A total is the sum of the lines, which are values: nothing of it is read or stored.
            formulas.append(name)
            continue
        try:
            text = cell_text(total.cells[table.columns[name]])
            if not text:
                continue
            stated = parse_yuan(text, what=f"total {name}")
        except (ValueError, MoneyError) as error:
            wrong.append(str(error))
            continue
        summed = sum(line[key] or 0 for line in sheet.lines)
        if stated != summed:
            wrong.append(f"total {name} {yuan(stated)} is not the sum of the lines, {yuan(summed)}")
    if wrong:
        return [total.problem("; ".join(wrong))]
    # As the kept lines are referred to (their source_row): a row of a workbook, a line of a CSV.
    where = f"{'row' if table.format == 'xlsx' else 'line'} {total.number}"
    if formulas:
        sheet.notes.append(f"total row ({where}): {', '.join(formulas)} a formula, not compared (the lines are summed)")
    if len(formulas) < sum(name in table.columns for name in ("amount", "deductions", "net")):
        sheet.notes.append(f"total row ({where}) agrees with the lines")
    return []


def _canonical(text: str) -> str:
    """'22.0' -> '22', '21.50' -> '21.5' (a count as a person writes it)."""
    value = Decimal(text)
    return str(int(value)) if value == value.to_integral_value() else str(value.normalize())
