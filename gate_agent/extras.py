"""The install extras, and the one line a command fails with when the one it needs is not installed.

A gate installs ``[gate]`` (nfcpy), a bank ``[bank]`` (the web server, spreadsheets, XML schemas), so
that neither carries the other's libraries. Both packages import their extra's modules only where a
command uses them, through ``require``: without the extra, that command stops with a line saying which
extra to install (cli_output.ToolGroup shows it, exit status 1), where a bare import would end in an
ImportError's traceback and exit status 70, as if it were a bug. Imports nothing of either package
but its errors, so that any module can use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import GateError

#: The distribution name, as ``pip install`` takes it.
DISTRIBUTION = "site-gate-attendance"


class MissingExtra(GateError):
    """A command needs a library of an install extra that is not installed."""


def install_hint(extra: str) -> str:
    return f"install the {extra} extra: pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, extra: str) -> ModuleType:
    """``module`` imported, or MissingExtra naming ``extra``, the install extra that brings it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        # Not ImportError: a library that is there but fails to load (a native part, say) shows as it is.
        missing = error.name or module
        raise MissingExtra(f"{missing} is not installed; {install_hint(extra)}") from None
