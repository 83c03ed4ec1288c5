"""Helpers the tests share: gate setups, an MQTT listener, subprocess runners, signed test punches."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gate_agent.keys import generate_key_file
from gate_agent.protocol import (
    GENESIS,
    PROTOCOL_VERSION,
    Punch,
    format_time,
    key_id,
    public_key_text,
    sign_punch,
)

BIN = Path(sys.executable).parent

#: The bank's signing key in the tests: collectors sign with it, gates trust it (as after enrolment).
BANK_KEY = Ed25519PrivateKey.generate()
BANK_PUBLIC = public_key_text(BANK_KEY.public_key())
BANK_KEYS = {key_id(BANK_PUBLIC): BANK_KEY.public_key()}


def signed_ack(site: str, gate: str, seq: int, digest: str, *, key: Ed25519PrivateKey = BANK_KEY) -> bytes:
    """The ack the collector would publish (signed with the bank key the test gates trust)."""
    from gate_agent.protocol import Ack

    return Ack(seq, digest).sign(site, gate, format_time(datetime.now(UTC)), key)


def write_bank_key(path: Path, key: Ed25519PrivateKey = BANK_KEY) -> Path:
    """The bank key as `collector keygen` writes it (PEM, 0600), unless the file exists already."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value or fail the test with ``message``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


#: Commands that are the process: the daemons (signals, a run until stopped) and the demo (it runs both).
PROCESS_COMMANDS = {"run", "serve", "demo"}


def cli(tool: str, *args: str, check: bool = True, timeout: float = 60, process: bool = False,
        input: str | bytes | None = None, env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None, umask: int = -1, text: bool = True) -> subprocess.CompletedProcess:
    """``tool *args`` (``collector`` or ``gate-agent``): its exit status, stdout and stderr; the other
    arguments as for subprocess.run (``umask`` -1: this process's). A one-shot
    command runs in this process (tests/inprocess.py); a daemon, the demo, a call from another thread
    or ``process=True`` starts the installed console script."""
    args = tuple(map(os.fspath, args))
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if process or command in PROCESS_COMMANDS or threading.current_thread() is not threading.main_thread():
        result = subprocess.run([str(BIN / tool), *args], capture_output=True, text=text, timeout=timeout,
                                input=input, env=env, cwd=cwd, umask=umask)
    else:
        from tests.inprocess import run_in_process

        result = run_in_process(tool, list(args), timeout=timeout, input=input, env=env, cwd=cwd, umask=umask,
                                text=text)
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result



