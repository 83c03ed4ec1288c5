"""One way to read a table from outside: the worker file, an employer's wage sheet, a bank's return.

Site offices send what Excel or WPS on Chinese Windows saves: CSV in UTF-8 (with or without a BOM) or
in GB18030 (which contains GBK and GB2312), or an XLSX workbook, read through openpyxl (read-only;
defusedxml refuses the XML entity tricks). A CSV is one encoding throughout: one that is UTF-8 in some
lines and GBK in others is refused, not read as mojibake. Above the header there may be title rows: the
header is the first row, among the first few that are not blank, naming the columns the caller
identifies it by, each through any of its spellings (``fields``: Chinese or English, compared after
``header_key``), each field once. A workbook is read in what a person sees of it: its visible worksheets
only (the one the caller names, or the only one with such a header; several are a clear error), and a
hidden row or a hidden column of the table is a problem, not read.

Rows come with where they are: the line a CSV row starts on, the worksheet and row of a workbook's row.
Blank rows are skipped and shift nothing. A total row (合计, 总计, total) is skipped, kept marked, or a
problem, as the caller says. Cells come as text: a number cell through its shortest decimal text, and an
identifier (an account, an ID number) that a spreadsheet turned into a number it may have rounded, or
into scientific notation, is a problem of its row, not a guess; so is a formula (the value a workbook
stores for it need not be what the spreadsheet shows) and a cell longer than any value of these tables.
Problems of rows are collected (``Problem(where, message)``); a file that cannot be read as a table at
all is one ``TableError``. Everything is bounded by the work it takes to read (the file's size; a
workbook's parts, what they unpack to, how far they pack, the longest run of XML without markup, the
shared strings, the columns and the cells; the rows) and nothing a file holds raises anything else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import unicodedata
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from gate_agent.logsetup import escape_control
from gate_agent.protocol import quoted

from .errors import InputError

#: A row whose first cell says it is the table's total (compared as headers are, ``合 计：`` included).
TOTAL_WORDS = ("合计", "总计", "total")
#: What a workbook may unpack to (a zip of a few kilobytes can unpack to gigabytes).
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
#: The parts of a workbook's zip (a workbook of a few sheets has some 10 to 30).
MAX_PARTS = 1000
#: An XML part larger than RATIO_FROM bytes packs at most MAX_RATIO times (a spreadsheet's XML packs
#: some 10 to 20 times; a 95 MB XML comment packs into 100 KB).
MAX_RATIO = 100
RATIO_FROM = 1024 * 1024
#: The longest run of a part's XML between two '<' (a text, a comment, an attribute): a cell holds at most
#: 32,767 characters, and the XML parser's time grows with the square of such a run.
MAX_TOKEN = 256 * 1024
#: The columns a worksheet's row may reach (a cell in column XFD makes each row 16,384 cells wide).
MAX_COLUMNS = 1024
#: The cells read from a workbook (each row as wide as its last cell, a blank row as one), and its shared
#: strings at most as many.
MAX_CELLS = 2_000_000
#: The characters of a cell the caller reads: more is no name, account or reason of these tables.
MAX_CELL_TEXT = 1000
#: The rows of a worksheet Excel can hold: a workbook's row numbers are bounded so even when the caller
#: sets no bound (a row numbered 10**9 would otherwise make as many blank rows to walk past).
MAX_SHEET_ROWS = 1_048_576
#: The header is among this many rows that are not blank.
HEADER_WITHIN = 10
#: A spreadsheet keeps 15 significant digits of a number exactly; an identifier longer than that is text.
EXACT_DIGITS = 15
#: What a header or a title shown in a message or a note is cut to.
SHOWN = 100

_UTF8_BOM = b"\xef\xbb\xbf"
_OLE = b"\xd0\xcf\x11\xe0"  # the old binary Excel (.xls) and other OLE files
_ZIP = b"PK\x03\x04"
#: How a spreadsheet writes a long number it rounded: 6.22202E+18 (a sign always, so a card UID such as
#: 1E456789 is not one).
_SCIENTIFIC = re.compile(r"[+-]?[0-9](\.[0-9]+)?[eE][+-][0-9]+")
_UNIT = re.compile(r"\s*\([^()]*\)$")

Totals = Literal["skip", "keep", "problem"]


class TableError(InputError):
    """A file that cannot be read as a table at all (its encoding, its format, its size, its header);
    the message names the file and says why in one line. ``code`` says which of the common cases it is
    (``mixed_encodings``, ``no_header``...; '' for the rest) and ``details`` the figures of the message,
    so that a caller can say the same in another language."""

    def __init__(self, message: str, *, code: str = "", **details):
        super().__init__(message)
        self.code, self.details = code, details


class CellError(InputError):
    """A cell that cannot be read as a value of its column: ``code`` says why (``formula``, ``number``:
    an identifier a spreadsheet turned into a number, ``too_long``, ``true_false``, ``not_a_number``,
    ``date_cell``, ``other_cell``), ``shown`` what the message may show of it (never more digits of an
    identifier than the spreadsheet shows)."""

    def __init__(self, message: str, *, code: str, shown: str = ""):
        super().__init__(message)
        self.code, self.shown = code, shown


class TooManyRows(TableError):
    """More rows than the caller reads: refused on the first row past the bound, the rest of the file never
    parsed. ``blank`` says which bound: rows, blank ones included (``max_rows``), or rows under the header
    that are neither blank nor a total (``max_records``)."""

    def __init__(self, message: str, *, limit: int, blank: bool):
        super().__init__(message)
        self.limit, self.blank = limit, blank


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong at one place of a file: ``where`` names the file and the line (CSV) or the
    worksheet and row (XLSX): ``workers.csv: line 7``, ``wages.xlsx: 十月 row 12``. ``line`` is that
    line or row, ``code`` the kind of problem (``cells``: ``causes`` holds each field and its CellError;
    ``hidden_row``, ``total_row``), for a caller that says it in its own words."""

    where: str
    message: str
    line: int | None = None
    code: str = ""
    causes: tuple = ()

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True, slots=True)
class Row:
    """A row that is not blank, under the header. ``values`` has a text for every field the header
    names ('' for an empty cell); ``cells`` are the cells as read (text in a CSV, typed in a workbook)."""

    where: str  # the file and the position
    position: str  # "line 7", "十月 row 12"
    number: int  # the line the row starts on (CSV), its row (XLSX)
    values: dict[str, str]
    cells: tuple
    total: bool = False

    def problem(self, message: str) -> Problem:
        return Problem(self.where, message)


