"""An employer's wage sheet: what the labour subcontractor claims for a month, read from CSV or XLSX.

Per worker: the days, the amount (gross, 应发), the deductions and the payee account; optionally the
name, the ID number, the hours and the net pay. Headers in Chinese or English (``HEADERS``; a unit in
brackets after a header, ``应发工资（元）``, is allowed; other columns are ignored and listed). A CSV is
UTF-8 (with or without a BOM) or, failing a strict UTF-8 reading, GB18030 (which contains GBK); the
encoding used is reported. An XLSX is read through openpyxl, its first worksheet; a number cell is taken
through its shortest decimal text (``350.1`` stays 350.10 yuan, never the binary ``350.09999...``), and
an account or ID number a spreadsheet stored as a number with more digits than it keeps exactly is
refused. Title rows above the header are skipped and said so; a last row whose worker cell is a total
(合计, total) is checked against the sum of the lines and not kept as a line.

Every bad row is reported with its line (CSV) or row (XLSX); the caller imports nothing when there is
any. Nothing is guessed: an amount with more than two decimals, a thousands separator or a currency sign
is a bad row, not a rounded one. The file is hostile until read: its size, its rows, and for a workbook
the size it unpacks to are bounded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from gate_agent.logsetup import escape_control
from gate_agent.protocol import valid_id

from . import masking
from .errors import InputError
from .money import MoneyError, parse_yuan, yuan

#: Field -> the headers that mean it (compared without case, spaces, '_' or '-').
HEADERS = {
    "worker": ("worker", "worker id", "工号", "工人编号"),
    "name": ("name", "姓名"),
    "id_number": ("id number", "身份证号", "身份证号码"),
    "days": ("days", "出勤天数"),
    "hours": ("hours", "工时"),
    "amount": ("amount", "gross", "应发工资", "应发金额", "金额"),
    "deductions": ("deductions", "扣款"),
    "net": ("net", "实发", "实发工资", "实发金额"),
    "bank_account": ("bank account", "account", "银行账号", "银行卡号"),
}
REQUIRED = ("worker", "days", "amount", "deductions", "bank_account")
#: A worker cell saying the row is the sheet's total.
TOTAL_WORDS = ("合计", "总计", "total")
#: Bounds a real sheet never reaches, so that a hostile file cannot exhaust the bank's machine.
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_ROWS = 20_000
HEADER_WITHIN = 10
MAX_TEXT = 100

_DAYS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2})?")
_HOURS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,2})?")
_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]|[0-9]{15}")
_ACCOUNT = re.compile(r"[0-9]{8,32}")
#: A spreadsheet keeps 15 significant digits of a number exactly; an identifier longer than that must be text.
_EXACT_DIGITS = 15


class SheetError(InputError):
    """The file as a whole cannot be read as a wage sheet (one line saying why)."""


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # "line" (CSV) or "row" (XLSX)
    number: int
    problem: str

    def __str__(self) -> str:
        return f"{self.where} {self.number}: {self.problem}"


@dataclass
class Sheet:
    file_name: str
    sha256: str
    format: str  # csv / xlsx
    encoding: str  # utf-8, utf-8 with BOM, gb18030; xlsx
    lines: list[dict] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def header_key(text: object) -> str:
    """``' 应发工资（元）'`` -> ``'应发工资'``; ``'Bank_Account'`` -> ``'bankaccount'``."""
    key = str(text).strip().lstrip("\ufeff").lower()
    key = re.sub(r"\s*[（(][^（）()]*[）)]$", "", key)
    return re.sub(r"[\s_\-]+", "", key)


_FIELD_OF = {header_key(alias): name for name, aliases in HEADERS.items() for alias in aliases}


def read_sheet(path: str | Path, *, period_days: int) -> tuple[Sheet, list[Problem]]:
    """The sheet and every bad row (SheetError when the file as a whole is not one). ``period_days``
    bounds the days a line can claim."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SheetError(f"{size} bytes is larger than a wage sheet ({MAX_FILE_BYTES} at most)")
        data = path.read_bytes()
    except OSError as error:
        raise SheetError(f"cannot read it: {error.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if data.startswith(b"PK\x03\x04"):
        sheet, rows, where = Sheet(path.name, digest, "xlsx", "xlsx"), _xlsx_rows(data), "row"
    elif data.startswith(b"\xd0\xcf\x11\xe0"):
        raise SheetError("an old binary Excel file (.xls): save it as .xlsx or CSV")
    else:
        text, encoding = decode(data)
        sheet, rows, where = Sheet(path.name, digest, "csv", encoding), _csv_rows(text), "line"
    problems = _read_rows(sheet, rows, where, period_days)
    return sheet, problems


def decode(data: bytes) -> tuple[str, str]:
    """The text of a CSV and the encoding it was read with: UTF-8 strictly (a BOM is allowed), else
    GB18030, else SheetError."""
    if b"\x00" in data:
        raise SheetError("it holds NUL bytes: not a CSV text file (UTF-16? save it as UTF-8 CSV)")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8 with BOM"
        except UnicodeDecodeError as error:
            raise SheetError(f"it starts with a UTF-8 BOM but is not UTF-8 (byte {error.start + 3})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as error:
        raise SheetError(f"it is neither UTF-8 nor GB18030/GBK text (byte {error.start})") from None


def _csv_rows(text: str):
    """(line number where the row starts, cells) for each row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as error:
        raise SheetError(f"line {reader.line_num}: not CSV ({error})") from None


def _xlsx_rows(data: bytes):
    """(row number, cell values) of the first worksheet; the workbook's other worksheets are named in a
    first item (0, names) so that they are listed, not silently skipped."""
    from gate_agent.extras import require

    # Only for a workbook: the collector starts without openpyxl, and a CSV sheet reads without it.
    # defusedxml too: openpyxl refuses the XML entity tricks a hostile workbook can hold only when it is
    # installed, so a workbook is not opened without it.
    require("defusedxml", "bank")
    load_workbook = require("openpyxl", "bank").load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as error:
        raise SheetError(f"not a readable .xlsx (zip): {error}") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise SheetError(f"it unpacks to {unpacked} bytes, more than a wage sheet ({MAX_UNPACKED_BYTES} at most)")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # noqa: BLE001 - a hostile workbook may fail anywhere inside the library
        raise SheetError(f"not a workbook that can be read: {type(error).__name__}: {_quoted(error)}") from None
    try:
        sheets = workbook.worksheets
        if not sheets:
            raise SheetError("the workbook has no worksheet")
        yield 0, [s.title for s in sheets]
        sheet = sheets[0]
        sheet.reset_dimensions()  # a file's own stated dimensions may be wrong: read every row there is
        # From row 1 whatever the file says its first row is, so that numbers are the spreadsheet's own.
        for number, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
            yield number, list(values)
    except SheetError:
        raise
    except Exception as error:  # noqa: BLE001 - as above, while the rows are parsed lazily
        raise SheetError(f"not a workbook that can be read: {type(error).__name__}: {_quoted(error)}") from None
    finally:
        workbook.close()


def _quoted(error: Exception) -> str:
    """What a library said about a hostile file: short, and one line whatever the file held."""
    return escape_control(str(error)[:200])


def _blank(cells: list) -> bool:
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells)


def _read_rows(sheet: Sheet, rows, where: str, period_days: int) -> list[Problem]:
    problems: list[Problem] = []
    columns: dict[str, int] | None = None
    skipped_above = 0
    named: set[int] = set()
    unnamed_used: set[int] = set()
    seen: dict[str, int] = {}
    total: tuple[int, list] | None = None
    count = 0
    for number, cells in rows:
        if number == 0:  # a workbook's worksheets
            if len(cells) > 1:
                sheet.notes.append(f"read the first worksheet {cells[0]!r}; not read: "
                                   + ", ".join(repr(name) for name in cells[1:]))
            continue
        count += 1
        if count > MAX_ROWS:
            raise SheetError(f"more than {MAX_ROWS} rows: not a wage sheet of one site and month")
        if _blank(cells):
            continue
        if columns is None:
            columns = _header(cells, sheet, number, where)
            if columns is None:
                skipped_above += 1
                if skipped_above >= HEADER_WITHIN:
                    break
                continue
            named = {i for i, cell in enumerate(cells) if cell is not None and str(cell).strip()}
            if skipped_above:
                sheet.notes.append(f"skipped {skipped_above} row(s) above the header ({where} {number})")
            continue
        unnamed_used |= {i for i, cell in enumerate(cells) if i not in named and not _blank([cell])}
        worker_cell = cells[columns["worker"]] if columns["worker"] < len(cells) else None
        if isinstance(worker_cell, str) and header_key(worker_cell) in TOTAL_WORDS:
            if total is not None:
                problems.append(Problem(where, number, f"a second total row (the first is {where} {total[0]})"))
            total = (number, cells)
            continue
        if total is not None:
            problems.append(Problem(where, total[0], "a total row must be the last row"))
            total = None
        line, errors = _line(cells, columns, number, where, period_days, seen)
        if errors:
            problems.append(Problem(where, number, "; ".join(errors)))
        elif line is not None:
            sheet.lines.append(line)
    if columns is None:
        raise SheetError(f"no header row in the first {HEADER_WITHIN} rows with the columns "
                         + ", ".join(_expected(name) for name in REQUIRED))
    sheet.ignored_columns.extend(_column_name(i, where) + " (no header)" for i in sorted(unnamed_used))
    if total is not None and not problems:  # with a bad row the sum means nothing
        problems.extend(_check_total(sheet, total, columns, where))
    if not sheet.lines and not problems:
        raise SheetError("no lines under the header")
    return problems


def _column_name(index: int, where: str) -> str:
    """Column 0 -> 'column A' in a workbook, 'column 1' in a CSV."""
    if where == "row":
        from openpyxl.utils import get_column_letter  # there: a row of a workbook was read with it

        return f"column {get_column_letter(index + 1)}"
    return f"column {index + 1}"


def _expected(name: str) -> str:
    return "/".join(alias for alias in HEADERS[name] if not alias.isascii()) + "/" + HEADERS[name][0].replace(" ", "_")


def _header(cells: list, sheet: Sheet, number: int, where: str) -> dict[str, int] | None:
    """Field -> column index if ``cells`` is the header row (it names the worker and the amount); None
    for a title row above it. A header naming a field twice, or lacking one, refuses the file."""
    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if cell is None or not str(cell).strip():
            continue
        name = _FIELD_OF.get(header_key(cell))
        if name is not None and name in found:
            raise SheetError(f"{where} {number}: two columns mean {name} "
                             f"({str(cells[found[name]]).strip()!r} and {str(cell).strip()!r})")
        if name is not None:
            found[name] = index
    if "worker" not in found or "amount" not in found:
        return None
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise SheetError(f"{where} {number}: the header lacks " + ", ".join(_expected(name) for name in missing))
    known = set(found.values())
    sheet.ignored_columns.extend(str(cell).strip()[:MAX_TEXT] for index, cell in enumerate(cells)
                                 if index not in known and cell is not None and str(cell).strip())
    return found


def cell_text(value: object, *, identifier: bool = False) -> str:
    """A cell as text. A workbook's number is taken through its shortest decimal text (the one the
    spreadsheet wrote), never through binary arithmetic; an identifier (worker, ID number, account)
    stored as a number is refused once it has more digits than a spreadsheet keeps exactly."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise InputError(f"{str(value).upper()} is a true/false cell")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{value} is not a number")
        if identifier:
            if value.is_integer() and abs(value) < 10 ** _EXACT_DIGITS:
                return str(int(value))
            raise InputError(f"a number cell ({value!r}) whose digits the spreadsheet may have changed: "
                             "type the column as text")
        return repr(value)
    if isinstance(value, datetime | date | time):
        raise InputError(f"a date or time cell ({value})")
    raise InputError(f"a {type(value).__name__} cell")


