"""Ingest: decode -> verify -> store exactly once, or quarantine with a reason; then say what to ack.

A burst of messages is one transaction. Every message ends in exactly one of: stored, duplicate
(an identical redelivery), equivocation (a different, validly signed punch under a held seq: both are
kept as evidence, neither silently wins), or quarantine. Nothing raises out of here but a database
error, which fails the whole burst so that nothing of it is acknowledged.

Signatures are checked on worker threads ahead of the sequential pass: Ed25519 verification is most
of ingest's work and ``cryptography`` releases the GIL while it runs, so the other cores verify the
burst while this thread writes it (the decisions and their order are exactly those of the plain loop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta

from cryptography.exceptions import InvalidSignature

from collector.ingest import sun
from collector.localtime import PLAUSIBLE_FROM, plausible_until
from collector.store import OTHER_TOPICS, DatabaseError, GateKeys, Link, QuarantineLimits, Store, Tail
from gate_agent.logsetup import escape_control
from gate_agent.protocol import (
    Ack,
    ProtocolError,
    Punch,
    decode_punch_message,
    decode_status,
    format_time,
    parse_gate_topic,
    parse_time,
    verify_punch,
)

log = logging.getLogger(__name__)

#: Bursts with fewer punches than this are verified inline (threads would cost more than they save).
PARALLEL_FROM = 32
#: Punches per verification job handed to a worker thread.
CHUNK = 64
#: Messages written under one savepoint (a bug in one replays its group a message at a time).
GROUP = 64
GROUP_BYTES = 64 * 1024
#: Payload bytes decoded and verified ahead of the writes (about 2500 punches).
LOOKAHEAD_BYTES = 1 << 20


class LeaseLost(Exception):
    """A burst's partitions are no longer this process's (another took them over): nothing was written."""

    def __init__(self, partitions: list[int]):
        super().__init__(f"lease of partition(s) {partitions} lost")
        self.partitions = partitions


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: str  # collector's UTC time text


@dataclass(frozen=True, slots=True)
class RefusalKey:
    """What refusals are counted and logged by: the log that tells of them, the topic and the reason."""

    log: str  # "quarantined" or "ignored"
    topic: str
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """How many messages of a burst were refused alike, and the first one's detail."""

    count: int
    detail: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What a burst had recorded before a group of messages (restored if the group is rolled back)."""

    touched: frozenset[tuple[str, str]]
    statuses: dict[tuple[str, str], dict]
    counts: Counter
    refusals: dict[RefusalKey, Refused]


@dataclass
class BurstResult:
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)
    statuses: dict[tuple[str, str], dict] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    #: Refusals, logged once the burst has committed.
    refusals: dict[RefusalKey, Refused] = field(default_factory=dict)
    #: Seconds the burst spent taking its locks: the write transaction's start, the gates' locks and the
    #: lease renewal (waits for other writers included, as are those statements' own round trips).
    lock_wait: float = 0.0
    #: Positions (in the burst) of messages left out, unwritten: their gate's lock was held by another
    #: writer beyond the wait. The caller acknowledges none of them and offers them again later.
    deferred: list[int] = field(default_factory=list)
    #: The gates whose locks were not had.
    busy: set[tuple[str, str]] = field(default_factory=set)

    def snapshot(self) -> _Snapshot:
        return _Snapshot(frozenset(self.touched), dict(self.statuses), self.counts.copy(), dict(self.refusals))

    def restore(self, snapshot: _Snapshot) -> None:
        self.touched, self.statuses = set(snapshot.touched), dict(snapshot.statuses)
        self.counts, self.refusals = snapshot.counts.copy(), dict(snapshot.refusals)

    def refused(self, log: str, topic: str, reason: str, detail: str) -> None:
        key = RefusalKey(log, topic, reason)
        held = self.refusals.get(key)
        self.refusals[key] = Refused(1, detail) if held is None else replace(held, count=held.count + 1)


class RepeatLog:
    """Log lines about refused messages, about one per topic per interval, so that a gate sending garbage
    cannot flood the log: the first refusal on a quiet topic is logged at once with its detail; the rest of
    the interval's are counted and logged as one line with the count when the interval ends (``flush``).
    A topic still busy from the previous interval is only counted. Topics come from outside and are
    unbounded in number: beyond ``max_topics`` per interval they share one line."""

    def __init__(self, verb: str, *, interval: float = 60.0, max_topics: int = 100, clock=time.monotonic):
        self.verb, self.interval, self.max_topics, self._clock = verb, interval, max_topics, clock
        self._started = clock()
        self._pending: dict[str, Counter] = {}  # topic -> reason -> refusals not logged yet
        self._seen: set[str] = set()  # topics with refusals in this interval
        self._busy: set[str] = set()  # topics with refusals in the previous interval

    def note(self, topic: str, reason: str, detail: str, count: int = 1) -> None:
        topic = topic[:200]
        if topic not in self._seen and len(self._seen) >= self.max_topics:
            topic = OTHER_TOPICS
        if topic not in self._seen:
            self._seen.add(topic)
            if topic not in self._busy:
                log.warning("%s a message on %s: %s: %s", self.verb, topic, reason, detail[:200])
                count -= 1
        if count > 0:
            self._pending.setdefault(topic, Counter())[reason] += count

    def flush(self, *, force: bool = False) -> None:
        """Log the counts held back, once the interval is over (or now, with ``force``: at a stop)."""
        now = self._clock()
        if not force and now - self._started < self.interval:
            return
        for topic, reasons in self._pending.items():
            log.warning("%s %d more message(s) on %s in the last %.0f s: %s", self.verb, sum(reasons.values()),
                        topic, now - self._started, ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
        self._busy, self._seen, self._pending, self._started = self._seen, set(), {}, now


class Ingestor:
    """Owns one Store connection; not thread-safe (the service calls it from one thread)."""

    def __init__(self, store: Store, *, future_tolerance: float = 300.0, backwards_tolerance: float = 60.0,
                 source: str = "mqtt", parallel_from: int = PARALLEL_FROM,
                 quarantine_limits: QuarantineLimits | None = None, log_interval: float = 60.0,
                 sun_key: bytes | None = None):
        self.store = store
        self.sun_key = sun_key  # the NTAG 424 DNA master key (collector.ingest.sun); None: SUN messages unverified
        self.quarantine_limits = quarantine_limits or QuarantineLimits()
        self._logs = {"quarantined": RepeatLog("quarantined", interval=log_interval),
                      "ignored": RepeatLog("ignored", interval=log_interval)}
        self.future_tolerance = timedelta(seconds=future_tolerance)
        self.backwards_tolerance = timedelta(seconds=backwards_tolerance)
        self.source = source
        self._gates: dict[tuple[str, str], GateKeys] = {}
        self._registry_version: int | None = None
        self._reload_registry()
        # The highest punch held per gate: live punches arrive in order, so their
        # predecessor is usually this one and no successor can be held. Valid only while no other
        # connection writes (checked under the write lock: SQLite's change marker; with PostgreSQL,
        # where other writers cannot be seen that cheaply, only within one burst) and nothing was
        # rolled back.
        self._tails: dict[tuple[str, str], Tail | None] = {}
        self._marker: object = None
        self._limit_for, self._limit, self._plausible_limit = "", "", ""
        self._workers = max(1, os.cpu_count() or 1)
        self._parallel_from = parallel_from  # punches in a segment before worker threads verify them
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ registry cache

    def _reload_registry(self) -> None:
        self._gates = self.store.gate_keys()
        self._registry_version = self.store.registry_version()

    def _registry_changed(self) -> bool:
        """True when the registry may have changed (an admin command committed) since the last load."""
        return self.store.registry_version() != self._registry_version

    def _gate(self, site: str, gate: str) -> GateKeys | None:
        found = self._gates.get((site, gate))
        if found is None and self._registry_changed():
            self._reload_registry()
            found = self._gates.get((site, gate))
        return found

    # ------------------------------------------------------------------ bursts

    def ingest(self, messages: list[Incoming], *, fence=None, lock_wait: float | None = None) -> BurstResult:
        """Process a burst in one transaction. Raises DatabaseError if it could not be made durable, and
        LeaseLost if ``fence`` (called last inside the transaction) names partitions this process lost.
        The messages of a gate another writer holds for longer than ``lock_wait`` seconds (the connection's
        lock timeout if None) are left out, unwritten, and named in ``deferred``: the rest is not held up."""
        result = BurstResult()
        db = self.store.db
        try:
            began = time.perf_counter()
            with self.store.transaction():
                # Every gate of the burst is this transaction's until it ends, whoever else writes (other
                # collectors, an import); with one writer (SQLite) the transaction's write lock is enough.
                busy = db.lock_gates(_gates_of(messages), partial=True, wait=lock_wait)
                result.lock_wait = time.perf_counter() - began
                if busy:
                    result.busy = busy
                    result.deferred = [i for i, message in enumerate(messages) if _gate_of(message) in busy]
                    left_out = set(result.deferred)
                    messages = [message for i, message in enumerate(messages) if i not in left_out]
                marker = db.change_marker() if db.single_writer else None
                if marker is None or marker != self._marker:
                    self._tails.clear()
                if self._registry_changed():
                    self._reload_registry()
                    self._tails.clear()
                if messages:
                    self._burst(messages, result)
                fenced = time.perf_counter()
                lost = fence() if fence is not None else []
                result.lock_wait += time.perf_counter() - fenced
                if lost:
                    raise LeaseLost(lost)
            self._marker = db.change_marker() if db.single_writer else None
        except BaseException:
            self._tails.clear()  # what it remembers may have been rolled back
            self._marker = None
            raise
        # Logged once committed: a burst retried after a write failure would otherwise be told twice.
        for key, refused in result.refusals.items():
            self._logs[key.log].note(key.topic, key.reason, refused.detail, refused.count)
        self.flush_log()
        return result

    def flush_log(self, *, force: bool = False) -> None:
        """Log the repeated refusals held back (the daemon calls this every round, and with force at a stop)."""
        for repeat in self._logs.values():
            repeat.flush(force=force)

    def _burst(self, messages: list[Incoming], result: BurstResult) -> None:
        group: list[tuple[Incoming, _Prepared | None]] = []
        size = 0
        for message, ready in self._prepared(messages):
            group.append((message, ready))
            size += len(message.payload)
            # Small messages share a savepoint; a large batch is a group of its own (a group keeps its
            # decoded punches alive until it is written).
            if len(group) >= GROUP or size >= GROUP_BYTES:
                self._group(group, result)
                group, size = [], 0
        if group:
            self._group(group, result)
        for site, gate in sorted(result.touched):
            progress = self.store.advance_contiguous(site, gate, messages[-1].received_at)
            if progress.contiguous_seq > 0 and progress.contiguous_digest is not None:
                result.acks[(site, gate)] = Ack(progress.contiguous_seq, progress.contiguous_digest)
        if result.counts["quarantined"] > result.counts["quarantine_not_kept"]:
            self.store.trim_quarantine(self.quarantine_limits)
        if result.counts:
            self.store.add_counters(result.counts)

    def _group(self, group: list[tuple[Incoming, _Prepared | None]], result: BurstResult) -> None:
        """Messages under one savepoint. If one of them meets a bug, the group is rolled back and replayed
        a message at a time, each under its own savepoint, so that the bug costs that message alone,
        visibly, while the usual path pays for one savepoint per group rather than per message."""
        before = result.snapshot()
        try:
            with self.store.transaction():
                for message, ready in group:
                    self._message(message, result, ready)
            return
        except DatabaseError:
            raise
        except Exception:
            self._tails.clear()  # what it remembers may have been rolled back
            result.restore(before)
        for message, ready in group:
            before = result.snapshot()
            try:
                with self.store.transaction():
                    self._message(message, result, ready)
            except DatabaseError:
                raise
            except Exception as error:  # a bug must cost one message, visibly, not the collector
                log.exception("unexpected failure on a message from %s", message.topic[:200])
                self._tails.clear()
                result.restore(before)
                self._quarantine(message, "internal_error", f"{type(error).__name__}: {error}",
                                 message.payload, result)

    # ------------------------------------------------------------------ verification ahead of the writes

    def _prepared(self, messages: list[Incoming]):
        """(message, what _prepare made of it) in order, preparing ~LOOKAHEAD_BYTES of payload at a time:
        a burst may hold 1000 batches of 500 punches, and decoding all of it at once costs memory."""
        start = 0
        while start < len(messages):
            end, size = start, 0
            while end < len(messages) and (end == start or size < LOOKAHEAD_BYTES):
                size += len(messages[end].payload)
                end += 1
            segment = messages[start:end]
            yield from zip(segment, self._prepare(segment), strict=True)
            start = end

    def _prepare(self, messages: list[Incoming]) -> list[_Prepared | None]:
        """Decode the burst's punch messages and start verifying every punch that passes the registry
        checks. Anything unusual is left to the sequential pass (None: it decodes and decides itself)."""
        prepared: list[_Prepared | None] = []
        jobs: list[_Job] = []
        parallel = sum(len(m.payload) for m in messages) >= self._parallel_from * 400  # ~400 bytes a punch
        for message in messages:
            entry = None
            try:
                site, gate, kind = parse_gate_topic(message.topic)
                if kind == "punch":
                    entry = _Prepared(decode_punch_message(message.payload))
                    registered = self._gates.get((site, gate))
                    for index, item in enumerate(entry.items):
                        try:
                            punch = Punch.from_dict(item)
                        except ProtocolError as error:
                            entry.punches.append(error)
                            continue
                        entry.punches.append(punch)
                        key = registered.keys.get(punch.key) if registered is not None else None
                        if parallel and key is not None and (punch.site, punch.gate) == (site, gate):
                            jobs.append(_Job(entry, index, punch, key))
                            if len(jobs) >= CHUNK:  # start the workers while this thread decodes on
                                self._submit(jobs)
                                jobs = []
            except Exception:  # the sequential pass meets the same problem and records it
                entry = None
            prepared.append(entry)
        if jobs:
            self._submit(jobs)
        return prepared

    def _submit(self, jobs: list[_Job]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="verify")
        # The bytes are derived here, so that a worker holds the GIL for as little as possible, and the
        # canonical bytes serve the digest later; the key was picked by punch.key (key_id matches).
        work = []
        for job in jobs:
            canonical = job.punch.canonical_bytes()
            job.entry.canonical[job.index] = canonical
            work.append((job.key, bytes.fromhex(job.punch.sig), canonical))
        future = self._pool.submit(_verify_chunk, work)
        for position, job in enumerate(jobs):
            job.entry.checks[job.index] = _Check(job.punch, job.key, future, position)

    def _verified(self, ready: _Prepared | None, index: int, punch: Punch, key) -> None:
        """verify_punch(punch, key), answered by a worker thread when one already did it."""
        check = ready.checks.get(index) if ready is not None else None
        if check is not None and check.punch is punch and check.key is key:
            if not check.future.result()[check.position]:
                raise ProtocolError("bad_signature", f"signature of {punch.gate} seq {punch.seq} does not verify")
            return
        verify_punch(punch, key)

    # ------------------------------------------------------------------ one message

    def _message(self, message: Incoming, result: BurstResult, ready: _Prepared | None = None) -> None:
        try:
            site, gate, kind = parse_gate_topic(message.topic)
        except ProtocolError as error:
            self._quarantine(message, error.reason, error.detail, message.payload, result)
            return
        if kind == "status":
            self._status(message, site, gate, result)
            return
        if kind != "punch":
            self._quarantine(message, "topic", f"not a punch or status topic: {kind!r}", message.payload, result)
            return
        if ready is None:
            try:
                items = decode_punch_message(message.payload)
            except ProtocolError as error:
                self._quarantine(message, error.reason, error.detail, message.payload, result)
                return
        else:
            items = ready.items
        result.counts["messages"] += 1
        for index, item in enumerate(items):
            self._punch(message, site, gate, item, result, ready, index)

    def _punch(self, message: Incoming, site: str, gate: str, item: object, result: BurstResult,
               ready: _Prepared | None = None, index: int = 0) -> None:
        def refuse(reason: str, detail: str) -> None:
            raw = json.dumps(item, sort_keys=True).encode() if not isinstance(item, bytes) else item
            self._quarantine(message, reason, detail, raw, result)

        try:
            punch = ready.punches[index] if ready is not None else Punch.from_dict(item)
            if isinstance(punch, ProtocolError):
                raise punch
        except ProtocolError as error:
            refuse(error.reason, error.detail)
            return
        if (punch.site, punch.gate) != (site, gate):
            refuse("topic_mismatch", f"punch of {punch.site}/{punch.gate} published on {message.topic}")
            return
        registered = self._gate(site, gate)
        if registered is None:
            elsewhere = [s for (s, g) in self._gates if g == gate]
            if elsewhere:
                refuse("site_mismatch", f"gate {gate} belongs to site {', '.join(sorted(elsewhere))}, not {site}")
            else:
                refuse("unknown_gate", f"gate {site}/{gate} is not registered")
            return
        if not registered.active:
            refuse("gate_inactive", f"gate {site}/{gate} is deactivated")
            return
        key = registered.keys.get(punch.key)
        if key is None:
            refuse("unknown_key", f"key {punch.key} is not registered for {site}/{gate}")
            return
        if punch.key in registered.revoked:
            refuse("key_revoked", f"key {punch.key} of {site}/{gate} is revoked")
            return
        try:
            self._verified(ready, index, punch, key)
        except ProtocolError as error:
            refuse(error.reason, error.detail)
            return
        canonical = ready.canonical.get(index) if ready is not None else None
        self._store(message, punch, result, canonical)

    def _store(self, message: Incoming, punch: Punch, result: BurstResult, canonical: bytes | None = None) -> None:
        store = self.store
        ident = (punch.site, punch.gate)
        result.touched.add(ident)
        digest = punch.digest() if canonical is None else hashlib.sha256(canonical).hexdigest()
        flags = self._clock_flags(punch, message.received_at)
        counter = None
        if punch.kind == "ntag424":
            counter, card_flag = sun.verify(self.sun_key, punch.card, punch.sun)
            if card_flag is not None:
                flags.add(card_flag)
        if ident not in self._tails:
            self._tails[ident] = store.highest_punch(*ident)
        tail = self._tails[ident]
        # At or below the highest seq held, the seq may be held already: looked up first, since on
        # PostgreSQL its copy may sit in another month's partition, where no unique index sees it
        # (collector.store.partitions). Above it, nothing can be held: this process holds the gate's lock.
        held = store.stored_link(punch.site, punch.gate, punch.seq) \
            if tail is not None and punch.seq <= tail.seq else None
        if held is not None or not store.insert_punch(punch, received_at=message.received_at, source=self.source,
                                                      flags=",".join(sorted(flags)), card_counter=counter):
            held = held or store.stored_link(punch.site, punch.gate, punch.seq)
            if held.digest == digest:
                result.counts["duplicates"] += 1
                return
            # The gate signed two different punches under one seq: keep both, trust neither.
            if store.add_conflict(punch.site, punch.gate, punch.seq, kind="equivocation", stored_digest=held.digest,
                                  other_digest=digest, other_body=punch.to_json(),
                                  detail=f"second punch for seq {punch.seq}: card {punch.card} at {punch.time}"):
                store.add_flag(punch.site, punch.gate, punch.seq, "equivocated")
                result.counts["equivocations"] += 1
                log.error("ALERT equivocation: gate %s/%s signed two different punches with seq %d",
                          punch.site, punch.gate, punch.seq)
            else:
                result.counts["duplicates"] += 1
            return
        result.counts["stored"] += 1
        if "clock_implausible" in flags:
            result.counts["clock_implausible"] += 1
        for card_flag in (sun.FORGED, sun.UNVERIFIED):
            if card_flag in flags:
                result.counts[card_flag] += 1
        if counter is not None:
            self._replays(punch, counter, result)
        # The punch before this one: the tail itself when this one follows it (the usual, in-order case).
        if tail is not None and punch.seq == tail.seq + 1:
            previous: Tail | Link | None = tail
        else:
            previous = store.stored_link(punch.site, punch.gate, punch.seq - 1) if punch.seq > 1 else None
        if tail is None or punch.seq > tail.seq:
            self._tails[ident] = Tail(punch.seq, digest, punch.time)
        if previous is not None:
            if punch.prev != previous.digest:
                self._chain_break(punch.site, punch.gate, punch.seq, previous.digest, punch.prev, digest, result)
            elif self._earlier_beyond_tolerance(punch.time, previous.time):
                store.add_flag(punch.site, punch.gate, punch.seq, "clock_backwards")
        # Above the highest punch held before this one, nothing can follow it yet.
        following = store.stored_link(punch.site, punch.gate, punch.seq + 1) \
            if tail is None or punch.seq < tail.seq else None
        if following is not None:
            if following.prev != digest:
                self._chain_break(punch.site, punch.gate, punch.seq + 1, digest, following.prev, following.digest,
                                  result)
            elif self._earlier_beyond_tolerance(following.time, punch.time):
                store.add_flag(punch.site, punch.gate, punch.seq + 1, "clock_backwards")

    def _replays(self, punch: Punch, counter: int, result: BurstResult) -> None:
        """Flag ``card_replay`` on every punch of the card that this one's read counter shows to be a replay
        (it may be this one, or one stored before it arrived)."""
        for replay in self.store.counter_replays(punch.site, punch.gate, punch.seq, punch.card, counter, punch.time):
            link = self.store.stored_link(replay.site, replay.gate, replay.seq)
            if link is not None and sun.REPLAY not in link.flags.split(","):
                self.store.add_flag(replay.site, replay.gate, replay.seq, sun.REPLAY)
                result.counts[sun.REPLAY] += 1
                log.warning("card %s: punch %s/%s seq %d replays a SUN message (read counter %d)", punch.card,
                            replay.site, replay.gate, replay.seq, counter)

    def _chain_break(self, site, gate, seq, held_prev_digest, claimed_prev, digest, result) -> None:
        """Punch ``seq`` links to a predecessor other than the one held: the gate signed two histories."""
        if self.store.add_conflict(site, gate, seq, kind="chain_break", stored_digest=held_prev_digest,
                                   other_digest=claimed_prev, other_body=None,
                                   detail=f"seq {seq} ({digest[:12]}) links to {claimed_prev[:12]}, "
                                          f"but seq {seq - 1} held here is {held_prev_digest[:12]}"):
            self.store.add_flag(site, gate, seq, "chain_break")
            result.counts["chain_breaks"] += 1
            log.error("ALERT chain break at gate %s/%s seq %d", site, gate, seq)

    def _clock_flags(self, punch: Punch, received_at: str) -> set[str]:
        """Flags for the punch's clock. A time no working day can hold (before 2020, or more than a day
        after its receipt) is still stored and acked, being a link of the gate's chain; it is flagged
        ``clock_implausible`` and left out of attendance, headcount and payroll."""
        flags = set()
        if not punch.synced:
            flags.add("clock_unsynced")
        future, plausible = self._limits(received_at)
        if punch.time < PLAUSIBLE_FROM or punch.time > plausible:  # wire times compare as text
            flags.add("clock_implausible")
        if punch.time > future:
            flags.add("clock_future")
        return flags

    def _limits(self, received_at: str) -> tuple[str, str]:
        """The latest believable and the latest placeable punch time for a message received then (one
        parse per burst)."""
        if self._limit_for != received_at:
            self._limit_for = received_at
            self._limit = format_time(parse_time(received_at) + self.future_tolerance)
            self._plausible_limit = plausible_until(received_at)
        return self._limit, self._plausible_limit

    def _earlier_beyond_tolerance(self, later: str, earlier: str) -> bool:
        """``later`` lies before ``earlier`` by more than the tolerance (text compare first: the rare case
        is the only one that parses)."""
        return later < earlier and parse_time(later) + self.backwards_tolerance < parse_time(earlier)

    def _status(self, message: Incoming, site: str, gate: str, result: BurstResult) -> None:
        """Only a status that passes every check is stored; a bad one leaves the previous one in place."""
        try:
            status = decode_status(message.payload)
        except ProtocolError as error:
            self._quarantine(message, error.reason, "status: " + error.detail, message.payload, result)
            return
        if (status["site"], status["gate"]) != (site, gate):
            self._quarantine(message, "topic_mismatch", f"status of {status['site']}/{status['gate']} "
                                                        f"published on {message.topic}", message.payload, result)
            return
        if self._gate(site, gate) is None:
            result.counts["status_unknown_gate"] += 1
            result.refused("ignored", message.topic, "unknown_gate", f"status from unregistered gate {site}/{gate}")
            return
        self.store.save_status(site, gate, status, message.received_at)
        result.statuses[(site, gate)] = status
        result.counts["statuses"] += 1

    def _quarantine(self, message: Incoming, reason: str, detail: str, raw: bytes, result: BurstResult) -> None:
        """Count the refusal; keep a row unless the topic's allowance for this hour is used up. Details quote
        the message through repr already; an exception's text (internal_error) may not: escaped here too."""
        detail = escape_control(detail)
        kept = self.store.quarantine(topic=message.topic, reason=reason, detail=detail, raw=raw,
                                     received_at=message.received_at, allowance=self._allowance(message.topic),
                                     limits=self.quarantine_limits)
        result.counts["quarantined"] += 1
        result.counts[f"quarantined_{reason}"] += 1
        if not kept:
            result.counts["quarantine_not_kept"] += 1
        result.refused("quarantined", message.topic, reason, detail)

    def _allowance(self, topic: str) -> str:
        """A registered gate's topics have allowances of their own; all other topics share one."""
        try:
            site, gate, kind = parse_gate_topic(topic)
        except ProtocolError:
            return OTHER_TOPICS
        if kind in ("punch", "status") and self._gate(site, gate) is not None:
            return topic
        return OTHER_TOPICS


