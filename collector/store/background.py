"""Rounds of work in a daemon thread with a database connection of its own (the days, the bank's figures).

The daemon's ingest loop must never wait for them, nor they for it beyond a lock timeout: each has its
own connection, opened without schema upgrades (the daemon applied them). A database failure closes the
connection, and the round is tried again on a fresh one after a pause; any other exception is logged with
its traceback and tried again likewise: a bug in a background round must not stop the daemon running it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import Store
from .connection import DatabaseError, Timeouts
from .errors import StoreError

log = logging.getLogger(__name__)

#: Seconds before a round that failed is tried again.
FAILURE_SECONDS = 5.0


class BackgroundRounds:
    """Subclasses say what a round does (``round``) and how long to wait before the next one."""

    #: What the rounds keep, for the log ("days", "figures").
    what = "work"

    def __init__(self, db: str | Path, *, timeouts: Timeouts, failure_seconds: float = FAILURE_SECONDS):
        self.db, self._timeouts, self.failure_seconds = db, timeouts, failure_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.what, daemon=True)

    def round(self, store: Store) -> float:
        """One round of work; returns the seconds to wait before the next one."""
        raise NotImplementedError

    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        store = None
        while not self._stop.is_set():
            try:
                if store is None:
                    store = Store(self.db, upgrade=False, timeouts=self._timeouts)
                wait = self.round(store)
            except (DatabaseError, StoreError) as error:
                log.warning("%s not kept this round (tried again in %.0f s): %s", self.what, self.failure_seconds, error)
                if store is not None:
                    store.close()
                    store = None
                wait = self.failure_seconds
            except Exception:  # noqa: BLE001 - see the module's docstring
                log.exception("%s not kept this round", self.what)
                wait = self.failure_seconds
            if wait > 0:
                self._stop.wait(wait)
        if store is not None:
            store.close()
