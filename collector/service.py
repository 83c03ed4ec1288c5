"""The collector daemon: MQTT in, bursts of verified punches to disk, acknowledgements out.

Order of events for every burst: the messages are written in one transaction; only after it commits
does the broker get its PUBACKs (manual acks: a crash before the commit makes the broker deliver
them again) and does each gate get an ack naming the highest contiguous seq now on disk. If the
database refuses the write (disk full), nothing is acknowledged and the burst is retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime

from gate_agent.mqtt import Message, MqttSession
from gate_agent.protocol import (
    PUNCH_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    Ack,
    GateTopics,
    Resend,
    Roster,
    format_time,
    parse_time,
    public_key_text,
    roster_topic,
    utc_now_text,
)

from .config import CollectorConfig
from .ingest import BurstResult, Incoming, Ingestor
from .signing import load_bank_key
from .store import DatabaseError, Store, display

log = logging.getLogger(__name__)

BURST_MAX = 250  # messages per transaction: acks reach the gates sooner, so they keep sending
RETRY_DELAYS = (0.5, 30.0)
#: In-memory counters that `collector serve` (a separate, read-only process) reports in /metrics.
PERSISTED_COUNTERS = ("acks_sent", "resend_requests", "rosters_published", "write_failures",
                      "ingest_lag_ms_sum", "ingest_lag_count")


#: Bytes of received messages waiting for ingest. The Receive Maximum bounds their number, not their
#: size (a batch of 500 punches is ~200 KB); past this, paho's thread waits, stops reading the socket, and
#: the broker holds the rest, so memory stays bounded whatever the gates send.
INBOX_BYTES = 16 * 1024 * 1024


class Inbox:
    """Messages from paho's network thread to the ingest thread, bounded in bytes."""

    def __init__(self, max_bytes: int, stop: threading.Event):
        self.max_bytes = max_bytes
        self._items: deque[tuple[float, Message]] = deque()
        self._bytes = 0
        self._stop = stop
        self._changed = threading.Condition()

    def put(self, message: Message) -> None:
        with self._changed:
            while self._bytes >= self.max_bytes and not self._stop.is_set():
                self._changed.wait(0.5)
            # The arrival time travels with the message: ingest lag includes the wait in the queue.
            self._items.append((time.monotonic(), message))
            self._bytes += len(message.payload)
            self._changed.notify_all()

    def take(self, limit: int, timeout: float) -> list[tuple[float, Message]]:
        """Up to ``limit`` messages; their bytes stay counted until ``done`` (they are in memory until then)."""
        with self._changed:
            if not self._items:
                self._changed.wait(timeout)
            return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def done(self, taken: list[tuple[float, Message]]) -> None:
        with self._changed:
            self._bytes -= sum(len(message.payload) for _, message in taken)
            self._changed.notify_all()


