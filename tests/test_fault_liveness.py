"""A collector that is paused, or loses its database connection, must not stop the others.

Two real `collector run` processes (A and B) share one PostgreSQL ledger with two partitions and 4-second
leases; each holds one partition, each partition has one site with two gates, and the gates publish
signed, chained punches steadily. Then:

(a) A is stopped with SIGSTOP while its database session is inside a burst (holding a gate's lock, idle
    in transaction) and kept stopped for several lease periods: B must take A's partition and store and
    acknowledge punches of both sites while A is stopped; after SIGCONT nothing is lost or doubled.
(b) A's database sessions are ended by the server (as a lost network does), and a gate's lock is held by
    a stuck holder outside both collectors: B keeps ingesting, A connects again and ingests, the held
    gate's punches are set aside (not refused, not acknowledged) and written once the lock is free.

Figures (how much B stored, how long A's partition waited) are printed; bounds are generous, the host
may be loaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import pytest

from collector.deploy.mosquitto import LocalBroker
from collector.ingest.cluster import partition_of
from collector.store import Store
from collector.store.postgresql import gate_lock_key
from gate_agent.protocol import Ack, GateTopics, encode_punch_bodies, parse_bank_keys
from tests.bench.fakegates import gate_names, public_keys, signed_bodies
from tests.helpers import BANK_PUBLIC, BIN, CollectorSetup, wait_for

pytestmark = pytest.mark.slow

LEASE, PARTITIONS, GATES = 4, 2, 2
BATCH, INTERVAL = 20, 0.5  # punches per message, seconds between a gate's messages
SEED = "liveness"


def _sites() -> list[str]:
    """Two sites on different partitions."""
    first = "LA"
    second = next(f"L{n}" for n in range(100) if partition_of(f"L{n}", PARTITIONS) != partition_of(first, PARTITIONS))
    return [first, second]


class Stream:
    """Gates publishing pre-signed punches at a steady pace, and what the bank acknowledged to each."""

    def __init__(self, port: int, sites: list[str], count: int = 4000):
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self.bodies = {(site, gate): signed_bodies(SEED, site, gate, count, start)
                       for site in sites for gate in gate_names(site, GATES)}
        self.sent = {ident: 0 for ident in self.bodies}
        self.acked = {ident: 0 for ident in self.bodies}
        self._keys = parse_bank_keys(BANK_PUBLIC)
        self._stop = threading.Event()
        self._paused: set[tuple[str, str]] = set()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="liveness-gates",
                                  protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda client, *a: client.subscribe(
            [(f"attendance/v1/{site}/+/ack", 1) for site in sites])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_ack(self, client, userdata, message) -> None:
        _, _, site, gate, _ = message.topic.split("/")
        ack = Ack.decode(message.payload, site=site, gate=gate, keys=self._keys)
        self.acked[(site, gate)] = max(self.acked[(site, gate)], ack.seq)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            for ident, bodies in self.bodies.items():
                sent = self.sent[ident]
                if sent < len(bodies):
                    self.client.publish(GateTopics(*ident).punch, encode_punch_bodies(bodies[sent:sent + BATCH]),
                                        qos=1)
                    self.sent[ident] = min(len(bodies), sent + BATCH)

    def site_acked(self, site: str) -> int:
        return sum(seq for (s, _), seq in self.acked.items() if s == site)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def close(self) -> None:
        self.stop()
        self.client.loop_stop()
        self.client.disconnect()


class Pair:
    """Collectors A and B, their logs, and the ledger."""

    def __init__(self, tmp_path, broker, db: str):
        self.db = db
        self.setups = {name: CollectorSetup.create(tmp_path / name, broker=broker, db=db,
                                                   cluster={"partitions": PARTITIONS, "lease_seconds": LEASE,
                                                            "instance": name})
                       for name in ("A", "B")}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        setup = self.setups[name]
        handle = open(setup.directory / "collector.log", "ab")
        self.processes[name] = subprocess.Popen(
            [str(BIN / "collector"), "-v", "run", "--config", str(setup.config_path)], stdout=handle,
            stderr=subprocess.STDOUT, env={**os.environ, "PGAPPNAME": f"collector-{name.lower()}"})
        handle.close()

    def log(self, name: str) -> str:
        return self.setups[name].log()

    def owners(self) -> dict[int, str]:
        with Store(self.db, readonly=True) as store:
            return {int(row["name"].rsplit("/", 1)[1]): row["owner"] for row in store.leases()
                    if row["remaining"] > 0}

    def stored(self, site: str) -> int:
        with Store(self.db, readonly=True) as store:
            return store.execute("SELECT COUNT(*) FROM punches WHERE site = ?", (site,)).fetchone()[0]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _admin(db: str):
    import psycopg

    return psycopg.connect(db, autocommit=True)


def _start(tmp_path, postgres_db):
    """A running pair, each holding one partition, the gates publishing and both sites being stored."""
    sites = _sites()
    broker = LocalBroker(tmp_path / "broker", extra="max_queued_messages 0\n").start()
    pair = Pair(tmp_path, broker, postgres_db)
    pair.setups["A"].run("db", "upgrade")
    with Store(postgres_db) as store:
        for site in sites:
            store.add_site(site, timezone="Asia/Shanghai")
            for name, key in public_keys(SEED, site, GATES).items():
                store.add_gate(site, name, key)
    pair.start("A")
    # A alone takes both partitions and subscribes both sessions: nothing published from now on is lost.
    wait_for(lambda: sorted(pair.owners().values()) == ["A", "A"] and pair.log("A").count("connected to") >= 2,
             timeout=60, message="A holding and connected for both partitions")
    stream = Stream(broker.port, sites)
    stream.start()
    pair.start("B")
    wait_for(lambda: sorted(pair.owners().values()) == ["A", "B"], timeout=60, message="one partition each")
    owners = pair.owners()
    site_of = {owners[partition_of(site, PARTITIONS)]: site for site in sites}
    wait_for(lambda: all(pair.stored(site) > 0 for site in sites) and
             all(stream.site_acked(site) > 0 for site in sites), timeout=60, message="both sites stored and acked")
    return broker, pair, stream, site_of


def _finish(pair: Pair, stream: Stream) -> None:
    """The gates stop; every punch they published is stored exactly once, in a whole chain, acknowledged."""
    stream.stop()
    for (site, gate), sent in stream.sent.items():
        wait_for(lambda s=site, g=gate, n=sent: stream.acked[(s, g)] == n, timeout=120,
                 message=f"every punch of {site}/{gate} acknowledged")
    with Store(pair.db, readonly=True) as store:
        for (site, gate), sent in stream.sent.items():
            rows = store.execute("SELECT seq FROM punches WHERE site = ? AND gate = ? ORDER BY seq",
                                 (site, gate)).fetchall()
            assert [seq for seq, in rows] == list(range(1, sent + 1)), f"{site}/{gate}"
        assert store.conflicts() == [] and store.quarantined() == []
        assert store.execute("SELECT COUNT(*) FROM gaps WHERE filled_at IS NULL").fetchone()[0] == 0
    for name in ("A", "B"):
        assert "Traceback" not in pair.log(name), name


def _watch(pair: Pair, sites: list[str], since: dict[str, int], seconds: float) -> dict[str, float | None]:
    """For ``seconds``: when (seconds from now) each site first stored more than ``since``; None: never."""
    began, first = time.monotonic(), dict.fromkeys(sites)
    while time.monotonic() - began < seconds:
        for site in sites:
            if first[site] is None and pair.stored(site) > since[site]:
                first[site] = round(time.monotonic() - began, 1)
        time.sleep(0.25)
    return first


def _stop_inside_a_burst(pair: Pair, admin) -> None:
    """SIGSTOP A at a moment its database session holds a gate's lock in an open transaction."""
    process = pair.processes["A"]
    for _ in range(400):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        inside = admin.execute(
            "SELECT COUNT(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.application_name = 'collector-a' AND l.locktype = 'advisory' AND a.xact_start IS NOT NULL"
        ).fetchone()[0]
        if inside:
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.01 + 0.03 * (_ % 5))
    pytest.fail("A was never caught inside a burst")


