"""What every collector command shares: --config, --json, how a command fails, terminal-safe output."""

from __future__ import annotations

import functools
import logging
from datetime import date, datetime, timedelta

import click

from collector.config import load_config
from collector.errors import InputError, user_facing
from collector.store import DatabaseError, Store, StoreError
from gate_agent.cli_output import EscapingGroup as Group
from gate_agent.cli_output import ToolGroup, json_text, say
from gate_agent.protocol import valid_id

__all__ = ["CollectorGroup", "Context", "EXIT_TRY_AGAIN", "Group", "LocalDate", "check_id", "emit",
           "format_options", "json_option", "json_text", "progressbar", "resolve_day", "say", "with_config"]

#: The exit status of a command the database failed (sysexits.h EX_TEMPFAIL): the transaction it was in
#: was not kept; a script may try again once the database is back.
EXIT_TRY_AGAIN = 75


class CollectorGroup(ToolGroup):
    """``collector``'s top group: where every command's failure becomes what its caller sees
    (gate_agent/cli_output.py; docs/bank-ops.md lists the exit statuses)."""

    def user_errors(self) -> tuple[type[Exception], ...]:
        return user_facing()

    def failure(self, ctx: click.Context, error: Exception) -> click.ClickException:
        if isinstance(error, DatabaseError):
            # Neither the operator's mistake nor surely a bug: a disk, a lock or a connection failed, or a
            # query did. The driver's traceback helps only in the second case, and -vv shows it.
            logging.getLogger("collector").debug("the database failed", exc_info=error)
            return TryAgain(f"the database failed: {error} (the transaction it was in was not kept; try again "
                            "later; -vv shows the driver's traceback)")
        return super().failure(ctx, error)


class TryAgain(click.ClickException):
    exit_code = EXIT_TRY_AGAIN


class Context:
    def __init__(self, config_path: str):
        self.config = load_config(config_path)

    def store(self, *, readonly: bool = False) -> Store:
        return CommandStore(self.config.db, readonly=readonly, timeouts=self.config.timeouts())


class CommandStore(Store):
    """A command's store. Whatever a command changed that shapes days is recomputed into the kept days
    before it ends (``attendance.days``), so the next read finds them current with no daemon running; a
    failure there is logged and left to the next reader or the daemon (the change itself is kept)."""

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None and not self.db.readonly:
                from collector.attendance import days

                try:
                    days.refresh(self)
                except (DatabaseError, StoreError) as error:
                    logging.getLogger("collector").warning("kept days not recomputed now (the daemon or the "
                                                           "next read will): %s", error)
        finally:
            super().__exit__(kind, value, traceback)


#: Where the configuration is when --config is not given: this variable, else the installed file.
CONFIG_ENVIRONMENT = "COLLECTOR_CONFIG"
DEFAULT_CONFIG = "/etc/collector/collector.toml"


def with_config(func):
    """--config PATH (default: $COLLECTOR_CONFIG, else /etc/collector/collector.toml), turned into a
    Context. Errors are not caught here: CollectorGroup decides for every command how it fails."""

    @click.option("--config", "config_path", envvar=CONFIG_ENVIRONMENT, default=DEFAULT_CONFIG,
                  show_default=True, type=click.Path(dir_okay=False),
                  help=f"The collector's TOML configuration file (or ${CONFIG_ENVIRONMENT}).")
    @functools.wraps(func)
    def wrapper(config_path, *args, **kwargs):
        return func(Context(config_path), *args, **kwargs)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def emit(as_json: bool, data, line: str) -> None:
    if as_json:
        click.echo(json_text(data))
    else:
        say(line)


def check_id(kind: str, value: str) -> str:
    if not valid_id(value):
        raise InputError(f"{kind} {value!r} is not an id (letters, digits, '_', '.', '-')")
    return value


def progressbar(iterable=None, *, length: int | None = None, label: str):
    """A progress bar on stderr for long jobs, drawn only on a terminal (scripts read clean output)."""
    import sys

    return click.progressbar(iterable, length=length, label=label, file=sys.stderr,
                             hidden=not sys.stderr.isatty(), show_eta=False)


class LocalDate(click.ParamType):
    """A local date: YYYY-MM-DD, ``today`` or ``yesterday`` (at the site, when the command has one).
    A date that does not exist (2026-11-31) is one clear line."""

    name = "date"

    def convert(self, value, param, ctx):
        import calendar
        import re

        if isinstance(value, date):
            return value
        text = str(value).strip().lower()
        if text in ("today", "yesterday"):
            return _RelativeDay(text)
        match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
        if not match:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD, today or yesterday)", param, ctx)
        year, month, day = map(int, match.groups())
        if not 1 <= month <= 12:
            self.fail(f"{value} does not exist: there is no month {month}", param, ctx)
        days = calendar.monthrange(year, month)[1] if 1 <= year else 31
        if not 1 <= day <= days:
            self.fail(f"{value} does not exist: {calendar.month_name[month]} {year} has {days} days", param, ctx)
        return date(year, month, day)


class _RelativeDay(str):
    """``today``/``yesterday``, resolved in the site's zone once the command knows its site."""

    def resolve(self, tz) -> date:

        today = datetime.now(tz).date()
        return today - timedelta(days=1) if self == "yesterday" else today


def resolve_day(value, tz):
    """A LocalDate value as a date in ``tz``."""
    return value.resolve(tz) if isinstance(value, _RelativeDay) else value


def format_options(func):
    """--json and --csv, which exclude each other."""
    func = click.option("--csv", "as_csv", is_flag=True, help="CSV for spreadsheets (UTF-8 with a BOM: Excel "
                        "reads it as it is).")(func)
    func = json_option(func)

    @functools.wraps(func)
    def wrapper(*args, as_json=False, as_csv=False, **kwargs):
        if as_json and as_csv:
            raise click.UsageError("--json and --csv exclude each other: give one")
        return func(*args, as_json=as_json, as_csv=as_csv, **kwargs)

    return wrapper


def write_new_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """``data`` as a new file at ``path`` (never over anything there), or the one line saying why not: the
    files commands write for people hold personal data, hence 0600 unless told otherwise."""
    from gate_agent.files import write_new

    try:
        write_new(path, data, mode)
    except FileExistsError:
        raise click.ClickException(f"{path} already exists; choose another name (nothing is overwritten)") from None
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None


def check_xlsx_output(xlsx_file: str | None, as_json: bool, as_csv: bool) -> None:
    """``--xlsx FILE`` beside --json and --csv: one output only, a name ending in .xlsx, and no file there
    (refused before any work is done)."""
    import os

    if xlsx_file is None:
        return
    if as_json or as_csv:
        raise click.UsageError("--xlsx, --json and --csv exclude each other: give one")
    if not xlsx_file.lower().endswith(".xlsx"):
        raise click.UsageError(f"--xlsx {xlsx_file}: the workbook's name ends in .xlsx")
    if os.path.lexists(xlsx_file):
        raise click.ClickException(f"{xlsx_file} already exists; choose another name (nothing is overwritten)")


def site_time(utc_text: str, tz, *, seconds: bool = False) -> str:
    """A stored UTC instant as a person at the site reads it: 2026-11-03 08:00 (to the minute, or to the
    second)."""
    from collector.localtime import local_text

    shown = local_text(utc_text, tz)
    return shown[:19 if seconds else 16].replace("T", " ") if shown else utc_text