@dataclass(eq=False)
class Table:
    """A table whose header was found; iterate it (once) for its rows. ``problems`` fills as the rows
    are read, and a caller adds its own to it, so that they stay in the order of the rows."""

    name: str
    format: str  # csv / xlsx
    encoding: str  # utf-8, utf-8 with BOM, gb18030; xlsx
    sha256: str
    sheet: str | None  # the worksheet read (XLSX)
    header: str  # the header's position
    columns: dict[str, int]  # field -> column index
    epoch: date | None = None  # a workbook's day 0: its number cells are days since then (1899-12-30 or 1904-01-01)
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    read_columns: dict[str, str] = field(default_factory=dict)  # field -> the header that fed it, as written
    _rows: Iterator[Row] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Row]:
        rows, self._rows = self._rows, None
        if rows is None:
            raise RuntimeError("a table's rows are read once")
        return rows


def header_key(text: object) -> str:
    """How a header is compared: ``' 应发工资（元）'`` -> ``'应发工资'``, ``'Bank_Account'`` and
    ``'ＢＡＮＫ ＡＣＣＯＵＮＴ'`` -> ``'bankaccount'``: full-width forms as their ASCII (NFKC), without a BOM
    or other invisible format characters, case, spaces, '_' and '-', or a unit in brackets at the end."""
    key = unicodedata.normalize("NFKC", "" if text is None else str(text))
    key = "".join(c for c in key if unicodedata.category(c) != "Cf").strip().casefold()
    return re.sub(r"[\s_\-]+", "", _UNIT.sub("", key))


def in_order(problems: Sequence[Problem]) -> list[Problem]:
    """Problems in the order of their places: ``line 9`` before ``line 10`` (numbers compared as numbers)."""

    def key(problem: Problem) -> list:
        return [(0, int(part), "") if part.isdigit() else (1, 0, part)
                for part in re.split(r"([0-9]+)", problem.where)]

    return sorted(problems, key=key)


def cell_text(value: object, *, identifier: bool = False, as_date: bool = False, with_time: bool = False,
              amount: bool = False) -> str:
    """A cell as text, stripped. A workbook's number is taken through its shortest decimal text (the
    one the spreadsheet wrote: ``350.1``, never the binary ``350.09999...``). An ``identifier`` stored as
    a number is refused once it has more digits than a spreadsheet keeps exactly, and so is one in
    scientific notation (a CSV saved from such a cell); a date cell is its ISO date where ``as_date``
    allows one, and a date with a time of day ``YYYY-MM-DD HH:MM:SS`` where ``with_time`` does too. An
    ``amount`` (yuan to the fen) that a spreadsheet computed, a formula's stored result or a number cell
    pasted from one (``1050.3000000000002``), is the amount it rounds to within a thousandth of a fen
    (``amount_text``); a formula's result further from one is refused. A formula, and a text longer than MAX_CELL_TEXT, are refused. InputError says why."""
    if value is None:
        return ""
    if isinstance(value, Formula) and amount and value.stored is not None and not value.literal_differs():
        return amount_text(value.stored, formula=value)
    if isinstance(value, Formula):
        stored = f", stored as {quoted(value.stored, 20)}" if value.stored is not None else ""
        raise CellError(f"{value.cell} is a formula ({quoted(value.formula)}{stored}): what a spreadsheet shows "
                        "for it need not be what the file holds; paste the column as values (选择性粘贴 > 数值)",
                        code="formula", shown=value.formula[:40])
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_CELL_TEXT:
            raise CellError(f"{len(text)} characters, more than a cell of this table holds ({MAX_CELL_TEXT})",
                            code="too_long", shown=str(len(text)))
        if identifier and _SCIENTIFIC.fullmatch(text):
            raise CellError(f"{quoted(text)} is a number in scientific notation, whose digits the spreadsheet "
                            "has changed: type the column as text", code="number", shown=text)
        return text
    if isinstance(value, bool):
        raise CellError(f"{str(value).upper()} is a true/false cell", code="true_false", shown=str(value).upper())
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CellError(f"{value} is not a number", code="not_a_number", shown=str(value))
        if identifier:
            if value.is_integer() and abs(value) < 10 ** EXACT_DIGITS:
                return str(int(value))
            # Shown as a spreadsheet shows it (six digits): the whole number may be an ID or an account.
            shown = as_spreadsheet_shows(value)
            raise CellError(f"a number cell ({shown}) whose digits the spreadsheet may have changed: "
                            "type the column as text", code="number", shown=shown)
        return amount_text(repr(value)) if amount else repr(value)
    if as_date and isinstance(value, datetime) and value.time() == time(0):
        return value.date().isoformat()
    if as_date and with_time and isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if as_date and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, datetime | date | time | timedelta):
        raise CellError(f"a date or time cell ({value})", code="date_cell", shown=str(value))
    raise CellError(f"a {type(value).__name__} cell", code="other_cell", shown=type(value).__name__)


