"""A real Mosquitto started from the configuration `collector broker-config` writes: its queues, its
persistence, the collectors' own listener, and the options it refuses.

A collector partition is one persistent MQTT 5 session (collector, collector-p01, ...). Whatever is owed
to it while it is offline (its process killed, its successor not yet connected) or slow must wait for it:
with the generated settings every message arrives; with Mosquitto's defaults (1,000 queued messages per
client) the same traffic loses messages, which only the gates' resends would recover.
"""

from __future__ import annotations

import queue
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.deploy.mosquitto import mosquitto_binary
from gate_agent.mqtt import SESSION_NEVER_EXPIRES
from gate_agent.protocol import PUNCH_SUBSCRIPTION, GateTopics
from tests.helpers import cli, stop_process, wait_for
from tests.ports import free_port
from tests.test_deploy_pki import enroll, public_key, write_collector_config
from tests.test_deploy_tls_broker import broker_files, persistence_dir  # noqa: F401

pytestmark = pytest.mark.slow

MESSAGES = 5000
PAYLOAD_BYTES = 400  # a punch message's size
DROPPING = "Outgoing messages are being dropped for client"
QUEUE_SETTINGS = ("max_queued_messages", "max_queued_bytes", "memory_limit")


@dataclass
class Bank:
    """A PKI, a registry with gate S1/north, and the configuration `broker-config` wrote from them."""

    directory: Path
    pki: Path
    config: Path
    conf: Path
    port: int
    collector_port: int

    def without_queue_settings(self) -> Path:
        """The same configuration with Mosquitto's default queue limits."""
        lines = [line for line in self.conf.read_text().splitlines() if not line.startswith(QUEUE_SETTINGS)]
        defaults = self.conf.with_name("defaults.conf")
        defaults.write_text("\n".join(lines) + "\n")
        return defaults


@pytest.fixture
def bank(tmp_path, broker_files) -> Bank:  # noqa: F811
    pki, port, collector_port = broker_files / "pki", free_port(), free_port()
    cli("collector", "ca", "init", "--dir", str(pki))
    config = write_collector_config(tmp_path / "collector", pki, port=collector_port)
    cli("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(config))
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    conf = broker_files / "broker" / "site-gate.conf"
    cli("collector", "broker-config", "--pki", str(pki), "--port", str(port), "--bind", "127.0.0.1",
        "--collector-port", str(collector_port), "--persistence-dir", str(persistence_dir(broker_files)),
        "--out", str(conf), "--config", str(config))
    return Bank(tmp_path, pki, config, conf, port, collector_port)


class Mosquitto:
    """The broker binary run from one configuration file, stopped cleanly or killed."""

    def __init__(self, conf: Path, log: Path, port: int):
        self.conf, self.log, self.port = conf, log, port
        self.process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-v", "-c", str(self.conf)], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_for(lambda: self.process.poll() is not None or _listening(self.port), message="mosquitto listening")
        assert self.process.poll() is None, self.log.read_text()[-2000:]
        return self

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its sessions and queues to disk before it exits."""
        assert stop_process(self.process, signal.SIGTERM) == 0

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, signal.SIGKILL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_broker(bank):
    started: list[Mosquitto] = []

    def start(conf: Path | None = None) -> Mosquitto:
        broker = Mosquitto(conf or bank.conf, bank.directory / "mosquitto.log", bank.port).start()
        started.append(broker)
        # Started means the gates' listener accepts; Mosquitto binds its listeners one after another (each
        # loading its TLS files), so the collectors' may still be a few milliseconds from bound.
        wait_for(lambda: _listening(bank.collector_port) or broker.process.poll() is not None, timeout=10,
                 message="the collectors' listener")
        return broker

    yield start
    for broker in started:
        broker.kill()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Session:
    """A paho MQTT 5 client with a persistent session (clean_start false, never expires), as the
    collector's and the gates' are. ``hold`` keeps every PUBACK back until ``release()``: with a small
    Receive Maximum the broker can then hand over only that many messages and must queue the rest."""

    def __init__(self, bank: Bank, identity: str, client_id: str, *, gates_listener: bool = False,
                 receive_maximum: int | None = None, hold: bool = False):
        self.port = bank.port if gates_listener else bank.collector_port
        self.client_id = client_id
        self.received: list[bytes] = []
        self.events: queue.Queue = queue.Queue()
        self._held: list[paho.MQTTMessage] = []
        self._hold = hold
        self._lock = threading.Lock()
        if identity == "collector":
            cert, key = bank.pki / "collector.crt", bank.pki / "collector.key"
        else:
            cert, key = bank.directory / f"{identity}-tls" / "gate-tls.crt", bank.directory / f"{identity}-tls" / "gate-tls.key"
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                                  manual_ack=True)
        self.client.tls_set(ca_certs=str(bank.pki / "ca.crt"), certfile=str(cert), keyfile=str(key),
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.properties = Properties(PacketTypes.CONNECT)
        self.properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        if receive_maximum is not None:
            self.properties.ReceiveMaximum = receive_maximum
        self.client.on_connect = lambda c, u, flags, rc, p: self.events.put(
            ("connack", str(rc), bool(flags.session_present)))
        self.client.on_disconnect = lambda c, u, flags, rc, p: self.events.put(("disconnect", str(rc), None))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.events.put(("suback", str(codes[0]), None))
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.received.append(bytes(message.payload))
            if self._hold:
                self._held.append(message)
                return
        client.ack(message.mid, message.qos)

    def connect(self) -> bool:
        """Connect and return whether the broker still had this client's session."""
        self.events = queue.Queue()  # not the last connection's disconnect
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=self.properties)
        self.client.loop_start()
        kind, reason, session_present = self.events.get(timeout=20)
        assert (kind, reason) == ("connack", "Success"), (kind, reason)
        return session_present

    def subscribe(self, topic: str = PUNCH_SUBSCRIPTION) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.events.get(timeout=20) == ("suback", "Granted QoS 1", None)

    def release(self) -> None:
        with self._lock:
            held, self._held, self._hold = self._held, [], False
        for message in held:
            self.client.ack(message.mid, message.qos)

    def publish_all(self, topic: str, payloads: list[bytes]) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(60)  # the broker's PUBACK: the message is queued for every subscriber

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seqs(self) -> set[int]:
        with self._lock:
            return {int(payload[:6]) for payload in self.received if payload[:6].isdigit()}

    def got(self, payload: bytes) -> bool:
        with self._lock:
            return payload in self.received


