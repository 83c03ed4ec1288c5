"""Who is inside, read from the kept days and the site's recent punches of cards nobody held, is what
computing it from every punch gives (``headcount.from_punches``, the definition the read replaced), on
both engines: toggles, gate clocks running ahead, repeated INs, shifts that ran out, unknown cards,
cards passed between workers, manual INs and voids; through a store that writes the kept days, and
through a read-only one (`collector serve`) that lays the changes still marked over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collector.attendance.attribution import Attributor
from collector.attendance.headcount import from_punches, headcount
from collector.attendance.reports import event_of, events_of, site_rules
from collector.attendance.rules import open_shift
from collector.ingest.pipeline import Incoming, Ingestor
from collector.localtime import local_text_dt
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests import postgres
from tests.helpers import CollectorSetup, PunchFactory
from tests.read_histories import BASE, DAYS, SITES, Bank, histories

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 6, tzinfo=UTC)  # 14:00 in Shanghai
SHIFT = timedelta(hours=12)
CARDS = {"W1": "04A1B2C3D4E5F6", "W2": "DEADBEEF", "W3": "CAFEF00D", "W4": "0411223344556677"}
STRANGER, OTHER_STRANGER, LATE_CARD = "0499AABBCCDDEE", "04FFEEDDCCBBAA", "0455667788AA"


class Site:
    """Site S1 (Shanghai, 12-hour shifts) with gates north (IN), south (OUT) and turnstile (toggles),
    and workers W1-W4 holding their cards from the beginning."""

    def __init__(self, location):
        self.location = location
        self.store = Store(location)
        self.gates = {name: PunchFactory(gate=name) for name in ("north", "south", "turnstile", "manual")}
        self.store.add_site("S1", timezone="Asia/Shanghai", max_shift_hours=SHIFT.total_seconds() / 3600)
        for name, factory in self.gates.items():
            if name != "manual":
                self.store.add_gate("S1", name, factory.public_key)
        for worker, card in CARDS.items():
            self.store.add_worker(worker, name=f"工人{worker}", employer="华建劳务", cards=[card], sites=["S1"])
        self.store.add_worker("W5", name="新来的", sites=["S1"])

    def tap(self, gate: str, card: str, ago: timedelta, direction: str | None = None, *,
            received: datetime | None = None) -> int:
        """A punch made ``ago`` before NOW (negative: after), received a second later; returns its id."""
        direction = direction or {"north": "in", "south": "out", "turnstile": "toggle"}[gate]
        at = NOW - ago
        punch = self.gates[gate].next(card=card, direction=direction, at=at)
        Ingestor(self.store).ingest([Incoming(GateTopics("S1", gate).punch, encode_punches([punch]),
                                              format_time(received or at + timedelta(seconds=1)))])
        return next(p["id"] for p in self.store.punches(site="S1", gate=gate) if p["seq"] == punch.seq)

    def manual(self, worker: str, ago: timedelta, direction: str) -> int:
        return self.store.add_manual_punch(site="S1", worker=worker, time=format_time(NOW - ago), direction=direction,
                                           reason="card left at home", by="foreman")

    def check(self, *moments: timedelta) -> dict:
        """At NOW and each moment after it: read-only before the days are kept (the marks laid over),
        kept by a writing store, read-only again over the kept days; all equal to the definition."""
        found = {}
        for offset in (timedelta(0), *moments):
            now = NOW + offset
            expected = from_punches(self.store, "S1", now)
            with Store(self.location, readonly=True) as reader:
                assert headcount(reader, "S1", now) == expected, ("read-only, marks laid over", offset)
            assert headcount(self.store, "S1", now) == expected, ("kept", offset)
            assert self.store.pending_day_marks() == 0
            with Store(self.location, readonly=True) as reader:
                assert headcount(reader, "S1", now) == expected, ("read-only, kept", offset)
            found[offset] = expected
        return found[timedelta(0)]


@pytest.fixture
def site(database):
    site = Site(database)
    yield site
    site.store.close()


def inside(count: dict) -> dict[str, tuple]:
    return {w["worker"]: (w["since"], w["gate"], w["card"]) for w in count["workers"]}


def shanghai(ago: timedelta) -> str:
    """How the headcount writes the moment ``ago`` before NOW."""
    return local_text_dt(NOW - ago, SHANGHAI)


H = timedelta(hours=1)


def test_ins_outs_and_toggles(site):
    site.tap("north", CARDS["W1"], 3 * H)
    site.tap("south", CARDS["W1"], 1 * H)  # out again
    site.tap("north", CARDS["W2"], 2 * H)
    site.tap("turnstile", CARDS["W3"], 5 * H)
    site.tap("turnstile", CARDS["W3"], 4 * H)  # the toggle that closed its shift
    site.tap("turnstile", CARDS["W3"], H / 2)  # and opened the next
    site.tap("turnstile", CARDS["W4"], 20 * H)
    site.tap("turnstile", CARDS["W4"], 2 * H)  # 18 h after the last: a shift that ran out, then a new IN
    count = site.check(H, 10 * H, 12 * H)
    assert inside(count) == {"W2": (shanghai(2 * H), "north", CARDS["W2"]),
                             "W3": (shanghai(H / 2), "turnstile", CARDS["W3"]),
                             "W4": (shanghai(2 * H), "turnstile", CARDS["W4"])}
    assert count["on_site"] == 3 and count["workers"][0]["name"] == "工人W2"


def test_a_gate_clock_running_ahead(site):
    site.tap("north", CARDS["W1"], -20 * timedelta(minutes=1), received=NOW)  # 20 minutes ahead: inside
    site.tap("north", CARDS["W2"], -30 * H, received=NOW)  # no working day can hold it: never inside
    count = site.check(H, 12 * H, 13 * H)
    assert inside(count) == {"W1": (shanghai(-20 * timedelta(minutes=1)), "north", CARDS["W1"])}


def test_repeated_ins_and_shifts_that_ran_out(site):
    site.tap("north", CARDS["W1"], 11 * H)
    site.tap("north", CARDS["W1"], 2 * H)  # within the open shift: repeated, the first IN still counts
    site.tap("north", CARDS["W2"], 30 * H)
    site.tap("north", CARDS["W2"], 14 * H)  # 16 h later: a new shift, which ran out 2 h ago
    site.tap("north", CARDS["W2"], 3 * H)  # repeated within that run-out shift: not inside
    site.tap("north", CARDS["W3"], 23 * H)
    site.tap("north", CARDS["W3"], 12.5 * H)  # repeated
    site.tap("north", CARDS["W3"], H)  # 22 h after the shift's IN: a new one
    site.tap("north", CARDS["W4"], 12 * H)  # open until this very moment
    count = site.check(timedelta(milliseconds=1), H, H + timedelta(milliseconds=1), 2 * H)
    assert inside(count) == {"W1": (shanghai(11 * H), "north", CARDS["W1"]),
                             "W3": (shanghai(H), "north", CARDS["W3"]),
                             "W4": (shanghai(12 * H), "north", CARDS["W4"])}
    later = headcount(site.store, "S1", NOW + timedelta(milliseconds=1))
    assert set(inside(later)) == {"W1", "W3"}


def test_unknown_cards_and_a_card_before_its_window(site):
    site.tap("north", STRANGER, H / 2)
    site.tap("turnstile", OTHER_STRANGER, 3 * H)
    site.tap("turnstile", OTHER_STRANGER, 2 * H)  # out again
    site.tap("north", LATE_CARD, 2 * H)  # nobody's yet
    site.store.add_worker("W6", name="后来的", cards=[], sites=["S1"])
    site.store.assign_card(LATE_CARD, "W6", valid_from=format_time(NOW - H))
    site.tap("north", LATE_CARD, 50 * timedelta(minutes=1))  # W6's
    count = site.check(H, 11 * H, 13 * H)
    assert inside(count) == {"W6": (shanghai(50 * timedelta(minutes=1)), "north", LATE_CARD)}
    assert count["unknown"] == [{"card": LATE_CARD, "since": shanghai(2 * H), "gate": "north", "gate_name": None},
                                {"card": STRANGER, "since": shanghai(H / 2), "gate": "north", "gate_name": None}]
    assert count["unknown_cards"] == 2


def test_a_card_passed_between_workers(site):
    card = CARDS["W1"]
    site.tap("north", card, 6 * H)
    site.tap("south", card, 5 * H)
    site.tap("north", card, 4.5 * H)  # still W1's: W1 is inside with it
    site.store.revoke_card(card, at=format_time(NOW - 4 * H))
    site.store.assign_card(card, "W5", valid_from=format_time(NOW - 4 * H))
    site.tap("north", card, 3 * H)  # W5's now
    count = site.check(H, 8 * H)
    assert inside(count) == {"W1": (shanghai(4.5 * H), "north", card), "W5": (shanghai(3 * H), "north", card)}


def test_manual_ins_outs_and_voids(site):
    site.manual("W1", H, "in")
    site.store.void_punch(site.tap("north", CARDS["W2"], 2 * H), reason="wrong card", by="foreman")
    site.tap("north", CARDS["W3"], 3 * H)
    site.manual("W3", H, "out")
    site.tap("north", CARDS["W4"], 2 * H)
    site.store.void_punch(site.manual("W4", H, "out"), reason="entered twice", by="foreman")
    count = site.check(H, 12 * H)
    assert inside(count) == {"W4": (shanghai(2 * H), "north", CARDS["W4"]), "W1": (shanghai(H), None, None)}


def test_a_manual_in_beside_a_gate_called_manual(site):
    """A gate may be called "manual": its punch 1 and the manual punch 1 have the same reference."""
    site.store.add_gate("S1", "manual", site.gates["manual"].public_key)
    first = site.manual("W1", H, "in")
    site.tap("manual", CARDS["W2"], 2 * H, "in")
    count = headcount(site.store, "S1", NOW)
    assert first == 1 and inside(count) == {"W1": (shanghai(H), None, None),
                                            "W2": (shanghai(2 * H), "manual", CARDS["W2"])}


def test_an_unknown_card_is_paired_over_its_whole_history(site):
    """A card's toggles decide each other: read from two shifts back only, the toggle 13.5 h ago opens a
    shift that the one 2 h ago closes; over the whole history the one 25 h ago opened it and the one
    13.5 h ago closed it, and the card is inside since 2 h ago. The read goes back as far as that needs."""
    for ago in (25 * H, 13.5 * H, 2 * H):
        site.tap("turnstile", STRANGER, ago)
    count = headcount(site.store, "S1", NOW)
    assert count["unknown"] == whole_history_unknown(site.store, "S1", NOW)
    assert count["unknown"] == [{"card": STRANGER, "since": shanghai(2 * H), "gate": "turnstile", "gate_name": None}]


def whole_history_unknown(store, site: str, now: datetime) -> list[dict]:
    """Unknown cards inside, pairing every punch of each card nobody held (the bank's card windows)."""
    rules = site_rules(store, site)
    _, unattributed = events_of(store.punches(site=site), Attributor.of(store))
    by_card: dict[str, list] = {}
    for punch in unattributed:
        by_card.setdefault(punch["card"], []).append(event_of(punch, punch["card"], None))
    names = {g["gate"]: g["display_name"] for g in store.gates(site, with_gaps=False)}
    found = []
    for card, events in by_card.items():
        shift = open_shift(events, rules, now)
        if shift is not None:
            found.append({"card": card, "since": local_text_dt(shift.start.time, rules.tz), "gate": shift.start.gate,
                          "gate_name": names.get(shift.start.gate)})
    return sorted(found, key=lambda u: (u["since"] or "", u["card"]))


# ------------------------------------------------------------------------------ generated histories


MOMENTS = st.integers(-24 * 60, (DAYS + 2) * 24 * 60).map(lambda m: BASE + timedelta(minutes=m))


def same_as_the_definition(engine: str, history, nows: list[datetime]) -> None:
    url = None
    if engine == "postgresql":
        postgres.require_server()
        url = postgres.create_database()
    bank = Bank(url, setup=lambda folder, location: CollectorSetup.create(folder, broker=SimpleNamespace(port=1883),
                                                                          db=location))
    try:
        bank.write(history)
        for now in nows:
            for site in SITES:
                expected = from_punches(bank.store, site, now)
                with Store(bank.setup.location, readonly=True) as reader:
                    overlaid = headcount(reader, site, now)
                kept = headcount(bank.store, site, now)
                assert kept == overlaid
                # Workers as the definition says; unknown cards paired over their whole history, which is
                # what the definition gives whenever the history it read for the workers reaches far enough.
                whole = whole_history_unknown(bank.store, site, now)
                assert kept == {**expected, "unknown": whole, "unknown_cards": len(whole)}
                if expected["unknown"] != whole:
                    event("the definition read too little of an unknown card's history")
                event(f"inside: {'some' if kept['on_site'] else 'nobody'}")
    finally:
        bank.close()
        if url:
            postgres.drop_database(url)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), nows=st.lists(MOMENTS, min_size=1, max_size=4))
def test_generated_histories_on_sqlite(history, nows):
    same_as_the_definition("sqlite", history, nows)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(max_punches=25), nows=st.lists(MOMENTS, min_size=1, max_size=3))
def test_generated_histories_on_postgresql(history, nows):
    same_as_the_definition("postgresql", history, nows)
