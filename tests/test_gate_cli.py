"""gate-agent keygen, status and readers."""

from __future__ import annotations

import json
import stat

import pytest

from gate_agent.keys import KeyFileError, load_private_key
from gate_agent.protocol import parse_public_key, public_key_text
from tests.helpers import cli


def test_keygen_writes_a_private_key_0600_and_prints_the_public_key_last(tmp_path):
    key_file = tmp_path / "gate.key"
    result = cli("gate-agent", "keygen", "--key-file", str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line == public_key_text(load_private_key(key_file).public_key())
    parse_public_key(last_line)


def test_keygen_refuses_to_overwrite(tmp_path):
    key_file = tmp_path / "gate.key"
    cli("gate-agent", "keygen", "--key-file", str(key_file))
    before = key_file.read_bytes()
    result = cli("gate-agent", "keygen", "--key-file", str(key_file), check=False)
    assert result.returncode != 0 and "refusing to overwrite" in result.stderr
    assert key_file.read_bytes() == before


def test_a_world_readable_key_is_refused(tmp_path):
    key_file = tmp_path / "gate.key"
    cli("gate-agent", "keygen", "--key-file", str(key_file))
    key_file.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(key_file)


def test_status_before_the_agent_ever_ran(gate):
    result = cli("gate-agent", "status", "--config", str(gate.config_path), "--json", check=False)
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_status_json_keys(gate):
    from gate_agent.outbox import Outbox

    Outbox(gate.data_dir, gate.site, gate.gate).close()
    facts = json.loads(cli("gate-agent", "status", "--config", str(gate.config_path), "--json").stdout)
    assert {"last_seq", "pending", "acked_seq", "oldest_pending_at"} <= set(facts)
    assert (facts["last_seq"], facts["pending"], facts["acked_seq"], facts["oldest_pending_at"]) == (0, 0, 0, None)
    text = cli("gate-agent", "status", "--config", str(gate.config_path)).stdout
    assert "last seq 0" in text and "no roster received yet" in text


def test_readers_lists_what_it_finds_as_json():
    result = cli("gate-agent", "readers", "--json", check=False)
    found = json.loads(result.stdout)
    assert isinstance(found, list)
    assert all({"path", "name", "node", "usable", "hint"} <= set(entry) for entry in found)
