"""Leases: which collector process does a piece of shared work (a partition of the sites) right now.

A lease names its owner and an epoch that grows with every change of owner; it expires by the
database's clock unless renewed. Ingest renews the leases of a burst's partitions inside the burst's
transaction, so a process that lost a lease (paused, cut off, taken over) cannot commit for it: with
PostgreSQL the renewal takes the lease's row lock and a takeover waits for it; SQLite has one writer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    epoch: int


class LeaseQueries:
    db: Connection

    def ensure_leases(self, names: list[str]) -> None:
        with self.db.transaction():
            self.db.executemany("INSERT INTO leases (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                                [(name,) for name in names])

    def acquire_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        """Take ``name`` if it is free or expired (or keep it, if it is ``owner``'s already)."""
        now = self.db.now_sql
        with self.db.transaction():
            epoch = self.db.value(
                f"""UPDATE leases SET epoch = CASE WHEN owner = ? AND expires_at >= {now} THEN epoch ELSE epoch + 1 END,
                        owner = ?, expires_at = {now} + ?
                    WHERE name = ? AND (owner = ? OR owner IS NULL OR expires_at < {now})
                    RETURNING epoch""", (owner, owner, ttl, name, owner))
        return Lease(name, epoch) if epoch is not None else None

    def renew_lease(self, lease: Lease, owner: str, ttl: float) -> bool:
        """Inside the caller's transaction when it fences a write: True if the lease is still ours."""
        cursor = self.db.execute(
            f"UPDATE leases SET expires_at = {self.db.now_sql} + ? WHERE name = ? AND owner = ? AND epoch = ?",
            (ttl, lease.name, owner, lease.epoch))
        return cursor.rowcount == 1

    def release_lease(self, lease: Lease, owner: str) -> None:
        """Let another process take it at once (the owner stays on record until then)."""
        with self.db.transaction():
            self.db.execute("UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ? AND epoch = ?",
                            (lease.name, owner, lease.epoch))

    def leases(self) -> list[dict]:
        """Every lease with its owner, epoch and the seconds it has left (negative: expired)."""
        return self.db.rows(f"SELECT name, owner, epoch, expires_at - {self.db.now_sql} AS remaining FROM leases "
                            "ORDER BY name")

    def member_alive(self, instance: str, ttl: float) -> list[str]:
        """Say ``instance`` is alive for ``ttl`` seconds; returns every member alive now (sorted)."""
        now = self.db.now_sql
        with self.db.transaction():
            self.db.execute(f"""INSERT INTO members (instance, started_at, expires_at) VALUES (?, ?, {now} + ?)
                                ON CONFLICT (instance) DO UPDATE SET expires_at = excluded.expires_at""",
                            (instance, self._now_text(), ttl))
            self.db.execute(f"DELETE FROM members WHERE expires_at < {now} - 3600")
            return self.db.column(f"SELECT instance FROM members WHERE expires_at >= {now} ORDER BY instance")

    def members(self) -> list[dict]:
        """The collector processes alive now, with when they started."""
        return self.db.rows(f"SELECT instance, started_at FROM members WHERE expires_at >= {self.db.now_sql} "
                            "ORDER BY instance")

    def member_gone(self, instance: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM members WHERE instance = ?", (instance,))
