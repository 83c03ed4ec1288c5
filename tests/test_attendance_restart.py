"""The lemma behind "a day never depends on the dates asked for" (attendance.fresh_start), as a property
of the pure rules: pairing one worker's punches read from a horizon the rule accepts gives every shift and
anomaly anchored after ``since`` what pairing the whole history gives. Cheap enough for thousands of
dense histories (repeated INs, toggles, night shifts, voids), which is where a chain of ignored punches
makes a day depend on punches long before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.attendance.rules import Event, Rules, daily_records, fresh_start

BASE = datetime(2026, 10, 28, tzinfo=UTC)
RULES = {"Asia/Shanghai": 16, "America/New_York": 12, "Europe/London": 8}


def event_list(draw, count: int) -> list[Event]:
    events = []
    for index in range(count):
        # Minutes over six days, bunched so that shifts, repeats and night shifts meet.
        minute = draw(st.integers(0, 6 * 24 * 60))
        events.append(Event(ref=f"g#{index}", worker="W1", time=BASE + timedelta(minutes=minute),
                            direction=draw(st.sampled_from(["in", "in", "out", "out", "toggle"])),
                            void=draw(st.integers(0, 9)) == 0,
                            flags=frozenset({"card_replay"}) if draw(st.integers(0, 19)) == 0 else frozenset()))
    return events


def anchored(records, since: datetime, tz) -> dict:
    """What the records say of the local dates from since's date on."""
    first_date = since.astimezone(tz).date()
    return {r.date: (r.worked_seconds, r.status, [(s.start and s.start.ref, s.end and s.end.ref, s.status)
                                                  for s in r.shifts], [(e.ref, why) for e, why in r.anomalies],
                     [e.ref for e in r.voided])
            for r in records if r.date >= first_date}


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), zone=st.sampled_from(sorted(RULES)), count=st.integers(0, 40),
       since_minute=st.integers(0, 6 * 24 * 60), now_minute=st.integers(0, 12 * 24 * 60))
def test_pairing_from_an_accepted_horizon_gives_what_the_whole_history_gives(data, zone, count, since_minute,
                                                                             now_minute):
    tz = ZoneInfo(zone)
    rules = Rules(tz, timedelta(hours=RULES[zone]))
    events = event_list(data.draw, count)
    now = BASE + timedelta(minutes=now_minute)
    # A read starts at a local midnight and looks back one shift, then twice as far, and so on.
    since = datetime.combine((BASE + timedelta(minutes=since_minute)).astimezone(tz).date(),
                             datetime.min.time(), tzinfo=tz).astimezone(UTC)
    lookback = rules.max_shift
    while True:
        horizon = since - lookback
        read = [e for e in events if e.time >= horizon]
        if fresh_start(read, since, horizon, rules) or horizon < BASE:
            break
        lookback *= 2
    assert anchored(daily_records(read, rules, now), since, tz) == anchored(daily_records(events, rules, now),
                                                                             since, tz)
