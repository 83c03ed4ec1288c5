"""The collector daemon: MQTT in, bursts of verified punches to disk, acknowledgements out.

Order of events for every burst: the messages are written in one transaction; only after it commits
does the broker get its PUBACKs (manual acks: a crash before the commit makes the broker deliver
them again) and does each gate get an ack naming the highest contiguous seq now on disk. If the
database refuses the write (disk full), nothing is acknowledged and the burst is retried.

The work is split into partitions of the sites (``[cluster] partitions``, one by default), each one MQTT
session, held by one process at a time under a lease (``cluster.py``): a burst commits only while its
partitions' leases are still this process's, renewed inside the burst's own transaction.

No other process can hold this loop up for long: every wait on the database is bounded (the connection's
lock and statement timeouts, derived from the lease), the messages of a gate whose lock another writer
holds are set aside and offered again with back-off while the other gates' go on, and a burst that hit a
timeout is retried later, unacknowledged, rather than failing the daemon. The lease rounds run on a
connection of their own.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from collector.attendance.maintainer import DayMaintainer
from collector.config import RETRY_FIRST_SECONDS, CollectorConfig
from collector.evidence.builder import BuildLimits, EvidenceBuilder
from collector.evidence.register import sync as register_sync
from collector.ingest.cluster import LeaseKeeper, client_id, partition_of
from collector.ingest.pipeline import BurstResult, Incoming, Ingestor, LeaseLost, gate_of_topic
from collector.ingest.sun import load_master_key
from collector.signing import load_bank_key
from collector.store import DatabaseBusy, DatabaseError, Store, display
from collector.store.partitions import PartitionKeeper
from collector.wages.figures import FigureKeeper
from gate_agent.mqtt import Message, MqttSession
from gate_agent.protocol import (
    PUNCH_SUBSCRIPTION,
    REFUSAL_REASONS,
    STATUS_SUBSCRIPTION,
    TOPIC_ROOT,
    Ack,
    GateTopics,
    ProtocolError,
    Refusal,
    Resend,
    Roster,
    format_time,
    parse_gate_topic,
    parse_time,
    public_key_text,
    roster_topic,
    utc_now_text,
)

log = logging.getLogger(__name__)

#: A gate whose messages are refused is told why at most this often (seconds) per reason.
REFUSAL_INTERVAL = 60.0
BURST_MAX = 250  # messages per transaction: acks reach the gates sooner, so they keep sending
#: Bytes per transaction at most (beyond the first message): a backlog message holds up to 500 punches, and
#: 250 of them made one burst of minutes on a loaded host, longer than a partition's lease, so processes
#: took each other's partitions mid-burst. 2 MiB is about 4,000 punches: well under a second when idle.
BURST_MAX_BYTES = 2 * 1024 * 1024
#: Seconds before messages set aside for a busy gate are first offered again (then doubling, up to the
#: lock timeout).
DEFER_FIRST = 0.25
#: In-memory counters that `collector serve` (a separate, read-only process) reports in /metrics.
PERSISTED_COUNTERS = ("acks_sent", "resend_requests", "rosters_published", "refusals_sent", "write_failures",
                      "ingest_lag_ms_sum", "ingest_lag_count", "lock_wait_us_sum", "bursts",
                      "lock_timeouts", "messages_deferred")


#: Bytes of received messages waiting for ingest. The Receive Maximum bounds their number, not their
#: size (a batch of 500 punches is ~200 KB); past this, paho's thread waits, stops reading the socket, and
#: the broker holds the rest, so memory stays bounded whatever the gates send.
INBOX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message as the ingest thread takes it from the inbox."""

    arrived: float  # time.monotonic() when paho handed it over: ingest lag includes the wait in the inbox
    partition: int  # whose session received it (and acks it)
    message: Message


