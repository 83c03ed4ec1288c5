"""Shared fixtures: a real Mosquitto on a free port, gate keys and configs, virtual-card devices."""

from __future__ import annotations

import socket

import pytest

from collector.broker import LocalBroker
from tests import postgres
from tests.helpers import GateSetup


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of the test's own, so the test can stop, kill and restart it."""
    instance = LocalBroker(tmp_path / "broker").start()
    yield instance
    instance.kill()


@pytest.fixture
def udp_device() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"udp:127.0.0.1:{port}"


@pytest.fixture
def gate(tmp_path, broker, udp_device) -> GateSetup:
    """Key, config and data directory of one gate (S1/north) reading a udp virtual card."""
    return GateSetup.create(tmp_path / "gate", broker=broker, device=udp_device)


@pytest.fixture
def postgres_db():
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    postgres.require_server()
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where the collector's database lives: a SQLite file, then a PostgreSQL database (storage tests
    run on both backends)."""
    if request.param == "sqlite":
        return tmp_path / "collector.sqlite3"
    return request.getfixturevalue("postgres_db")
