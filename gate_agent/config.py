"""The gate agent's TOML configuration.

```toml
site = "S1"
gate = "north"
reader = "usb"                 # usb, usb:072f:2200, tty:AMA0:pn532, udp:127.0.0.1:54321
direction = "in"               # in / out / toggle
data_dir = "/var/lib/gate-agent"
key_file = "/etc/gate-agent/gate.key"
bank_key = "/etc/gate-agent/tls/bank.pub"   # or "ed25519:..." inline: the only key acks, rosters
                                            # and commands may be signed with
card_key_file = "/etc/gate-agent/card.key"  # optional: the bank card key (0600); without it bank
                                            # cards are not read (docs/cards.md)
read_sun = true                # read NTAG 424 DNA SUN messages from ISO-DEP cards
debounce_seconds = 60
heartbeat_seconds = 30
retention_days = 30

[mqtt]
host = "bank.example"
port = 8883
tls_ca = "ca.crt"
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .configfile import ConfigError, Table
from .mqtt import MqttSettings
from .protocol import DIRECTIONS, BankKeys, parse_bank_keys, valid_id
from .reader import DEFAULT_TECHNOLOGIES, SUPPORTED_TECHNOLOGIES

__all__ = ["ConfigError", "GateConfig", "FeedbackConfig", "load_config"]


@dataclass(frozen=True, slots=True)
class FeedbackConfig:
    reader: bool = True  # the reader's own LED/buzzer where nfcpy drives it (ACR122U)
    gpio_green: int | None = None
    gpio_red: int | None = None
    gpio_buzzer: int | None = None

    @property
    def gpio(self) -> bool:
        return any(pin is not None for pin in (self.gpio_green, self.gpio_red, self.gpio_buzzer))


@dataclass(frozen=True, slots=True)
class GateConfig:
    site: str
    gate: str
    reader: str
    direction: str
    data_dir: Path
    key_file: Path
    mqtt: MqttSettings
    bank_keys: BankKeys = field(default_factory=dict)  # key id -> the bank's public key, pinned at enrolment
    technologies: tuple[str, ...] = DEFAULT_TECHNOLOGIES
    debounce_seconds: float = 60.0
    heartbeat_seconds: float = 30.0
    retention_days: float = 30.0
    ack_timeout_seconds: float = 30.0
    ack_backoff_max_seconds: float = 600.0  # the pause between resends doubles up to this
    batch_size: int = 200
    window: int = 2000
    max_buffer_mb: float = 512.0
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    source: Path | None = None
    card_key_file: Path | None = None  # the bank card key (gate_agent.emv): bank cards are read only with it
    read_sun: bool = True


#: 1 TiB: more than any SD card or SSD a gate has.
MAX_BUFFER_MB = 1024 * 1024


def _reader_path(value: str) -> bool:
    # Every punch names its reader, and a punch is ASCII (gate_agent.protocol: version 3), 1-64 characters.
    if not (value.isascii() and value.isprintable() and 1 <= len(value) <= 64):
        return False
    kind = value.split(":")[0]
    if kind == "usb":
        return True
    if kind in ("tty", "com"):
        return len(value.split(":")) == 3
    if kind == "udp":
        parts = value.split(":")
        return len(parts) == 3 and parts[2].isdigit()
    return False


def _bank_keys(table: Table) -> BankKeys:
    """The bank's public key(s), inline (``ed25519:...``) or in a file (``gate enroll`` writes bank.pub):
    acks, rosters and commands signed by anything else are ignored, whoever reaches the broker."""
    value = table.raw("bank_key")
    if isinstance(value, str) and value.strip().startswith("ed25519:"):
        text = value
    else:
        path = table.path("bank_key")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise table.error("bank_key", f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        return parse_bank_keys(text)
    except ValueError as error:
        raise table.error("bank_key", str(error)) from None


def load_config(path: str | os.PathLike) -> GateConfig:
    table = Table.load(path)
    site = table.str("site", check=valid_id, hint="letters, digits, '_', '.', '-'")
    gate = table.str("gate", check=valid_id, hint="letters, digits, '_', '.', '-'")
    reader = table.str("reader", "usb", check=_reader_path,
                       hint="usb, usb:VID:PID, tty:PORT:DRIVER (tty:AMA0:pn532) or udp:HOST:PORT")
    direction = table.choice("direction", DIRECTIONS)
    state_dir = os.environ.get("STATE_DIRECTORY", "/var/lib/gate-agent").split(":")[0]
    data_dir = table.path("data_dir", None) or Path(state_dir)
    key_file = table.path("key_file")
    bank_keys = _bank_keys(table)
    mqtt_table = table.table("mqtt")
    mqtt = MqttSettings.from_table(mqtt_table, default_client_id=f"gate-{site}-{gate}")
    feedback_table = table.table("feedback")
    pins = {f"gpio_{colour}": feedback_table.int(f"gpio_{colour}", None, minimum=0, maximum=27)
            for colour in ("green", "red", "buzzer")}
    feedback = FeedbackConfig(reader=feedback_table.bool("reader", True), **pins)
    config = GateConfig(
        site=site, gate=gate, reader=reader, direction=direction, data_dir=data_dir, key_file=key_file,
        mqtt=mqtt, bank_keys=bank_keys,
        technologies=tuple(table.list_of_str("technologies", list(DEFAULT_TECHNOLOGIES),
                                             options=SUPPORTED_TECHNOLOGIES)),
        debounce_seconds=table.number("debounce_seconds", 60, minimum=0, maximum=86400),
        heartbeat_seconds=table.number("heartbeat_seconds", 30, minimum=1, maximum=3600),
        retention_days=table.number("retention_days", 30, minimum=0, maximum=3650),
        ack_timeout_seconds=table.number("ack_timeout_seconds", 30, minimum=1, maximum=3600),
        ack_backoff_max_seconds=table.number("ack_backoff_max_seconds", 600, minimum=1, maximum=86400),
        batch_size=table.int("batch_size", 200, minimum=1, maximum=500),
        window=table.int("window", 2000, minimum=1, maximum=100_000),
        max_buffer_mb=table.number("max_buffer_mb", 512, minimum=1, maximum=MAX_BUFFER_MB),
        feedback=feedback,
        source=Path(path),
        card_key_file=table.path("card_key_file", None),
        read_sun=table.bool("read_sun", True),
    )
    table.finish()
    if config.ack_backoff_max_seconds < config.ack_timeout_seconds:
        raise ConfigError(f"{path}: ack_backoff_max_seconds: {config.ack_backoff_max_seconds:g} is shorter than "
                          f"ack_timeout_seconds {config.ack_timeout_seconds:g}")
    if config.batch_size > config.window:
        raise ConfigError(f"{path}: batch_size: {config.batch_size} is larger than window {config.window}")
    return config
