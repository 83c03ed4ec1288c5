"""The tools' console scripts start as processes, and what a one-shot command gives a test in process is
what the process gives: exit status, stdout, stderr; with nothing of the command left behind in the
test process (logging, signals, environment, working directory), a hang that fails the test, and a
bug's traceback in the failure's message."""

from __future__ import annotations

import logging
import os
import signal
import socket
from types import SimpleNamespace

import pytest

from collector.deploy.mosquitto import free_port
from collector.store import Store
from gate_agent.cli_output import EscapingGroup
from tests.helpers import CollectorSetup, cli


@pytest.fixture
def setup(tmp_path) -> CollectorSetup:
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    return setup


def test_the_console_scripts_start_and_run_a_command(setup, tmp_path):
    for tool in ("collector", "gate-agent"):
        helped = cli(tool, "--help", process=True)
        assert helped.stdout.startswith(f"Usage: {tool} ")
        assert cli(tool, "--version", process=True).stdout.startswith(f"{tool}, version ")
    listed = cli("collector", "site", "list", "--json", "--config", str(setup.config_path), process=True)
    assert '"site": "S1"' in listed.stdout
    made = cli("gate-agent", "keygen", "--key-file", str(tmp_path / "gate.key"), process=True)
    assert made.stdout.strip() and (tmp_path / "gate.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("tool, args", [
    ("collector", ["site", "list", "--config", "/nonexistent/collector.toml"]),  # exit 1, one line
    ("collector", ["site", "lisst"]),  # a usage error: exit 2
    ("gate-agent", ["status", "--config", "/nonexistent/gate.toml", "--json"]),
    ("gate-agent", ["virtual-card", "--device", "udp:127.0.0.1:9", "\x1b]0;owned\x07"]),  # escaped
    ("collector", ["--help"]),
])
def test_in_process_and_as_a_process_alike(tool, args):
    in_process = cli(tool, *args, check=False)
    as_process = cli(tool, *args, check=False, process=True)
    assert (in_process.returncode, in_process.stdout, in_process.stderr) == (
        as_process.returncode, as_process.stdout, as_process.stderr)


def test_a_command_leaves_the_test_process_as_it_was(setup, tmp_path):
    root = logging.getLogger()
    before = (root.handlers[:], root.level, logging.getLogger("nfc").level, os.getcwd(), dict(os.environ),
              signal.getsignal(signal.SIGTERM))
    environment = {**os.environ, "COLLECTOR_CONFIG": str(setup.config_path)}
    for _ in range(2):  # logging is set up afresh each time, never stacked
        result = cli("collector", "-vv", "site", "list", "--json", env=environment, cwd=tmp_path)
        assert '"site": "S1"' in result.stdout
        missing = cli("collector", "-vv", "site", "list", check=False, cwd=tmp_path)
        assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1, missing.stderr
    after = (root.handlers[:], root.level, logging.getLogger("nfc").level, os.getcwd(), dict(os.environ),
             signal.getsignal(signal.SIGTERM))
    assert after == before


def test_a_bug_fails_the_test_with_its_traceback(setup, monkeypatch):
    def broken(self):
        raise KeyError("max_shift_hours")

    monkeypatch.setattr(Store, "sites", broken)
    with pytest.raises(AssertionError) as failed:
        setup.run("site", "list")
    message = str(failed.value)
    assert "exited 70" in message and "Traceback (most recent call last)" in message and "def broken" not in message
    assert "in broken" in message and "KeyError: 'max_shift_hours'" in message


def test_an_exception_past_the_tools_own_handling_ends_as_pythons_would(monkeypatch):
    def broken(self, ctx, args):
        raise ValueError("parsing broke")

    monkeypatch.setattr(EscapingGroup, "parse_args", broken)
    result = cli("collector", "site", "list", check=False)
    assert result.returncode == 1 and result.stderr.startswith("Traceback (most recent call last)")
    assert result.stderr.rstrip().endswith("ValueError: parsing broke")


def test_a_command_that_hangs_fails_the_test_saying_where():
    alarm = signal.getsignal(signal.SIGALRM)
    device = f"udp:127.0.0.1:{free_port(socket.SOCK_DGRAM)}"  # no reader ever polls this card
    with pytest.raises(AssertionError) as failed:
        cli("gate-agent", "virtual-card", "--device", device, "--timeout", "60", "04A1B2C3", timeout=1)
    assert "did not finish within 1 s" in str(failed.value) and "present_card" in str(failed.value)
    assert signal.getsignal(signal.SIGALRM) == alarm and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
