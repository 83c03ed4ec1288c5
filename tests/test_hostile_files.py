"""Files written from a path the user gives: a symlink planted at the temporary name or at the target is
never written through or chmodded, nothing existing is overwritten, and modes hold whatever the umask."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.files import new_file, replace_atomically, write_new
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, GateSetup, PunchFactory, cli, fill_outbox
from tests.test_deploy_pki import enroll, public_key, write_collector_config

PRECIOUS = b"precious: not yours to write\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def outside_file(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / "elsewhere"
    directory.mkdir(exist_ok=True)
    target = directory / name
    target.write_bytes(PRECIOUS)
    target.chmod(0o600)
    return target


def untouched(target: Path) -> bool:
    return target.read_bytes() == PRECIOUS and mode(target) == 0o600


def plant(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


# ---------------------------------------------------------------------------------------------- broker-config


@pytest.fixture
def deployment(tmp_path):
    pki = tmp_path / "pki"
    cli("collector", "ca", "init", "--dir", str(pki))
    config = write_collector_config(tmp_path / "collector", pki)
    cli("collector", "site", "add", "S1", "--timezone", "UTC", "--config", str(config))
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    return SimpleNamespace(pki=pki, config=config)


def broker_config(deployment, out: Path, check: bool = True):
    # No broker reads these files: pytest's private directory is closed to user mosquitto, so root is named.
    return cli("collector", "broker-config", "--pki", str(deployment.pki), "--port", "8883", "--out", str(out),
               "--broker-user", "root", "--config", str(deployment.config), check=check, umask=0)


def test_broker_config_never_follows_a_link_planted_at_its_temporary_files(tmp_path, deployment):
    out = tmp_path / "broker" / "site-gate.conf"
    conf_target, acl_target = outside_file(tmp_path, "passwd"), outside_file(tmp_path, "shadow")
    plant(out.parent / ".site-gate.conf.tmp", conf_target)
    plant(out.parent / ".site-gate.acl.tmp", acl_target)
    broker_config(deployment, out)
    assert untouched(conf_target) and untouched(acl_target)
    assert "listener 8883" in out.read_text() and "user north" in out.with_suffix(".acl").read_text()
    assert mode(out) == mode(out.with_suffix(".acl")) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == [".site-gate.acl.tmp", ".site-gate.conf.tmp",
                                                            "certs", "site-gate.acl", "site-gate.conf"]


def test_broker_config_replaces_a_link_planted_at_its_target_instead_of_writing_through_it(tmp_path, deployment):
    out = tmp_path / "broker" / "site-gate.conf"
    conf_target, acl_target = outside_file(tmp_path, "passwd"), outside_file(tmp_path, "shadow")
    plant(out, conf_target)
    plant(out.with_suffix(".acl"), acl_target)
    broker_config(deployment, out)
    assert untouched(conf_target) and untouched(acl_target)
    assert not out.is_symlink() and not out.with_suffix(".acl").is_symlink()
    assert f"acl_file {out.with_suffix('.acl')}" in out.read_text().splitlines()


def test_broker_config_replaces_links_planted_among_the_brokers_copies_and_refuses_a_linked_folder(tmp_path,
                                                                                                   deployment):
    """The broker's copies of its certificate and key: a link planted at one is replaced, not written
    through; a link planted for the whole folder is refused before anything is written."""
    out = tmp_path / "broker" / "site-gate.conf"
    certs = out.parent / "certs" / "site-gate"
    certs.mkdir(parents=True)
    key_target = outside_file(tmp_path, "shadow")
    plant(certs / "server.key", key_target)
    broker_config(deployment, out)
    assert untouched(key_target) and not (certs / "server.key").is_symlink()
    assert (certs / "server.key").read_bytes() == (deployment.pki / "server.key").read_bytes()
    linked = tmp_path / "linked" / "site-gate.conf"
    (tmp_path / "other").mkdir()
    plant(linked.parent / "certs" / "site-gate", tmp_path / "other")
    refused = broker_config(deployment, linked, check=False)
    assert refused.returncode == 1 and "is a symbolic link" in refused.stderr
    assert list((tmp_path / "other").iterdir()) == [] and not linked.exists()


# ---------------------------------------------------------------------------------------------- gate-agent export


@pytest.fixture
def gate_with_backlog(tmp_path) -> GateSetup:
    setup = GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=1883), device="udp:127.0.0.1:9")
    fill_outbox(setup, 5)
    return setup


def export(setup: GateSetup, out: Path, check: bool = True):
    return cli("gate-agent", "export", "--config", str(setup.config_path), "--out", str(out), check=check,
               umask=0)


def test_gate_export_never_follows_a_link_planted_at_its_temporary_files(tmp_path, gate_with_backlog):
    out = tmp_path / "stick" / "S1-north.bundle"
    targets = [outside_file(tmp_path, name) for name in ("a", "b")]
    plant(out.parent / ".S1-north.bundle.tmp", targets[0])
    plant(out.parent / ".S1-north.bundle.body.tmp", targets[1])
    export(gate_with_backlog, out)
    assert all(untouched(target) for target in targets)
    header = json.loads(out.read_bytes().splitlines()[0])
    assert (header["first"], header["last"], header["count"]) == (1, 5, 5)
    assert mode(out) == 0o600  # card numbers and times, whatever the umask
    assert sorted(p.name for p in out.parent.iterdir()) == [".S1-north.bundle.body.tmp", ".S1-north.bundle.tmp",
                                                            "S1-north.bundle"]


@pytest.mark.parametrize("dangling", [False, True])
def test_gate_export_refuses_a_link_at_its_target(tmp_path, gate_with_backlog, dangling):
    target = tmp_path / "elsewhere" / "not-there" if dangling else outside_file(tmp_path, "passwd")
    target.parent.mkdir(exist_ok=True)
    out = plant(tmp_path / "stick" / "S1-north.bundle", target)
    result = export(gate_with_backlog, out, check=False)
    assert result.returncode == 1 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists() if dangling else untouched(target)
    assert out.is_symlink()


# ---------------------------------------------------------------------------------------------- evidence --out


@pytest.fixture
def collector_with_a_day(tmp_path) -> CollectorSetup:
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    gate = PunchFactory(gate="north")
    start = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    with setup.store() as store:
        store.add_site("S1", timezone="UTC")
        store.add_gate("S1", "north", gate.public_key)
        store.add_worker("W1", name="Zhang Wei", cards=["04A1B2C3D4E5F6"], sites=["S1"])
        punches = [gate.next(direction="in", at=start), gate.next(direction="out", at=start + timedelta(hours=3))]
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches(punches),
                                         format_time(start + timedelta(hours=4)))])
    return setup


def evidence(setup: CollectorSetup, out: Path, check: bool = True):
    return cli("collector", "evidence", "--worker", "W1", "--from", "2026-11-28", "--to", "2026-11-28",
               "--out", str(out), "--config", str(setup.config_path), check=check, umask=0)


def test_evidence_is_a_new_private_file_that_verifies(tmp_path, collector_with_a_day):
    out = tmp_path / "out" / "w1.json"
    target = outside_file(tmp_path, "passwd")
    plant(out.parent / ".w1.json.tmp", target)
    evidence(collector_with_a_day, out)
    assert untouched(target) and mode(out) == 0o600
    assert isinstance(json.loads(out.read_text()), dict)


@pytest.mark.parametrize("kind", ["file", "link", "dangling link"])
def test_evidence_refuses_to_overwrite_or_write_through_its_target(tmp_path, collector_with_a_day, kind):
    out = tmp_path / "out" / "w1.json"
    out.parent.mkdir()
    if kind == "file":
        out.write_bytes(PRECIOUS)
        out.chmod(0o600)
        target = out
    elif kind == "link":
        target = outside_file(tmp_path, "passwd")
        plant(out, target)
    else:
        target = tmp_path / "elsewhere" / "not-there"
        target.parent.mkdir()
        plant(out, target)
    result = evidence(collector_with_a_day, out, check=False)
    assert result.returncode == 1 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not target.exists() if kind == "dangling link" else untouched(target)


# ---------------------------------------------------------------------------------------------- the helpers


def test_write_new_refuses_anything_in_the_way_and_leaves_no_temporary_behind(tmp_path):
    target = outside_file(tmp_path, "passwd")
    for existing in (plant(tmp_path / "link", target), plant(tmp_path / "dangling", tmp_path / "nowhere"),
                     target):
        with pytest.raises(FileExistsError):
            write_new(existing, b"x", 0o600)
    assert untouched(target) and not (tmp_path / "nowhere").exists()
    with pytest.raises(RuntimeError), new_file(tmp_path / "half", 0o600) as handle:
        handle.write(b"half")
        raise RuntimeError("the writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "elsewhere", "link"]
    old = os.umask(0o077)
    try:
        replace_atomically(tmp_path / "link", b"new", 0o644)
    finally:
        os.umask(old)
    assert untouched(target) and (tmp_path / "link").read_bytes() == b"new" and mode(tmp_path / "link") == 0o644


# ---------------------------------------------------------------------------------------------- databases


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=oct)
def test_the_collector_database_and_its_wal_and_shm_are_private_whatever_the_umask(tmp_path, umask):
    from collector.store import Store

    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    cli("collector", "site", "add", "S1", "--timezone", "UTC", "--config", str(setup.config_path), umask=umask)
    assert mode(setup.db_path) == 0o600
    old = os.umask(umask)
    try:
        with Store(setup.db_path) as store:
            store.add_worker("W1", name="Zhang Wei", cards=["04A1B2C3D4E5F6"])
            wal, shm = (setup.db_path.with_name(setup.db_path.name + suffix) for suffix in ("-wal", "-shm"))
            assert wal.exists() and shm.exists()
            assert mode(setup.db_path) == mode(wal) == mode(shm) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=oct)
def test_the_gate_outbox_and_its_wal_and_shm_are_private_whatever_the_umask(tmp_path, umask):
    from gate_agent.keys import load_private_key
    from gate_agent.outbox import Outbox
    from tests.helpers import FakeClock

    setup = GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=1883), device="udp:127.0.0.1:9")
    old = os.umask(umask)
    try:
        with Outbox(setup.data_dir, "S1", "north", key=load_private_key(setup.key_file)) as outbox:
            outbox.append(card="04A1B2C3D4E5F6", tech="iso14443a", reader="udp:test", direction="in", roster="none",
                          clock=FakeClock())
            files = [setup.data_dir / name for name in ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm")]
            assert all(path.exists() for path in files)
            assert [mode(path) for path in files] == [0o600] * 3
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_reported(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    cli("collector", "site", "add", "S1", "--timezone", "UTC", "--config", str(setup.config_path))
    setup.db_path.chmod(0o644)
    result = cli("collector", "site", "add", "S2", "--timezone", "UTC", "--config", str(setup.config_path))
    assert f"{setup.db_path} holds personal data but every user may read it (mode 644): chmod 600" in result.stderr
    assert mode(setup.db_path) == 0o644  # the operator's to change
