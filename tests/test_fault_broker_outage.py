"""A gate cut off from its broker for a long time: it keeps recording, and it does not spin.

Found by the fault suite: a gate agent left running after its broker was gone used a whole core (the
link thread's wait for the next heartbeat had become zero), which on a Raspberry Pi also takes CPU from
the tap path. CPU time comes from /proc, the kernel's own accounting of the agent process.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers import outbox_status, stop_process, wait_for

pytestmark = pytest.mark.slow


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_agent_without_its_broker_records_taps_and_idles(gate, broker):
    agent = gate.start_agent()
    try:
        log = gate.directory / "agent.log"
        wait_for(lambda: "connected to" in log.read_text(), message="agent connected")
        broker.kill()
        wait_for(lambda: "disconnected from" in log.read_text(), message="the agent to notice")
        gate.tap("04A1B2C3D4E5F6", "DEADBEEF")
        assert outbox_status(gate)["pending"] == 2
        time.sleep(3)  # past any heartbeat that fell due while connected
        before, started = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(4)
        used = (cpu_seconds(agent.pid) - before) / (time.monotonic() - started)
        print(f"agent CPU while the broker is away: {used:.1%} of a core")
        assert used < 0.5, f"the agent spins while the broker is away ({used:.0%} of a core)"
        broker.start()
        wait_for(lambda: log.read_text().count("connected to") >= 2, timeout=60, message="reconnected")
    finally:
        stop_process(agent, signal.SIGKILL)
