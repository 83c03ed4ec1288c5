"""Shared fixtures: a real Mosquitto on a free port, gate keys and configs, virtual-card devices."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from collector.broker import LocalBroker
from tests import postgres
from tests.helpers import GateSetup

ROOT = Path(__file__).parent.parent


def _repository_state() -> dict[str, tuple[str, str]] | None:
    """Each path ``git status`` shows (untracked files one by one, ignored ones not), with its status and
    a digest of its content; None outside a git checkout or without git."""
    if shutil.which("git") is None:
        return None
    try:
        # --no-optional-locks: never take the index lock from under a developer's own git command.
        result = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain=v1", "-z",
                                 "--untracked-files=all", "--", "."], cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    state = {}
    entries = iter(result.stdout.decode(errors="surrogateescape").split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            next(entries, None)  # a rename's or copy's second field is its old name
        # The digest: a file a developer had already changed before the run still counts when a test
        # changes it again.
        try:
            digest = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        except OSError:
            digest = ""
        state[path] = (status, digest)
    return state


@pytest.fixture(scope="session", autouse=True)
def repository_left_clean():
    """The suite leaves the checkout as it found it: a file a test writes beside the code (a database
    named ``None`` was once committed that way) fails the session, naming the paths. Tests write into
    ``tmp_path``."""
    before = _repository_state()
    yield
    if before is None:
        return
    after = _repository_state()
    if after is None:
        return
    # New paths and changed contents only: a developer's `git add` or commit during the run changes a
    # status or drops a path without any test having written anything.
    stray = sorted(f"{status} {path}" for path, (status, digest) in after.items()
                   if path not in before or before[path][1] != digest)
    if stray:
        pytest.fail("the repository changed while the tests ran (tests must write into tmp_path; or were "
                    "these edited meanwhile?):\n  " + "\n  ".join(stray), pytrace=False)


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
