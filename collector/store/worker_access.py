"""Workers' personal links (only a hash of each secret is kept) and the log of who looked at whose record."""

from __future__ import annotations

from .connection import Connection
from .errors import StoreError

#: Entries of the access log a worker's page shows (newest first).
ACCESS_SHOWN = 50


class WorkerAccessQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def issue_worker_link(self, worker: str, secret_sha256: str, *, by: str) -> dict:
        """A new link for ``worker``; the links issued before end now (one valid link per worker)."""
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            now = self._now_text()
            revoked = self.db.execute("UPDATE worker_links SET revoked_at = ?, revoked_by = ? "
                                      "WHERE worker = ? AND revoked_at IS NULL", (now, by, worker)).rowcount
            self.db.execute("INSERT INTO worker_links (worker, secret_sha256, issued_at, issued_by) "
                            "VALUES (?, ?, ?, ?)", (worker, secret_sha256, now, by))
            return {"worker": worker, "issued_at": now, "issued_by": by, "revoked": revoked}

    def revoke_worker_links(self, worker: str, *, by: str) -> int:
        """End the worker's valid link; returns how many ended (0: there was none)."""
        with self.transaction():
            if not self._one("SELECT 1 FROM workers WHERE worker = ?", (worker,)):
                raise StoreError(f"worker {worker} does not exist")
            return self.db.execute("UPDATE worker_links SET revoked_at = ?, revoked_by = ? "
                                   "WHERE worker = ? AND revoked_at IS NULL", (self._now_text(), by, worker)).rowcount

    def worker_link(self, secret_sha256: str) -> dict | None:
        """The valid (unrevoked) link with this hash, or None."""
        rows = self._rows("SELECT worker, secret_sha256, issued_at FROM worker_links "
                          "WHERE secret_sha256 = ? AND revoked_at IS NULL", (secret_sha256,))
        return rows[0] if rows else None

    def worker_links(self, worker: str) -> list[dict]:
        """Every link issued to the worker (without the hashes), oldest first."""
        return self._rows("SELECT id, worker, issued_at, issued_by, revoked_at, revoked_by FROM worker_links "
                          "WHERE worker = ? ORDER BY id", (worker,))

    def log_access(self, worker: str, *, via: str, who: str, what: str) -> None:
        """Note that someone looked at the worker's record (shown to the worker)."""
        with self.transaction():
            self.db.execute("INSERT INTO record_access (worker, at, via, who, what) VALUES (?, ?, ?, ?, ?)",
                            (worker, self._now_text(), via, who, what))

    def access_log(self, worker: str, limit: int = ACCESS_SHOWN) -> list[dict]:
        """Who looked at the worker's record, newest first."""
        return self._rows("SELECT at, via, who, what FROM record_access WHERE worker = ? "
                          "ORDER BY at DESC, id DESC LIMIT ?", (worker, limit))
