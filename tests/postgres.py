"""Throwaway PostgreSQL databases for the tests: one per test, created from template0 and dropped after.

The server is COLLECTOR_TEST_POSTGRES (default: the local server, user postgres, trust auth). Without a
server the PostgreSQL tests are skipped, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import uuid

import pytest

SERVER = os.environ.get("COLLECTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


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


def create_database() -> str:
    """A new empty database (C collation: text sorts as bytes, as in SQLite); returns its URL."""
    name = f"collector_test_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
    return url_for(name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
