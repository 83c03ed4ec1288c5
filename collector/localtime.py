"""Local time at the edges: a site's IANA zone turns UTC punch times into local dates and back."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gate_agent.protocol import format_time, parse_time


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (such as Asia/Shanghai)") from None


def day_bounds(day: date, tz: ZoneInfo) -> tuple[str, str]:
    """UTC [start, end) of a local calendar day (23 or 25 hours long on DST change days)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return format_time(start), format_time(end)


def range_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[str, str]:
    return day_bounds(first, tz)[0], day_bounds(last, tz)[1]


def local(utc_text: str, tz: ZoneInfo) -> datetime:
    return parse_time(utc_text).astimezone(tz)


def local_text(utc_text: str | None, tz: ZoneInfo) -> str | None:
    """ISO local time with its offset, to the second (what people read and spreadsheets parse)."""
    if utc_text is None:
        return None
    return local(utc_text, tz).isoformat(timespec="seconds")

