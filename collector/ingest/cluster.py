"""Several collector processes, one ledger: the sites are split into partitions, each leased to one process.

Why partitions and not MQTT 5 shared subscriptions (measured on this kind of machine, see the scale-out
notes in the README): a shared subscription hands one gate's consecutive punches to different processes
(round robin per message), so every writer would touch every gate and per-gate locking turns into a
global lock; and messages owed to a killed member wait for its client id, they are not failed over.

So each partition is one persistent MQTT session with a client id of its own (``collector-p03``), and
whichever process holds the partition's lease (kept in the database) connects with that client id. One
process writes a gate's punches, in order, with no contention; a process that dies leaves its leases to
expire (``lease_seconds``), another takes them, connects with the same client ids and receives what the
broker kept for those sessions: the queued messages and those delivered but never acknowledged (a
collector acknowledges at the broker only after its database commit). Acks to gates, gap resend
requests and rosters are each partition's own housekeeping, done by its lease holder alone.

Each process takes a fair share of the partitions: ceil(partitions / live processes). One that holds
more gives the extra back (the others take them within a lease round); one that cannot reach the
broker for a partition gives it back too.

The lease rounds run on a connection of their own (the daemon opens one for them), in short transactions
that touch only the leases and members tables, under the connection's short lock timeout: no burst's data
lock, and no other process's stuck transaction, can hold them up for longer than that timeout. Only the
fence, which must be part of a burst's own transaction, runs on the burst's connection.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from collector.store import DatabaseBusy, DatabaseError, Lease, Store

log = logging.getLogger(__name__)


def partition_of(site: str, partitions: int) -> int:
    """A site's partition: stable across processes, restarts and Python versions."""
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(site.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def lease_name(partition: int) -> str:
    return f"partition/{partition:03d}"


def client_id(base: str, partition: int, partitions: int) -> str:
    """One partition keeps today's single client id; several get one each."""
    return base if partitions == 1 else f"{base}-p{partition:02d}"


def instance_name() -> str:
    """Who holds a lease, in the logs and in `collector cluster`: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Change:
    gained: list[int]
    lost: list[int]


class LeaseKeeper:
    """This process's partitions: renewed, taken and given back, one round at a time (``tick``)."""

    def __init__(self, store: Store, *, partitions: int, ttl: float, instance: str | None = None):
        self.store = store
        self.partitions = partitions
        self.ttl = ttl
        self.instance = instance or instance_name()
        self.held: dict[int, Lease] = {}
        self.members = 1
        store.ensure_leases([lease_name(k) for k in range(partitions)])

    def fair_share(self) -> int:
        return math.ceil(self.partitions / max(1, self.members))

    def tick(self, unreachable: Iterable[int] = ()) -> Change:
        """Renew what is held, give back what is beyond the fair share or unreachable, take free
        partitions up to the share. A database error keeps nothing that could not be renewed."""
        gained, lost = [], []
        try:
            self.members = len(self.store.member_alive(self.instance, self.ttl))
            for partition, lease in list(self.held.items()):
                with self.store.transaction():
                    renewed = self.store.renew_lease(lease, self.instance, self.ttl)
                if not renewed:
                    del self.held[partition]
                    lost.append(partition)
                    log.warning("partition %d: lease lost (taken over after this process was silent)", partition)
            for partition in sorted(set(unreachable) & set(self.held)):
                self._give_back(partition, "the broker cannot be reached for it")
                lost.append(partition)
            extra = len(self.held) - self.fair_share()
            for partition in sorted(self.held, reverse=True)[:max(0, extra)]:
                self._give_back(partition, f"more than a fair share ({self.fair_share()} of {self.partitions} "
                                           f"for {self.members} collectors)")
                lost.append(partition)
            if len(self.held) < self.fair_share():
                for partition in self._preferred_order():
                    if len(self.held) >= self.fair_share():
                        break
                    if partition in self.held or partition in lost:
                        continue
                    try:
                        lease = self.store.acquire_lease(lease_name(partition), self.instance, self.ttl)
                    except DatabaseBusy as error:
                        # Its old holder's burst holds the lease row (fenced, not yet committed): it commits
                        # or is ended by the server's idle timeout; try again next round, take the others now.
                        log.info("partition %d: lease row busy (%s); trying again next round", partition, error)
                        continue
                    if lease is not None:
                        self.held[partition] = lease
                        gained.append(partition)
                        log.info("partition %d: lease taken (epoch %d)", partition, lease.epoch)
        except DatabaseError as error:
            log.error("leases: %s; keeping no partition it cannot renew", error)
        return Change(gained, lost)

    def _preferred_order(self) -> list[int]:
        """Each process starts looking at its own place, so that processes starting together spread out."""
        start = int.from_bytes(hashlib.blake2b(self.instance.encode(), digest_size=4).digest(), "big")
        return [(start + k) % self.partitions for k in range(self.partitions)]

    def _give_back(self, partition: int, why: str) -> None:
        lease = self.held.pop(partition)
        try:
            self.store.release_lease(lease, self.instance)
        except DatabaseError as error:
            log.error("partition %d: could not give the lease back (%s); it expires by itself", partition, error)
        log.info("partition %d: lease given back: %s", partition, why)

    def fence(self, partitions: Iterable[int], store: Store | None = None) -> list[int]:
        """Inside a write transaction on ``store`` (the keeper's own if None): renew the leases of
        ``partitions``; returns those no longer ours."""
        store = store or self.store
        lost = []
        for partition in sorted(set(partitions)):
            lease = self.held.get(partition)
            if lease is None or not store.renew_lease(lease, self.instance, self.ttl):
                lost.append(partition)
        return lost

    def drop(self, partition: int) -> None:
        """Forget a partition whose lease a fenced write found taken."""
        self.held.pop(partition, None)

    def leave(self) -> None:
        """At a clean stop: give every partition back at once and say this member is gone."""
        for partition in list(self.held):
            self._give_back(partition, "stopping")
        try:
            self.store.member_gone(self.instance)
        except DatabaseError:
            pass
