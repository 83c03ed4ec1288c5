"""Random histories of a bank's record, written to a real database through the real ingest, for the
property tests of the read side (tests/test_read_properties.py).

A history is data (``History``) drawn by hypothesis, then ``Bank.write`` makes it: sites in several
zones (New York changes from summer time on 2026-11-01), workers, cards held over windows (lost and
replaced, passed on to another worker), unknown cards and random UIDs, gate punches signed and chained
(sent in order, late, resent, out of order, one equivocation, clocks not synced), manual punches placed
anywhere (first, last, the same instant as a gate punch), voids of both kinds (every punch of a day
too), assignments that start and end mid-period, and pay terms with rate changes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.localtime import implausible
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import PunchFactory

#: The period the histories fall in: New York leaves summer time on its fifth day.
BASE = datetime(2026, 10, 28, tzinfo=UTC)
DAYS = 9
SITES = {"S1": ("Asia/Shanghai", 16.0), "S2": ("America/New_York", 12.0)}
GATES = {"S1": ("s1-north", "s1-south"), "S2": ("s2-gate",)}
#: The punch protocol each site's gates write: an evidence file carries card chains, or gate chains.
PROTOCOLS = {"S1": 3, "S2": 1}
WORKERS = ("W1", "W2", "W3")
CARDS = ("04A1B2C3D4E5F6", "DEADBEEF", "CAFEF00D", "0411223344556677")
UNKNOWN_CARD = "0499AABBCCDDEE"
RANDOM_UID = "08A1B2C3"  # a random UID: 4 bytes starting 08, never an identity
FIRST_DAY, LAST_DAY = (BASE - timedelta(days=1)).date(), (BASE + timedelta(days=DAYS + 1)).date()


def moment(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


MINUTES = st.integers(0, DAYS * 24 * 60 - 1)


@dataclass(frozen=True)
class Window:
    card: str
    worker: str
    start: datetime | None  # None: from the beginning
    end: datetime | None  # None: still held


@dataclass(frozen=True)
class GatePunch:
    site: str
    gate: str
    card: str
    at: datetime
    direction: str
    synced: bool
    delay_minutes: int  # how long after it was made the bank received it (late uploads)
    resent: bool  # the gate sends it twice


@dataclass(frozen=True)
class ManualPunch:
    site: str
    worker: str
    at: datetime
    direction: str


@dataclass
class History:
    windows: list[Window]
    assignments: list[tuple[str, str, datetime | None, datetime | None]]
    terms: list[tuple[str, str, int, date]]
    gate_punches: list[GatePunch]
    manual: list[ManualPunch]
    void_gate: list[int]  # indexes into gate_punches
    void_manual: list[int]  # indexes into manual
    equivocate: bool  # one gate signs a second, different punch under a seq it already used
    arrival: list[int] = field(default_factory=list)  # a permutation of gate_punches: the order they reach the bank

    def holder(self, card: str, at: datetime) -> str | None:
        """Who held ``card`` at ``at``, from the history itself (independently of the code under test)."""
        for window in self.windows:
            if window.card == card and (window.start is None or window.start <= at) and \
                    (window.end is None or at < window.end):
                return window.worker
        return None


@st.composite
def windows(draw) -> list[Window]:
    """Each worker holds a card of their own, mostly from the beginning; it may be lost (its window ends)
    and replaced by the spare card, or passed on to another worker later."""
    found = []
    spare_used = False
    for worker, card in zip(WORKERS, CARDS, strict=False):
        start = None if draw(st.booleans()) or draw(st.booleans()) else moment(draw(MINUTES))
        if not draw(st.integers(0, 3)) == 0:
            found.append(Window(card, worker, start, None))
            continue
        lost = draw(st.integers(1, DAYS * 24 * 60 - 2))
        lost_at = moment(lost) if start is None or moment(lost) > start else start + timedelta(minutes=1)
        found.append(Window(card, worker, start, lost_at))
        later = lost_at + timedelta(minutes=draw(st.integers(1, 3 * 24 * 60)))
        if not spare_used and draw(st.booleans()):
            spare_used = True
            found.append(Window(CARDS[3], worker, later, None))  # a replacement card
        else:
            other = draw(st.sampled_from([w for w in WORKERS if w != worker]))
            found.append(Window(card, other, later, None))  # the card passed on to someone else
    return found


def shift_punches(site: str, card: str, day: int, start_minute: int, minutes: int, toggle: bool,
                  delay: int, resent: bool, tapped_before: int) -> list[GatePunch]:
    """A day's work at the gate: an IN, and an OUT ``minutes`` later (toggle gates for both, if so); with
    ``tapped_before``, an IN that many minutes before that had no OUT (the kind of repeated IN that makes
    a day depend on punches long before it)."""
    gates = GATES[site]
    at = BASE + timedelta(days=day, minutes=start_minute)
    punches = [GatePunch(site, gates[0], card, at - timedelta(minutes=tapped_before), "in", True, delay, False)] \
        if tapped_before else []
    return punches + [
        GatePunch(site, gates[0], card, at, "toggle" if toggle else "in", True, delay, resent),
        GatePunch(site, gates[-1], card, at + timedelta(minutes=minutes), "toggle" if toggle else "out", True, delay,
                  False)]


@st.composite
def histories(draw, *, max_punches: int = 40) -> History:
    held = draw(windows())
    assignments = []
    for worker in WORKERS:
        for site in SITES:
            kind = draw(st.sampled_from(["always", "always", "none", "from", "until", "between"]))
            a, b = sorted(draw(st.lists(MINUTES, min_size=2, max_size=2, unique=True)))
            start = {"always": None, "from": moment(a), "until": None, "between": moment(a)}.get(kind)
            end = {"until": moment(b), "between": moment(b)}.get(kind)
            if kind != "none":
                assignments.append((worker, site, start, end))
    terms = []
    for worker in WORKERS:
        basis = draw(st.sampled_from(["day", "hour"]))
        for offset in sorted(set(draw(st.lists(st.integers(-3, DAYS), min_size=0, max_size=2)))):
            terms.append((worker, basis, draw(st.integers(1, 100_000)), (BASE + timedelta(days=offset)).date()))
    cards = st.sampled_from((*CARDS, UNKNOWN_CARD, RANDOM_UID))
    # Days of work (an IN and an OUT: day shifts, night shifts across midnight, some too long), then
    # punches anywhere: forgotten OUTs, repeated taps, strangers' cards.
    punches: list[GatePunch] = []
    for _ in range(draw(st.integers(1, max_punches // 2))):
        site = draw(st.sampled_from(sorted(SITES)))
        punches += shift_punches(site, draw(st.sampled_from(CARDS)), draw(st.integers(0, DAYS - 1)),
                                 draw(st.integers(5 * 60, 23 * 60)), draw(st.integers(1, 15 * 60)),
                                 draw(st.integers(0, 4)) == 0, draw(st.sampled_from([0, 0, 0, 1, 90, 60 * 30])),
                                 draw(st.booleans()), draw(st.sampled_from([0, 0, 0, 60, 8 * 60, 13 * 60])))
    for _ in range(draw(st.integers(0, max_punches // 4))):
        site = draw(st.sampled_from(sorted(SITES)))
        punches.append(GatePunch(site, draw(st.sampled_from(GATES[site])), draw(cards), moment(draw(MINUTES)),
                                 draw(st.sampled_from(["in", "out", "toggle"])), draw(st.booleans()),
                                 draw(st.sampled_from([0, 0, 1, 90, 60 * 30])), draw(st.booleans())))
    # A gate signs in the order of its own clock, mostly; sometimes its clock jumped back.
    if not draw(st.integers(0, 3)) == 0:
        punches.sort(key=lambda p: p.at)
    manual = []
    for _ in range(draw(st.integers(0, 8))):
        # Anywhere: at a gate punch's very instant, or any minute.
        if punches and draw(st.booleans()):
            at = draw(st.sampled_from(punches)).at
        else:
            at = moment(draw(MINUTES))
        manual.append(ManualPunch(draw(st.sampled_from(sorted(SITES))), draw(st.sampled_from(WORKERS)), at,
                                  draw(st.sampled_from(["in", "out"]))))
    void_gate = draw(st.lists(st.integers(0, max(len(punches) - 1, 0)), unique=True, max_size=6)) if punches else []
    void_manual = draw(st.lists(st.integers(0, max(len(manual) - 1, 0)), unique=True)) if manual else []
    # Mostly in the order made; sometimes late, out of order, all at once.
    arrival = list(range(len(punches)))
    if draw(st.booleans()):
        arrival = draw(st.permutations(arrival))
    return History(held, assignments, terms, punches, manual, void_gate, void_manual, draw(st.booleans()),
                   list(arrival))


class Bank:
    """A real database holding a history (SQLite in a temporary folder, or a PostgreSQL URL)."""

    def __init__(self, location: str | None = None, *, setup):
        """``setup(folder, location)``: the collector's configuration around the database (a
        ``tests.helpers.CollectorSetup``), for the reads that go through it (the web application)."""
        self.folder = Path(tempfile.mkdtemp(prefix="read-history-"))
        self.setup = setup(self.folder, location)
        self.store = Store(self.setup.location)
        self.lookbacks = 0  # reads that went back further than one shift to find where pairing restarts
        earliest = self.store.first_punch_time

        def counted(site, *since):
            self.lookbacks += not since
            return earliest(site, *since)

        self.store.first_punch_time = counted
        self.gates: dict[str, PunchFactory] = {}
        self.refs: dict[int, str] = {}  # index of a gate punch -> its ref, once stored
        self.manual_ids: list[int] = []
        self.stored: list[tuple[str, GatePunch]] = []

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def write(self, history: History) -> None:
        store = self.store
        for site, (tz, max_shift) in SITES.items():
            store.add_site(site, timezone=tz, max_shift_hours=max_shift)
            for gate in GATES[site]:
                # S1's gates write protocol 3 (each card's punches chained), S2's the protocol 1 of older gates.
                self.gates[gate] = PunchFactory(site=site, gate=gate, version=PROTOCOLS[site])
                store.add_gate(site, gate, self.gates[gate].public_key)
        for worker in WORKERS:
            store.add_worker(worker, name=f"工人{worker}", employer="华建劳务")
        for window in sorted(history.windows, key=lambda w: (w.card, w.start or BASE - timedelta(days=999))):
            store.assign_card(window.card, window.worker, valid_from=format_time(window.start) if window.start else None)
            if window.end is not None:
                store.revoke_card(window.card, at=format_time(window.end))
        for worker, site, start, end in history.assignments:
            store.assign(worker, site, by="ops", valid_from=format_time(start) if start else None,
                         valid_to=format_time(end) if end else None)
        for worker, basis, rate, effective in history.terms:
            store.set_wage_terms(worker, basis=basis, rate_fen=rate, effective_from=effective.isoformat(), by="ops")
        for site in SITES:
            store.set_site_pay(site, pay_day=15, effective_from="2026-01-01", by="ops", payer_account="110000000001",
                               payer_name="总包", payer_bank="建行")
        self.send(history.gate_punches, history.arrival, equivocate=history.equivocate)
        for entry in history.manual:
            self.manual_ids.append(store.add_manual_punch(site=entry.site, worker=entry.worker,
                                                          time=format_time(entry.at), direction=entry.direction,
                                                          reason="reader down", by="ops"))
        self.void(history)

    def send(self, punches: list[GatePunch], arrival: list[int], *, equivocate: bool = False) -> None:
        """Sign each gate's punches in the order the gate made them, deliver them in ``arrival`` order."""
        signed = {}
        for index, punch in enumerate(punches):
            signed[index] = self.gates[punch.gate].next(card=punch.card, direction=punch.direction, at=punch.at,
                                                       synced=punch.synced)
        ingestor = Ingestor(self.store)
        for index in arrival:
            punch, made = punches[index], signed[index]
            received = format_time(punch.at + timedelta(minutes=punch.delay_minutes, seconds=1))
            message = Incoming(GateTopics(punch.site, punch.gate).punch, encode_punches([made]), received)
            for _ in range(2 if punch.resent else 1):
                ingestor.ingest([message])
        self.refs = {index: f"{punches[index].gate}#{signed[index].seq}" for index in signed}
        if equivocate and punches:
            first = punches[0]
            factory = self.gates[first.gate]
            # The same seq, signed again with another card: kept as a conflict, never as a second punch.
            twin = PunchFactory(site=first.site, gate=first.gate, key=factory.key, version=factory.version)
            twin.seq = signed[0].seq - 1
            twin.prev = signed[0].prev
            other = twin.next(card=UNKNOWN_CARD, direction="in", at=first.at + timedelta(minutes=1))
            ingestor.ingest([Incoming(GateTopics(first.site, first.gate).punch, encode_punches([other]),
                                      format_time(first.at + timedelta(minutes=2)))])

    def void(self, history: History) -> None:
        ids = {row["gate"] and f"{row['gate']}#{row['seq']}": row["id"] for row in self.store.punches()}
        for index in history.void_gate:
            if index in self.refs and self.refs[index] in ids:
                self.store.void_punch(ids[self.refs[index]], reason="wrong gate", by="ops")
        for index in history.void_manual:
            self.store.void_punch(self.manual_ids[index], reason="entered twice", by="ops")

    def counted_refs(self, history: History) -> dict[str, str]:
        """Every stored punch that must count on exactly one day: ref -> worker, from the history's own
        card windows (not from the code under test): not void, held by somebody, its time placeable."""
        counted = {}
        for row in self.store.punches():
            if row["void_at"] or implausible(row["time"], row["received_at"]):
                continue
            if row["source"] == "manual":
                counted[f"manual#{row['id']}"] = row["worker"]
                continue
            if row["card_kind"] not in (None, "uid"):
                continue
            worker = history.holder(row["card"], datetime.fromisoformat(row["time"].replace("Z", "+00:00")))
            if worker is not None:
                counted[f"{row['gate']}#{row['seq']}"] = worker
        return counted

    def void_refs(self) -> set[str]:
        return {f"manual#{r['id']}" if r["source"] == "manual" else f"{r['gate']}#{r['seq']}"
                for r in self.store.punches() if r["void_at"]}