def as_spreadsheet_shows(value: float) -> str:
    """A large number as a spreadsheet's General format shows it: six significant digits,
    ``6.22202E+18`` (what the person sees in the cell, and no more of an identifier)."""
    mantissa, exponent = f"{value:.5E}".split("E")
    return f"{mantissa.rstrip('0').rstrip('.')}E{exponent[0]}{int(exponent[1:]):02d}"


#: How far from a fen a computed amount may be and still be that fen: binary floating point puts
#: 1050.30 at 1050.3000000000002, some 10**-13 yuan away; a computation that left a part of a fen
#: (1050.305) is a thousandth of a fen away or more.
FEN_TOLERANCE = Decimal("0.001")


def amount_text(text: str, *, formula: Formula | None = None) -> str:
    """A number a spreadsheet computed, as the amount in yuan it stands for: ``1050.3000000000002`` ->
    ``1050.30`` (within FEN_TOLERANCE of a fen). A number further from a fen is left as it is (the caller
    refuses its decimals), unless it is a ``formula``'s result: refused here, saying how to fix it."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        if formula is None:
            return text
        raise InputError(f"{formula.cell} is a formula ({quoted(formula.formula)}) whose result "
                         f"{quoted(text, 20)} is not a number")
    fen = value * 100
    nearest = fen.to_integral_value(rounding=ROUND_HALF_UP)
    if abs(fen - nearest) <= FEN_TOLERANCE:
        return str((nearest / 100).quantize(Decimal("0.01")))
    if formula is None:
        return text
    raise InputError(f"{formula.cell} is a formula result ({quoted(formula.formula)}, {quoted(text, 24)}) that is not "
                     "a whole fen: use ROUND(...,2) in the spreadsheet, or type the amount")


def decode(data: bytes, name: str) -> tuple[str, str]:
    """The text of a CSV and the encoding it was read with: UTF-8 strictly (a BOM is allowed), else
    GB18030 (a superset of GBK and GB2312); never read with replacement characters, and never a file
    that is UTF-8 in some lines and GBK in others (``mixed_lines``)."""
    if b"\x00" in data:
        raise TableError(f"{name}: it holds NUL bytes: not a CSV text file (UTF-16? save it as CSV UTF-8)",
                         code="nul_bytes")
    if data.startswith(_UTF8_BOM):
        try:
            return data[3:].decode("utf-8"), "utf-8 with BOM"
        except UnicodeDecodeError as error:
            at = error.start + 3
            raise TableError(f"{name}: line {_line_of(data, at)}: the file starts with a UTF-8 BOM but is not UTF-8 "
                             f"(byte {at}): save the whole file as CSV UTF-8", code="bom_not_utf8",
                             line=_line_of(data, at)) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    mixed = mixed_lines(data)
    if mixed is not None:
        raise TableError(f"{name}: mixed encodings: line {mixed[0]} is UTF-8 and line {mixed[1]} is not (GBK?): "
                         "save the whole file in one encoding (CSV UTF-8)", code="mixed_encodings",
                         utf8_line=mixed[0], other_line=mixed[1])
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as error:
        raise TableError(f"{name}: line {_line_of(data, error.start)}: neither UTF-8 nor GBK/GB18030 text "
                         f"(byte {error.start}): save it as CSV UTF-8", code="unknown_encoding",
                         line=_line_of(data, error.start)) from None


def mixed_lines(data: bytes) -> tuple[int, int] | None:
    """(the first line that reads as UTF-8, the first that is not UTF-8) of a file that is not UTF-8
    throughout, when it has both; else None.

    A line of GBK can be valid UTF-8 by chance (one in fifty lines with a short name is), so a line
    valid as UTF-8 counts as UTF-8 only when it reads better so (``_plausible``: common Chinese
    characters, less characters outside GB2312). UTF-8 Chinese read as GBK gives rare characters, and
    GBK read as UTF-8 gives rare characters or letters of other scripts, so the two readings of a real
    name are far apart.
    Lines are split at LF, which no multi-byte character of either encoding holds."""
    first_utf8 = first_other = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            first_other = first_other or number
        else:
            if first_utf8 is None and _reads_as_utf8(line, text):
                first_utf8 = number
        if first_utf8 and first_other:
            return first_utf8, first_other
    return None


def _reads_as_utf8(line: bytes, text: str) -> bool:
    try:
        other = line.decode("gb18030")
    except UnicodeDecodeError:
        return True
    (score, count), (other_score, other_count) = _plausible(text), _plausible(other)
    return score * other_count > other_score * count  # the better share of plausible characters


def _plausible(text: str) -> tuple[int, int]:
    """(how much ``text`` reads as Chinese, its characters that are not ASCII): its common characters
    (GB2312's first level, the 3,755 of everyday names and words) less its characters outside GB2312
    altogether (the rare ones a wrong decoding gives)."""
    score = count = 0
    for character in text:
        if character.isascii():
            continue
        count += 1
        try:
            encoded = character.encode("gb2312")
        except UnicodeEncodeError:
            score -= 1
            continue
        score += len(encoded) == 2 and 0xB0 <= encoded[0] <= 0xD7
    return score, count


def _line_of(data: bytes, at: int) -> int:
    return data.count(b"\n", 0, at) + 1


def read_table(source: str | Path | bytes, *, fields: Mapping[str, Sequence[str]], identify: Sequence[str],
               name: str | None = None, require: Sequence[str] = (), identifiers: Collection[str] = (),
               dates: Collection[str] = (), date_times: Collection[str] = (), amounts: Collection[str] = (),
               sheet: str | None = None, totals: Totals = "skip",
               what: str = "a table", max_bytes: int, max_unpacked: int = MAX_UNPACKED_BYTES,
               max_rows: int | None = None, max_records: int | None = None, max_cells: int = MAX_CELLS,
               header_within: int = HEADER_WITHIN) -> Table:
    """Open a table (a path, or the bytes of one named ``name``) and find its header: the first row
    naming every field of ``identify``; the header must also name every field of ``require``.
    ``fields`` maps each field to the headers that mean it (its own name is one). ``identifiers`` are
    the fields whose numbers a spreadsheet must not have rounded, ``dates`` those a date cell may fill
    (``date_times`` of them: with a time of day too), ``amounts`` the yuan a spreadsheet may have computed
    (``amount_text``: each formula result read is said in a note).
    ``max_rows`` bounds the rows, blank ones included, ``max_records`` the rows under the header that are
    not blank nor a total (TooManyRows), ``max_cells`` a workbook's cells. TableError for a file that is not such a table;
    ``what`` names the kind of table in its messages (``a wage sheet``)."""
    if totals not in ("skip", "keep", "problem"):
        raise ValueError(f"totals is skip, keep or problem, not {totals!r}")
    if name is None:
        name = "<bytes>" if isinstance(source, bytes) else str(source)
    spec = _Spec(name, fields, _aliases(fields), tuple(identify), tuple(require), frozenset(identifiers),
                 frozenset(dates), totals, what, header_within, max_records, frozenset(date_times),
                 frozenset(amounts))
    data = _load(source, name, max_bytes, what)
    digest = hashlib.sha256(data).hexdigest()
    if data.startswith(_OLE):
        raise TableError(f"{name}: an old binary Excel file (.xls): save it as .xlsx or CSV", code="old_xls")
    if data.startswith(_ZIP):
        return _workbook_table(data, digest, spec, sheet, max_unpacked,
                               min(max_rows or MAX_SHEET_ROWS, MAX_SHEET_ROWS), max_cells)
    if sheet is not None:
        raise TableError(f"{name}: a CSV file, not a workbook: it has no worksheet {quoted(sheet)}")
    text, encoding = decode(data, name)
    stream = _Stream(_csv_rows(text, name), spec, lambda number: f"line {number}", max_rows)
    header = _find_header(stream, spec)
    if header is None:
        raise _no_header(spec, [stream])
    return _table(spec, "csv", encoding, digest, None, header, stream)


# ============================================================================== the parts


@dataclass(frozen=True)
class _Spec:
    name: str
    fields: Mapping[str, Sequence[str]]
    aliases: dict[str, str]
    identify: tuple[str, ...]
    require: tuple[str, ...]
    identifiers: frozenset[str]
    dates: frozenset[str]
    totals: str
    what: str
    header_within: int
    max_records: int | None = None
    date_times: frozenset[str] = frozenset()
    amounts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Header:
    position: str
    columns: dict[str, int]
    cells: list
    skipped: int  # rows above it that are not blank


def _aliases(fields: Mapping[str, Sequence[str]]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name, spellings in fields.items():
        for spelling in (name, *spellings):
            key = header_key(spelling)
            if aliases.setdefault(key, name) != name:
                raise ValueError(f"the header {spelling!r} means both {aliases[key]} and {name}")
    return aliases


def _load(source: str | Path | bytes, name: str, max_bytes: int, what: str) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as error:
            raise TableError(f"{name}: cannot read it: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise TableError(f"{name}: larger than {what} can be ({max_bytes} bytes at most): split it", code="too_large",
                         limit=max_bytes)
    return data


class _Stream:
    """(number, cells) of a CSV or of a worksheet, without the blank rows; every row, blank or not,
    counted against the bound. ``best`` remembers the row naming most fields, for a missing header."""

    def __init__(self, rows: Iterator[tuple[int, list]], spec: _Spec, position, max_rows: int | None):
        self.rows, self.spec, self.position, self.max_rows = rows, spec, position, max_rows
        self.count = 0
        self.best: list[str] | None = None
        self.hidden: _Hidden | None = None  # a worksheet's hidden rows and columns

    def __iter__(self) -> Iterator[tuple[int, list]]:
        for number, cells in self.rows:
            self.count += 1
            if self.max_rows is not None and self.count > self.max_rows:
                raise TooManyRows(f"{self.spec.name}: more than {self.max_rows} rows: too many for {self.spec.what}",
                                  limit=self.max_rows, blank=True)
            if not _blank(cells):
                yield number, cells


def _blank(cells: Sequence) -> bool:
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells)


def _csv_rows(text: str, name: str) -> Iterator[tuple[int, list]]:
    """(the line the row starts on, cells) for each row; a quoted cell may hold line breaks."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise TableError(f"{name}: line {start}: a cell longer than {csv.field_size_limit()} characters: not a "
                             "table of this kind", code="cell_too_large", line=start,
                             limit=csv.field_size_limit()) from None
        raise TableError(f"{name}: line {start}: not CSV ({_said(error)})", code="not_csv", line=start,
                         detail=_said(error)) from None


