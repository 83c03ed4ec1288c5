"""The collector's errors that a person can act on: the base every user-facing error type derives from.

A command turns one of these into a single line on stderr and exit status 1, and the web API into a
4xx answer ``{"error": message}`` (collector/cli/common.py, collector/web/app.py); any other exception
that reaches them is a bug, shown as one (a logged traceback, exit status 70, a 500 answer).

This module imports nothing, so that the store (collector/store), which must not depend on the rest
of the collector, can derive its errors from it.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Something a person can act on; the message says what in one line."""


class InputError(CollectorError, ValueError):
    """What a person gave (a date, a period, an id, an amount, a time zone, a file's content) is refused;
    the message says why. Also a ValueError: callers that caught ValueError around parsing and checking
    still catch it (and collector/attendance/reports.py, rules.py and collector/workers/record.py still raise bare ValueError
    for periods and months until they raise this)."""


def user_facing() -> tuple[type[Exception], ...]:
    """What a command or a web request shows a person as it is: the collector's errors, and the gate
    agent's errors raised by the code the collector shares with it to read what a person gave (the
    configuration file, key files, card UIDs, public keys, card numbers). Other gate errors (a
    ProtocolError, say) are the collector's to turn into its own where they mean bad input, as verifying
    a bundle or an evidence file does; anywhere else they are a bug."""
    from gate_agent.configfile import ConfigError
    from gate_agent.errors import GateInputError
    from gate_agent.keys import KeyFileError

    return (CollectorError, ConfigError, KeyFileError, GateInputError)
