"""The versioned schema on both engines: upgrades, status, concurrent starts, older SQLite files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.store import Store, StoreError, database_exists, schema
from collector.store.connection import DatabaseError, connect
from tests.helpers import BIN, CollectorSetup


@pytest.fixture
def collector(tmp_path, empty_database):
    return CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=empty_database)


def test_db_upgrade_applies_every_step_once_and_status_says_so(collector):
    first = collector.json("db", "upgrade")
    assert first["applied"] == [step.version for step in schema.STEPS]
    assert first["version"] == schema.STEPS[-1].version
    again = collector.json("db", "upgrade")
    assert again["applied"] == [] and again["version"] == first["version"]
    status = collector.json("db", "status")
    assert status["pending"] == 0 and [s["version"] for s in status["steps"]] == first["applied"]
    assert "password" not in json.dumps(status)


def test_collectors_starting_together_apply_each_step_once(collector):
    """Several collector processes share one PostgreSQL database and may start at the same moment."""
    processes = [subprocess.Popen([str(BIN / "collector"), "db", "upgrade", "--json", "--config",
                                   str(collector.config_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in processes]
    assert all(code == 0 for code, _, _ in results), results
    applied = [version for _, out, _ in results for version in json.loads(out)["applied"]]
    assert sorted(applied) == [step.version for step in schema.STEPS]
    rows = collector.rows("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [step.version for step in schema.STEPS]


def test_a_sqlite_file_made_before_versioned_steps_is_adopted_not_remade(tmp_path):
    """A pilot's file whose schema sqlite-utils' Migrations recorded (steps by function name)."""
    path = tmp_path / "pilot.sqlite3"
    with Store(path, upgrade=False) as store:
        schema.upgrade(store.db, until=9)  # the schema of that time: steps 1-9
        store.execute("INSERT INTO sites (site, name, timezone, max_shift_hours, created_at) VALUES "
                      "('S1', 'S1', 'Asia/Shanghai', 16, '2026-11-01T00:00:00.000Z')")
        for table in ("schema_migrations", "registry_version", "leases", "members"):  # steps 7 and 8 were newer
            store.execute(f"DROP TABLE {table}")
        store.execute("CREATE TABLE _sqlite_migrations (migration_set TEXT, name TEXT, applied_at TEXT)")
        for name in ("m001_initial", "m002_gauges", "m003_bank_keys", "m004_quarantine_limits",
                     "m005_statuses_checked", "m006_heartbeats"):
            store.execute("INSERT INTO _sqlite_migrations VALUES ('collector', ?, '2026-11-01 00:00:00+00:00')",
                          (name,))
    with Store(path) as store:  # applies only what the pilot lacked
        assert [s["site"] for s in store.sites()] == ["S1"]
        versions = {row[0]: row[1] for row in store.execute("SELECT version, applied_at FROM schema_migrations")}
    assert versions[1] == versions[6] == versions[9] == "2026-11-01 00:00:00+00:00"
    assert versions[7] != "2026-11-01 00:00:00+00:00" and versions[8] != versions[1]  # new, applied now
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM registry_version").fetchone() == (0,)
    conn.close()


def test_a_reader_asks_for_capabilities_by_name_and_an_older_database_lacks_the_later_ones(tmp_path):
    steps = {step.version for step in schema.STEPS}
    assert set(schema.CAPABILITIES.values()) <= steps
    path = tmp_path / "older.sqlite3"
    with Store(path, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["payments"])
    with Store(path, readonly=True) as reader:
        assert reader.has("heartbeats") and reader.has("payments")
        assert not reader.has("worker_access") and not reader.has("evidence_requests")
        with pytest.raises(KeyError):
            reader.has("no_such_capability")
        Store(path).close()  # the daemon upgrades it meanwhile
        assert all(reader.has(name) for name in schema.CAPABILITIES)


def test_a_reader_never_writes_and_needs_a_database(tmp_path):
    result = CollectorSetup.create(tmp_path / "c", broker=SimpleNamespace(port=1)).run("db", "status", check=False)
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert not (tmp_path / "c" / "collector.sqlite3").exists()


@pytest.mark.parametrize("location, why", [
    (None, "no database location given (None)"),
    ("", "'' names no file"),
    ("  ", "'  ' names no file"),
    ("sqlite:", "'sqlite:' names no file"),
    (Path(""), "'.' names a directory"),  # Path("") is the working directory
    ("db/", "'db/' names a directory"),
    (b"collector.sqlite3", "b'collector.sqlite3' is no database location"),
    ("postgresql:collector", "postgresql:collector is not a URL"),
])
def test_a_location_that_names_no_database_is_refused_and_nothing_is_created(tmp_path, monkeypatch,
                                                                              location, why):
    """Store(None) once became a SQLite file named "None" in the working directory (the repository's
    root, where it was committed)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db").mkdir()
    wanted = "must be a SQLite file (a path, or sqlite:PATH) or a postgresql:// URL"
    for readonly in (False, True):
        with pytest.raises(StoreError) as refused:
            Store(location, readonly=readonly)
        assert why in str(refused.value) and wanted in str(refused.value)
        with pytest.raises(DatabaseError, match="must be a SQLite file"):
            connect(location, readonly=readonly)
    if location is None or location == "":
        with pytest.raises(DatabaseError, match="must be a SQLite file"):
            database_exists(location)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"] and list((tmp_path / "db").iterdir()) == []
