"""Feedback backends: GPIO through gpiozero's MockFactory (the one stand-in for hardware), the log."""

from __future__ import annotations

import logging
import time

import pytest
from gpiozero.pins.mock import MockFactory

from gate_agent.feedback import Feedback, Feedbacks, GpioFeedback, LogFeedback, Signal


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def pin_history(pin):
    return [state for _, state in pin.states]


def test_recorded_blinks_green_once_and_beeps(factory):
    feedback = GpioFeedback(green=17, red=27, buzzer=22, pin_factory=factory)
    feedback.signal(Signal.RECORDED, "seq 1")
    time.sleep(0.6)
    green, red, buzzer = (factory.pin(n) for n in (17, 27, 22))
    assert pin_history(green).count(True) == 1
    assert pin_history(buzzer).count(True) == 1
    assert True not in pin_history(red)
    feedback.close()


@pytest.mark.parametrize("signal, colour, blinks", [
    (Signal.DUPLICATE, 17, 2),
    (Signal.UNKNOWN_CARD, 27, 2),
    (Signal.ERROR, 27, 3),
])
def test_each_outcome_has_its_own_pattern(factory, signal, colour, blinks):
    feedback = GpioFeedback(green=17, red=27, buzzer=None, pin_factory=factory)
    feedback.signal(signal, "x")
    time.sleep(2.5)
    assert pin_history(factory.pin(colour)).count(True) == blinks
    other = 27 if colour == 17 else 17
    assert True not in pin_history(factory.pin(other))
    feedback.close()


def test_signal_does_not_block_the_tap_loop(factory):
    feedback = GpioFeedback(green=17, red=27, buzzer=22, pin_factory=factory)
    started = time.monotonic()
    feedback.signal(Signal.NOT_RECORDED, "disk full")
    assert time.monotonic() - started < 0.1
    feedback.close()


def test_a_failing_backend_does_not_silence_the_others(caplog):
    class Broken(Feedback):
        def signal(self, signal, detail):
            raise RuntimeError("LED board unplugged")

    seen = []

    class Recorder(Feedback):
        def signal(self, signal, detail):
            seen.append(signal)

    with caplog.at_level(logging.INFO):
        Feedbacks([Broken(), LogFeedback(), Recorder()]).signal(Signal.RECORDED, "seq 3 card DEADBEEF")
    assert seen == [Signal.RECORDED]
    assert "feedback backend Broken failed" in caplog.text
    assert "signal recorded: seq 3 card DEADBEEF" in caplog.text
