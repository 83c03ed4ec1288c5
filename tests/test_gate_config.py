"""The gate's TOML config: defaults, and one clear line for each mistake."""

from __future__ import annotations

import pytest

from gate_agent.config import load_config
from gate_agent.configfile import ConfigError
from gate_agent.protocol import key_id
from tests.helpers import cli

GOOD = """
site = "S1"
gate = "north"
reader = "tty:AMA0:pn532"
direction = "toggle"
data_dir = "data"
key_file = "gate.key"
bank_key = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
[mqtt]
host = "bank.example"
"""


def write(tmp_path, text):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.reader == "tty:AMA0:pn532" and config.direction == "toggle"
    assert config.data_dir == tmp_path / "data" and config.key_file == tmp_path / "gate.key"
    assert (config.debounce_seconds, config.heartbeat_seconds, config.retention_days) == (60, 30, 30)
    assert config.mqtt.host == "bank.example" and config.mqtt.port == 1883
    assert config.mqtt.client_id == "gate-S1-north"
    assert config.technologies == ("106A", "106B", "212F")
    assert not config.feedback.gpio and config.feedback.reader


def test_gpio_pins_tls_and_password_file(tmp_path):
    for name in ("ca.crt", "gate.crt", "gate.key.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "password").write_text("s3cret\n")
    for secret in ("gate.key.pem", "password"):
        (tmp_path / secret).chmod(0o600)
    config = load_config(write(tmp_path, GOOD + """
tls_ca = "ca.crt"
tls_cert = "gate.crt"
tls_key = "gate.key.pem"
username = "north"
password_file = "password"
[feedback]
gpio_green = 17
gpio_red = 27
gpio_buzzer = 22
"""))
    assert config.mqtt.port == 8883 and config.mqtt.tls_ca == str(tmp_path / "ca.crt")
    assert config.mqtt.password == "s3cret"
    assert (config.feedback.gpio_green, config.feedback.gpio_red, config.feedback.gpio_buzzer) == (17, 27, 22)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('site = "S1"', ""), "site: missing (required)"),
    (lambda t: t.replace('"S1"', '"S/1"'), "site: 'S/1' is not valid"),
    (lambda t: t.replace('"toggle"', '"sideways"'), "direction: 'sideways' is not one of in, out, toggle"),
    (lambda t: t.replace('"tty:AMA0:pn532"', '"serial"'), "reader: 'serial' is not valid"),
    (lambda t: t.replace("[mqtt]", "debounce_seconds = -1\n[mqtt]"),
     "debounce_seconds: -1.0 is below the minimum 0"),
    (lambda t: t.replace('[mqtt]', 'heartbeat_seconds = "often"\n[mqtt]'), "heartbeat_seconds: must be a number"),
    (lambda t: t.replace('[mqtt]', 'debounce_secnds = 5\n[mqtt]'), "debounce_secnds: unknown key"),
    (lambda t: t + 'port = 99999\n', "mqtt.port: 99999 is above the maximum 65535"),
    (lambda t: t + 'tls_cert = "x.crt"\n', "mqtt.tls_key: tls_cert and tls_key go together"),
    (lambda t: t + 'tls_ca = "missing.crt"\n', "mqtt.tls_ca: "),
    (lambda t: t + 'password_file = "nope"\nusername = "u"\n', "mqtt.password_file: cannot read"),
    (lambda t: t + '[feedback]\ngpio_green = 99\n', "feedback.gpio_green: 99 is above the maximum 27"),
    (lambda t: t.replace('[mqtt]', 'technologies = ["106A", "NFC-Z"]\n[mqtt]'), "technologies: 'NFC-Z' is not one of"),
    (lambda t: t.replace('key_file = "gate.key"', 'key_file = "$NO_SUCH_VARIABLE/gate.key"'), "names an environment variable"),
    (lambda t: "site = ", "not valid TOML"),
    (lambda t: t.replace('bank_key = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="', ""),
     "bank_key: missing (required)"),
    (lambda t: t.replace("ed25519:11qYAYKxCrfVS", "ed25519:!!"), "bank_key: public key is not 32 bytes"),
    (lambda t: t.replace('"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="', '"bank.pub"'),
     "bank_key: cannot read"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, change, message):
    path = write(tmp_path, change(GOOD))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert message in text and "\n" not in text and str(path) in text


def test_the_bank_key_comes_inline_or_from_the_file_enrolment_wrote(tmp_path):
    inline = load_config(write(tmp_path, GOOD))
    assert list(inline.bank_keys) == [key_id("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")]
    (tmp_path / "bank.pub").write_text("# the bank's key\ned25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n")
    from_file = load_config(write(tmp_path, GOOD.replace(
        '"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="', '"bank.pub"')))
    assert from_file.bank_keys.keys() == inline.bank_keys.keys() and len(from_file.bank_keys) == 1
    (tmp_path / "bank.pub").write_text("# empty\n")
    with pytest.raises(ConfigError, match="bank_key: no ed25519"):
        load_config(tmp_path / "gate.toml")


def test_run_refuses_a_bad_config_with_one_line(tmp_path):
    path = write(tmp_path, GOOD.replace('"toggle"', '"up"'))
    result = cli("gate-agent", "run", "--config", str(path), check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "direction" in errors[0] and "'up'" in errors[0]


def test_run_refuses_a_missing_key_file(tmp_path):
    path = write(tmp_path, GOOD.replace('"tty:AMA0:pn532"', '"udp:127.0.0.1:9"'))
    result = cli("gate-agent", "run", "--config", str(path), check=False)
    assert result.returncode != 0 and "cannot read signing key" in result.stderr
