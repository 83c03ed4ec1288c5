"""Drawing as SVG text: a canvas, text from outside made harmless, and what several charts share (rows of
labelled bars, a legend, nice axis steps, an honest "no data" picture). Pure: data in, text out.

Every text drawn goes through ``visible`` then ``escape``: a name may hold markup, a bidi override that
would reorder the line, a zero-width mark or a control character XML cannot even carry. Those are written
out as ``\\u202e`` and the like, as the pages and the bank's terminal show them. Attributes are drawing
attributes only (``fill="..."``, never ``style``): the pages' content security policy allows no inline
style, and a pattern prints where a colour would be lost in black and white.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal

#: The width every chart is drawn at (its viewBox): a phone's column at about one unit per pixel.
WIDTH = 360
#: Text sizes: body and the smallest (axis numbers), at least 11 px on a 412 px phone.
SIZE, SMALL = 12, 11
FONT = ("system-ui, -apple-system, 'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', 'Noto Sans CJK SC', "
        "'Source Han Sans SC', 'WenQuanYi Micro Hei', sans-serif")
INK, MUTED, GRID = "#1b1f24", "#57606a", "#d0d7de"
#: Unicode categories drawn as \\uXXXX: control, format (bidi, zero-width), surrogate, private use,
#: unassigned, and the line and paragraph separators.
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Combining marks kept in a row (scripts need up to about three on one letter).
MARKS_IN_A_ROW = 4
_KEY = re.compile(r"[a-z][a-z0-9-]{0,30}")

#: Each series' look: a colour, or stripes (or a cross-hatch) of a colour on a lighter one.
STYLES: dict[str, tuple[str, ...]] = {
    "in": ("solid", "#0b57a4"),
    "out": ("stripes", "#b34700", "#fde3c8"),
    "headcount": ("solid", "#d8dee4"),
    "days": ("solid", "#0b57a4"),
    "review": ("stripes", "#7d4e00", "#fff1c2"),
    "workers": ("solid", "#0b57a4"),
    "overdue": ("solid", "#a40e26"),
    "estimate": ("stripes", "#a40e26", "#fbe0e4"),
    "worked": ("solid", "#cfe8d5"),
    "paid": ("solid", "#1d6b2a"),
    "flagged": ("stripes", "#d4a72c", "#fff8c5"),
    "disputed": ("cross", "#e39aa6", "#fff0f1"),
    "absent": ("solid", "#eef0f2"),
    "future": ("solid", "#ffffff"),
}


def escape(text: str) -> str:
    """XML text and attribute values."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&#39;"))


def visible(value: object, limit: float | None = None, size: float = SIZE) -> str:
    """``value`` as it may be drawn: hidden characters written out as ``\\uXXXX``, long runs of combining
    marks cut, and the whole cut with "…" to ``limit`` units wide at ``size`` (not escaped yet)."""
    out, marks = [], 0
    for char in str(value):
        category = unicodedata.category(char)
        if category in HIDDEN:
            out.append(f"\\u{ord(char):04x}")
            marks = 0
            continue
        marks = marks + 1 if category.startswith("M") else 0
        if marks <= MARKS_IN_A_ROW:
            out.append(char)
    text = "".join(out)
    if limit is None or text_width(text, size) <= limit:
        return text
    kept, used = [], text_width("…", size)
    for char in text:
        used += text_width(char, size)
        if used > limit:
            break
        kept.append(char)
    return "".join(kept) + "…"


def text_width(text: str, size: float = SIZE) -> float:
    """About how wide ``text`` is drawn at ``size``: a Chinese character is as wide as it is high, a Latin
    one about 0.6 of that, a combining mark nothing."""
    total = 0.0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += size if unicodedata.east_asian_width(char) in ("W", "F") else 0.6 * size
    return total


def number(value: object) -> str:
    """A coordinate or size as SVG text (two decimals at most)."""
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(value)


def tag(name: str, content: str | None = None, **attrs: object) -> str:
    """An element; ``content`` is markup already (escape text first). ``font_size`` is written
    ``font-size``, ``class_`` ``class``; None leaves an attribute out."""
    written = "".join(f' {key.rstrip("_").replace("_", "-")}="{escape(number(value))}"'
                      for key, value in attrs.items() if value is not None)
    return f"<{name}{written}/>" if content is None else f"<{name}{written}>{content}</{name}>"