def test_a_collector_stopped_inside_a_burst_stops_nobody_else(tmp_path, postgres_db):
    broker, pair, stream, site_of = _start(tmp_path, postgres_db)
    sites = [site_of["A"], site_of["B"]]
    try:
        with _admin(postgres_db) as admin:
            _stop_inside_a_burst(pair, admin)
            stopped = time.monotonic()
            states = admin.execute("SELECT state FROM pg_stat_activity WHERE application_name = 'collector-a' "
                                   "AND xact_start IS NOT NULL").fetchall()
        at_stop = {site: pair.stored(site) for site in sites}
        acked_at_stop = {site: stream.site_acked(site) for site in sites}
        hold = 8 * LEASE
        first = _watch(pair, sites, at_stop, hold - (time.monotonic() - stopped))
        during = {site: pair.stored(site) - at_stop[site] for site in sites}
        acked_during = {site: stream.site_acked(site) - acked_at_stop[site] for site in sites}
        owners_during = pair.owners()
        pair.processes["A"].send_signal(signal.SIGCONT)
        print(f"A stopped for {time.monotonic() - stopped:.1f} s (lease {LEASE} s) in state {states}; "
              f"stored while stopped: A's site {site_of['A']} {during[site_of['A']]}, "
              f"B's site {site_of['B']} {during[site_of['B']]}; acknowledged: {acked_during}; "
              f"first stored after the stop (s): A's site {first[site_of['A']]}, B's site {first[site_of['B']]}")
        assert sorted(owners_during.values()) == ["B", "B"], "B took A's partition"
        assert during[site_of["B"]] > 0 and during[site_of["A"]] > 0, during
        assert acked_during[site_of["B"]] > 0 and acked_during[site_of["A"]] > 0, acked_during
        # Within a few lease periods (lease expiry, a lease round, the stuck transaction ended by the
        # server): generous, the host is loaded.
        assert first[site_of["A"]] is not None and first[site_of["A"]] < 6 * LEASE
        assert first[site_of["B"]] is not None and first[site_of["B"]] < 3 * LEASE
        assert "lease taken (epoch" in pair.log("B")
        time.sleep(2)  # A resumed: it finds its burst rolled back and its lease gone
        wait_for(lambda: sorted(pair.owners().values()) == ["A", "B"], timeout=90,
                 message="A holding a partition again")
        _finish(pair, stream)
        assert "lease taken over" in pair.log("A") or "lease lost" in pair.log("A")
    finally:
        stream.close()
        pair.stop_all()
        broker.kill()


