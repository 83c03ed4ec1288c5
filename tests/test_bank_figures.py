"""What /metrics shows of the whole bank, on both engines: the figures that take reading the bank
(arrears per site, cards nobody holds inside, punches held) are the ones the daemon kept, with their age,
never computed by the scrape; a site whose figures fail is kept as failed with its reason and the others
go on; the day marks waiting, who is inside (the kept days) and the gaps the daemon recorded are read at
each scrape, a row per site or gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.attendance import days
from collector.attendance.headcount import headcount
from collector.attendance.health import gate_health
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, Timeouts, schema
from collector.wages import figures
from collector.wages.arrears import arrears
from collector.web.metrics import render_metrics
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests import test_wages
from tests.helpers import PunchFactory, wait_for
from tests.test_wages_payments import NETS, approve

month = test_wages.month
W1_CARD, STRANGER = "04A1B2C3D4E5F6", "0499AABBCCDDEE"


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def site_samples(text: str, name: str) -> dict[str, float]:
    return {dict(labels)["site"]: value for (metric, labels), value in samples(text).items() if metric == name}


class Bank:
    """Sites S1 and S2, a gate each, worker W1 at S1."""

    def __init__(self, location):
        self.store = Store(location)
        self.gates = {"S1": PunchFactory(site="S1", gate="north"), "S2": PunchFactory(site="S2", gate="east")}
        for site, gate in self.gates.items():
            self.store.add_site(site, timezone="Asia/Shanghai")
            self.store.add_gate(site, gate.gate, gate.public_key)
        self.store.add_worker("W1", name="Zhang Wei", cards=[W1_CARD], sites=["S1"])

    def tap(self, site: str, card: str, at: datetime, direction: str = "in", seq: int | None = None) -> None:
        gate = self.gates[site]
        if seq is not None:
            gate.seq = seq - 1
        punch = gate.next(card=card, direction=direction, at=at)
        Ingestor(self.store).ingest([Incoming(GateTopics(site, gate.gate).punch, encode_punches([punch]),
                                              format_time(at + timedelta(seconds=1)))])


@pytest.fixture
def bank(database):
    bank = Bank(database)
    yield bank
    bank.store.close()


def test_the_daemons_arrears_with_their_age_and_never_a_scrape_of_its_own(month):
    with month.setup.store() as store:
        now = datetime.now(UTC).replace(microsecond=0)
        before = render_metrics(store, now)
        assert site_samples(before, "collector_wages_overdue_workers") == {}, "nothing kept, nothing shown"
        assert samples(before)[("collector_figures_missing", (("figure", "arrears"),))] == 1
        assert ("collector_punches_held", ()) not in samples(before)

        assert figures.refresh(store, now=now) == 3  # S1's arrears and unknown cards, the bank's punches
        expected = arrears(store, site="S1", now=now)["sites"][0]
        # Estimates are gross: W1's 20.00 deducted is not approved.
        assert (expected["overdue_workers"], expected["overdue_estimate_fen"]) == \
            (5, sum(v for k, v in NETS.items() if k != "W4") + 2000)
        text = render_metrics(store, now + timedelta(seconds=90))
        shown = samples(text)
        assert site_samples(text, "collector_wages_overdue_workers") == {"S1": 5}
        assert site_samples(text, "collector_wages_overdue_estimate_fen") == {"S1": expected["overdue_estimate_fen"]}
        assert site_samples(text, "collector_wages_overdue_fen") == {"S1": 0}
        assert shown[("collector_figures_age_seconds", (("figure", "arrears"), ("site", "S1")))] == 90
        assert shown[("collector_figures_age_seconds", (("figure", "punches"),))] == 90
        assert shown[("collector_punches_held", ())] == store.punch_count() > 0
        assert shown[("collector_figures_missing", (("figure", "arrears"),))] == 0
        assert site_samples(text, "collector_site_read_failed") == {"S1": 0}

    approve(month)  # October approved: its amounts are due, no longer estimated
    with month.setup.store() as store:
        later = now + timedelta(seconds=120)
        text = render_metrics(store, later)
        assert site_samples(text, "collector_wages_overdue_workers") == {"S1": 5}, "the kept figure, not computed"
        assert site_samples(text, "collector_wages_overdue_estimate_fen") == {"S1": expected["overdue_estimate_fen"]}
        assert figures.refresh(store, now=later, max_age=300) == 0, "computed 120 s ago: not due"
        again = now + timedelta(seconds=301)
        assert figures.refresh(store, now=again, max_age=300) == 3
        approved = arrears(store, site="S1", now=again)["sites"][0]
        text = render_metrics(store, again)
        assert approved["overdue_fen"] > 0 and approved["overdue_estimate_fen"] == 0
        assert site_samples(text, "collector_wages_overdue_fen") == {"S1": approved["overdue_fen"]}
        assert site_samples(text, "collector_wages_overdue_estimate_fen") == {"S1": 0}
        assert samples(text)[("collector_figures_age_seconds", (("figure", "arrears"), ("site", "S1")))] == 0


def test_a_site_that_fails_is_kept_failed_with_its_reason_and_the_others_go_on(bank, caplog):
    now = datetime.now(UTC).replace(microsecond=0)
    # A zone no database should hold (written past the registry's checks): every figure of S2 fails.
    with bank.store.transaction():
        bank.store.execute("UPDATE sites SET timezone = 'Nowhere/Atlantis' WHERE site = 'S2'")
    assert figures.refresh(bank.store, now=now) == 5
    kept = {(f.site, f.figure): f for f in bank.store.figures()}
    assert kept[("S1", "arrears")].error is None and kept[("S1", "inside")].value == {"unknown_cards": 0}
    for figure in ("arrears", "inside"):
        failed = kept[("S2", figure)]
        assert failed.value is None and "Nowhere/Atlantis" in failed.error, failed
    assert "Traceback" in caplog.text
    text = render_metrics(bank.store, now)
    assert site_samples(text, "collector_site_read_failed") == {"S1": 0, "S2": 1}
    assert set(site_samples(text, "collector_wages_overdue_fen")) == {"S1"}
    assert set(site_samples(text, "collector_site_unknown_cards_inside")) == {"S1"}
    assert set(site_samples(text, "collector_site_on_site")) == {"S1", "S2"}, "read from the kept days, no zone needed"
    assert samples(text)[("collector_figures_missing", (("figure", "arrears"),))] == 0, "tried: failed, not missing"


def test_who_is_inside_from_the_kept_days_and_unknown_cards_from_the_daemon(bank):
    now = datetime.now(UTC).replace(microsecond=0)
    bank.tap("S1", W1_CARD, now - timedelta(hours=2))
    bank.tap("S1", STRANGER, now - timedelta(hours=1))
    marked = render_metrics(bank.store, now)
    shown = samples(marked)
    assert site_samples(marked, "collector_site_on_site") == {"S1": 0, "S2": 0}, "not kept yet"
    assert shown[("collector_day_marks_pending", ())] == bank.store.pending_day_marks() > 0
    oldest = datetime.fromisoformat(bank.store.oldest_day_mark().replace("Z", "+00:00"))
    assert shown[("collector_day_marks_oldest_age_seconds", ())] == round(max(0, (now - oldest).total_seconds()), 3)
    assert set(site_samples(marked, "collector_site_unknown_cards_inside")) == set()

    days.refresh(bank.store)  # what the daemon's days thread does
    figures.refresh(bank.store, now=now)
    kept = render_metrics(bank.store, now)
    assert site_samples(kept, "collector_site_on_site") == {"S1": 1, "S2": 0}
    assert site_samples(kept, "collector_site_unknown_cards_inside") == {"S1": 1, "S2": 0}
    assert samples(kept)[("collector_day_marks_pending", ())] == 0
    assert samples(kept)[("collector_day_marks_oldest_age_seconds", ())] == 0
    later = now + timedelta(hours=16, minutes=1)  # every shift has run out
    assert site_samples(render_metrics(bank.store, later), "collector_site_on_site") == {"S1": 0, "S2": 0}


def test_missing_punches_are_the_gaps_the_daemon_recorded(bank):
    now = datetime.now(UTC).replace(microsecond=0)
    gate = bank.gates["S1"]
    signed = [gate.next(card=W1_CARD, direction=d, at=now - timedelta(hours=h))
              for d, h in (("in", 4), ("out", 3), ("in", 2), ("out", 1))]

    def deliver(seq: int) -> None:
        Ingestor(bank.store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([signed[seq - 1]]),
                                              format_time(now))])

    def missing() -> float:
        return samples(render_metrics(bank.store, now))[
            ("collector_gate_missing_punches", (("gate", "north"), ("site", "S1")))]

    deliver(1)
    deliver(4)  # 2 and 3 missing
    assert missing() == 0, "not recorded yet"
    bank.store.record_gaps("S1", "north", format_time(now))  # the daemon's look after each burst
    assert missing() == 2
    deliver(2)
    assert missing() == 2, "as the daemon last recorded them"
    bank.store.record_gaps("S1", "north", format_time(now))
    assert missing() == 1
    assert [g["open_gaps"] for g in gate_health(bank.store, "S1")] == [[[3, 3]]], "worked out from the punches"
    assert [g["open_gaps"] for g in gate_health(bank.store, "S1", gaps="recorded")] == [[[3, 3]]], "the live page's"
    deliver(3)
    assert missing() == 0, "a gap is closed in the burst that fills it"


def test_the_daemons_thread_keeps_them_and_stops(bank):
    keeper = figures.FigureKeeper(bank.store.location, timeouts=Timeouts(), refresh_seconds=10)
    keeper.start()
    try:
        wait_for(lambda: len(bank.store.figures()) == 7, timeout=30, message="every figure kept")
    finally:
        keeper.stop()
    assert not keeper._thread.is_alive()
    assert {(f.site, f.figure) for f in bank.store.figures()} == {
        ("S1", "arrears"), ("S1", "arrears_rows"), ("S1", "inside"), ("S2", "arrears"), ("S2", "arrears_rows"),
        ("S2", "inside"), ("", "punches")}
    assert {(f.site, f.figure) for f in bank.store.figures(figures.KEPT)} == {
        ("S1", "arrears"), ("S1", "inside"), ("S2", "arrears"), ("S2", "inside"), ("", "punches")}
    assert all(f.error is None for f in bank.store.figures())
    due = figures.next_due(bank.store, 10)
    assert 0 < due <= 10


def test_a_database_the_daemon_has_not_upgraded_yet(empty_database):
    """`collector serve` may meet a database from before kept days and figures: /metrics leaves out what
    it cannot read, the headcount is computed from the punches, and nothing is computed per scrape."""
    now = datetime.now(UTC).replace(microsecond=0)
    with Store(empty_database, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["days"] - 1)
        gate = PunchFactory(site="S1", gate="north")
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", gate.public_key)
        store.add_worker("W1", name="Zhang Wei", cards=[W1_CARD], sites=["S1"])
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch,
                                         encode_punches([gate.next(card=W1_CARD, at=now - timedelta(hours=1))]),
                                         format_time(now))])
    with Store(empty_database, readonly=True) as reader:
        assert not reader.has("days") and not reader.has("bank_figures")
        assert headcount(reader, "S1", now)["on_site"] == 1
        shown = samples(render_metrics(reader, now))
        assert not any(name in ("collector_site_on_site", "collector_day_marks_pending") for name, _ in shown)
        assert shown[("collector_figures_missing", (("figure", "inside"),))] == 1
        assert shown[("collector_site_read_failed", (("site", "S1"),))] == 0
