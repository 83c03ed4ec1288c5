"""Gate agent: turns NFC card taps at a site gate into signed, chained, durable punches."""

__version__ = "0.1.0"
