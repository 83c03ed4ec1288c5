"""Personal links: how a worker reaches their own record without an account.

A link carries a secret of 32 random bytes (``secrets.token_urlsafe``: 43 characters). The bank keeps
only its SHA-256, so a copy of the database opens no worker's page; issuing a new link revokes the old
one. The secret travels in the URL's fragment (``https://bank.example/w#SECRET``), which a browser never
sends to a server, so it appears in no access log; the page exchanges it once for a session of that
browser (a second secret, of which the bank keeps the SHA-256 too) held in an HttpOnly, SameSite=Strict
cookie, and removes the link from the address bar and the history. Signing out revokes that session;
re-issuing or revoking the link ends all of its sessions.

Wrong secrets are counted per client address, per secret and in all; past a limit a wrong secret is
answered 429 for a while instead of 401. A secret is checked before any count is read, so a valid link or
session is never refused because others guessed, and a request that presents nothing is not a guess.
The 256 bits are what make guessing hopeless; the counts keep wrong attempts visible and their answers dull.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from collector.store import Store
from gate_agent.protocol import format_time

SECRET_BYTES = 32
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
#: Distinct wrong secrets per client address in WINDOW_SECONDS before 429, from all addresses together, and
#: how often one wrong secret may be presented again (a stale cookie on a shared phone).
FAILURES_PER_CLIENT = 10
FAILURES_IN_ALL = 200
REPEATS_PER_SECRET = 30
WINDOW_SECONDS = 600.0
#: How long a browser's session lasts, and how many browsers a worker may hold sessions in at once (a new
#: one ends the oldest, so a link cannot grow the database).
SESSION_DAYS = 30
SESSIONS_PER_WORKER = 8


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def well_formed(secret: object) -> bool:
    return isinstance(secret, str) and _SECRET.fullmatch(secret) is not None


def link_url(base_url: str, secret: str) -> str:
    return f"{base_url.rstrip('/')}/w#{secret}"


def issue(store: Store, worker: str, *, by: str) -> tuple[str, dict]:
    """A new secret for the worker (the old link stops working); returns the secret, shown only now."""
    secret = new_secret()
    return secret, store.issue_worker_link(worker, secret_hash(secret), by=by)


def revoke(store: Store, worker: str, *, by: str) -> int:
    """End the worker's link and every session opened with it; how many links ended."""
    return store.revoke_worker_links(worker, by=by)


def holder(store: Store, presented: object) -> str | None:
    """The worker whose valid link this secret is, or None (malformed, unknown or revoked)."""
    if not well_formed(presented):
        return None
    digest = secret_hash(presented)
    row = store.worker_link(digest)
    # The row was found by its hash; comparing again in constant time costs nothing and keeps the rule.
    if row is None or not hmac.compare_digest(row["secret_sha256"].encode(), digest.encode()):
        return None
    return row["worker"]


def open_session(store: Store, presented: object, *, now: datetime | None = None) -> tuple[str, dict] | None:
    """Trade a valid link for a session of one browser: (the session's secret, for the cookie only,
    {worker, expires_at}), or None for a link that is malformed, unknown or revoked."""
    if not well_formed(presented):
        return None
    if not store.has("worker_sessions"):  # a database not upgraded yet: the cookie holds the link, as it did
        worker = holder(store, presented)
        return (presented, {"worker": worker, "expires_at": None}) if worker is not None else None
    now = now or datetime.now(UTC)
    secret = new_secret()
    opened = store.open_worker_session(secret_hash(presented), secret_hash(secret), now=format_time(now),
                                       expires_at=format_time(now + timedelta(days=SESSION_DAYS)),
                                       keep=SESSIONS_PER_WORKER)
    return (secret, opened) if opened is not None else None


def session(store: Store, presented: object, *, now: datetime | None = None) -> dict | None:
    """The live session this cookie value holds ({worker, link_issued_at}), or None: malformed, unknown,
    signed out, expired, or its link re-issued or revoked."""
    if not well_formed(presented):
        return None
    return store.worker_session(secret_hash(presented), format_time(now or datetime.now(UTC)))


def end_session(store: Store, presented: object, *, now: datetime | None = None) -> bool:
    """Sign a browser out: its session is revoked in the database (True if one was live)."""
    if not well_formed(presented):
        return False
    return store.end_worker_session(secret_hash(presented), format_time(now or datetime.now(UTC)))


class Attempts:
    """Wrong secrets in a sliding window: distinct ones per client address, distinct ones in all, and repeats
    of each. Only wrong secrets are counted (the caller checks a secret first and serves a valid one
    whatever these say), so neither a crowd nor a neighbour behind the same proxy can lock a holder out.
    Kept in the serving process's memory: a restart forgets them, which costs a guesser nothing worth having.
    Memory is bounded: the counts stop growing at their limits, and what aged out is dropped."""

    def __init__(self, per_client: int = FAILURES_PER_CLIENT, in_all: int = FAILURES_IN_ALL,
                 window: float = WINDOW_SECONDS, per_secret: int = REPEATS_PER_SECRET, clock=time.monotonic):
        self.per_client, self.in_all, self.window, self.per_secret = per_client, in_all, window, per_secret
        self.clock = clock
        self._by_client: dict[str, dict[str, float]] = {}   # client -> wrong secret's digest -> first seen
        self._by_secret: dict[str, deque[float]] = {}       # wrong secret's digest -> times presented
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def wrong(self, client: str, presented: object) -> float | None:
        """Count a wrong secret from ``client``: None (answer 401), or the seconds until this client, this
        secret or everyone may try again (answer 429 with Retry-After)."""
        key = secret_hash(presented)[:32] if isinstance(presented, str) and presented.isascii() else "other"
        with self._lock:
            now = self.clock()
            self._forget(now)
            mine = self._by_client.get(client, {})
            repeats = self._by_secret.get(key, deque())
            waits = []
            if key not in mine:
                if len(mine) >= self.per_client:
                    waits.append(min(mine.values()) + self.window - now)
                if len(self._all) >= self.in_all:
                    waits.append(self._all[0] + self.window - now)
            if len(repeats) >= self.per_secret:
                waits.append(repeats[0] + self.window - now)
            if waits:
                return max(0.0, max(waits))
            if key not in mine:
                self._by_client.setdefault(client, mine)[key] = now
                self._all.append(now)
            self._by_secret.setdefault(key, repeats).append(now)
            return None

    def _forget(self, now: float) -> None:
        horizon = now - self.window
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for client in list(self._by_client):
            seen = self._by_client[client]
            for key in [k for k, at in seen.items() if at <= horizon]:
                del seen[key]
            if not seen:
                del self._by_client[client]
        for key in list(self._by_secret):
            times = self._by_secret[key]
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._by_secret[key]
