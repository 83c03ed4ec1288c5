"""Card readers: the ``CardReader`` interface, the ``Tap`` it produces, and the nfcpy backend.

This is the only module that talks to nfcpy's reader side. One ``connect()`` is one presentation:
the tag is identified and handed over at once (no waiting for removal, which nfcpy's udp driver does
not always notice). A card held in the field is read again and again by the polling loop; it becomes
a new tap only after a poll round that found no card, so holding a card never punches twice.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from .extras import require
from .feedback import Signal

log = logging.getLogger(__name__)

#: nfcpy bitrate/technology strings and the names punches carry.
TECHNOLOGY_NAMES = {"A": "iso14443a", "B": "iso14443b", "F": "felica"}
DEFAULT_TECHNOLOGIES = ("106A", "106B", "212F")
SUPPORTED_TECHNOLOGIES = ("106A", "106B", "212F", "424F")

#: USB readers nfcpy drives, for diagnostics (the udev rules in udev/ list the same ids).
KNOWN_USB_READERS = {
    (0x072F, 0x2200): "ACS ACR122U",
    (0x04E6, 0x5591): "SCM SCL3711",
    (0x054C, 0x06C3): "Sony RC-S380",
    (0x054C, 0x06C1): "Sony RC-S380",
    (0x04CC, 0x2533): "NXP PN533 board",
}
KERNEL_NFC_DRIVERS = ("pn533_usb", "pn533", "port100", "nfc")


#: Tap kinds beyond the punch's card kinds: a random UID that is no identity and was not otherwise read.
RANDOM = "random"


@dataclass(frozen=True, slots=True)
class Tap:
    """One presentation of a card to the reader."""

    uid: str  # the card as punches name it: upper-case hex UID, or a bank card's keyed identifier
    tech: str  # iso14443a / iso14443b / felica
    reader: str  # the device path it was read on
    read_ns: int  # time.monotonic_ns() when the reader had the UID
    kind: str = "uid"  # a protocol.CARD_KINDS value, or RANDOM: no identity (the agent punches nothing)
    sun: str = ""  # an ntag424 card's SUN message


def is_random_uid(uid: str) -> bool:
    """ISO/IEC 14443-3: a single-size (4-byte) UID whose first byte is 0x08 is random, new at each power-up:
    never an identity (bank cards and privacy-minded cards use them)."""
    return len(uid) == 8 and uid.startswith("08")


@contextlib.contextmanager
def _nfcpy_quiet():
    """nfcpy logs every frame at debug level (``-vvv``); a bank card's frames carry its PAN, which must reach
    no log. Its loggers all inherit from "nfc": held at INFO while a card's data is read."""
    logger = logging.getLogger("nfc")
    level = logger.level
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


class CardReader(ABC):
    """What the agent needs from a reader. A backend must override ``run``; ``indicate`` is optional.

    ``run`` blocks until ``stop`` is set, calling ``on_tap`` on its own thread for each new
    presentation. ``last_alive`` (monotonic seconds) moves while the loop is alive, even while the
    reader is missing and being reopened, so a watchdog can tell a hung loop from an absent reader.
    """

    path: str = ""
    last_alive: float = 0.0
    connected: bool = False

    @abstractmethod
    def run(self, on_tap: Callable[[Tap], None], stop: threading.Event) -> None: ...

    def indicate(self, signal: Signal) -> None:
        """Show ``signal`` on the reader's own LED/buzzer, if it has any. Called only from ``on_tap``."""
        return None  # most readers have neither


class Presence:
    """Tells a new presentation from a card that stays in the field.

    A card counts again only after a poll round found nothing. Several cards held together are each
    new once (the reader alternates between them without an empty round).
    """

    def __init__(self) -> None:
        self._present: set[str] = set()

    def empty_round(self) -> None:
        self._present.clear()

    def is_new(self, uid: str) -> bool:
        new = uid not in self._present
        self._present.add(uid)
        return new


