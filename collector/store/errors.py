"""What the store raises to its callers."""

from __future__ import annotations

from ..errors import CollectorError


class StoreError(CollectorError):
    """A registry operation that cannot be done; the message says why in one line."""
