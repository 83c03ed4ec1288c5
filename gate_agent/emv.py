"""Reading a contactless bank card (EMV / UnionPay QuickPass) for the one thing a gate needs: who holds it.

A bank card may show a new random UID on every tap, so the gate identifies it by its account number
(PAN) instead: SELECT PPSE, SELECT the application, GET PROCESSING OPTIONS with the PDOL filled in,
READ RECORD over the AFL, the PAN from tag 5A or from the track 2 equivalent (tag 57). No payment is
made and nothing is written to the card.

The PAN itself never leaves this module's caller's stack: ``card_identifier`` turns it at once into a
keyed one-way identifier (HMAC-SHA256 with the bank's card key, truncated to 16 bytes), which is what
punches, rosters and the bank's registry hold. Nothing here logs a PAN or a record.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from .errors import GateError, GateInputError

log = logging.getLogger(__name__)

PPSE = b"2PAY.SYS.DDF01"
#: Tried in this order when the PPSE lists none we can select (or cannot be read).
KNOWN_AIDS = (
    bytes.fromhex("A000000333010101"),  # UnionPay debit
    bytes.fromhex("A000000333010102"),  # UnionPay credit
    bytes.fromhex("A000000333010103"),  # UnionPay quasi-credit
    bytes.fromhex("A0000000031010"),  # Visa
    bytes.fromhex("A0000000041010"),  # Mastercard
    bytes.fromhex("A00000002501"),  # American Express
    bytes.fromhex("A0000000651010"),  # JCB
)
MAX_RECORDS = 16  # per AFL entry: a card claiming more is not read further
IDENTIFIER_BYTES = 16
CARD_KEY_BYTES = 32


class EmvError(GateError):
    """The card did not answer as an EMV card does; the message names the step (never card data)."""


# ---------------------------------------------------------------------------------------------- BER-TLV


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """One level of BER-TLV: (tag, value) pairs. Raises EmvError on anything malformed."""
    items = []
    i = 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag
            while True:
                if i >= len(data):
                    raise EmvError("truncated tag")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
                if tag > 0xFFFFFF:
                    raise EmvError("tag too long")
        if i >= len(data):
            raise EmvError("truncated length")
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 2 or i + count > len(data):
                raise EmvError("bad length")
            length = int.from_bytes(data[i:i + count], "big")
            i += count
        if i + length > len(data):
            raise EmvError("value runs past the data")
        items.append((tag, data[i:i + length]))
        i += length
    return items


def _constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def find_tags(data: bytes, wanted: int, depth: int = 0) -> list[bytes]:
    """Every value of tag ``wanted`` anywhere in ``data`` (constructed objects are searched)."""
    found = []
    for tag, value in parse_tlv(data):
        if tag == wanted:
            found.append(value)
        elif _constructed(tag) and depth < 8:
            found.extend(find_tags(value, wanted, depth + 1))
    return found


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one object (for the virtual card and the tests)."""
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    if len(value) < 0x80:
        length = bytes([len(value)])
    elif len(value) < 0x100:
        length = bytes([0x81, len(value)])
    else:
        length = bytes([0x82]) + len(value).to_bytes(2, "big")
    return tag_bytes + length + value


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A data object list: (tag, length) pairs, no values."""
    entries = []
    i = 0
    while i < len(dol):
        tag = dol[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while i < len(dol):
                tag = (tag << 8) | dol[i]
                i += 1
                if not dol[i - 1] & 0x80:
                    break
        if i >= len(dol):
            raise EmvError("truncated PDOL")
        entries.append((tag, dol[i]))
        i += 1
    return entries


def terminal_value(tag: int, length: int, *, today: datetime | None = None) -> bytes:
    """What a terminal that wants no payment answers for a PDOL tag: zero amounts, the country and
    currency of China, today's date, a fresh unpredictable number, zeros for anything else."""
    today = today or datetime.now(UTC)
    known = {
        0x9F66: bytes.fromhex("36004000"),  # TTQ: contactless EMV and qVSDC, online capable, no CVM
        0x9F1A: bytes.fromhex("0156"),  # terminal country code: China
        0x5F2A: bytes.fromhex("0156"),  # transaction currency: CNY
        0x9A: bytes.fromhex(today.strftime("%y%m%d")),  # transaction date, BCD YYMMDD
        0x9C: b"\x00",  # transaction type: goods and services
        0x9F35: b"\x22",  # terminal type: attended, offline with online capability
        0x9F37: os.urandom(4),  # unpredictable number
    }
    value = known.get(tag, b"")
    if len(value) >= length:
        return value[:length]
    return value + bytes(length - len(value))


def pdol_data(pdol: bytes, *, today: datetime | None = None) -> bytes:
    return b"".join(terminal_value(tag, length, today=today) for tag, length in parse_dol(pdol))


# ---------------------------------------------------------------------------------------------- the read

#: Sends one command APDU, returns the response data and status word (the last two bytes).
Transceive = Callable[[bytes], bytes]


def _command(cla: int, ins: int, p1: int, p2: int, data: bytes | None, le: int | None = 0) -> bytes:
    apdu = bytes([cla, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le])
    return apdu


