"""Terminal-safe output of both command-line tools (``gate-agent`` and ``collector``).

Error messages and printed lines may quote what a gate, a file or a worker list held, or a path given
on the command line: control characters in them are written as escapes (gate_agent.logsetup), and JSON
output stays faithful JSON with the same characters as JSON escapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from .logsetup import escape_control, safe_json


class EscapingGroup(click.Group):
    """A command group whose error messages reach the terminal with control characters escaped, those
    of its commands and those of parsing the command line (an unknown command or option is quoted)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _escaped_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with _escaped_errors():
            return super().invoke(ctx)


@contextmanager
def _escaped_errors() -> Iterator[None]:
    try:
        yield
    except click.ClickException as error:
        error.message = escape_control(error.message, keep_newlines=True)
        raise


def say(text: str, *, err: bool = False) -> None:
    """Print text that may hold values from outside (names, topics, details, paths): control characters
    escaped; the text's own line breaks kept."""
    click.echo(escape_control(text, keep_newlines=True), err=err)


def json_text(data) -> str:
    """JSON as output: faithful (a reader gets the values back exactly), readable (names in any script
    as they are) and terminal-safe (control characters as JSON escapes)."""
    return safe_json(data, indent=2, default=str)