def yuan(fen: int) -> str:
    """Integer fen as yuan with thousands separators ("12,345.60"): Decimal, at the last step only."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"money is integer fen, not {type(fen).__name__}")
    return f"{Decimal(fen).scaleb(-2):,.2f}"


def nice_top(maximum: int) -> tuple[int, int]:
    """The axis top (at least ``maximum``, at least 1) and the step between gridlines (at most 4 steps)."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if maximum <= 4 * step:
            return max(step, -(-maximum // step) * step), step
    step = 10 ** len(str(maximum // 4))
    return -(-maximum // step) * step, step


@dataclass
class Canvas:
    """One chart being drawn: ``key`` names it (ids of its patterns and title, unique on a page)."""

    key: str
    width: int = WIDTH
    parts: list[str] = field(default_factory=list)
    defs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not _KEY.fullmatch(self.key):
            raise ValueError(f"a chart's key is lowercase letters, digits and '-', not {self.key!r}")

    def add(self, *markup: str) -> None:
        self.parts.extend(markup)

    def text(self, x: float, y: float, value: object, *, size: float = SIZE, anchor: str = "start",
             weight: str | None = None, fill: str = INK, limit: float | None = None, **attrs: object) -> None:
        """Text from anywhere, made visible and escaped here (``limit``: cut to that width)."""
        self.add(tag("text", escape(visible(value, limit, size)), x=x, y=y, font_size=size,
                     text_anchor=None if anchor == "start" else anchor, font_weight=weight, fill=fill, **attrs))

    def paint(self, style: str) -> str:
        """The fill of a series: its colour, or its pattern, defined once in this chart."""
        kind, colour, *rest = STYLES[style]
        if kind == "solid":
            return colour
        pattern = f"{self.key}-{style}"
        if pattern not in self.defs:
            ground = tag("rect", width=6, height=6, fill=rest[0])
            lines = tag("rect", width=2.5, height=6, fill=colour)
            if kind == "cross":
                lines += tag("rect", width=6, height=2.5, fill=colour)
            self.defs[pattern] = tag("pattern", ground + lines, id=pattern, width=6, height=6,
                                     patternUnits="userSpaceOnUse", patternTransform="rotate(45)")
        return f"url(#{pattern})"

    def swatch(self, x: float, y: float, style: str, width: float = 14, height: float = 10) -> None:
        self.add(tag("rect", x=x, y=y, width=width, height=height, fill=self.paint(style), stroke=INK,
                     stroke_width=0.5))

    def render(self, height: float, *, title: str, description: str = "") -> str:
        """The chart as one ``<svg>`` element: viewBox, width 100% (its height follows), a title (and a
        description) for screen readers."""
        head = tag("title", escape(visible(title)), id=f"{self.key}-title")
        if description:
            head += tag("desc", escape(visible(description)), id=f"{self.key}-desc")
        defs = tag("defs", "".join(self.defs.values())) if self.defs else ""
        return tag("svg", head + defs + "".join(self.parts), xmlns="http://www.w3.org/2000/svg",
                   viewBox=f"0 0 {self.width} {number(float(height))}", width="100%", role="img",
                   aria_labelledby=f"{self.key}-title" + (f" {self.key}-desc" if description else ""),
                   font_family=FONT, data_chart=self.key)


def heading(canvas: Canvas, title: str, top: float = 0) -> float:
    """A title line drawn into the chart (for a file of its own; a page has its own heading)."""
    canvas.text(4, top + 16, title, size=14, weight="bold", limit=canvas.width - 8)
    return top + 26


@dataclass
class BarRow:
    """One labelled bar: its segments (amount, style) laid end to end, the text said at its right."""

    label: str
    said: str
    segments: list[tuple[int, str]]
    data: dict[str, object] = field(default_factory=dict)


#: A row: the label and what is said on one line, the bar under it.
ROW_HEIGHT, BAR_HEIGHT = 34, 11


def bar_rows(canvas: Canvas, top: float, rows: list[BarRow], *, maximum: int) -> float:
    """Rows of bars the full width, each as long as its amounts against ``maximum`` (integer arithmetic:
    an amount of money never meets a float); returns where the rows end."""
    span = canvas.width - 8
    for index, row in enumerate(rows):
        y = top + index * ROW_HEIGHT
        said_width = text_width(row.said, SIZE) + 8
        group = []
        canvas.add(f'<g data-row="{index}"' + "".join(f' data-{k}="{escape(number(v))}"' for k, v in row.data.items())
                   + ">")
        canvas.text(4, y + 13, row.label, limit=span - said_width, data_label="1")
        canvas.text(canvas.width - 4, y + 13, row.said, anchor="end", weight="bold", data_said="1")
        canvas.add(tag("rect", x=4, y=y + 18, width=span, height=BAR_HEIGHT, fill="#f6f8fa", stroke=GRID,
                       stroke_width=0.5))
        done = 0
        for amount, style in row.segments:
            start = 4 + (done * span // maximum if maximum > 0 else 0)
            done += amount
            end = 4 + (done * span // maximum if maximum > 0 else 0)
            group.append(tag("rect", x=start, y=y + 18, width=end - start, height=BAR_HEIGHT,
                             fill=canvas.paint(style), data_kind=style, data_value=amount))
        canvas.add(*group, "</g>")
    return top + len(rows) * ROW_HEIGHT


def legend(canvas: Canvas, top: float, entries: list[tuple[str, str]]) -> float:
    """Swatches and their words, left to right, wrapping; ``line`` as a style draws a line. Returns the
    bottom."""
    x, y = 4.0, top
    for style, words in entries:
        wide = 20 + text_width(visible(words), SMALL) + 12
        if x > 4 and x + wide > canvas.width:
            x, y = 4.0, y + 18
        if style == "line":
            canvas.add(tag("path", d=f"M{number(x)} {number(y + 6)}h14", stroke=INK, stroke_width=2.5, fill="none"))
        else:
            canvas.swatch(x, y + 1, style)
        canvas.text(x + 20, y + 10, words, size=SMALL, data_legend=style)
        x += wide
    return y + 18


def paragraph(canvas: Canvas, top: float, text: str, *, size: float = SMALL, fill: str = MUTED) -> float:
    """``text`` wrapped to the chart's width (at a space where the line has one, else anywhere: Chinese has
    none); returns the bottom."""
    lines, line = [], ""
    for char in visible(text):
        if text_width(line + char, size) > canvas.width - 8:
            cut = line.rfind(" ")
            word = line[cut + 1:]
            # Inside a word of a spaced script, the line breaks at the space before it; else right here.
            if cut > 0 and char != " " and _narrow(char) and word and all(_narrow(c) for c in word):
                lines.append(line[:cut])
                line = word
            else:
                lines.append(line)
                line = ""
        line += char
    lines.append(line)
    for index, words in enumerate(lines):
        canvas.text(4, top + size + index * (size + 4), words.strip(), size=size, fill=fill)
    return top + len(lines) * (size + 4) + 2


def _narrow(char: str) -> bool:
    return unicodedata.east_asian_width(char) not in ("W", "F")


def empty(key: str, title: str, message: str, *, titled: bool = False) -> str:
    """The honest picture of nothing: a dashed frame saying there is no data (never an empty axis that
    could be read as zero everywhere)."""
    canvas = Canvas(key)
    top = heading(canvas, title) if titled else 0
    canvas.add(tag("rect", x=4, y=top + 4, width=canvas.width - 8, height=64, fill="none", stroke=MUTED,
                   stroke_dasharray="4 3", rx=4, data_empty="1"))
    canvas.text(canvas.width / 2, top + 41, message, anchor="middle", fill=MUTED, limit=canvas.width - 24)
    return canvas.render(top + 72, title=title, description=message)


def html_page(svg: str, *, title: str, lines: list[str], lang: str) -> str:
    """A chart as a page of its own, to open in a browser or print on A4: its title, the chart, a few lines
    of text; every text escaped, no script, nothing loaded from anywhere."""
    said = "".join(f"<p>{escape(visible(line))}</p>" for line in lines)
    return f"""<!DOCTYPE html>
<html lang="{escape(lang)}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(visible(title))}</title>
<style>
body {{ font-family: {FONT.replace("'", '"')}; margin: 0 auto; max-width: 180mm; padding: 12px; color: {INK}; }}
h1 {{ font-size: 18px; margin: 0 0 8px; }}
.chart svg {{ display: block; width: 100%; height: auto; }}
p {{ font-size: 13px; color: {MUTED}; margin: 6px 0; }}
@page {{ size: A4; margin: 12mm; }}
@media print {{ body {{ padding: 0; max-width: none; }} .chart {{ break-inside: avoid; }} }}
</style></head>
<body><h1>{escape(visible(title))}</h1>
<div class="chart">{svg}</div>
{said}
</body></html>
"""