def _exchange(transceive: Transceive, apdu: bytes, step: str) -> bytes:
    response = bytes(transceive(apdu) or b"")
    if len(response) < 2:
        raise EmvError(f"{step}: no status word")
    if response[-2] == 0x61:  # more data: GET RESPONSE
        response = bytes(transceive(bytes([0x00, 0xC0, 0x00, 0x00, response[-1]])) or b"")
    elif response[-2] == 0x6C:  # wrong Le: repeat with the one the card asks for
        response = bytes(transceive(apdu[:-1] + response[-1:]) or b"")
    if len(response) < 2 or response[-2:] != b"\x90\x00":
        raise EmvError(f"{step}: status {response[-2:].hex().upper() or 'missing'}")
    return response[:-2]


def select(transceive: Transceive, name: bytes, step: str) -> bytes:
    return _exchange(transceive, _command(0x00, 0xA4, 0x04, 0x00, name), step)


def candidate_aids(transceive: Transceive) -> list[bytes]:
    """AIDs from the PPSE directory, by priority (tag 87), then the known ones not listed."""
    listed: list[tuple[int, int, bytes]] = []
    try:
        fci = select(transceive, PPSE, "SELECT PPSE")
        for position, template in enumerate(find_tags(fci, 0x61)):
            aids = find_tags(template, 0x4F)
            if not aids:
                continue
            priority = find_tags(template, 0x87)
            rank = priority[0][0] & 0x0F if priority and priority[0] else 15
            listed.append((rank or 15, position, aids[0]))
    except EmvError as error:
        log.debug("PPSE not readable (%s): trying the known applications", error)
    ordered = [aid for _, _, aid in sorted(listed)]
    return ordered + [aid for aid in KNOWN_AIDS if aid not in ordered]


def read_pan(transceive: Transceive, *, today: datetime | None = None) -> str:
    """The card's PAN (digits), read as described at the top. Raises EmvError if none can be read."""
    fci = None
    for aid in candidate_aids(transceive):
        try:
            fci = select(transceive, aid, "SELECT AID")
            break
        except EmvError:
            continue
    if fci is None:
        raise EmvError("no known payment application on the card")
    pdols = find_tags(fci, 0x9F38)
    data = pdol_data(pdols[0], today=today) if pdols else b""
    gpo = _exchange(transceive, _command(0x80, 0xA8, 0x00, 0x00, tlv(0x83, data)), "GET PROCESSING OPTIONS")
    pan = _pan_in(gpo)  # some cards answer with track 2 in the GPO response itself
    if pan:
        return pan
    afl = _afl(gpo)
    for index in range(0, len(afl) - 3, 4):
        sfi, first, last = afl[index] >> 3, afl[index + 1], afl[index + 2]
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise EmvError("malformed AFL")
        for record in range(first, min(last, first + MAX_RECORDS - 1) + 1):
            body = _exchange(transceive, _command(0x00, 0xB2, record, (sfi << 3) | 0x04, None), "READ RECORD")
            pan = _pan_in(body)
            if pan:
                return pan
    raise EmvError("no PAN in the card's records")


def _afl(gpo: bytes) -> bytes:
    items = parse_tlv(gpo)
    if len(items) == 1 and items[0][0] == 0x80:  # format 1: AIP (2 bytes) then the AFL
        value = items[0][1]
        if len(value) < 2:
            raise EmvError("short GPO response")
        return value[2:]
    found = find_tags(gpo, 0x94)
    return found[0] if found else b""


def _pan_in(data: bytes) -> str | None:
    for value in find_tags(data, 0x5A):
        digits = value.hex().upper().rstrip("F")
        if _valid_pan(digits):
            return digits
    for value in find_tags(data, 0x57):
        digits = value.hex().upper().split("D", 1)[0]
        if _valid_pan(digits):
            return digits
    return None


def _valid_pan(digits: str) -> bool:
    return digits.isdigit() and 12 <= len(digits) <= 19 and luhn_valid(digits)


# ---------------------------------------------------------------------------------------------- PANs


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalise_pan(text: str) -> str:
    """Digits of a PAN as typed (spaces and dashes allowed); GateInputError if it is not one. The message
    never repeats the input."""
    digits = text.replace(" ", "").replace("-", "").strip()
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise GateInputError("a card number is 12 to 19 digits")
    if not luhn_valid(digits):
        raise GateInputError("the card number fails its check digit (Luhn): mistyped?")
    return digits


def mask_pan(digits: str) -> str:
    """First 6 and last 4 digits, the rest as '*': the most a PAN may be shown."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def card_identifier(key: bytes, pan: str) -> str:
    """The keyed one-way identifier of a bank card: 16 bytes of HMAC-SHA256(card key, PAN), upper-case hex.
    Without the key the PAN cannot be tried against it (PAN space is small enough to guess otherwise)."""
    if len(key) < 16:
        raise ValueError("the bank card key must be at least 16 bytes")
    return hmac.new(key, pan.encode("ascii"), hashlib.sha256).digest()[:IDENTIFIER_BYTES].hex().upper()


def parse_card_key(text: str) -> bytes:
    """The card key file's contents: 64 hex digits (32 bytes), comments and blank lines ignored."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise GateInputError("a card key file holds one line of hex")
    try:
        key = bytes.fromhex(lines[0])
    except ValueError:
        raise GateInputError("the card key is not hex") from None
    if len(key) != CARD_KEY_BYTES:
        raise GateInputError(f"the card key is {len(key)} bytes, not {CARD_KEY_BYTES}")
    return key


def new_card_key_text() -> str:
    return "# bank card key: HMAC-SHA256 key for bank card identifiers. Secret: mode 0600.\n" \
           + os.urandom(CARD_KEY_BYTES).hex() + "\n"