def _find_header(stream: _Stream, spec: _Spec) -> _Header | None:
    """The header, the stream left just after it; None when none of the first rows that are not blank
    names the fields that identify it."""
    skipped = 0
    upper: list | None = None  # the row above, for a header on two rows
    for number, cells in stream:
        found: dict[str, int] = {}
        for index, cell in enumerate(cells):
            name = spec.aliases.get(header_key(cell)) if cell is not None else None
            if name is None:
                continue
            if name in found:
                raise TableError(f"{spec.name}: {stream.position(number)}: two columns mean {name} "
                                 f"({quoted(str(cells[found[name]]).strip())} and {quoted(str(cell).strip())})",
                                 code="two_columns", line=number, field=name,
                                 headers=(str(cells[found[name]]).strip()[:SHOWN], str(cell).strip()[:SHOWN]))
            found[name] = index
        if upper is not None and not all(name in found for name in spec.identify):
            joined = _two_rows(upper, cells, spec)
            if joined is not None:
                cells, found = joined
                skipped -= 1  # the row above is the header's first row
        upper = list(cells)
        if all(name in found for name in spec.identify):
            missing = [name for name in spec.require if name not in found]
            if missing:
                raise TableError(f"{spec.name}: {stream.position(number)}: the header lacks "
                                 + ", ".join(_expected(spec, name) for name in missing), code="header_lacks",
                                 line=number, fields=tuple(missing))
            return _Header(stream.position(number), found, list(cells), skipped)
        if stream.best is None or len(found) > len(stream.best):
            stream.best = list(found)
        skipped += 1
        if skipped >= spec.header_within:
            break
    return None


