"""Three collectors share one PostgreSQL ledger while one of them is SIGKILLed every few seconds.

Five real gate agents tap virtual cards at five sites, fake gates flood two more sites with punches
(they resend only after a reconnect of their own, so anything the collectors lost would stay missing),
the collectors run with six partitions and three-second leases, one collector is killed and restarted
again and again, and the broker is stopped and started once. At the end: every tap a gate signalled is
stored once under the seq it announced, every gate's chain is whole at the bank, every gate has nothing
pending, no gap is open, nothing was quarantined and no conflict was recorded.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.deploy.mosquitto import LocalBroker
from collector.store import Store
from gate_agent.outbox import Outbox
from gate_agent.protocol import Punch, key_id, parse_public_key, verify_chain
from tests.bench.fakegates import gate_names, public_keys
from tests.helpers import BANK_PUBLIC, BIN, CollectorSetup, GateSetup, outbox_status, stop_process, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
SEED = int(os.environ.get("FAULT_SEED", "20261128"))
SIGNALLED = re.compile(r"signal (?:recorded|unknown_card): seq (\d+) card ([0-9A-F]+)")
SITES = [f"S{n}" for n in range(1, 6)]
FLOOD_SITES, FLOOD_GATES, FLOOD_PUNCHES = ["FA", "FB"], 3, 400
COLLECTORS, PARTITIONS, LEASE = 3, 6, 3


class Cluster:
    def __init__(self, setup: CollectorSetup):
        self.setup = setup
        self.processes: list[subprocess.Popen | None] = [None] * COLLECTORS
        self.events: list[str] = []

    def start(self, index: int) -> None:
        log = open(self.setup.directory / f"collector-{index}.log", "ab")
        self.processes[index] = subprocess.Popen(
            [str(BIN / "collector"), "-v", "run", "--config", str(self.setup.config_path)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.events.append(f"{time.monotonic():.1f} collector {index} started")

    def kill(self, index: int) -> None:
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.events.append(f"{time.monotonic():.1f} collector {index} killed")

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.setup.directory.glob("collector-*.log")))


def test_three_collectors_lose_and_double_nothing_while_one_is_killed_again_and_again(tmp_path, postgres_db,
                                                                                      udp_device):
    rng = random.Random(SEED)
    print(f"FAULT_SEED={SEED}")
    # The production queue settings: no count-based drops to an offline partition session.
    broker = LocalBroker(tmp_path / "broker", free_port(), extra="max_queued_messages 0\n").start()
    setup = CollectorSetup.create(tmp_path / "collector", broker=broker, db=postgres_db,
                                  cluster={"partitions": PARTITIONS, "lease_seconds": LEASE})
    gates = []
    for number, site in enumerate(SITES):
        device = udp_device if number == 0 else f"udp:127.0.0.1:{_udp_port()}"
        gates.append(GateSetup.create(tmp_path / f"gate-{site}", broker=broker, device=device, site=site,
                                      gate=f"g{number + 1}"))
    with Store(postgres_db) as store:
        for site in SITES + FLOOD_SITES:
            store.add_site(site, timezone="Asia/Shanghai")
        for gate in gates:
            store.add_gate(gate.site, gate.gate, gate.public_key)
        for site in FLOOD_SITES:
            for name, key in public_keys("cluster", site, FLOOD_GATES).items():
                store.add_gate(site, name, key)
    cluster = Cluster(setup)
    agents, floods, tappers = [], [], []
    stop_tapping = threading.Event()
    try:
        for index in range(COLLECTORS):
            cluster.start(index)
        wait_for(lambda: cluster.logs().count("lease taken") >= PARTITIONS, timeout=60, message="every partition held")
        agents = [gate.start_agent() for gate in gates]
        for gate in gates:
            wait_for(lambda g=gate: "connected to" in (g.directory / "agent.log").read_text(), timeout=30,
                     message=f"agent {gate.gate} connected")
        floods = [_flood(site, broker.port) for site in FLOOD_SITES]
        tappers = [threading.Thread(target=_tap_loop, args=(gate, n, stop_tapping, random.Random(SEED + n)))
                   for n, gate in enumerate(gates)]
        for thread in tappers:
            thread.start()

        deadline = time.monotonic() + 40
        broker_restarted = False
        while time.monotonic() < deadline:
            victim = rng.randrange(COLLECTORS)
            cluster.kill(victim)
            time.sleep(rng.uniform(1.0, 2.5))
            cluster.start(victim)
            if not broker_restarted and time.monotonic() > deadline - 25:
                broker.stop()
                cluster.events.append(f"{time.monotonic():.1f} broker stopped")
                time.sleep(2)
                broker.start()
                cluster.events.append(f"{time.monotonic():.1f} broker started")
                broker_restarted = True
            time.sleep(rng.uniform(2.0, 4.0))
        stop_tapping.set()
        for thread in tappers:
            thread.join(60)
        results = [json.loads(_finish(flood)) for flood in floods]
        assert all(r["finished"] for r in results), results
        for gate in gates:
            wait_for(lambda g=gate: outbox_status(g)["pending"] == 0, timeout=120,
                     message=f"gate {gate.gate} with nothing pending")
        wait_for(lambda: setup.count("SELECT COUNT(*) FROM gaps WHERE filled_at IS NULL") == 0 and
                 setup.count("SELECT COUNT(*) FROM punches") == _expected_total(gates), timeout=60,
                 message="every punch stored and every gap filled")
    finally:
        stop_tapping.set()
        print("\n".join(cluster.events))
        for agent in agents:
            stop_process(agent, signal.SIGKILL)
        for index in range(COLLECTORS):
            cluster.kill(index)
        for flood in floods:
            if flood.poll() is None:
                flood.kill()
        broker.kill()
    _check(setup, gates, cluster)


def _udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def _tap_loop(gate: GateSetup, number: int, stop: threading.Event, rng: random.Random) -> None:
    tap = 0
    while not stop.is_set():
        uid = f"CA{number:02X}{tap:04X}"
        subprocess.run([str(BIN / "gate-agent"), "virtual-card", "--device", gate.device, "--timeout", "20", uid],
                       capture_output=True, timeout=60)
        tap += 1
        stop.wait(rng.uniform(0.5, 1.5))


def _flood(site: str, port: int) -> subprocess.Popen:
    """Fake gates of one site publishing their punches (signed beforehand) as fast as acks allow."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.fakegates", "--port", str(port), "--site", site, "--gates",
         str(FLOOD_GATES), "--punches", str(FLOOD_PUNCHES), "--batch", "1", "--window", "40", "--seed", "cluster",
         "--bank-key", BANK_PUBLIC], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.stdin.write("go\n")
    process.stdin.flush()
    return process


