"""A site-day turns final only on what a gate said in an online heartbeat made after the day's horizon.
A last will or a clean stop ("offline") says nothing about the punches a gate still holds, and a gate
clock running ahead cannot place a heartbeat later than the moment the bank received it."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.attendance.reports import attendance, site_day_final
from collector.ingest.pipeline import Incoming, Ingestor
from collector.localtime import day_bounds
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, encode_status, format_time, parse_time
from tests.helpers import CollectorSetup, PunchFactory, fill_outbox, heartbeat, stop_process, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOPICS = GateTopics("S1", "north")
CARD = "04A1B2C3D4E5F6"


def gate_state(collector: CollectorSetup) -> dict | None:
    with Store(collector.db_path, readonly=True) as store:
        return store.gate_status("S1", "north")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_gate_that_goes_offline_holding_unacknowledged_punches_keeps_its_days_provisional(
        tmp_path, broker, gate, how):
    today = datetime.now(SHANGHAI).date()
    yesterday, before = today - timedelta(days=1), today - timedelta(days=2)
    midnight = datetime.combine(today, time(0), tzinfo=SHANGHAI).astimezone(UTC)
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    # The bank holds another key for this gate (a replaced key not yet registered): it refuses the gate's
    # punches, so the gate keeps them pending, and its heartbeats, which are not signed, say so.
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", PunchFactory().public_key)
    fill_outbox(gate, 3, start=midnight - timedelta(hours=1))  # late last night, site time
    daemon = collector.start()
    agent = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        agent = gate.start_agent()
        wait_for(lambda: (state := gate_state(collector)) and state["state"] == "online" and state["pending"] == 3,
                 message="a heartbeat saying 3 punches are pending")
        assert collector.count("SELECT COUNT(*) FROM punches") == 0
        assert stop_process(agent, how) in (0, -signal.SIGKILL)
        wait_for(lambda: gate_state(collector)["state"] == "offline", message="the gate's offline status at the bank")
    finally:
        stop_process(daemon)
        if agent is not None:
            stop_process(agent, signal.SIGKILL)

    with Store(collector.db_path, readonly=True) as store:
        gates = store.gates("S1", with_gaps=False)
    now = datetime.now(UTC)

    def final(day) -> bool:
        return site_day_final(gates, parse_time(day_bounds(day, SHANGHAI)[1]), timedelta(0), now)

    # Yesterday's punches are still on the dead gate: yesterday cannot be final. The day before ended
    # before any of them was made, and the heartbeats after it said so: that day is final.
    assert final(yesterday) is False
    assert final(before) is True


@pytest.fixture
def north() -> PunchFactory:
    return PunchFactory()


@pytest.fixture
def store(tmp_path, north):
    store = Store(tmp_path / "collector.sqlite3")
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", north.public_key)
    yield store
    store.close()


def receive(store: Store, received_at: datetime, state: str = "online", **facts) -> None:
    payload = encode_status(state, **(heartbeat(**facts) if state == "online" else {"site": "S1", "gate": "north"}))
    result = Ingestor(store).ingest([Incoming(TOPICS.status, payload, format_time(received_at))])
    assert result.counts["statuses"] == 1


DAY_END = datetime(2026, 11, 2, 16, tzinfo=UTC)  # midnight in Shanghai
GRACE = timedelta(hours=6)
HORIZON = DAY_END + GRACE
LATER = HORIZON + timedelta(days=3)


def final(store: Store) -> bool:
    return site_day_final(store.gates("S1", with_gaps=False), DAY_END, GRACE, LATER)


def test_a_last_will_does_not_replace_the_heartbeat_finality_rests_on(store):
    held = format_time(HORIZON - timedelta(hours=1))
    receive(store, HORIZON + timedelta(hours=1), pending=2, last_seq=4, acked_seq=2, oldest_pending_at=held,
            time=format_time(HORIZON + timedelta(hours=1)))
    receive(store, HORIZON + timedelta(hours=2), state="offline")
    assert store.gate_status("S1", "north")["state"] == "offline"
    assert final(store) is False
    # A heartbeat after the horizon saying nothing is pending makes the day final; a later offline
    # status does not undo that.
    receive(store, HORIZON + timedelta(hours=3), time=format_time(HORIZON + timedelta(hours=3)))
    receive(store, HORIZON + timedelta(hours=4), state="offline")
    assert final(store) is True


def test_a_last_will_alone_proves_nothing(store):
    receive(store, HORIZON + timedelta(hours=1), state="offline")
    assert final(store) is False


@pytest.mark.parametrize("ahead", [timedelta(hours=2), timedelta(days=365 * 70)])
def test_a_gate_clock_ahead_cannot_make_a_day_final_before_the_bank_heard_the_gate(store, north, ahead):
    day = DAY_END.astimezone(SHANGHAI).date() - timedelta(days=1)
    store.add_worker("W1", name="Zhang Wei", cards=[CARD], sites=["S1"])
    punches = [north.next(card=CARD, direction=d, at=DAY_END - timedelta(hours=h)) for d, h in (("in", 16), ("out", 7))]
    Ingestor(store).ingest([Incoming(TOPICS.punch, encode_punches(punches), format_time(DAY_END - timedelta(hours=7)))])
    received = HORIZON - timedelta(hours=1)
    receive(store, received, time=format_time(received + ahead), synced=True)
    assert final(store) is False
    records = attendance(store, "S1", day, day, now=LATER, grace=GRACE)
    assert [(r["worked_minutes"], r["final"]) for r in records] == [(540, False)]
    # The same claims received after the horizon count.
    receive(store, HORIZON + timedelta(minutes=1), time=format_time(HORIZON + ahead), synced=True)
    assert final(store) is True
    assert [r["final"] for r in attendance(store, "S1", day, day, now=LATER, grace=GRACE)] == [True]


def test_a_synchronised_gate_clock_still_dates_a_heartbeat_the_bank_received_late(store):
    """A heartbeat made before the horizon but delivered after it (the bank was down) shows the gate's
    state before the horizon: the gate's earlier time is the bound."""
    receive(store, HORIZON + timedelta(hours=2), time=format_time(HORIZON - timedelta(minutes=5)), synced=True)
    assert final(store) is False
    receive(store, HORIZON + timedelta(hours=2), time=format_time(HORIZON - timedelta(minutes=5)), synced=False)
    assert final(store) is True


def test_an_upgrade_keeps_the_last_heartbeat_and_an_older_database_reads_as_provisional(tmp_path, store):
    receive(store, HORIZON + timedelta(hours=1), time=format_time(HORIZON + timedelta(hours=1)))
    store.close()
    conn = sqlite3.connect(tmp_path / "collector.sqlite3")
    with conn:  # the database as the previous version left it
        conn.execute("ALTER TABLE gate_state DROP COLUMN heartbeat")
        conn.execute("ALTER TABLE gate_state DROP COLUMN heartbeat_at")
        conn.execute("DELETE FROM schema_migrations WHERE name = 'heartbeats'")
    conn.close()
    # `collector serve` reads it before the daemon has migrated it: no heartbeat known, nothing final.
    with Store(tmp_path / "collector.sqlite3", readonly=True) as old:
        assert [g["heartbeat"] for g in old.gates("S1")] == [None]
        assert final(old) is False
    with Store(tmp_path / "collector.sqlite3") as upgraded:
        assert upgraded.gates("S1")[0]["heartbeat"] == upgraded.gate_status("S1", "north")
        assert final(upgraded) is True
