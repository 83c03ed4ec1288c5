"""The systemd units and udev files, and what the services tell systemd and journald when they run.

The unit files are checked with `systemd-analyze verify` (skipped only where it is absent). The notify
protocol is checked against a real agent and a real collector talking to a socket of the test's own,
as they would to systemd; their stderr is read as journald would store it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from gate_agent.reader import KERNEL_NFC_DRIVERS, KNOWN_USB_READERS
from tests.helpers import BIN, CollectorSetup, stop_process, wait_for

ROOT = Path(__file__).parent.parent
UNITS = ("gate-agent.service", "collector.service", "collector-web.service")
INSTALLED_BIN = "/opt/site-gate-attendance/bin/"


def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists: keys may repeat (LoadCredential=, SystemCallFilter=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(name: str, key: str, section: str = "Service") -> list[str]:
    return [v for k, v in unit(name)[section] if k == key]


def comments(name: str) -> str:
    return "\n".join(line for line in (ROOT / "systemd" / name).read_text().splitlines() if line.startswith("#"))


# ---------------------------------------------------------------------------------------------- unit files


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("name", UNITS)
def test_unit_files_pass_systemd_analyze_verify(tmp_path, name):
    text = (ROOT / "systemd" / name).read_text()
    assert INSTALLED_BIN in text
    # verify checks that ExecStart= exists: point it at this checkout's programs, nothing else changes.
    (tmp_path / name).write_text(text.replace(INSTALLED_BIN, f"{BIN}/"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_a_broken_unit_file_does_not_pass_the_same_check(tmp_path):
    """The check above can fail: verify reports an unknown key on stderr (with exit code 0)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    text = (ROOT / "systemd" / "gate-agent.service").read_text().replace(INSTALLED_BIN, f"{BIN}/")
    (tmp_path / "broken.service").write_text(text.replace("WatchdogSec=", "WatchdogSecs="))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "broken.service")], capture_output=True,
                            text=True, timeout=60)
    assert "WatchdogSecs" in result.stderr


def test_the_services_restart_themselves_and_run_as_their_own_users():
    for name, user in (("gate-agent.service", "gate-agent"), ("collector.service", "collector"),
                       ("collector-web.service", "collector")):
        assert values(name, "Restart") == ["always"]
        assert values(name, "StartLimitIntervalSec", "Unit") == ["0"], f"{name} may give up restarting"
        assert values(name, "User") == [user] and values(name, "NoNewPrivileges") == ["yes"]
        assert values(name, "CapabilityBoundingSet") == [""]
        assert values(name, "ProtectSystem") == ["strict"]
        assert values(name, "StateDirectory") == [user]
        assert "--config /etc/" in values(name, "ExecStart")[0]
    for name in ("gate-agent.service", "collector.service"):
        assert values(name, "Type") == ["notify"] and values(name, "NotifyAccess") == ["main"]
        assert int(values(name, "WatchdogSec")[0]) > 0
    assert values("collector-web.service", "ExecStart")[0].endswith("collector serve --config "
                                                                     "/etc/collector/collector.toml")


def test_the_gate_agent_reads_its_reader_and_gets_its_keys_as_credentials():
    name = "gate-agent.service"
    # A missing reader keeps the unit activating: the boot must not wait for it.
    assert values(name, "DefaultDependencies", "Unit") == ["no"]
    assert values(name, "Conflicts", "Unit") == ["shutdown.target"]
    assert "sysinit.target" in values(name, "Requires", "Unit")
    assert set(values(name, "SupplementaryGroups")[0].split()) == {"nfc", "dialout"}
    credentials = dict(v.split(":", 1) for v in values(name, "LoadCredential"))
    assert credentials == {"gate.key": "/etc/gate-agent/credentials/gate.key",
                           "gate-tls.key": "/etc/gate-agent/credentials/gate-tls.key"}
    assert dict(v.split(":", 1) for v in values("collector.service", "LoadCredential")) == {
        "collector.key": "/etc/collector/credentials/collector.key", "bank.key": "/etc/collector/credentials/bank.key"}
    # The udev rules give their devices to the group the unit adds.
    rules = (ROOT / "udev" / "60-gate-agent-nfc.rules").read_text()
    assert set(re.findall(r'GROUP="([^"]+)"', rules)) == {"nfc"}


# Each hardening directive is either set, or left off with a comment saying why.
HARDENING = {
    "PrivateDevices": "yes", "ProtectClock": "yes", "PrivateUsers": "yes", "MemoryDenyWriteExecute": "yes",
    "ProcSubset": "pid", "ProtectHome": "yes", "PrivateTmp": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "ProtectHostname": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "SystemCallArchitectures": "native", "RemoveIPC": "yes", "ProtectProc": "invisible",
}


@pytest.mark.parametrize("name", UNITS)
def test_every_hardening_directive_is_set_or_its_absence_explained(name):
    notes = comments(name)
    for directive, value in HARDENING.items():
        set_to = values(name, directive)
        if set_to:
            assert set_to == [value], f"{name}: {directive}={set_to}"
        else:
            explained = re.search(rf"^# {directive}(=no| is not set)[: ].{{20,}}", notes, re.MULTILINE)
            assert explained, f"{name}: {directive} is neither set nor explained in a comment"
    assert values(name, "SystemCallFilter")[0].startswith("@system-service")
    assert values(name, "RestrictAddressFamilies")


