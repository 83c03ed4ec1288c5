"""Why a worker file, or a row of it, cannot be imported: a machine code, and words in the file's language.

A site office writes its roster with Chinese headers (工号, 姓名, 身份证号) and gets the refusals back from the
bank: they must name the office's own column, the line, and what to do, in Chinese (English for a file with
English headers). Each refusal keeps a stable ``code`` (``number``, ``bad_id_number``, ``duplicate_worker``...)
that scripts read with ``--json``, whatever the language.

Personal data stays masked: an ID number, phone or account is named as collector.masking masks it
(``110***********1238``: the line is given, so the office finds the row without the whole number), and an
identifier a spreadsheet turned into a number as the spreadsheet shows it (``1.38123E+17``, six digits).
Whatever else a message shows of a cell is cut short and made printable.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from collector.tabular import MAX_CELL_TEXT, CellError, Problem, TableError, header_key

#: What the words of a refusal may show of a cell that is not personal data (an id, a date, a card).
SHOWN_CHARS = 40
#: How much of a file is looked at to tell its language when it could not be read as a table.
SNIFF_BYTES = 64 * 1024

#: A row's refusal, in Chinese, by code. ``{header}`` is the file's own header of the column, ``{value}``
#: what the message may show of the cell; the rest are the figures of each case.
ROW_WORDS = {
    # cells a spreadsheet wrote as something else than the column's text
    "number": "{header}「{value}」被 Excel 当成了数字：把这一列设为文本格式后重新填写",
    "formula": "{header}是公式（{value}）：表格里显示的不一定是文件里存的；把这一列复制后「选择性粘贴 > 数值」，再保存",
    "too_long": "{header}有 {length} 个字，最多 {limit} 个字：核对这一格",
    "true_false": "{header}是「是/否」格式的单元格（{value}）：把这一列设为文本格式后重新填写",
    "not_a_number": "{header}不是一个数（{value}）：重新填写这一格",
    "date_cell": "{header}是日期或时间格式的单元格（{value}）：把这一列设为文本格式后重新填写",
    "other_cell": "{header}的单元格读不出来（{value}）：把这一列设为文本格式后重新填写",
    "hidden_row": "这一行被隐藏了（隐藏、筛选或折叠），不会读取：显示所有行、清除筛选后再保存",
    "total_row": "这是合计行：从文件里删掉",
    # text
    "not_text": "{header}不是文字：把这一列设为文本格式后重新填写",
    "missing": "{header}没有填：每一行都要填{header}",
    "control_character": "{header}里有看不见的字符或控制字符（{point}）：删掉这一格重新打字，不要从网页或聊天软件里复制",
    "combining_marks": "{header}里有一串叠在一起的附加符号：删掉这一格重新打字",
    "no_visible_letter": "{header}里没有看得见的字：重新填写",
    # ids and cards
    "bad_id": "{header}「{value}」不能做编号：只能用字母、数字和 _ . -，最多 64 个字符，以字母或数字开头",
    "bad_card": "{header}「{value}」不是卡号：卡号是 8 到 20 位的 0-9 和 A-F（双数位），如 04A1B2C3D4E5F6",
    # payee
    "bad_id_number": "{header}「{value}」不是有效的身份证号：应为 18 位（含出生日期和最后一位校验码），或 1999 年以前的"
                     " 15 位旧号码：对照身份证重新填写",
    "bad_phone": "{header}「{value}」不是电话号码：手机号是 1 开头的 11 位数字，座机要带区号：核对后重新填写",
    "bad_account": "{header}「{value}」不是银行卡号：应为 8 到 32 位数字：对照银行卡重新填写",
    # pay terms
    "terms_incomplete": "{basis}和{rate}要一起填：这一行只填了一个",
    "bad_basis": "{header}「{value}」不是计薪方式：填「日」（按天）或「时」（按小时）",
    "bad_rate": "{header}「{value}」不是金额：填多少元，最多两位小数，如 350 或 43.75",
    "rate_not_positive": "{header}要大于 0",
    "implausible_rate": "{header}「{value}」元{per}不像是工资：最多 {bound} 元{per}；核对是不是多写了 0",
    # dates
    "bad_date": "{header}「{value}」不是日期：写成 2026-12-01、2026/12/01 或 2026年12月1日",
    "no_such_date": "{header}「{value}」这一天不存在：核对月和日",
    "number_not_date": "{header}「{value}」是一个数，不是日期（这一列丢了日期格式）：把这一列设为日期格式，或写成 2026-12-01",
    "date_too_late": "{header}「{value}」比今天晚一个多月：核对年份",
    "date_too_early": "{header}「{value}」早于 2000 年：核对年份",
    "entry_without_site": "填了{header}却没有填工地：进场日期是进哪个工地的？在「{site}」一列填上工地编号",
    # the file against itself
    "duplicate_worker": "{header}「{value}」在{other}也有：一个工人只写一行",
    "duplicate_card": "{header}「{value}」在{other}已经给了 {worker}：一张卡只能给一个人",
    "duplicate_id_number": "{header}「{value}」和{other}（{worker}）的一样：一个人只登记一次，核对这两行",
    # the file against the bank's registry
    "unknown_site": "{header}「{value}」银行还没有登记这个工地：核对工地编号，或请银行先登记这个工地",
    "card_held": "{header}「{value}」现在是工人 {holder} 的卡：先把那张卡注销，再给这个人",
    "entry_overlaps": "{header}「{value}」：{worker} 在工地 {site} 上一次一直干到 {until}，进场日期要在那之后",
}

#: A file's refusal, in Chinese, by TableError code; ``{file}`` is the file as named on the command line.
FILE_WORDS = {
    "mixed_encodings": "{file}：编码不一致：第{utf8_line}行是 UTF-8，第{other_line}行不是（GBK？）；"
                       "把整个文件另存为同一种编码（「CSV UTF-8」）",
    "unknown_encoding": "{file} 第{line}行 既不是 UTF-8 也不是 GBK 文字：另存为「CSV UTF-8」",
    "bom_not_utf8": "{file} 第{line}行 文件开头标着 UTF-8，内容却不是：把整个文件另存为「CSV UTF-8」",
    "nul_bytes": "{file}：不是 CSV 文本文件（可能是 UTF-16）：另存为「CSV UTF-8」或 .xlsx",
    "old_xls": "{file}：是旧的 Excel 文件（.xls）：另存为 .xlsx 或 CSV",
    "too_large": "{file}：文件太大（最多 {limit} 字节）：分成几个文件",
    "empty": "{file}：是空的：没有表头，也没有数据",
    "no_header": "{file}：前 {rows} 行里找不到表头：表头要有「{fields}」这几列",
    "header_lacks": "{file} 第{line}行 表头缺少「{fields}」",
    "two_columns": "{file} 第{line}行 有两列都是{field}（「{first}」和「{second}」）：删掉或改名其中一列",
    "no_rows": "{file}：表头下面没有数据",
    "cell_too_large": "{file} 第{line}行 有一格超过 {limit} 个字：不是工人名册这样的表格",
    "not_csv": "{file} 第{line}行 不是 CSV（{detail}）：用 Excel 或 WPS 另存为「CSV UTF-8」或 .xlsx",
    "no_such_sheet": "{file}：没有叫「{sheet}」的工作表；有的是「{sheets}」",
    "hidden_sheet": "{file}：工作表「{sheet}」被隐藏了，不会读取：如果要读的是它，先取消隐藏",
    "every_sheet_hidden": "{file}：所有工作表都被隐藏了：取消隐藏要读的那一张",
    "several_sheets": "{file}：有几张工作表都有表头（「{sheets}」）：只留要读的那一张，或说明读哪一张",
    "hidden_columns": "{file} 工作表「{sheet}」：「{fields}」列被隐藏了，不会读取：取消隐藏后再保存",
    "too_many_workers": "{file}：超过 {limit} 个工人，一个文件最多 {limit} 人（[limits] max_workers_per_file）："
                        "分成几个文件；什么都没有导入",
    "unreadable": "{file}：读不了这个文件（{english}）",
}

#: The summary of a refused file, said in Chinese after the counter scripts read.
REFUSED_WORDS = "{count} 行有问题，什么都没有导入"
MORE_WORDS = "还有 {count} 行有问题没有列出"


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a row cannot be imported: ``code`` (ROW_WORDS), the ``english`` words, the ``field`` whose
    column it is in, what the words may show of the cell (``value``), and further figures."""

    code: str
    english: str
    field: str | None = None
    value: str = ""
    more: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One refused row as the bank tells it: ``message`` is the whole line, place and words, in the file's
    language; ``where`` the place in English (``workers.csv: line 7``), for ordering and scripts."""

    where: str
    line: int | None
    code: str
    field: str | None
    column: str | None  # the file's own header of that field
    message: str

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        return {"where": self.where, "line": self.line, "code": self.code, "field": self.field,
                "column": self.column, "message": self.message}


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value from the file as a message shows it: printable, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[:limit])
    return text + ("…" if len(str(value)) > limit else "")


def is_chinese(text: str) -> bool:
    return any("CJK" in unicodedata.name(c, "") for c in text if not c.isascii())


def language_of(headers: Iterable[str]) -> str:
    """'zh' when most of the headers read are Chinese (as many: Chinese too), else 'en'."""
    headers = list(headers)
    chinese = sum(1 for header in headers if is_chinese(header))
    return "zh" if chinese and chinese * 2 >= len(headers) else "en"


@dataclass(frozen=True)
class Voice:
    """How the refusals of one file are said: its name, language, sheet, and its own headers."""

    name: str
    language: str = "en"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # field -> the file's header
    sheet: str | None = None
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)  # field -> its Chinese name, for a missing column

    def header(self, name: str | None) -> str:
        if name is None:
            return ""
        if name in self.headers:
            return self.headers[name]
        return self.names.get(name, name) if self.language == "zh" else name

    def place(self, where: str, line: int | None) -> str:
        if self.language != "zh" or line is None:
            return where
        return f"{self.name} 工作表「{self.sheet}」第{line}行" if self.sheet else f"{self.name} 第{line}行"

    def words(self, fault: Fault) -> str:
        """What is wrong and what to do, without the place."""
        if self.language != "zh":
            return fault.english
        more = {k: self.header(v) if k in ("basis", "rate", "site") else v for k, v in fault.more.items()}
        return ROW_WORDS[fault.code].format(header=self.header(fault.field), value=fault.value, **more)

    def row(self, where: str, line: int | None, *faults: Fault) -> FileProblem:
        """One bad row, with every fault found in it (the first gives the code and the column)."""
        joined = ("；" if self.language == "zh" else "; ").join(self.words(fault) for fault in faults)
        message = f"{self.place(where, line)} {joined}" if self.language == "zh" else f"{where}: {joined}"
        first = faults[0]
        return FileProblem(where, line, first.code, first.field, self.header(first.field) if first.field else None,
                           message)

    def table_problem(self, problem: Problem) -> FileProblem:
        """A problem the table reader found, in this file's words."""
        if problem.code != "cells":
            code = problem.code if problem.code in ROW_WORDS else "other_cell"
            return self.row(problem.where, problem.line, Fault(code, problem.message))
        faults = []
        for name, error in problem.causes:
            code = error.code if isinstance(error, CellError) and error.code in ROW_WORDS else "other_cell"
            value = error.shown if isinstance(error, CellError) else ""
            more = {"length": value, "limit": MAX_CELL_TEXT} if code == "too_long" else {}
            faults.append(Fault(code, f"{self.header(name)}: {error}", name, shown(value), more))
        return self.row(problem.where, problem.line, *faults)

    def file_error(self, error: TableError) -> str:
        """A TableError as this file's refusal: Chinese words for the common cases, else the English."""
        if self.language != "zh":
            return str(error)
        code = getattr(error, "code", "") or "unreadable"
        details = dict(getattr(error, "details", {}) or {})
        if code not in FILE_WORDS:
            code = "unreadable"
        if "fields" in details:
            details["fields"] = "、".join(self.header(name) for name in details["fields"])
        if "field" in details:
            details["field"] = self.header(details["field"])
        if "sheets" in details:
            details["sheets"] = "」「".join(shown(title) for title in details["sheets"])
        if "sheet" in details:
            details["sheet"] = shown(details["sheet"])
        if "headers" in details:
            details["first"], details["second"] = (shown(h) for h in details.pop("headers"))
        english = str(error).removeprefix(f"{self.name}: ")
        return FILE_WORDS[code].format(file=self.name, english=english, **details)

    def refused(self, count: int) -> str:
        """The last line of a refused file: the counter scripts read, then the same in Chinese."""
        english = f"{self.name}: {count} bad row(s); nothing imported"
        return english + (f"（{REFUSED_WORDS.format(count=count)}）" if self.language == "zh" else "")

    def more(self, count: int) -> str:
        english = f"{self.name}: ... and {count} more"
        return english + (f"（{MORE_WORDS.format(count=count)}）" if self.language == "zh" else "")


