"""Personal data shown masked: ID numbers, phone numbers and bank accounts appear whole only where a
payment needs them (the payment batch); everywhere else, enough to recognise, not enough to use."""

from __future__ import annotations


def _mask(value: str | None, keep_start: int, keep_end: int) -> str | None:
    if value is None or value == "":
        return value
    text = str(value)
    if len(text) <= keep_start + keep_end:
        return "*" * len(text)
    return text[:keep_start] + "*" * (len(text) - keep_start - keep_end) + text[-keep_end:]


def id_number(value: str | None) -> str | None:
    """110101199003071234 -> 110***********1234 (the region's first digits and the last four)."""
    return _mask(value, 3, 4)


def phone(value: str | None) -> str | None:
    """13812345678 -> 138****5678"""
    return _mask(value, 3, 4)


def account(value: str | None) -> str | None:
    """6222021234567890123 -> ***************0123"""
    return _mask(value, 0, 4)