def test_udev_rules_cover_every_reader_the_agent_knows_and_the_blacklist_every_kernel_driver():
    rules = (ROOT / "udev" / "60-gate-agent-nfc.rules").read_text()
    ids = {(int(v, 16), int(p, 16)) for v, p in re.findall(r'ATTR\{idVendor\}=="([0-9a-f]{4})", '
                                                            r'ATTR\{idProduct\}=="([0-9a-f]{4})"', rules)}
    assert ids == set(KNOWN_USB_READERS) == {(0x072F, 0x2200), (0x04E6, 0x5591), (0x054C, 0x06C3),
                                            (0x054C, 0x06C1), (0x04CC, 0x2533)}
    for line in rules.splitlines():
        if "idVendor" in line and not line.startswith("#"):
            assert line.endswith('GROUP="nfc", MODE="0660"'), line
    assert 'SUBSYSTEM!="usb", GOTO=' in rules and 'ENV{DEVTYPE}!="usb_device", GOTO=' in rules
    blacklisted = set(re.findall(r"^blacklist (\S+)$", (ROOT / "udev" / "blacklist-nfc.conf").read_text(),
                                 re.MULTILINE))
    assert blacklisted == set(KERNEL_NFC_DRIVERS) >= {"pn533", "pn533_usb", "nfc"}


# ---------------------------------------------------------------------------------------------- notify protocol


class NotifySocket:
    """What systemd listens on: an abstract datagram socket; ``messages`` in arrival order."""

    def __init__(self):
        self.address = f"@site-gate-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def count(self, key: str) -> int:
        return sum(key in m for m in self.poll())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def run_with_systemd_environment(args: list[str], notify: NotifySocket, log: Path) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=notify.address, JOURNAL_STREAM="8:4242")
    with open(log, "wb") as handle:
        return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)


JOURNAL_LINE = re.compile(r"^<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


@pytest.mark.slow
def test_the_agent_is_ready_with_its_reader_feeds_the_watchdog_and_logs_for_journald(
        tmp_path, gate, broker, notify_socket):
    secret = "pw-" + uuid.uuid4().hex
    (tmp_path / "mqtt.password").write_text(secret + "\n")
    (tmp_path / "mqtt.password").chmod(0o600)
    gate.write_config(mqtt={"username": "gate-north", "password_file": str(tmp_path / "mqtt.password")})
    log = tmp_path / "agent.stderr"
    agent = run_with_systemd_environment([str(BIN / "gate-agent"), "-vvv", "run", "--config", str(gate.config_path)],
                                         notify_socket, log)
    try:
        wait_for(lambda: notify_socket.count("WATCHDOG") >= 2, message="READY and watchdog pings")
        gate.tap("DEADBEEF")
        wait_for(lambda: "signal recorded" in log.read_text(), message="a recorded tap")
        stop_process(agent)
        wait_for(lambda: notify_socket.count("STOPPING") == 1, message="STOPPING=1")
    finally:
        stop_process(agent, signal.SIGKILL)
    messages = notify_socket.poll()
    ready = [i for i, m in enumerate(messages) if m.get("READY") == "1"]
    assert len(ready) == 1 and messages[ready[0]]["STATUS"] == f"gate S1/north reading {gate.device}"
    assert all("WATCHDOG" not in m for m in messages[:ready[0]]), "watchdog fed before READY"
    text = log.read_text()
    assert text.index("reader open") < text.index("open: ready")
    lines = text.splitlines()
    assert lines and all(JOURNAL_LINE.match(line) for line in lines), [x for x in lines if not JOURNAL_LINE.match(x)]
    assert any(line.startswith("<7>DEBUG gate_agent.mqtt.paho: Sending CONNECT") for line in lines)
    signing_key = gate.key_file.read_text().splitlines()[1]
    for secret_text in (secret, signing_key, "PRIVATE KEY"):
        assert secret_text not in text


@pytest.mark.slow
def test_without_its_reader_the_agent_is_not_ready_but_keeps_its_start_alive(tmp_path, gate, notify_socket):
    gate.write_config(reader="tty:NOSUCH9:pn532")
    log = tmp_path / "agent.stderr"
    agent = run_with_systemd_environment([str(BIN / "gate-agent"), "run", "--config", str(gate.config_path)],
                                         notify_socket, log)
    try:
        wait_for(lambda: notify_socket.count("EXTEND_TIMEOUT_USEC") >= 3, message="start-up extensions")
    finally:
        stop_process(agent)
    messages = notify_socket.poll()
    assert not any("READY" in m or "WATCHDOG" in m for m in messages)
    extensions = [m for m in messages if "EXTEND_TIMEOUT_USEC" in m]
    assert all(int(m["EXTEND_TIMEOUT_USEC"]) >= 10_000_000 for m in extensions)
    assert extensions[0]["STATUS"] == "gate S1/north waiting for reader tty:NOSUCH9:pn532 (see the log)"
    assert "/dev/ttyNOSUCH9 does not exist" in log.read_text()


@pytest.mark.slow
def test_the_collector_is_ready_feeds_the_watchdog_and_keeps_its_tokens_out_of_the_log(
        tmp_path, broker, notify_socket):
    token = "token-" + uuid.uuid4().hex
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, **{"web.tokens": {token: "*"}})
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    log = tmp_path / "collector.stderr"
    process = run_with_systemd_environment([str(BIN / "collector"), "-v", "run", "--config",
                                            str(collector.config_path)], notify_socket, log)
    try:
        wait_for(lambda: notify_socket.count("WATCHDOG") >= 2, message="READY and watchdog pings")
        wait_for(lambda: "roster of S1 published" in log.read_text(), message="the roster published")
        stop_process(process)
        wait_for(lambda: notify_socket.count("STOPPING") == 1, message="STOPPING=1")
    finally:
        stop_process(process, signal.SIGKILL)
    messages = notify_socket.poll()
    assert [m for m in messages if "READY" in m] == [{"READY": "1", "STATUS": "collecting"}]
    text = log.read_text()
    assert all(JOURNAL_LINE.match(line) for line in text.splitlines())
    assert token not in text
