"""The benchmark: this machine's own limits, measured in one run with real processes.

    python tests/bench/run.py [--quick] [--json FILE]      (./dev bench does the same)

It starts its own Mosquitto, one collector process, fake gates (tests/bench/fakegates.py) and real gate
agents reading virtual cards, and measures:

- verify_per_s            raw Ed25519 verifications per second on one core (the ceiling for ingest)
- live_ingest_per_s       punches/s through the broker into the collector, one punch per message
- backlog_ingest_per_s    the same with gates flushing backlogs in batches of 200
- backlog_n/_drain_s      a real gate agent reconnecting with backlog_n punches, until all are acked
- tap_durable_p50/p99_ms  card read to punch committed at the gate (the agent's own measurement)
- tap_to_headcount_*_ms   card read to the worker visible in the collector's headcount
- agent_rss_mb, collector_rss_mb   peak resident memory (VmHWM)

It prints a table and the ratios against the targets; it asserts nothing (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from collector.broker import LocalBroker, free_port, mosquitto_binary  # noqa: E402
from collector.store import Store  # noqa: E402
from gate_agent.keys import load_private_key  # noqa: E402
from gate_agent.outbox import Outbox  # noqa: E402
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


def measure_verify(seconds: float) -> float:
    """Raw Ed25519 verifications of a punch-sized message, one thread (one core)."""
    key = Ed25519PrivateKey.generate()
    message = b'{"boot":"b","card":"04A1B2C3D4E5F6","dir":"in",' + b"x" * 300 + b"}"
    signature = key.sign(message)
    public = key.public_key()
    verify = public.verify
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(500):
            verify(signature, message)
        count += 500
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


# ---------------------------------------------------------------------------------------------- the rig


class Rig:
    def __init__(self, directory: Path):
        self.directory = directory
        self.broker = LocalBroker(directory / "broker").start()
        self.db = directory / "collector" / "collector.sqlite3"
        self.collector_config = directory / "collector" / "collector.toml"
        self.collector_config.parent.mkdir(parents=True)
        bank_key = write_bank_key(directory / "collector" / "bank.key")
        self.collector_config.write_text(
            f'db = "{self.db}"\nsigning_key = "{bank_key}"\n[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\n')
        with Store(self.db) as store:
            for site in ("LIVE", "BATCH", "DRAIN", "TAPS"):
                store.add_site(site, timezone="Asia/Shanghai")
        self.collector_log = directory / "collector" / "collector.log"
        handle = open(self.collector_log, "ab")
        self.collector = subprocess.Popen([str(BIN / "collector"), "run", "--config", str(self.collector_config)],
                                          stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        wait_until(lambda: "connected to" in self.collector_log.read_text(), 30, what="the collector")
        self.rss_samples: list[dict] = []
        self.agent_peaks: dict[str, float] = {}

    def stored(self, site: str) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM punches WHERE site = ?", (site,)).fetchone()[0]
        finally:
            conn.close()

    def sample_collector(self, after: str) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            total = conn.execute("SELECT COUNT(*) FROM punches").fetchone()[0]
        finally:
            conn.close()
        status = proc_status(self.collector.pid)
        self.rss_samples.append({"after": after, "punches_stored": total,
                                 "rss_mb": round(status.get("VmRSS", 0) / 1024, 1),
                                 "peak_mb": round(status.get("VmHWM", 0) / 1024, 1)})

    def close(self) -> None:
        if self.collector.poll() is None:
            self.collector.send_signal(signal.SIGTERM)
            try:
                self.collector.wait(15)
            except subprocess.TimeoutExpired:
                self.collector.kill()
        self.broker.stop()


# ---------------------------------------------------------------------------------------------- ingest


def measure_ingest(rig: Rig, site: str, gates: int, per_gate: int, batch: int, window: int) -> dict:
    with Store(rig.db) as store:
        for gate, key in public_keys("bench", site, gates).items():
            store.add_gate(site, gate, key)
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.fakegates", "--port", str(rig.broker.port), "--site", site,
         "--gates", str(gates), "--punches", str(per_gate), "--batch", str(batch), "--window", str(window),
         "--bank-key", BANK_PUBLIC],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if publisher.stdout.readline().strip() != "ready":
        raise SystemExit("bench: the fake gates did not start")
    total = gates * per_gate
    pids = {"collector": rig.collector.pid, "broker": rig.broker._process.pid, "fake_gates": publisher.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    publisher.stdin.write("go\n")
    publisher.stdin.flush()
    wait_until(lambda: rig.stored(site) >= total, 900, interval=0.02, what=f"{total} punches of {site}")
    elapsed = time.monotonic() - started
    # Where the two cores went: the fake gates and the broker share this machine with the collector.
    cpu = {name: round((cpu_seconds(pid) - cpu_before[name]) / elapsed, 2) for name, pid in pids.items()}
    report = json.loads(publisher.stdout.readline())
    publisher.wait(30)
    rig.sample_collector(site)
    say(f"  {total} punches in {elapsed:.1f} s; cores used: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    return {"punches": total, "seconds": elapsed, "per_s": total / elapsed, "acked_in_s": report["seconds"],
            "cores_used": cpu}


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


def measure_drain(rig: Rig, count: int) -> dict:
    gate = GateSetup.create(rig.directory / "drain", broker=rig.broker, site="DRAIN", gate="north",
                            device=f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                            heartbeat_seconds=30, ack_timeout_seconds=30)
    built = time.monotonic()
    build_backlog(gate, count)
    say(f"  built a backlog of {count} punches in {time.monotonic() - built:.1f} s")
    with Store(rig.db) as store:
        store.add_gate("DRAIN", "north", gate.public_key)
    log_path = gate.directory / "agent.log"
    agent = gate.start_agent(log_path)
    try:
        connected = wait_until(lambda: re.search(r"^.*connected to .*$", log_path.read_text(), re.M), 30,
                               what="the draining gate to connect")
        since = log_time(connected.group(0))

        def acked() -> bool:
            with Outbox(gate.data_dir, "DRAIN", "north", readonly=True) as outbox:
                return outbox.acked_seq >= count

        wait_until(acked, 900, interval=0.02, what="the backlog acknowledged")
        seconds = time.time() - since
        peak = proc_status(agent.pid).get("VmHWM", 0) / 1024
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
    rig.agent_peaks["drain"] = peak
    rig.sample_collector("DRAIN")
    return {"n": count, "seconds": seconds, "per_s": count / seconds, "agent_peak_mb": peak}


# ---------------------------------------------------------------------------------------------- taps


RECORDED = re.compile(r"^(\S+ \S+) INFO \S+: signal recorded: seq (\d+) card ([0-9A-F]+) \S+ "
                      r"\(durable in ([\d.]+) ms\)", re.M)


def measure_taps(rig: Rig, count: int) -> dict:
    from collector.headcount import headcount

    uids = [f"7A{number:06X}" for number in range(count)]
    gate = GateSetup.create(rig.directory / "taps", broker=rig.broker, site="TAPS", gate="main",
                            device=f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                            heartbeat_seconds=30, ack_timeout_seconds=30, debounce_seconds=0)
    with Store(rig.db) as store:
        store.add_gate("TAPS", "main", gate.public_key)
        for number, uid in enumerate(uids):
            store.add_worker(f"B{number:05d}", name=f"Bench {number}", cards=[uid], sites=["TAPS"])
    log_path = gate.directory / "agent.log"
    agent = gate.start_agent(log_path)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        with Store(rig.db, readonly=True) as store:
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
    rows = [("verify_per_s", results["verify_per_s"], "ceiling (one core)")]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark against this machine's own limits.")
    parser.add_argument("--quick", action="store_true", help="smaller volumes (about three minutes on 2 cores)")
    parser.add_argument("--json", dest="json_file", help="write the figures here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    args = parser.parse_args(argv)
    size = {name: values[0 if args.quick else 1] for name, values in SIZES.items()}
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"benchmark ({'quick' if args.quick else 'full'}) in {directory}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {mosquitto_binary()}")

    results: dict = {"quick": args.quick, "load_average_at_start": os.getloadavg()}
    if os.getloadavg()[0] > 0.5:
        say(f"  note: load average {os.getloadavg()[0]:.2f} at start; other work on this machine skews every figure")
    say(f"- Ed25519 verify, one core, {size['verify_seconds']:g} s (again at the end; the higher is the ceiling)")
    verify_runs = [measure_verify(size["verify_seconds"])]
    rig = Rig(directory)
    try:
        say(f"- live ingest: {size['live_gates']} gates x {size['live_per_gate']} single-punch messages")
        live = measure_ingest(rig, "LIVE", size["live_gates"], size["live_per_gate"], batch=1, window=40)
        results["live_ingest_per_s"] = live["per_s"]
        results["live_cores_used"] = live["cores_used"]
        say(f"- backlog ingest: {size['batch_gates']} gates x {size['batch_per_gate']} punches in batches of 200")
        batch = measure_ingest(rig, "BATCH", size["batch_gates"], size["batch_per_gate"], batch=200, window=2000)
        results["backlog_ingest_per_s"] = batch["per_s"]
        results["backlog_cores_used"] = batch["cores_used"]
        say(f"- backlog drain: a gate agent reconnecting with {size['backlog_n']} punches")
        drain = measure_drain(rig, size["backlog_n"])
        results.update(backlog_n=drain["n"], backlog_drain_s=drain["seconds"], backlog_drain_per_s=drain["per_s"])
        say(f"- taps: {size['taps']} virtual cards through a gate agent to the headcount")
        taps = measure_taps(rig, size["taps"])
        results.update(
            taps=taps["taps"],
            tap_durable_p50_ms=percentile(taps["durable"], 0.50),
            tap_durable_p99_ms=percentile(taps["durable"], 0.99),
            tap_to_headcount_p50_ms=percentile(taps["to_headcount"], 0.50),
            tap_to_headcount_p99_ms=percentile(taps["to_headcount"], 0.99),
        )
        results["agent_rss_mb"] = max(rig.agent_peaks.values())
        results["agent_rss_by_phase_mb"] = {k: round(v, 1) for k, v in rig.agent_peaks.items()}
        results["collector_rss_mb"] = proc_status(rig.collector.pid).get("VmHWM", 0) / 1024
        results["collector_rss_samples"] = rig.rss_samples
    finally:
        rig.close()
    verify_runs.append(measure_verify(size["verify_seconds"]))
    results["verify_per_s"] = max(verify_runs)
    results["verify_runs_per_s"] = [round(v, 1) for v in verify_runs]
    results["targets"] = verdicts(results)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}
    results["seconds"] = round(time.monotonic() - started, 1)
    print_table(results)
    say(f"\n{'quick' if args.quick else 'full'} run took {results['seconds']:.0f} s")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2) + "\n")
        say(f"figures written to {args.json_file}")
    if not args.keep:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    else:
        say(f"kept {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
