"""A site offline by design: its punches reach the bank by hand, and its days still become clean.

Bundles used to flag every day late_upload and leave it provisional for ever. A gate may declare how
often its punches are carried (`collector gate delivery`), and a bundle made with a synchronised clock
counts as the gate's heartbeat once the bank holds everything in it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from gate_agent.bundle import export_bundle
from gate_agent.keys import load_private_key
from gate_agent.outbox import Outbox
from tests.helpers import CollectorSetup, GateSetup, fill_outbox
from tests.ports import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def offline(tmp_path, udp_device, database):
    gate = GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=free_port()), device=udp_device)
    bank = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=free_port()), db=database)
    bank.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
    bank.run("worker", "add", "W1", "--name", "王伟", "--card", "DEADBEEF", "--site", "S1")
    return SimpleNamespace(gate=gate, bank=bank, tmp=tmp_path)


def carry(offline, name: str, *, synced: bool, made: datetime | None = None) -> str:
    """The installer exports at the gate (with the gate's clock synchronised or not) and imports at the bank."""
    path = offline.tmp / name
    with Outbox(offline.gate.data_dir, "S1", "north", readonly=True) as outbox:
        export_bundle(outbox, load_private_key(offline.gate.key_file), path, synced=synced, now=made)
    return offline.bank.run("import", str(path)).stdout


def day_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).date().isoformat()


def test_a_declared_delivery_interval_decides_what_is_late(offline):
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    fill_outbox(offline.gate, 2, start=three_days_ago)
    carry(offline, "a.bundle", synced=True)
    flags = [r["flags"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day_of(three_days_ago))]
    assert flags and all("late_upload" in f for f in flags), "a live gate's punches three days old are late"
    offline.bank.run("gate", "delivery", "north", "--site", "S1", "--every-hours", "168")
    flags = [r["flags"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day_of(three_days_ago))]
    assert flags and not any("late_upload" in f for f in flags), "within the weekly delivery: not late"
    offline.bank.run("gate", "delivery", "north", "--site", "S1", "--every-hours", "24")
    flags = [r["flags"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day_of(three_days_ago))]
    assert all("late_upload" in f for f in flags), "beyond a daily delivery: late"


def test_a_bundle_made_with_a_synchronised_clock_makes_the_days_before_it_final(offline):
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    fill_outbox(offline.gate, 2, start=three_days_ago)
    day = day_of(three_days_ago)
    unsynced = carry(offline, "unsynced.bundle", synced=False)
    assert "counts as the gate's heartbeat" not in unsynced
    assert {r["final"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day)} == {False}, \
        "a clock that was not synchronised proves nothing"
    synced = carry(offline, "synced.bundle", synced=True)
    assert "counts as the gate's heartbeat" in synced
    assert {r["final"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day)} == {True}


def test_a_bundle_the_bank_does_not_hold_whole_is_no_heartbeat(offline):
    """A bundle exported with --since past what the bank holds leaves a gap: it proves nothing yet."""
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    fill_outbox(offline.gate, 4, start=three_days_ago)
    path = offline.tmp / "tail.bundle"
    with Outbox(offline.gate.data_dir, "S1", "north", readonly=True) as outbox:
        export_bundle(outbox, load_private_key(offline.gate.key_file), path, since=3, synced=True)
    text = offline.bank.run("import", str(path)).stdout
    assert "through seq 0" in text and "counts as the gate's heartbeat" not in text
    assert {r["final"] for r in offline.bank.json("attendance", "--site", "S1", "--date", day_of(three_days_ago))} \
        == {False}
