"""NTAG 424 DNA Secure Unique NFC (SUN) cryptography, per NXP AN12196, and AN10922 key diversification.

The bank checks SUN messages with it (collector.ingest.sun) and the virtual card makes them (virtual_ntag424);
the gate agent itself never holds these keys. Only ``cryptography``'s AES and CMAC are used.

A SUN message is the card's encrypted PICC data (PICCDataTag, UID, SDMReadCtr, padding; AES-128-CBC with a
zero IV under the SDM meta read key) and the SDM MAC: the odd-numbered bytes of AES-CMAC over the MAC
input (empty here: the MAC input starts where the MAC is) under a session key, itself the CMAC of
SV2 = 3CC3 0001 0080 || UID || SDMReadCtr under the card's SDM file read key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from .errors import GateError

#: PICCDataTag: UID mirrored, SDMReadCtr mirrored, UID length 7.
PICC_DATA_TAG = 0xC7
_SV2_PREFIX = bytes.fromhex("3CC300010080")
#: AN10922's system identifier for this system's cards (part of every diversification input).
SYSTEM_IDENTIFIER = b"SiteGate"
#: Key numbers on the card: 0 application master (changes keys and settings), 1 SDM meta read (decrypts
#: PICC data: one for all cards, since the UID is unknown until decrypted), 2 SDM file read (the MAC: per
#: card), 3 and 4 unused but changed from the factory's zero keys.
KEY_APP_MASTER, KEY_META_READ, KEY_FILE_READ = 0, 1, 2


class SunError(GateError, ValueError):
    """A SUN message that does not check out; the message says how (never a key)."""


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _shift_left(block: bytes) -> bytes:
    value = (int.from_bytes(block, "big") << 1) & ((1 << 128) - 1)
    return value.to_bytes(16, "big")


def _subkeys(key: bytes) -> tuple[bytes, bytes]:
    l_block = _ecb(key, bytes(16))
    k1 = _shift_left(l_block)
    if l_block[0] & 0x80:
        k1 = k1[:15] + bytes([k1[15] ^ 0x87])
    k2 = _shift_left(k1)
    if k1[0] & 0x80:
        k2 = k2[:15] + bytes([k2[15] ^ 0x87])
    return k1, k2


def diversify(master: bytes, data: bytes) -> bytes:
    """AN10922 AES-128 key diversification: CMAC of 0x01 || ``data`` padded to 32 bytes (1-31 bytes)."""
    if len(master) != 16:
        raise ValueError("an AES-128 master key is 16 bytes")
    if not 1 <= len(data) <= 31:
        raise ValueError("diversification input is 1 to 31 bytes")
    d = b"\x01" + data
    k1, k2 = _subkeys(master)
    padded = len(d) < 32
    if padded:
        d = d + b"\x80" + bytes(31 - len(d))
    last = bytes(a ^ b for a, b in zip(d[16:], k2 if padded else k1, strict=True))
    encryptor = Cipher(algorithms.AES(master), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(d[:16] + last) + encryptor.finalize())[16:]


def card_key(master: bytes, uid: bytes, number: int) -> bytes:
    """Key ``number`` of the card with ``uid``: diversified from the master key by UID, key number and the
    system identifier. The SDM meta read key is the same for every card (diversified without a UID)."""
    if number == KEY_META_READ:
        return diversify(master, bytes(7) + bytes([number]) + SYSTEM_IDENTIFIER)
    if len(uid) != 7:
        raise ValueError("NTAG 424 DNA UIDs are 7 bytes")
    return diversify(master, uid + bytes([number]) + SYSTEM_IDENTIFIER)


@dataclass(frozen=True, slots=True)
class SunData:
    uid: bytes
    counter: int


def decrypt_picc(meta_key: bytes, picc: bytes) -> SunData:
    if len(picc) != 16:
        raise SunError("PICC data is not 16 bytes")
    decryptor = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(picc) + decryptor.finalize()
    if plain[0] != PICC_DATA_TAG:
        raise SunError("PICC data does not decrypt under the system's meta read key")
    return SunData(plain[1:8], int.from_bytes(plain[8:11], "little"))


def encrypt_picc(meta_key: bytes, uid: bytes, counter: int, padding: bytes) -> bytes:
    plain = bytes([PICC_DATA_TAG]) + uid + counter.to_bytes(3, "little") + padding[:5].ljust(5, b"\x00")
    encryptor = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).encryptor()
    return encryptor.update(plain) + encryptor.finalize()


def sdm_mac(file_read_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """The truncated SDM MAC (8 bytes) of the card with ``uid`` at read ``counter``."""
    session = cmac(file_read_key, _SV2_PREFIX + uid + counter.to_bytes(3, "little"))
    return cmac(session, mac_input)[1::2]


def check_sun(master: bytes, sun: str) -> SunData:
    """Decrypt and authenticate ``sun`` ("<picc hex>:<mac hex>") with keys diversified from ``master``.
    Raises SunError if it is not a message one of this system's cards made."""
    try:
        picc_hex, mac_hex = sun.split(":")
        picc, mac = bytes.fromhex(picc_hex), bytes.fromhex(mac_hex)
    except ValueError:
        raise SunError("not <picc>:<mac> hex") from None
    data = decrypt_picc(card_key(master, b"", KEY_META_READ), picc)
    expected = sdm_mac(card_key(master, data.uid, KEY_FILE_READ), data.uid, data.counter)
    if not hmac.compare_digest(expected, mac):
        raise SunError("the SDM MAC does not verify: not this card's key")
    return data
