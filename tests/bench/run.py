"""The benchmark: this machine's own limits, measured in one run with real processes.

    python tests/bench/run.py [--quick] [--json FILE] [--backend sqlite|postgresql] [--collectors 1,2]
    python tests/bench/run.py --reads [--quick] [--backend sqlite|postgresql|both] [--sites N] [--workers N]
                              [--days N] [--json FILE]
    (./dev bench does the same)

``--reads`` measures the read side instead (tests/bench/reads.py: a bank of a month's punches, its kept
days, and a worker's month, /metrics, the headcount, a site's month, wages, arrears and a slip read from
it); what follows is the ingest side.

It starts its own Mosquitto, the collector processes (one by default), fake gates (tests/bench/fakegates.py)
and real gate agents reading virtual cards, and measures:

- verify_per_s            raw Ed25519 verifications per second on one core (the ceiling for ingest)
- live_ingest_per_s       punches/s through the broker into the collector, one punch per message
- backlog_ingest_per_s    the same with gates flushing backlogs in batches of 200
- backlog_n/_drain_s      a real gate agent reconnecting with backlog_n punches, until all are acked
- tap_durable_p50/p99_ms  card read to punch committed at the gate (the agent's own measurement)
- tap_to_headcount_*_ms   card read to the worker visible in the collector's headcount
- agent_rss_mb, collector_rss_mb   peak resident memory (VmHWM)

With several collectors (``--collectors 1,2``: a fresh broker and database for each N, the sites split
into partitions held under leases, docs/scale-out.md) it also reports, for each N and each ingest phase,
the aggregate rate, CPU microseconds per punch of each component (collectors, broker, PostgreSQL backends,
from /proc/PID/stat), the lock/lease wait per burst (the collectors' own counters) and the scaling
efficiency, with PASS/MISS against the scale-out targets (docs/capacity.md).

It prints a table and the ratios against the targets; it asserts nothing (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from collector.deploy.mosquitto import LocalBroker, free_port, mosquitto_binary  # noqa: E402
from collector.ingest.cluster import client_id, partition_of  # noqa: E402
from collector.store import Store, display  # noqa: E402
from gate_agent.keys import load_private_key  # noqa: E402
from gate_agent.outbox import Outbox  # noqa: E402
from gate_agent.protocol import public_key_text  # noqa: E402
from tests.bench.fakegates import public_keys  # noqa: E402
from tests.helpers import BANK_PUBLIC, FakeClock, GateSetup, write_bank_key  # noqa: E402

BIN = Path(sys.executable).parent

#: name -> (target, kind): "min_ratio" of verify_per_s, "min", or "max".
TARGETS = {
    "live_ingest_per_s": (0.5, "min_ratio"),
    "backlog_ingest_per_s": (0.8, "min_ratio"),
    "backlog_drain_per_s": (5000, "min"),
    "tap_durable_p99_ms": (20, "max"),
    "tap_to_headcount_p99_ms": (250, "max"),
    "agent_rss_mb": (60, "max"),
    "collector_rss_mb": (150, "max"),
}

SIZES = {  # quick / full
    "live_gates": (20, 40), "live_per_gate": (1000, 2500),
    "batch_gates": (20, 20), "batch_per_gate": (3000, 10000),
    "backlog_n": (20_000, 100_000),
    "taps": (60, 300),
    "verify_seconds": (2.0, 5.0),
}
#: PostgreSQL ingests at a fraction of SQLite's rate on this machine: smaller live and backlog phases keep
#: a run with two collectors within minutes; the drain keeps the target's 100,000 punches in a full run.
#: Fewer backlog gates: 20 gates' windows of 2000 are 16 MB in flight, more than a collector on PostgreSQL
#: here ingests within the MQTT keepalive, so its inbox stayed full, paho's thread could not answer the
#: broker's keepalive, and the broker dropped and redelivered the sessions over and over (see docs/capacity.md).
POSTGRESQL_SIZES = {"live_per_gate": (250, 250), "batch_gates": (8, 8), "batch_per_gate": (1250, 5000),
                    "backlog_n": (5_000, 100_000), "taps": (60, 100)}


def say(text: str = "") -> None:
    print(text, flush=True)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process in kB, from /proc."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, amount = line.split(":")
                    values[name] = int(amount.split()[0])
    except FileNotFoundError:
        pass
    return values


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-int(round(fraction * len(ordered) * 1000)) // 1000))
    return ordered[min(len(ordered), rank) - 1]


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- verify


def measure_verify(seconds: float) -> tuple[float, float]:
    """Raw Ed25519 verifications of a punch-sized message, one thread (one core): per second of wall
    time, and the CPU microseconds one costs (the yardstick for the CPU-per-punch figures: on a busy
    machine both move)."""
    key = Ed25519PrivateKey.generate()
    message = b'{"boot":"b","card":"04A1B2C3D4E5F6","dir":"in",' + b"x" * 300 + b"}"
    signature = key.sign(message)
    public = key.public_key()
    verify = public.verify
    count, started, cpu = 0, time.perf_counter(), time.thread_time()
    deadline = started + seconds
    while True:
        for _ in range(500):
            verify(signature, message)
        count += 500
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started), (time.thread_time() - cpu) * 1e6 / count


# ---------------------------------------------------------------------------------------------- the database


class BenchDatabase:
    """The collector's database for one rig: an SQLite file, or a throwaway PostgreSQL database on the
    tests' server (``COLLECTOR_TEST_POSTGRES``, as tests/postgres.py) that is dropped afterwards.

    It keeps one connection of its own for counting and for finding the PostgreSQL server processes
    that work for the collectors (its own backend is left out of every CPU figure)."""

    def __init__(self, backend: str, directory: Path):
        self.backend = backend
        if backend == "postgresql":
            import psycopg

            from tests.postgres import admin, url_for

            self.name = f"collector_bench_{uuid.uuid4().hex[:10]}"
            with admin() as conn:
                conn.execute(f"CREATE DATABASE {self.name} TEMPLATE template0 ENCODING 'UTF8' "
                             "LC_COLLATE 'C' LC_CTYPE 'C'")
            self.location: str | Path = url_for(self.name)
            with Store(self.location):
                pass  # the schema, before the monitor connection reads it
            self._conn = psycopg.connect(self.location, autocommit=True)
            self.own_pid = self._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        else:
            self.name = "collector.sqlite3"
            self.location = directory / "collector.sqlite3"
            with Store(self.location):
                pass
            self._conn = sqlite3.connect(f"file:{self.location}?mode=ro", uri=True, isolation_level=None)
            self.own_pid = None

    def value(self, sql: str, params: tuple = ()):
        if self.backend == "postgresql":
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, params).fetchone()[0]

    def counters(self) -> dict[str, int]:
        return {name: value for name, value in self._conn.execute("SELECT name, value FROM counters").fetchall()}

    def backend_pids(self) -> list[int]:
        """The PostgreSQL backends connected to this database (the collectors'), not the monitor's own."""
        if self.backend != "postgresql":
            return []
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchall()
        return [row[0] for row in rows]

    def shared_pids(self) -> list[int]:
        """The server's own writers (WAL writer, checkpointer, background writer): shared with every
        other database on the server, so reported apart from the backends."""
        if self.backend != "postgresql":
            return []
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type IN "
                                  "('walwriter', 'checkpointer', 'background writer')").fetchall()
        return [row[0] for row in rows]

    def settings(self) -> dict[str, str]:
        if self.backend != "postgresql":
            return {"journal_mode": "wal", "synchronous": "full"}
        names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "wal_level")
        return {name: self._conn.execute(f"SHOW {name}").fetchone()[0] for name in names}

    def size(self) -> dict:
        """Rows and bytes of the punches table (with its indexes) and of the whole database."""
        punches = self.value("SELECT COUNT(*) FROM punches")
        if self.backend == "postgresql":
            self._conn.execute("VACUUM ANALYZE punches")  # settled sizes: the visibility map, no dead rows
            row = self._conn.execute(
                "SELECT pg_relation_size('punches'), pg_indexes_size('punches'), "
                "pg_total_relation_size('punches'), pg_database_size(current_database())").fetchone()
            heap, indexes, total, database = row
        else:
            try:
                rows = dict(self._conn.execute(
                    "SELECT m.type, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
                    "WHERE m.tbl_name = 'punches' GROUP BY m.type").fetchall())
                heap, indexes = rows.get("table", 0), rows.get("index", 0)
            except sqlite3.Error:  # an SQLite built without dbstat
                heap = indexes = 0
            total = heap + indexes
            database = sum(path.stat().st_size for path in Path(self.location).parent.glob("collector.sqlite3*"))
        return {"punches": punches, "table_bytes": heap, "index_bytes": indexes, "total_bytes": total,
                "database_bytes": database}

    def close(self, keep: bool = False) -> None:
        self._conn.close()
        if self.backend == "postgresql" and not keep:
            from tests.postgres import admin

            with admin() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# ---------------------------------------------------------------------------------------------- the rig


def balanced_sites(prefix: str, partitions: int) -> list[str]:
    """One site per partition (a site's partition is a hash of its id), so every collector gets work."""
    found: dict[int, str] = {}
    number = 0
    while len(found) < partitions:
        name = f"{prefix}{number}"
        found.setdefault(partition_of(name, partitions), name)
        number += 1
    return [found[k] for k in range(partitions)]


class Rig:
    """A broker, a database and ``collectors`` collector processes sharing ``partitions`` partitions."""

    def __init__(self, directory: Path, *, backend: str = "sqlite", collectors: int = 1, partitions: int = 1):
        self.directory = directory
        self.partitions = partitions
        (directory / "collector").mkdir(parents=True)
        self.broker = LocalBroker(directory / "broker").start()
        self.database = BenchDatabase(backend, directory / "collector")
        self.location = self.database.location
        bank_key = write_bank_key(directory / "collector" / "bank.key")
        self.sites = {phase: balanced_sites(phase, partitions) for phase in ("LIVE", "BATCH")}
        with Store(self.location) as store:
            for site in [*self.sites["LIVE"], *self.sites["BATCH"], "DRAIN", "TAPS"]:
                store.add_site(site, timezone="Asia/Shanghai")
        self.collectors: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        for number in range(collectors):
            config = directory / "collector" / f"collector-{number}.toml"
            # The default lease (15 s): a burst must commit within it (a shorter one made bursts of
            # backlog batches outlive their lease on a loaded machine, and partitions moved mid-phase).
            config.write_text(
                f'db = "{self.location}"\nsigning_key = "{bank_key}"\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\n'
                f'[cluster]\npartitions = {partitions}\ninstance = "bench-{number}"\n')
            log_path = directory / "collector" / f"collector-{number}.log"
            handle = open(log_path, "ab")
            self.collectors.append(subprocess.Popen(
                [str(BIN / "collector"), "run", "--config", str(config)], stdout=handle, stderr=subprocess.STDOUT))
            handle.close()
            self.logs.append(log_path)
        self.wait_settled()
        self.rss_samples: list[dict] = []
        self.agent_peaks: dict[str, float] = {}

    def wait_settled(self) -> None:
        """Until every collector holds its fair share of the partitions and each partition's session is
        connected: a partition moving during a measurement would measure the takeover."""
        share = self.partitions // len(self.collectors)

        def settled() -> bool:
            with Store(self.location, readonly=True) as store:
                leases = [row for row in store.leases() if row["owner"] and row["remaining"] > 0]
            held: dict[str, list[int]] = {}
            for row in leases:
                held.setdefault(row["owner"], []).append(int(row["name"].rsplit("/", 1)[1]))
            if sorted(held) != [f"bench-{n}" for n in range(len(self.collectors))] \
                    or any(len(parts) != share for parts in held.values()):
                return False
            for owner, parts in held.items():
                text = self.logs[int(owner.split("-")[1])].read_text()
                if any(f"as {client_id('collector', k, self.partitions)} (" not in text for k in parts):
                    return False
            return True

        wait_until(settled, 60, interval=0.2, what="the collectors to share the partitions")
        time.sleep(0.5)  # the sessions' SUBSCRIBE follows their CONNACK

    def pids(self) -> dict[str, list[int]]:
        """The processes whose CPU is counted, by component."""
        return {"collectors": [c.pid for c in self.collectors], "broker": [self.broker._process.pid],
                "postgresql_backends": self.database.backend_pids(),
                "postgresql_shared": self.database.shared_pids()}

    def stored(self, sites: list[str]) -> int:
        marks = ", ".join("?" for _ in sites)
        return self.database.value(f"SELECT COUNT(*) FROM punches WHERE site IN ({marks})", tuple(sites))

    def sample_collector(self, after: str) -> None:
        total = self.database.value("SELECT COUNT(*) FROM punches")
        status = [proc_status(c.pid) for c in self.collectors]
        self.rss_samples.append({"after": after, "punches_stored": total,
                                 "rss_mb": round(max(s.get("VmRSS", 0) for s in status) / 1024, 1),
                                 "peak_mb": round(max(s.get("VmHWM", 0) for s in status) / 1024, 1)})

    def takeovers(self) -> int:
        """Partitions this rig's collectors lost to another mid-burst so far (from their logs)."""
        return sum(path.read_text().count("lease taken over") for path in self.logs)

    def collector_peak_mb(self) -> float:
        return max(proc_status(c.pid).get("VmHWM", 0) for c in self.collectors) / 1024

    def close(self, keep: bool = False) -> None:
        for collector in self.collectors:
            if collector.poll() is None:
                collector.send_signal(signal.SIGTERM)
        for collector in self.collectors:
            try:
                collector.wait(15)
            except subprocess.TimeoutExpired:
                collector.kill()
        self.broker.stop()
        self.database.close(keep=keep)


# ---------------------------------------------------------------------------------------------- CPU per punch


class CpuMeter:
    """CPU seconds (utime + stime from /proc/PID/stat) of each component's processes over a phase."""

    def __init__(self, pids: dict[str, list[int]]):
        self.pids = pids
        self.before = {name: {pid: cpu_seconds(pid) for pid in group} for name, group in pids.items()}
        self.started = time.monotonic()

    def stop(self) -> tuple[dict[str, float], float]:
        elapsed = time.monotonic() - self.started
        used = {name: sum(cpu_seconds(pid) - self.before[name][pid] for pid in group)
                for name, group in self.pids.items()}
        return used, elapsed


def lock_figures(before: dict, after: dict, punches: int) -> dict:
    """Lock/lease wait per committed burst, from the collectors' persisted counters."""
    bursts = after.get("bursts", 0) - before.get("bursts", 0)
    wait_us = after.get("lock_wait_us_sum", 0) - before.get("lock_wait_us_sum", 0)
    return {"bursts": bursts, "punches_per_burst": round(punches / bursts, 1) if bursts else None,
            "lock_wait_ms_per_burst": round(wait_us / bursts / 1000, 3) if bursts else None,
            "lock_wait_us_per_punch": round(wait_us / punches, 2) if punches else None}


def settle_counters(rig: Rig) -> dict:
    """The counters once every collector has written its own down (each does so every second)."""
    time.sleep(1.5)
    return rig.database.counters()


def per_punch(used: dict[str, float], punches: int) -> dict[str, float]:
    return {name: round(seconds * 1e6 / punches, 1) for name, seconds in used.items()}


# ---------------------------------------------------------------------------------------------- ingest


def measure_ingest(rig: Rig, phase: str, gates: int, per_gate: int, batch: int, window: int) -> dict:
    """``gates`` fake gates spread over the phase's sites (one per partition), until every punch is acked."""
    sites = rig.sites[phase]
    per_site = max(1, round(gates / len(sites)))
    with Store(rig.location) as store:
        for site in sites:
            for gate, key in public_keys("bench", site, per_site).items():
                store.add_gate(site, gate, key)
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.fakegates", "--port", str(rig.broker.port), "--site", ",".join(sites),
         "--gates", str(per_site), "--punches", str(per_gate), "--batch", str(batch), "--window", str(window),
         "--bank-key", BANK_PUBLIC],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if publisher.stdout.readline().strip() != "ready":
        raise SystemExit("bench: the fake gates did not start")
    total = len(sites) * per_site * per_gate
    counters = settle_counters(rig)
    pids = rig.pids()
    pids["fake_gates"] = [publisher.pid]
    takeovers = rig.takeovers()
    meter = CpuMeter(pids)
    publisher.stdin.write("go\n")
    publisher.stdin.flush()
    # The fake gates answer once every gate's last punch is acknowledged, which the collector does only
    # after its commit: from "go" to then is the ingest time.
    report = json.loads(publisher.stdout.readline() or "{}")
    used, _ = meter.stop()
    publisher.wait(30)
    if "seconds" not in report:
        raise SystemExit(f"bench: the fake gates of {phase} stopped without a report")
    stored = rig.stored(sites)
    stalled = not report["finished"]
    if stalled:
        # Reported, not hidden: the rates below are of what was acknowledged before the fake gates gave up.
        say(f"  STALLED: {report['acked']} of {total} punches acknowledged in {report['seconds']:.0f} s "
            f"({stored} stored); see the collectors' and the broker's logs")
        total = max(1, report["acked"])
    elif stored != total:
        raise SystemExit(f"bench: {phase}: {stored} punches stored, {total} sent and acknowledged")
    elapsed = report["seconds"]
    locks = lock_figures(counters, settle_counters(rig), total)
    rig.sample_collector(phase)
    cores = {name: round(seconds / elapsed, 2) for name, seconds in used.items()}
    takeovers = rig.takeovers() - takeovers
    say(f"  {total} punches in {elapsed:.1f} s = {total / elapsed:,.0f}/s; cores used: "
        + ", ".join(f"{k} {v}" for k, v in cores.items() if v or k in ("collectors", "broker")))
    if report.get("resent") or takeovers:
        say(f"  note: {report.get('resent', 0)} punches resent after a 30 s ack timeout (acks came later than "
            f"that), {takeovers} partition(s) taken over mid-phase (a lease expired); see the collectors' logs")
    return {"punches": total, "seconds": elapsed, "per_s": total / elapsed, "cores_used": cores,
            "cpu_us_per_punch": per_punch(used, total), "resent": report.get("resent", 0),
            "takeovers": takeovers, "stalled": stalled, **locks}


# ---------------------------------------------------------------------------------------------- backlog drain


def build_backlog(gate: GateSetup, count: int) -> None:
    """The outbox as a gate leaves it after an outage: ``count`` signed, chained punches.

    Written through Outbox.append itself; only its fsync is switched off for the set-up (the drain,
    not the writing, is measured here; tap_durable measures the writing with fsync)."""
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=30))
    with Outbox(gate.data_dir, gate.site, gate.gate, key=load_private_key(gate.key_file)) as outbox:
        outbox._db.execute("PRAGMA synchronous = OFF")
        for number in range(count):
            outbox.append(card=f"BE{number % 500:06X}", tech="iso14443a", reader="udp:bench", direction="in",
                          roster="none", clock=clock)
            clock.advance(1.0)


