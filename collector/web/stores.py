"""Stores kept open between requests.

Opening a store per request opened a PostgreSQL session per request (and one more for the worker page's
access-log write): authentication, a backend process and the session's settings, about 40 ms of a
worker's page when the server is busy, several times the page's own work. A request borrows an open
store here and its ``with`` block hands it back, still open, for the next.

At most ``IDLE`` stores of each kind wait open; in flight there are as many as requests (the web
bounds and the thread pool limit those). A store is never handed back with a transaction open, nor
after the database failed it (a broken session, a server restarted): that one is closed, and the next
request opens a fresh one. A store holds no request's state: its only memory, the schema steps it has
seen applied, is safe to keep.
"""

from __future__ import annotations

import threading
from pathlib import Path

from collector.store import DatabaseError, Store, StoreError

#: Open stores waiting per database and kind (read-only, or writing without upgrading the schema), and
#: in all: a process serving one database uses two kinds; the whole cap matters to a process that opened
#: many databases one after another (tests), whose oldest are closed first.
IDLE = 8
TOTAL_IDLE = 16


class _Idle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, bool], list[KeptStore]] = {}

    def take(self, key: tuple[str, bool]) -> KeptStore | None:
        with self._lock:
            waiting = self._waiting.get(key)
            return waiting.pop() if waiting else None

    def give(self, key: tuple[str, bool], store: KeptStore) -> bool:
        evicted = []
        with self._lock:
            waiting = self._waiting.pop(key, [])
            self._waiting[key] = waiting  # the most recently used kind goes last
            if len(waiting) >= IDLE:
                return False
            waiting.append(store)
            while sum(len(kind) for kind in self._waiting.values()) > TOTAL_IDLE:
                oldest = next(iter(self._waiting))
                evicted.append(self._waiting[oldest].pop(0))
                if not self._waiting[oldest]:
                    del self._waiting[oldest]
        for old in evicted:
            old.close()
        return True

    def waiting(self, key: tuple[str, bool]) -> int:
        with self._lock:
            return len(self._waiting.get(key, ()))

    def close_all(self) -> None:
        with self._lock:
            stores = [store for waiting in self._waiting.values() for store in waiting]
            self._waiting.clear()
        for store in stores:
            store.close()


_IDLE = _Idle()


class KeptStore(Store):
    """A store a request borrows: leaving its ``with`` block hands it back open, unless the database
    failed in it or a transaction is still open. ``close()`` closes it for good."""

    _key: tuple[str, bool]

    def __exit__(self, kind, value, traceback) -> None:
        failed = kind is not None and issubclass(kind, (DatabaseError, StoreError))
        if failed or self.db.in_transaction or not _IDLE.give(self._key, self):
            self.close()


def kept_store(db: str | Path, *, readonly: bool) -> Store:
    """An open store for one request: a waiting one, else a new one (a writer never upgrades the schema:
    the daemon and `collector db upgrade` do). StoreError when the database cannot be opened."""
    key = (str(db), readonly)
    store = _IDLE.take(key)
    if store is None:
        store = KeptStore(db, readonly=readonly, upgrade=False)
        store._key = key
    return store


def waiting(db: str | Path, *, readonly: bool) -> int:
    """How many open stores wait for a request (tests, /metrics)."""
    return _IDLE.waiting((str(db), readonly))


def close_all() -> None:
    """Close every waiting store (the web process stopping, tests)."""
    _IDLE.close_all()