def punches(count: int) -> list[bytes]:
    return [b"%06d" % seq + b"." * (PAYLOAD_BYTES - 6) for seq in range(1, count + 1)]


def flood_an_offline_and_a_slow_session(bank: Bank) -> tuple[Session, Session]:
    """``collector`` subscribed and went away; ``collector-p01`` is online with a Receive Maximum of 2 and
    acknowledges nothing until the gate has published everything. Then both catch up; a last message,
    queued behind all the others, says when they have."""
    offline = Session(bank, "collector", "collector", receive_maximum=100)
    assert offline.connect() is False
    offline.subscribe()
    offline.disconnect()
    slow = Session(bank, "collector", "collector-p01", receive_maximum=2, hold=True)
    slow.connect()
    slow.subscribe()
    gate = Session(bank, "north", "north", gates_listener=True)
    gate.connect()
    topic = GateTopics("S1", "north").punch
    gate.publish_all(topic, punches(MESSAGES))
    assert len(slow.received) <= 2, "the broker sent more than the slow session's Receive Maximum"

    slow.release()
    assert offline.connect() is True, "the offline collector's session was gone"
    gate.publish_all(topic, [b"last"])
    wait_for(lambda: slow.got(b"last") and offline.got(b"last"), timeout=120, message="both sessions caught up")
    for session in (gate, slow, offline):
        session.disconnect()
    return offline, slow


def test_an_offline_and_a_slow_collector_session_get_every_message(bank, start_broker):
    conf = bank.conf.read_text()
    assert "max_queued_messages 4194304" in conf and "max_queued_bytes 268435456" in conf
    broker = start_broker()
    offline, slow = flood_an_offline_and_a_slow_session(bank)
    everything = set(range(1, MESSAGES + 1))
    assert offline.seqs() == everything
    assert slow.seqs() == everything
    assert DROPPING not in broker.text()


def test_with_mosquittos_default_queue_limits_the_same_traffic_loses_messages(bank, start_broker):
    defaults = bank.without_queue_settings()
    assert not [line for line in defaults.read_text().splitlines() if line.startswith(QUEUE_SETTINGS)]
    broker = start_broker(defaults)
    offline, slow = flood_an_offline_and_a_slow_session(bank)
    # About 1,000 queued plus what was in flight; the rest was dropped, and only the log says so.
    print(f"Mosquitto's defaults: the offline session got {len(offline.seqs())} and the slow one "
          f"{len(slow.seqs())} of {MESSAGES}")
    assert len(offline.seqs()) < MESSAGES and len(slow.seqs()) < MESSAGES
    assert f"{DROPPING} collector." in broker.text() and f"{DROPPING} collector-p01." in broker.text()


def test_a_broker_restart_keeps_what_is_queued_for_an_offline_collector(bank, start_broker):
    broker = start_broker()
    partition = Session(bank, "collector", "collector-p02")
    partition.connect()
    partition.subscribe()
    partition.disconnect()
    gate = Session(bank, "north", "north", gates_listener=True)
    gate.connect()
    gate.publish_all(GateTopics("S1", "north").punch, punches(2000))
    gate.disconnect()

    broker.stop()
    assert (bank.conf.parent.parent / "data" / "mosquitto.db").is_file()
    broker = start_broker()
    partition = Session(bank, "collector", "collector-p02")
    # Not subscribing again: the subscription and the queue both come from the broker's disk.
    assert partition.connect() is True, "the session did not survive the restart"
    wait_for(lambda: len(partition.seqs()) == 2000, timeout=60, message="the 2,000 queued messages")
    partition.disconnect()
    assert partition.seqs() == set(range(1, 2001))
    assert DROPPING not in broker.text()


