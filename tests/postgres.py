"""Throwaway PostgreSQL databases for the tests, cloned from templates each test process builds once.

Each process (a pytest-xdist worker, or the one process of a serial run) makes two template databases
the first time a test asks: an empty one (C collation, from template0) and one holding the collector's
schema. A test's database is a ``CREATE DATABASE ... TEMPLATE`` copy of either, which is faster than
building the schema again. Every name holds the worker's id and a token of the process, so neither two
workers nor two runs of the suite on one server meet; the test drops its database, and the process its
templates when the session ends.

The server is COLLECTOR_TEST_POSTGRES (default: the local server, user postgres, trust auth). Without a
server the PostgreSQL tests are skipped, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid

import pytest

SERVER = os.environ.get("COLLECTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

#: collector_test_<worker>_<process token>: what every database of this process is named after.
PREFIX = "collector_test_{}_{}".format(re.sub(r"[^a-z0-9]", "", os.environ.get("PYTEST_XDIST_WORKER", "main").lower())
                                       or "main", uuid.uuid4().hex[:8])
EMPTY_TEMPLATE = f"{PREFIX}_empty"
SCHEMA_TEMPLATE = f"{PREFIX}_schema"
_numbers = itertools.count(1)
_templates: set[str] = set()


def admin():
    import psycopg

    return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)


def server_available() -> str | None:
    """None if the server answers, else why not."""
    try:
        with admin() as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # any failure to reach it: ImportError, OperationalError
        return f"{type(error).__name__}: {error}"
    return None


def require_server() -> None:
    problem = server_available()
    if problem is None:
        return
    message = f"PostgreSQL at {SERVER} is not available ({problem})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def url_for(name: str) -> str:
    base, _, _ = SERVER.rpartition("/")
    return f"{base}/{name}"


def _template(schema: bool) -> str:
    """This process's template, made on first use: empty (C collation: text sorts as bytes, as in SQLite),
    or with the collector's schema applied by the store itself."""
    name = SCHEMA_TEMPLATE if schema else EMPTY_TEMPLATE
    if name in _templates:
        return name
    source = _template(False) if schema else "template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {source}")
    if schema:
        from collector.store import Store

        try:
            with Store(url_for(name)):
                pass  # opening a database applies every schema step
        except BaseException:
            drop_database(url_for(name))
            raise
    _templates.add(name)
    return name


def create_database(*, schema: bool = False) -> str:
    """A new database, empty or (``schema``) holding the collector's current schema; returns its URL."""
    name = f"{PREFIX}_{next(_numbers)}"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {_template(schema)}")
    return url_for(name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_templates() -> None:
    """Drop this process's templates (the schema one first: it was copied from the empty one)."""
    if not _templates:
        return
    with admin() as conn:
        for name in (SCHEMA_TEMPLATE, EMPTY_TEMPLATE):
            if name in _templates:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                _templates.discard(name)
