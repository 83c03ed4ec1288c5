"""The gate agent: reader -> durable outbox -> feedback, and the link that delivers punches.

Threads: the reader loop (taps are signed and committed on it, then signalled), the link (MQTT and
acknowledgements), and the caller's thread, which supervises both and feeds systemd's watchdog only
while they are alive.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from .clock import SystemClock
from .config import GateConfig
from .feedback import Feedback, Feedbacks, GpioFeedback, LogFeedback, ReaderFeedback, Signal
from .keys import load_private_key
from .link import Link
from .outbox import Outbox, OutboxError
from .protocol import GateTopics, Roster, format_time
from .reader import RANDOM, CardReader, Tap
from .systemd import notify

log = logging.getLogger(__name__)

#: A loop that has not moved for this long is hung: stop feeding the watchdog so systemd restarts us.
STALL_SECONDS = 60.0
BUFFER_WARNING_RATIO = 0.8
#: While the reader is not open yet, each sign of life extends systemd's start timeout by this much.
START_EXTENSION_SECONDS = 30.0


def build_feedback(config: GateConfig, reader: CardReader, *, pin_factory=None) -> Feedbacks:
    """The log always; the reader's LED/buzzer and GPIO pins as configured."""
    backends: list[Feedback] = [LogFeedback()]
    if config.feedback.reader:
        backends.append(ReaderFeedback(reader.indicate))
    if config.feedback.gpio:
        backends.append(GpioFeedback(green=config.feedback.gpio_green, red=config.feedback.gpio_red,
                                     buzzer=config.feedback.gpio_buzzer, pin_factory=pin_factory))
    return Feedbacks(backends)