def test_collector_partitions_have_their_own_client_ids_and_a_gate_cannot_take_one(bank, start_broker):
    broker = start_broker()
    first, second = Session(bank, "collector", "collector"), Session(bank, "collector", "collector-p01")
    for session in (first, second):
        session.connect()
        session.subscribe()
    # A gate's certificate asking for a partition's client id on the gates' listener is given its own name.
    gate = Session(bank, "north", "collector-p01", gates_listener=True)
    gate.connect()
    gate.publish_all(GateTopics("S1", "north").punch, [b"000001 after the gate connected"])
    wait_for(lambda: first.seqs() == {1} and second.seqs() == {1}, message="both partitions receive")
    log = broker.text()
    assert " as north (" in log
    assert log.count(" as collector-p01 (") == 1, "a second client connected as collector-p01"
    assert second.events.empty(), "collector-p01 was disconnected"
    for session in (gate, first, second):
        session.disconnect()


def test_a_publish_the_acl_refuses_does_not_cost_a_gate_its_connection(bank, start_broker):
    """With max_queued_messages 0, Mosquitto 2.0.11 drops the connection of a client after refusing its QoS 1
    publish: a gate would reconnect over and over. The generated count limit is large instead."""
    broker = start_broker()
    gate = Session(bank, "north", "north", gates_listener=True)
    gate.connect()
    gate.publish_all(GateTopics("S1", "south").punch, [b"000001 on another gate's topic"] * 3)
    gate.publish_all(GateTopics("S1", "north").punch, [b"000002 on its own"])
    assert gate.events.empty(), f"the gate lost its connection: {gate.events.get()}"
    gate.disconnect()
    log = broker.text()
    assert log.count("Denied PUBLISH from north") == 3 and "Bad socket read/write on client north" not in log


# ------------------------------------------------------------------------------------ refusals


def broker_config(bank: Bank, *options: str, out: Path | None = None):
    return cli("collector", "broker-config", "--pki", str(bank.pki), "--out", str(out or bank.conf),
               "--config", str(bank.config), *options, check=False)


@pytest.mark.parametrize("options, expected", [
    (["--port", "8883", "--collector-port", "8883"], "the collectors' listener needs its own"),
    (["--port", "8883", "--collector-bind", "0.0.0.0"], "listens on every address, the gates' network included"),
    (["--port", "8883", "--collector-bind", "::"], "listens on every address, the gates' network included"),
    (["--port", "8883", "--bind", "10.0.0.5", "--collector-bind", "10.0.0.5"], "is the address the gates reach"),
    (["--port", "8883", "--collector-bind", "collectors.internal"], "is not an IP address"),
    (["--port", "8883", "--bind", "10.0.0.5\nlistener 1883"], "holds a line break"),
    (["--port", "8883", "--persistence-dir", "var/lib/mosquitto"], "is not an absolute path"),
    (["--port", "8883", "--persistence-dir", "/var/lib/x\npersistence false"], "is not an absolute path on one line"),
    (["--port", "8883", "--queue-limit-mib", "0"], "is not a positive number"),
    (["--port", "8883", "--queue-limit-mib", "2048", "--memory-limit-mib", "8192"], "would silently mean no limit"),
    (["--port", "8883", "--memory-limit-mib", "300"], "is less than twice --queue-limit-mib 256"),
])
def test_broker_config_refuses_settings_it_cannot_make_safe(tmp_path, bank, options, expected):
    out = tmp_path / "refused" / "site-gate.conf"
    result = broker_config(bank, *options, out=out)
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nothing written" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not out.with_suffix(".acl").exists()


def test_no_gate_may_be_named_like_a_collector_session(tmp_path, bank):
    result = cli("collector", "gate", "add", "collector-p03", "--site", "S1", "--public-key",
                 public_key(tmp_path, "p03"), "--config", str(bank.config), check=False)
    assert result.returncode == 1 and "is reserved" in result.stderr, result.stderr
    # One registered before names were reserved refuses the configuration even deactivated: its
    # certificate still connects, and on the gates' listener its client id is its name.
    conn = sqlite3.connect(bank.config.parent / "collector.sqlite3")
    with conn:
        conn.execute("INSERT INTO gates (site, gate, active, added_at) VALUES ('S1', 'collector-p03', 0, ?)",
                     (datetime.now().isoformat(),))
    conn.close()
    out = tmp_path / "refused" / "site-gate.conf"
    result = broker_config(bank, "--port", "8883", out=out)
    assert result.returncode == 1
    assert "gate S1/collector-p03 is named like a session of the collector" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