class Inbox:
    """Messages from paho's network threads (one per partition session) to the ingest thread, bounded in
    bytes. Each carries its arrival time and the partition whose session received it."""

    def __init__(self, max_bytes: int, stop: threading.Event):
        self.max_bytes = max_bytes
        self._items: deque[Arrival] = deque()
        self._bytes = 0
        self._stop = stop
        self._changed = threading.Condition()

    def put(self, message: Message, partition: int = 0) -> None:
        with self._changed:
            while self._bytes >= self.max_bytes and not self._stop.is_set():
                self._changed.wait(0.5)
            # The arrival time travels with the message: ingest lag includes the wait in the queue.
            self._items.append(Arrival(time.monotonic(), partition, message))
            self._bytes += len(message.payload)
            self._changed.notify_all()

    def take(self, limit: int, timeout: float, max_bytes: int = BURST_MAX_BYTES) -> list[Arrival]:
        """Up to ``limit`` messages and ``max_bytes`` of payload (always at least one message, whatever its
        size); their bytes stay counted until ``done`` (they are in memory until then)."""
        with self._changed:
            if not self._items:
                self._changed.wait(timeout)
            taken: list[Arrival] = []
            size = 0
            while self._items and len(taken) < limit:
                size += len(self._items[0].message.payload)
                if taken and size > max_bytes:
                    break
                taken.append(self._items.popleft())
            return taken

    def done(self, taken: list[Arrival]) -> None:
        with self._changed:
            self._bytes -= sum(len(arrival.message.payload) for arrival in taken)
            self._changed.notify_all()


class Partition:
    """One partition of the sites: its MQTT session (its own client id) while this process holds it."""

    def __init__(self, number: int, service: CollectorService):
        self.number = number
        self.sites: set[str] = set()
        config = service.config
        settings = dataclasses.replace(config.mqtt, client_id=client_id(config.mqtt.client_id, number,
                                                                        config.partitions))
        self.rosters: dict[str, frozenset[str]] = {}
        self.rosters_stale = True
        self.disconnected_since: float | None = None
        self.session = MqttSession(
            settings,
            subscriptions=self._subscriptions(service),
            on_message=lambda message: service.inbox.put(message, number),
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            manual_ack=True,
            # The broker may send this many messages before our PUBACKs: bursts can be this large.
            receive_maximum=config.receive_maximum,
            max_inflight=100,
            logger=logging.getLogger("collector.mqtt"),
        )

    def _subscriptions(self, service: CollectorService) -> list[str]:
        if service.config.partitions == 1:
            return [PUNCH_SUBSCRIPTION, STATUS_SUBSCRIPTION]  # every site, and stray topics for the quarantine
        self.sites = service.sites_of(self.number)
        return [topic for site in sorted(self.sites) for topic in site_topics(site)]

    def add_sites(self, sites: set[str]) -> None:
        """Sites registered since the session started (several partitions: each subscribes its own)."""
        new = sites - self.sites
        if new:
            self.sites |= new
            self.session.subscribe([topic for site in sorted(new) for topic in site_topics(site)])

    def _on_connected(self, session_present: bool) -> None:
        self.disconnected_since = None
        self.rosters.clear()  # publish every roster again (retained, so this is idempotent)
        self.rosters_stale = True

    def _on_disconnected(self) -> None:
        self.disconnected_since = time.monotonic()


def site_topics(site: str) -> list[str]:
    return [f"{TOPIC_ROOT}/{site}/+/punch", f"{TOPIC_ROOT}/{site}/+/status"]


