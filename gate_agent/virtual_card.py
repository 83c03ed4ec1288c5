"""Virtual NFC-A cards that the unmodified reader code reads through nfcpy's udp driver: an NTAG213-like
Type 2 tag, and ISO-DEP (Type 4A) cards answering APDUs: a contactless bank card (``EmvApplet``) and an
NTAG 424 DNA with Secure Unique NFC (``gate_agent.virtual_ntag424``).

nfcpy's ``udp:HOST:PORT`` driver carries radio frames as UDP datagrams; a reader opened on that path
sends to the port, and this card listens on it. The card is a real ISO/IEC 14443-3 Type A state
machine (REQA/WUPA, anticollision over one or two cascade levels, SELECT, HLTA) with NTAG21x
commands (READ, GET_VERSION), so the reader runs exactly the code it runs with a plastic card.

A card has been *read* once the reader, after selecting it, starts a fresh anticollision (its next
poll) or goes quiet. It then leaves the field (stops answering), and the next UID is presented.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from functools import reduce
from operator import xor

from .errors import GateError
from .extras import require

log = logging.getLogger(__name__)

_REQA, _WUPA = 0x26, 0x52
_SEL_CL = (0x93, 0x95, 0x97)
_CASCADE_TAG = 0x88
_NTAG213_VERSION = bytes.fromhex("0004040201000F03")
_NTAG213_PAGES = 45


class VirtualCardError(GateError):
    """A virtual card that cannot be made or presented as asked; one line."""


class State(enum.Enum):
    IDLE = "idle"
    READY = "ready"
    ACTIVE = "active"
    HALT = "halt"


def random_uid() -> bytes:
    """A random single-size UID as ISO/IEC 14443-3 marks it: first byte 0x08."""
    import os

    return b"\x08" + os.urandom(3)


def _bcc(data: bytes) -> int:
    return reduce(xor, data, 0)


class Ntag:
    """The card's answers to reader frames; pure (no I/O), so it is unit-tested on its own.

    ``handle`` returns the response bytes, or None where a real card stays silent.
    """

    SAK = 0x00  # Type 2 tag, UID complete

    def __init__(self, uid: bytes):
        if len(uid) not in (4, 7):
            raise VirtualCardError(f"UID must be 4 or 7 bytes, not {len(uid)}")
        self.uid = bytes(uid)
        # ATQA: bits 7-6 give the UID size (single 00, double 01); bit 2 = bit-frame anticollision.
        self.sens_res = bytes([0x44 if len(uid) == 7 else 0x04, 0x00])
        if len(uid) == 7:
            levels = [bytes([_CASCADE_TAG]) + uid[0:3], uid[3:7]]
        else:
            levels = [uid]
        self._levels = [chunk + bytes([_bcc(chunk)]) for chunk in levels]
        self.memory = self._initial_memory()
        self.state = State.IDLE
        self.selections = 0  # completed SELECTs since power-on of this presentation

    def _initial_memory(self) -> bytearray:
        memory = bytearray(4 * _NTAG213_PAGES)
        if len(self.uid) == 7:
            memory[0:3] = self.uid[0:3]
            memory[3] = _CASCADE_TAG ^ _bcc(self.uid[0:3])
            memory[4:8] = self.uid[3:7]
            memory[8] = _bcc(self.uid[3:7])
        else:
            memory[0:4] = self.uid
            memory[4] = _bcc(self.uid)
        memory[9] = 0x48  # internal byte, as on NXP parts
        memory[12:16] = bytes.fromhex("E1101200")  # capability container: NDEF, 144 bytes, read/write
        memory[16:20] = bytes.fromhex("0300FE00")  # empty NDEF message, terminator
        return memory

    def power_off(self) -> None:
        self.state = State.IDLE

    def handle(self, frame: bytes) -> bytes | None:
        if not frame:
            return None
        command = frame[0]
        if command in (_REQA, _WUPA) and len(frame) == 1:
            # WUPA also wakes a HALTed card, REQA does not. A card in READY or ACTIVE answers too: on
            # the udp link a field reset (RFOFF) is only sent when the reader's socket got data.
            if self.state == State.HALT and command == _REQA:
                return None
            self.state = State.READY
            return self.sens_res
        if self.state == State.READY and command in _SEL_CL and len(frame) >= 2:
            return self._anticollision(frame)
        if self.state == State.ACTIVE:
            return self._active(frame)
        return None

    def _anticollision(self, frame: bytes) -> bytes | None:
        level = _SEL_CL.index(frame[0])
        if level >= len(self._levels):
            return None
        expected = self._levels[level]
        if frame[1] == 0x20 and len(frame) == 2:  # SDD_REQ: tell the reader this level's UID part
            return expected
        if frame[1] == 0x70 and frame[2:7] == expected:  # SEL_REQ for our UID part
            last = level == len(self._levels) - 1
            if last:
                self.state = State.ACTIVE
                self.selections += 1
                return bytes([self.SAK])
            return bytes([0x04])  # SAK: cascade bit, UID not complete
        return None

    def _active(self, frame: bytes) -> bytes | None:
        command = frame[0]
        if command == 0x30 and len(frame) == 2:  # READ: four pages, rolling over at the end
            page = frame[1]
            if page >= _NTAG213_PAGES:
                return self._nak()
            start = 4 * page
            data = (self.memory + self.memory)[start:start + 16]
            return bytes(data)
        if command == 0x60 and len(frame) == 1:  # GET_VERSION
            return _NTAG213_VERSION
        if command == 0x50 and frame[1:2] == b"\x00":  # HLTA
            self.state = State.HALT
            return None
        return self._nak()

    def _nak(self) -> None:
        # A real NTAG answers a 4-bit NAK and falls back to IDLE; 4-bit frames do not exist on the
        # udp link, and nfcpy reads silence the same way (a timeout).
        self.power_off()
        return None


# ---------------------------------------------------------------------------------------------- ISO-DEP

#: ATS: FSCI 8 (256-byte frames), TA(1) 106 kbit/s only, TB(1) FWI 11 (about 0.6 s per exchange), TC(1).
_ATS = bytes.fromhex("0578 00B0 02")


class IsoDepCard(Ntag):
    """An ISO/IEC 14443-4 card (SAK 0x20): RATS, I-blocks carrying APDUs to ``applet``, R-blocks, DESELECT.
    ``applet(apdu) -> response`` is any object with an ``apdu`` method; each answer ends with its status."""

    SAK = 0x20

    def __init__(self, uid: bytes, applet):
        super().__init__(uid)
        self.applet = applet
        self.protocol = False  # RATS done: frames are ISO-DEP blocks
        self._last: bytes | None = None
        self.apdus = 0

    def power_off(self) -> None:
        super().power_off()
        self.protocol = False

    def _active(self, frame: bytes) -> bytes | None:
        pcb = frame[0]
        if not self.protocol:
            if pcb == 0xE0 and len(frame) == 2:  # RATS
                self.protocol = True
                return _ATS
            if pcb == 0x50 and frame[1:2] == b"\x00":  # HLTA
                self.state = State.HALT
                return None
            return self._nak()
        if pcb & 0xE6 == 0x02 and not pcb & 0x10:  # I-block, not chained
            self.apdus += 1
            self._last = bytes([0x02 | (pcb & 1)]) + bytes(self.applet.apdu(bytes(frame[1:])))
            return self._last
        if pcb & 0xF6 == 0xB2:  # R(NAK): the reader missed our answer, or checks presence
            if self._last is not None and self._last[0] & 1 == pcb & 1:
                return self._last
            return bytes([0xA2 | (pcb & 1)])
        if pcb == 0xC2:  # S(DESELECT)
            self.state = State.HALT
            self.protocol = False
            return bytes([0xC2])
        return None


SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_LENGTH = b"\x67\x00"
SW_INS_UNKNOWN = b"\x6d\x00"
SW_CONDITIONS = b"\x69\x85"


class EmvApplet:
    """A contactless bank card's payment application, answering the gate's read from test data: PPSE,
    one application with a PDOL, GET PROCESSING OPTIONS (format 2, or format 1 with ``gpo_format=1``) and
    one record holding the PAN in tag 5A and/or the track 2 equivalent in tag 57 (``pan_in``)."""

    PDOL = bytes.fromhex("9F6604 9F0206 9F3704 5F2A02 9A03 9C01 9F1A02".replace(" ", ""))

    def __init__(self, pan: str, *, aid: str = "A000000333010101", pan_in: tuple[str, ...] = ("5A", "57"),
                 gpo_format: int = 2, list_in_ppse: bool = True):
        from .emv import tlv

        if not pan.isdigit():
            raise VirtualCardError("a PAN is digits")
        self.pan = pan
        self.aid = bytes.fromhex(aid)
        self.gpo_format = gpo_format
        self.selected = False
        self.gpo_done = False
        self.gpo_lengths: list[int] = []  # the PDOL data lengths the reader sent (a test looks)
        entry = tlv(0x61, tlv(0x4F, self.aid) + tlv(0x50, b"UnionPay") + tlv(0x87, b"\x01"))
        directory = entry if list_in_ppse else b""
        self.ppse = tlv(0x6F, tlv(0x84, b"2PAY.SYS.DDF01") + tlv(0xA5, tlv(0xBF0C, directory)))
        self.fci = tlv(0x6F, tlv(0x84, self.aid) + tlv(0xA5, tlv(0x50, b"UnionPay") + tlv(0x9F38, self.PDOL)))
        pan_bcd = bytes.fromhex(pan + ("F" if len(pan) % 2 else ""))
        track2 = bytes.fromhex(pan + "D" + "3012" + "201" + "0000000000" + ("F" if (len(pan) + 18) % 2 else ""))
        body = b""
        if "57" in pan_in:
            body += tlv(0x57, track2)
        body += tlv(0x5F20, b"CARDHOLDER/TEST")
        if "5A" in pan_in:
            body += tlv(0x5A, pan_bcd) + tlv(0x5F34, b"\x01")
        self.record = tlv(0x70, body)

    def apdu(self, apdu: bytes) -> bytes:
        from .emv import parse_dol, parse_tlv

        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = apdu[:4]
        data = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
        if ins == 0xA4 and p1 == 0x04:
            if data == b"2PAY.SYS.DDF01":
                self.selected = False
                return self.ppse + SW_OK
            if data == self.aid:
                self.selected, self.gpo_done = True, False
                return self.fci + SW_OK
            return SW_NOT_FOUND
        if ins == 0xA8 and cla == 0x80:
            if not self.selected:
                return SW_CONDITIONS
            try:
                items = parse_tlv(data)
            except Exception:
                return SW_WRONG_LENGTH
            expected = sum(length for _, length in parse_dol(self.PDOL))
            if len(items) != 1 or items[0][0] != 0x83 or len(items[0][1]) != expected:
                return SW_WRONG_LENGTH  # a real card refuses PDOL data of the wrong length
            self.gpo_lengths.append(len(items[0][1]))
            self.gpo_done = True
            from .emv import tlv

            afl = bytes.fromhex("08010100")  # SFI 1, records 1..1, none for offline authentication
            if self.gpo_format == 1:
                return tlv(0x80, bytes.fromhex("0000") + afl) + SW_OK
            return tlv(0x77, tlv(0x82, bytes.fromhex("0000")) + tlv(0x94, afl)) + SW_OK
        if ins == 0xB2:
            if not self.gpo_done:
                return SW_CONDITIONS
            if p1 == 1 and p2 == (1 << 3) | 4:
                return self.record + SW_OK
            return b"\x6a\x83"  # record not found
        return SW_INS_UNKNOWN


@dataclass(frozen=True, slots=True)
class Presentation:
    uid: str
    reads: int
    seconds: float


def parse_udp_device(device: str) -> tuple[str, int]:
    parts = device.split(":")
    if parts[0] != "udp" or len(parts) != 3 or not parts[2].isdigit():
        raise VirtualCardError(f"device {device!r} is not udp:HOST:PORT")
    return parts[1], int(parts[2])


class VirtualCard:
    """Presents UIDs one after another to whatever reader polls ``udp:HOST:PORT``."""

    BRTY = "106A"

    def __init__(self, device: str, *, settle: float = 0.5):
        require("nfc", "gate")  # a bank's install has no nfcpy: one line saying so, not a traceback
        import nfc.clf.udp  # the only nfcpy import here: the card speaks the driver's own framing

        host, port = parse_udp_device(device)
        self.device = device
        self.settle = settle
        self._udp = nfc.clf.udp.init(host, port)
        self._nfc = nfc.clf
        self._udp._create_socket()
        if not self._udp._bind_socket(time.time() + 1.0):
            raise VirtualCardError(f"udp port {port} is in use (another virtual card on {device}?)")

    def close(self) -> None:
        if self._udp.socket is not None:
            self._udp.socket.close()
            self._udp.socket = None

    def __enter__(self) -> VirtualCard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def present(self, uid_hex: str, *, timeout: float, hold: float = 0.0) -> Presentation:
        """Stay in the field until a reader has read the card (and ``hold`` seconds more), then leave.

        Raises VirtualCardError if no reader reads it within ``timeout`` seconds.
        """
        return self.present_card(Ntag(bytes.fromhex(uid_hex)), timeout=timeout, hold=hold)

    def present_card(self, card: Ntag, *, timeout: float, hold: float = 0.0) -> Presentation:
        """``present`` for a card made by the caller (an ``IsoDepCard`` with its applet, say)."""
        uid_hex = card.uid.hex().upper()
        started = time.monotonic()
        deadline = started + timeout
        first_read_at: float | None = None
        reads = 0
        last_frame_at = started
        while True:
            now = time.monotonic()
            if card.selections and now - last_frame_at >= self.settle:
                reads = max(reads, 1)  # selected, then the reader went quiet: it has what it needs
                first_read_at = first_read_at or now
                if now - first_read_at >= hold:
                    break
            if first_read_at is None and now >= deadline:
                raise VirtualCardError(
                    f"no reader read card {uid_hex.upper()} within {timeout:g} s on {self.device}"
                )
            try:
                _, frame, addr = self._udp._recv_data(min(0.1, max(0.01, self.settle)), self.BRTY)
            except self._nfc.BrokenLinkError:  # RFOFF: the reader switched its field off
                card.power_off()
                last_frame_at = time.monotonic()
                continue
            except self._nfc.CommunicationError:  # timeout or a frame that is not ours
                continue
            last_frame_at = time.monotonic()
            frame = bytes(frame)
            if card.selections and frame == bytes([_SEL_CL[0], 0x20]):
                # The reader has finished with us and polls afresh: that was one complete read.
                reads += 1
                first_read_at = first_read_at or last_frame_at
                if last_frame_at - first_read_at >= hold:
                    break  # leave the field: this anticollision gets no answer
                card.selections = 0
            response = card.handle(frame)
            if response is not None:
                self._udp._send_data(self.BRTY, response, addr)
        return Presentation(uid_hex.upper(), reads, time.monotonic() - started)