def _finish(process: subprocess.Popen) -> str:
    return process.stdout.readline()


def _expected_total(gates: list[GateSetup]) -> int:
    return sum(outbox_status(g)["last_seq"] for g in gates) + len(FLOOD_SITES) * FLOOD_GATES * FLOOD_PUNCHES


def _check(setup: CollectorSetup, gates: list[GateSetup], cluster: Cluster) -> None:
    with Store(setup.location, readonly=True) as store:
        assert store.conflicts() == [] and store.quarantined() == []
        assert store.execute("SELECT COUNT(*) FROM gaps WHERE filled_at IS NULL").fetchone()[0] == 0
        for gate in gates:
            rows = store.gate_punch_rows(gate.site, gate.gate, 1, 10**9)
            with Outbox(gate.data_dir, gate.site, gate.gate, readonly=True) as outbox:
                at_gate = outbox.punches()
            public = parse_public_key(gate.public_key)
            punches = [Punch.from_dict(json.loads(r["body"])) for r in rows]
            verify_chain(punches, {key_id(public): public})
            assert [r["seq"] for r in rows] == list(range(1, len(at_gate) + 1))
            assert [r["digest"] for r in rows] == [p.digest() for p in at_gate]
            signalled = [(int(m.group(1)), m.group(2)) for m in
                         SIGNALLED.finditer((gate.directory / "agent.log").read_text())]
            assert signalled and len(signalled) == len(set(signalled))
            by_seq = {r["seq"]: r["card"] for r in rows}
            for seq, card in signalled:
                assert by_seq.get(seq) == card, f"{gate.gate}: signalled seq {seq} card {card} not stored as such"
        for site in FLOOD_SITES:
            for name in gate_names(site, FLOOD_GATES):
                seqs = [r[0] for r in store.execute("SELECT seq FROM punches WHERE site = ? AND gate = ? ORDER BY seq",
                                                    (site, name)).fetchall()]
                assert seqs == list(range(1, FLOOD_PUNCHES + 1)), f"{name}: {len(seqs)} stored"
    logs = cluster.logs()
    takeovers = logs.count("lease taken")
    print(f"lease takeovers: {takeovers}")
    assert takeovers > PARTITIONS, "no partition ever changed hands: the test did not test failover"
    assert "Traceback" not in logs
