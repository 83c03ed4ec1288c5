"""Text for a terminal: columns aligned by the width characters take on screen (a Chinese character
takes two columns, a combining mark none), so names line up whatever script they are in."""

from __future__ import annotations

import unicodedata

from gate_agent.logsetup import escape_control


def width(text: str) -> int:
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def aligned(rows: list[list], header: list[str] | None = None) -> list[str]:
    """Lines of ``rows`` (cells escaped and stringified) in columns as wide as their widest cell."""
    cells = [[escape_control("" if cell is None else str(cell)) for cell in row] for row in rows]
    if header is not None:
        cells.insert(0, list(header))
    if not cells:
        return []
    widths = [max(width(row[i]) for row in cells if i < len(row)) for i in range(max(len(r) for r in cells))]
    return [" ".join(pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
