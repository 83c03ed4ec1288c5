"""A gap row is closed by the transaction that stores its last missing punch, on both engines and with
several writers: once that transaction commits (and its ack may reach the gate) no reader sees the
gap open, whether or not a housekeeping round ever runs again; and a gap is never recorded from a view
of the punches taken before a fill committed.

The interleavings are forced, not left to timing: the ingest's ``fence`` runs inside its transaction,
before the commit, and holds it there until the other party has reached the point the test needs."""

from __future__ import annotations

import threading

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, utc_now_text
from tests.helpers import PunchFactory

TOPIC = GateTopics("S1", "north").punch


@pytest.fixture
def store(database):
    store = Store(database)
    store.add_site("S1", timezone="Asia/Shanghai")
    yield store
    store.close()


@pytest.fixture
def gate(store):
    factory = PunchFactory()
    store.add_gate("S1", "north", factory.public_key)
    return factory


def send(ingestor, *punches, fence=None):
    return ingestor.ingest([Incoming(TOPIC, encode_punches(list(punches)), utc_now_text())], fence=fence)


def gap_rows(store) -> list[tuple[int, int, bool]]:
    """(first, last, filled) of every gap row of the gate."""
    return [(row["first"], row["last"], row["filled_at"] is not None) for row in store.gaps()]


def held(store) -> list[int]:
    return [row[0] for row in store.execute("SELECT seq FROM punches WHERE gate = 'north' ORDER BY seq")]


def test_the_last_missing_punch_closes_its_gap_in_its_own_transaction(database, store, gate):
    punches = [gate.next() for _ in range(6)]
    ingestor = Ingestor(store)
    send(ingestor, punches[0], punches[1], punches[5])
    assert [(r["first"], r["last"]) for r in store.record_gaps("S1", "north", utc_now_text())] == [(3, 5)]
    send(ingestor, punches[2], punches[3])
    # Part of the gap is still missing: the row stays open, and what open_gaps says agrees with it.
    assert gap_rows(store) == [(3, 5, False)] and store.open_gaps("S1", "north") == [(5, 5)]

    seen = {}

    def fence():
        # Inside the filling transaction, before its commit: the writer sees its gap closed already,
        # another connection sees neither the punch nor the closing (both or neither, never one).
        seen["writer"] = gap_rows(store)
        with Store(database, readonly=True) as reader:
            seen["reader"] = (held(reader), gap_rows(reader))
        return []

    result = send(ingestor, punches[4], fence=fence)
    assert result.acks[("S1", "north")].seq == 6
    assert seen["writer"] == [(3, 5, True)]
    assert seen["reader"] == ([1, 2, 3, 4, 6], [(3, 5, False)])
    # Committed: closed, with no housekeeping round (record_gaps) in between.
    with Store(database) as reader:
        assert held(reader) == [1, 2, 3, 4, 5, 6] and gap_rows(reader) == [(3, 5, True)]


def test_a_gap_above_the_contiguous_prefix_closes_when_its_own_punches_arrive(store, gate):
    punches = [gate.next() for _ in range(6)]
    ingestor = Ingestor(store)
    send(ingestor, punches[0], punches[3], punches[5])
    store.record_gaps("S1", "north", utc_now_text())
    assert gap_rows(store) == [(2, 3, False), (5, 5, False)]
    send(ingestor, punches[4])  # fills (5, 5) while 2 and 3 are still missing
    assert gap_rows(store) == [(2, 3, False), (5, 5, True)]
    send(ingestor, punches[2])
    assert gap_rows(store) == [(2, 3, False), (5, 5, True)]
    send(ingestor, punches[1])
    assert gap_rows(store) == [(2, 3, True), (5, 5, True)]
    assert store.record_gaps("S1", "north", utc_now_text()) == [] and store.open_gaps("S1", "north") == []


def test_a_gap_is_not_recorded_from_a_view_taken_before_its_fill_committed(database, store, gate):
    """Another collector's (or this one's) reconciliation looks while the fill is being written, and
    writes after the fill committed: it must not record the filled punches as missing."""
    punches = [gate.next() for _ in range(4)]
    ingestor = Ingestor(store)
    send(ingestor, punches[0], punches[1], punches[3])
    assert gap_rows(store) == []  # no reconciliation yet: the gap (3, 3) is not recorded

    began = threading.Event()
    outcome = {}
    # Opened now: opening upgrades the schema in a write transaction, which would wait for the fill.
    other = Store(database)
    execute = other.db.execute

    def watched(sql, params=()):
        # Its look outside any transaction found something to write; from here on it writes.
        if sql.startswith("BEGIN"):
            began.set()
        return execute(sql, params)

    other.db.execute = watched

    def reconcile():
        try:
            outcome["open"] = [(r["first"], r["last"]) for r in other.record_gaps("S1", "north", utc_now_text())]
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error
        finally:
            began.set()

    thread = threading.Thread(target=reconcile)

    def fence():
        thread.start()
        # The reconciliation saw the gap (the fill is not committed) and is about to write: only now
        # does the fill commit, so its write comes after the fill whatever the scheduler does.
        assert began.wait(30), "the reconciliation never began to write"
        # Still running: it began a write transaction (its look saw the gap), it did not just return.
        assert outcome == {}, outcome
        return []

    try:
        send(ingestor, punches[2], fence=fence)
        thread.join(30)
    finally:
        other.close()
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["open"] == []
    assert gap_rows(store) == [] and store.open_gaps("S1", "north") == []


def test_several_writers_filling_one_gap_close_it_with_the_last_punch(database, store, gate):
    """Two collector processes (two connections) store the missing punches of one gap concurrently,
    one punch per burst: whichever stores the last one closes the row, with no reconciliation after."""
    punches = [gate.next() for _ in range(122)]
    Ingestor(store).ingest([Incoming(TOPIC, encode_punches([punches[0], punches[-1]]), utc_now_text())])
    store.record_gaps("S1", "north", utc_now_text())
    assert gap_rows(store) == [(2, 121, False)]

    start = threading.Barrier(2)
    errors = []
    contradictions = []
    everything = list(range(1, 123))

    def writer(share):
        with Store(database) as own:
            ingestor = Ingestor(own)
            start.wait()
            try:
                for punch in share:
                    send(ingestor, punch)
                    # Each writer's own look after each of its commits, in both orders (punches are never
                    # taken away, so a later look holds at least what an earlier one did).
                    rows, seqs = gap_rows(own), held(own)
                    if rows == [(2, 121, True)] and seqs != everything:
                        contradictions.append(("closed before held", seqs))
                    if seqs == everything and gap_rows(own) != [(2, 121, True)]:
                        contradictions.append(("held but open", seqs))
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(share,)) for share in (punches[1:-1:2], punches[2:-1:2])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not contradictions, contradictions[:3]
    assert held(store) == everything
    assert gap_rows(store) == [(2, 121, True)]
    assert store.gate_progress("S1", "north").contiguous_seq == 122