class Agent:
    def __init__(self, config: GateConfig, *, reader: CardReader, feedback: Feedback, clock=None):
        self.config = config
        self.reader = reader
        self.feedback = feedback
        self.clock = clock or SystemClock()
        self.topics = GateTopics(config.site, config.gate)
        self._key = load_private_key(config.key_file)
        self._outbox = Outbox(config.data_dir, config.site, config.gate, key=self._key)
        # status_facts() runs on the link thread: a connection of its own keeps it off the tap path's.
        self._usage = Outbox(config.data_dir, config.site, config.gate, readonly=True)
        self._buffer_warned = False
        roster = self._outbox.load_roster()
        self._roster_cards: frozenset[str] | None = roster.cards if roster else None
        self._roster_issued = roster.issued if roster else None
        window_ms = int(config.debounce_seconds * 1000)
        self._last_tap = self._outbox.last_taps(self.clock.boot_id, self.clock.monotonic_ms() - window_ms)
        self._stop = threading.Event()
        self.counters = {"recorded": 0, "duplicates": 0, "unknown_cards": 0, "not_recorded": 0,
                         "unreadable_cards": 0}
        self.link = Link(
            config.mqtt,
            self.topics,
            lambda: Outbox(config.data_dir, config.site, config.gate),
            status_facts=self.status_facts,
            on_roster=self._set_roster,
            bank_keys=config.bank_keys,
            roster_issued=self._roster_issued,
            heartbeat_seconds=config.heartbeat_seconds,
            ack_timeout=config.ack_timeout_seconds,
            ack_backoff_max=config.ack_backoff_max_seconds,
            batch_size=config.batch_size,
            window=config.window,
            retention_days=config.retention_days,
            clock=self.clock,
        )

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Block until stop(); SIGTERM handlers call stop().

        systemd hears READY only once the reader is open as well as the outbox (opened in __init__).
        Until then each round in which both loops are alive extends the start timeout, so a missing
        reader shows as "activating" with the reason in STATUS, not as a gate that seems fine; the link
        delivers the backlog meanwhile. A hung start-up is killed when the extensions stop.
        """
        self.link.start()
        reader_thread = threading.Thread(target=self._reader_loop, name="reader", daemon=True)
        reader_thread.start()
        log.info("gate %s/%s running: reader %s, direction %s, broker %s:%d", self.config.site,
                 self.config.gate, self.config.reader, self.config.direction, self.config.mqtt.host,
                 self.config.mqtt.port)
        ready = False
        extended_at = float("-inf")
        try:
            while not self._stop.wait(1.0 if ready else 0.1):
                if not self.healthy(reader_thread):
                    log.error("a loop has stalled (reader %.0f s, link %.0f s ago): withholding the watchdog",
                              time.monotonic() - self.reader.last_alive, time.monotonic() - self.link.last_alive)
                elif ready:
                    notify("WATCHDOG=1")
                elif self.reader.connected:
                    ready = True
                    notify("READY=1", f"STATUS=gate {self.config.site}/{self.config.gate} reading "
                                      f"{self.config.reader}")
                    log.info("reader %s open: ready", self.config.reader)
                elif time.monotonic() - extended_at >= 1.0:
                    extended_at = time.monotonic()
                    notify(f"EXTEND_TIMEOUT_USEC={int(START_EXTENSION_SECONDS * 1_000_000)}",
                           f"STATUS=gate {self.config.site}/{self.config.gate} waiting for reader "
                           f"{self.config.reader} (see the log)")
        finally:
            notify("STOPPING=1")
            self._stop.set()
            reader_thread.join(timeout=5)
            self.link.stop()
            self._outbox.close()
            self._usage.close()
            self.feedback.close()
            log.info("gate %s/%s stopped", self.config.site, self.config.gate)

    def stop(self) -> None:
        self._stop.set()

    def healthy(self, reader_thread: threading.Thread) -> bool:
        now = time.monotonic()
        return (reader_thread.is_alive() and now - self.reader.last_alive < STALL_SECONDS
                and now - self.link.last_alive < STALL_SECONDS)

    def _reader_loop(self) -> None:
        try:
            self.reader.run(self.handle_tap, self._stop)
        except Exception:
            log.exception("reader loop failed; stopping so that systemd restarts the agent")
            self.feedback.signal(Signal.ERROR, "reader loop failed")
            self._stop.set()

    # ------------------------------------------------------------------ one tap

    def handle_tap(self, tap: Tap) -> Signal:
        """Record a tap durably, then signal the outcome. Runs on the reader thread."""
        if tap.kind == RANDOM:
            # A random UID changes at every tap: recording it would make every tap an unknown card, and a
            # random UID that happens to equal a registered card's would be the wrong worker.
            self.counters["unreadable_cards"] += 1
            return self._signal(Signal.UNREADABLE, f"card with random UID {tap.uid} is not readable here: "
                                                   "not recorded; use another card")
        now_ms = self.clock.monotonic_ms()
        last = self._last_tap.get(tap.uid)
        if self.config.debounce_seconds > 0 and last is not None \
                and now_ms - last < self.config.debounce_seconds * 1000:
            self.counters["duplicates"] += 1
            return self._signal(Signal.DUPLICATE, f"card {tap.uid} again after {(now_ms - last) / 1000:.1f} s; "
                                                  "not a new punch")
        limit = self.config.max_buffer_mb * 1024 * 1024
        try:
            used = self._outbox.bytes_used()
        except sqlite3.Error as error:
            self.counters["not_recorded"] += 1
            return self._signal(Signal.NOT_RECORDED, f"card {tap.uid} NOT recorded: {error}")
        if used >= limit:
            self.counters["not_recorded"] += 1
            return self._signal(Signal.NOT_RECORDED, f"card {tap.uid} NOT recorded: buffer full "
                                f"({self.config.max_buffer_mb:g} MB) - unacknowledged punches are kept")
        if used >= BUFFER_WARNING_RATIO * limit and not self._buffer_warned:
            log.warning("buffer %.0f %% full (%g MB): punches are not reaching the bank; at 100 %% taps "
                        "are refused", 100 * used / limit, self.config.max_buffer_mb)
        self._buffer_warned = used >= BUFFER_WARNING_RATIO * limit
        verdict = self._verdict(tap.uid)
        try:
            punch = self._outbox.append(card=tap.uid, tech=tap.tech, reader=tap.reader,
                                        direction=self.config.direction, roster=verdict, clock=self.clock,
                                        kind=tap.kind, sun=tap.sun)
        except (sqlite3.Error, OSError, OutboxError) as error:
            self.counters["not_recorded"] += 1
            return self._signal(Signal.NOT_RECORDED, f"card {tap.uid} NOT recorded: {error}")
        durable_ms = (time.monotonic_ns() - tap.read_ns) / 1e6
        self._last_tap[tap.uid] = punch.mono_ms
        self.link.notify()
        self.counters["recorded"] += 1
        shown = tap.uid if tap.kind == "uid" else f"{tap.kind} {tap.uid}"
        detail = f"seq {punch.seq} card {shown} {punch.dir} (durable in {durable_ms:.1f} ms)"
        if verdict == "unknown":
            self.counters["unknown_cards"] += 1
            return self._signal(Signal.UNKNOWN_CARD, detail + "; card not on the roster")
        return self._signal(Signal.RECORDED, detail)

    def _signal(self, signal: Signal, detail: str) -> Signal:
        self.feedback.signal(signal, detail)
        return signal

    def _verdict(self, uid: str) -> str:
        cards = self._roster_cards
        if cards is None:
            return "none"
        return "known" if uid in cards else "unknown"

    def _set_roster(self, roster: Roster) -> None:
        # Called on the link thread; replacing the reference is atomic for the reader thread.
        self._roster_cards = roster.cards
        self._roster_issued = roster.issued

    # ------------------------------------------------------------------ status

    def status_facts(self) -> dict:
        """Heartbeat facts beyond the outbox counters (which the link adds itself)."""
        limit = self.config.max_buffer_mb * 1024 * 1024
        try:
            used = self._usage.bytes_used()
        except sqlite3.Error as error:  # report it as full: a false alarm beats a link thread that dies
            log.error("cannot measure the outbox: %s", error)
            used = limit
        return {
            "time": format_time(self.clock.now()),
            "boot": self.clock.boot_id,
            "mono_ms": self.clock.monotonic_ms(),
            "synced": self.clock.synchronised(),
            "reader": "ok" if self.reader.connected else "down",
            "buffer_pct": round(100 * used / limit, 1),
            "buffer_warning": used >= BUFFER_WARNING_RATIO * limit,
            "roster_issued": self._roster_issued,
            "counters": dict(self.counters),
        }
