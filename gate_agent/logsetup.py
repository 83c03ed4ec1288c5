"""Logging to stderr in a form journald understands (shared by both command-line tools), and the one
place where text from outside is made safe for a terminal.

Under systemd (``$JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority, which
journald turns into the entry's level; elsewhere lines carry a timestamp instead.

Log lines quote what gates, files and browsers send (topics, field names, paths). Terminal control
sequences in them (``ESC]0;...BEL`` retitles the operator's terminal, ``ESC[2J`` clears it, a bidi
override reorders what is shown, a line feed forges a log line) are written as escapes instead. JSON
the tools and the API write is made safe the same way (``safe_json``), in JSON's own escapes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

#: Beyond the C0 controls: DEL, C1 controls, the bidi marks, embeddings, overrides and isolates, the
#: Unicode line and paragraph separators (which some viewers break lines at), and lone surrogates (not
#: characters at all: no UTF-8 writer can write one).
_WIDE_CONTROLS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROLS = f"[\x00-\x1f{_WIDE_CONTROLS}]"
_CONTROL = re.compile(_CONTROLS)
_CONTROL_BUT_NEWLINE = re.compile("(?!\n)" + _CONTROLS)
#: What json.dumps leaves raw: it escapes the C0 controls itself.
_JSON_RAW = re.compile(f"[{_WIDE_CONTROLS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as ``\\xNN`` / ``\\uNNNN``, fit for a terminal or a
    log line. ``keep_newlines`` keeps line feeds (for text made of several lines, such as a traceback)."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escape, str(text))


def safe_json(data: object, **options) -> str:
    """``json.dumps(data, **options)`` that is valid and faithful (a reader gets every value back exactly)
    and safe to show: letters of every script stay readable (Chinese names), and every control character
    (json writes DEL, C1 controls, bidi overrides and lone surrogates raw) is a ``\\uXXXX`` escape. Those
    code points occur only inside JSON strings, where the escape means the same code point."""
    return _JSON_RAW.sub(_json_escape, json.dumps(data, ensure_ascii=False, **options))


def _json_escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in the message (line feeds included: one record, one line) and in
    exception and stack text (line feeds kept: a traceback spans lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return escape_control(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_control(super().formatStack(stack_info), keep_newlines=True)


class _JournalFormatter(EscapingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>" + super().format(record)


def setup_logging(verbosity: int = 0) -> None:
    level = logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity >= 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # nfcpy and paho are chatty below WARNING; -vv shows them.
    for noisy in ("nfc", "gate_agent.mqtt.paho"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