class CollectorService:
    def __init__(self, config: CollectorConfig):
        self.config = config
        self._key = load_bank_key(config)  # before anything starts: without it no gate would take an ack
        config.mqtt  # noqa: B018 - a bad [mqtt] table is refused now, not when a partition first connects
        self._timeouts = config.timeouts(daemon=True)
        self.store = Store(config.db, timeouts=self._timeouts)
        self.store.record_bank_key(public_key_text(self._key.public_key()))
        self._sync_register()  # keys registered before the register, or changed without the bank's key
        self.ingestor = Ingestor(self.store, future_tolerance=config.future_tolerance_seconds,
                                 backwards_tolerance=config.backwards_tolerance_seconds,
                                 sun_key=load_master_key(config))
        self._stop = threading.Event()
        self.inbox = Inbox(INBOX_BYTES, self._stop)
        self.counters: Counter[str] = Counter()
        self._persisted: Counter[str] = Counter()
        self._gauges: dict[str, float] = {}
        self._last_resend: dict[tuple[str, str], float] = {}
        self._refused_sent: dict[tuple[str, str, str], float] = {}
        self._last_punch_mono: dict[tuple[str, str], float] = {}
        self._dirty: set[tuple[str, str]] = {(g["site"], g["gate"]) for g in self.store.gates(with_gaps=False)}
        self._registry_version = self.store.registry_version()
        self._rosters_checked, self._rosters_due = -1, 0.0
        self._site_names: list[str] = [s["site"] for s in self.store.sites()]
        # The lease rounds' own connection: no burst's transaction or data lock stands in their way.
        self.keeper = LeaseKeeper(Store(config.db, upgrade=False, timeouts=self._timeouts),
                                  partitions=config.partitions, ttl=config.lease_seconds, instance=config.instance)
        self.partitions: dict[int, Partition] = {}
        # Evidence is built off this loop: a thread with its own connection, each file in a capped child.
        self.evidence = EvidenceBuilder(
            config.db, config.signing_key, instance=self.keeper.instance, timeouts=self._timeouts,
            child_timeouts=config.timeouts(),
            limits=BuildLimits(memory_bytes=config.evidence_memory_megabytes * 1024 * 1024,
                               seconds=config.evidence_build_seconds,
                               document_bytes=config.evidence_limits.stored_bytes))
        # Days are recomputed off this loop too: ingest only leaves marks (collector.attendance.days).
        self.days = DayMaintainer(config.db, timeouts=self._timeouts)
        # And the figures /metrics shows of the whole bank (arrears per site...), never computed per scrape.
        # And the months of the punches table ahead (PostgreSQL), made before a punch needs one.
        self.punch_partitions = PartitionKeeper(config.db, timeouts=self._timeouts) \
            if self.store.db.dialect == "postgresql" else None
        self.figures = FigureKeeper(config.db, timeouts=self._timeouts, refresh_seconds=config.figures_refresh_seconds,
                                    grace=timedelta(hours=config.final_grace_hours))
        #: Messages set aside, unacknowledged, because another writer held their gate: in arrival order,
        #: offered again at ``_deferred_due``; later messages of those gates wait behind them.
        self._deferred: list[Arrival] = []
        self._deferred_due = 0.0
        self._deferred_delay = DEFER_FIRST
        self.last_alive = time.monotonic()

    def sites_of(self, partition: int) -> set[str]:
        return {site for site in self._site_names if partition_of(site, self.config.partitions) == partition}

    def _partition_of_site(self, site: str) -> Partition | None:
        """The partition of a site, if this process holds it."""
        return self.partitions.get(partition_of(site, self.config.partitions))

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        from gate_agent.systemd import notify

        self._leases()
        self.evidence.start()
        self.days.start()
        self.figures.start()
        if self.punch_partitions is not None:
            self.punch_partitions.start()
        notify("READY=1", "STATUS=collecting")
        log.info("collector %s running: database %s, broker %s:%d, %d partition(s), holding %s",
                 self.keeper.instance, display(self.config.db), self.config.mqtt.host, self.config.mqtt.port,
                 self.config.partitions, sorted(self.partitions) or "none yet")
        next_housekeeping = next_leases = 0.0
        try:
            while not self._stop.is_set():
                self.last_alive = time.monotonic()
                batch = self.inbox.take(BURST_MAX, timeout=0.2)
                if batch:
                    try:
                        self._process(batch)
                    finally:
                        self.inbox.done(batch)
                if self._deferred and time.monotonic() >= self._deferred_due:
                    self._retry_deferred()
                if time.monotonic() >= next_leases:
                    self._leases()
                    next_leases = time.monotonic() + self.config.lease_seconds / 3
                if time.monotonic() >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = time.monotonic() + min(1.0, self.config.gap_wait_seconds / 2)
                notify("WATCHDOG=1")
        finally:
            notify("STOPPING=1")
            self.figures.stop()
            if self.punch_partitions is not None:
                self.punch_partitions.stop()
            self.days.stop()
            self.evidence.stop()
            for number in list(self.partitions):
                self._close_partition(number)
            self.keeper.leave()
            self.keeper.store.close()
            self.ingestor.flush_log(force=True)
            try:
                self._persist_metrics()
            except DatabaseError as error:
                log.error("cannot save metrics: %s", error)
            self.store.close()
            log.info("collector stopped")

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ partitions

    def _leases(self) -> None:
        """One lease round: open the sessions of partitions gained, close those lost or given back."""
        unreachable = [number for number, partition in self.partitions.items()
                       if partition.disconnected_since is not None
                       and time.monotonic() - partition.disconnected_since > 2 * self.config.lease_seconds]
        change = self.keeper.tick(unreachable)
        for number in change.lost:
            self._close_partition(number)
        for number in change.gained:
            partition = self.partitions[number] = Partition(number, self)
            partition.session.start()

    def _close_partition(self, number: int) -> None:
        """Disconnect without acknowledging what is not yet on disk: the broker keeps it for the
        partition's next holder, who connects with the same client id."""
        partition = self.partitions.pop(number, None)
        if partition is not None:
            partition.session.stop()
        self.keeper.drop(number)
        # Set aside messages came through that session: its next holder receives them again.
        self._deferred = [arrival for arrival in self._deferred if arrival.partition != number]

    # ------------------------------------------------------------------ bursts

    def _process(self, arrivals: list[Arrival]) -> None:
        # A partition given back or lost since these arrived: its next holder receives them again.
        arrivals = [arrival for arrival in arrivals if arrival.partition in self.partitions]
        if self._deferred:
            # A gate's messages are written in order: those of a gate with messages set aside wait behind them.
            waiting = {gate_of_topic(arrival.message.topic) for arrival in self._deferred} - {None}
            behind = [arrival for arrival in arrivals if gate_of_topic(arrival.message.topic) in waiting]
            if behind:
                self._deferred.extend(behind)
                arrivals = [arrival for arrival in arrivals if gate_of_topic(arrival.message.topic) not in waiting]
        self._write(arrivals)

    def _retry_deferred(self) -> None:
        """Offer the messages set aside again (as much as one burst takes), without waiting for a gate
        still held: it is tried again after a longer pause, while everything else goes on."""
        waiting = [arrival for arrival in self._deferred if arrival.partition in self.partitions]
        size, count = 0, 0
        for arrival in waiting:
            size += len(arrival.message.payload)
            if count >= BURST_MAX or (count and size > BURST_MAX_BYTES):
                break
            count += 1
        self._deferred = waiting[count:]
        retried = waiting[:count]
        self._write(retried, lock_wait=0.0)
        still = {id(arrival) for arrival in self._deferred}
        if not self._deferred:
            self._deferred_delay = DEFER_FIRST
        elif any(id(arrival) in still for arrival in retried):
            self._deferred_delay = min(2 * self._deferred_delay, max(DEFER_FIRST, self._timeouts.lock))
            self._deferred_due = time.monotonic() + self._deferred_delay
        else:
            self._deferred_due = 0.0  # that part went through: the rest at once

    def _set_aside(self, arrivals: list[Arrival], why: str, again: bool = False) -> None:
        """Leave these messages unacknowledged and offer them again later, before anything that came after
        them (they are the oldest of their gates). Logged when first set aside; each retry only counted."""
        self.counters["messages_deferred"] += len(arrivals)
        if not self._deferred:
            self._deferred_due = time.monotonic() + self._deferred_delay
        self._deferred[:0] = arrivals
        log.log(logging.DEBUG if again else logging.INFO,
                "%d message(s) set aside, unacknowledged, to be written later: %s", len(arrivals), why)

    def _write(self, arrivals: list[Arrival], lock_wait: float | None = None) -> None:
        """One burst: written and acknowledged, or (the parts another writer holds up) set aside."""
        delay = RETRY_FIRST_SECONDS
        while arrivals:
            now = utc_now_text()
            incoming = [Incoming(arrival.message.topic, arrival.message.payload, now) for arrival in arrivals]
            involved = {arrival.partition for arrival in arrivals}
            try:
                result = self.ingestor.ingest(incoming, lock_wait=lock_wait,
                                              fence=lambda parts=involved: self.keeper.fence(parts, self.store))
                break
            except DatabaseBusy as error:
                # Another writer (paused, hung, or just slow) held what the burst needed past the lock or
                # statement timeout: nothing was kept, so nothing is acknowledged; the loop goes on.
                self.counters["lock_timeouts"] += 1
                log.warning("burst of %d message(s) timed out waiting on the database (%s)", len(arrivals), error)
                self._set_aside(arrivals, "the database was busy", again=lock_wait == 0.0)
                return
            except LeaseLost as lost:
                for number in lost.partitions:
                    log.warning("partition %d: lease taken over; leaving its messages to the new holder", number)
                    self._close_partition(number)
                arrivals = [arrival for arrival in arrivals if arrival.partition in self.partitions]
                continue
            except DatabaseError as error:
                # Nothing of this burst is acknowledged: the broker and the gates keep it.
                self.counters["write_failures"] += 1
                log.error("cannot write to %s (%s); acknowledging nothing, retrying in %.1f s",
                          display(self.config.db), error, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.config.write_retry_max_seconds)
        else:
            return
        if result.deferred:
            left_out = set(result.deferred)
            self._set_aside([arrivals[i] for i in result.deferred],
                            "gate(s) " + ", ".join(f"{site}/{gate}" for site, gate in sorted(result.busy))
                            + " held by another writer", again=lock_wait == 0.0)
            arrivals = [arrival for i, arrival in enumerate(arrivals) if i not in left_out]
            if not arrivals:
                return
        committed = time.monotonic()
        lags = [committed - arrival.arrived for arrival in arrivals]
        self.counters["ingest_lag_ms_sum"] += round(1000 * sum(lags))
        self.counters["ingest_lag_count"] += len(lags)
        self._gauges["ingest_lag_seconds_last"] = max(lags)
        self.counters["lock_wait_us_sum"] += round(1e6 * result.lock_wait)
        self.counters["bursts"] += 1
        for arrival in arrivals:
            self.partitions[arrival.partition].session.ack(arrival.message)
        self._after_commit(result)

    def _after_commit(self, result: BurstResult) -> None:
        self.counters.update(result.counts)
        self._answer_refused(result)
        now = time.monotonic()
        for ident, ack in result.acks.items():
            self._publish_ack(ident, ack)
            self._last_punch_mono[ident] = now
        for ident, status in result.statuses.items():
            # A gate that reports an older acked seq than we hold missed our ack: say it again.
            held = self.store.gate_progress(*ident)
            acked = status.get("acked_seq")
            if isinstance(acked, int) and acked < held.contiguous_seq and held.contiguous_digest \
                    and ident not in result.acks:
                self._publish_ack(ident, Ack(held.contiguous_seq, held.contiguous_digest))
        self._dirty |= result.touched | set(result.statuses)

    def _answer_refused(self, result: BurstResult) -> None:
        """Tell a gate why its punches or statuses are refused (unknown gate or key, deactivated...), signed,
        at most once a minute per gate and reason: its log and heartbeat then say why no ack comes."""
        now = time.monotonic()
        for key, refused in result.refusals.items():
            reason = key.reason
            if reason not in REFUSAL_REASONS:
                continue
            try:
                site, gate, _ = parse_gate_topic(key.topic)
            except ProtocolError:
                continue
            partition = self._partition_of_site(site)
            if partition is None or now - self._refused_sent.get((site, gate, reason), -1e9) < REFUSAL_INTERVAL:
                continue
            payload = Refusal(reason, refused.detail).sign(site, gate, utc_now_text(), self._key)
            if partition.session.publish(GateTopics(site, gate).cmd, payload):
                self._refused_sent[(site, gate, reason)] = now
                self.counters["refusals_sent"] += 1

    def _publish_ack(self, ident: tuple[str, str], ack: Ack) -> None:
        site, _ = ident
        partition = self._partition_of_site(site)
        if partition is None:
            return  # given back meanwhile; the new holder acks on the gate's next heartbeat
        payload = ack.sign(*ident, utc_now_text(), self._key)
        if partition.session.publish(GateTopics(*ident).ack, payload, retain=True):
            self.counters["acks_sent"] += 1

    # ------------------------------------------------------------------ housekeeping: gaps and rosters

    def _housekeeping(self) -> None:
        self.ingestor.flush_log()
        try:
            self._follow_registry()
            self._check_gaps()
            self._publish_rosters()
            self._persist_metrics()
        except DatabaseError as error:
            log.error("housekeeping failed: %s", error)

    def _follow_registry(self) -> None:
        """New sites: their partition's session subscribes their topics."""
        version = self.store.registry_version()
        if version == self._registry_version:
            return
        self._registry_version = version
        self._sync_register()
        self._site_names = [s["site"] for s in self.store.sites()]
        if self.config.partitions > 1:
            for number, partition in self.partitions.items():
                partition.add_sites(self.sites_of(number))
        self._dirty |= {(g["site"], g["gate"]) for g in self.store.gates(with_gaps=False)}

    def _sync_register(self) -> None:
        """Sign into the register of gate keys every key change it does not record yet."""
        for entry in register_sync(self.store, self._key):
            log.info("register of gate keys: entry %d: %s key %s of %s/%s (since %s)", entry["index"],
                     entry["action"], entry["key_id"], entry["site"], entry["gate"], entry["since"])

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
        now_text, now = utc_now_text(), time.monotonic()
        dirty, self._dirty = self._dirty, set()
        for site, gate in sorted(dirty):
            partition = self._partition_of_site(site)
            if partition is None:
                continue  # another process's partition: its holder looks after it
            if not partition.session.connected:
                self._dirty.add((site, gate))
                continue
            try:
                open_rows = self.store.record_gaps(site, gate, now_text)
            except DatabaseBusy as error:
                log.info("gate %s/%s: gaps not reconciled this round (%s)", site, gate, error)
                self._dirty.add((site, gate))
                continue
            if open_rows:
                self._dirty.add((site, gate))  # look again until filled
            for row in open_rows:
                age = (parse_time(now_text) - parse_time(row["detected_at"])).total_seconds()
                since = (parse_time(now_text) - parse_time(row["requested_at"])).total_seconds() \
                    if row["requested_at"] else None
                if age >= self.config.gap_wait_seconds and (since is None or since >= self.config.resend_interval_seconds):
                    self._request_resend(partition, (site, gate), row["first"], row["last"])
                    self.store.note_resend(row["id"], now_text)
            self._check_tail(partition, site, gate, now)

    def _check_tail(self, partition: Partition, site: str, gate: str, now: float) -> None:
        """A gate that says it wrote more than we hold, and has gone quiet, lost its tail in transit."""
        status = self.store.gate_status(site, gate)
        if not status or status.get("state") != "online":
            return
        max_seq = self.store.gate_progress(site, gate).max_seq
        last_seq = status.get("last_seq")
        quiet = now - self._last_punch_mono.get((site, gate), 0.0) >= self.config.gap_wait_seconds
        if isinstance(last_seq, int) and last_seq > max_seq and quiet:
            self._dirty.add((site, gate))
            if now - self._last_resend.get((site, gate), -1e9) >= self.config.resend_interval_seconds:
                self._request_resend(partition, (site, gate), max_seq + 1, last_seq)

    def _request_resend(self, partition: Partition, ident: tuple[str, str], first: int, last: int) -> None:
        payload = Resend(first, last).sign(*ident, utc_now_text(), self._key)
        if partition.session.publish(GateTopics(*ident).cmd, payload):
            self._last_resend[ident] = time.monotonic()
            self.counters["resend_requests"] += 1
            log.warning("gate %s/%s: punches %d..%d missing; resend requested", *ident, first, last)

    def _publish_rosters(self) -> None:
        """Each held site's roster, when it may have changed: after a registry change, a (re)connect, or
        every roster_interval_seconds (a card or an assignment may start or end by the clock alone)."""
        now_mono = time.monotonic()
        reconnected = any(p.rosters_stale for p in self.partitions.values())
        if self._registry_version == self._rosters_checked and now_mono < self._rosters_due and not reconnected:
            return
        self._rosters_checked, self._rosters_due = self._registry_version, now_mono + self.config.roster_interval_seconds
        now = format_time(datetime.now(UTC))
        for site in self._site_names:
            partition = self.partitions.get(partition_of(site, self.config.partitions))
            if partition is None:
                continue  # another process's
            if not partition.session.connected:
                self._rosters_due = 0.0  # look again next round
                continue
            # The site's roster: the cards of the workers assigned to it now, not every card of the bank.
            cards = frozenset(self.store.cards_valid_at(now, site))
            if partition.rosters.get(site) == cards:
                continue
            payload = Roster(site, now, cards).sign(self._key)
            if partition.session.publish(roster_topic(site), payload, retain=True):
                partition.rosters[site] = cards
                self.counters["rosters_published"] += 1
                log.info("roster of %s published: %d cards", site, len(cards))
            else:
                self._rosters_due = 0.0
        for partition in self.partitions.values():
            if partition.session.connected:
                partition.rosters_stale = False
