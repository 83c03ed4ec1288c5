"""What every collector command shares: --config, --json, one-line errors, terminal-safe output."""

from __future__ import annotations

import functools
import json

import click

from gate_agent.configfile import ConfigError
from gate_agent.logsetup import escape_control
from gate_agent.protocol import valid_id

from .config import load_config
from .store import Store, StoreError


class Context:
    def __init__(self, config_path: str):
        try:
            self.config = load_config(config_path)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None

    def store(self, *, readonly: bool = False) -> Store:
        try:
            return Store(self.config.db, readonly=readonly)
        except StoreError as error:
            raise click.ClickException(str(error)) from None


def with_config(func):
    """--config PATH, turned into a Context; StoreError and ValueError become one clear line."""

    @click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                  help="The collector's TOML configuration file.")
    @functools.wraps(func)
    def wrapper(config_path, *args, **kwargs):
        try:
            return func(Context(config_path), *args, **kwargs)
        except (StoreError, ValueError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


class Group(click.Group):
    """The command group: error messages may quote what a gate, a file or a worker list held, so they
    reach the terminal with control characters escaped (as everything else printed as text does)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            error.message = escape_control(error.message, keep_newlines=True)
            raise


def say(text: str, *, err: bool = False) -> None:
    """Print text that may hold values from outside (names, topics, details): control characters
    escaped; the text's own line breaks kept."""
    click.echo(escape_control(text, keep_newlines=True), err=err)


def json_text(data) -> str:
    """JSON as output: faithful (a reader gets the values back exactly) and terminal-safe. ASCII escapes
    every control character but DEL, which json leaves raw."""
    return json.dumps(data, indent=2, default=str).replace("\x7f", "\\u007f")


def emit(as_json: bool, data, line: str) -> None:
    if as_json:
        click.echo(json_text(data))
    else:
        say(line)


def check_id(kind: str, value: str) -> str:
    if not valid_id(value):
        raise ValueError(f"{kind} {value!r} is not an id (letters, digits, '_', '.', '-')")
    return value


def progressbar(iterable=None, *, length: int | None = None, label: str):
    """A progress bar on stderr for long jobs, drawn only on a terminal (scripts read clean output)."""
    import sys

    return click.progressbar(iterable, length=length, label=label, file=sys.stderr,
                             hidden=not sys.stderr.isatty(), show_eta=False)
