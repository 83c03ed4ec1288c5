"""What every collector command shares: --config, --json, one-line errors, terminal-safe output."""

from __future__ import annotations

import functools

import click

from gate_agent.cli_output import EscapingGroup as Group
from gate_agent.cli_output import json_text, say
from gate_agent.configfile import ConfigError
from gate_agent.protocol import valid_id

from .config import load_config
from .store import Store, StoreError

__all__ = ["Context", "Group", "check_id", "emit", "json_option", "json_text", "progressbar", "say", "with_config"]


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
