"""NTAG 424 DNA cards at the bank: provisioning what a card writer needs, and checking each punch's SUN
message (docs/cards.md). The bank alone holds the master key; every card key is diversified from it
(gate_agent.ntag424, AN10922), so a card's keys are never stored anywhere but on the card and in the
writer's provisioning file.
"""

from __future__ import annotations

import logging
import os

from collector.errors import InputError
from gate_agent.ntag424 import (
    KEY_APP_MASTER,
    KEY_FILE_READ,
    KEY_META_READ,
    SunError,
    card_key,
    check_sun,
)

log = logging.getLogger(__name__)

PROVISIONING_FORMAT = "site-gate-ntag424-card"
MASTER_KEY_BYTES = 16
#: The NDEF file and its number on an NTAG 424 DNA.
NDEF_FILE_ID, NDEF_FILE_NUMBER = "E104", 2
#: Flags a punch gets here; neither ever counts as presence.
FORGED, REPLAY, UNVERIFIED = "card_forged", "card_replay", "card_unverified"


def new_master_key_text() -> str:
    return ("# NTAG 424 DNA master key (AES-128): every card key is diversified from it. The bank's alone: mode 0600.\n"
            + os.urandom(MASTER_KEY_BYTES).hex() + "\n")


def parse_master_key(text: str) -> bytes:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise InputError("a master key file holds one line of hex")
    try:
        key = bytes.fromhex(lines[0])
    except ValueError:
        raise InputError("the master key is not hex") from None
    if len(key) != MASTER_KEY_BYTES:
        raise InputError(f"the master key is {len(key)} bytes, not {MASTER_KEY_BYTES}")
    return key


def _ndef_url_file(url_base: str) -> tuple[bytes, int, int]:
    """The NDEF file (NLEN, one URI record) with zero placeholders, and the PICC data and MAC offsets."""
    prefix_code, rest = (0x04, url_base[8:]) if url_base.startswith("https://") else \
        (0x03, url_base[7:]) if url_base.startswith("http://") else (None, "")
    if prefix_code is None:
        raise InputError("the URL must start with https:// or http://")
    joiner = "&" if "?" in rest else "?"
    before = f"{rest}{joiner}e="
    uri = f"{before}{'0' * 32}&c={'0' * 16}"
    payload = bytes([prefix_code]) + uri.encode("ascii")
    if len(payload) > 250:
        raise InputError("the URL is too long for a short NDEF record")
    record = bytes([0xD1, 0x01, len(payload), 0x55]) + payload
    content = len(record).to_bytes(2, "big") + record
    picc_offset = 2 + 4 + 1 + len(before)
    mac_offset = picc_offset + 32 + len("&c=")
    return content, picc_offset, mac_offset


def provisioning(master: bytes, uid: str, url_base: str) -> dict:
    """What a card writer needs to set up the card ``uid`` (hex, 7 bytes): its five keys, the NDEF file
    content, the file settings that turn on SUN, and the URL template."""
    raw = bytes.fromhex(uid)
    if len(raw) != 7:
        raise InputError("NTAG 424 DNA UIDs are 7 bytes")
    content, picc_offset, mac_offset = _ndef_url_file(url_base)
    keys = {str(number): card_key(master, raw, number).hex() for number in range(5)}
    return {
        "format": PROVISIONING_FORMAT, "version": 1, "uid": uid.upper(),
        "keys": keys,
        "key_roles": {str(KEY_APP_MASTER): "application master (change keys and file settings)",
                      str(KEY_META_READ): "SDM meta read (PICC data encryption; the same on every card)",
                      str(KEY_FILE_READ): "SDM file read (SUN MAC; this card's own)",
                      "3": "unused (changed from the factory key)", "4": "unused (changed from the factory key)"},
        "ndef_file": {"file_id": NDEF_FILE_ID, "file_number": NDEF_FILE_NUMBER, "content": content.hex()},
        "file_settings": {
            "file_option": "40 (SDM and mirroring enabled, plain communication)",
            "access_rights": {"read": "E (free)", "write": "0", "read_write": "0", "change": "0"},
            "sdm_options": "C1 (UID mirror, SDMReadCtr mirror, ASCII encoding)",
            "sdm_access_rights": {"meta_read": str(KEY_META_READ), "file_read": str(KEY_FILE_READ),
                                  "counter_retrieval": str(KEY_META_READ)},
            "picc_data_offset": picc_offset,
            "sdm_mac_input_offset": mac_offset,
            "sdm_mac_offset": mac_offset,
        },
        "url_template": content[7:].decode("ascii").join(["https://" if url_base.startswith("https://")
                                                           else "http://", ""]),
    }


def verify(master: bytes | None, card: str, sun: str) -> tuple[int | None, str | None]:
    """(read counter, flag) for an ntag424 punch of card ``card``: the counter and None when the message is
    this card's, else None and the flag (forged; unverified when the bank has no master key)."""
    if master is None:
        return None, UNVERIFIED
    try:
        data = check_sun(master, sun)
    except SunError as error:
        log.warning("card %s: SUN message refused: %s", card, error)
        return None, FORGED
    if data.uid.hex().upper() != card:
        log.warning("card %s: its SUN message is card %s's", card, data.uid.hex().upper())
        return None, FORGED
    return data.counter, None


def load_master_key(config) -> bytes | None:
    """The configured master key (``sun_key``), or None when none is set. Raises ConfigError when the file
    is unreadable, readable by others, or not a key: a daemon that would flag every card is refused."""
    from gate_agent.configfile import ConfigError
    from gate_agent.files import secret_file_problem

    path = config.read_sun_key()
    if path is None:
        return None
    problem = secret_file_problem(path)
    if problem:
        raise ConfigError(f"sun_key: {problem}")
    try:
        return parse_master_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read sun_key {path}: {getattr(error, 'strerror', None) or error}") from None
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