def _gates_of(messages: list[Incoming]) -> set[tuple[str, str]]:
    """The gates a burst's punches may be written for (a punch is refused unless its topic is its gate's)."""
    return {gate for gate in map(_gate_of, messages) if gate is not None}


def _gate_of(message: Incoming) -> tuple[str, str] | None:
    """The gate a punch or status message is written under (None: a topic of no gate, quarantined)."""
    return gate_of_topic(message.topic)


def gate_of_topic(topic: str) -> tuple[str, str] | None:
    try:
        site, gate, kind = parse_gate_topic(topic)
    except ProtocolError:
        return None
    return (site, gate) if kind in ("punch", "status") else None


@dataclass
class _Prepared:
    """A punch message decoded ahead of the sequential pass, with its punches' pending verifications."""

    items: list
    punches: list = field(default_factory=list)  # per item: the Punch, or the ProtocolError from_dict raised
    checks: dict[int, _Check] = field(default_factory=dict)  # item index -> its pending verification
    canonical: dict[int, bytes] = field(default_factory=dict)  # item index -> the punch's canonical bytes


@dataclass(frozen=True, slots=True)
class _Job:
    """A punch to verify on a worker thread: item ``index`` of ``entry``, with the key registered for it."""

    entry: _Prepared
    index: int
    punch: Punch
    key: object


@dataclass(frozen=True, slots=True)
class _Check:
    """A verification handed to a worker thread: its answer is ``future.result()[position]``, valid for
    this punch and key only."""

    punch: Punch
    key: object
    future: Future
    position: int


def _verify_chunk(work: list[tuple]) -> list[bool]:
    """Runs on a worker thread: (public key, signature, canonical bytes) -> signed? Ed25519 verification
    in ``cryptography`` releases the GIL, so this loop runs beside the thread that writes."""
    results = []
    for key, signature, canonical in work:
        try:
            key.verify(signature, canonical)
            results.append(True)
        except InvalidSignature:
            results.append(False)
    return results