# ---------------------------------------------------------------------------------------------- a file's language


_SHARED_TEXT = re.compile(r"<(?:\w+:)?t(?:\s[^>]*)?>([^<]*)</(?:\w+:)?t>")


def sniff_language(path: str | Path, aliases: Mapping[str, Iterable[str]]) -> str:
    """The language of a file that could not be read as a table, for its refusal: by the headers among its
    first lines (``aliases``: field -> its headers) if any are found, else 'zh' if it holds Chinese at all.
    Reads at most SNIFF_BYTES of it; anything it cannot read is English."""
    chinese, english = set(), set()
    for spellings in aliases.values():
        for spelling in spellings:
            (chinese if is_chinese(spelling) else english).add(header_key(spelling))
    try:
        with open(path, "rb") as handle:
            data = handle.read(SNIFF_BYTES)
        if data.startswith(b"PK\x03\x04"):
            # The text of a workbook's cells: its shared strings, and the strings its worksheets hold inline.
            texts = []
            with zipfile.ZipFile(path) as archive:
                names = [name for name in archive.namelist() if name == "xl/sharedStrings.xml"
                         or name.startswith("xl/worksheets/sheet") and name.endswith(".xml")][:10]
                for name in names:
                    with archive.open(name) as part:
                        texts += _SHARED_TEXT.findall(part.read(SNIFF_BYTES).decode("utf-8", "ignore"))
            lines = [texts]
        else:
            lines = [_line_text(line).split(",") for line in data.split(b"\n")[:20]]
    except Exception:  # noqa: BLE001 - a hostile file may fail anywhere in zipfile: its refusal is then English
        return "en"
    for cells in lines:
        keys = [header_key(cell) for cell in cells]
        zh, en = sum(key in chinese for key in keys), sum(key in english for key in keys)
        if zh or en:
            return "zh" if zh >= en else "en"
    return "zh" if any(is_chinese(cell) for cells in lines for cell in cells) else "en"


def _line_text(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("gb18030", "ignore")
