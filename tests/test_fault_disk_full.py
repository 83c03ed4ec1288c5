"""The collector's disk fills up: it stops acknowledging, gates keep their punches, nothing is lost, and
it recovers by itself when space returns.

The disk is genuinely full: the collector's database lives on a small tmpfs of its own, which a filler
file fills up while a gate's backlog drains; deleting the file gives the space back. Mounting needs
root (CI runs as root); elsewhere the test is skipped with that reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.store import Store
from gate_agent.outbox import Outbox
from gate_agent.protocol import Punch, key_id, parse_public_key, verify_chain
from tests.helpers import CollectorSetup, fill_outbox, outbox_status, stop_process, wait_for

pytestmark = pytest.mark.slow

BACKLOG = 3000


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 8 MiB mounted for this test only."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@dataclass
class CollectorOnDisk(CollectorSetup):
    """A collector whose database (and only its database) is on ``disk``; config and log stay elsewhere."""

    disk: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.disk / "collector.sqlite3"


def fill_up(disk: Path, leave: int) -> Path:
    """Write a file that leaves ``leave`` bytes free on ``disk``."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= handle.write(chunk[:remaining])
    return filler


def stored_seqs(collector) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM punches ORDER BY seq")]
    finally:
        conn.close()


def test_a_full_disk_stops_acks_keeps_punches_at_the_gate_and_recovers(tmp_path, broker, gate, small_disk):
    collector = CollectorOnDisk(tmp_path / "collector", broker.port, {}, disk=small_disk)
    collector.directory.mkdir()
    collector.write_config()
    with Store(collector.db_path) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", gate.public_key)
    gate.write_config(window=400, batch_size=100)  # bursts small enough that some fit before the disk is full
    fill_outbox(gate, BACKLOG)
    process = collector.start()
    wait_for(lambda: "connected to" in collector.log(), message="collector connected")
    filler = fill_up(small_disk, leave=1024 * 1024)
    agent = gate.start_agent()
    try:
        wait_for(lambda: "cannot write to" in collector.log(), timeout=60, message="the disk to fill up")
        full_since = time.monotonic()
        # A tap during the outage is recorded at the gate as always.
        gate.tap("04A1B2C3D4E5F6")

        def acked_what_is_held():
            # The ack of the last burst stored before the disk filled may still be on its way: wait for it
            # (the gate's acked seq reaching what the bank holds) before taking the picture.
            held, status = stored_seqs(collector), outbox_status(gate)
            prefix = next((n for n, seq in enumerate(held) if seq != n + 1), len(held))
            return (held, status) if status["acked_seq"] == prefix else None

        held, status = wait_for(acked_what_is_held, timeout=30, message="the gate's ack of what the bank holds")
        time.sleep(4)  # the collector keeps retrying; nothing may move meanwhile
        assert stored_seqs(collector) == held
        assert outbox_status(gate) == status
        assert process.poll() is None, "the collector died instead of waiting for space"
        # Acks never ran ahead of the disk: the gate forgot only what the bank holds.
        assert held[:status["acked_seq"]] == list(range(1, status["acked_seq"] + 1))
        assert status["last_seq"] == BACKLOG + 1 and status["pending"] > 0
        assert 0 < len(held) < BACKLOG

        filler.unlink()  # space returns
        wait_for(lambda: len(stored_seqs(collector)) == BACKLOG + 1, timeout=120, interval=0.5,
                 message="every punch stored once space returned")
        wait_for(lambda: outbox_status(gate)["pending"] == 0, timeout=60, message="pending 0 at the gate")
        recovered_after = time.monotonic() - full_since
    finally:
        stop_process(agent, signal.SIGKILL)
        stop_process(process)
    failures = collector.log().count("cannot write to")
    print(f"disk full with {len(held)} of {BACKLOG} stored (gate acked {status['acked_seq']}); "
          f"{failures} refused writes; all stored {recovered_after:.1f} s after the disk filled")

    assert stored_seqs(collector) == list(range(1, BACKLOG + 2))
    with Store(collector.db_path, readonly=True) as store:
        punches = [Punch.from_dict(json.loads(b)) for b in store.gate_punch_bodies("S1", "north")]
        assert store.conflicts() == [] and store.quarantined() == []
        assert store.counters().get("stored") == BACKLOG + 1
    public = parse_public_key(gate.public_key)
    verify_chain(punches, {key_id(public): public})
    with Outbox(gate.data_dir, "S1", "north", readonly=True) as outbox:
        assert [p.digest() for p in outbox.punches()] == [p.digest() for p in punches]
    assert punches[-1].card == "04A1B2C3D4E5F6"
