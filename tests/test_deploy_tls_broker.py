"""A real Mosquitto run from the configuration `collector broker-config` writes: mutual TLS and ACLs.

An enrolled gate's tap reaches the collector; a client without a certificate (or with one from another
CA) cannot connect; a gate's certificate cannot publish as another gate, acknowledge for another gate,
or read another gate's acks or another site's roster.
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as paho
import pytest

from collector.deploy.mosquitto import mosquitto_binary
from gate_agent.protocol import Ack, GateTopics, encode_punches, roster_topic
from tests.helpers import (
    BANK_KEYS,
    CollectorSetup,
    GateSetup,
    PunchFactory,
    cli,
    outbox_status,
    signed_ack,
    stop_process,
    wait_for,
)
from tests.ports import free_port
from tests.test_deploy_pki import write_collector_config

pytestmark = pytest.mark.slow


@dataclass
class Deployment:
    directory: Path
    pki: Path
    port: int  # the gates' listener
    collector_port: int  # the collectors' listener
    collector: CollectorSetup
    north: GateSetup
    factories: dict[str, PunchFactory]

    def tls(self, name: str) -> tuple[str, str]:
        """(certificate, key) of an enrolled identity: a gate id or 'collector'."""
        if name == "collector":
            return str(self.pki / "collector.crt"), str(self.pki / "collector.key")
        return str(self.directory / f"{name}-tls" / "gate-tls.crt"), str(self.directory / f"{name}-tls" / "gate-tls.key")


@pytest.fixture
def broker_files():
    """Where the broker's files go: as root, Mosquitto reads them as user mosquitto, which cannot enter
    pytest's private temporary directories."""
    directory = Path(tempfile.mkdtemp(prefix="site-gate-broker-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def mosquitto_account() -> pwd.struct_passwd | None:
    """The user Mosquitto drops to when started as root (if there is one), or None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def persistence_dir(broker_files: Path) -> Path:
    """A directory the broker can write its sessions to, as whichever user it runs."""
    directory = broker_files / "data"
    directory.mkdir(exist_ok=True)
    account = mosquitto_account()
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


@pytest.fixture
def deployment(tmp_path, udp_device, broker_files):
    pki, port, collector_port = broker_files / "pki", free_port(), free_port()
    cli("collector", "ca", "init", "--dir", str(pki))
    # The collector connects on the collectors' listener, as the install guide has it.
    config = write_collector_config(tmp_path / "collector", pki, port=collector_port)
    collector = CollectorSetup(tmp_path / "collector", collector_port)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("site", "add", "S2", "--timezone", "Asia/Kolkata")
    north = GateSetup.create(tmp_path / "north", broker=SimpleNamespace(port=port), device=udp_device)
    factories = {"south": PunchFactory(gate="south"), "west": PunchFactory(gate="west"),
                 "east": PunchFactory(site="S2", gate="east")}
    for gate, site, key in [("north", "S1", north.public_key)] + [(f.gate, f.site, f.public_key)
                                                                  for f in factories.values()]:
        cli("collector", "gate", "enroll", gate, "--site", site, "--public-key", key, "--pki", str(pki),
            "--out", str(tmp_path / f"{gate}-tls"), "--config", str(config))
    tls = tmp_path / "north-tls"
    north.write_config(mqtt={"tls_ca": str(tls / "ca.crt"), "tls_cert": str(tls / "gate-tls.crt"),
                             "tls_key": str(tls / "gate-tls.key")})
    conf = broker_files / "broker" / "site-gate.conf"
    cli("collector", "broker-config", "--pki", str(pki), "--port", str(port), "--bind", "127.0.0.1",
        "--collector-port", str(collector_port), "--persistence-dir", str(persistence_dir(broker_files)),
        "--out", str(conf), "--config", str(config))
    # broker-config copied the broker's files out of the CA's folder for user mosquitto: nothing to hand over.
    log = open(tmp_path / "mosquitto.log", "wb")
    broker = subprocess.Popen([mosquitto_binary(), "-v", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for(lambda: broker.poll() is not None or _listening(port), message="mosquitto listening")
        assert broker.poll() is None, (tmp_path / "mosquitto.log").read_text()
        yield Deployment(tmp_path, pki, port, collector_port, collector, north, factories)
    finally:
        stop_process(broker, signal.SIGKILL)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Client:
    """A plain paho MQTT 5 client that records what happens to it, in order."""

    def __init__(self, port: int, *, ca: str | None = None, cert: str | None = None, key: str | None = None,
                 client_id: str = "probe"):
        self.events: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.pubacks: dict[int, str] = {}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if ca is not None:
            self.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = lambda c, u, f, rc, p: self.events.put(f"connack {rc}")
        self.client.on_disconnect = lambda c, u, f, rc, p: self.events.put(f"disconnect {rc}")
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.events.put(f"suback {[str(x) for x in codes]}")
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.port = port

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.pubacks[mid] = str(reason_code)

    def connect(self) -> str:
        """The first thing the broker says: 'connack Success', a refusal, or a disconnect."""
        try:
            self.client.connect("127.0.0.1", self.port)
        except (ssl.SSLError, OSError) as error:
            return f"refused: {error}"
        self.client.loop_start()
        return self.events.get(timeout=20)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> str:
        """Publish at QoS 1 and return the broker's PUBACK reason."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(20)
        return wait_for(lambda: self.pubacks.get(info.mid), message=f"PUBACK for {topic}")

    def subscribe(self, *topics: str) -> str:
        self.client.subscribe([(topic, 1) for topic in topics])
        return wait_for(lambda: _next_event(self.events, "suback"), message="SUBACK")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _next_event(events: queue.Queue, prefix: str):
    try:
        event = events.get_nowait()
    except queue.Empty:
        return None
    return event if event.startswith(prefix) else None


@pytest.fixture
def collector_daemon(deployment):
    process = deployment.collector.start()
    wait_for(lambda: "connected to 127.0.0.1" in deployment.collector.log(), message="collector connected over TLS")
    yield process
    stop_process(process, signal.SIGKILL)


def stored(deployment: Deployment, gate: str) -> list[int]:
    return [row[0] for row in _rows(deployment, "SELECT seq FROM punches WHERE gate = ? ORDER BY seq", gate)]


def _rows(deployment: Deployment, sql: str, *params) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(f"file:{deployment.collector.db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_an_enrolled_gates_taps_reach_the_collector_over_mutual_tls(deployment, collector_daemon):
    north = deployment.north
    deployment.collector.run("worker", "add", "W1", "--name", "Zhang Wei", "--card", "04A1B2C3D4E5F6", "--site", "S1")
    agent = north.start_agent()
    try:
        wait_for(lambda: "connected to 127.0.0.1" in (north.directory / "agent.log").read_text(),
                 message="the gate connected over TLS")
        north.tap("04A1B2C3D4E5F6", "DEADBEEF")
        wait_for(lambda: stored(deployment, "north") == [1, 2], message="both punches stored")
        wait_for(lambda: outbox_status(north)["pending"] == 0, message="the collector's ack reached the gate")
        # The roster came through the same ACL: written by the collector, read by the gate of its site.
        wait_for(lambda: north.status()["roster_cards"] == 1, message="the site's roster at the gate")
    finally:
        stop_process(agent, signal.SIGKILL)
    assert deployment.collector.json("counters").get("quarantined", 0) == 0
    broker_log = (deployment.directory / "mosquitto.log").read_text()
    assert "as north (" in broker_log, "the broker knows the gate by its certificate name"


def test_a_client_without_a_certificate_of_the_ca_cannot_connect(deployment, tmp_path):
    ca = str(deployment.pki / "ca.crt")
    accepted = Client(deployment.port, ca=ca, cert=deployment.tls("west")[0], key=deployment.tls("west")[1])
    try:
        assert accepted.connect() == "connack Success"  # the probe can tell success from failure
    finally:
        accepted.close()
    cli("collector", "ca", "init", "--dir", str(tmp_path / "rogue"))
    attempts = {
        "TLS without a certificate": Client(deployment.port, ca=ca),
        "no TLS at all": Client(deployment.port),
        "a 'collector' certificate from another CA": Client(
            deployment.port, ca=ca, cert=str(tmp_path / "rogue" / "collector.crt"),
            key=str(tmp_path / "rogue" / "collector.key")),
    }
    for what, client in attempts.items():
        try:
            outcome = client.connect()
        finally:
            client.close()
        assert outcome != "connack Success", f"{what}: connected"
        assert outcome.startswith(("refused", "disconnect")), f"{what}: {outcome}"


def test_a_gates_certificate_cannot_act_as_another_gate(deployment, collector_daemon):
    south_factory, west_factory = deployment.factories["south"], deployment.factories["west"]
    ca = str(deployment.pki / "ca.crt")
    south = Client(deployment.port, ca=ca, cert=deployment.tls("south")[0], key=deployment.tls("south")[1],
                   client_id="south")
    west = Client(deployment.port, ca=ca, cert=deployment.tls("west")[0], key=deployment.tls("west")[1],
                  client_id="west")
    try:
        assert south.connect() == "connack Success" and west.connect() == "connack Success"
        south_topics, west_topics = GateTopics("S1", "south"), GateTopics("S1", "west")
        # South's own punch is stored and acknowledged: its retained ack is now on the broker.
        assert south.publish(south_topics.punch, encode_punches([south_factory.next()])) == "Success"
        wait_for(lambda: stored(deployment, "south") == [1], message="south's punch")
        south.subscribe(south_topics.ack)
        first_ack = Ack.decode(south.messages.get(timeout=20)[1], site="S1", gate="south", keys=BANK_KEYS)
        assert first_ack.seq == 1

        # West publishes a perfectly valid south punch (made with south's key) on south's topic, and an
        # ack for south: the broker refuses both, so neither reaches the collector nor south.
        forged_punch = south_factory.next()
        refusals = [west.publish(south_topics.punch, encode_punches([forged_punch])),
                    west.publish(south_topics.ack, signed_ack("S1", "south", forged_punch.seq, forged_punch.digest()))]
        # Then west's own punch: once it is stored, anything west published before it would have been too.
        assert west.publish(west_topics.punch, encode_punches([west_factory.next()])) == "Success"
        wait_for(lambda: stored(deployment, "west") == [1], message="west's own punch")
        assert stored(deployment, "south") == [1], "a punch published with west's certificate reached the bank"
        assert deployment.collector.json("counters").get("quarantined", 0) == 0

        # South's next punch brings a genuine ack; a forged one would have arrived before it.
        assert south.publish(south_topics.punch, encode_punches([forged_punch])) == "Success"
        second_ack = Ack.decode(south.messages.get(timeout=20)[1], site="S1", gate="south", keys=BANK_KEYS)
        assert second_ack == Ack(2, forged_punch.digest())
        wait_for(lambda: stored(deployment, "south") == [1, 2], message="south's second punch")

        # Reading: west's subscription to south's ack and to the other site's roster yields nothing,
        # while its own site's roster and its own ack (subscribed last) arrive.
        wait_for(lambda: "roster of S2 published" in deployment.collector.log(), message="S2's roster")
        west.subscribe(south_topics.ack, roster_topic("S2"), roster_topic("S1"), west_topics.ack)
        received = []
        while not any(topic == west_topics.ack for topic, _ in received):
            received.append(west.messages.get(timeout=20))
        assert [topic for topic, _ in received] == [roster_topic("S1"), west_topics.ack]
        assert south.messages.empty()
    finally:
        south.close()
        west.close()
    # Mosquitto 2.0 answers a refused QoS 1 publish with "Not authorized" (another version may drop it
    # silently; the assertions above are what matters). Recorded for the report either way.
    assert set(refusals) <= {"Not authorized", "Success", "No matching subscribers"}
    assert "Denied PUBLISH from west" in (deployment.directory / "mosquitto.log").read_text()


def readable_by(account: pwd.struct_passwd, *paths: Path) -> list[bool]:
    """Whether ``account`` may read each file, asked as that user (modes, owners, groups, directories)."""
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    return [subprocess.run(["test", "-r", str(path)], user=account.pw_uid, group=account.pw_gid,
                           extra_groups=groups, cwd="/").returncode == 0 for path in paths]


def test_broker_config_on_the_folder_ca_init_made_gives_the_broker_copies_it_can_read_never_the_ca_key(
        tmp_path, broker_files):
    """docs/install.md and bank-ops.md: `ca init` into a root-only folder (0700, keys 0600), then
    `broker-config --pki` on that folder. Mosquitto, started as root, drops to user mosquitto before it
    reads its key: pointed at the CA's folder it could not start. broker-config now copies the three files
    the broker reads (never ca.key) where that user may read them, and the broker starts and serves TLS."""
    pki, port, collector_port = broker_files / "pki", free_port(), free_port()
    pki.mkdir(mode=0o700)  # install -d -m 0700 /etc/collector/pki
    cli("collector", "ca", "init", "--dir", str(pki))
    config = write_collector_config(tmp_path / "collector", pki, port=collector_port)
    cli("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(config))
    key = PunchFactory(gate="north").public_key
    cli("collector", "gate", "enroll", "north", "--site", "S1", "--public-key", key, "--pki", str(pki),
        "--out", str(tmp_path / "north-tls"), "--config", str(config))
    before = {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in pki.iterdir()}
    conf = broker_files / "broker" / "site-gate.conf"
    certs = conf.parent / "certs" / "site-gate"
    said = cli("collector", "broker-config", "--pki", str(pki), "--port", str(port), "--bind", "127.0.0.1",
               "--collector-port", str(collector_port), "--persistence-dir", str(persistence_dir(broker_files)),
               "--out", str(conf), "--config", str(config)).stdout
    assert f"copied ca.crt, server.crt and server.key to {certs} for the broker" in said
    assert f"ca.key stays in {pki}, never copied" in said
    # The three files, the same bytes; the CA's key nowhere among them, the CA's folder untouched.
    assert sorted(p.name for p in certs.iterdir()) == ["ca.crt", "server.crt", "server.key"]
    assert all((certs / name).read_bytes() == before[name][0] for name in ("ca.crt", "server.crt", "server.key"))
    ca_key = before["ca.key"][0]
    assert not any(ca_key in p.read_bytes() for p in conf.parent.rglob("*") if p.is_file())
    assert {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_uid, p.stat().st_gid)
            for p in pki.iterdir()} == before
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700 and stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    for line in (f"cafile {certs / 'ca.crt'}", f"certfile {certs / 'server.crt'}", f"keyfile {certs / 'server.key'}",
                 "user mosquitto"):
        assert line in conf.read_text().splitlines()
    assert str(pki) not in conf.read_text(), "the broker is never pointed at the CA's folder"
    account = mosquitto_account()
    if account is not None:
        # Root's files, the broker's group: mosquitto may read them and change none; it cannot read ca.key.
        modes = {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid, p.stat().st_gid)
                 for p in (certs, *certs.iterdir())}
        assert modes == {"site-gate": (0o750, 0, account.pw_gid), "ca.crt": (0o644, 0, account.pw_gid),
                         "server.crt": (0o644, 0, account.pw_gid), "server.key": (0o640, 0, account.pw_gid)}
        assert "server.key 0640 root:" in said
        assert readable_by(account, certs / "ca.crt", certs / "server.crt", certs / "server.key",
                           pki / "ca.key", pki / "server.key") == [True, True, True, False, False]
    # The broker starts from that configuration (as root it drops to mosquitto first) and serves both listeners.
    log = tmp_path / "mosquitto.log"
    with open(log, "wb") as handle:
        broker = subprocess.Popen([mosquitto_binary(), "-v", "-c", str(conf)], stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: broker.poll() is not None or (_listening(port) and _listening(collector_port)),
                 message="mosquitto listening")
        assert broker.poll() is None, log.read_text()
        gate = Client(port, ca=str(tmp_path / "north-tls" / "ca.crt"), cert=str(tmp_path / "north-tls" / "gate-tls.crt"),
                      key=str(tmp_path / "north-tls" / "gate-tls.key"), client_id="north")
        collector = Client(collector_port, ca=str(pki / "ca.crt"), cert=str(pki / "collector.crt"),
                           key=str(pki / "collector.key"), client_id="collector")
        try:
            assert gate.connect() == "connack Success" and collector.connect() == "connack Success"
        finally:
            gate.close()
            collector.close()
        # Run again (after every enrolment): the copies are replaced whole, the same.
        cli("collector", "broker-config", "--pki", str(pki), "--port", str(port), "--bind", "127.0.0.1",
            "--collector-port", str(collector_port), "--persistence-dir", str(persistence_dir(broker_files)),
            "--out", str(conf), "--config", str(config))
        assert sorted(p.name for p in certs.iterdir()) == ["ca.crt", "server.crt", "server.key"]
        assert broker.poll() is None
    finally:
        stop_process(broker, signal.SIGKILL)


def test_broker_config_refuses_broker_files_its_user_cannot_read_and_says_how_to_fix_them(tmp_path, broker_files):
    """The broker's folder filled by hand, as the install guide used to have it (/etc/mosquitto/certs/site-gate
    beside /etc/mosquitto/site-gate.conf) and given as --pki: read where it is, but only once the broker's
    user can read each file; otherwise one line with the commands that fix it, and nothing written. A
    broker folder holding the CA's key is refused whatever its modes."""
    account = mosquitto_account()
    if account is None:
        pytest.skip("only root can ask what user mosquitto may read")
    pki = broker_files / "pki"
    cli("collector", "ca", "init", "--dir", str(pki))
    config = write_collector_config(tmp_path / "collector", pki)
    cli("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(config))
    conf = broker_files / "broker" / "site-gate.conf"
    copies = conf.parent / "certs" / "site-gate"
    copies.mkdir(mode=0o755, parents=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy2(pki / name, copies / name)  # server.key stays 0600 root

    def broker_config(check: bool = True):
        return cli("collector", "broker-config", "--pki", str(copies), "--port", "8883", "--out", str(conf),
                   "--config", str(config), check=check)

    refused = broker_config(check=False)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert (f"user mosquitto, whom Mosquitto runs as, cannot read {copies / 'server.key'}: give --pki the folder "
            "`collector ca init` made") in refused.stderr
    assert f"chgrp mosquitto {copies} {copies / 'server.key'}" in refused.stderr and "nothing written" in refused.stderr
    assert not conf.exists() and not conf.with_suffix(".acl").exists()
    subprocess.run(["chgrp", "mosquitto", str(copies), str(copies / "server.key")], check=True)
    os.chmod(copies, 0o750)
    os.chmod(copies / "server.key", 0o640)
    said = broker_config().stdout
    assert f"the broker reads ca.crt, server.crt and server.key in {copies} (server.key 0640 root:" in said
    assert f"keyfile {copies / 'server.key'}" in conf.read_text().splitlines()
    conf.unlink()
    shutil.copy2(pki / "ca.key", copies / "ca.key")
    refused = broker_config(check=False)
    assert refused.returncode == 1 and "holds ca.key: the broker never reads its files beside the CA's key" \
        in refused.stderr and not conf.exists()