def test_a_collector_cut_off_from_the_database_or_a_stuck_lock_holder_stops_nobody_else(tmp_path, postgres_db):
    broker, pair, stream, site_of = _start(tmp_path, postgres_db)
    sites = [site_of["A"], site_of["B"]]
    a_site = site_of["A"]
    try:
        with _admin(postgres_db) as admin:
            # The server ends A's sessions (as a cut network or a restarted pooler does), three times.
            for _ in range(3):
                before = {site: pair.stored(site) for site in sites}
                ended = admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = 'collector-a'").fetchone()[0]
                assert ended >= 1
                first = _watch(pair, sites, before, LEASE)
                assert first[site_of["B"]] is not None, "B kept ingesting"
            # A connects again and ingests its own site (or B does, had A's lease lapsed meanwhile).
            before = pair.stored(a_site)
            wait_for(lambda: pair.stored(a_site) > before, timeout=6 * LEASE, message="A's site ingested again")
            assert "was lost; connecting again" in pair.log("A")

            # A stuck holder of one gate's lock: that gate waits, everything else goes on.
            held, free = [(a_site, gate) for gate in gate_names(a_site, GATES)]
            owner = {partition_of(site, PARTITIONS): name for name, site in site_of.items()}
            admin.execute("SELECT pg_advisory_lock(%s)", (gate_lock_key(*held),))
            time.sleep(LEASE)  # what was in flight settles
            held_at, free_at = stream.acked[held], stream.acked[free]
            other_at = stream.site_acked(site_of["B"])
            time.sleep(3 * LEASE)
            print(f"gate lock held by an outsider for {3 * LEASE} s: held gate acked {stream.acked[held] - held_at}"
                  f", free gate {stream.acked[free] - free_at}, other site {stream.site_acked(site_of['B']) - other_at}")
            assert stream.acked[held] == held_at, "nothing of the held gate acknowledged while its lock is held"
            assert stream.acked[free] > free_at and stream.site_acked(site_of["B"]) > other_at
            admin.execute("SELECT pg_advisory_unlock(%s)", (gate_lock_key(*held),))
            wait_for(lambda: stream.acked[held] > held_at, timeout=6 * LEASE, message="the held gate written")
            holder = owner[partition_of(a_site, PARTITIONS)]
            assert "set aside" in pair.log(holder)
        _finish(pair, stream)
    finally:
        stream.close()
        pair.stop_all()
        broker.kill()
