"""Shared fixtures: a real Mosquitto on a free port, gate keys and configs, virtual-card devices."""

from __future__ import annotations

import functools
import hashlib
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from collector.deploy.mosquitto import LocalBroker
from tests import browser, postgres
from tests.helpers import CollectorSetup, GateSetup, stop_process, wait_for
from tests.ports import free_port

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


_REPOSITORY_BEFORE = pytest.StashKey[dict | None]()
_REPOSITORY_STRAY = pytest.StashKey[list]()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@functools.cache
def _modules_with_module_fixtures() -> frozenset[str]:
    """Test files (as node ids name them) that define a module-scoped fixture: a built wheel, a served
    database, a running daemon shared by the file's tests."""
    return frozenset(f"tests/{path.name}" for path in Path(__file__).parent.glob("test_*.py")
                     if 'scope="module"' in path.read_text(encoding="utf-8"))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """A file with a module-scoped fixture runs whole in one worker, so the fixture is made once, not once
    per worker; every other test goes to whichever worker is free. (xdist's own ``xdist_group`` marks a
    group by renaming the item's node id, which pytest 9.2 no longer reads: groups were not kept.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in _modules_with_module_fixtures() else nodeid

    return ModuleFixtureScheduling(config, log)


def pytest_sessionstart(session: pytest.Session) -> None:
    # The checkout is looked at once, by the process that runs the session (the controller under xdist),
    # before any worker starts and after all have ended: a worker's own view would see its neighbours'
    # writes in flight.
    if not _is_xdist_worker(session.config):
        session.config.stash[_REPOSITORY_BEFORE] = _repository_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    browser.close()
    postgres.drop_templates()
    if _is_xdist_worker(session.config):
        return
    stray = _stray_paths(session.config.stash.get(_REPOSITORY_BEFORE, None))
    if stray:
        session.config.stash[_REPOSITORY_STRAY] = stray
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    stray = config.stash.get(_REPOSITORY_STRAY, None)
    if stray:
        terminalreporter.section("repository left changed", red=True)
        terminalreporter.line("the repository changed while the tests ran (tests must write into tmp_path; or "
                              "were these edited meanwhile?):\n  " + "\n  ".join(stray), red=True)


def _stray_paths(before: dict[str, tuple[str, str]] | None) -> list[str]:
    """The suite leaves the checkout as it found it: a file a test writes beside the code (a database
    named ``None`` was once committed that way) fails the session, naming the paths. Tests write into
    ``tmp_path``."""
    if before is None:
        return []
    after = _repository_state()
    if after is None:
        return []
    # New paths and changed contents only: a developer's `git add` or commit during the run changes a
    # status or drops a path without any test having written anything.
    return sorted(f"{status} {path}" for path, (status, digest) in after.items()
                  if path not in before or before[path][1] != digest)


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of the test's own, so the test can stop, kill and restart it."""
    instance = LocalBroker(tmp_path / "broker", free_port()).start()
    yield instance
    instance.kill()


@pytest.fixture
def udp_device() -> str:
    """A virtual card's udp device on a port of this worker's own."""
    return f"udp:127.0.0.1:{free_port()}"


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


@pytest.fixture
def postgres_schema_db():
    """The URL of a new PostgreSQL database holding the collector's schema (a copy of this worker's
    template: what the first `collector` command would have built), dropped after the test."""
    postgres.require_server()
    url = postgres.create_database(schema=True)
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where the collector's database lives: a SQLite file (not made yet), then a PostgreSQL database
    holding the schema (storage tests run on both backends)."""
    if request.param == "sqlite":
        return tmp_path / "collector.sqlite3"
    return request.getfixturevalue("postgres_schema_db")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """Like ``database``, with the PostgreSQL one empty: for the tests of building the schema."""
    if request.param == "sqlite":
        return tmp_path / "collector.sqlite3"
    return request.getfixturevalue("postgres_db")


@pytest.fixture
def collector(tmp_path, broker, gate, database):
    """A collector for the ``gate`` fixture's site S1 and gate, on each backend (a test module may define its own)."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=broker, db=database)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    return setup


@pytest.fixture
def collector_process(collector):
    """That collector's daemon, connected to the broker; killed at the end."""
    process = collector.start()
    wait_for(lambda: "connected to" in collector.log(), message="collector connected")
    yield process
    stop_process(process, signal.SIGKILL)