def _line(cells: list, columns: dict[str, int], number: int, where: str, period_days: int,
          seen: dict[str, int]) -> tuple[dict | None, list[str]]:
    errors: list[str] = []
    values: dict[str, str] = {}
    for name, index in columns.items():
        raw = cells[index] if index < len(cells) else None
        try:
            values[name] = cell_text(raw, identifier=name in ("worker", "id_number", "bank_account"))
        except ValueError as error:
            errors.append(f"{name}: {error}")
            values[name] = ""
        if len(values[name]) > MAX_TEXT:
            errors.append(f"{name} is longer than {MAX_TEXT} characters")
            values[name] = ""
    if errors:
        return None, errors
    worker = values["worker"]
    if not worker:
        errors.append("no worker id")
    elif not valid_id(worker):
        errors.append(f"worker id {worker!r} is not an id (letters, digits, '_', '.', '-')")
    elif worker in seen:
        errors.append(f"worker {worker} is also on {where} {seen[worker]}")
    else:
        seen[worker] = number
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
            errors.append(str(error) + (" (empty: a formula no spreadsheet computed reads so)"
                                        if not text and where == "row" else ""))
    amount, deducted, net = amounts.get("amount"), amounts.get("deductions"), amounts.get("net")
    if amount is not None and deducted is not None:
        if deducted > amount:
            errors.append(f"deductions {yuan(deducted)} exceed the amount {yuan(amount)}")
        elif net is not None and net != amount - deducted:
            errors.append(f"net {yuan(net)} is not the amount {yuan(amount)} less deductions {yuan(deducted)}")
    id_number = values.get("id_number", "").replace(" ", "").upper() or None
    if id_number is not None and not _ID_NUMBER.fullmatch(id_number):
        errors.append(f"ID number {masking.id_number(id_number)!r} is not 18 characters (or 15 digits)")
    account = re.sub(r"[\s\-]", "", values["bank_account"])
    if not _ACCOUNT.fullmatch(account):
        errors.append(f"bank account {masking.account(account) or ''!r} is not 8 to 32 digits")
    if errors:
        return None, errors
    return {"source_row": number, "worker": worker, "name": values.get("name") or None, "id_number": id_number,
            "days": _canonical(days), "hours": None if hours is None else _canonical(hours),
            "amount_fen": amount, "deductions_fen": deducted, "net_fen": net, "bank_account": account}, []


def _check_total(sheet: Sheet, total: tuple[int, list], columns: dict[str, int], where: str) -> list[Problem]:
    """A total row's amounts, where given, are the sums of the lines."""
    number, cells = total
    wrong = []
    for name, key in (("amount", "amount_fen"), ("deductions", "deductions_fen"), ("net", "net_fen")):
        if name not in columns or columns[name] >= len(cells):
            continue
        try:
            text = cell_text(cells[columns[name]])
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
        return [Problem(where, number, "; ".join(wrong))]
    sheet.notes.append(f"total row ({where} {number}) agrees with the lines")
    return []


def _canonical(text: str) -> str:
    """'22.0' -> '22', '21.50' -> '21.5' (a count as a person writes it)."""
    value = Decimal(text)
    return str(int(value)) if value == value.to_integral_value() else str(value.normalize())
