"""The charts' words, from the pages' message catalogs (collector/web/static/i18n/<lang>.json): a chart
and the page it sits on say one thing one way, in Chinese unless English was chosen."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

CATALOGS = Path(__file__).parent.parent / "web" / "static" / "i18n"
#: The languages there are catalogs of, the first the default.
LANGUAGES = ("zh-CN", "en")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@functools.cache
def _catalog(lang: str) -> dict[str, str]:
    return json.loads((CATALOGS / f"{lang}.json").read_text(encoding="utf-8"))


def language(value: object) -> str | None:
    """``value`` if it is a language there is a catalog of, else None."""
    return value if isinstance(value, str) and value in LANGUAGES else None


class Words:
    """The catalog of one language: ``words("chart.today.in")``, placeholders filled as the pages fill
    them (a value is inserted as it is; the drawing escapes the whole text)."""

    def __init__(self, lang: str = LANGUAGES[0]):
        self.lang = language(lang) or LANGUAGES[0]
        self._messages = _catalog(self.lang)

    def __call__(self, key: str, **params: object) -> str:
        template = self._messages[key]
        return _PLACEHOLDER.sub(lambda m: str(params[m[1]]) if m[1] in params else m[0], template)

    def month(self, month: str) -> str:
        """"2026-12" as the language says a month."""
        return self("chart.month", year=month[:4], month=int(month[5:7]))