class NfcReader(CardReader):
    """A reader driven by nfcpy: ``usb``, ``usb:VID:PID``, ``tty:AMA0:pn532``, ``udp:HOST:PORT``..."""

    def __init__(self, path: str, technologies: tuple[str, ...] = DEFAULT_TECHNOLOGIES, *,
                 poll_interval: float = 0.1, reopen_delays: tuple[float, float] = (1.0, 30.0),
                 card_key: bytes | None = None, read_sun: bool = True):
        # Here, not at the loop's first `import nfc`: `gate-agent run` on an install without the gate
        # extra stops before it starts, with the extra to install, rather than in the reader's loop.
        require("nfc", "gate")
        self.path = path
        self.card_key = card_key  # the bank card key: ISO-DEP cards are read as bank cards only with it
        self.read_sun = read_sun
        self.technologies = list(technologies)
        self.poll_interval = poll_interval
        self.reopen_delays = reopen_delays
        self.last_alive = time.monotonic()
        self.connected = False
        self._clf = None
        self._presence = Presence()

    # ------------------------------------------------------------------ loop

    def run(self, on_tap: Callable[[Tap], None], stop: threading.Event) -> None:
        import nfc

        delay = self.reopen_delays[0]
        while not stop.is_set():
            self.last_alive = time.monotonic()
            if self._clf is None:
                if not self._open(nfc):
                    stop.wait(delay)
                    delay = min(delay * 2, self.reopen_delays[1])
                    continue
                delay = self.reopen_delays[0]
            tag = self._poll_once(stop)
            if tag is False:
                log.error("reader %s stopped answering; reopening. %s", self.path, diagnose(self.path))
                self._close()
                continue
            if tag is None:
                continue
            uid = bytes(tag.identifier).hex().upper()
            if not self._presence.is_new(uid):
                stop.wait(self.poll_interval)  # the same card still in the field; poll it gently
                continue
            tap = self.identify(tag, uid, time.monotonic_ns())
            if tap.uid != uid and not self._presence.is_new(tap.uid):
                continue  # a held bank card that drew a new random UID: still the same presentation
            on_tap(tap)
        self._close()

    def identify(self, tag, uid: str, read_ns: int) -> Tap:
        """What the card is: a bank card by its PAN's keyed identifier, an NTAG 424 DNA with its SUN
        message, a random UID (no identity), or a plain UID."""
        tech = TECHNOLOGY_NAMES[tag.target.brty[-1]]
        dep = getattr(tag, "_dep", None)  # nfcpy's ISO-DEP link of a Type 4 tag
        if dep is not None:
            # The link itself, not tag.transceive: that logs every APDU at debug level.
            def transceive(apdu: bytes) -> bytes:
                return bytes(dep.exchange(bytearray(apdu), None) or b"")

            if self.card_key is not None:
                identifier = self._bank_identifier(transceive)
                if identifier is not None:
                    return Tap(identifier, tech, self.path, read_ns, kind="bank")
            if self.read_sun:
                from .sun_reader import read_sun_message

                with _nfcpy_quiet():
                    sun = read_sun_message(transceive)
                if sun is not None:
                    return Tap(uid, tech, self.path, read_ns, kind="ntag424", sun=sun)
        if is_random_uid(uid):
            return Tap(uid, tech, self.path, read_ns, kind=RANDOM)
        return Tap(uid, tech, self.path, read_ns)

    def _bank_identifier(self, transceive) -> str | None:
        import nfc.clf
        import nfc.tag

        from .emv import EmvError, card_identifier, read_pan

        with _nfcpy_quiet():
            try:
                return card_identifier(self.card_key, read_pan(transceive))
            except (EmvError, nfc.tag.TagCommandError, nfc.clf.CommunicationError) as error:
                log.info("ISO-DEP card is not a readable bank card: %s", type(error).__name__
                         if not isinstance(error, EmvError) else error)
                return None

    def _poll_once(self, stop: threading.Event):
        """One nfcpy connect(): a tag, None (stopped) or False (the reader failed)."""
        rounds = 0

        def terminate() -> bool:
            nonlocal rounds
            rounds += 1
            self.last_alive = time.monotonic()
            if rounds > 1:  # every call after the first follows a round that found no card
                self._presence.empty_round()
                if stop.wait(self.poll_interval):
                    return True
            return stop.is_set()

        try:
            return self._clf.connect(
                rdwr={
                    "targets": self.technologies,
                    "iterations": 1,
                    "on-connect": lambda tag: False,  # hand the tag over at once; never wait for removal
                    "beep-on-connect": False,  # the agent signals after the punch is on disk
                },
                terminate=terminate,
            )
        except OSError as error:
            log.error("reader %s failed: %s", self.path, error)
            return False

    def _open(self, nfc) -> bool:
        try:
            clf = nfc.ContactlessFrontend()
            found = clf.open(self.path)
        except OSError as error:
            log.error("cannot open reader %s: %s. %s", self.path, os.strerror(error.errno or errno.EIO),
                      diagnose(self.path, error.errno))
            return False
        if not found:
            log.error("no reader on %s. %s", self.path, diagnose(self.path, errno.ENODEV))
            return False
        log.info("reader open: %s on %s", clf.device, self.path)
        self._clf = clf
        self.connected = True
        self._presence.empty_round()
        return True

    def _close(self) -> None:
        self.connected = False
        if self._clf is not None:
            try:
                self._clf.close()
            except OSError:
                pass
            self._clf = None

    # ------------------------------------------------------------------ feedback on the reader itself

    def indicate(self, signal: Signal) -> None:
        device = getattr(self._clf, "device", None)
        chipset = getattr(device, "chipset", None)
        if chipset is None or type(device).__module__ != "nfc.clf.acr122":
            return
        try:
            chipset.ccid_xfr_block(acr122_led_buzzer_apdu(signal), timeout=2.0)
        except OSError as error:
            log.warning("ACR122U LED/buzzer command failed: %s", error)