def resident_id(serial: int, region: str = "110101") -> str:
    """A resident ID number with a valid GB 11643 check digit whose last four characters are ``serial``
    (0 to 9999, its last digit the check digit): the birth date is chosen to make it so."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    tail = f"{serial:04d}"
    for month in range(1, 13):
        for day in range(1, 29):
            body = f"{region}1990{month:02d}{day:02d}{tail[:3]}"
            if "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11] == tail[3]:
                return body + tail[3]
    raise AssertionError(f"no birth date gives serial {serial}")


@dataclass
class GateSetup:
    """One gate's files: a key, a config and a data directory."""

    directory: Path
    site: str
    gate: str
    device: str
    key_file: Path
    public_key: str
    broker_port: int
    options: dict = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, *, broker, device: str, site: str = "S1", gate: str = "north",
               **options) -> GateSetup:
        directory.mkdir(parents=True, exist_ok=True)
        key_file = directory / "gate.key"
        key = generate_key_file(key_file)
        setup = cls(directory, site, gate, device, key_file, public_key_text(key.public_key()), broker.port, options)
        setup.write_config()
        return setup

    @property
    def config_path(self) -> Path:
        return self.directory / "gate.toml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def write_config(self, **changes) -> Path:
        self.options.update(changes)
        values = {
            "site": self.site, "gate": self.gate, "reader": self.device, "direction": "in",
            "data_dir": str(self.data_dir), "key_file": str(self.key_file), "technologies": ["106A"],
            "bank_key": BANK_PUBLIC,
            "debounce_seconds": 0, "heartbeat_seconds": 1, "ack_timeout_seconds": 2,
        }
        values.update(self.options)
        # Short back-offs: a fault test waits for the recovery, not for production's pauses.
        values.setdefault("ack_backoff_max_seconds", 2 * values["ack_timeout_seconds"])
        mqtt = {"host": "127.0.0.1", "port": self.broker_port, "reconnect_max_seconds": 1}
        mqtt.update(values.pop("mqtt", {}))
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("[mqtt]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    def status(self) -> dict:
        return json.loads(cli("gate-agent", "status", "--config", str(self.config_path), "--json").stdout)

    def start_agent(self, log_path: Path | None = None) -> subprocess.Popen:
        log_path = log_path or self.directory / "agent.log"
        handle = open(log_path, "ab")
        process = subprocess.Popen([str(BIN / "gate-agent"), "-v", "run", "--config", str(self.config_path)],
                                   stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return process

    def tap(self, *uids: str, timeout: float = 20, hold: float = 0) -> subprocess.CompletedProcess:
        return cli("gate-agent", "virtual-card", "--device", self.device, "--timeout", str(timeout),
                   "--hold", str(hold), *uids, timeout=timeout * len(uids) + 30)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout)


class Listener:
    """A plain MQTT client that records what arrives on some topics (and can publish, e.g. acks)."""

    def __init__(self, port: int, *topics: str, client_id: str | None = None):
        self.messages: queue.Queue = queue.Queue()
        self.all: list[paho.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or f"listener-{os.getpid()}-{id(self)}",
                                  protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.topics = topics
        self.client.on_connect = lambda c, u, f, rc, p: topics and c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if topics and not self._subscribed.wait(10):
            raise AssertionError("listener could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.all.append(message)
        self.messages.put(message)

    def received(self, topic_suffix: str = "") -> list[paho.MQTTMessage]:
        with self._lock:
            return [m for m in self.all if m.topic.endswith(topic_suffix)]

    def punches(self) -> list[dict]:
        found = []
        for message in self.received("/punch"):
            found.extend(json.loads(message.payload)["punches"])
        return found

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class PunchFactory:
    """Signed, chained punches for one gate, made the way a gate makes them: punch protocol ``version`` 1
    (the default) or 3, which links each punch to the previous one of its card (``cprev``)."""

    def __init__(self, site: str = "S1", gate: str = "north", key: Ed25519PrivateKey | None = None,
                 start: datetime | None = None, version: int = PROTOCOL_VERSION):
        self.site, self.gate = site, gate
        self.key = key or Ed25519PrivateKey.generate()
        self.public_key = public_key_text(self.key.public_key())
        self.prev = GENESIS
        self.seq = 0
        self.time = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.version = version
        self.card_heads: dict[str, str] = {}  # card -> digest of its latest punch (version 3)

    def next(self, card: str = "04A1B2C3D4E5F6", direction: str = "in", *, at: datetime | None = None,
             synced: bool = True, **fields) -> Punch:
        self.seq += 1
        self.time = at or self.time + timedelta(seconds=1)
        linked = {"cprev": self.card_heads.get(card, GENESIS)} if self.version == 3 else {}
        punch = sign_punch(Punch(
            v=self.version, site=self.site, gate=self.gate, seq=self.seq, time=format_time(self.time),
            mono_ms=1000 * self.seq, boot="boot-1", synced=synced, card=card, tech="iso14443a",
            reader="udp:test", dir=direction, roster="known", prev=self.prev, key="", sig="", **linked,
        ), self.key)
        if fields:
            data = punch.to_dict() | fields
            punch = sign_punch(Punch(**data), self.key)
        self.prev = punch.digest()
        if self.version == 3:
            self.card_heads[punch.card] = self.prev
        return punch


def heartbeat(**changes) -> dict:
    """The facts of an online status as gate_agent.link publishes them (outbox status and agent facts),
    for ``encode_status("online", **heartbeat(...))``."""
    facts = {
        "site": "S1", "gate": "north", "version": "0.1.0", "heartbeat_seconds": 1,
        "last_seq": 2, "acked_seq": 2, "pending": 0, "oldest_pending_at": None, "bytes_on_disk": 12288,
        "time": format_time(datetime.now(UTC)), "boot": "2f1c9a52-0d4e-4c1b-9f3a-6f1d2e3c4b5a",
        "mono_ms": 86_400_123, "synced": True, "reader": "ok", "buffer_pct": 0.1, "buffer_warning": False,
        "roster_issued": None, "counters": {"recorded": 2, "duplicates": 0, "unknown_cards": 0, "not_recorded": 0},
    }
    facts.update(changes)
    return facts


def outbox_status(setup: GateSetup) -> dict:
    """The gate's outbox counters read directly (cheaper than `gate-agent status` in a polling loop)."""
    from gate_agent.outbox import Outbox, OutboxError

    try:
        with Outbox(setup.data_dir, setup.site, setup.gate, readonly=True) as outbox:
            return outbox.status().to_dict()
    except OutboxError:
        return {"last_seq": 0, "acked_seq": 0, "pending": 0}


@dataclass
class CollectorSetup:
    """A collector's config and database around a test broker."""

    directory: Path
    broker_port: int
    options: dict = field(default_factory=dict)

    db: str | Path | None = None  # a PostgreSQL URL, or None for a SQLite file in ``directory``

    @classmethod
    def create(cls, directory: Path, *, broker, db: str | Path | None = None, **options) -> CollectorSetup:
        directory.mkdir(parents=True, exist_ok=True)
        setup = cls(directory, broker.port, options, db=None if db is None or isinstance(db, Path) else db)
        setup.write_config()
        return setup

    @property
    def config_path(self) -> Path:
        return self.directory / "collector.toml"

    @property
    def db_path(self) -> Path:
        """The SQLite file (only when the setup is on SQLite)."""
        assert self.db is None, "this collector keeps its database in PostgreSQL"
        return self.directory / "collector.sqlite3"

    @property
    def location(self) -> str | Path:
        return self.db if self.db is not None else self.db_path

    def write_config(self, **changes) -> Path:
        self.options.update(changes)
        ingest = {"gap_wait_seconds": 1, "resend_interval_seconds": 3, "roster_interval_seconds": 0.5,
                  "write_retry_max_seconds": 2}
        ingest.update(self.options.get("ingest", {}))
        signing_key = self.options.get("signing_key") or str(write_bank_key(self.directory / "bank.key"))
        text = (f'db = "{self.location}"\nsigning_key = "{signing_key}"\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker_port}\nreconnect_max_seconds = 1\n[ingest]\n'
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in ingest.items()))
        for section, values in self.options.items():
            if section in ("ingest", "signing_key"):
                continue
            text += f"[{section}]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in values.items())
        self.config_path.write_text(text)
        return self.config_path

    def run(self, *args: str, check: bool = True, **options) -> subprocess.CompletedProcess:
        return cli("collector", *args, "--config", str(self.config_path), check=check, **options)

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json").stdout)

    def start(self) -> subprocess.Popen:
        handle = open(self.directory / "collector.log", "ab")
        process = subprocess.Popen([str(BIN / "collector"), "-v", "run", "--config", str(self.config_path)],
                                   stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return process

    def store(self, *, readonly: bool = False):
        from collector.store import Store

        return Store(self.location, readonly=readonly)

    def rows(self, sql: str, *params) -> list[tuple]:
        """Rows read straight from the database ([] while it does not exist yet)."""
        from collector.store import DatabaseError, Store, StoreError

        try:
            with Store(self.location, readonly=True) as store:
                return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in store.execute(sql, params).fetchall()]
        except (StoreError, DatabaseError):
            return []

    def count(self, sql: str, *params) -> int:
        """A number read straight from the database (0 while it does not exist yet)."""
        from collector.store import DatabaseError, Store, StoreError

        try:
            with Store(self.location, readonly=True) as store:
                return store.execute(sql, params).fetchone()[0]
        except (StoreError, DatabaseError):
            return 0

    def log(self) -> str:
        return (self.directory / "collector.log").read_text()


class FakeClock:
    """Deterministic stand-in for the system clock (time is an input here, not a dependency)."""

    def __init__(self, now: datetime | None = None, synced: bool = True):
        self.current = now or datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
        self.mono = 1000
        self.boot_id = "boot-a"
        self.synced = synced

    def now(self):
        return self.current

    def monotonic_ms(self):
        return self.mono

    def synchronised(self):
        return self.synced

    def advance(self, seconds: float):
        self.current += timedelta(seconds=seconds)
        self.mono += int(seconds * 1000)


def start_web(setup: CollectorSetup, *, verbose: str = "-v") -> tuple[subprocess.Popen, str]:
    """`collector serve` for a collector setup on a free loopback port; returns the process and its base
    URL once it answers. Its log is serve.log beside the config."""
    import urllib.request

    from tests.ports import free_port

    port = free_port()
    handle = open(setup.directory / "serve.log", "ab")
    process = subprocess.Popen([str(BIN / "collector"), verbose, "serve", "--config", str(setup.config_path),
                                "--host", "127.0.0.1", "--port", str(port)], stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError("collector serve exited:\n" + (setup.directory / "serve.log").read_text())
        try:
            with urllib.request.urlopen(url + "/", timeout=5):
                return True
        except OSError:
            return False

    wait_for(answers, message="collector serve answering")
    return process, url


def fill_outbox(setup: GateSetup, count: int, card: str = "DEADBEEF", *, start: datetime | None = None) -> None:
    """Write ``count`` punches into a gate's outbox as its tap path would (a backlog from an outage),
    half a second apart from ``start`` (default: two hours ago)."""
    from gate_agent.keys import load_private_key
    from gate_agent.outbox import Outbox

    clock = FakeClock(start or datetime.now(UTC) - timedelta(hours=2))
    with Outbox(setup.data_dir, setup.site, setup.gate, key=load_private_key(setup.key_file)) as outbox:
        for _ in range(count):
            outbox.append(card=card, tech="iso14443a", reader="udp:test", direction="in", roster="none", clock=clock)
            clock.advance(0.5)
