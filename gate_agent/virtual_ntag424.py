"""A virtual NTAG 424 DNA with Secure Unique NFC, set up from the provisioning file the bank writes
(`collector card provision`): the NDEF application and file, and at each read a fresh SUN message in the
URL (PICC data with its UID and an incremented read counter, and the SDM MAC), as the chip makes it.

For tests of what the bank must refuse, a card can also replay a recorded SUN message (``replay``): what
an emulator or a copied URL shows.
"""

from __future__ import annotations

import json
import os

from .files import replace_atomically
from .ntag424 import KEY_FILE_READ, KEY_META_READ, encrypt_picc, sdm_mac
from .virtual_card import SW_NOT_FOUND, SW_OK, IsoDepCard, VirtualCardError

_NDEF_APPLICATION = bytes.fromhex("D2760000850101")


class VirtualNtag424:
    """The card's keys, NDEF file and read counter (kept in its provisioning file between runs)."""

    def __init__(self, document: dict):
        try:
            self.document = document
            self.uid = bytes.fromhex(document["uid"])
            self.meta_key = bytes.fromhex(document["keys"][str(KEY_META_READ)])
            self.file_key = bytes.fromhex(document["keys"][str(KEY_FILE_READ)])
            self.content = bytes.fromhex(document["ndef_file"]["content"])
            settings = document["file_settings"]
            self.picc_offset = int(settings["picc_data_offset"])
            self.mac_offset = int(settings["sdm_mac_offset"])
            self.counter = int(document.get("virtual_counter", 0))
        except (KeyError, TypeError, ValueError) as error:
            raise VirtualCardError(f"not an NTAG 424 provisioning file: {error}") from None

    @classmethod
    def load(cls, path: str) -> VirtualNtag424:
        try:
            with open(path, encoding="utf-8") as handle:
                return cls(json.load(handle))
        except (OSError, ValueError) as error:
            raise VirtualCardError(f"cannot read {path}: {error}") from None

    def save(self, path: str) -> None:
        self.document["virtual_counter"] = self.counter
        replace_atomically(path, json.dumps(self.document, indent=1).encode(), 0o600)

    def file_at_next_read(self) -> bytes:
        """The NDEF file as the next read shows it: the counter moves on, a new SUN message is mirrored."""
        self.counter += 1
        picc = encrypt_picc(self.meta_key, self.uid, self.counter, os.urandom(5)).hex().upper().encode()
        mac = sdm_mac(self.file_key, self.uid, self.counter).hex().upper().encode()
        content = bytearray(self.content)
        content[self.picc_offset:self.picc_offset + 32] = picc
        content[self.mac_offset:self.mac_offset + 16] = mac
        return bytes(content)

    def card(self, uid: bytes | None = None, *, replay: bytes | None = None) -> IsoDepCard:
        """The card in the field (with another UID than its own, for a clone); ``replay``: an NDEF file
        recorded earlier, shown again unchanged."""
        return IsoDepCard(uid or self.uid, Ntag424Applet(self, replay=replay))


class Ntag424Applet:
    """ISO SELECT of the NDEF application and file, READ BINARY. The SUN message is made at file selection."""

    def __init__(self, card: VirtualNtag424, *, replay: bytes | None = None):
        self.card = card
        self.replay = replay
        self.application = False
        self.file: bytes | None = None
        self.shown: list[bytes] = []  # every NDEF file this card showed (a test replays one)

    def apdu(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        data = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
        if ins == 0xA4 and p1 == 0x04:
            self.application = data == _NDEF_APPLICATION
            self.file = None
            return SW_OK if self.application else SW_NOT_FOUND
        if ins == 0xA4 and p1 == 0x00 and self.application:
            if data == bytes.fromhex("E104"):
                self.file = self.replay if self.replay is not None else self.card.file_at_next_read()
                self.shown.append(self.file)
                return SW_OK
            return SW_NOT_FOUND
        if ins == 0xB0 and self.file is not None:
            offset = (p1 << 8) | p2
            length = apdu[4] if len(apdu) > 4 else 0
            return self.file[offset:offset + (length or 256)] + SW_OK
        return b"\x6d\x00" if ins not in (0xA4, 0xB0) else b"\x69\x85"
