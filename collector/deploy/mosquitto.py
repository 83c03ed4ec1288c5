"""A local Mosquitto run from its binary: the embedded default for the demo, and the tests' broker.

It listens on loopback only, keeps its sessions on disk (so a stop and a start behave as at a bank
that restarts its broker), and can be stopped, killed and started again on the same port. Its queues
are the bank's (`collector broker-config`: bounded by bytes, not by a message count) unless a test asks
for Mosquitto's defaults, under which the broker drops messages to a slow or absent subscriber.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from collector.errors import CollectorError


class BrokerError(CollectorError):
    """The broker cannot be found, configured or started; one line."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found is None:
        raise BrokerError("the mosquitto binary is missing: apt-get install -y mosquitto")
    return found


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBroker:
    """``extra`` is appended to the generated mosquitto.conf (limits, TLS listeners...);
    ``default_queue_limits`` leaves out the production queue settings (Mosquitto's 1,000 messages per client)."""

    def __init__(self, directory: str | os.PathLike, port: int | None = None, *, extra: str = "",
                 default_queue_limits: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra = extra
        self.default_queue_limits = default_queue_limits
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self._process: subprocess.Popen | None = None

    def write_config(self) -> Path:
        from collector.deploy.broker_config import queue_settings

        queues = "" if self.default_queue_limits else "\n".join(queue_settings()) + "\n"
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "autosave_interval 1\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            # Started as root, Mosquitto switches to user "mosquitto", which cannot write this directory:
            # it then runs without its log and without persistence (sessions lost on every restart).
            + ("user root\n" if os.geteuid() == 0 else "")
            + queues
            + self.extra
        )
        return self.config_path

    def start(self, timeout: float = 10.0) -> LocalBroker:
        if self.running:
            return self
        self.write_config()
        self._process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise BrokerError(f"mosquitto exited with {self._process.returncode}: {error.strip()[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """A clean stop: Mosquitto writes its sessions to disk first."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._end(signal.SIGKILL, 5.0)

    def _end(self, signum: int, timeout: float) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signum)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
