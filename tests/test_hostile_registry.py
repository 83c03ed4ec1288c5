"""One set of registry rules for `gate add` and `gate enroll`, and a broker-config that refuses a registry
its ACL cannot express: a gate certificate must never be able to publish as another site's gate."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from collector.store import Store, StoreError
from tests.helpers import PunchFactory, cli
from tests.test_deploy_pki import enroll, public_key, write_collector_config


@pytest.fixture
def pki(tmp_path) -> Path:
    directory = tmp_path / "pki"
    # The broker's server certificate is named after the first --host: bank.example.
    cli("collector", "ca", "init", "--dir", str(directory), "--host", "bank.example")
    return directory


@pytest.fixture
def config(tmp_path, pki) -> Path:
    path = write_collector_config(tmp_path / "collector", pki)
    for site in ("S1", "S2"):
        cli("collector", "site", "add", site, "--timezone", "UTC", "--config", str(path))
    return path


def gate_add(config: Path, gate: str, site: str, key: str):
    return cli("collector", "gate", "add", gate, "--site", site, "--public-key", key, "--config", str(config),
               check=False)


def broker_config(config: Path, pki: Path, out: Path):
    # No broker reads these files: pytest's private directory is closed to user mosquitto, so root is named.
    return cli("collector", "broker-config", "--pki", str(pki), "--port", "8883", "--out", str(out),
               "--broker-user", "root", "--config", str(config), check=False)


def registered(config: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(config.parent / "collector.sqlite3")
    try:
        return conn.execute("SELECT site, gate FROM gates ORDER BY site, gate").fetchall()
    finally:
        conn.close()


def one_line_error(result, expected: str) -> None:
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_gate_add_refuses_what_enroll_refuses(tmp_path, pki, config):
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    one_line_error(gate_add(config, "north", "S2", public_key(tmp_path, "impostor")), "already used at site S1")
    one_line_error(gate_add(config, "collector", "S2", public_key(tmp_path, "collector")), "is reserved")
    one_line_error(gate_add(config, "localhost", "S2", public_key(tmp_path, "localhost")), "is reserved")
    # The same the other way round: an id taken by `gate add` cannot be enrolled at another site.
    assert gate_add(config, "south", "S1", public_key(tmp_path, "south")).returncode == 0
    one_line_error(enroll(config, pki, "south", "S2", public_key(tmp_path, "south2"), tmp_path / "south-tls",
                          check=False), "already used at site S1")
    # Enrolment also knows this PKI's own names: the broker's server certificate is bank.example.
    one_line_error(enroll(config, pki, "bank.example", "S2", public_key(tmp_path, "bank"), tmp_path / "bank-tls",
                          check=False), "is reserved")
    assert not (tmp_path / "bank-tls" / "gate-tls.crt").exists()
    assert registered(config) == [("S1", "north"), ("S1", "south")]
    # A key rotation at the gate's own site is still fine.
    result = gate_add(config, "north", "S1", public_key(tmp_path, "north-new"))
    assert result.returncode == 0 and "new key added" in result.stdout


def test_the_store_enforces_the_rules_for_every_caller(tmp_path, pki, config):
    with Store(config.parent / "collector.sqlite3") as store:
        store.add_gate("S1", "north", PunchFactory().public_key)
        for site, gate, reserved, message in (
                ("S2", "north", (), "already used at site S1"),
                ("S2", "collector", (), "is reserved"),
                ("S2", "bank.example", ("bank.example",), "is reserved"),
                ("S2", "a/b", (), "not a site/gate id"),
                ("S2", "#", (), "not a site/gate id")):
            with pytest.raises(StoreError, match=message):
                store.add_gate(site, gate, PunchFactory().public_key, reserved=reserved)
    assert registered(config) == [("S1", "north")]


@pytest.mark.parametrize("case", ["same id at two sites", "reserved name", "server certificate's name",
                                  "not a topic level", "line break"])
def test_broker_config_refuses_a_registry_it_cannot_express(tmp_path, pki, config, case):
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    site, gate, expected = {
        "same id at two sites": ("S2", "north", "gate id north is active at sites S1 and S2"),
        "reserved name": ("S2", "collector", "gate S2/collector is active under a reserved name"),
        "server certificate's name": ("S2", "bank.example", "gate S2/bank.example is active under a reserved name"),
        "not a topic level": ("S2", "evil/#", "not a valid MQTT user name and topic level"),
        "line break": ("S2", "x\ntopic readwrite #", "not a valid MQTT user name and topic level"),
    }[case]
    # Behind the CLI's back: straight into the database.
    conn = sqlite3.connect(config.parent / "collector.sqlite3")
    with conn:
        conn.execute("INSERT INTO gates (site, gate, active, added_at) VALUES (?, ?, 1, ?)",
                     (site, gate, datetime.now().isoformat()))
    conn.close()
    out = tmp_path / "broker" / "site-gate.conf"
    one_line_error(broker_config(config, pki, out), expected)
    assert not out.exists() and not out.with_suffix(".acl").exists()


def test_broker_config_accepts_a_duplicate_once_all_but_one_are_deactivated(tmp_path, pki, config):
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    conn = sqlite3.connect(config.parent / "collector.sqlite3")
    with conn:
        conn.execute("INSERT INTO gates (site, gate, active, added_at) VALUES ('S2', 'north', 1, 'x')")
    conn.close()
    out = tmp_path / "broker" / "site-gate.conf"
    result = broker_config(config, pki, out)
    one_line_error(result, "collector gate deactivate north --site S2")
    cli("collector", "gate", "deactivate", "north", "--site", "S2", "--config", str(config))
    assert broker_config(config, pki, out).returncode == 0
    acl = out.with_suffix(".acl").read_text().splitlines()
    assert acl.count("user north") == 1
    assert "topic write attendance/v1/S2/north/punch" not in acl
