"""The register of gate keys as stored: its entries in order, and appending one at the head.

What an entry says, how it is signed and checked lives in ``collector.evidence.register``; here an entry
is its canonical text, its digest and the facts repeated in columns to find it. Appends are serialised
on both engines: the writer first holds the registry's version row (as every change of gates and keys
does, so an append and the key change it records are one step for everyone else), then reads the head;
the index is the primary key besides, so a writer that got past the lock anyway could not fork the
chain, only fail.
"""

from __future__ import annotations

from .connection import Connection
from .errors import StoreError


class RegisterQueries:
    """Mixed into Store, whose ``_rows`` and ``has`` it uses."""

    db: Connection

    def lock_register(self) -> None:
        """Inside a transaction: wait for every other writer of the registry or the register until it
        ends, so that the head read next stays the head until this transaction commits."""
        if not self.db.in_transaction:
            raise StoreError("the register is locked only inside a transaction")
        self.db.execute("UPDATE registry_version SET version = version WHERE id = 1")

    def register_head(self) -> dict | None:
        """The last entry's index, digest and time, or None while the register is empty."""
        return self.db.record("SELECT idx, digest, at FROM gate_key_register ORDER BY idx DESC LIMIT 1")

    def append_register_entry(self, *, index: int, entry: str, digest: str, at: str, action: str, site: str,
                              gate: str, key_id: str, since: str) -> None:
        """Write entry ``index`` (inside the transaction that holds ``lock_register``)."""
        self.db.execute("INSERT INTO gate_key_register (idx, entry, digest, at, action, site, gate, key_id, since) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (index, entry, digest, at, action, site, gate, key_id, since))

    def register_entries(self, *, after: int = 0) -> list[dict]:
        """Entries after index ``after``, in order: idx, entry (text), digest, at, action, site, gate,
        key_id, since. Empty on a database without the register yet (a read-only reader's)."""
        if not self.has("gate_key_register"):
            return []
        return self._rows("SELECT idx, entry, digest, at, action, site, gate, key_id, since FROM gate_key_register "
                          "WHERE idx > ? ORDER BY idx", (after,))

    def register_entry_of(self, site: str, gate: str, key_id: str, action: str) -> dict | None:
        """The entry recording ``action`` of that gate key, or None."""
        if not self.has("gate_key_register"):
            return None
        rows = self._rows("SELECT idx, entry, digest, at, action, site, gate, key_id, since FROM gate_key_register "
                          "WHERE site = ? AND gate = ? AND key_id = ? AND action = ?", (site, gate, key_id, action))
        return rows[0] if rows else None

    def registered_key_states(self) -> set[tuple[str, str, str, str]]:
        """(action, site, gate, key_id) of every entry."""
        return {(r["action"], r["site"], r["gate"], r["key_id"])
                for r in self._rows("SELECT action, site, gate, key_id FROM gate_key_register")}

    def all_gate_keys(self) -> list[dict]:
        """Every gate key of the registry with when it was added and revoked, in the order it was added."""
        return self._rows("SELECT site, gate, key_id, public_key, added_at, revoked_at FROM gate_keys "
                          "ORDER BY added_at, site, gate, key_id")
