"""The gate's side of an NTAG 424 DNA with Secure Unique NFC (SUN, NXP AN12196): read the card's NDEF URL
and take the SUN message from it, untouched.

Each read makes the card build a fresh URL holding its PICC data (UID and read counter, AES-encrypted with
the SDM meta read key) and a truncated AES-CMAC over it (with a session key from the card's own SDM file
read key). The gate holds none of those keys: it only passes the message on in the punch; the bank checks
it (collector.ingest.sun). A card that is not an NTAG 424 (no NDEF application, or no SUN parameters) gives None.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

NDEF_APPLICATION = bytes.fromhex("D2760000850101")
NDEF_FILE = bytes.fromhex("E104")
#: URL parameter names for the encrypted PICC data and the MAC, as AN12196's examples and common set-ups use.
PICC_NAMES = ("picc_data", "e", "p")
MAC_NAMES = ("cmac", "c", "m")
_PICC = re.compile(r"[0-9A-Fa-f]{32}")
_MAC = re.compile(r"[0-9A-Fa-f]{16}")
_URI_PREFIXES = {0x00: "", 0x01: "http://www.", 0x02: "https://www.", 0x03: "http://", 0x04: "https://"}


def read_sun_message(transceive: Callable[[bytes], bytes]) -> str | None:
    """"<picc>:<mac>" (lower-case hex) from the card's NDEF URL, or None if it has no SUN message."""
    try:
        if _status(transceive(bytes.fromhex("00A4040007") + NDEF_APPLICATION + b"\x00")) is None:
            return None
        if _status(transceive(bytes.fromhex("00A4000C02") + NDEF_FILE)) is None:
            return None
        head = _status(transceive(bytes.fromhex("00B0000002")))
        if head is None or len(head) != 2:
            return None
        length = int.from_bytes(head, "big")
        if not 0 < length <= 250:
            return None
        body = _status(transceive(bytes.fromhex("00B00002") + bytes([length])))
    except Exception as error:  # the reader's own errors (a card that left): no SUN message from it
        log.info("no SUN message read: %s", type(error).__name__)
        return None
    if body is None or len(body) != length:
        return None
    url = ndef_uri(body)
    return sun_from_url(url) if url else None


def _status(response: bytes) -> bytes | None:
    response = bytes(response or b"")
    if len(response) < 2 or response[-2:] != b"\x90\x00":
        return None
    return response[:-2]


def ndef_uri(message: bytes) -> str | None:
    """The URI of a one-record NDEF message holding a short URI record (what a SUN card carries)."""
    if len(message) < 4:
        return None
    header, type_length, payload_length = message[0], message[1], message[2]
    if header & 0x07 != 0x01 or not header & 0x10 or header & 0x08 or type_length != 1:  # TNF well-known, SR
        return None
    if message[3:4] != b"U" or len(message) < 4 + payload_length or payload_length < 1:
        return None
    payload = message[4:4 + payload_length]
    prefix = _URI_PREFIXES.get(payload[0])
    if prefix is None:
        return None
    try:
        return prefix + payload[1:].decode("ascii")
    except UnicodeDecodeError:
        return None


def sun_from_url(url: str) -> str | None:
    params = dict(parse_qsl(urlsplit(url).query))
    picc = next((params[name] for name in PICC_NAMES if name in params), None)
    mac = next((params[name] for name in MAC_NAMES if name in params), None)
    if picc is None or mac is None or not _PICC.fullmatch(picc) or not _MAC.fullmatch(mac):
        return None
    return f"{picc.lower()}:{mac.lower()}"
