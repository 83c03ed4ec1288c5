"""Local time at the edges: a site's IANA zone turns UTC punch times into local dates and back.

Every conversion here takes any time the wire format can carry (0001-01-01 to 9999-12-31 UTC, what a
gate with a broken clock may sign) without raising: a moment with no local date in the zone gives None,
and a local date outside the range reports cover is refused with ValueError.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gate_agent.protocol import ProtocolError, format_time, parse_time

from .errors import InputError

#: Before this, a gate's clock was surely not set (a Raspberry Pi boots at its last saved time or 1970).
PLAUSIBLE_FROM = "2020-01-01T00:00:00.000Z"
#: A punch made this long after the bank received it comes from a clock no working day can hold.
PLAUSIBLE_AHEAD = timedelta(days=1)
#: The local dates reports cover; far enough from datetime's limits that every day's UTC window,
#: widened by a shift, exists.
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2100, 12, 31)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"{name!r} is not an IANA time zone (such as Asia/Shanghai)") from None


def plausible_until(received_at: str) -> str:
    """The latest punch time that can still be placed on a working day, for a punch received then."""
    return format_time(parse_time(received_at) + PLAUSIBLE_AHEAD)


def implausible(utc_text: str, received_at: str) -> bool:
    """The time cannot be placed on a real working day: before 2020, more than a day after the bank
    received it (``received_at``), or either is not a wire time. Such a punch is listed, never counted."""
    made, received = parse_or_none(utc_text), parse_or_none(received_at)
    if made is None or received is None:
        return True
    return utc_text < PLAUSIBLE_FROM or made - received > PLAUSIBLE_AHEAD


def parse_or_none(utc_text: str) -> datetime | None:
    try:
        return parse_time(utc_text)
    except ProtocolError:
        return None


def check_date(day: date) -> date:
    if not FIRST_DATE <= day <= LAST_DATE:
        raise InputError(f"date {day.isoformat()} is outside {FIRST_DATE.isoformat()}..{LAST_DATE.isoformat()}")
    return day


def day_bounds(day: date, tz: ZoneInfo) -> tuple[str, str]:
    """UTC [start, end) of a local calendar day (23 or 25 hours long on DST change days)."""
    check_date(day)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return format_time(start), format_time(end)


def range_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[str, str]:
    return day_bounds(first, tz)[0], day_bounds(last, tz)[1]


def to_local(moment: datetime, tz: ZoneInfo) -> datetime | None:
    """The moment in the zone, or None when that local time has no date (beyond year 1 or 9999)."""
    try:
        return moment.astimezone(tz)
    except (OverflowError, ValueError):
        return None


def local(utc_text: str, tz: ZoneInfo) -> datetime | None:
    moment = parse_or_none(utc_text)
    return to_local(moment, tz) if moment is not None else None


def local_text(utc_text: str | None, tz: ZoneInfo) -> str | None:
    """ISO local time with its offset, to the second (what people read and spreadsheets parse); None
    when the time has no local date in the zone."""
    if utc_text is None:
        return None
    moment = local(utc_text, tz)
    return moment.isoformat(timespec="seconds") if moment is not None else None


def local_text_dt(moment: datetime | None, tz: ZoneInfo) -> str | None:
    found = to_local(moment, tz) if moment is not None else None
    return found.isoformat(timespec="seconds") if found is not None else None
