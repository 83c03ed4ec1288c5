"""What the worker at the gate sees and hears after a tap.

Honest feedback is the point: "recorded" is given only once the punch is on disk, and every other
outcome has a signal of its own. Backends: the log (always), GPIO LEDs and buzzer through gpiozero,
and the reader's own LED/buzzer (ACR122U). None of them may block the tap loop for long.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class Signal(enum.Enum):
    RECORDED = "recorded"  # the punch is on disk
    DUPLICATE = "duplicate"  # same card again within the debounce window: nothing new recorded
    UNKNOWN_CARD = "unknown_card"  # recorded, but the card is not on the site's roster
    ERROR = "error"  # the tap could not be processed (reader or software fault)
    NOT_RECORDED = "not_recorded"  # the gate cannot store punches (disk full): tell the worker to report it
    UNREADABLE = "unreadable"  # a card with no identity (a random UID): nothing recorded, use another card


class Feedback:
    """A backend: override ``signal``. ``close`` releases hardware."""

    def signal(self, signal: Signal, detail: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LogFeedback(Feedback):
    def signal(self, signal: Signal, detail: str) -> None:
        level = logging.INFO if signal in (Signal.RECORDED, Signal.DUPLICATE) else logging.WARNING
        if signal in (Signal.ERROR, Signal.NOT_RECORDED):
            level = logging.ERROR
        log.log(level, "signal %s: %s", signal.value, detail)


class ReaderFeedback(Feedback):
    """The reader's own LED and buzzer (nfcpy drives them on the ACR122U)."""

    def __init__(self, indicate: Callable[[Signal], None]):
        self._indicate = indicate

    def signal(self, signal: Signal, detail: str) -> None:
        self._indicate(signal)


class GpioFeedback(Feedback):
    """Green and red LEDs and a buzzer on GPIO pins (BCM numbers). ``pin_factory`` defaults to
    gpiozero's own choice; tests pass ``gpiozero.pins.mock.MockFactory()``."""

    # (led, on seconds, off seconds, blinks); the buzzer follows the same rhythm.
    PATTERNS = {
        Signal.RECORDED: ("green", 0.3, 0.1, 1),
        Signal.DUPLICATE: ("green", 0.1, 0.1, 2),
        Signal.UNKNOWN_CARD: ("red", 0.3, 0.2, 2),
        Signal.ERROR: ("red", 0.5, 0.2, 3),
        Signal.NOT_RECORDED: ("red", 1.0, 0.2, 3),
        Signal.UNREADABLE: ("red", 0.1, 0.1, 4),
    }

    def __init__(self, *, green: int | None, red: int | None, buzzer: int | None, pin_factory=None):
        from gpiozero import LED, Buzzer

        self.leds = {}
        if green is not None:
            self.leds["green"] = LED(green, pin_factory=pin_factory)
        if red is not None:
            self.leds["red"] = LED(red, pin_factory=pin_factory)
        self.buzzer = Buzzer(buzzer, pin_factory=pin_factory) if buzzer is not None else None

    def signal(self, signal: Signal, detail: str) -> None:
        colour, on, off, count = self.PATTERNS[signal]
        led = self.leds.get(colour)
        # background=True: gpiozero times the pattern on its own thread, the tap loop goes on.
        if led is not None:
            led.blink(on_time=on, off_time=off, n=count, background=True)
        if self.buzzer is not None:
            self.buzzer.beep(on_time=on, off_time=off, n=count, background=True)

    def close(self) -> None:
        for device in [*self.leds.values(), self.buzzer]:
            if device is not None:
                device.close()


class Feedbacks(Feedback):
    """All configured backends; one failing backend does not silence the others."""

    def __init__(self, backends: Iterable[Feedback]):
        self.backends = list(backends)

    def signal(self, signal: Signal, detail: str) -> None:
        for backend in self.backends:
            try:
                backend.signal(signal, detail)
            except Exception:  # a broken LED must never lose a punch or stop the loop
                log.exception("feedback backend %s failed", type(backend).__name__)

    def close(self) -> None:
        for backend in self.backends:
            try:
                backend.close()
            except Exception:
                log.exception("closing feedback backend %s failed", type(backend).__name__)
