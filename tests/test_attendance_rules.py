"""The attendance rules as pure functions, table-driven: punches in, daily records out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.attendance.rules import Event, Rules, daily_records, open_shift

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")


def ev(when: str, direction: str, *, tz=SHANGHAI, worker="W1", ref=None, **fields) -> Event:
    """An event at a local wall-clock time ('2026-11-02 08:00') in ``tz``."""
    moment = datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=tz).astimezone(UTC)
    return Event(ref=ref or f"g#{when}{direction}", worker=worker, time=moment, direction=direction, gate="g",
                 **fields)


def at(when: str, tz=SHANGHAI) -> datetime:
    return datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=tz).astimezone(UTC)


def summary(records):
    return [(r.worker, r.date.isoformat(), r.worked_minutes, r.status, r.flags) for r in records]


CASES = {
    "normal day": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-02 17:00", "out")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "complete", [])]),
    "night shift is one record on the date of its IN": (
        [ev("2026-11-02 22:00", "in"), ev("2026-11-03 06:00", "out")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 480, "complete", [])]),
    "split shifts add up": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-02 12:00", "out"), ev("2026-11-02 13:00", "in"),
         ev("2026-11-02 17:30", "out")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 510, "complete", [])]),
    "an IN without OUT past max_shift is missing_out, no hours invented": (
        [ev("2026-11-02 08:00", "in")], "2026-11-03 02:00", SHANGHAI,
        [("W1", "2026-11-02", 0, "missing_out", ["missing_out"])]),
    "an IN within max_shift is open": (
        [ev("2026-11-02 08:00", "in")], "2026-11-02 12:00", SHANGHAI,
        [("W1", "2026-11-02", 0, "open", [])]),
    "an OUT without IN is missing_in": (
        [ev("2026-11-02 17:00", "out")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 0, "missing_in", ["missing_in"])]),
    "an OUT after more than max_shift closes nothing": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-03 09:00", "out")], "2026-11-04 12:00", SHANGHAI,
        [("W1", "2026-11-02", 0, "missing_out", ["missing_out"]),
         ("W1", "2026-11-03", 0, "missing_in", ["missing_in"])]),
    "repeated INs are an anomaly, not double-counted": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-02 08:05", "in"), ev("2026-11-02 17:00", "out")],
        "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "anomaly", ["repeated_in"])]),
    "repeated OUTs are an anomaly, not double-counted": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-02 17:00", "out"), ev("2026-11-02 17:04", "out")],
        "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "anomaly", ["repeated_out"])]),
    "DST spring forward: elapsed, not wall-clock (London 2026-03-29)": (
        [ev("2026-03-28 22:00", "in", tz=LONDON), ev("2026-03-29 06:00", "out", tz=LONDON)],
        "2026-03-30 12:00", LONDON,
        [("W1", "2026-03-28", 420, "complete", [])]),
    "DST fall back: elapsed, not wall-clock (London 2026-10-25)": (
        [ev("2026-10-24 22:00", "in", tz=LONDON), ev("2026-10-25 06:00", "out", tz=LONDON)],
        "2026-10-26 12:00", LONDON,
        [("W1", "2026-10-24", 540, "complete", [])]),
    "toggle gates follow the previous punch that day": (
        [ev("2026-11-02 08:00", "toggle"), ev("2026-11-02 12:00", "toggle"), ev("2026-11-02 13:00", "toggle"),
         ev("2026-11-02 17:00", "toggle")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 480, "complete", [])]),
    "a toggle closes a night shift across midnight": (
        [ev("2026-11-02 22:00", "toggle"), ev("2026-11-03 06:00", "toggle"), ev("2026-11-03 21:00", "toggle")],
        "2026-11-03 22:00", SHANGHAI,
        [("W1", "2026-11-02", 480, "complete", []), ("W1", "2026-11-03", 0, "open", [])]),
    "a void punch is shown but takes no part": (
        [ev("2026-11-02 08:00", "in"), ev("2026-11-02 12:00", "out", void=True), ev("2026-11-02 17:00", "out")],
        "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "complete", ["void"])]),
    "a manual punch takes part and is flagged": (
        [ev("2026-11-02 08:00", "in", manual=True), ev("2026-11-02 17:00", "out")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "complete", ["manual"])]),
    "punch flags reach the record": (
        [ev("2026-11-02 08:00", "in", flags=frozenset({"clock_unsynced"})), ev("2026-11-02 17:00", "out")],
        "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 540, "complete", ["clock_unsynced"])]),
    "workers are independent": (
        [ev("2026-11-02 08:00", "in", worker="W2"), ev("2026-11-02 09:00", "in"), ev("2026-11-02 17:00", "out"),
         ev("2026-11-02 16:00", "out", worker="W2")], "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 480, "complete", []), ("W2", "2026-11-02", 480, "complete", [])]),
    "minutes are the day's total rounded down": (
        [ev("2026-11-02 08:00", "in"), Event("g#x", "W1", at("2026-11-02 08:10") + timedelta(seconds=59), "out")],
        "2026-11-03 12:00", SHANGHAI,
        [("W1", "2026-11-02", 10, "complete", [])]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rules(name):
    events, now, tz, expected = CASES[name]
    records = daily_records(events, Rules(tz, timedelta(hours=16)), at(now, tz))
    assert summary(records) == expected


def test_first_in_and_last_out_carry_the_local_offset():
    records = daily_records([ev("2026-10-24 22:00", "in", tz=LONDON), ev("2026-10-25 06:00", "out", tz=LONDON)],
                            Rules(LONDON), at("2026-10-26 00:00", LONDON))
    assert records[0].first_in.astimezone(LONDON).isoformat() == "2026-10-24T22:00:00+01:00"
    assert records[0].last_out.astimezone(LONDON).isoformat() == "2026-10-25T06:00:00+00:00"


def test_a_late_upload_changes_only_the_affected_day():
    rules = Rules(SHANGHAI)
    now = at("2026-11-06 12:00")
    on_time = [ev("2026-11-02 08:00", "in"), ev("2026-11-03 08:00", "in"), ev("2026-11-03 17:00", "out")]
    before = {r.date: r for r in daily_records(on_time, rules, now)}
    late = ev("2026-11-02 17:00", "out", flags=frozenset({"late_upload"}))  # a gate offline for days
    after = {r.date: r for r in daily_records(on_time + [late], rules, now)}
    assert (before[date(2026, 11, 2)].status, before[date(2026, 11, 2)].worked_minutes) == ("missing_out", 0)
    assert (after[date(2026, 11, 2)].status, after[date(2026, 11, 2)].worked_minutes) == ("complete", 540)
    assert "late_upload" in after[date(2026, 11, 2)].flags
    assert summary([after[date(2026, 11, 3)]]) == summary([before[date(2026, 11, 3)]])


def test_open_shift_for_headcount():
    rules = Rules(SHANGHAI)
    events = [ev("2026-11-02 08:00", "in"), ev("2026-11-02 12:00", "out"), ev("2026-11-02 13:00", "in")]
    shift = open_shift(events, rules, at("2026-11-02 15:00"))
    assert shift is not None and shift.start.time == at("2026-11-02 13:00")
    assert open_shift(events[:2], rules, at("2026-11-02 15:00")) is None
    assert open_shift(events, rules, at("2026-11-03 06:00")) is None  # the IN is older than max_shift
