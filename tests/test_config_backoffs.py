"""The pauses after a failure (reaching the broker again, resending what stays unacknowledged, retrying a
database write) are settings with production defaults, refused with one line when out of range."""

from __future__ import annotations

import pytest

from collector.config import load_config as load_collector_config
from gate_agent.config import load_config as load_gate_config
from gate_agent.configfile import ConfigError

GATE = """
site = "S1"
gate = "north"
reader = "udp:127.0.0.1:9"
direction = "in"
data_dir = "data"
key_file = "gate.key"
bank_key = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
{gate}
[mqtt]
host = "bank.example"
{mqtt}
"""

COLLECTOR = """
db = "collector.sqlite3"
[mqtt]
host = "127.0.0.1"
{mqtt}
[ingest]
{ingest}
"""


def gate_config(tmp_path, gate: str = "", mqtt: str = ""):
    path = tmp_path / "gate.toml"
    path.write_text(GATE.format(gate=gate, mqtt=mqtt))
    return load_gate_config(path)


def collector_config(tmp_path, ingest: str = "", mqtt: str = ""):
    path = tmp_path / "collector.toml"
    path.write_text(COLLECTOR.format(ingest=ingest, mqtt=mqtt))
    config = load_collector_config(path)
    config.mqtt  # noqa: B018 - the [mqtt] table is read when first used
    return config


def test_the_defaults_are_the_production_pauses(tmp_path):
    gate = gate_config(tmp_path)
    assert (gate.ack_timeout_seconds, gate.ack_backoff_max_seconds, gate.mqtt.reconnect_max_seconds) == (30, 600, 30)
    collector = collector_config(tmp_path)
    assert (collector.write_retry_max_seconds, collector.mqtt.reconnect_max_seconds) == (30, 30)


def test_short_pauses_are_taken(tmp_path):
    gate = gate_config(tmp_path, "ack_timeout_seconds = 2\nack_backoff_max_seconds = 4", "reconnect_max_seconds = 1")
    assert (gate.ack_backoff_max_seconds, gate.mqtt.reconnect_max_seconds) == (4, 1)
    collector = collector_config(tmp_path, "write_retry_max_seconds = 0.5", "reconnect_max_seconds = 2.5")
    assert (collector.write_retry_max_seconds, collector.mqtt.reconnect_max_seconds) == (0.5, 2.5)


@pytest.mark.parametrize(("gate", "mqtt", "expected"), [
    ("ack_backoff_max_seconds = 0", "", "ack_backoff_max_seconds"),
    ("ack_backoff_max_seconds = nan", "", "ack_backoff_max_seconds"),
    ("ack_backoff_max_seconds = 86401", "", "ack_backoff_max_seconds"),
    ('ack_backoff_max_seconds = "soon"', "", "ack_backoff_max_seconds"),
    ("ack_timeout_seconds = 60\nack_backoff_max_seconds = 30", "", "shorter than ack_timeout_seconds 60"),
    ("", "reconnect_max_seconds = 0.5", "mqtt.reconnect_max_seconds"),
    ("", "reconnect_max_seconds = inf", "mqtt.reconnect_max_seconds"),
    ("", "reconnect_max_seconds = 3601", "mqtt.reconnect_max_seconds"),
])
def test_a_gate_refuses_pauses_out_of_range(tmp_path, gate, mqtt, expected):
    with pytest.raises(ConfigError) as error:
        gate_config(tmp_path, gate, mqtt)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("ingest", "mqtt", "expected"), [
    ("write_retry_max_seconds = 0.1", "", "ingest.write_retry_max_seconds"),
    ("write_retry_max_seconds = -nan", "", "ingest.write_retry_max_seconds"),
    ("write_retry_max_seconds = 3601", "", "ingest.write_retry_max_seconds"),
    ("", "reconnect_max_seconds = 0", "mqtt.reconnect_max_seconds"),
    ("", 'reconnect_max_seconds = "1"', "mqtt.reconnect_max_seconds"),
])
def test_a_collector_refuses_pauses_out_of_range(tmp_path, ingest, mqtt, expected):
    with pytest.raises(ConfigError) as error:
        collector_config(tmp_path, ingest, mqtt)
    assert expected in str(error.value) and "\n" not in str(error.value)