def log_time(line: str) -> float:
    """Epoch seconds of a log line's asctime (local time, ms)."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return time.mktime(stamp.timetuple()) + stamp.microsecond / 1e6


def backlog_gate(rig: Rig, count: int) -> GateSetup:
    """A gate whose outbox holds ``count`` punches, for this rig's broker. The outbox is built once per
    run (next to the rigs) and copied for each further rig: the drain, not the building, is measured."""
    template = rig.directory.parent / "drain-template"
    if not template.exists():
        gate = GateSetup.create(template, broker=rig.broker, site="DRAIN", gate="north", device="udp:127.0.0.1:1",
                                heartbeat_seconds=30, ack_timeout_seconds=30)
        built = time.monotonic()
        build_backlog(gate, count)
        say(f"  built a backlog of {count} punches in {time.monotonic() - built:.1f} s")
    shutil.copytree(template, rig.directory / "drain")
    gate = GateSetup(rig.directory / "drain", "DRAIN", "north", f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                     rig.directory / "drain" / "gate.key", "", rig.broker.port,
                     {"heartbeat_seconds": 30, "ack_timeout_seconds": 30})
    gate.public_key = public_key_text(load_private_key(gate.key_file).public_key())
    gate.write_config()
    return gate


def measure_drain(rig: Rig, count: int) -> dict:
    gate = backlog_gate(rig, count)
    with Store(rig.location) as store:
        store.add_gate("DRAIN", "north", gate.public_key)
    counters = settle_counters(rig)
    log_path = gate.directory / "agent.log"
    agent = gate.start_agent(log_path)
    pids = rig.pids()
    pids["gate_agent"] = [agent.pid]
    takeovers = rig.takeovers()
    meter = CpuMeter(pids)
    try:
        connected = wait_until(lambda: re.search(r"^.*connected to .*$", log_path.read_text(), re.M), 30,
                               what="the draining gate to connect")
        since = log_time(connected.group(0))

        def acked() -> bool:
            with Outbox(gate.data_dir, "DRAIN", "north", readonly=True) as outbox:
                return outbox.acked_seq >= count

        wait_until(acked, 900, interval=0.02, what="the backlog acknowledged")
        seconds = time.time() - since
        used, elapsed = meter.stop()
        peak = proc_status(agent.pid).get("VmHWM", 0) / 1024
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
    rig.agent_peaks["drain"] = peak
    locks = lock_figures(counters, settle_counters(rig), count)
    rig.sample_collector("DRAIN")
    cores = {name: round(value / elapsed, 2) for name, value in used.items()}
    say(f"  {count} punches in {seconds:.1f} s = {count / seconds:,.0f}/s; cores used: "
        + ", ".join(f"{k} {v}" for k, v in cores.items() if v or k in ("collectors", "broker")))
    return {"n": count, "seconds": seconds, "per_s": count / seconds, "agent_peak_mb": peak, "cores_used": cores,
            "cpu_us_per_punch": per_punch(used, count), "takeovers": rig.takeovers() - takeovers, **locks}


# ---------------------------------------------------------------------------------------------- taps


RECORDED = re.compile(r"^(\S+ \S+) INFO \S+: signal recorded: seq (\d+) card ([0-9A-F]+) \S+ "
                      r"\(durable in ([\d.]+) ms\)", re.M)


def measure_taps(rig: Rig, count: int) -> dict:
    from collector.attendance.headcount import headcount

    uids = [f"7A{number:06X}" for number in range(count)]
    gate = GateSetup.create(rig.directory / "taps", broker=rig.broker, site="TAPS", gate="main",
                            device=f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                            heartbeat_seconds=30, ack_timeout_seconds=30, debounce_seconds=0)
    with Store(rig.location) as store:
        store.add_gate("TAPS", "main", gate.public_key)
        for number, uid in enumerate(uids):
            store.add_worker(f"B{number:05d}", name=f"Bench {number}", cards=[uid], sites=["TAPS"])
    log_path = gate.directory / "agent.log"
    agent = gate.start_agent(log_path)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        with Store(rig.location, readonly=True) as store:
            while not stop.is_set():
                board = headcount(store, "TAPS")
                now = time.time()
                for worker in board["workers"]:
                    seen.setdefault(worker["worker"], now)
                stop.wait(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        wait_until(lambda: "roster of TAPS" in log_path.read_text(), 30, what="the tap gate's roster")
        poller.start()
        subprocess.run([str(BIN / "gate-agent"), "virtual-card", "--device", gate.device, "--timeout", "30",
                        *uids], check=True, capture_output=True, timeout=30 + 5 * count)
        wait_until(lambda: len(seen) >= count, 60, what="every tapped worker in the headcount")
        peak = proc_status(agent.pid).get("VmHWM", 0) / 1024
    finally:
        stop.set()
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
    rig.agent_peaks["taps"] = peak
    durable, to_headcount = [], []
    worker_of = {uid: f"B{number:05d}" for number, uid in enumerate(uids)}
    for match in RECORDED.finditer(log_path.read_text()):
        durable_ms = float(match.group(4))
        read_at = log_time(match.group(1)) - durable_ms / 1000
        durable.append(durable_ms)
        to_headcount.append((seen[worker_of[match.group(3)]] - read_at) * 1000)
    rig.sample_collector("TAPS")
    return {"taps": len(durable), "durable": durable, "to_headcount": to_headcount, "agent_peak_mb": peak}


# ---------------------------------------------------------------------------------------------- report


def verdicts(results: dict) -> dict:
    out = {}
    for name, (target, kind) in TARGETS.items():
        value = results[name]
        if kind == "min_ratio":
            ratio = value / results["verify_per_s"]
            out[name] = {"value": round(value, 1), "ratio_to_verify": round(ratio, 3), "target_ratio": target,
                         "met": ratio >= target}
        elif kind == "min":
            out[name] = {"value": round(value, 1), "target": target, "met": value >= target}
        else:
            out[name] = {"value": round(value, 1), "target": target, "met": value <= target}
    return out


def print_table(results: dict) -> None:
    say("")
    say(f"{'figure':28} {'value':>12}  target")
    rows = [("verify_per_s", results["verify_per_s"], "ceiling (one core)"),
            ("verify_cpu_us", results["verify_cpu_us"], "CPU per verify: the yardstick for CPU per punch")]
    for name in ("live_ingest_per_s", "backlog_ingest_per_s"):
        check = results["targets"][name]
        rows.append((name, results[name], f">= {check['target_ratio']} x verify: {check['ratio_to_verify']:.2f} x "
                                          f"{'met' if check['met'] else 'MISSED'}"))
    rows.append(("backlog_n", results["backlog_n"], ""))
    drain = results["targets"]["backlog_drain_per_s"]
    rows.append(("backlog_drain_s", results["backlog_drain_s"],
                 f"{results['backlog_drain_per_s']:.0f}/s >= 5000/s {'met' if drain['met'] else 'MISSED'}"))
    for name in ("tap_durable_p50_ms", "tap_durable_p99_ms", "tap_to_headcount_p50_ms", "tap_to_headcount_p99_ms",
                 "agent_rss_mb", "collector_rss_mb"):
        check = results["targets"].get(name)
        rows.append((name, results[name], f"<= {check['target']} {'met' if check['met'] else 'MISSED'}"
                     if check else ""))
    for name, value, note in rows:
        say(f"{name:28} {value:>12.1f}  {note}")
    say("")
    say("collector memory after each phase: " + ", ".join(
        f"{s['after']} ({s['punches_stored']} punches) {s['rss_mb']} MB" for s in results["collector_rss_samples"]))


#: The scale-out targets: collector CPU per punch at 2 collectors at most this much above 1; PostgreSQL
#: backend CPU per punch at most this share of the collectors'; a backlog drain at least this fast.
CONTENTION_MAX = 1.10
BACKEND_SHARE_MAX = 0.25
DRAIN_MIN = 5000
SERVER_SIDE = ("collectors", "broker", "postgresql_backends", "postgresql_shared")


def scale_out(runs: dict[int, dict], backend: str, cpus: int) -> dict:
    """Aggregates, CPU per punch, lock waits, scaling efficiency and the targets' verdicts."""
    counts = sorted(runs)
    base = counts[0]
    out: dict = {"collectors": counts, "cpus": cpus, "phases": {}, "targets": {}}
    for phase in ("live", "backlog", "drain"):
        rows = {}
        if any(phase not in runs[n] for n in counts):
            counts_here = [n for n in counts if phase in runs[n]]
        else:
            counts_here = counts
        for n in counts_here:
            figures = runs[n][phase]
            us = figures["cpu_us_per_punch"]
            server = sum(us.get(name, 0) for name in SERVER_SIDE)
            rows[n] = {"per_s": round(figures["per_s"], 1), "cpu_us_per_punch": us,
                       "server_us_per_punch": round(server, 1),
                       "lock_wait_ms_per_burst": figures["lock_wait_ms_per_burst"],
                       "punches_per_burst": figures["punches_per_burst"],
                       "resent": figures.get("resent"), "takeovers": figures["takeovers"],
                       "stalled": figures.get("stalled", False),
                       "backend_share": round(us["postgresql_backends"] / us["collectors"], 3)
                       if backend == "postgresql" and us["collectors"] else None}
        for n in counts_here:
            row, first = rows[n], rows[base]
            # aggregate at N / (N x aggregate at 1), from throughput (meaningful only with a core per
            # process) and from CPU per punch (what the throughput would be with the cores to run it).
            row["efficiency_throughput"] = round((row["per_s"] / n) / (first["per_s"] / base), 3)
            row["efficiency_cpu_collectors"] = round(first["cpu_us_per_punch"]["collectors"]
                                                     / row["cpu_us_per_punch"]["collectors"], 3)
            row["efficiency_cpu_server"] = round(first["server_us_per_punch"] / row["server_us_per_punch"], 3)
        out["phases"][phase] = rows
    processes = max(counts) * (2 if backend == "postgresql" else 1) + 2  # + broker + fake gates
    out["cores_note"] = (f"{cpus} CPUs for up to {processes} busy processes (collectors"
                         f"{', their PostgreSQL backends' if backend == 'postgresql' else ''}, broker, fake gates): "
                         "aggregate throughput cannot grow with N here, so scaling efficiency is computed from "
                         "CPU per punch" if processes > cpus else
                         f"{cpus} CPUs for {processes} busy processes")
    targets = out["targets"]
    if 1 in runs and 2 in runs:
        ratios = {phase: round(out["phases"][phase][2]["cpu_us_per_punch"]["collectors"]
                               / out["phases"][phase][1]["cpu_us_per_punch"]["collectors"], 3)
                  for phase in ("live", "backlog")}
        targets["collector_cpu_n2_vs_n1"] = {
            "target": f"collector CPU per punch at N=2 <= {CONTENTION_MAX:.2f} x N=1", "ratios": ratios,
            "met": all(r <= CONTENTION_MAX for r in ratios.values()),
            "where": "; ".join(
                f"{phase}: {out['phases'][phase][1]['cpu_us_per_punch']['collectors']} -> "
                f"{out['phases'][phase][2]['cpu_us_per_punch']['collectors']} us/punch, bursts of "
                f"{out['phases'][phase][1]['punches_per_burst']} -> {out['phases'][phase][2]['punches_per_burst']} "
                f"punches, lock wait {out['phases'][phase][1]['lock_wait_ms_per_burst']} -> "
                f"{out['phases'][phase][2]['lock_wait_ms_per_burst']} ms/burst" for phase in ratios)}
    else:
        targets["collector_cpu_n2_vs_n1"] = {"target": "needs --collectors 1,2", "met": None}
    if backend == "postgresql":
        shares = {f"{phase} N={n}": out["phases"][phase][n]["backend_share"]
                  for phase in ("live", "backlog", "drain") for n in out["phases"][phase]}
        targets["backend_cpu_share"] = {
            "target": f"PostgreSQL backend CPU per punch <= {BACKEND_SHARE_MAX:.0%} of the collectors'",
            "shares": shares, "met": all(v <= BACKEND_SHARE_MAX for v in shares.values()),
            "where": "; ".join(
                f"{phase} N={n}: backends {out['phases'][phase][n]['cpu_us_per_punch']['postgresql_backends']} "
                f"vs collectors {out['phases'][phase][n]['cpu_us_per_punch']['collectors']} us/punch"
                for phase in ("live", "backlog", "drain") for n in out["phases"][phase])}
        drains = {n: round(runs[n]["drain"]["per_s"]) for n in counts if "drain" in runs[n]}
        targets["drain_postgresql"] = {
            "target": f"backlog drain of {runs[base]['drain']['n']:,} punches on PostgreSQL >= {DRAIN_MIN:,}/s",
            "per_s": drains, "met": all(v >= DRAIN_MIN for v in drains.values()),
            "where": "; ".join(f"N={n}: cores " + ", ".join(f"{k} {v}" for k, v in runs[n]["drain"]["cores_used"].items())
                               for n in drains)}
    return out