def _two_rows(upper: list, lower: list, spec: _Spec) -> tuple[list, dict[str, int]] | None:
    """A header on two rows, as a spreadsheet's merged cells leave it (工资 over 应发, 扣款, 实发; 工号 over
    nothing): per column, the lower row's name, else the upper's above a blank, else the two read as one
    (工资 + 应发 = 工资应发). None unless that names each field once and every field that identifies."""
    cells, found = [], {}
    for index in range(max(len(upper), len(lower))):
        top = upper[index] if index < len(upper) else None
        bottom = lower[index] if index < len(lower) else None
        top_text = "" if _blank((top,)) else str(top)
        bottom_text = "" if _blank((bottom,)) else str(bottom)
        for text in (bottom_text, top_text if not bottom_text else "", top_text + bottom_text):
            name = spec.aliases.get(header_key(text)) if text else None
            if name is not None:
                break
        cells.append((bottom_text or top_text) if name is None else text)
        if name is None:
            continue
        if name in found:
            return None
        found[name] = index
    return (cells, found) if all(name in found for name in spec.identify) else None


def _expected(spec: _Spec, name: str) -> str:
    chinese = [alias for alias in spec.fields[name] if not alias.isascii()][:2]
    return f"{name} ({'/'.join(chinese)})" if chinese else name


def _no_header(spec: _Spec, streams: list[_Stream]) -> TableError:
    """No header in the first rows (of any worksheet): what the likeliest header row lacks."""
    candidates = [stream.best for stream in streams if stream.best is not None]
    if not candidates:
        return TableError(f"{spec.name}: it is empty: no header row, no rows", code="empty")
    best = max(candidates, key=len)
    missing = [name for name in spec.identify if name not in best]
    place = "" if len(streams) == 1 else f" of any of its {len(streams)} worksheets"
    return TableError(f"{spec.name}: no header row in the first {spec.header_within} rows{place}: the header "
                      "lacks " + ", ".join(_expected(spec, name) for name in missing)
                      + f"; the columns are {', '.join(spec.fields)}, in English or Chinese", code="no_header",
                      rows=spec.header_within, fields=tuple(missing))


def _table(spec: _Spec, format: str, encoding: str, digest: str, sheet: str | None, header: _Header,
           stream: _Stream, notes: Sequence[str] = (), finish=None) -> Table:
    table = Table(spec.name, format, encoding, digest, sheet, header.position, header.columns, notes=list(notes))
    named = {index for index, cell in enumerate(header.cells) if not _blank((cell,))}
    table.read_columns.update((name, str(header.cells[index]).strip()[:SHOWN])
                              for name, index in sorted(header.columns.items(), key=lambda item: item[1]))
    table.ignored_columns.extend(str(header.cells[index]).strip()[:SHOWN] for index in sorted(named)
                                 if index not in header.columns.values())
    if header.skipped:
        table.notes.append(f"skipped {header.skipped} row(s) above the header ({header.position})")
    table._rows = _data_rows(table, stream, spec, named, finish)
    return table


