"""Collector: verified, exactly-once ingest of gate punches, and the records bank ops pay from."""

__version__ = "0.1.0"
