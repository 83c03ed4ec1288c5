"""Every PostgreSQL connection is opened with bounded waits, and a lost one is opened again.

A collector paused inside a burst once froze every other collector: they waited on its locks without
limit. These check the bounds each connection carries, that a wait on a gate or a row another connection
holds gives up within them (and says "busy", which the daemon retries later), and that a connection the
server ended is opened again between transactions.
"""

from __future__ import annotations

import time

import pytest

from collector.config import load_config
from collector.store import DatabaseBusy, DatabaseError, Store, Timeouts
from collector.store.postgresql import gate_lock_key


@pytest.fixture
def admin(postgres_db):
    import psycopg

    with psycopg.connect(postgres_db, autocommit=True) as conn:
        yield conn


def shown(store: Store, name: str) -> str:
    return store.execute(f"SHOW {name}").fetchone()[0]


def test_every_connection_carries_the_bounds_it_was_given(postgres_db):
    with Store(postgres_db, timeouts=Timeouts(statement=7, lock=0.5, idle_in_transaction=3)) as store:
        assert shown(store, "statement_timeout") == "7s"
        assert shown(store, "lock_timeout") == "500ms"
        assert shown(store, "idle_in_transaction_session_timeout") == "3s"


def test_without_bounds_given_a_connection_has_the_commands_defaults(postgres_db):
    with Store(postgres_db) as store, Store(postgres_db, readonly=True) as reader:
        for each in (store, reader):
            assert shown(each, "statement_timeout") == "5min"
            assert shown(each, "lock_timeout") == "30s"
            assert shown(each, "idle_in_transaction_session_timeout") == "10min"
        assert shown(reader, "default_transaction_read_only") == "on"


def test_the_daemon_derives_its_bounds_from_the_lease_and_the_configuration_overrides_them(tmp_path, postgres_db):
    path = tmp_path / "collector.toml"
    path.write_text(f'db = "{postgres_db}"\n[cluster]\nlease_seconds = 8\n')
    config = load_config(path)
    assert config.timeouts(daemon=True) == Timeouts(statement=32, lock=2, idle_in_transaction=8)
    assert config.timeouts() == Timeouts()
    path.write_text(f'db = "{postgres_db}"\n[cluster]\nlease_seconds = 8\n[database]\nlock_timeout_seconds = 1.5\n'
                    "idle_in_transaction_timeout_seconds = 20\nstatement_timeout_seconds = 90\n")
    config = load_config(path)
    assert config.timeouts(daemon=True) == config.timeouts() == Timeouts(statement=90, lock=1.5,
                                                                        idle_in_transaction=20)
    with Store(postgres_db, timeouts=config.timeouts(daemon=True)) as store:
        assert shown(store, "lock_timeout") == "1500ms" and shown(store, "statement_timeout") == "90s"


@pytest.mark.parametrize("value", [0, -1, float("nan"), 86401, "5", True])
def test_bounds_outside_reason_are_refused(value):
    with pytest.raises(ValueError):
        Timeouts(lock=value)


def test_a_gate_held_elsewhere_is_reported_busy_within_the_wait(postgres_db, admin):
    with Store(postgres_db, timeouts=Timeouts(lock=0.3)) as store:
        admin.execute("SELECT pg_advisory_lock(%s)", (gate_lock_key("S1", "north"),))
        began = time.monotonic()
        with store.transaction():
            busy = store.db.lock_gates([("S1", "north"), ("S1", "south")], partial=True)
        assert busy == {("S1", "north")}
        with pytest.raises(DatabaseBusy) as raised, store.transaction():
            store.db.lock_gates([("S1", "north")])
        assert raised.value.gates == {("S1", "north")}
        assert time.monotonic() - began < 10  # bounded (0.6 s of waits on an idle machine)
        # A try without waiting, as the daemon's retries of set-aside messages do:
        with store.transaction():
            assert store.db.lock_gates([("S1", "north")], partial=True, wait=0) == {("S1", "north")}
        admin.execute("SELECT pg_advisory_unlock(%s)", (gate_lock_key("S1", "north"),))
        with store.transaction():
            assert store.db.lock_gates([("S1", "north")], partial=True) == set()


def test_a_row_held_elsewhere_gives_a_busy_error_not_a_hang(postgres_db):
    with Store(postgres_db) as holder, Store(postgres_db, timeouts=Timeouts(lock=0.3)) as waiter:
        holder.add_counters({"stored": 1})
        with holder.transaction():
            holder.add_counters({"stored": 1})  # holds the row until this block ends
            with pytest.raises(DatabaseBusy), waiter.transaction():
                waiter.add_counters({"stored": 1})
        with waiter.transaction():
            waiter.add_counters({"stored": 1})
        assert waiter.counters()["stored"] == 3


def test_a_transaction_left_idle_is_ended_by_the_server_and_frees_its_locks(postgres_db):
    with Store(postgres_db, timeouts=Timeouts(idle_in_transaction=1)) as paused, \
            Store(postgres_db, timeouts=Timeouts(lock=0.2)) as other:
        with pytest.raises(DatabaseError), paused.transaction():
            paused.db.lock_gates([("S1", "north")])
            time.sleep(2.5)  # as a process stopped by SIGSTOP, or swapped out, would be
            paused.execute("SELECT 1")
        with other.transaction():
            assert other.db.lock_gates([("S1", "north")], partial=True) == set()
        # The paused one, resumed, connects again at its next transaction.
        with paused.transaction():
            assert paused.execute("SELECT 1").fetchone()[0] == 1


def test_a_connection_the_server_ended_is_opened_again_between_transactions(postgres_db, admin):
    with Store(postgres_db) as store:
        pid = store.execute("SELECT pg_backend_pid()").fetchone()[0]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseError):
            store.execute("SELECT 1")
        assert store.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        assert shown(store, "lock_timeout") == "30s"  # the bounds come back with it


def test_the_application_name_can_tell_processes_apart(postgres_db, monkeypatch, admin):
    monkeypatch.setenv("PGAPPNAME", "collector-a")
    with Store(postgres_db) as store:
        pid = store.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert admin.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone()[0] == "collector-a"
