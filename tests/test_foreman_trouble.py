"""What turns the site foreman's banner red, read from a real store on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.attendance.trouble import report, trouble
from collector.store import Store
from gate_agent.protocol import format_time
from tests.helpers import heartbeat

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(database):
    from tests.helpers import PunchFactory

    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_site("S10", timezone="Asia/Shanghai")
        for site, gate in (("S1", "north"), ("S1", "south"), ("S10", "west")):
            store.add_gate(site, gate, PunchFactory(site=site, gate=gate).public_key)
        yield store


def beat(store, gate: str, ago: float = 1, site: str = "S1", **facts) -> None:
    status = {"v": 1, "state": "online", **heartbeat(site=site, gate=gate, heartbeat_seconds=10, **facts)}
    with store.transaction():
        store.save_status(site, gate, status, format_time(NOW - timedelta(seconds=ago)))


def kinds(store) -> list[tuple]:
    return [(f["kind"], f["gate"]) for f in trouble(store, "S1", NOW)]


def test_healthy_gates_are_no_trouble(store):
    beat(store, "north")
    beat(store, "south")
    assert kinds(store) == []
    assert report(store, "S1", NOW) == {"site": "S1", "ok": True, "act_now": 0, "trouble": [],
                                        "as_of": "2026-11-28T06:00:00.000Z"}


def test_a_gate_never_seen_offline_or_silent_past_twice_its_heartbeat(store):
    beat(store, "north", ago=2 * 10 + 5)  # just within twice its 10 s heartbeat and the slack
    assert kinds(store) == [("gate_never_seen", "south")]
    beat(store, "north", ago=2 * 10 + 6)
    facts = trouble(store, "S1", NOW)
    assert [(f["kind"], f["gate"]) for f in facts] == [("gate_silent", "north"), ("gate_never_seen", "south")]
    assert facts[0]["since"] == format_time(NOW - timedelta(seconds=26))
    with store.transaction():
        store.save_status("S1", "south", {"v": 1, "state": "offline", "site": "S1", "gate": "south"},
                          format_time(NOW - timedelta(minutes=3)))
    assert ("gate_offline", "south") in kinds(store)
    store.set_gate_active("S1", "south", False)  # a deactivated gate is nobody's trouble
    assert kinds(store) == [("gate_silent", "north")]


def test_an_unsynchronised_clock_and_a_full_buffer(store):
    beat(store, "north", synced=False)
    beat(store, "south", buffer_pct=80.5)
    facts = trouble(store, "S1", NOW)
    assert [(f["kind"], f["gate"]) for f in facts] == [("gate_clock", "north"), ("gate_buffer", "south")]
    assert facts[1]["percent"] == 80.5
    # The clock is passed on to the bank; a store filling up is the site's to act on.
    assert [f["urgency"] for f in facts] == ["inform", "act"]
    beat(store, "south", buffer_pct=80)
    assert kinds(store) == [("gate_clock", "north")]
    beat(store, "south", buffer_pct=12, buffer_warning=True)  # the gate's own warning counts too
    assert ("gate_buffer", "south") in kinds(store)


def test_refused_messages_per_gate_with_reasons_and_no_bytes(store):
    beat(store, "north")
    beat(store, "south")

    def refuse(topic: str, reason: str, ago: timedelta) -> None:
        with store.transaction():
            store.quarantine(topic=topic, reason=reason, detail="secret detail", raw=b"RAW-BYTES",
                             received_at=format_time(NOW - ago))

    for _ in range(3):
        refuse("attendance/v1/S1/north/punch", "unknown_key", timedelta(minutes=5))
    refuse("attendance/v1/S1/north/status", "schema", timedelta(minutes=50))
    refuse("attendance/v1/S1/south/punch", "bad_signature", timedelta(hours=2))  # over an hour ago
    refuse("attendance/v1/S10/west/punch", "unknown_key", timedelta(minutes=1))  # another site
    facts = trouble(store, "S1", NOW)
    assert facts == [{"kind": "gate_refused", "gate": "north", "count": 4,
                      "reasons": {"unknown_key": 3, "schema": 1}, "last_at": format_time(NOW - timedelta(minutes=5)),
                      "gate_name": None, "urgency": "act"}]
    assert "RAW" not in repr(report(store, "S1", NOW)) and "secret" not in repr(report(store, "S1", NOW))
    assert [(f["kind"], f["gate"]) for f in trouble(store, "S10", NOW)] == [
        ("gate_never_seen", "west"), ("gate_refused", "west")]
    assert trouble(store, "S1", NOW + timedelta(hours=1)) != []  # silent by then, but nothing refused
    assert "gate_refused" not in {f["kind"] for f in trouble(store, "S1", NOW + timedelta(hours=1))}


def test_the_collectors_ingest_lag_while_it_is_fresh(store):
    beat(store, "north")
    beat(store, "south")
    with store.transaction():
        store.set_gauges({"ingest_lag_seconds_last": 125.4}, format_time(NOW - timedelta(minutes=1)))
    assert trouble(store, "S1", NOW)[-1] == {"kind": "ingest_lag", "gate": None, "seconds": 125, "urgency": "act"}
    assert kinds_at(store, NOW + timedelta(minutes=10)) == []  # an old measurement says nothing of now
    with store.transaction():
        store.set_gauges({"ingest_lag_seconds_last": 2.0}, format_time(NOW))
    assert kinds(store) == []


def kinds_at(store, now: datetime) -> list[str]:
    return [f["kind"] for f in trouble(store, "S1", now) if f["kind"] == "ingest_lag"]


# ---------------------------------------------------------------------------------------------- retired gates


def retire(store, gate: str, ago: timedelta, site: str = "S1") -> None:
    """Deactivate ``gate`` as if it had been done ``ago`` before NOW (the store stamps its own clock)."""
    clock = store.clock
    store.clock = lambda: NOW - ago
    try:
        store.set_gate_active(site, gate, False)
    finally:
        store.clock = clock


def refuse(store, gate: str, reason: str, ago: timedelta) -> None:
    with store.transaction():
        store.quarantine(topic=f"attendance/v1/S1/{gate}/punch", reason=reason, detail="d", raw=b"x",
                         received_at=format_time(NOW - ago))


def test_a_retired_gate_leaves_the_banner_unless_it_still_sends(store):
    """Reproduction (issue 22, item 9): a gate deactivated after its replacement went in kept its lines on the
    banner; now a retired gate is nobody's trouble until it sends again after its deactivation."""
    beat(store, "north")
    beat(store, "south", ago=30 * 60)  # its last heartbeat: half an hour ago, before it was retired
    refuse(store, "south", "unknown_key", timedelta(minutes=25))  # refused before it was retired too
    retire(store, "south", timedelta(minutes=20))
    assert kinds(store) == []
    row = next(g for g in store.gates("S1", with_gaps=False) if g["gate"] == "south")
    assert row["active"] == 0 and row["deactivated_at"] == format_time(NOW - timedelta(minutes=20))

    # It sends a heartbeat after its retirement: it is back on the banner, marked, and red.
    beat(store, "south", ago=60)
    facts = trouble(store, "S1", NOW)
    assert facts == [{"kind": "gate_retired_sending", "gate": "south", "since": format_time(NOW - timedelta(minutes=20)),
                      "last_at": format_time(NOW - timedelta(seconds=60)), "count": 1,
                      "reasons": {"unknown_key": 1}, "gate_name": None, "urgency": "act"}]
    assert report(store, "S1", NOW)["act_now"] == 1
    # Quiet for longer than the window: it leaves again.
    assert [k for k in kinds_of(store, NOW + timedelta(minutes=61)) if k[1] == "south"] == []

    # Punches it sends are refused (gate_inactive): that is sending too, with how many.
    refuse(store, "south", "gate_inactive", -timedelta(minutes=29))
    refuse(store, "south", "gate_inactive", -timedelta(minutes=30))
    late = NOW + timedelta(minutes=70)  # the heartbeat is out of the window, the refusals not
    (fact,) = [f for f in trouble(store, "S1", late) if f["gate"] == "south"]
    assert fact["kind"] == "gate_retired_sending" and fact["last_at"] == format_time(NOW + timedelta(minutes=30))
    assert fact["reasons"] == {"gate_inactive": 2}

    # Put back in use: an active gate again, judged as any other, and no deactivation time kept.
    store.set_gate_active("S1", "south", True)
    assert next(g for g in store.gates("S1", with_gaps=False) if g["gate"] == "south")["deactivated_at"] is None
    assert ("gate_retired_sending", "south") not in kinds(store)


def test_deactivating_again_keeps_the_first_moment(store):
    retire(store, "south", timedelta(hours=3))
    retire(store, "south", timedelta(minutes=1))
    row = next(g for g in store.gates("S1", with_gaps=False) if g["gate"] == "south")
    assert row["deactivated_at"] == format_time(NOW - timedelta(hours=3))


def test_a_fact_names_the_gate_as_the_site_calls_it(store):
    beat(store, "south")
    store.name_gate("S1", "north", "北门")
    facts = trouble(store, "S1", NOW)
    assert [(f["kind"], f["gate"], f["gate_name"]) for f in facts] == [("gate_never_seen", "north", "北门")]


def kinds_of(store, now: datetime) -> list[tuple]:
    return [(f["kind"], f["gate"]) for f in trouble(store, "S1", now)]
