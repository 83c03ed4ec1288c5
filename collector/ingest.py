"""Ingest: decode -> verify -> store exactly once, or quarantine with a reason; then say what to ack.

A burst of messages is one transaction. Every message ends in exactly one of: stored, duplicate
(an identical redelivery), equivocation (a different, validly signed punch under a held seq: both are
kept as evidence, neither silently wins), or quarantine. Nothing raises out of here but a database
error, which fails the whole burst so that nothing of it is acknowledged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from gate_agent.protocol import (
    Ack,
    ProtocolError,
    Punch,
    decode_punch_message,
    decode_status,
    parse_gate_topic,
    parse_time,
    verify_punch,
)

from .store import GateKeys, Store

log = logging.getLogger(__name__)

#: Before this, a gate's clock was surely not set (a Raspberry Pi boots at its last saved time or 1970).
PLAUSIBLE_AFTER = "2020-01-01T00:00:00.000Z"


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: str  # collector's UTC time text


@dataclass
class BurstResult:
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)
    statuses: dict[tuple[str, str], dict] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def merge(self, other: BurstResult) -> None:
        self.acks.update(other.acks)
        self.touched |= other.touched
        self.statuses.update(other.statuses)
        self.counts.update(other.counts)


class Ingestor:
    """Owns one Store connection; not thread-safe (the service calls it from one thread)."""

    def __init__(self, store: Store, *, future_tolerance: float = 300.0, backwards_tolerance: float = 60.0,
                 source: str = "mqtt"):
        self.store = store
        self.future_tolerance = timedelta(seconds=future_tolerance)
        self.backwards_tolerance = timedelta(seconds=backwards_tolerance)
        self.source = source
        self._gates: dict[tuple[str, str], GateKeys] = {}
        self._registry_version: tuple[int, int] | None = None
        self._reload_registry()

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

    def ingest(self, messages: list[Incoming]) -> BurstResult:
        """Process a burst in one transaction. Raises sqlite3.Error if it could not be made durable."""
        result = BurstResult()
        if self._registry_changed():
            self._reload_registry()
        with self.store.transaction():
            for message in messages:
                counts = result.counts.copy()
                try:
                    # A savepoint per message: a bug half-way through one leaves nothing of it behind.
                    with self.store.transaction():
                        self._message(message, result)
                except sqlite3.Error:
                    raise
                except Exception as error:  # a bug must cost one message, visibly, not the collector
                    log.exception("unexpected failure on a message from %s", message.topic[:200])
                    result.counts = counts
                    self._quarantine(message, "internal_error", f"{type(error).__name__}: {error}",
                                     message.payload, result)
            for site, gate in sorted(result.touched):
                seq, digest = self.store.advance_contiguous(site, gate, messages[-1].received_at)
                if seq > 0 and digest is not None:
                    result.acks[(site, gate)] = Ack(seq, digest)
            if result.counts:
                self.store.add_counters(result.counts)
        return result

    def _message(self, message: Incoming, result: BurstResult) -> None:
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
        try:
            items = decode_punch_message(message.payload)
        except ProtocolError as error:
            self._quarantine(message, error.reason, error.detail, message.payload, result)
            return
        result.counts["messages"] += 1
        for item in items:
            self._punch(message, site, gate, item, result)

    def _punch(self, message: Incoming, site: str, gate: str, item: object, result: BurstResult) -> None:
        def refuse(reason: str, detail: str) -> None:
            raw = json.dumps(item, sort_keys=True).encode() if not isinstance(item, bytes) else item
            self._quarantine(message, reason, detail, raw, result)

        try:
            punch = Punch.from_dict(item)
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
            verify_punch(punch, key)
        except ProtocolError as error:
            refuse(error.reason, error.detail)
            return
        self._store(message, punch, result)

    def _store(self, message: Incoming, punch: Punch, result: BurstResult) -> None:
        store = self.store
        ident = (punch.site, punch.gate)
        result.touched.add(ident)
        body = punch.to_json()
        digest = punch.digest()
        flags = self._clock_flags(punch, message.received_at)
        if not store.insert_punch(punch, digest=digest, body=body, received_at=message.received_at,
                                  source=self.source, flags=",".join(sorted(flags))):
            held = store.stored_link(punch.site, punch.gate, punch.seq)
            if held[0] == digest:
                result.counts["duplicates"] += 1
                return
            # The gate signed two different punches under one seq: keep both, trust neither.
            if store.add_conflict(punch.site, punch.gate, punch.seq, kind="equivocation", stored_digest=held[0],
                                  other_digest=digest, other_body=body,
                                  detail=f"second punch for seq {punch.seq}: card {punch.card} at {punch.time}"):
                store.add_flag(punch.site, punch.gate, punch.seq, "equivocated")
                result.counts["equivocations"] += 1
                log.error("ALERT equivocation: gate %s/%s signed two different punches with seq %d",
                          punch.site, punch.gate, punch.seq)
            else:
                result.counts["duplicates"] += 1
            return
        result.counts["stored"] += 1
        previous = store.stored_link(punch.site, punch.gate, punch.seq - 1) if punch.seq > 1 else None
        if previous is not None:
            if punch.prev != previous[0]:
                self._chain_break(punch.site, punch.gate, punch.seq, previous[0], punch.prev, digest, result)
            elif parse_time(punch.time) + self.backwards_tolerance < parse_time(previous[2]):
                store.add_flag(punch.site, punch.gate, punch.seq, "clock_backwards")
        following = store.stored_link(punch.site, punch.gate, punch.seq + 1)
        if following is not None:
            if following[1] != digest:
                self._chain_break(punch.site, punch.gate, punch.seq + 1, digest, following[1], following[0], result)
            elif parse_time(following[2]) + self.backwards_tolerance < parse_time(punch.time):
                store.add_flag(punch.site, punch.gate, punch.seq + 1, "clock_backwards")

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
        flags = set()
        if not punch.synced:
            flags.add("clock_unsynced")
        if punch.time < PLAUSIBLE_AFTER:
            flags.add("clock_implausible")
        elif parse_time(punch.time) > parse_time(received_at) + self.future_tolerance:
            flags.add("clock_future")
        return flags

    def _status(self, message: Incoming, site: str, gate: str, result: BurstResult) -> None:
        try:
            status = decode_status(message.payload)
        except ProtocolError as error:
            self._quarantine(message, error.reason, "status: " + error.detail, message.payload, result)
            return
        if self._gate(site, gate) is None:
            result.counts["status_unknown_gate"] += 1
            log.warning("status from unregistered gate %s/%s ignored", site, gate)
            return
        self.store.save_status(site, gate, status, message.received_at)
        result.statuses[(site, gate)] = status
        result.counts["statuses"] += 1

    def _quarantine(self, message: Incoming, reason: str, detail: str, raw: bytes, result: BurstResult) -> None:
        self.store.quarantine(topic=message.topic, reason=reason, detail=detail, raw=raw,
                              received_at=message.received_at)
        result.counts["quarantined"] += 1
        result.counts[f"quarantined_{reason}"] += 1
        log.warning("quarantined a message on %s: %s: %s", message.topic[:200], reason, detail[:200])
