"""Evidence requests on both engines: a request is claimed by one collector process only, however many
race for it; a stale claim is taken over and its late result refused; the daemon's signer builds the file
from the database and signs it, or records why it could not; finished requests are pruned."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from collector.evidence.builder import BuildLimits, EvidenceBuilder
from collector.evidence.document import verify_evidence
from collector.evidence.signer import sign_next
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, Timeouts
from collector.store.evidence_requests import (
    KEEP,
    MAX_ATTEMPTS,
    STALE_CLAIM,
    EvidenceLimits,
    PeriodTooLarge,
    TooManyToday,
    TooManyWaiting,
    TooMuchKept,
)
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_KEY, BANK_KEYS, PunchFactory, wait_for, write_bank_key

CARD = "04A1B2C3D4E5F6"


@pytest.fixture
def store(database):
    with Store(database) as store:
        gate = PunchFactory(gate="north")
        store.add_site("S1", timezone="Asia/Shanghai", name="Site one")
        store.add_gate("S1", "north", gate.public_key)
        store.add_worker("W1", name="Worker one", employer="E", cards=[CARD], sites=["S1"])
        store.add_worker("W2", name="Worker two", employer="E", cards=["DEADBEEF"], sites=["S1"])
        for when, direction in (("2026-10-14T00:00:00Z", "in"), ("2026-10-14T09:00:00Z", "out")):
            moment = datetime.fromisoformat(when)
            punch = gate.next(card=CARD, direction=direction, at=moment)
            Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])
        yield store


def ask(store: Store, worker: str = "W1", first: str = "2026-10-01", last: str = "2026-10-31") -> int:
    return store.request_evidence(worker, first, last, by="worker link issued 2026-11-01T00:00:00.000Z")["id"]


def test_racing_claimers_never_share_a_request(store, database):
    numbers = [ask(store, "W1" if n % 2 else "W2", f"2026-{m:02d}-01", f"2026-{m:02d}-28")
               for n, m in enumerate((1, 1, 2, 2, 3, 3), start=1)]
    for n in range(3):  # more than three waiting per worker: asked to wait
        store.execute("UPDATE evidence_requests SET state = 'done', finished_at = '2026-11-01T00:00:00.000Z' "
                      "WHERE id = ?", (numbers[n],))
    numbers += [ask(store, "W1", f"2026-{m:02d}-01", f"2026-{m:02d}-28") for m in (4, 5)]
    with pytest.raises(TooManyWaiting):
        ask(store, "W1", "2026-06-01", "2026-06-28")
    waiting = sorted(numbers[3:])
    start = threading.Barrier(2)
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    def claimer(name: str) -> None:
        with Store(database) as mine:
            start.wait()
            while mine.has_pending_evidence():
                request = mine.claim_evidence_request(f"{name}:token")
                if request is not None:
                    assert request["state"] == "working"
                    claimed[name].append(request["id"])

    threads = [threading.Thread(target=claimer, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claimed["a"]) & set(claimed["b"]), claimed
    assert sorted(claimed["a"] + claimed["b"]) == waiting
    assert store.claim_evidence_request("c:token") is None


def test_a_stale_claim_is_taken_over_and_its_late_result_refused(store):
    number = ask(store)
    first = store.claim_evidence_request("a:1")
    assert first["id"] == number and first["attempts"] == 1
    assert store.claim_evidence_request("b:1") is None  # claimed, not stale: nobody else takes it
    assert not store.finish_evidence_request(number, "b:1", document="{}")  # not b's claim
    later = datetime.now(UTC) + STALE_CLAIM + timedelta(minutes=1)
    second = store.claim_evidence_request("b:2", now=later)
    assert second["id"] == number and second["attempts"] == 2
    assert not store.finish_evidence_request(number, "a:1", document="{}")  # a's result comes too late
    assert store.finish_evidence_request(number, "b:2", reason="tested")
    assert store.evidence_request(number)["state"] == "failed"
    # A request whose builders keep dying fails after MAX_ATTEMPTS claims instead of being tried for ever.
    number = ask(store)
    moment = datetime.now(UTC)
    for attempt in range(MAX_ATTEMPTS):
        assert store.claim_evidence_request(f"x:{attempt}", now=moment)["id"] == number
        moment += STALE_CLAIM + timedelta(minutes=1)
    assert store.claim_evidence_request("x:last", now=moment) is None
    failed = store.evidence_request(number)
    assert failed["state"] == "failed" and f"not finished after {MAX_ATTEMPTS} attempts" in failed["reason"]


def test_the_signer_signs_from_the_database_or_records_why_not(store):
    number = ask(store)
    done = sign_next(store, BANK_KEY, "collector-a")
    assert done["id"] == number and done["state"] == "done" and done["reason"] is None
    document = store.evidence_document(number, worker="W1")
    assert store.evidence_document(number, worker="W2") is None
    summary = verify_evidence(json.loads(document), BANK_KEYS)
    assert summary  # the bank's signature and every gate signature hold
    assert "2026-10-14" in [day["date"] for day in json.loads(document)["days"]]
    # What the web process checks, the signer checks again: a period it would refuse fails with the reason.
    number = ask(store, first="2026-10-31", last="2026-10-01")
    failed = sign_next(store, BANK_KEY, "collector-a")
    assert failed["id"] == number and failed["state"] == "failed"
    assert "before it starts" in failed["reason"]
    assert store.evidence_document(number, worker="W1") is None
    assert sign_next(store, BANK_KEY, "collector-a") is None  # nothing left


def test_finished_requests_are_pruned(store):
    finished, waiting = ask(store), ask(store, first="2026-09-01", last="2026-09-30")
    request = store.claim_evidence_request("a:1")
    assert request["id"] == finished and store.finish_evidence_request(finished, "a:1", document="{}")
    assert store.prune_evidence_requests() == 0
    assert store.prune_evidence_requests(now=datetime.now(UTC) + KEEP + timedelta(hours=1)) == 1
    assert store.evidence_request(finished) is None and store.evidence_request(waiting)["state"] == "pending"


def test_one_worker_cannot_ask_for_more_than_the_bank_builds(store):
    """The per-worker bounds, checked when a request is made: requests in 24 hours, bytes of files kept,
    days of a period, and punches of the chain segments the file would carry."""
    limits = EvidenceLimits()
    numbers = []
    for month in range(1, limits.builds_per_day + 1):
        numbers.append(ask(store, first=f"2026-{month:02d}-01", last=f"2026-{month:02d}-28"))
        store.execute("UPDATE evidence_requests SET state = 'failed', reason = 'tested', "
                      "finished_at = requested_at WHERE id = ?", (numbers[-1],))
    with pytest.raises(TooManyToday, match="10 requests for evidence were made in the last 24 hours"):
        ask(store, first="2026-11-01", last="2026-11-02")
    assert ask(store, "W2") > numbers[-1]  # another worker is not held back
    # A day later the worker may ask again.
    later = datetime.now(UTC) + timedelta(days=1, minutes=1)
    assert store.request_evidence("W1", "2026-11-01", "2026-11-02", by="link", now=later)["state"] == "pending"
    # Files kept: past the bytes allowed, the worker is told to fetch them and wait.
    small = EvidenceLimits(stored_bytes=1000)
    store.execute("UPDATE evidence_requests SET state = 'done', document = ? WHERE id = ?", ("x" * 1000, numbers[0]))
    with pytest.raises(TooMuchKept, match="deleted 7 days after"):
        store.request_evidence("W1", "2026-12-01", "2026-12-02", by="link", limits=small, now=later)
    # Periods: too many days, or more punches than one file may carry (here: the worker's two punches on a
    # chain segment of two), are refused as the matter of the period, not of the time.
    with pytest.raises(PeriodTooLarge, match="367 days"):
        store.request_evidence("W2", "2025-10-01", "2026-10-02", by="link")
    assert store.evidence_segment_punches("W1", date(2026, 10, 1), date(2026, 10, 31)) == 2
    assert store.evidence_segment_punches("W2", date(2026, 10, 1), date(2026, 10, 31)) == 0
    assert store.evidence_segment_punches("W1", date(2026, 9, 1), date(2026, 9, 30)) == 0
    with pytest.raises(PeriodTooLarge, match="would put 2 gate punches in the file, more than the 1"):
        store.request_evidence("W1", "2026-10-01", "2026-10-31", by="link", now=later,
                               limits=EvidenceLimits(max_segment_punches=1))
    assert not PeriodTooLarge.busy and TooManyToday.busy and TooMuchKept.busy


def test_the_estimate_counts_the_workers_own_punches_where_the_gate_links_each_card(store):
    """At a gate of protocol 3 the file carries the worker's card chain, not the gate's: W2's hundred
    punches between W1's two are no part of W1's estimate, while at the protocol 1 gate they would be."""
    linked = PunchFactory(gate="south", version=3)
    store.add_gate("S1", "south", linked.public_key)
    moment = datetime(2026, 10, 15, tzinfo=UTC)
    ingestor = Ingestor(store)
    for index in range(102):
        card = CARD if index in (0, 101) else "DEADBEEF"
        punch = linked.next(card=card, direction="in", at=moment + timedelta(minutes=index))
        ingestor.ingest([Incoming(GateTopics("S1", "south").punch, encode_punches([punch]),
                                  format_time(moment + timedelta(minutes=index, seconds=2)))])
    # north (protocol 1): the segment seq 1..2; south (protocol 3): W1's two punches and a few about them.
    assert store.evidence_segment_punches("W1", date(2026, 10, 1), date(2026, 10, 31)) == 2 + 2 + 4
    assert store.evidence_segment_punches("W2", date(2026, 10, 1), date(2026, 10, 31)) == 100 + 4


def test_a_file_larger_than_a_worker_may_keep_fails_and_a_claim_can_be_given_back(store):
    number = ask(store)
    claimed = store.claim_evidence_request("a:1")
    assert store.release_evidence_request(number, "a:1")
    again = store.evidence_request(number)
    assert again["state"] == "pending" and again["attempts"] == 0  # stopping is not an attempt
    failed = sign_next(store, BANK_KEY, "collector-a", max_bytes=100)
    assert claimed["id"] == failed["id"] == number and failed["state"] == "failed"
    assert "more than the bank keeps for one worker" in failed["reason"]
    assert store.evidence_document(number, worker="W1") is None


def test_the_builder_process_signs_and_fails_past_its_time(store, database, tmp_path):
    """The daemon's builder (a thread, each file in a child process) without the daemon around it."""
    key_file = write_bank_key(tmp_path / "bank.key")

    def finished(number: int) -> dict:
        wait_for(lambda: store.evidence_request(number)["state"] in ("done", "failed"), timeout=60,
                 message="the request finished")
        return store.evidence_request(number)

    running = EvidenceBuilder(database, key_file, instance="test", timeouts=Timeouts(), limits=BuildLimits())
    running.start()
    try:
        number = ask(store)
        assert finished(number)["state"] == "done"
        verify_evidence(json.loads(store.evidence_document(number, worker="W1")), BANK_KEYS)
    finally:
        running.stop()
    # A build that outlasts its time is ended and the request failed with the reason.
    running = EvidenceBuilder(database, key_file, instance="test", timeouts=Timeouts(),
                              limits=BuildLimits(seconds=0.01))
    running.start()
    try:
        failed = finished(ask(store, first="2026-10-02", last="2026-10-31"))
        assert failed["state"] == "failed" and "took longer than" in failed["reason"], failed
    finally:
        running.stop()
