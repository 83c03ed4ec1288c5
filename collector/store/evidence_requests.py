"""Evidence requests: a worker's page asks, a collector process that holds the bank's key signs.

A request is ``pending`` until a process claims it (``working``, with a one-off claim token), then
``done`` with the signed file's bytes or ``failed`` with a reason. A claim is one UPDATE that matches only
a row still claimable, so two processes never both hold it (SQLite has one writer; PostgreSQL re-checks
the row under its lock); finishing matches the claim token, so a process whose claim went stale and was
taken over cannot overwrite the new claimer's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from gate_agent.protocol import format_time

from .connection import Connection
from .errors import StoreError
from .packed import signed_fields

#: Requests a worker may have waiting (pending or being built) at once.
MAX_WAITING_PER_WORKER = 3
#: A claim not finished after this long is taken to be of a process that died; it may be claimed again.
STALE_CLAIM = timedelta(minutes=10)
#: Claims of one request at most: past them the request fails rather than being tried for ever.
MAX_ATTEMPTS = 3
#: Finished requests (and their documents) are deleted this long after they finished.
KEEP = timedelta(days=7)



@dataclass(frozen=True, slots=True)
class EvidenceLimits:
    """What one worker's requests may cost the bank (``[evidence]`` in the configuration, docs/security.md):
    requests made in any 24 hours, bytes of signed files kept at once, days of one period, and punches of
    the gates' chain segments one file would carry (its build time and memory grow with them)."""

    builds_per_day: int = 10
    stored_bytes: int = 50 * 1024 * 1024
    max_days: int = 366
    max_segment_punches: int = 50_000

    def __post_init__(self) -> None:
        for name in ("builds_per_day", "stored_bytes", "max_days", "max_segment_punches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"evidence limit {name} must be a positive whole number")


class EvidenceRefused(StoreError):
    """A request the bank will not take on (a limit of ``EvidenceLimits``); the message says which and what
    to do. ``busy``: the worker may ask again later (too many, too much kept), else the period is the matter."""

    busy = True


class TooManyWaiting(EvidenceRefused):
    """The worker already has ``MAX_WAITING_PER_WORKER`` requests waiting."""


class TooManyToday(EvidenceRefused):
    """The worker made ``builds_per_day`` requests in the last 24 hours."""


class TooMuchKept(EvidenceRefused):
    """The worker's signed files still kept reach ``stored_bytes``."""


class PeriodTooLarge(EvidenceRefused):
    """The period is longer than ``max_days``, or its chain segments hold more than ``max_segment_punches``."""

    busy = False


_FIELDS = ("id, worker, first_day, last_day, requested_at, requested_by, state, claimed_at, attempts, "
           "finished_at, reason")


def _text(moment: datetime) -> str:
    return format_time(moment.astimezone(UTC))


class EvidenceRequestQueries:
    """Mixed into Store, whose ``_one``, ``_rows`` and ``transaction`` it uses."""

    db: Connection

    def request_evidence(self, worker: str, first_day: str, last_day: str, *, by: str,
                         limits: EvidenceLimits | None = None, now: datetime | None = None) -> dict:
        """A new pending request, or the worker's request for the same period still waiting (asking twice
        makes one file). EvidenceRefused when the worker already has ``MAX_WAITING_PER_WORKER`` waiting, or
        past one of ``limits`` (the defaults when None)."""
        limits = limits or EvidenceLimits()
        now = now or self.now()
        first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
        days = (last - first).days + 1
        if days > limits.max_days:
            raise PeriodTooLarge(f"the period {first_day}..{last_day} is {days} days; evidence covers at most "
                                 f"{limits.max_days} days at once: ask for a shorter period")
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
            made = self.db.value("SELECT COUNT(*) FROM evidence_requests WHERE worker = ? AND requested_at > ?",
                                 (worker, _text(now - timedelta(days=1))))
            if made >= limits.builds_per_day:
                raise TooManyToday(f"{made} requests for evidence were made in the last 24 hours, the most the "
                                   f"bank prepares for one worker a day ({limits.builds_per_day}); ask again tomorrow")
            kept = self.db.value("SELECT COALESCE(SUM(LENGTH(document)), 0) FROM evidence_requests "
                                 "WHERE worker = ? AND state = 'done'", (worker,))
            if kept >= limits.stored_bytes:
                raise TooMuchKept(f"your evidence files kept by the bank take {_megabytes(kept)}, the most kept "
                                  f"for one worker ({_megabytes(limits.stored_bytes)}); download them, they are "
                                  f"deleted {KEEP.days} days after they were made, then ask again")
            punches = self.evidence_segment_punches(worker, first, last)
            if punches > limits.max_segment_punches:
                raise PeriodTooLarge(f"the period {first_day}..{last_day} would put {punches} gate punches in "
                                     f"the file, more than the {limits.max_segment_punches} one file may carry: "
                                     "ask for a shorter period")
            (number,) = self.db.execute(
                "INSERT INTO evidence_requests (worker, first_day, last_day, requested_at, requested_by, state) "
                "VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
                (worker, first_day, last_day, self._now_text(), by)).fetchone()
            return self.evidence_request(number)

    def evidence_segment_punches(self, worker: str, first: date, last: date) -> int:
        """About how many gate punches the worker's file for first..last carries: per gate, the punches of
        the worker's cards (while the worker held them) around the period where the gate links each card's
        punches (protocol 3: the file carries the card's chain), else the gate's chain from the first to
        the last of them. The period's local days are widened by two days each side, more than any site's
        offset and shift reach, so the estimate errs high; it reads the worker's own punches only (an index)."""
        start = f"{(first - timedelta(days=2)).isoformat()}T00:00:00.000Z"
        end = f"{(last + timedelta(days=3)).isoformat()}T00:00:00.000Z"
        rows = self.db.execute(
            "SELECT p.site, p.gate, MIN(p.seq), MAX(p.seq), COUNT(*) FROM cards c JOIN punches p ON p.card = c.uid "
            "WHERE c.worker = ? AND p.gate IS NOT NULL AND p.time >= ? AND p.time < ? "
            "AND (c.valid_from IS NULL OR p.time >= c.valid_from) AND (c.valid_to IS NULL OR p.time < c.valid_to) "
            "GROUP BY p.site, p.gate", (worker, start, end)).fetchall()
        total = 0
        for site, gate, low, high, count in rows:
            # A gate's punches after its upgrade are all of protocol 3: its first one here tells.
            first_row = self.gate_punch_rows(site, gate, low, low)
            linked = bool(first_row) and signed_fields(first_row[0]).get("v", 1) >= 3
            # A card chain also carries a punch before and after the period (two a card, at most a few).
            total += count + 4 if linked else high - low + 1
        return total

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

    def release_evidence_request(self, number: int, claim: str) -> bool:
        """Give a claimed request back unbuilt (its builder is stopping): pending again, the attempt not
        counted, for the next process to build. False if the claim is no longer this claimer's."""
        with self.transaction():
            return self.db.execute(
                "UPDATE evidence_requests SET state = 'pending', claim = NULL, claimed_at = NULL, "
                "attempts = attempts - 1 WHERE id = ? AND claim = ? AND state = 'working'",
                (number, claim)).rowcount == 1

    def prune_evidence_requests(self, *, now: datetime | None = None) -> int:
        """Delete the requests finished more than ``KEEP`` ago, documents and all; returns how many."""
        cutoff = _text((now or self.now()) - KEEP)
        with self.transaction():
            return self.db.execute("DELETE FROM evidence_requests WHERE state IN ('done', 'failed') "
                                   "AND finished_at < ?", (cutoff,)).rowcount


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _a_row_id(number: object) -> bool:
    """A number a row id can be: what a URL sends may exceed the engines' 64-bit integers."""
    return isinstance(number, int) and 0 < number < 2**63