def _data_rows(table: Table, stream: _Stream, spec: _Spec, named: set[int], finish) -> Iterator[Row]:
    unnamed_used: set[int] = set()
    computed: dict[str, list[str]] = {}  # field -> the cells whose formula's stored result was read
    count = 0
    try:
        for number, cells in stream:
            cells = tuple(cells)
            position = stream.position(number)
            where = f"{table.name}: {position}"
            unnamed_used |= {i for i, cell in enumerate(cells) if i not in named and not _blank((cell,))}
            first = next(cell for cell in cells if not _blank((cell,)))
            total = isinstance(first, str) and header_key(first).rstrip(":") in TOTAL_WORDS
            if total and spec.totals == "skip":
                table.notes.append(f"skipped a total row ({position})")
                continue
            if total and spec.totals == "problem":
                table.problems.append(Problem(where, "a total row: leave it out of the file", number, "total_row"))
                continue
            if not total and spec.max_records is not None and count >= spec.max_records:
                raise TooManyRows(f"{table.name}: more than {spec.max_records} rows under the header ({position} is "
                                  f"one more): more than {spec.what} may hold", limit=spec.max_records,
                                  blank=False)
            if stream.hidden is not None and number in stream.hidden.rows:
                table.problems.append(Problem(where, "a hidden row (hidden, filtered or folded): it is never read; show "
                                                     "every row, clear the filters and save the file again",
                                              number, "hidden_row"))
                count += 1
                continue
            values: dict[str, str] = {}
            errors: list[tuple[str, InputError]] = []
            for name, index in table.columns.items():
                try:
                    values[name] = cell_text(cells[index] if index < len(cells) else None,
                                             identifier=name in spec.identifiers, as_date=name in spec.dates,
                                             with_time=name in spec.date_times, amount=name in spec.amounts)
                    if name in spec.amounts and index < len(cells) and isinstance(cells[index], Formula):
                        computed.setdefault(name, []).append(cells[index].cell)
                except InputError as error:
                    errors.append((name, error))
                    values[name] = ""
            count += not total
            if errors and not total:  # a kept total row's cells are the caller's to check
                table.problems.append(Problem(where, "; ".join(f"{name}: {error}" for name, error in errors), number,
                                              "cells", tuple(errors)))
                continue
            yield Row(where, position, number, values, cells, total)
        if count == 0:
            raise TableError(f"{table.name}: no rows under the header ({table.header})", code="no_rows")
        table.ignored_columns.extend(
            f"column {_letters(i + 1) if table.format == 'xlsx' else i + 1} (no header)" for i in sorted(unnamed_used))
        for name, cells in computed.items():
            shown = ", ".join(cells[:10]) + (f" and {len(cells) - 10} more" if len(cells) > 10 else "")
            table.notes.append(f"{name}: {len(cells)} formula result(s) read as the spreadsheet stored them, to the "
                               f"fen ({shown})")
    finally:
        if finish is not None:
            finish()


def _letters(number: int) -> str:
    """Column 1 -> 'A', 27 -> 'AA', as a spreadsheet names them."""
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# ============================================================================== workbooks


def _workbook_table(data: bytes, digest: str, spec: _Spec, sheet: str | None, max_unpacked: int,
                    max_rows: int, max_cells: int) -> Table:
    from gate_agent.extras import require

    # Only for a workbook: the collector starts without openpyxl, and a CSV reads without it. defusedxml
    # too: openpyxl refuses the XML entity tricks a hostile workbook can hold only when it is installed.
    require("defusedxml", "bank")
    load_workbook = require("openpyxl", "bank").load_workbook
    _prescan(data, spec, max_unpacked, max_cells)
    try:
        # The values a spreadsheet last computed; which cells are formulas, _sheet_rows finds out itself.
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # noqa: BLE001 - as above, inside openpyxl
        raise _unreadable(spec.name, error) from None
    try:
        return _choose_sheet(workbook, spec, sheet, digest, max_rows, max_cells)
    except BaseException as error:
        workbook.close()
        if isinstance(error, Exception) and not isinstance(error, TableError):
            raise _unreadable(spec.name, error) from None  # the first rows are parsed here
        raise


def _unreadable(name: str, error: Exception) -> TableError:
    return TableError(f"{name}: not a workbook that can be read: {type(error).__name__}: {_said(error)}")


def _said(error: Exception) -> str:
    """What a library said about a hostile file: short, and one line whatever the file held."""
    return escape_control(str(error)[:200])


#: An element ``si`` (a shared string) with any namespace prefix: counted on the bytes, an upper bound.
_SHARED_STRING = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?si[\s/>]")
_XML_NAMES = (".xml", ".rels", ".vml")
_CHUNK = 1024 * 1024


def _prescan(data: bytes, spec: _Spec, max_unpacked: int, max_cells: int) -> None:
    """The zip's parts checked on their bytes before any XML parser sees them (the parse of a few
    kilobytes of zip can otherwise take minutes and gigabytes): how many parts, what they unpack to and
    how far they pack, the longest stretch of XML without markup, the shared strings."""
    name = spec.name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_PARTS:
                raise TableError(f"{name}: {len(infos)} parts in the zip, more than a workbook has ({MAX_PARTS} at most)")
            unpacked = sum(info.file_size for info in infos)
            if unpacked > max_unpacked:
                raise TableError(f"{name}: it unpacks to {unpacked} bytes, more than {spec.what} "
                                 f"({max_unpacked} at most)")
            strings = sum(_scan_part(archive, info, name) for info in infos)
    except TableError:
        raise
    except Exception as error:  # noqa: BLE001 - a hostile zip may fail anywhere inside zipfile
        raise TableError(f"{name}: not a readable .xlsx (zip): {_said(error)}") from None
    if strings > max_cells:
        raise TableError(f"{name}: {strings} shared strings, more than {spec.what} can hold ({max_cells} at most)")