# ACR122U "LED and buzzer control" pseudo-APDU: FF 00 40 P2 04 T1 T2 N BUZ. P2 sets the final and blinking
# LED states (bit 0/1 final red/green, 2/3 their masks, 4/5 initial blink red/green, 6/7 blink masks);
# T1/T2 are the on/off blink durations in 100 ms, N the repetitions, BUZ when the buzzer sounds
# (1 = during T1). Distinct patterns let a worker tell the outcomes apart by ear as well as by colour.
_ACR122_PATTERNS = {
    Signal.RECORDED: (0b1010_1010, 2, 1, 1, 0x01),  # green blink, one short beep
    Signal.DUPLICATE: (0b1010_1010, 1, 1, 2, 0x01),  # green blink, two quick beeps
    Signal.UNKNOWN_CARD: (0b0101_0101, 3, 1, 2, 0x01),  # red/green alternate, two longer beeps
    Signal.UNREADABLE: (0b0101_0101, 1, 1, 4, 0x01),  # red/green alternate, four quick beeps
    Signal.ERROR: (0b0101_0101, 5, 2, 3, 0x01),  # red blink, three long beeps
    # Buzzer during T1 and T2: one unbroken 2 s tone, unlike the three beeps of ERROR.
    Signal.NOT_RECORDED: (0b0101_0101, 5, 2, 3, 0x03),
}


def acr122_led_buzzer_apdu(signal: Signal) -> bytes:
    p2, t1, t2, repeat, buzzer = _ACR122_PATTERNS[signal]
    return bytes([0xFF, 0x00, 0x40, p2, 0x04, t1, t2, repeat, buzzer])


# ---------------------------------------------------------------------------------------------- diagnostics


