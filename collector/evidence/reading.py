"""Reading an evidence file's bytes strictly, so that no other program could read it as saying something else.

Both formats are JSON (RFC 8259) in UTF-8: no byte order mark, every object's names once (a second
``"sig"`` or ``"name"`` is read by one JSON reader and not by another), no NaN or Infinity, no lone
surrogate, nothing after the document. Version 1 files hold numbers with a fraction (``16.0``); version 2
files hold none, nor integers beyond what a JavaScript number holds exactly: ``check_numbers`` is that
rule, applied once the version is known (docs/evidence-format.md section 1).
"""

from __future__ import annotations

import json

from collector.errors import CollectorError
from collector.evidence.canonical import MAX_INTEGER


class EvidenceError(CollectorError):
    """The file does not verify; the message names the first thing that fails."""


def read_evidence(data: bytes) -> object:
    """An evidence file's bytes as JSON, strictly (EvidenceError otherwise): UTF-8 without a byte order
    mark, every object's names once, no NaN or Infinity, no lone surrogate, nothing after the document."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise EvidenceError("not JSON: the file starts with a byte order mark")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_once, parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise EvidenceError(f"not UTF-8: {error.reason} at byte {error.start}") from None
    except RecursionError:
        raise EvidenceError("not JSON: nested too deeply") from None
    except ValueError as error:
        raise EvidenceError(f"not JSON: {str(error)[:160]}") from None
    _check_text(document)
    return document


def check_numbers(document: object) -> None:
    """Every number an integer within +-(2**53 - 1): what a version 2 file holds (EvidenceError otherwise).
    ``16.0`` and ``1e3`` are read as floats, so a number written with a fraction or an exponent fails
    here even where its value is a whole number."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            raise EvidenceError(f"a number with a fraction or an exponent ({item!r}): a version 2 file holds "
                                "integers only")
        if type(item) is int and abs(item) > MAX_INTEGER:
            raise EvidenceError(f"the integer {str(item)[:30]} is beyond +-(2**53 - 1)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _once(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen = set()
        twice = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise ValueError(f"the name {twice!r} appears twice in one object")
    return found


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_text(node: object) -> None:
    """Every string (names too) is text: a lone surrogate escape (\\ud800) is not a character."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise EvidenceError("not JSON text: a lone surrogate in a string") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
