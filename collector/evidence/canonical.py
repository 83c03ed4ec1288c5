"""The canonical bytes of a signed document from evidence format 2 on: RFC 8785 (the JSON Canonicalization
Scheme) for documents without fractional numbers, so that a verifier in any language rebuilds exactly the
bytes the bank signed.

Format 1 signed Python's ``json.dumps(sort_keys=True, ensure_ascii=True)`` of a document holding floats,
whose spelling (``16.0``, ``539.66``) only Python's ``repr`` gives. Format 2 signs no float at all (times
are text, durations integer milliseconds), which makes RFC 8785 short to state and to implement:

- ``null``, ``true``, ``false``;
- an integer in decimal, no sign for zero or positives, no leading zero, within +-(2**53 - 1) (I-JSON: what
  a JavaScript number holds exactly);
- a string in double quotes, with ``"`` and ``\\`` escaped by a backslash, U+0008, U+0009, U+000A, U+000C and
  U+000D as ``\\b \\t \\n \\f \\r``, every other character below U+0020 as ``\\u00xx`` (lower-case hex), and
  every other character as itself in UTF-8 (no ``\\u`` escape for non-ASCII); a lone surrogate is no text;
- an array's elements in order, separated by ``,``;
- an object's members sorted by their names compared as sequences of UTF-16 code units, ``name:value``
  separated by ``,``; no name twice;
- no whitespace anywhere.

docs/evidence-format.md states the same rule for verifier writers.
"""

from __future__ import annotations

import json

#: The largest integer a signed document may hold (and its negative): I-JSON, RFC 7493.
MAX_INTEGER = 2**53 - 1

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class CanonicalError(ValueError):
    """A value the canonical form does not hold (a float, a huge integer, a lone surrogate, a non-text name)."""


def jcs(document: object) -> bytes:
    """The RFC 8785 bytes of ``document`` (dicts, lists, strings, integers, booleans and None only)."""
    if _plain(document, 0):
        # Python's compact, non-ASCII JSON spells strings, integers and literals as RFC 8785 does, and
        # its key order (by code point) is UTF-16's when no name holds a character from U+D800 on: one
        # pass of its C encoder instead of one Python call per character (an evidence file of a busy
        # gate's segment holds a million strings).
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    else:
        parts: list[str] = []
        _write(document, parts, 0)
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("a string holds a lone surrogate, which is no text") from None


def _plain(value: object, depth: int) -> bool:
    """Whether ``value`` may be written by ``json.dumps`` (every name below U+D800); CanonicalError for
    what has no canonical form at all."""
    if depth > 64:
        raise CanonicalError("nested more than 64 deep")
    if value is None or value is True or value is False or isinstance(value, str):
        return True
    if type(value) is int:
        if abs(value) > MAX_INTEGER:
            raise CanonicalError(f"the integer {value} is beyond +-(2**53 - 1)")
        return True
    if isinstance(value, list | tuple):
        plain = True
        for item in value:
            plain = _plain(item, depth + 1) and plain
        return plain
    if isinstance(value, dict):
        plain = True
        for name, item in value.items():
            if not isinstance(name, str):
                raise CanonicalError(f"an object's name is {type(name).__name__}, not text")
            if not name.isascii() and max(name) >= "\ud800":
                plain = False
            plain = _plain(item, depth + 1) and plain
        return plain
    raise CanonicalError(f"a {type(value).__name__} has no canonical form here (format 2 signs no float)")


def _write(value: object, parts: list[str], depth: int) -> None:
    if depth > 64:
        raise CanonicalError("nested more than 64 deep")
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif type(value) is int:
        if abs(value) > MAX_INTEGER:
            raise CanonicalError(f"the integer {value} is beyond +-(2**53 - 1)")
        parts.append(str(value))
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts, depth + 1)
        parts.append("]")
    elif isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise CanonicalError(f"an object's name is {type(name).__name__}, not text")
        parts.append("{")
        for index, name in enumerate(sorted(value, key=_utf16)):
            if index:
                parts.append(",")
            parts.append(_string(name))
            parts.append(":")
            _write(value[name], parts, depth + 1)
        parts.append("}")
    else:
        # A float above all: its spelling differs between languages, so a signed document holds none.
        raise CanonicalError(f"a {type(value).__name__} has no canonical form here (format 2 signs no float)")


def _utf16(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare as the code units do; surrogatepass keeps a lone surrogate sortable
    # here so that the encoding step reports it.
    return name.encode("utf-16-be", "surrogatepass")


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)
