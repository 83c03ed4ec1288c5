"""The daemon's days thread: keeps the kept days (``days.py``) up to date beside ingest, never on it.

Ingest only leaves a mark with each punch; recomputing the days the marks name takes a read of each
worker's punches, so it runs in a thread with its own database connection, in small transactions. Reads
recompute whatever is still marked in what they ask for, so a lag costs the reader a little, never a
wrong day. Several collector processes may run it at once: a worker's days are recomputed under a
try-lock, and a mark is removed only by whoever recomputed every day it names.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from collector.attendance import days
from collector.store import DatabaseError, Store, StoreError, Timeouts

log = logging.getLogger(__name__)

#: Marks taken per round.
MARKS_PER_ROUND = 500
#: Seconds between looks while nothing is marked, and after a failure.
IDLE_SECONDS = 0.5
FAILURE_SECONDS = 5.0


class DayMaintainer:
    """A thread that recomputes marked days until stopped."""

    def __init__(self, db: str | Path, *, timeouts: Timeouts, idle_seconds: float = IDLE_SECONDS):
        self.db, self._timeouts, self.idle_seconds = db, timeouts, idle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="days", daemon=True)
        self.units = 0  # (site, worker) recomputed since start

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
                done = days.refresh(store, limit=MARKS_PER_ROUND)
                self.units += done.units
                if done.units == 0 and done.dropped == 0:
                    self._stop.wait(self.idle_seconds)
            except (DatabaseError, StoreError) as error:
                log.warning("days not recomputed this round (tried again in %.0f s): %s", FAILURE_SECONDS, error)
                if store is not None:
                    store.close()
                    store = None
                self._stop.wait(FAILURE_SECONDS)
            except Exception:  # noqa: BLE001 - a bug here must not stop ingest; reads recompute what is marked
                log.exception("days not recomputed this round")
                self._stop.wait(FAILURE_SECONDS)
        if store is not None:
            store.close()
