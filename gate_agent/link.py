"""The gate's MQTT side: publish punches, keep a retained status, take acks, roster and resend requests.

A punch is forgotten only when the collector's ack covers its seq and names the same digest: a broker
PUBACK proves nothing (Mosquitto silently drops QoS 1 messages past a slow subscriber's queue limit).
So the link resends whatever stays unacknowledged, with a growing pause while nobody answers, and
answers the collector's resend requests for gaps it noticed.

Everything that arrives here is signed with the bank's key, which the gate pinned at enrolment: an ack,
a roster or a command that anyone else published on the broker is ignored, counted and logged. An
older roster never replaces a newer one, a command is answered once, and resends are rate-limited, so
a replayed message can neither undo the bank's word nor make the gate flood the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from . import __version__
from .mqtt import Message, MqttSession, MqttSettings
from .outbox import AckResult, Outbox
from .protocol import (
    Ack,
    BankKeys,
    GateTopics,
    ProtocolError,
    Refusal,
    Resend,
    Roster,
    decode_command,
    encode_punch_bodies,
    encode_status,
    format_time,
    parse_time,
)

log = logging.getLogger(__name__)

#: How long the pause between resends of what stays unacknowledged grows at most, by default
#: (ack_backoff_max_seconds).
DEFAULT_ACK_BACKOFF_MAX = 600.0

#: A resend command older than the newest one seen by this much is a replay (commands of one
#: housekeeping round share their time; the collector sends a new one when it still misses a range).
_COMMAND_HORIZON_S = 600.0
#: Refused messages are logged once, then at most once per this many seconds with a count: whoever
#: floods the gate's topics must not fill its SD card with log lines.
_REJECT_LOG_INTERVAL = 60.0


class ResendBudget:
    """A token bucket of punches: resend requests beyond it are answered in part, later, or not at all
    (the gate's own ack timeout resends what stays unacknowledged anyway)."""

    def __init__(self, capacity: int, per_seconds: float = 30.0, *, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.rate = capacity / per_seconds
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def take(self, wanted: int) -> int:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted


class Link:
    """Runs a thread that owns one outbox connection and a paho session."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: GateTopics,
        open_outbox: Callable[[], Outbox],
        *,
        status_facts: Callable[[], dict],
        on_roster: Callable[[Roster], None],
        bank_keys: BankKeys,
        roster_issued: str | None = None,
        heartbeat_seconds: float = 30.0,
        ack_timeout: float = 30.0,
        ack_backoff_max: float = DEFAULT_ACK_BACKOFF_MAX,
        batch_size: int = 200,
        window: int = 2000,
        retention_days: float = 30.0,
        clock=None,
    ):
        self.topics = topics
        self._open_outbox = open_outbox
        self._status_facts = status_facts
        self._on_roster = on_roster
        self.bank_keys = bank_keys
        self._roster_issued = roster_issued
        self._commands_seen: dict[tuple[str, int, int], float] = {}
        self._newest_command = ""
        self._resend_budget = ResendBudget(2 * window)
        self._rejections: dict[str, list] = {}  # reason -> [last logged (monotonic), suppressed count]
        self.bank_refuses: str | None = None  # the reason of the bank's last refusal, until it acks again
        self._advanced_at = ""  # when the bank signed the last ack that took punches (wire UTC text)
        self.heartbeat_seconds = heartbeat_seconds
        self.ack_timeout = ack_timeout
        self.ack_backoff_max = max(ack_backoff_max, ack_timeout)
        self.batch_size = batch_size
        self.window = window
        self.retention_days = retention_days
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self._events: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent_through = 0
        self._waiting_since: float | None = None
        self._ack_wait = ack_timeout
        self._next_heartbeat = time.monotonic()
        self.last_alive = time.monotonic()
        self.session = MqttSession(
            settings,
            subscriptions=[topics.ack, topics.cmd, topics.roster],
            on_message=self._events.put,
            on_connected=lambda session_present: self._events.put("connected"),
            will=(topics.status, encode_status("offline", site=topics.site, gate=topics.gate)),
        )

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="link", daemon=True)
        self._thread.start()
        self.session.start()

    def notify(self) -> None:
        """A punch was appended: publish it now rather than at the next tick."""
        self._events.put("punch")

    def stop(self) -> None:
        self._stopping.set()
        self._events.put("stop")
        if self._thread is not None:
            self._thread.join(timeout=10)
        offline = encode_status("offline", site=self.topics.site, gate=self.topics.gate)
        self.session.stop(final=[(self.topics.status, offline)])

    @property
    def connected(self) -> bool:
        return self.session.connected

    # ------------------------------------------------------------------ the link thread

    def _run(self) -> None:
        outbox = self._open_outbox()
        next_prune = time.monotonic() + 60
        try:
            while not self._stopping.is_set():
                self.last_alive = time.monotonic()
                # Heartbeats are due only while connected: offline, an overdue one must not turn the
                # wait into a busy loop (found spinning a core for as long as the broker was away).
                due = self._next_heartbeat - time.monotonic() if self.session.connected else 1.0
                timeout = max(0.0, min(due, 1.0))
                for event in self._drain(timeout):
                    self._handle(event, outbox)
                if self._stopping.is_set():
                    break
                if self.session.connected:
                    self._send_pending(outbox)
                    if time.monotonic() >= self._next_heartbeat:
                        self._publish_status(outbox)
                if time.monotonic() >= next_prune and self._clock is not None:
                    pruned = outbox.prune(self.retention_days, self._clock.now())
                    if pruned:
                        log.info("pruned %d acknowledged punches older than %g days", pruned, self.retention_days)
                    next_prune = time.monotonic() + 3600
        except Exception:
            log.exception("link thread failed")
            raise
        finally:
            outbox.close()

    def _drain(self, timeout: float) -> list:
        try:
            events = [self._events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(events) < 1000:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events

    def _handle(self, event, outbox: Outbox) -> None:
        if event == "connected":
            # Everything not yet acknowledged goes again: what was in flight may be lost.
            self._sent_through = outbox.acked_seq
            self._waiting_since = None
            self._ack_wait = self.ack_timeout
            self._publish_status(outbox)
        elif isinstance(event, Message):
            self._handle_message(event, outbox)

    def _handle_message(self, message: Message, outbox: Outbox) -> None:
        site, gate = self.topics.site, self.topics.gate
        try:
            if message.topic == self.topics.ack:
                self._handle_ack(Ack.decode(message.payload, site=site, gate=gate, keys=self.bank_keys), outbox)
            elif message.topic == self.topics.cmd:
                command = decode_command(message.payload, site=site, gate=gate, keys=self.bank_keys)
                if isinstance(command, Refusal):
                    self._handle_refusal(command, outbox)
                elif self._fresh_command(command):
                    self._handle_resend(command, outbox)
            elif message.topic == self.topics.roster:
                self._handle_roster(Roster.decode(message.payload, site=site, keys=self.bank_keys), outbox)
        except ProtocolError as error:
            self.counters[f"rejected_{error.reason}"] += 1
            self._log_rejection(error.reason, "ignored a message on %s: %s", message.topic, error)

    def _log_rejection(self, reason: str, text: str, *args) -> None:
        now = time.monotonic()
        entry = self._rejections.setdefault(reason, [-_REJECT_LOG_INTERVAL, 0])
        if now - entry[0] < _REJECT_LOG_INTERVAL:
            entry[1] += 1
            return
        suppressed, entry[:] = entry[1], [now, 0]
        log.error(text + (f" ({suppressed} more like it in the last {_REJECT_LOG_INTERVAL:.0f} s)"
                          if suppressed else ""), *args)

    def _handle_refusal(self, refusal: Refusal, outbox: Outbox) -> None:
        """The bank says why it takes nothing from this gate: say it in the log and in the heartbeat,
        until the bank acknowledges a punch again. A refusal the bank signed before an ack that took punches
        (of a message sent before the bank knew this gate, answered late) is no longer true: it is counted
        and left."""
        if self._advanced_at and refusal.issued and refusal.issued < self._advanced_at:  # wire times sort as text
            self.counters["stale_refusal"] += 1
            log.info("ignored the bank's refusal (%s) issued %s: it took punches since (%s)", refusal.reason,
                     refusal.issued, self._advanced_at)
            return
        self.bank_refuses = refusal.reason
        outbox.save_refusal({"reason": refusal.reason, "detail": refusal.detail, "issued": refusal.issued})
        self.counters[f"refused_{refusal.reason}"] += 1
        self._log_rejection(f"refused_{refusal.reason}", "the bank refuses this gate's messages: %s: %s "
                            "(punches stay here until it takes them)", refusal.reason, refusal.detail)

    def _handle_roster(self, roster: Roster, outbox: Outbox) -> None:
        if self._roster_issued is not None and roster.issued < self._roster_issued:  # wire times sort as text
            self.counters["rejected_old_roster"] += 1
            self._log_rejection("old_roster", "ignored a roster issued %s: this gate holds a newer one (%s)",
                                roster.issued, self._roster_issued)
            return
        if roster.issued == self._roster_issued:  # the retained copy again, after a reconnect
            log.info("roster of %s issued %s: already held", roster.site, roster.issued)
            return
        outbox.save_roster(roster)
        self._roster_issued = roster.issued
        self._on_roster(roster)
        log.info("roster of %s issued %s: %d cards", roster.site, roster.issued, len(roster.cards))

    def _fresh_command(self, resend: Resend) -> bool:
        """Each signed command is answered once; one older than the newest by the horizon is a replay."""
        ident = (resend.issued, resend.first, resend.last)
        newest = max(self._newest_command, resend.issued)
        horizon = format_time(parse_time(newest) - timedelta(seconds=_COMMAND_HORIZON_S))
        self._commands_seen = {k: v for k, v in self._commands_seen.items() if k[0] >= horizon}
        if ident in self._commands_seen or resend.issued < horizon:
            self.counters["rejected_replayed_command"] += 1
            self._log_rejection("replayed_command", "ignored a resend command issued %s for %d..%d: already "
                                "answered or older than the newest", resend.issued, resend.first, resend.last)
            return False
        self._commands_seen[ident] = time.monotonic()
        self._newest_command = newest
        return True

    def _handle_ack(self, ack: Ack, outbox: Outbox) -> None:
        result = outbox.acknowledge(ack)
        self.counters[f"ack_{result.value}"] += 1
        if result is AckResult.ADVANCED:
            self._advanced_at = max(self._advanced_at, ack.issued)
            if self.bank_refuses is not None:
                self.bank_refuses = None
                outbox.save_refusal(None)
                log.info("the bank takes this gate's punches again")
            self._waiting_since = time.monotonic()
            self._ack_wait = self.ack_timeout
            log.debug("collector holds punches up to %d", ack.seq)
        elif result is AckResult.BEYOND_HEAD:
            log.error("collector acknowledged seq %d but this gate has written only %d: keeping everything "
                      "(was the data directory replaced?)", ack.seq, outbox.head_seq)
        elif result is AckResult.DIGEST_MISMATCH:
            log.error("collector's punch %d differs from this gate's: keeping everything; the bank must "
                      "investigate (equivocation or a replaced data directory)", ack.seq)

    def _handle_resend(self, resend: Resend, outbox: Outbox) -> None:
        last = min(resend.last, outbox.head_seq, resend.first + self.window - 1)
        granted = self._resend_budget.take(max(0, last - resend.first + 1))
        if last >= resend.first and granted < last - resend.first + 1:
            self.counters["resends_throttled"] += 1
            self._log_rejection("throttled", "resend requests beyond %d punches per 30 s: answering %d of "
                                "%d..%d", self._resend_budget.capacity, granted, resend.first, last)
        last = resend.first + granted - 1
        rows = outbox.bodies(resend.first, last) if granted else []
        log.info("collector asked for %d..%d; resending %d punches", resend.first, resend.last, len(rows))
        self.counters["resend_requests"] += 1
        if rows and rows[0][0] != resend.first:
            log.warning("punches %d..%d were pruned here and cannot be resent", resend.first, rows[0][0] - 1)
        for start in range(0, len(rows), self.batch_size):
            if not self._publish_rows(rows[start:start + self.batch_size]):
                break

    def _send_pending(self, outbox: Outbox) -> None:
        acked, head = outbox.acked_seq, outbox.head_seq
        now = time.monotonic()
        if self._sent_through < acked:
            self._sent_through = acked
        if self._sent_through > acked:
            if self._waiting_since is None:
                self._waiting_since = now
            elif now - self._waiting_since > self._ack_wait:
                log.warning("no acknowledgement for %.0f s (acked %d, sent %d): resending from %d",
                            now - self._waiting_since, acked, self._sent_through, acked + 1)
                self.counters["ack_timeouts"] += 1
                self._sent_through = acked
                self._waiting_since = now
                # Nobody answers: do not flood the broker's queue for an absent collector.
                self._ack_wait = min(self._ack_wait * 2, self.ack_backoff_max)
        else:
            self._waiting_since = None
        limit = min(head, acked + self.window)
        while self._sent_through < limit:
            rows = outbox.bodies(self._sent_through + 1, min(limit, self._sent_through + self.batch_size))
            if not rows or not self._publish_rows(rows):
                break
            self._sent_through = rows[-1][0]
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()

    def _publish_rows(self, rows: list[tuple[int, bytes]]) -> bool:
        payload = encode_punch_bodies([body for _, body in rows])
        if not self.session.publish(self.topics.punch, payload):
            return False
        self.counters["messages_published"] += 1
        self.counters["punches_published"] += len(rows)
        return True

    def _publish_status(self, outbox: Outbox) -> None:
        facts = {"site": self.topics.site, "gate": self.topics.gate, "version": __version__,
                 "heartbeat_seconds": self.heartbeat_seconds}
        facts.update(outbox.status().to_dict())
        facts.update(self._status_facts())
        if self.bank_refuses is not None:
            facts["bank_refuses"] = self.bank_refuses
        if self.session.publish(self.topics.status, encode_status("online", **facts), retain=True):
            self.counters["heartbeats"] += 1
        self._next_heartbeat = time.monotonic() + self.heartbeat_seconds
