"""The gate agent's errors that a person can act on: the base every user-facing gate error derives from.

`gate-agent` turns one of these into a single line on stderr and exit status 1 (gate_agent/cli.py);
any other exception that reaches it is a bug (a logged traceback, exit status 70). Imports nothing, so
every gate module can use it.
"""

from __future__ import annotations


class GateError(Exception):
    """Something a person can act on; the message says what in one line."""


class GateInputError(GateError, ValueError):
    """What a person gave (a card UID, a public key, a card number, a key file's content) is refused; the
    message says why. Also a ValueError, which callers caught before this class existed."""
