"""A virtual NFC-A card (NTAG213-like) that the unmodified reader code reads through nfcpy's udp driver.

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

log = logging.getLogger(__name__)

_REQA, _WUPA = 0x26, 0x52
_SEL_CL = (0x93, 0x95, 0x97)
_CASCADE_TAG = 0x88
_NTAG213_VERSION = bytes.fromhex("0004040201000F03")
_NTAG213_PAGES = 45


class VirtualCardError(Exception):
    pass


class State(enum.Enum):
    IDLE = "idle"
    READY = "ready"
    ACTIVE = "active"
    HALT = "halt"


def _bcc(data: bytes) -> int:
    return reduce(xor, data, 0)


class Ntag:
    """The card's answers to reader frames; pure (no I/O), so it is unit-tested on its own.

    ``handle`` returns the response bytes, or None where a real card stays silent.
    """

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
                return bytes([0x00])  # SAK: Type 2 tag, UID complete
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
        card = Ntag(bytes.fromhex(uid_hex))
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
