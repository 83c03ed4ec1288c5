"""QR codes of the links people open on a phone: a worker's personal link and a foreman's sign-in link.

A site office prints them; nobody types a 60-character link on a phone. The code is the link itself, so it
is as secret as the link: every file is new (never over another) and made 0600, and the printable card
says whose it is and that it is not to be passed on. The card is one HTML page with the code inline as
SVG (no script, no external file), A6-sized in print, that reads on a phone too.

``segno`` draws the code: pure Python, no dependency, SVG and PNG without an imaging library.
"""

from __future__ import annotations

import html
from pathlib import Path

from collector.errors import InputError
from gate_agent.extras import require
from gate_agent.files import write_new

#: What a file name's ending makes: the code alone as a picture, or the printable card.
KINDS = {".png": "png", ".svg": "svg", ".html": "card"}
#: Error correction M (15 % of the code can be lost): a printed card gets creased and dirty.
ERROR_LEVEL = "m"


class QrError(InputError):
    """The file cannot be made (a name ending in something else, or a file already there)."""


def kind_of(path: str | Path) -> str:
    """png / svg / card from the file's ending, or QrError naming the endings there are."""
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise QrError(f"{path}: a QR code is written as {', '.join(KINDS)} (the .html is a printable card)")
    return kind


def write(path: str | Path, url: str, *, title: str, lines: list[str]) -> str:
    """The code of ``url`` written to ``path`` (PNG, SVG, or the printable card with ``title`` and
    ``lines`` beside it); returns what was written (png / svg / card)."""
    kind = kind_of(path)
    segno = require("segno", "bank")
    code = segno.make(url, error=ERROR_LEVEL, micro=False)
    if kind in ("png", "svg"):
        data = _picture(code, kind)
    else:
        data = card(code.svg_inline(scale=6, border=4, omitsize=True), url, title=title, lines=lines).encode("utf-8")
    try:
        write_new(str(path), data, 0o600)
    except FileExistsError:
        raise QrError(f"{path} already exists; choose another name (nothing is overwritten)") from None
    except OSError as error:
        raise QrError(f"cannot write {path}: {error.strerror}") from None
    return kind


def _picture(code, kind: str) -> bytes:
    """The code alone as a file of its own (an SVG with its XML declaration and namespace)."""
    import io

    buffer = io.BytesIO()
    code.save(buffer, kind=kind, scale=8, border=4)
    return buffer.getvalue()


def card(svg: str, url: str, *, title: str, lines: list[str]) -> str:
    """The printable card: the title, the code, what to do, and the link in words for a phone that cannot
    scan. Every value is escaped; the SVG is segno's own."""
    said = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 0; padding: 16px; color: #111; }}
.card {{ max-width: 105mm; margin: 0 auto; border: 1px solid #999; border-radius: 6px; padding: 12px; }}
h1 {{ font-size: 20px; margin: 0 0 8px; }}
.code svg {{ width: 100%; max-width: 70mm; height: auto; display: block; margin: 0 auto; }}
p {{ font-size: 15px; line-height: 1.5; margin: 6px 0; }}
.link {{ font-family: monospace; font-size: 11px; word-break: break-all; color: #333; }}
@page {{ size: A6; margin: 8mm; }}
@media print {{ body {{ padding: 0; }} .card {{ border: none; }} }}
</style></head>
<body><div class="card">
<h1>{html.escape(title)}</h1>
<div class="code">{svg}</div>
{said}
<p class="link">{html.escape(url)}</p>
</div></body></html>
"""
