"""XLSX workbooks for people: what a site office opens in a spreadsheet, prints and has signed.

A value from outside (a name, an employer) is a text cell, never a formula: openpyxl reads a string that
starts with ``=`` as a formula unless the cell is told otherwise, and a name like ``=HYPERLINK(...)`` would
run in the office's spreadsheet. Identifiers (worker numbers, ID and account numbers) are text too, so that
a spreadsheet keeps their leading zeros and every digit. Each sheet prints on A4 landscape, one page wide,
its heading rows repeated on every page, and scrolls with its header and name columns frozen.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from gate_agent.extras import require
from gate_agent.files import write_new

#: The spreadsheet's own format code for text: what the cell shows is what it holds.
TEXT = "@"


@dataclass
class Sheet:
    """One worksheet: ``heading`` lines above the column header, ``rows`` under it (str, int or float:
    hours, never money; None is an empty cell), ``notes`` lines below. ``frozen`` columns stay in view."""

    title: str
    header: list[str]
    rows: list[list[object]]  # str, int, float (hours), Decimal (yuan), bool or None
    heading: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    widths: list[float] = field(default_factory=list)
    frozen: int = 0


def workbook_bytes(sheets: list[Sheet]) -> bytes:
    openpyxl = require("openpyxl", "bank")
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    book = openpyxl.Workbook()
    book.remove(book.active)
    thin = Side(style="thin", color="999999")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    for sheet in sheets:
        ws = book.create_sheet(_title(sheet.title))
        width = max(len(sheet.header), 1)
        for line in sheet.heading:
            ws.append([None])
            _text(ws.cell(row=ws.max_row, column=1), line).font = Font(bold=True, size=12)
            ws.merge_cells(start_row=ws.max_row, start_column=1, end_row=ws.max_row, end_column=width)
        header_row = ws.max_row + 1 if sheet.heading else 1
        for column, name in enumerate(sheet.header, start=1):
            cell = _text(ws.cell(row=header_row, column=column), name)
            cell.font, cell.border = Font(bold=True), box
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        for values in sheet.rows:
            row = ws.max_row + 1
            for column, value in enumerate(values, start=1):
                cell = ws.cell(row=row, column=column)
                if isinstance(value, bool) or value is None:
                    cell.value = None if value is None else ("是" if value else "否")
                elif isinstance(value, Decimal):  # money in yuan, exact (never a float), two decimals shown
                    cell.value = value
                    cell.number_format = "0.00"
                elif isinstance(value, int | float):
                    cell.value = value
                else:
                    _text(cell, str(value))
                cell.border = box
        for line in sheet.notes:
            ws.append([None])
            _text(ws.cell(row=ws.max_row, column=1), line)
        for column, size in enumerate(sheet.widths, start=1):
            ws.column_dimensions[get_column_letter(column)].width = size
        ws.freeze_panes = ws.cell(row=header_row + 1, column=sheet.frozen + 1)
        ws.print_title_rows = f"1:{header_row}"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.print_options.horizontalCentered = True
        ws.page_margins.left = ws.page_margins.right = 0.3
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def write(path: str | Path, sheets: list[Sheet], mode: int = 0o600) -> None:
    """The workbook written to a new file (FileExistsError if anything is there)."""
    write_new(path, workbook_bytes(sheets), mode)


def _text(cell, value: str):
    """``value`` as a text cell, whatever it starts with."""
    cell.value = value
    cell.data_type = "s"
    cell.number_format = TEXT
    return cell


def _title(text: str) -> str:
    """A worksheet name a spreadsheet takes: at most 31 characters, none of []:*?/\\."""
    cleaned = "".join("_" if c in "[]:*?/\\" else c for c in text).strip("'") or "Sheet"
    return cleaned[:31]
