"""The Chinese words for codes (a day's status, its flags) in files people read: the same words the
foreman's page shows, from its catalog (collector/web/static/i18n/zh-CN.json), so that a spreadsheet and
the page never name one thing two ways."""

from __future__ import annotations

import functools
import json
from pathlib import Path

CATALOG = Path(__file__).parent / "web" / "static" / "i18n" / "zh-CN.json"


@functools.cache
def _catalog() -> dict[str, str]:
    return json.loads(CATALOG.read_text(encoding="utf-8"))


def status(code: str) -> str:
    """A day's status in words; a code the catalog does not know is shown as it is, never dropped."""
    return _catalog().get(f"status.{code}", code)


def flags(codes: list[str]) -> str:
    """A day's flags in words, in their order, joined with the Chinese semicolon."""
    words = []
    for code in codes:
        word = _catalog().get(f"flag.{code}")
        words.append(word if word is not None else _catalog()["flag.other"].replace("{code}", code))
    return "；".join(words)