def print_scale_out(scale: dict, backend: str) -> None:
    counts = scale["collectors"]
    say("")
    say(f"scale-out: {backend}, collectors {', '.join(map(str, counts))}")
    say(f"note: {scale['cores_note']}")
    for phase, title in (("live", "live (1 punch/message)"), ("backlog", "backlog (200 punches/message)"),
                         ("drain", "drain (one gate agent)")):
        rows = scale["phases"][phase]
        say("")
        say(f"{title}")
        shown = [n for n in counts if n in rows]
        say(f"{'figure':46}" + "".join(f"{'N=' + str(n):>12}" for n in shown))

        def line(name: str, values: list) -> None:
            say(f"  {name:44}" + "".join(f"{'-' if v is None else v:>12}" for v in values))

        line("aggregate punches/s", [f"{rows[n]['per_s']:,.0f}" for n in shown])
        for name in (*SERVER_SIDE, "fake_gates", "gate_agent"):
            values = [rows[n]["cpu_us_per_punch"].get(name) for n in shown]
            if any(values):  # a component this run does not have (PostgreSQL's on SQLite) is left out
                line(f"CPU us/punch: {name}", values)
        line("CPU us/punch: server side (sum of above)", [rows[n]["server_us_per_punch"] for n in shown])
        if backend == "postgresql":
            line("PostgreSQL backends / collectors", [rows[n]["backend_share"] for n in shown])
        line("punches per burst", [rows[n]["punches_per_burst"] for n in shown])
        line("lock/lease wait ms per burst", [rows[n]["lock_wait_ms_per_burst"] for n in shown])
        line("partitions taken over mid-phase", [rows[n]["takeovers"] for n in shown])
        if any(rows[n]["stalled"] for n in shown):
            line("STALLED (not every punch acknowledged)", ["yes" if rows[n]["stalled"] else "no" for n in shown])
        if phase != "drain":
            line("punches resent after an ack timeout", [rows[n]["resent"] for n in shown])
        line("efficiency from throughput", [rows[n]["efficiency_throughput"] for n in shown])
        line("efficiency from collector CPU/punch", [rows[n]["efficiency_cpu_collectors"] for n in shown])
        line("efficiency from server CPU/punch", [rows[n]["efficiency_cpu_server"] for n in shown])
    say("")
    say("targets:")
    for check in scale["targets"].values():
        verdict = "n/a " if check["met"] is None else "PASS" if check["met"] else "MISS"
        figures = check.get("ratios") or check.get("shares") or check.get("per_s") or ""
        say(f"  {verdict} {check['target']}: {figures}")
        if check["met"] is False:
            say(f"       where the cost is: {check['where']}")


