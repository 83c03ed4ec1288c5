"""Kept days (collector.store.days, collector.attendance.days): every change that shapes a day leaves a
mark in its own transaction, a mark goes only once what it names was recomputed, a change committed while
a refresh runs keeps its mark, maintainers running at once neither collide nor lose a mark, and the
daemon's thread keeps the days current. Both engines, real databases."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from collector.attendance import days
from collector.attendance.maintainer import DayMaintainer
from collector.attendance.reports import attendance, from_punches
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import DatabaseError, Store, StoreError, Timeouts
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import PunchFactory

W1_CARD, W2_CARD, NOBODYS = "04A1B2C3D4E5F6", "DEADBEEF", "0499AABBCCDDEE"
#: 2026-11-02 08:00 in Shanghai.
MORNING = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 10, 30), date(2026, 11, 8)
LATER = datetime(2026, 12, 1, tzinfo=UTC)


class Boom(Exception):
    pass


class Bank:
    """Site S1 (Shanghai, shifts of at most 16 hours), gates north and south, W1 and W2 with a card each."""

    def __init__(self, location):
        self.location = location
        self.store = Store(location)
        self.north, self.south = PunchFactory(gate="north"), PunchFactory(gate="south")
        store = self.store
        store.add_site("S1", timezone="Asia/Shanghai", max_shift_hours=16)
        store.add_gate("S1", "north", self.north.public_key)
        store.add_gate("S1", "south", self.south.public_key)
        store.add_worker("W1", name="王伟", employer="华建劳务", cards=[W1_CARD], sites=["S1"])
        store.add_worker("W2", name="李娜", employer="华建劳务", cards=[W2_CARD], sites=["S1"])
        days.refresh(store)

    def tap(self, card: str, at: datetime, direction: str, *, gate: PunchFactory | None = None,
            store: Store | None = None) -> None:
        gate = gate or (self.north if direction == "in" else self.south)
        punch = gate.next(card=card, direction=direction, at=at)
        Ingestor(store or self.store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                                       format_time(at + timedelta(seconds=1)))])

    def day(self, worker: str, store: Store | None = None) -> list[tuple]:
        """What the kept days hold for ``worker`` (as a read after the shifts ran out sees them)."""
        return [(d.day, d.as_of(LATER)["worked_minutes"], d.as_of(LATER)["status"])
                for d in (store or self.store).stored_days(worker=worker)]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def bank(database):
    bank = Bank(database)
    yield bank
    bank.close()


def marks(store: Store) -> list[tuple]:
    return [(m.site, m.worker, m.card, m.since) for m in store.day_marks()]


def consistent(store: Store, now: datetime = LATER) -> None:
    """The kept days read as the punches give them, and are what recomputing everything gives."""
    assert attendance(store, "S1", FIRST, LAST, now=now) == from_punches(store, "S1", FIRST, LAST, now=now)
    for worker in ("W1", "W2"):
        assert attendance(store, "S1", FIRST, LAST, now=now, worker=worker) == \
            from_punches(store, "S1", FIRST, LAST, now=now, worker=worker)
    assert store.pending_day_marks() == 0
    fresh = [d for worker in store.workers_at_site("S1") for d in days.recompute(store, "S1", worker, "")[1]]
    assert store.stored_days(site="S1") == sorted(fresh, key=lambda d: (d.site, d.worker, d.day))


# ------------------------------------------------------------------------------------------------ marks


def test_each_change_that_shapes_a_day_leaves_its_mark_with_it_and_a_rolled_back_one_leaves_none(bank):
    store = bank.store
    at = format_time(MORNING)
    later = format_time(MORNING + timedelta(hours=9))

    def gate_punch():
        bank.tap(W1_CARD, MORNING, "in")

    def manual_punch():
        store.add_manual_punch(site="S1", worker="W2", time=later, direction="out", reason="side gate", by="ops")

    def void():
        store.void_punch(store.punches(site="S1")[0]["id"], reason="wrong gate", by="ops")

    def flag():
        with store.transaction():
            store.add_flag("S1", "north", store.punches(site="S1")[0]["seq"], "clock_backwards")

    changes = [
        ("gate punch", gate_punch, ("S1", None, W1_CARD, at)),
        ("manual punch", manual_punch, ("S1", "W2", None, later)),
        ("void", void, ("S1", None, W1_CARD, at)),
        ("punch flag", flag, ("S1", None, W1_CARD, at)),
        ("card given", lambda: store.assign_card("0411223344556677", "W2", valid_from=at), ("", "W2", None, at)),
        ("card taken back", lambda: store.revoke_card("0411223344556677", at=later), ("", "W2", None, later)),
        ("assignment ended", lambda: store.unassign("W1", "S1", at=later, by="ops"), ("S1", "W1", None, later)),
        ("assignment made", lambda: store.assign("W1", "S1", valid_from=format_time(LATER), by="ops"),
         ("S1", "W1", None, format_time(LATER))),
        ("site rules", lambda: store.edit_site("S1", max_shift_hours=12), ("S1", None, None, "")),
        ("delivery interval", lambda: store.set_gate_delivery("S1", "north", 24), ("S1", None, None, "")),
        ("worker removed", lambda: store.remove_worker("W2", at=format_time(LATER), by="ops"),
         ("", "W2", None, format_time(LATER))),
    ]
    for what, change, mark in changes:
        # Rolled back (the change's transaction fails after it): no mark.
        with pytest.raises(Boom), store.transaction():
            change()
            raise Boom()
        assert marks(store) == [], what
        change()
        # Committed: the mark is there for any other connection, and it is exactly this one.
        with Store(bank.location, readonly=True) as reader:
            assert marks(reader) == [mark], what
        days.refresh(store)
        assert marks(store) == [], what
    # A change the store refuses leaves none either; a site's name shapes no day.
    with pytest.raises(StoreError):
        store.edit_site("S1", timezone="Europe/Berlin")  # the site has punches
    with pytest.raises(StoreError):
        store.add_manual_punch(site="S1", worker="W9", time=at, direction="in", reason="x", by="ops")
    store.edit_site("S1", name="一号工地")
    assert marks(store) == []
    consistent(store)


def test_a_mark_goes_only_once_every_day_it_names_was_recomputed(bank, monkeypatch):
    store = bank.store
    bank.tap(W1_CARD, MORNING, "in")
    bank.tap(W2_CARD, MORNING, "in")
    store.set_gate_delivery("S1", "south", 24)  # a mark for the whole site
    whole_site = store.day_marks()[-1].id
    # A read of one worker recomputes that worker's days; the whole site's mark waits for the others.
    done = days.refresh(store, worker="W1")
    assert (done.units, done.skipped) == (1, 0)
    assert whole_site in {m.id for m in store.day_marks()}
    assert bank.day("W1") == [("2026-11-02", 0, "missing_out")] and bank.day("W2") == []
    # A unit another maintainer holds is left with its marks.
    monkeypatch.setattr(store, "lock_days", lambda site, worker: worker != "W2")
    done = days.refresh(store)
    assert done.skipped == 1 and store.pending_day_marks() > 0
    assert all(m.card == W2_CARD or (m.worker is None and m.card is None) for m in store.day_marks())
    monkeypatch.undo()
    # A refresh that dies keeps every mark; the one after it settles them.
    pending = {m.id for m in store.day_marks()}

    def dies(*args):
        raise Boom()

    monkeypatch.setattr(store, "replace_days", dies)
    with pytest.raises(Boom):
        days.refresh(store)
    assert {m.id for m in store.day_marks()} == pending
    monkeypatch.undo()
    assert days.refresh(store).dropped == len(pending)
    assert bank.day("W2") == [("2026-11-02", 0, "missing_out")]
    # A punch of a card nobody holds names no day: its mark is settled at once.
    bank.tap(NOBODYS, MORNING, "in")
    assert days.refresh(store).dropped == 1 and store.pending_day_marks() == 0
    consistent(store)


@pytest.mark.parametrize("where", ["before the marks are read back", "before they are removed"])
def test_a_mark_committed_while_a_refresh_runs_survives_it(bank, monkeypatch, where):
    store = bank.store
    bank.tap(W1_CARD, MORNING, "in")
    other = Store(bank.location)
    late = MORNING + timedelta(hours=9)

    def change() -> None:
        # Another connection commits a change (and its mark) while this refresh is under way.
        bank.tap(W1_CARD, late, "out", store=other)

    if where == "before the marks are read back":
        read = store.day_marks

        def day_marks(**options):
            found = read(**options)
            change()
            return found

        monkeypatch.setattr(store, "day_marks", day_marks)
    else:
        drop = store.drop_day_marks

        def drop_day_marks(ids):
            change()
            return drop(ids)

        monkeypatch.setattr(store, "drop_day_marks", drop_day_marks)
    try:
        done = days.refresh(store)
        monkeypatch.undo()
        assert done.dropped == 1
        assert marks(store) == [("S1", None, W1_CARD, format_time(late))]
        # The kept day may not hold the OUT yet; a read recomputes what is marked, and so does the maintainer.
        assert attendance(store, "S1", FIRST, LAST, now=LATER)[0]["worked_minutes"] == 540
        consistent(store)
        assert bank.day("W1") == [("2026-11-02", 540, "complete")]
    finally:
        other.close()


def test_mark_ids_are_never_given_twice_even_after_every_mark_was_removed(bank):
    """A mark is removed by its id: an id given again to a newer mark could be removed by a refresh that
    read the older one (SQLite gives an empty table's highest rowid again unless told not to)."""
    bank.tap(W1_CARD, MORNING, "in")
    highest = max(m.id for m in bank.store.day_marks())
    for _ in range(2):
        days.refresh(bank.store)
        assert bank.store.pending_day_marks() == 0
        # The next mark, on this connection and on a database opened again.
        bank.store.close()
        bank.store = Store(bank.location)
        bank.store.set_gate_delivery("S1", "north", 1 + highest % 5)
        (mark,) = bank.store.day_marks()
        assert mark.id > highest
        highest = mark.id


@pytest.mark.parametrize("repeated_in", [False, True])
def test_a_punch_long_after_a_workers_last_in_changes_that_day_at_every_now(bank, repeated_in):
    """With nothing after it, a worker's last IN is open until it runs out; any punch after it, days
    later, makes it missing_out at every ``now`` (read at a moment before it ran out: a report as of then,
    or a gate whose clock runs ahead). Voiding that punch makes it open again. The kept day must follow,
    though the punch lies far more than two shifts after it (with a repeated IN after the open one, the
    open IN lies before the last punch too)."""
    store = bank.store
    bank.tap(W1_CARD, MORNING, "in")
    if repeated_in:
        bank.tap(W1_CARD, MORNING + timedelta(hours=10), "in")
    days.refresh(store)
    during = MORNING + timedelta(hours=12)  # the first IN is open then
    (kept,) = store.stored_days(worker="W1")
    assert kept.record["shifts"][0]["status"] == "open"
    assert kept.open_until == format_time(MORNING + timedelta(hours=16))
    late = store.add_manual_punch(site="S1", worker="W1", time=format_time(MORNING + timedelta(days=4)),
                                  direction="in", reason="reader down", by="ops")
    days.refresh(store)
    (first, _) = attendance(store, "S1", FIRST, LAST, now=during, worker="W1")
    assert (first["date"], first["shifts"][0]["status"]) == ("2026-11-02", "missing_out")
    consistent(store, now=during)
    store.void_punch(late, reason="entered twice", by="ops")
    days.refresh(store)
    (first,) = attendance(store, "S1", FIRST, LAST, now=during, worker="W1")
    assert (first["date"], first["shifts"][0]["status"]) == ("2026-11-02", "open")
    consistent(store, now=during)
    consistent(store)


def test_a_refresh_that_cannot_read_a_sites_rules_keeps_its_days_and_marks(bank, monkeypatch):
    """Only a site that does not exist has no days: a failure to read its rules (the database, a zone
    the host does not know) is no reason to delete the days kept."""
    store = bank.store
    bank.tap(W1_CARD, MORNING, "in")
    bank.tap(W1_CARD, MORNING + timedelta(hours=9), "out")
    days.refresh(store)
    kept = store.stored_days()
    store.set_gate_delivery("S1", "north", 1)

    def unreadable(store, site):
        raise DatabaseError("canceling statement due to statement timeout")

    monkeypatch.setattr(days, "site_rules", unreadable)
    with pytest.raises(DatabaseError):
        days.refresh(store)
    assert store.stored_days() == kept and store.pending_day_marks() == 1
    monkeypatch.undo()
    consistent(store)


# ------------------------------------------------------------------------------------------------ maintainers


def test_two_maintainers_at_once_on_postgresql_neither_collide_nor_lose_a_mark(postgres_schema_db):
    bank = Bank(postgres_schema_db)
    a, b = Store(bank.location), Store(bank.location)
    try:
        store = bank.store
        workers = [f"X{n:02d}" for n in range(12)]
        for n, worker in enumerate(workers):
            store.add_worker(worker, name=f"工人{n}", employer="华建劳务", cards=[f"0455{n:010X}"], sites=["S1"])
        for n in range(len(workers)):
            for day in range(3):
                start = MORNING + timedelta(days=day, minutes=n)
                bank.tap(f"0455{n:010X}", start, "in")
                bank.tap(f"0455{n:010X}", start + timedelta(hours=8 + n % 3), "out")
        errors: list[BaseException] = []
        adding = threading.Event()
        start = threading.Barrier(3)

        def maintain(mine: Store) -> None:
            try:
                start.wait(10)
                while adding.is_set() or mine.pending_day_marks():
                    days.refresh(mine, limit=40)
            except BaseException as error:  # noqa: BLE001 - reported by the test thread
                errors.append(error)

        adding.set()
        threads = [threading.Thread(target=maintain, args=(s,)) for s in (a, b)]
        for thread in threads:
            thread.start()
        start.wait(10)
        # Changes keep coming while both refresh the same marks: each leaves a mark that must not be lost.
        for n, worker in enumerate(workers):
            store.add_manual_punch(site="S1", worker=worker, time=format_time(MORNING + timedelta(days=3, hours=n)),
                                   direction="in", reason="reader down", by="ops")
            store.void_punch(store.punches(site="S1")[n]["id"], reason="wrong gate", by="ops")
        adding.clear()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert store.pending_day_marks() == 0
        fresh = [d for worker in store.workers_at_site("S1") for d in days.recompute(store, "S1", worker, "")[1]]
        assert store.stored_days(site="S1") == sorted(fresh, key=lambda d: (d.site, d.worker, d.day))
        consistent(store)
    finally:
        a.close()
        b.close()
        bank.close()


def test_a_read_while_another_maintainer_holds_a_workers_days_is_not_stale(postgres_schema_db):
    """The maintainer that holds a worker's days has not committed them yet: a read that finds them held
    computes them itself rather than read what is kept (a day without the punch just stored)."""
    bank = Bank(postgres_schema_db)
    holder, reader = Store(postgres_schema_db), Store(postgres_schema_db)
    try:
        bank.tap(W1_CARD, MORNING, "in")
        days.refresh(bank.store)
        bank.tap(W1_CARD, MORNING + timedelta(hours=9), "out")
        holding, read_done = threading.Event(), threading.Event()
        replace = holder.replace_days
        errors = []

        def slow_replace(*args):
            holding.set()
            read_done.wait(30)
            replace(*args)

        holder.replace_days = slow_replace

        def hold():
            try:
                days.refresh(holder)
            except BaseException as error:  # noqa: BLE001 - reported by the test thread
                errors.append(error)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert holding.wait(30)
            (record,) = attendance(reader, "S1", FIRST, LAST, now=LATER, worker="W1")
            assert (record["worked_minutes"], record["status"]) == (540, "complete")
            assert reader.pending_day_marks() == 1  # the holder settles it
        finally:
            read_done.set()
            thread.join(30)
        assert errors == [] and reader.pending_day_marks() == 0
        consistent(reader)
    finally:
        holder.close()
        reader.close()
        bank.close()


def test_the_daemon_thread_keeps_the_days_current(bank):
    store = bank.store
    maintainer = DayMaintainer(bank.location, timeouts=Timeouts(), idle_seconds=0.05)
    maintainer.start()
    try:
        for day in range(4):
            start = MORNING + timedelta(days=day)
            bank.tap(W1_CARD, start, "in")
            bank.tap(W1_CARD, start + timedelta(hours=8, minutes=day), "out")
            store.add_manual_punch(site="S1", worker="W2", time=format_time(start + timedelta(hours=1)),
                                   direction="in", reason="forgot card", by="ops")
        store.add_manual_punch(site="S1", worker="W2", time=format_time(MORNING + timedelta(hours=10)),
                               direction="out", reason="forgot card", by="ops")
        deadline = time.monotonic() + 60
        while store.pending_day_marks() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.pending_day_marks() == 0, "the maintainer did not catch up within a minute"
        assert maintainer.units > 0
        # Recomputed by the thread (no read has refreshed anything): what the punches give.
        assert bank.day("W1") == [(f"2026-11-0{2 + d}", 480 + d, "complete") for d in range(4)]
        assert bank.day("W2") == [("2026-11-02", 540, "complete")] + \
            [(f"2026-11-0{2 + d}", 0, "missing_out") for d in range(1, 4)]
        consistent(store)
    finally:
        maintainer.stop()
    assert not maintainer._thread.is_alive()


def test_a_day_that_cannot_be_computed_is_that_workers_problem_day(bank, monkeypatch, caplog):
    import collector.attendance.reports as reports

    store = bank.store
    for card in (W1_CARD, W2_CARD):
        bank.tap(card, MORNING, "in")
        bank.tap(card, MORNING + timedelta(hours=9), "out")
    original = reports.daily_records

    def failing_for_w2(events, rules, now):
        events = list(events)
        if any(e.worker == "W2" for e in events):
            raise KeyError("a fault in the rules")
        return original(events, rules, now)

    monkeypatch.setattr(reports, "daily_records", failing_for_w2)
    days.refresh(store)
    assert store.pending_day_marks() == 0
    rows = {r["worker"]: r for r in attendance(store, "S1", FIRST, LAST, now=LATER)}
    assert (rows["W1"]["worked_minutes"], rows["W1"]["status"]) == (540, "complete")
    assert (rows["W2"]["date"], rows["W2"]["status"], rows["W2"]["worked_minutes"], rows["W2"]["final"]) == \
        ("2026-11-02", "error", 0, False)
    assert "KeyError" in rows["W2"]["error"] and "W2" in caplog.text
    assert list(rows.values()) == from_punches(store, "S1", FIRST, LAST, now=LATER)
    # Kept as the problem it is until the days are recomputed (what `collector days rebuild` does).
    monkeypatch.undo()
    assert bank.day("W2") == [("2026-11-02", 0, "error")]
    store.mark_site_days(["S1"])
    consistent(store)
    assert bank.day("W2") == [("2026-11-02", 540, "complete")]


def test_a_read_only_store_lays_what_is_marked_over_the_kept_days_and_writes_nothing(bank):
    store = bank.store
    bank.tap(W1_CARD, MORNING, "in")
    days.refresh(store)
    bank.tap(W1_CARD, MORNING + timedelta(hours=9), "out")
    store.set_gate_delivery("S1", "north", 1)
    kept, pending = store.stored_days(), marks(store)
    with Store(bank.location, readonly=True) as reader:
        assert attendance(reader, "S1", FIRST, LAST, now=LATER) == from_punches(reader, "S1", FIRST, LAST, now=LATER)
        (record,) = attendance(reader, "S1", FIRST, LAST, now=LATER, worker="W1")
        assert (record["worked_minutes"], record["status"]) == (540, "complete")
    assert (store.stored_days(), marks(store)) == (kept, pending)
