"""The daemon's days thread: keeps the kept days (``days.py``) up to date beside ingest, never on it.

Ingest only leaves a mark with each punch; recomputing the days the marks name takes a read of each
worker's punches, so it runs in a thread with its own database connection, in small transactions. Reads
recompute whatever is still marked in what they ask for, so a lag costs the reader a little, never a
wrong day. Several collector processes may run it at once: a worker's days are recomputed under a
try-lock, and a mark is removed only by whoever recomputed every day it names.
"""

from __future__ import annotations

from pathlib import Path

from collector.attendance import days
from collector.store import Store, Timeouts
from collector.store.background import BackgroundRounds

#: Marks taken per round.
MARKS_PER_ROUND = 500
#: Seconds between looks while nothing is marked.
IDLE_SECONDS = 0.5


class DayMaintainer(BackgroundRounds):
    """A thread that recomputes marked days until stopped."""

    what = "days"

    def __init__(self, db: str | Path, *, timeouts: Timeouts, idle_seconds: float = IDLE_SECONDS):
        super().__init__(db, timeouts=timeouts)
        self.idle_seconds = idle_seconds
        self.units = 0  # (site, worker) recomputed since start

    def round(self, store: Store) -> float:
        done = days.refresh(store, limit=MARKS_PER_ROUND)
        self.units += done.units
        return self.idle_seconds if done.units == 0 and done.dropped == 0 else 0.0
