"""Configuration from a careless or hostile hand: non-finite numbers, secret files other users can read,
and web tokens anyone could guess are refused at start with one line naming the key."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from collector.config import load_config as load_collector_config
from gate_agent.configfile import ConfigError
from gate_agent.keys import KeyFileError, generate_key_file, load_private_key
from tests.helpers import BANK_PUBLIC, BIN, cli

GATE = """site = "S1"
gate = "north"
reader = "udp:127.0.0.1:9"
direction = "in"
data_dir = "data"
key_file = "gate.key"
bank_key = "{bank}"
{top}
[mqtt]
host = "127.0.0.1"
{mqtt}
"""


def gate_config(tmp_path: Path, top: str = "", mqtt: str = "") -> Path:
    if not (tmp_path / "gate.key").exists():
        generate_key_file(tmp_path / "gate.key")
    path = tmp_path / "gate.toml"
    path.write_text(GATE.format(top=top, mqtt=mqtt, bank=BANK_PUBLIC))
    return path


def collector_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'db = "{tmp_path / "collector.sqlite3"}"\n' + text)
    return path


def one_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def secret_file(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("line", ["heartbeat_seconds = nan", "retention_days = inf", "debounce_seconds = -inf",
                                  "ack_timeout_seconds = nan", "max_buffer_mb = inf", "retention_days = +nan"])
def test_the_gate_refuses_non_finite_numbers(tmp_path, line):
    path = gate_config(tmp_path, top=line)
    key = line.split()[0]
    # `run` is what spun a core (heartbeat nan) or lost its link thread (retention nan): it must not start.
    one_line(cli("gate-agent", "run", "--config", str(path), check=False, timeout=30),
             str(path), f"{key}: must be a finite number")


@pytest.mark.parametrize("table, line", [("attendance", "final_grace_hours = nan"),
                                         ("ingest", "gap_wait_seconds = inf"),
                                         ("ingest", "future_tolerance_seconds = inf"),
                                         ("ingest", "backwards_tolerance_seconds = -nan"),
                                         ("ingest", "resend_interval_seconds = nan"),
                                         ("ingest", "roster_interval_seconds = -inf")])
def test_the_collector_refuses_non_finite_numbers(tmp_path, table, line):
    path = collector_config(tmp_path, f"[{table}]\n{line}\n[web.tokens]\n"
                                      f'"{secrets.token_urlsafe(18)}" = "*"\n')
    key = line.split()[0]
    for command in (["serve"], ["counters"]):
        one_line(cli("collector", *command, "--config", str(path), check=False, timeout=30),
                 str(path), f"{table}.{key}: must be a finite number")


# ---------------------------------------------------------------------------------------------- upper bounds

HUGE = {"number": "1e300", "int": str(2**63 - 1)}  # finite, and valid TOML


@pytest.mark.parametrize("key", ["future_tolerance_seconds", "backwards_tolerance_seconds"])
def test_the_collector_refuses_huge_tolerances_at_start(tmp_path, key):
    from tests.helpers import write_bank_key

    # What overflowed a timedelta in `collector run`, past the config check, with a traceback.
    path = collector_config(tmp_path, f'signing_key = "{write_bank_key(tmp_path / "bank.key")}"\n'
                                      f"[mqtt]\nport = 1\n[ingest]\n{key} = {HUGE['number']}\n"
                                      f'[web.tokens]\n"{secrets.token_urlsafe(18)}" = "*"\n')
    for command in ("run", "serve"):
        one_line(cli("collector", command, "--config", str(path), check=False, timeout=30),
                 str(path), f"ingest.{key}: 1e+300 is above the maximum")


def test_the_gate_refuses_a_huge_buffer_at_start(tmp_path):
    path = gate_config(tmp_path, top=f"max_buffer_mb = {HUGE['number']}", mqtt="port = 1")
    one_line(cli("gate-agent", "run", "--config", str(path), check=False, timeout=30),
             str(path), "max_buffer_mb: 1e+300 is above the maximum")


def numeric_keys(load, path: Path, monkeypatch) -> dict[str, str]:
    """Every number the loader reads from a config (defaults included): key -> "number" or "int"."""
    from gate_agent.configfile import Table

    found = {}

    def spying(kind: str):
        read = getattr(Table, kind)

        def spy(self, key, *args, **kwargs):
            found[self._prefix + key] = kind
            return read(self, key, *args, **kwargs)
        return spy

    for kind in ("number", "int"):
        monkeypatch.setattr(Table, kind, spying(kind))
    assert load(path).mqtt is not None  # the collector reads its [mqtt] table when it is first used
    monkeypatch.undo()
    return found


def with_value(key: str, value: str) -> tuple[str, str]:
    """A line for ``key`` in the top level or its table: (top-level text, [mqtt] text)."""
    table, _, name = key.rpartition(".")
    if table == "mqtt":
        return "", f"{name} = {value}"
    return (f"[{table}]\n" if table else "") + f"{name} = {value}", ""


def test_every_number_in_the_gate_config_has_a_maximum(tmp_path, monkeypatch):
    from gate_agent.config import load_config

    keys = numeric_keys(load_config, gate_config(tmp_path), monkeypatch)
    assert {"max_buffer_mb", "heartbeat_seconds", "window", "mqtt.port", "feedback.gpio_red"} <= set(keys)
    for key, kind in keys.items():
        top, mqtt = with_value(key, HUGE[kind])
        with pytest.raises(ConfigError) as raised:
            load_config(gate_config(tmp_path, top=top, mqtt=mqtt))
        assert f": {key}: {HUGE[kind] if kind == 'int' else '1e+300'} is above the maximum" in str(raised.value)
        assert "\n" not in str(raised.value)


def test_every_number_in_the_collector_config_has_a_maximum(tmp_path, monkeypatch):
    from tests.helpers import write_bank_key

    signing = f'signing_key = "{write_bank_key(tmp_path / "bank.key")}"\n'
    keys = numeric_keys(load_collector_config, collector_config(tmp_path, signing), monkeypatch)
    assert {"ingest.future_tolerance_seconds", "attendance.final_grace_hours", "web.port", "mqtt.keepalive"} <= set(keys)
    for key, kind in keys.items():
        top, mqtt = with_value(key, HUGE[kind])
        path = collector_config(tmp_path, signing + top + "\n" + (f"[mqtt]\n{mqtt}\n" if mqtt else ""))
        with pytest.raises(ConfigError) as raised:
            assert load_collector_config(path).mqtt is None  # [mqtt] is read when first used
        assert f": {key}: {HUGE[kind] if kind == 'int' else '1e+300'} is above the maximum" in str(raised.value)
        assert "\n" not in str(raised.value)


# ---------------------------------------------------------------------------------------------- secret files


def test_the_signing_key_check_is_skipped_only_inside_the_credentials_directory(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    outside, inside = tmp_path / "gate.key", credentials / "gate.key"
    for path in (outside, inside):
        generate_key_file(path)
        path.chmod(0o644)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KeyFileError, match=f"chmod 600 {re.escape(str(outside))}"):
        load_private_key(outside)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    # The variable is set (an admin shell's alias sets it), but this key is not in that directory.
    with pytest.raises(KeyFileError, match=f"chmod 600 {re.escape(str(outside))}"):
        load_private_key(outside)
    load_private_key(inside)  # systemd's credential: the service's own copy
    # A link in the credentials directory to a key elsewhere is judged by where the key is.
    (credentials / "linked.key").symlink_to(outside)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(credentials / "linked.key")


def test_gate_export_refuses_a_readable_key_whatever_credentials_directory_says(tmp_path):
    path = gate_config(tmp_path)
    (tmp_path / "gate.key").chmod(0o640)
    (tmp_path / "credentials").mkdir()
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "credentials")}
    one_line(cli("gate-agent", "export", "--config", str(path), "--out", str(tmp_path / "b.bundle"), check=False,
                 env=env), f"chmod 600 {tmp_path / 'gate.key'}", "mode 640")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=oct)
def test_gate_password_file_and_tls_key_must_be_private(tmp_path, mode):
    secret_file(tmp_path / "mqtt.password", "s3cret\n", mode)
    path = gate_config(tmp_path, mqtt='username = "north"\npassword_file = "mqtt.password"')
    one_line(cli("gate-agent", "run", "--config", str(path), check=False, timeout=30),
             f"mqtt.password_file: {tmp_path / 'mqtt.password'}", f"chmod 600 {tmp_path / 'mqtt.password'}")
    (tmp_path / "mqtt.password").chmod(0o600)
    for name in ("ca.crt", "gate.crt"):
        (tmp_path / name).write_text("x")
    secret_file(tmp_path / "gate-tls.key", "x", mode)
    path = gate_config(tmp_path, mqtt='tls_ca = "ca.crt"\ntls_cert = "gate.crt"\ntls_key = "gate-tls.key"')
    one_line(cli("gate-agent", "run", "--config", str(path), check=False, timeout=30),
             "mqtt.tls_key: ", f"chmod 600 {tmp_path / 'gate-tls.key'}")


def test_secrets_in_the_credentials_directory_are_systemds_business(tmp_path, monkeypatch):
    from gate_agent.config import load_config

    credentials = tmp_path / "credentials"
    secret_file(credentials / "mqtt.password", "s3cret\n", 0o440)
    path = gate_config(tmp_path, mqtt='username = "north"\npassword_file = "$CREDENTIALS_DIRECTORY/mqtt.password"')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_config(path).mqtt.password == "s3cret"


def test_the_collector_tls_key_must_be_private(tmp_path):
    from tests.helpers import write_bank_key

    pki = tmp_path / "pki"
    cli("collector", "ca", "init", "--dir", str(pki))
    (pki / "collector.key").chmod(0o644)
    path = collector_config(tmp_path, f'signing_key = "{write_bank_key(tmp_path / "bank.key")}"\n'
                                      f'[mqtt]\ntls_ca = "{pki / "ca.crt"}"\ntls_cert = "{pki / "collector.crt"}"\n'
                                      f'tls_key = "{pki / "collector.key"}"\n')
    # The daemon is what reads the key (the dashboard, reading the same file, never touches it).
    one_line(cli("collector", "run", "--config", str(path), check=False, timeout=30),
             "mqtt.tls_key: ", f"chmod 600 {pki / 'collector.key'}")
    (pki / "collector.key").chmod(0o600)
    assert load_collector_config(path).mqtt.tls_key == str(pki / "collector.key")


# ---------------------------------------------------------------------------------------------- web tokens


@pytest.mark.parametrize("token", ["aaaaaaaaaaaaaaaa", "1234567890123456", "passwordpassword",
                                   "abcdefghijklmnopqrstuvwxyz", "abcabcabcabcabcabcabc", "qwertyqwertyqwerty"])
def test_guessable_tokens_are_refused_showing_only_their_start(tmp_path, token):
    path = collector_config(tmp_path, f'[web.tokens]\n"{token}" = "S1"\n')
    line = one_line(subprocess.run([str(BIN / "collector"), "serve", "--config", str(path)], capture_output=True,
                                   text=True, timeout=30), f"web.tokens.{token[:4]}...: too easy to guess")
    assert token not in line


def test_random_tokens_and_the_documented_examples_are_accepted(tmp_path):
    root = Path(__file__).parent.parent
    docs = "\n".join(path.read_text() for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    documented = re.findall(r'^"([^"]+)" = "(?:\*|[A-Za-z0-9_.-]+)"', docs, re.MULTILINE)
    assert len(documented) >= 3
    tokens = documented + [secrets.token_urlsafe(18) for _ in range(50)] + [secrets.token_hex(16)]
    text = "[web.tokens]\n" + "".join(f'"{token}" = "*"\n' for token in tokens)
    assert set(load_collector_config(collector_config(tmp_path, text)).web_tokens) == set(tokens)


@pytest.mark.parametrize("hours", ["nan", "inf", "-inf", "-1", "0", "1000"])
def test_a_site_refuses_a_shift_limit_that_is_not_a_number_of_hours(tmp_path, hours):
    path = collector_config(tmp_path, "")
    one_line(cli("collector", "site", "add", "S1", "--timezone", "UTC", "--max-shift-hours", hours,
                 "--config", str(path), check=False), "max_shift_hours must be a number of hours")
    assert cli("collector", "site", "add", "S1", "--timezone", "UTC", "--max-shift-hours", "12",
               "--config", str(path)).returncode == 0