def _scan_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> int:
    """The shared strings (``si`` elements) of one part, once its XML is found within the bounds; a part
    that is not XML (a picture) is not read."""
    part = quoted(info.filename, 60)
    with archive.open(info) as stream:
        chunk = stream.read(_CHUNK)
        start = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")
        if start.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start[:4]:
            # Every spreadsheet writes its XML in UTF-8; the bounds below are counted on UTF-8 bytes.
            raise TableError(f"{name}: its part {part} is XML in UTF-16 or another wide encoding: not what a "
                             "spreadsheet writes")
        if not (start.startswith(b"<") or not start or info.filename.lower().endswith(_XML_NAMES)):
            return 0
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise TableError(f"{name}: its part {part} unpacks from {info.compress_size} to {info.file_size} bytes, "
                             f"more than {MAX_RATIO} times: not what a spreadsheet writes")
        strings, carry = 0, b""
        while chunk:
            buffer = carry + chunk
            cut = buffer.rfind(b"<")
            if cut > 0:  # each piece before the last '<' is whole: a '<' and what follows it up to the next
                done, carry = buffer[:cut], buffer[cut:]
                if max(map(len, done.split(b"<"))) > MAX_TOKEN:
                    raise _long_token(name, part)
                strings += len(_SHARED_STRING.findall(done))
            else:
                carry = buffer
            if len(carry) > MAX_TOKEN:
                raise _long_token(name, part)
            chunk = stream.read(_CHUNK)
        return strings + len(_SHARED_STRING.findall(carry))


def _long_token(name: str, part: str) -> TableError:
    return TableError(f"{name}: its part {part} holds more than {MAX_TOKEN} bytes of XML without markup (a text, a "
                      "comment, an attribute): more than a spreadsheet's cell holds")


@dataclass
class _Hidden:
    """What a worksheet hides from the person who looks at it: rows, and column ranges (first, last)."""

    rows: set[int] = field(default_factory=set)
    columns: list[tuple[int, int]] = field(default_factory=list)

    def column(self, index: int) -> bool:
        return any(first <= index <= last for first, last in self.columns)


@dataclass(frozen=True, slots=True)
class Formula:
    """A cell holding a formula: what a spreadsheet shows is what the formula computes, which the file's
    stored value (``stored``) need not be. Never read as a value."""

    cell: str  # "C7"
    formula: str
    stored: str | None

    def __str__(self) -> str:
        return self.formula

    def literal_differs(self) -> bool:
        """A formula that is a number (``=1460``) storing another: the file says one thing, the
        spreadsheet shows another; nothing else is worked out here."""
        literal = re.fullmatch(r"=\s*([+-]?[0-9]+(?:\.[0-9]+)?)\s*", self.formula)
        if literal is None:
            return False
        try:
            return self.stored is None or Decimal(literal.group(1)) != Decimal(self.stored)
        except InvalidOperation:
            return True


def _parser_class():
    from openpyxl.worksheet._reader import FORMULA_TAG, VALUE_TAG, WorkSheetParser

    class Parser(WorkSheetParser):
        """openpyxl's own parse of a worksheet, so that a cell is where openpyxl puts it; a formula is
        kept as (its text, its stored value), never translated (a shared formula's translation costs the
        formula's length again on every cell that shares it)."""

        def parse_formula(self, element):
            formula = element.find(FORMULA_TAG)
            text = "=" + formula.text if formula.text else "a formula shared with another cell"
            return text, element.findtext(VALUE_TAG)

    return Parser


