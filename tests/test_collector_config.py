"""The collector's configuration as both of its services read it."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest

from collector.config import ConfigError, load_config
from tests.helpers import CollectorSetup, cli, start_web, stop_process


def write_deployed_config(setup: CollectorSetup) -> None:
    """As installed at the bank: the daemon's secrets are systemd credentials, named by the variable
    systemd sets for collector.service only."""
    text = setup.config_path.read_text().replace(f'signing_key = "{setup.directory / "bank.key"}"',
                                                 'signing_key = "$CREDENTIALS_DIRECTORY/bank.key"')
    text = text.replace("[mqtt]\n", '[mqtt]\ntls_ca = "/etc/collector/tls/ca.crt"\n'
                                    'tls_cert = "/etc/collector/tls/collector.crt"\n'
                                    'tls_key = "$CREDENTIALS_DIRECTORY/collector.key"\n')
    setup.config_path.write_text(text + '[web.tokens]\n"p8Zt7Yc1eN5uLr2sD6gA0wFk" = "*"\n')


def test_the_web_service_reads_the_daemons_config_without_its_secrets(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    write_deployed_config(setup)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    assert "CREDENTIALS_DIRECTORY" not in os.environ
    config = load_config(setup.config_path)  # loads: the secrets are read when used, by who uses them
    assert config.db == setup.db_path
    # Reading commands and the web service work without the daemon's credentials...
    assert json.loads(cli("collector", "gates", "--json", "--config", str(setup.config_path), env=env).stdout) == []
    process, url = start_web(setup)
    stop_process(process, signal.SIGTERM)
    # ...and whoever needs a secret gets one line naming the key.
    result = cli("collector", "run", "--config", str(setup.config_path), check=False, env=env)
    assert result.returncode == 1 and "signing_key" in result.stderr and "CREDENTIALS_DIRECTORY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("collector", "bank-key", "--config", str(setup.config_path), check=False, env=env)
    assert result.returncode == 1 and "names an environment variable that is not set" in result.stderr


def test_mistakes_in_the_daemons_sections_are_still_refused_when_it_starts(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    setup.config_path.write_text(setup.config_path.read_text().replace("[mqtt]\n", "[mqtt]\nhots = \"x\"\n"))
    result = cli("collector", "run", "--config", str(setup.config_path), check=False)
    assert result.returncode == 1 and "mqtt.hots: unknown key" in result.stderr


def test_database_bounds_are_validated(tmp_path):
    path = tmp_path / "collector.toml"
    for table, problem in [("lock_timeout_seconds = 4", "must be below .cluster. lease_seconds"),
                           ("lock_timeout_seconds = 0", "lock_timeout_seconds"),
                           ("idle_in_transaction_timeout_seconds = 0.5", "idle_in_transaction_timeout_seconds"),
                           ("statement_timeout_seconds = nan", "statement_timeout_seconds"),
                           ('statement_timeout_seconds = "60"', "statement_timeout_seconds"),
                           ("lock_timeout = 1", "lock_timeout")]:
        path.write_text(f'db = "postgresql://u@h/d"\n[cluster]\nlease_seconds = 4\n[database]\n{table}\n')
        with pytest.raises(ConfigError, match=problem):
            load_config(path)
    path.write_text('db = "postgresql://u@h/d"\n[cluster]\nlease_seconds = 4\n[database]\nlock_timeout_seconds = 3.5\n')
    assert load_config(path).timeouts(daemon=True).lock == 3.5


def test_evidence_limits_are_read_and_validated(tmp_path):
    path = tmp_path / "collector.toml"
    path.write_text('db = "c.sqlite3"\n')
    config = load_config(path)
    assert config.evidence_limits.builds_per_day == 10 and config.evidence_limits.stored_bytes == 50 * 1024 * 1024
    assert config.evidence_limits.max_days == 366 and config.evidence_limits.max_segment_punches == 50_000
    assert config.evidence_memory_megabytes == 1024 and config.evidence_build_seconds == 300
    path.write_text('db = "c.sqlite3"\n[evidence]\nbuilds_per_day = 3\nstored_megabytes = 5\nmax_days = 31\n'
                    'max_segment_punches = 1000\nmemory_megabytes = 256\nbuild_seconds = 60\n')
    config = load_config(path)
    assert (config.evidence_limits.builds_per_day, config.evidence_limits.stored_bytes, config.evidence_limits.max_days,
            config.evidence_limits.max_segment_punches) == (3, 5 * 1024 * 1024, 31, 1000)
    assert (config.evidence_memory_megabytes, config.evidence_build_seconds) == (256, 60)
    for line, problem in [("builds_per_day = 0", "builds_per_day"), ("max_days = 367", "max_days"),
                          ("memory_megabytes = 16", "memory_megabytes"),
                          ("build_seconds = 600", "build_seconds"),  # another process could take the claim over
                          ('stored_megabytes = "50"', "stored_megabytes"), ("builds = 3", "builds")]:
        path.write_text(f'db = "c.sqlite3"\n[evidence]\n{line}\n')
        with pytest.raises(ConfigError, match=problem):
            load_config(path)


def test_how_often_the_daemon_computes_the_banks_figures(tmp_path):
    path = tmp_path / "collector.toml"
    path.write_text('db = "c.sqlite3"\n')
    assert load_config(path).figures_refresh_seconds == 300
    path.write_text('db = "c.sqlite3"\n[figures]\nrefresh_seconds = 60\n')
    assert load_config(path).figures_refresh_seconds == 60
    for line, problem in [("refresh_seconds = 5", "refresh_seconds"), ('refresh_seconds = "60"', "refresh_seconds"),
                          ("refresh_seconds = 100000", "refresh_seconds"), ("refresh = 60", "refresh")]:
        path.write_text(f'db = "c.sqlite3"\n[figures]\n{line}\n')
        with pytest.raises(ConfigError, match=problem):
            load_config(path)
