"""Terminal-safe output of both command-line tools (``gate-agent`` and ``collector``), and how their
commands fail.

Error messages and printed lines may quote what a gate, a file or a worker list held, or a path given
on the command line: control characters in them are written as escapes (gate_agent.logsetup), and JSON
output stays faithful JSON with the same characters as JSON escapes.

A command fails one way, decided in one place (``ToolGroup``), so that a script and a person can tell
a mistake they can fix from a bug they must report:

- an error the tool raises for a person (its ``user_errors``) and click's own errors: one line on
  stderr, exit status 1 (click's usage errors: 2);
- anything else is a bug: its traceback is logged (stderr), then one line says so, exit status 70
  (``EX_SOFTWARE`` of sysexits.h).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import click

from .logsetup import escape_control, safe_json

#: The exit status of a command that failed by a bug (sysexits.h EX_SOFTWARE), not by what it was given.
EXIT_BUG = 70


class EscapingGroup(click.Group):
    """A command group whose error messages reach the terminal with control characters escaped, those
    of its commands and those of parsing the command line (an unknown command or option is quoted)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _escaped_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with _escaped_errors():
            return super().invoke(ctx)


class ToolGroup(EscapingGroup):
    """The top command group of a tool: every command's failure becomes what its caller sees here, and
    nowhere else (commands do not catch the tool's errors only to print them)."""

    def user_errors(self) -> tuple[type[Exception], ...]:
        """The exception types a person can act on, shown as their one-line message (exit status 1).
        Looked up when a command fails, so that the modules defining them need not load before."""
        return ()

    def invoke(self, ctx: click.Context):
        with _escaped_errors():
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.Abort, click.exceptions.Exit, EOFError):
                raise  # click's own: it shows them (usage errors exit 2) or they are how a command stops
            except Exception as error:
                if isinstance(error, OSError) and error.errno == errno.EPIPE:
                    raise  # the reader of our output has gone (| head): click ends quietly
                raise self.failure(ctx, error) from None

    def failure(self, ctx: click.Context, error: Exception) -> click.ClickException:
        """What ``error``, which ended a command, becomes: its message when a person can act on it, else
        a bug's report (its traceback goes to the log first: the one line cannot hold it)."""
        from .extras import MissingExtra

        # A missing install extra is the same for both tools, so it is decided here rather than in each
        # tool's user_errors.
        if isinstance(error, (MissingExtra, *self.user_errors())):
            return click.ClickException(str(error))
        command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
        logging.getLogger(ctx.find_root().info_name or self.name or "cli").critical(
            "internal error: `%s` failed with an exception no rule covers", command, exc_info=error)
        return InternalError(error)


class InternalError(click.ClickException):
    """A command ended by an exception no rule covers: a bug (EXIT_BUG), whatever its type says."""

    exit_code = EXIT_BUG

    def __init__(self, error: Exception):
        detail = escape_control(error)[:200]  # line feeds too: the report stays one line
        detail = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        super().__init__(f"internal error, this is a bug ({detail}); the traceback above says where: please "
                         "report it with the command that was run")


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