def parse_collectors(text: str) -> list[int]:
    """``2`` or ``1,2``: the numbers of collector processes to run, one rig each."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a list of numbers: {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > 4:
        raise argparse.ArgumentTypeError("collectors: 1 to 4 processes")
    return counts


def partitions_for(counts: list[int]) -> int:
    """One partition for a lone collector (the default deployment); else a multiple of every N, at least
    4, so that each N gets equal shares and N=1 holds the same sessions as the others together."""
    if counts == [1]:
        return 1
    partitions = math.lcm(*counts)
    while partitions < 4:
        partitions *= 2
    return partitions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark against this machine's own limits.")
    parser.add_argument("--quick", action="store_true", help="smaller volumes (a minute or two on 2 cores)")
    parser.add_argument("--json", dest="json_file", help="write the figures here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default=None,
                        help="the collectors' database (postgresql: a throwaway database on the server named by "
                             "COLLECTOR_TEST_POSTGRES, default the local one, dropped afterwards); default sqlite, "
                             "and both (each in turn) with --reads")
    parser.add_argument("--collectors", type=parse_collectors, default=[1], metavar="N[,N...]",
                        help="collector processes sharing the ingest; a list (1,2) measures each in one run")
    reads = parser.add_argument_group("the read side (--reads)")
    reads.add_argument("--reads", action="store_true",
                       help="measure the reads of a bank built with a month of punches instead of ingest "
                            "(default size 20 sites x 2,000 workers x 22 days; --quick: 2 x 200 x 5)")
    for name, what in (("sites", "sites"), ("workers", "workers per site"), ("days", "working days of the month")):
        reads.add_argument(f"--{name}", type=positive, default=None, metavar="N", help=f"{what} of the bank built")
    return parser


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options with the defaults that depend on --reads filled in (the backend: sqlite, or both with
    --reads); the options of one side given to the other are refused."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reads:
        if args.collectors != [1]:
            parser.error("--collectors is for the ingest benchmark, not --reads")
        args.backend = args.backend or "both"
    else:
        if args.backend == "both":
            parser.error("--backend both is for --reads; the ingest benchmark takes one engine a run")
        given = [f"--{name}" for name in ("sites", "workers", "days") if getattr(args, name) is not None]
        if given:
            parser.error(f"{', '.join(given)} size the bank of --reads")
        args.backend = args.backend or "sqlite"
    return args


def run_phases(rig: Rig, size: dict, *, taps: bool) -> dict:
    run: dict = {}
    say(f"  live ingest: {size['live_gates']} gates x {size['live_per_gate']} single-punch messages")
    run["live"] = measure_ingest(rig, "LIVE", size["live_gates"], size["live_per_gate"], batch=1, window=40)
    say(f"  backlog ingest: {size['batch_gates']} gates x {size['batch_per_gate']} punches in batches of 200")
    run["backlog"] = measure_ingest(rig, "BATCH", size["batch_gates"], size["batch_per_gate"], batch=200,
                                    window=2000)
    if taps:  # one gate's drain is one partition's, held by one collector whatever N is: measured once
        say(f"  backlog drain: a gate agent reconnecting with {size['backlog_n']} punches")
        run["drain"] = measure_drain(rig, size["backlog_n"])
        say(f"  taps: {size['taps']} virtual cards through a gate agent to the headcount")
        run["taps"] = measure_taps(rig, size["taps"])
    run["collector_rss_mb"] = rig.collector_peak_mb()
    run["collector_rss_samples"] = rig.rss_samples
    run["agent_peaks"] = dict(rig.agent_peaks)
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reads:
        from tests.bench import reads

        return reads.main(args)
    sizes = {**SIZES, **(POSTGRESQL_SIZES if args.backend == "postgresql" else {})}
    size = {name: values[0 if args.quick else 1] for name, values in sizes.items()}
    counts = args.collectors
    if args.backend == "postgresql":
        from tests.postgres import SERVER, server_available

        problem = server_available()
        if problem is not None:
            raise SystemExit(f"bench: PostgreSQL at {display(SERVER)} is not available ({problem}); set "
                             "COLLECTOR_TEST_POSTGRES to a server where this user may create databases")
    partitions = partitions_for(counts)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"benchmark ({'quick' if args.quick else 'full'}) in {directory}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {mosquitto_binary()}; {args.backend}, collectors "
        f"{', '.join(map(str, counts))}, {partitions} partition(s)")

    results: dict = {"quick": args.quick, "backend": args.backend, "collectors": counts, "partitions": partitions,
                     "load_average_at_start": os.getloadavg()}
    if os.getloadavg()[0] > 0.5:
        say(f"  note: load average {os.getloadavg()[0]:.2f} at start; other work on this machine skews every figure")
    say(f"- Ed25519 verify, one core, {size['verify_seconds']:g} s (again at the end; the higher is the ceiling)")
    verify_runs = [measure_verify(size["verify_seconds"])]
    runs: dict[int, dict] = {}
    for index, n in enumerate(counts):
        say(f"- {n} collector process(es), {partitions} partition(s), {args.backend}")
        rig = Rig(directory / f"collectors-{n}", backend=args.backend, collectors=n, partitions=partitions)
        try:
            runs[n] = run_phases(rig, size, taps=index == 0)
            runs[n]["load_average_after"] = os.getloadavg()
            if index == len(counts) - 1:
                results["database_settings"] = rig.database.settings()
                results["database_size"] = rig.database.size()
        finally:
            rig.close(keep=args.keep)
    first = runs[counts[0]]
    taps = first["taps"]
    results.update(
        live_ingest_per_s=first["live"]["per_s"], live_cores_used=first["live"]["cores_used"],
        backlog_ingest_per_s=first["backlog"]["per_s"], backlog_cores_used=first["backlog"]["cores_used"],
        backlog_n=first["drain"]["n"], backlog_drain_s=first["drain"]["seconds"],
        backlog_drain_per_s=first["drain"]["per_s"],
        taps=taps["taps"],
        tap_durable_p50_ms=percentile(taps["durable"], 0.50),
        tap_durable_p99_ms=percentile(taps["durable"], 0.99),
        tap_to_headcount_p50_ms=percentile(taps["to_headcount"], 0.50),
        tap_to_headcount_p99_ms=percentile(taps["to_headcount"], 0.99),
        agent_rss_mb=max(first["agent_peaks"].values()),
        agent_rss_by_phase_mb={k: round(v, 1) for k, v in first["agent_peaks"].items()},
        collector_rss_mb=first["collector_rss_mb"], collector_rss_samples=first["collector_rss_samples"],
    )
    results["runs"] = {str(n): {k: v for k, v in run.items() if k != "taps"} for n, run in runs.items()}
    verify_runs.append(measure_verify(size["verify_seconds"]))
    results["verify_per_s"] = max(rate for rate, _ in verify_runs)
    results["verify_runs_per_s"] = [round(rate, 1) for rate, _ in verify_runs]
    results["verify_cpu_us"] = round(min(cpu for _, cpu in verify_runs), 1)
    results["targets"] = verdicts(results)
    results["scale_out"] = scale_out(runs, args.backend, os.cpu_count() or 1)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}
    results["load_average_at_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    if len(counts) > 1:
        say(f"\nsingle-process figures below are those of N={counts[0]}")
    print_table(results)
    print_scale_out(results["scale_out"], args.backend)
    if "database_size" in results:
        size_now = results["database_size"]
        say(f"\ndatabase after the run (N={counts[-1]}): {size_now['punches']:,} punches; punches table "
            f"{size_now['table_bytes'] / size_now['punches']:.0f} B/punch + indexes "
            f"{size_now['index_bytes'] / size_now['punches']:.0f} B/punch; whole database "
            f"{size_now['database_bytes'] / 2**20:.1f} MiB ({results['database_settings']})")
    say(f"load average at start {results['load_average_at_start'][0]:.2f}, at end "
        f"{results['load_average_at_end'][0]:.2f}: this machine is shared, so every figure is noisy")
    say(f"\n{'quick' if args.quick else 'full'} run took {results['seconds']:.0f} s")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2) + "\n")
        say(f"figures written to {args.json_file}")
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        say(f"kept {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
