"""Text a person or a file enters (names, employers, bank names, reasons, notes, vouchers): one check.

A name is shown on the foreman's roll-call, written into the bank's payment file and read aloud at an
arbitration, so what it holds must be what it shows. Refused, on both engines alike:

- control characters, NUL included: PostgreSQL cannot store NUL in text (the import failed with a
  traceback) while SQLite kept it raw, and one control character in a name made the whole site's pain.001
  refuse to be written, blocking every worker's pay;
- format characters: bidi overrides and isolates (U+202E turned ``Zhang Wei (W001)`` into
  ``(666W) Zhang Wei )W001(`` on the roll-call), zero-width spaces and joiners (two names that look alike);
- surrogates, private-use and unassigned code points: nothing a screen can be trusted to show;
- text with no visible letter or digit: U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK and friends
  are letters to Unicode and nothing to the eye;
- runs of combining marks longer than a script needs: hundreds of marks make a wall over the page.

The store checks names, employers, bank names, reasons, vouchers and who did what with this on every
write, so no path (a command, a file, a page, a bank's return) goes around it; a dispute's note is checked
where a worker files it (collector.workers.disputes).
"""

from __future__ import annotations

import unicodedata

from collector.errors import InputError

#: Unicode categories never accepted: control, format, surrogate, private use, unassigned.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
#: Letters and symbols that render as blank space (Unicode calls some of them letters).
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u17b4\u17b5")
#: A person's or a company's name, a bank's name, who did something.
NAME_MAX_CHARS = 100
#: A reason given for a correction, a deduction, an override; a bank's reason for a failed credit.
REASON_MAX_CHARS = 500
#: Combining marks in a row: Vietnamese and Indic text use up to about three on one letter.
MAX_MARKS_IN_A_ROW = 4


class TextError(InputError):
    """Entered text that is refused; the message names the field and why, never echoes the text. ``code``
    says why for a caller that says it in other words: ``not_text``, ``missing``, ``too_long``,
    ``control_character`` (NUL, control, format: bidi, zero-width), ``combining_marks``, ``no_visible_letter``;
    ``detail`` the figure (the limit, the code point)."""

    def __init__(self, message: str, *, code: str = "", detail: str = ""):
        super().__init__(message)
        self.code, self.detail = code, detail


def entered(value: object, *, what: str, limit: int, optional: bool = False) -> str | None:
    """``value`` stripped, or ``TextError``. ``optional``: None and blank give None."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TextError(f"{what} must be text", code="not_text")
    text = value.strip()
    if not text:
        if optional:
            return None
        raise TextError(f"{what} is empty", code="missing")
    if len(text) > limit:
        raise TextError(f"{what} is longer than {limit} characters", code="too_long", detail=str(limit))
    problem = _problem(text)
    if problem:
        raise TextError(f"{what} {problem[1]}", code=problem[0], detail=problem[2])
    return text


def _problem(text: str) -> tuple[str, str, str] | None:
    """(code, what is wrong, the code point) of text that is refused, or None."""
    marks = 0
    visible = False
    for character in text:
        category = unicodedata.category(character)
        if character == "\x00":
            return "control_character", "holds a NUL character", "U+0000"
        if category in REFUSED_CATEGORIES:
            point = f"U+{ord(character):04X}"
            return "control_character", f"holds an invisible or control character ({point})", point
        if category.startswith("M"):
            marks += 1
            if marks > MAX_MARKS_IN_A_ROW:
                return "combining_marks", "holds a run of combining marks", ""
            continue
        marks = 0
        if category[0] in "LN" and character not in INVISIBLE:
            visible = True
    if not visible:
        return "no_visible_letter", "has no visible letter or digit", ""
    return None


def is_clean(text: str) -> bool:
    """True if ``text`` (already stripped) would be accepted: for checks over stored rows."""
    return _problem(text) is None
