"""The store's clock: where the times it stamps on what it writes (added_at, detected_at, applied_at...)
come from. Passed in when the store is opened, so that a test, or a tool writing with a known time, says
what "now" is; a caller that already knows when something happened passes that time instead. Leases
alone expire by the database server's clock (``leases.py``): several hosts must agree on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: A clock answers an aware datetime (any zone; stored as UTC text with milliseconds).
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The host's wall clock, in UTC: every store's clock unless it is given another."""
    return datetime.now(UTC)
