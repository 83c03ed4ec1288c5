"""The store stamps what it writes with its own clock, the one it was opened with, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.store import Store, system_clock
from gate_agent.protocol import public_key_text


class FakeClock:
    """A clock that says what the test says, and moves only when told."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> str:
        self.moment += timedelta(**delta)
        return self.text()

    def text(self) -> str:
        return self.moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_times_a_store_stamps_come_from_its_clock(empty_database):
    # Far from today, and in another zone: stored as UTC whatever zone the clock answers in.
    clock = FakeClock(datetime(2031, 3, 4, 13, 6, 7, 890000, tzinfo=timezone(timedelta(hours=8))))
    with Store(empty_database, clock=clock) as store:
        applied = {row[0] for row in store.execute("SELECT applied_at FROM schema_migrations").fetchall()}
        assert applied == {"2031-03-04T05:06:07.890Z"}

        site_at = clock.advance(minutes=1)
        store.add_site("S1", timezone="Asia/Shanghai")
        gate_at = clock.advance(seconds=1)
        store.add_gate("S1", "north", public_key_text(Ed25519PrivateKey.generate().public_key()))
        worker_at = clock.advance(seconds=1)
        store.add_worker("w1", name="Wang", cards=["04A1B2C3"], sites=["S1"])
        assert store.site("S1")["created_at"] == site_at
        assert store.gates("S1")[0]["added_at"] == gate_at
        assert store.execute("SELECT created_at FROM workers").fetchone()[0] == worker_at
        assert [a["added_at"] for a in store.assignments(worker="w1")] == [worker_at]
        registry = store.registry_version()

        # A registry change made by the clock, not by the host's calendar.
        revoked_at = clock.advance(hours=1)
        store.revoke_card("04A1B2C3")
        assert store.registry_version() > registry
        assert store.execute("SELECT valid_to FROM cards WHERE uid = '04A1B2C3'").fetchone()[0] == revoked_at

        detected_at = clock.advance(seconds=5)
        with store.transaction():
            assert store.add_conflict("S1", "north", 7, kind="equivocation", stored_digest="a" * 64,
                                      other_digest="b" * 64, other_body=b"{}", detail="two punches for seq 7")
        assert [c["detected_at"] for c in store.conflicts()] == [detected_at]

        entered_at = clock.advance(seconds=5)
        number = store.add_manual_punch(site="S1", worker="w1", time="2031-03-04T06:00:00.000Z", direction="in",
                                        reason="forgot the card", by="foreman")
        assert store.punch(number)["received_at"] == entered_at

        # A collector's membership starts by the store's clock (its expiry is the database server's).
        joined_at = clock.advance(seconds=5)
        assert store.member_alive("bank-1", ttl=30) == ["bank-1"]
        assert store.members() == [{"instance": "bank-1", "started_at": joined_at}]

        # A caller that knows when something happened still says so.
        store.add_worker("w2", name="Li")
        store.assign_card("04D5E6F7", "w2", valid_from="2031-01-01T00:00:00.000Z")
        assert store.revoke_card("04D5E6F7", at="2031-02-01T00:00:00.000Z") == "w2"
        assert store.execute("SELECT valid_to FROM cards WHERE uid = '04D5E6F7'").fetchone()[0] == \
            "2031-02-01T00:00:00.000Z"


def test_a_clock_without_a_zone_is_refused(tmp_path):
    naive = datetime(2031, 3, 4, 5, 6, 7)
    with pytest.raises(ValueError, match="naive"):
        Store(tmp_path / "collector.sqlite3", clock=lambda: naive)  # the schema's steps are stamped too
    with Store(tmp_path / "collector.sqlite3") as store, pytest.raises(ValueError, match="naive"):
        store.clock = lambda: naive
        store.add_site("S1", timezone="Asia/Shanghai")


def test_a_store_reads_the_host_clock_unless_given_another(tmp_path):
    before = datetime.now(UTC) - timedelta(seconds=1)
    with Store(tmp_path / "collector.sqlite3") as store:
        assert store.clock is system_clock
        store.add_site("S1", timezone="Asia/Shanghai")
        created = datetime.fromisoformat(store.site("S1")["created_at"].replace("Z", "+00:00"))
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
