"""Reading TOML configuration with one clear line per mistake.

Shared by the gate agent and the collector (standard library only). A bad config is refused at start
with a message naming the file, the key and the problem, never a traceback and never a guessed value.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import GateError
from .files import secret_file_problem

REQUIRED = object()
_ABSENT = object()


class ConfigError(GateError):
    """A configuration file that cannot be used; the message is one line."""


class Table:
    """One TOML table being read; every key read is remembered so leftovers can be refused."""

    def __init__(self, data: dict, source: Path, prefix: str = ""):
        self._data = data
        self._source = source
        self._prefix = prefix
        self._seen: set[str] = set()
        self._children: list[Table] = []
        self.deferred = False  # read later by whoever needs it (see table(..., deferred=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Table:
        path = Path(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as error:
            raise ConfigError(f"{path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        return cls(data, path)

    @property
    def base_dir(self) -> Path:
        return self._source.parent

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._source}: {self._prefix}{key}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        """The value, or _ABSENT when the key is missing and has a default (returned unchecked)."""
        self._seen.add(key)
        if key in self._data:
            return self._data[key]
        if default is REQUIRED:
            raise self.error(key, "missing (required)")
        return _ABSENT

    def keys(self) -> list[str]:
        return list(self._data)

    def str(self, key: str, default: Any = REQUIRED, *, check=None, hint: str = "") -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a non-empty string")
        if check is not None and not check(value):
            raise self.error(key, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if value not in options:
            raise self.error(key, f"{value!r} is not one of {', '.join(options)}")
        return value

    # Every number has both bounds, and no default for them: a value far beyond any sensible one (a
    # tolerance of 1e300 seconds overflows a timedelta) is refused at start, not met later in a crash.
    def int(self, key: str, default: Any = REQUIRED, *, minimum: int, maximum: int) -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if type(value) is not int:
            raise self.error(key, f"must be an integer, not {value!r}")
        return self._bounded(key, value, minimum, maximum)

    def number(self, key: str, default: Any = REQUIRED, *, minimum: float, maximum: float) -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if type(value) not in (int, float):
            raise self.error(key, f"must be a number, not {value!r}")
        # TOML has nan and inf; either slips past every bound (nan compares false) and breaks whatever
        # waits, sleeps or counts with it.
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, not {value!r}")
        return self._bounded(key, float(value), minimum, maximum)

    def _bounded(self, key, value, minimum, maximum):
        if value < minimum:
            raise self.error(key, f"{value} is below the minimum {minimum}")
        if value > maximum:
            raise self.error(key, f"{value} is above the maximum {maximum}")
        return value

    def bool(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if type(value) is not bool:
            raise self.error(key, f"must be true or false, not {value!r}")
        return value

    def list_of_str(self, key: str, default: Any = REQUIRED, *, options: tuple[str, ...] | None = None) -> Any:
        value = self._get(key, default)
        if value is _ABSENT:
            return default
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a non-empty list of strings")
        if options is not None:
            for item in value:
                if item not in options:
                    raise self.error(key, f"{item!r} is not one of {', '.join(options)}")
        return value

    def path(self, key: str, default: Any = REQUIRED) -> Any:
        """A path; relative ones are relative to the config file, ``$VARS`` are expanded (systemd's
        ``$CREDENTIALS_DIRECTORY`` and ``$STATE_DIRECTORY``)."""
        return self.path_later(key, default)()

    def path_later(self, key: str, default: Any = REQUIRED):
        """Check that ``key`` is a path now; expand it only when the returned function is called. A
        secret named as ``$CREDENTIALS_DIRECTORY/...`` exists only in the service systemd gives it to,
        and another process reading the same file (the read-only web service) never needs it."""
        value = self._get(key, default)
        if value is _ABSENT:
            return lambda: default
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a path")
        return lambda: self.expand_path(key, value)

    def expand_path(self, key: str, value: str) -> Path:
        """``value`` as ``path`` reads it: ``$VARS`` expanded, relative to the config file."""
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            raise self.error(key, f"{value!r} names an environment variable that is not set")
        path = Path(expanded)
        return path if path.is_absolute() else self.base_dir / path

    def table(self, key: str, *, required: bool = False, deferred: bool = False) -> Table:
        """A sub-table. A deferred one is read (and its unknown keys refused) by whoever needs it, when
        it needs it: the daemon's [mqtt] names secrets the read-only web service never has."""
        value = self._get(key, REQUIRED if required else {})
        if value is _ABSENT:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        child = Table(value, self._source, f"{self._prefix}{key}.")
        child.deferred = deferred
        self._children.append(child)
        return child

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        return default if value is _ABSENT else value

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")
        for child in self._children:
            if not child.deferred:
                child.finish()


def read_secret(table: Table, key: str) -> str | None:
    """Secrets live in files of their own (mode 0600 or a systemd credential), never in the config."""
    path = table.path(key, None)
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise table.error(key, f"cannot read {path}: {error.strerror}") from None
    check_secret_file(table, key, path)
    return text


def check_secret_file(table: Table, key: str, path: Path) -> None:
    """Refuse a secret file other users may read or change (a systemd credential is exempt)."""
    problem = secret_file_problem(path)
    if problem:
        raise table.error(key, problem)
