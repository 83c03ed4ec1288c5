"""Evidence requests: a worker's page asks, a collector process that holds the bank's key signs.

A request is ``pending`` until a process claims it (``working``, with a one-off claim token), then
``done`` with the signed file's bytes or ``failed`` with a reason. A claim is one UPDATE that matches only
a row still claimable, so two processes never both hold it (SQLite has one writer; PostgreSQL re-checks
the row under its lock); finishing matches the claim token, so a process whose claim went stale and was
taken over cannot overwrite the new claimer's result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gate_agent.protocol import format_time

from .connection import Connection
from .errors import StoreError

#: Requests a worker may have waiting (pending or being built) at once.
MAX_WAITING_PER_WORKER = 3
#: A claim not finished after this long is taken to be of a process that died; it may be claimed again.
STALE_CLAIM = timedelta(minutes=10)
#: Claims of one request at most: past them the request fails rather than being tried for ever.
MAX_ATTEMPTS = 3
#: Finished requests (and their documents) are deleted this long after they finished.
KEEP = timedelta(days=7)

class TooManyWaiting(StoreError):
    """The worker already has ``MAX_WAITING_PER_WORKER`` requests waiting."""


_FIELDS = ("id, worker, first_day, last_day, requested_at, requested_by, state, claimed_at, attempts, "
           "finished_at, reason")


def _text(moment: datetime) -> str:
    return format_time(moment.astimezone(UTC))


class EvidenceRequestQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def request_evidence(self, worker: str, first_day: str, last_day: str, *, by: str) -> dict:
        """A new pending request, or the worker's request for the same period still waiting (asking twice
        makes one file). StoreError when the worker already has ``MAX_WAITING_PER_WORKER`` waiting."""
        with self.transaction():
            if not self.lock_worker(worker):
                raise StoreError(f"worker {worker} does not exist")
            same = self._rows(f"SELECT {_FIELDS} FROM evidence_requests WHERE worker = ? AND first_day = ? "
                              "AND last_day = ? AND state IN ('pending', 'working') ORDER BY id", (worker, first_day,
                                                                                              last_day))
            if same:
                return same[0]
            waiting = self.db.value("SELECT COUNT(*) FROM evidence_requests WHERE worker = ? "
                                    "AND state IN ('pending', 'working')", (worker,))
            if waiting >= MAX_WAITING_PER_WORKER:
                raise TooManyWaiting(f"{waiting} requests for evidence are still being prepared; wait for them")
            (number,) = self.db.execute(
                "INSERT INTO evidence_requests (worker, first_day, last_day, requested_at, requested_by, state) "
                "VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
                (worker, first_day, last_day, self._now_text(), by)).fetchone()
            return self.evidence_request(number)

    def evidence_request(self, number: int, *, worker: str | None = None) -> dict | None:
        """The request (without its document); with ``worker``, only if it is that worker's."""
        if not _a_row_id(number):
            return None
        rows = self._rows(f"SELECT {_FIELDS} FROM evidence_requests WHERE id = ?", (number,))
        if not rows or (worker is not None and rows[0]["worker"] != worker):
            return None
        return rows[0]

    def evidence_document(self, number: int, *, worker: str) -> str | None:
        """The signed file of the worker's request once done, else None."""
        if not _a_row_id(number):
            return None
        return self.db.value("SELECT document FROM evidence_requests WHERE id = ? AND worker = ? AND state = 'done'",
                             (number, worker))

    def claim_evidence_request(self, claim: str, *, now: datetime | None = None) -> dict | None:
        """Claim the oldest claimable request for ``claim`` (a token unique to this claim): pending, or
        working under a stale claim. None if there is none, or if another process claimed it first."""
        now = now or self.now()
        stale = _text(now - STALE_CLAIM)
        claimable = ("(state = 'pending' OR (state = 'working' AND claimed_at < ?))")
        with self.transaction():
            # Claims that went stale too often fail: a request that kills its builder is not retried for ever.
            self.db.execute("UPDATE evidence_requests SET state = 'failed', finished_at = ?, claim = NULL, "
                            "reason = ? WHERE state = 'working' AND claimed_at < ? AND attempts >= ?",
                            (_text(now), f"the file was not finished after {MAX_ATTEMPTS} attempts", stale,
                             MAX_ATTEMPTS))
            claimed = self.db.value(
                f"""UPDATE evidence_requests SET state = 'working', claim = ?, claimed_at = ?, attempts = attempts + 1
                    WHERE {claimable} AND id = (SELECT id FROM evidence_requests WHERE {claimable}
                                                ORDER BY id LIMIT 1)
                    RETURNING id""", (claim, _text(now), stale, stale))
        return self.evidence_request(claimed) if claimed is not None else None

    def has_pending_evidence(self) -> bool:
        """Whether any request waits for a claim (a cheap read before the claim's write)."""
        stale = _text(self.now() - STALE_CLAIM)
        return self._one("SELECT 1 FROM evidence_requests WHERE state = 'pending' "
                         "OR (state = 'working' AND claimed_at < ?) LIMIT 1", (stale,)) is not None

    def finish_evidence_request(self, number: int, claim: str, *, document: str | None = None,
                                reason: str | None = None) -> bool:
        """Record the signed ``document`` (done) or the ``reason`` it could not be built (failed); False if
        the claim is no longer this claimer's (it went stale and another process took the request)."""
        if (document is None) == (reason is None):
            raise ValueError("a request finishes with a document or with a reason")
        with self.transaction():
            return self.db.execute(
                "UPDATE evidence_requests SET state = ?, document = ?, reason = ?, finished_at = ?, claim = NULL "
                "WHERE id = ? AND claim = ? AND state = 'working'",
                ("done" if document is not None else "failed", document, reason, self._now_text(), number,
                 claim)).rowcount == 1

    def prune_evidence_requests(self, *, now: datetime | None = None) -> int:
        """Delete the requests finished more than ``KEEP`` ago, documents and all; returns how many."""
        cutoff = _text((now or self.now()) - KEEP)
        with self.transaction():
            return self.db.execute("DELETE FROM evidence_requests WHERE state IN ('done', 'failed') "
                                   "AND finished_at < ?", (cutoff,)).rowcount


def _a_row_id(number: object) -> bool:
    """A number a row id can be: what a URL sends may exceed the engines' 64-bit integers."""
    return isinstance(number, int) and 0 < number < 2**63
