"""Personal links: how a worker reaches their own record without an account.

A link carries a secret of 32 random bytes (``secrets.token_urlsafe``: 43 characters). The bank keeps
only its SHA-256, so a copy of the database opens no worker's page; issuing a new link revokes the old
one. The secret travels in the URL's fragment (``https://bank.example/w#SECRET``), which a browser never
sends to a server, so it appears in no access log; the page exchanges it once for an HttpOnly,
SameSite=Strict cookie and removes it from the address bar and the history.

Failed attempts are counted per client address and in all; past a limit the answer is 429 for a while,
so guessing is slower than the heat death of the universe even without the 256 bits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque

from .store import Store

SECRET_BYTES = 32
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
#: Failed attempts per client address in WINDOW_SECONDS before 429; and from all addresses together.
FAILURES_PER_CLIENT = 10
FAILURES_IN_ALL = 200
WINDOW_SECONDS = 600.0


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


class Attempts:
    """Failed link attempts in a sliding window, per client and in all (in the serving process's memory:
    a restart forgets them, which costs a guesser nothing worth having)."""

    def __init__(self, per_client: int = FAILURES_PER_CLIENT, in_all: int = FAILURES_IN_ALL,
                 window: float = WINDOW_SECONDS, clock=time.monotonic):
        self.per_client, self.in_all, self.window, self.clock = per_client, in_all, window, clock
        self._by_client: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def blocked(self, client: str) -> bool:
        with self._lock:
            now = self.clock()
            self._trim(self._all, now)
            mine = self._by_client.get(client)
            if mine is not None:
                self._trim(mine, now)
                if not mine:
                    del self._by_client[client]
                    mine = None
            return len(self._all) >= self.in_all or (mine is not None and len(mine) >= self.per_client)

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            self._all.append(now)
            self._by_client.setdefault(client, deque()).append(now)
            if len(self._by_client) > 10_000:  # many addresses: forget those with nothing recent
                for key in [k for k, v in self._by_client.items() if not v or v[-1] <= now - self.window]:
                    del self._by_client[key]