def _sheet_rows(worksheet, name: str, hidden: _Hidden, counted: list[int], max_cells: int
                ) -> Iterator[tuple[int, list]]:
    """(row, values) of a worksheet from its row 1, whatever the file says its dimensions are (openpyxl's
    own worksheet parser, rows left out filled with empty ones); a formula cell is a Formula. The rows
    and cells must be in order, as a spreadsheet writes them, and stay within the bounds; rows and
    columns the sheet hides are put in ``hidden``; ``counted`` holds the cells read, blank rows counted
    as one. Any failure of the library while it parses them lazily is a TableError."""
    title = str(worksheet.title)
    workbook = worksheet.parent
    try:
        with worksheet._get_source() as source:
            parser = _parser_class()(source, worksheet._shared_strings, data_only=False, epoch=workbook.epoch,
                                     date_formats=workbook._date_formats,
                                     timedelta_formats=workbook._timedelta_formats)
            expected = 1
            for number, cells in parser.parse():
                if number < expected:
                    raise TableError(f"{name}: {title} row {number} comes after row {expected - 1}: rows out of order "
                                     "are not what a spreadsheet writes")
                if expected == 1:  # the columns (<cols>) come before the rows
                    hidden.columns.extend(_hidden_columns(parser.column_dimensions))
                while expected < number:
                    counted[0] += 1
                    if counted[0] > max_cells:
                        raise _too_many_cells(name, max_cells, title, expected)
                    yield expected, []
                    expected += 1
                width = cells[-1]["column"] if cells else 0
                if width > MAX_COLUMNS:
                    raise TableError(f"{name}: {title} row {number} reaches column {_letters(width)}: a table here has "
                                     f"at most {MAX_COLUMNS} columns; delete what lies beyond it")
                counted[0] += max(1, width)
                if counted[0] > max_cells:
                    raise _too_many_cells(name, max_cells, title, number)
                values: list = [None] * width
                previous = 0
                for cell in cells:
                    column = cell["column"]
                    if column <= previous or cell["row"] != number:
                        raise TableError(f"{name}: {title} row {number}: cells out of order or out of their row: not "
                                         "what a spreadsheet writes")
                    previous = column
                    value = cell["value"]
                    if cell["data_type"] == "f":
                        value = Formula(f"{_letters(column)}{number}", *value)
                    values[column - 1] = value
                if str((parser.row_dimensions.get(str(number)) or {}).get("hidden", "")).lower() in ("1", "true"):
                    hidden.rows.add(number)
                yield number, values
                expected = number + 1
    except TableError:
        raise
    except Exception as error:  # noqa: BLE001 - a hostile workbook may fail anywhere inside the library
        raise _unreadable(name, error) from None


def _too_many_cells(name: str, max_cells: int, title: str, number: int) -> TableError:
    return TableError(f"{name}: more than {max_cells} cells (rows x columns) by {title} row {number}: too many to read")


def _hidden_columns(dimensions: Mapping[str, Mapping]) -> Iterator[tuple[int, int]]:
    for attributes in dimensions.values():
        if str(attributes.get("hidden", "")).lower() in ("1", "true"):
            first = int(attributes.get("min") or 0)
            yield first, int(attributes.get("max") or first)


def _choose_sheet(workbook, spec: _Spec, sheet: str | None, digest: str, max_rows: int, max_cells: int) -> Table:
    """The named worksheet, or the only one with a header row; a hidden worksheet is never read."""
    worksheets = list(workbook.worksheets)
    titles = [str(worksheet.title) for worksheet in worksheets]
    states = {title: str(worksheet.sheet_state or "visible") for title, worksheet in zip(titles, worksheets, strict=True)}
    if not worksheets:
        raise TableError(f"{spec.name}: the workbook has no worksheet")
    if sheet is not None and sheet not in titles:
        raise TableError(f"{spec.name}: no worksheet {quoted(sheet)}; it has "
                         + ", ".join(quoted(title) for title in titles), code="no_such_sheet", sheet=sheet[:SHOWN],
                         sheets=tuple(title[:SHOWN] for title in titles))
    if sheet is not None and states[sheet] != "visible":
        raise TableError(f"{spec.name}: the worksheet {quoted(sheet)} is hidden ({states[sheet]}): a hidden "
                         "worksheet is never read; unhide it in the spreadsheet if it is the one", code="hidden_sheet",
                         sheet=sheet[:SHOWN])
    if all(state != "visible" for state in states.values()):
        raise TableError(f"{spec.name}: every worksheet is hidden: nothing a person sees to read",
                         code="every_sheet_hidden")
    streams, found = [], []
    counted = [0]
    for title, worksheet in zip(titles, worksheets, strict=True):
        if (sheet is not None and title != sheet) or states[title] != "visible":
            continue
        hidden = _Hidden()
        stream = _Stream(_sheet_rows(worksheet, spec.name, hidden, counted, max_cells), spec,
                         lambda number, title=title: f"{title} row {number}", max_rows)
        stream.hidden = hidden
        streams.append(stream)
        header = _find_header(stream, spec)
        if header is not None:
            found.append((title, stream, header))
    if not found:
        hidden_sheets = [f"{quoted(title)} ({state})" for title, state in states.items() if state != "visible"]
        error = _no_header(spec, streams)
        if hidden_sheets:
            error = TableError(f"{error}; hidden worksheets are never read: {', '.join(hidden_sheets)}")
        raise error
    if len(found) > 1:
        raise TableError(f"{spec.name}: {len(found)} worksheets have a header row ("
                         + ", ".join(quoted(title) for title, *_ in found) + "): say which one to read",
                         code="several_sheets", sheets=tuple(title[:SHOWN] for title, *_ in found))
    title, stream, header = found[0]
    hidden_fields = [f"{_letters(index + 1)} ({name})" for name, index in header.columns.items()
                     if stream.hidden.column(index + 1)]
    if hidden_fields:
        raise TableError(f"{spec.name}: {title}: the column(s) {', '.join(hidden_fields)} are hidden: a hidden column "
                         "is never read; unhide it in the spreadsheet", code="hidden_columns", sheet=title[:SHOWN],
                         fields=tuple(name for name, index in header.columns.items() if stream.hidden.column(index + 1)))
    others = [quoted(other) + ("" if states[other] == "visible" else f" ({states[other]})")
              for other in titles if other != title]
    notes = [f"read the worksheet {quoted(title)}; not read: " + ", ".join(others)] if others else []
    table = _table(spec, "xlsx", "xlsx", digest, title, header, stream, notes, finish=workbook.close)
    table.epoch = workbook.epoch.date() if isinstance(workbook.epoch, datetime) else None
    return table