class CollectorService:
    def __init__(self, config: CollectorConfig):
        self.config = config
        self._key = load_bank_key(config)  # before anything starts: without it no gate would take an ack
        mqtt = config.mqtt
        self.store = Store(config.db)
        self.store.record_bank_key(public_key_text(self._key.public_key()))
        self.ingestor = Ingestor(self.store, future_tolerance=config.future_tolerance_seconds,
                                 backwards_tolerance=config.backwards_tolerance_seconds)
        self._stop = threading.Event()
        self._inbox = Inbox(INBOX_BYTES, self._stop)
        self.counters: Counter[str] = Counter()
        self._persisted: Counter[str] = Counter()
        self._gauges: dict[str, float] = {}
        self._rosters: dict[str, frozenset[str]] = {}
        self._last_resend: dict[tuple[str, str], float] = {}
        self._last_punch_mono: dict[tuple[str, str], float] = {}
        self._dirty: set[tuple[str, str]] = {(g["site"], g["gate"]) for g in self.store.gates(with_gaps=False)}
        self.session = MqttSession(
            mqtt,
            subscriptions=[PUNCH_SUBSCRIPTION, STATUS_SUBSCRIPTION],
            on_message=self._inbox.put,
            on_connected=self._on_connected,
            manual_ack=True,
            # The broker may send this many messages before our PUBACKs: bursts can be this large.
            receive_maximum=config.receive_maximum,
            max_inflight=100,
        )
        self.last_alive = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        from gate_agent.systemd import notify

        self.session.start()
        notify("READY=1", "STATUS=collecting")
        log.info("collector running: database %s, broker %s:%d", display(self.config.db), self.config.mqtt.host,
                 self.config.mqtt.port)
        next_housekeeping = 0.0
        try:
            while not self._stop.is_set():
                self.last_alive = time.monotonic()
                batch = self._inbox.take(BURST_MAX, timeout=0.2)
                if batch:
                    try:
                        self._process(batch)
                    finally:
                        self._inbox.done(batch)
                if time.monotonic() >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = time.monotonic() + min(1.0, self.config.gap_wait_seconds / 2)
                notify("WATCHDOG=1")
        finally:
            notify("STOPPING=1")
            self.session.stop()
            self.ingestor.flush_log(force=True)
            try:
                self._persist_metrics()
            except DatabaseError as error:
                log.error("cannot save metrics: %s", error)
            self.store.close()
            log.info("collector stopped")

    def stop(self) -> None:
        self._stop.set()

    def _on_connected(self, session_present: bool) -> None:
        self._rosters.clear()  # publish every roster again (retained, so this is idempotent)

    # ------------------------------------------------------------------ bursts

    def _process(self, arrivals: list[tuple[float, Message]]) -> None:
        batch = [message for _, message in arrivals]
        now = utc_now_text()
        incoming = [Incoming(m.topic, m.payload, now) for m in batch]
        delay = RETRY_DELAYS[0]
        while True:
            try:
                result = self.ingestor.ingest(incoming)
                break
            except DatabaseError as error:
                # Nothing of this burst is acknowledged: the broker and the gates keep it.
                self.counters["write_failures"] += 1
                log.error("cannot write to %s (%s); acknowledging nothing, retrying in %.1f s",
                          display(self.config.db), error, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, RETRY_DELAYS[1])
        committed = time.monotonic()
        lags = [committed - arrived for arrived, _ in arrivals]
        self.counters["ingest_lag_ms_sum"] += round(1000 * sum(lags))
        self.counters["ingest_lag_count"] += len(lags)
        self._gauges["ingest_lag_seconds_last"] = max(lags)
        for message in batch:
            self.session.ack(message)
        self._after_commit(result)

    def _after_commit(self, result: BurstResult) -> None:
        self.counters.update(result.counts)
        now = time.monotonic()
        for ident, ack in result.acks.items():
            self._publish_ack(ident, ack)
            self._last_punch_mono[ident] = now
        for ident, status in result.statuses.items():
            # A gate that reports an older acked seq than we hold missed our ack: say it again.
            contiguous, digest, _ = self.store.gate_progress(*ident)
            acked = status.get("acked_seq")
            if isinstance(acked, int) and acked < contiguous and digest and ident not in result.acks:
                self._publish_ack(ident, Ack(contiguous, digest))
        self._dirty |= result.touched | set(result.statuses)

    def _publish_ack(self, ident: tuple[str, str], ack: Ack) -> None:
        topics = GateTopics(*ident)
        if self.session.publish(topics.ack, ack.sign(*ident, utc_now_text(), self._key), retain=True):
            self.counters["acks_sent"] += 1

    # ------------------------------------------------------------------ housekeeping: gaps and rosters

    def _housekeeping(self) -> None:
        self.ingestor.flush_log()
        try:
            self._check_gaps()
            self._publish_rosters()
            self._persist_metrics()
        except DatabaseError as error:
            log.error("housekeeping failed: %s", error)

    def _persist_metrics(self) -> None:
        """Write what only this process counts (acks sent, ingest lag) for `collector serve`: one small
        transaction at most per housekeeping round, none while idle, never on the ingest path."""
        deltas = {name: self.counters[name] - self._persisted[name] for name in PERSISTED_COUNTERS}
        deltas = {name: value for name, value in deltas.items() if value}
        if not deltas and not self._gauges:
            return
        with self.store.transaction():
            self.store.add_counters(deltas)
            self.store.set_gauges(self._gauges, utc_now_text())
        self._persisted.update(deltas)
        self._gauges = {}

    def _check_gaps(self) -> None:
        if not self.session.connected:
            return
        now_text, now = utc_now_text(), time.monotonic()
        dirty, self._dirty = self._dirty, set()
        for site, gate in sorted(dirty):
            open_rows = self.store.record_gaps(site, gate, self.store.open_gaps(site, gate), now_text)
            if open_rows:
                self._dirty.add((site, gate))  # look again until filled
            for row in open_rows:
                age = (parse_time(now_text) - parse_time(row["detected_at"])).total_seconds()
                since = (parse_time(now_text) - parse_time(row["requested_at"])).total_seconds() \
                    if row["requested_at"] else None
                if age >= self.config.gap_wait_seconds and (since is None or since >= self.config.resend_interval_seconds):
                    self._request_resend((site, gate), row["first"], row["last"])
                    self.store.note_resend(row["id"], now_text)
            self._check_tail(site, gate, now)

    def _check_tail(self, site: str, gate: str, now: float) -> None:
        """A gate that says it wrote more than we hold, and has gone quiet, lost its tail in transit."""
        status = self.store.gate_status(site, gate)
        if not status or status.get("state") != "online":
            return
        _, _, max_seq = self.store.gate_progress(site, gate)
        last_seq = status.get("last_seq")
        quiet = now - self._last_punch_mono.get((site, gate), 0.0) >= self.config.gap_wait_seconds
        if isinstance(last_seq, int) and last_seq > max_seq and quiet:
            self._dirty.add((site, gate))
            if now - self._last_resend.get((site, gate), -1e9) >= self.config.resend_interval_seconds:
                self._request_resend((site, gate), max_seq + 1, last_seq)

    def _request_resend(self, ident: tuple[str, str], first: int, last: int) -> None:
        payload = Resend(first, last).sign(*ident, utc_now_text(), self._key)
        if self.session.publish(GateTopics(*ident).cmd, payload):
            self._last_resend[ident] = time.monotonic()
            self.counters["resend_requests"] += 1
            log.warning("gate %s/%s: punches %d..%d missing; resend requested", *ident, first, last)

    def _publish_rosters(self) -> None:
        if not self.session.connected:
            return
        now = format_time(datetime.now(UTC))
        cards = frozenset(self.store.cards_valid_at(now))
        for site in self.store.sites():
            if self._rosters.get(site["site"]) == cards:
                continue
            payload = Roster(site["site"], now, cards).sign(self._key)
            if self.session.publish(roster_topic(site["site"]), payload, retain=True):
                self._rosters[site["site"]] = cards
                self.counters["rosters_published"] += 1
                log.info("roster of %s published: %d cards", site["site"], len(cards))