def diagnose(path: str, error_number: int | None = None) -> str:
    """A hint an installer can act on, from the path, the error and what the system shows."""
    if path.startswith("udp"):
        return "udp readers need nothing installed; is the virtual card running on that port?"
    if path.startswith("tty"):
        parts = path.split(":")
        node = f"/dev/tty{parts[1]}" if len(parts) > 1 else "/dev/tty?"
        if not os.path.exists(node):
            return (f"{node} does not exist: on a Raspberry Pi enable the UART (raspi-config: serial port "
                    "hardware on, login shell off) and wire the PN532 in HSU mode")
        if error_number == errno.EACCES or not os.access(node, os.R_OK | os.W_OK):
            return f"permission denied on {node}: add the agent's user to group 'dialout'"
        if error_number == errno.EBUSY:
            return f"{node} is busy: a serial console or another program holds it (raspi-config: login shell off)"
        return f"no PN532 answered on {node}: check wiring, HSU mode switches and the driver name in the path"
    hints = []
    for (vid, pid), name, node, driver in _usb_readers():
        if driver:
            hints.append(f"{name} at {node} is held by kernel driver {driver}: install udev/blacklist-nfc.conf "
                         f"to /etc/modprobe.d/ and run 'sudo modprobe -r {driver}' (or re-plug)")
        elif not os.access(node, os.R_OK | os.W_OK):
            hints.append(f"{name} at {node}: permission denied: install udev/60-gate-agent-nfc.rules and add "
                         "the agent's user to group 'nfc'")
        else:
            hints.append(f"{name} at {node} is accessible (usb:{vid:04x}:{pid:04x})")
    if hints:
        return "; ".join(hints)
    if error_number == errno.EACCES:
        return "permission denied: install udev/60-gate-agent-nfc.rules and add the agent's user to group 'nfc'"
    if error_number == errno.EBUSY:
        return "device busy: a kernel NFC driver (pn533_usb) holds it: install udev/blacklist-nfc.conf"
    return "no known USB reader is plugged in (lsusb shows what is); `gate-agent readers` lists what is found"


def _usb_readers():
    """(vid, pid), name, /dev node, bound kernel driver or '' for each known reader in sysfs."""
    for device in sorted(glob.glob("/sys/bus/usb/devices/*")):
        try:
            vid = int(_read(os.path.join(device, "idVendor")), 16)
            pid = int(_read(os.path.join(device, "idProduct")), 16)
        except (OSError, ValueError):
            continue
        name = KNOWN_USB_READERS.get((vid, pid))
        if name is None:
            continue
        bus, dev = int(_read(os.path.join(device, "busnum"))), int(_read(os.path.join(device, "devnum")))
        node = f"/dev/bus/usb/{bus:03d}/{dev:03d}"
        driver = ""
        link = device + ":1.0/driver"
        if os.path.islink(link):
            driver = os.path.basename(os.readlink(link))
        yield (vid, pid), name, node, driver if driver in KERNEL_NFC_DRIVERS else ""


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def list_readers(probe_tty: tuple[str, ...] = ("AMA0", "S0", "USB0")) -> list[dict]:
    """What is attached: USB readers from sysfs, and PN532s that answer on the given serial ports."""
    found = []
    for (vid, pid), name, node, driver in _usb_readers():
        found.append({
            "path": f"usb:{vid:04x}:{pid:04x}", "name": name, "node": node,
            "usable": not driver and os.access(node, os.R_OK | os.W_OK),
            "hint": diagnose(f"usb:{vid:04x}:{pid:04x}"),
        })
    for port in probe_tty:
        node = f"/dev/tty{port}"
        if not os.path.exists(node):
            continue
        path = f"tty:{port}:pn532"
        entry = {"path": path, "name": "PN532 (serial)", "node": node, "usable": False, "hint": ""}
        try:
            nfc = require("nfc", "gate")
            clf = nfc.ContactlessFrontend()
            if clf.open(path):
                entry.update(name=str(clf.device), usable=True)
                clf.close()
            else:
                entry["hint"] = diagnose(path)
        except OSError as error:
            entry["hint"] = diagnose(path, error.errno)
        found.append(entry)
    return found
