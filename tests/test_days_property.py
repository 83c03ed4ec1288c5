"""The kept days are the days computed from the punches: whatever changes were made, in whatever order,
with the days refreshed at whatever points (in part, or interrupted half-way), a read of the kept days
(``reports.attendance``) gives at every ``now`` what computing from the punches gives
(``reports.from_punches``), for a site and for each worker; and a read-only store with changes still
marked lays the recomputed days over the kept ones, writing nothing.

A history (tests/read_histories.py) is cut into steps: each gate punch reaching the bank (in its random
arrival order), a manual punch, a void, a card given or taken back, an assignment made or ended, a
site's maximum shift or time zone changed, a gate's delivery interval set. The steps run in a random
order (a card's windows and the gate punches' arrival keep their own order), with refreshes, reads and
crashed refreshes between them.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from types import SimpleNamespace

from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from collector.attendance import days
from collector.attendance.reports import attendance, from_punches
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, StoreError
from gate_agent.protocol import GateTopics, encode_punches, format_time, parse_time
from tests.helpers import CollectorSetup, PunchFactory
from tests.read_histories import (
    BASE,
    DAYS,
    FIRST_DAY,
    GATES,
    LAST_DAY,
    SITES,
    UNKNOWN_CARD,
    WORKERS,
    Bank,
    History,
    histories,
)

#: Per example: a real database, a few dozen changes each in its own transaction, and a few hundred
#: reads; these budgets keep each engine's test within a minute on two cores.
SQLITE = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: The PostgreSQL test's database is made once and emptied before each example (``Database``).
POSTGRESQL = settings(max_examples=15, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: Reads made at: before the period, inside it (shifts still open), just after it, long after it.
FIXED_NOWS = (BASE - timedelta(days=1), BASE + timedelta(days=3, hours=5), BASE + timedelta(days=DAYS, hours=2),
              BASE + timedelta(days=60))
MINUTES = st.integers(0, DAYS * 24 * 60 - 1)


class Crash(Exception):
    """What stops a refresh half-way (a process killed, a connection lost): its transaction rolls back."""


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str
    arg: object = None


class Database:
    """An empty database per example: SQLite in a temporary folder, or the test's PostgreSQL database
    emptied (a database made and dropped per example costs more than the example itself)."""

    def __init__(self, location: str | None):
        self.url = location
        if location is not None:
            empty(location)
        self.bank = Bank(self.url, setup=lambda folder, url: CollectorSetup.create(
            folder, broker=SimpleNamespace(port=1883), db=url))

    def __enter__(self) -> Bank:
        return self.bank

    def __exit__(self, *exc) -> None:
        self.bank.close()


def empty(url: str) -> None:
    """Every row of the collector's tables gone, keys starting again; the schema stays."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                                 "AND tablename NOT IN ('schema_migrations', 'registry_version')")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def moment(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


SOME = st.sampled_from([0, 0, 1, 2])


@st.composite
def extra_steps(draw) -> list[Step]:
    """Changes a history does not hold, and the points where the days are refreshed or read. Changes
    that recompute a whole site from its beginning are few: each would hide what a change before it
    failed to mark."""
    steps = []
    sites = st.sampled_from(sorted(SITES))
    for _ in range(draw(SOME)):
        steps.append(Step("max_shift", (draw(sites), draw(st.sampled_from([4, 8, 12.5, 16, 24])))))
    for _ in range(draw(SOME)):
        site = draw(sites)
        steps.append(Step("delivery", (site, draw(st.sampled_from(GATES[site])), draw(st.sampled_from([None, 1, 24, 48])))))
    if draw(st.integers(0, 3)) == 0:
        # Refused once the site has a punch (local dates already reported must not move): a change that
        # rolls back, and must leave no mark.
        steps.append(Step("timezone", (draw(sites), draw(st.sampled_from(["Asia/Shanghai", "America/New_York",
                                                                          "Europe/Berlin"])))))
    for _ in range(draw(st.integers(0, 3))):
        # Ends the worker's open assignment there (if any) this far into what is left of the period.
        steps.append(Step("unassign", (draw(st.sampled_from(WORKERS)), draw(sites), draw(st.integers(1, 99)))))
    for _ in range(draw(st.integers(0, 2))):
        start, end = sorted(draw(st.lists(MINUTES, min_size=2, max_size=2, unique=True)))
        steps.append(Step("assign", (draw(st.sampled_from(WORKERS)), draw(sites), moment(start),
                                     draw(st.sampled_from([None, moment(end)])))))
    if draw(st.integers(0, 4)) == 0:
        steps.append(Step("remove_worker", (draw(st.sampled_from(WORKERS)), moment(draw(MINUTES)))))
    for _ in range(draw(st.integers(0, 4))):
        # As most punches come: after everything the worker did at the site (hours or days later).
        steps.append(Step("next", (draw(sites), draw(st.sampled_from(WORKERS)), draw(st.integers(1, 4 * 24 * 60)),
                                   draw(st.sampled_from(["in", "out"])))))
    for _ in range(draw(st.integers(1, 5))):
        steps.append(Step("refresh", draw(st.sampled_from([None, None, 1, 2, 5]))))
    for _ in range(draw(st.integers(0, 3))):
        steps.append(Step("crash", (draw(st.sampled_from([None, 1, 3])), draw(st.integers(0, 3)),
                                    draw(st.sampled_from(["before", "after", "drop"])))))
    for _ in range(draw(st.integers(0, 3))):
        steps.append(Step("read", (draw(sites), draw(st.sampled_from([None, *WORKERS])),
                                   draw(st.sampled_from(FIXED_NOWS)))))
    return steps


def plan(history: History, extra: list[Step], order: list[int], *, registry_first: bool) -> list[Step]:
    """The history's changes and the extra steps in ``order``; a card's windows and the gate punches'
    arrival keep their own order (a card is given before it is taken back, passed on after). With
    ``registry_first``, cards and assignments come before everything else, as on a site that registered
    its workers before they worked: their marks (most reach back to the beginning) then recompute little
    of what the later changes marked, so a change that failed to mark its days shows."""
    card_steps = []
    for window in sorted(history.windows, key=lambda w: (w.card, w.start or BASE - timedelta(days=999))):
        card_steps.append(Step("card", window))
        if window.end is not None:
            card_steps.append(Step("revoke", window))
    steps = [*card_steps, *(Step("assign", a) for a in history.assignments),
             *(Step("gate", i) for i in history.arrival), *(Step("manual", i) for i in range(len(history.manual))),
             *(Step("void_gate", i) for i in history.void_gate), *(Step("void_manual", i) for i in history.void_manual),
             *([Step("equivocate")] if history.equivocate and history.gate_punches else []), *extra]
    shuffled = [steps[i] for i in order]
    for kinds, sequence in (({"card", "revoke"}, card_steps), ({"gate"}, [Step("gate", i) for i in history.arrival])):
        places = [i for i, step in enumerate(shuffled) if step.kind in kinds]
        for place, step in zip(places, sequence, strict=True):
            shuffled[place] = step
    if registry_first:
        shuffled.sort(key=lambda step: step.kind not in ("card", "revoke", "assign"))
    return shuffled


class Run:
    """A history applied step by step to a real database."""

    def __init__(self, bank: Bank, history: History):
        self.bank, self.history, self.store = bank, history, bank.store
        self.ingestor = Ingestor(self.store)
        self.signed: dict[int, object] = {}
        self.punch_ids: dict[tuple[str, int], int] = {}  # ("gate"|"manual", index) -> stored punch id
        self.voids_waiting: list[tuple[str, int]] = []
        self.crashes = 0
        store = self.store
        for site, (tz, max_shift) in SITES.items():
            store.add_site(site, timezone=tz, max_shift_hours=max_shift)
            for gate in GATES[site]:
                bank.gates[gate] = PunchFactory(site=site, gate=gate)
                store.add_gate(site, gate, bank.gates[gate].public_key)
        for worker in WORKERS:
            store.add_worker(worker, name=f"工人{worker}", employer="华建劳务")
        # Each gate signs its punches in the order it made them, whenever they reach the bank.
        for index, punch in enumerate(history.gate_punches):
            self.signed[index] = bank.gates[punch.gate].next(card=punch.card, direction=punch.direction, at=punch.at,
                                                            synced=punch.synced)

    def apply(self, step: Step) -> None:
        store, history = self.store, self.history
        kind, arg = step.kind, step.arg
        try:
            if kind == "card":
                store.assign_card(arg.card, arg.worker, valid_from=format_time(arg.start) if arg.start else None)
            elif kind == "revoke":
                store.revoke_card(arg.card, at=format_time(arg.end))
            elif kind == "assign":
                worker, site, start, end = arg
                store.assign(worker, site, by="ops", valid_from=format_time(start) if start else None,
                             valid_to=format_time(end) if end else None)
            elif kind == "unassign":
                worker, site, percent = arg
                held = [a for a in store.assignments(worker=worker, site=site) if a["valid_to"] is None]
                if held:
                    start = max(parse_time(held[0]["valid_from"]) if held[0]["valid_from"] else BASE, BASE)
                    at = start + (BASE + timedelta(days=DAYS) - start) * percent / 100
                    store.unassign(worker, site, at=format_time(at), by="ops")
            elif kind == "remove_worker":
                worker, at = arg
                store.remove_worker(worker, at=format_time(at), by="ops")
            elif kind == "gate":
                self.deliver(arg)
            elif kind == "equivocate":
                self.equivocate()
            elif kind == "next":
                site, worker, minutes, direction = arg
                latest = max((p["time"] for p in store.worker_punches(site, worker)), default=None)
                at = (parse_time(latest) if latest else BASE) + timedelta(minutes=minutes)
                store.add_manual_punch(site=site, worker=worker, time=format_time(at), direction=direction,
                                       reason="reader down", by="ops")
            elif kind == "manual":
                entry = history.manual[arg]
                self.punch_ids[("manual", arg)] = store.add_manual_punch(
                    site=entry.site, worker=entry.worker, time=format_time(entry.at), direction=entry.direction,
                    reason="reader down", by="ops")
            elif kind in ("void_gate", "void_manual"):
                self.voids_waiting.append(("gate" if kind == "void_gate" else "manual", arg))
            elif kind == "max_shift":
                store.edit_site(arg[0], max_shift_hours=arg[1])
            elif kind == "timezone":
                self.timezone(*arg)
            elif kind == "delivery":
                store.set_gate_delivery(*arg)
            elif kind == "refresh":
                settled(store, days.refresh(store, limit=arg))
            elif kind == "crash":
                self.crash(*arg)
            elif kind == "read":
                site, worker, now = arg
                assert attendance(store, site, FIRST_DAY, LAST_DAY, now=now, worker=worker) == \
                    from_punches(store, site, FIRST_DAY, LAST_DAY, now=now, worker=worker), (site, worker, now)
            else:
                raise AssertionError(f"unknown step {kind}")
        except StoreError:
            # A change the store refuses (a worker removed, an assignment already ended) rolls back whole.
            pass
        else:
            if kind in ("unassign", "remove_worker", "max_shift", "delivery", "next") and currently_in_test_context():
                event(f"a change after the history: {kind}")
        self.void_what_is_stored()

    def deliver(self, index: int) -> None:
        punch, made = self.history.gate_punches[index], self.signed[index]
        received = format_time(punch.at + timedelta(minutes=punch.delay_minutes, seconds=1))
        message = Incoming(GateTopics(punch.site, punch.gate).punch, encode_punches([made]), received)
        for _ in range(2 if punch.resent else 1):
            self.ingestor.ingest([message])
        stored = self.store.db.value("SELECT id FROM punches WHERE site = ? AND gate = ? AND seq = ?",
                                     (punch.site, punch.gate, made.seq))
        if stored is not None:
            self.punch_ids[("gate", index)] = stored

    def equivocate(self) -> None:
        """The first punch's gate signs another punch under the same seq (kept as a conflict if the first
        is already stored; stored in its place if it is not)."""
        first, signed = self.history.gate_punches[0], self.signed[0]
        factory = self.bank.gates[first.gate]
        twin = PunchFactory(site=first.site, gate=first.gate, key=factory.key)
        twin.seq, twin.prev = signed.seq - 1, signed.prev
        other = twin.next(card=UNKNOWN_CARD, direction="in", at=first.at + timedelta(minutes=1))
        self.ingestor.ingest([Incoming(GateTopics(first.site, first.gate).punch, encode_punches([other]),
                                       format_time(first.at + timedelta(minutes=2)))])

    def timezone(self, site: str, tz: str) -> None:
        before = self.store.pending_day_marks()
        try:
            self.store.edit_site(site, timezone=tz)
        except StoreError:
            assert self.store.pending_day_marks() == before, "a refused change left a mark"
            raise

    def void_what_is_stored(self) -> None:
        """A void waits for its punch to be stored (a void of a punch not there yet is no change)."""
        waiting = []
        for target in self.voids_waiting:
            punch_id = self.punch_ids.get(target)
            if punch_id is None:
                waiting.append(target)
                continue
            if not self.store.punch(punch_id)["void_at"]:
                self.store.void_punch(punch_id, reason="wrong gate" if target[0] == "gate" else "entered twice",
                                      by="ops")
        self.voids_waiting = waiting

    def crash(self, limit: int | None, after_units: int, where: str) -> None:
        """A refresh that dies: in a unit's replacement (before or after it is written) once ``after_units``
        were replaced, or just before the marks are removed. Whatever it did in the transaction that died
        is gone, and every mark it read stays."""
        store = self.store
        marks_before = {m.id for m in store.day_marks()}
        replaced = 0
        original_replace, original_drop = store.replace_days, store.drop_day_marks

        def replace_days(*args):
            nonlocal replaced
            if where == "before" and replaced >= after_units:
                raise Crash()
            original_replace(*args)
            replaced += 1
            if where == "after" and replaced > after_units:
                raise Crash()

        def drop_day_marks(ids):
            raise Crash()

        store.replace_days = replace_days
        if where == "drop":
            store.drop_day_marks = drop_day_marks
        try:
            settled(store, days.refresh(store, limit=limit))
        except Crash:
            self.crashes += 1
            assert marks_before <= {m.id for m in store.day_marks()}, "a refresh that died lost marks"
        finally:
            del store.replace_days
            store.__dict__.pop("drop_day_marks", None)
        assert store.replace_days == original_replace and store.drop_day_marks == original_drop


def settled(store: Store, done: days.Refreshed) -> None:
    """A refresh of a store that may write keeps what it recomputed (nothing laid over) and skips nothing
    on one connection."""
    assert not done.overlay and done.skipped == 0, done


def open_checks(store: Store, data) -> list[tuple[datetime, str, str | None]]:
    """Reads at the moment a kept day's open shift runs out, a millisecond and a microsecond around it:
    of the site, and of the worker."""
    open_days = {(d.open_until, d.site, d.worker) for d in store.stored_days() if d.open_until is not None}
    if not open_days:
        return []
    if currently_in_test_context():
        event("a kept day has an open shift")
    chosen = data.draw(st.lists(st.sampled_from(sorted(open_days)), min_size=1, max_size=2, unique=True),
                       label="open day")
    checks = []
    for text, site, worker in chosen:
        until = parse_time(text)
        for now in (until - timedelta(milliseconds=1), until, until + timedelta(microseconds=1),
                    until + timedelta(microseconds=999), until + timedelta(milliseconds=1)):
            checks += [(now, site, None), (now, site, worker)]
    return checks


def fixed_checks(nows=FIXED_NOWS) -> list[tuple[datetime, str, str | None]]:
    return [(now, site, worker) for now in nows for site in SITES for worker in (None, *WORKERS)]


def same_as_from_punches(store: Store, checks: list[tuple[datetime, str, str | None]]) -> None:
    """Each read of the kept days (a site's, or one worker's there) is what the punches give at ``now``."""
    for now, site, worker in checks:
        kept = attendance(store, site, FIRST_DAY, LAST_DAY, now=now, worker=worker)
        fresh = from_punches(store, site, FIRST_DAY, LAST_DAY, now=now, worker=worker)
        assert kept == fresh, (site, worker, now, differing(kept, fresh))


def differing(kept: list[dict], fresh: list[dict]) -> list:
    """Where two reads differ: per worker and date, the fields that differ (kept, from the punches)."""
    left, right = ({(d["worker"], d["date"]): d for d in rows} for rows in (kept, fresh))
    found = []
    for key in sorted(left.keys() | right.keys()):
        a, b = left.get(key), right.get(key)
        if a != b:
            found.append((key, {k: (a.get(k), b.get(k)) for k in a if a.get(k) != b.get(k)} if a and b else (a, b)))
    return found


def snapshot(store: Store) -> tuple:
    return (store.stored_days(), [m.id for m in store.day_marks()],
            store.db.column("SELECT computed_at FROM days ORDER BY site, worker, day"))


def run_steps(location: str | None, history: History, extra: list[Step], data) -> None:
    with Database(location) as bank:
        run = Run(bank, history)
        order = data.draw(st.permutations(range(step_count(history, extra))), label="order")
        steps = plan(history, extra, order, registry_first=data.draw(st.booleans(), label="registry first"))
        # Units per transaction: with one or two, a refresh that dies has committed some units already.
        per_transaction = days.UNITS_PER_TRANSACTION
        days.UNITS_PER_TRANSACTION = data.draw(st.sampled_from([1, 2, per_transaction]), label="units per transaction")
        try:
            for step in steps:
                run.apply(step)
        finally:
            days.UNITS_PER_TRANSACTION = per_transaction
        store = run.store
        if store.pending_day_marks() == 0:
            # A change after the last refresh, so that the reads below find marks pending.
            entry = history.manual[0] if history.manual else None
            store.add_manual_punch(site="S1", worker="W1", time=format_time(entry.at if entry else moment(600)),
                                   direction="out", reason="left by the side gate", by="ops")
        checks = [*fixed_checks(), *open_checks(store, data)]
        readonly_overlay(bank, checks)
        same_as_from_punches(store, checks)
        assert store.pending_day_marks() == 0
        kept_is_recomputed(store)
        if currently_in_test_context():
            event(f"crashed refreshes: {min(run.crashes, 2)}{'+' if run.crashes > 2 else ''}")
            event(f"kept days: {'0' if not store.stored_days() else 'some'}")


def readonly_overlay(bank: Bank, checks: list[tuple[datetime, str, str | None]]) -> None:
    """A store that may not write, with changes marked and not yet recomputed, reads what the punches give,
    and writes nothing (neither days nor marks)."""
    store = bank.store
    before = snapshot(store)
    assert before[1], "no mark pending: the overlay is not exercised"
    with Store(bank.setup.location, readonly=True) as reader:
        same_as_from_punches(reader, checks)
    assert snapshot(store) == before


def kept_is_recomputed(store: Store) -> None:
    """With nothing marked, the kept days are exactly what recomputing every worker's days gives
    (``open_until`` and the run-out record included, which the reads above only see at some ``now``)."""
    for site in SITES:
        fresh = []
        for worker in store.workers_at_site(site):
            fresh += days.recompute(store, site, worker, "")[1]
        assert store.stored_days(site=site) == sorted(fresh, key=lambda d: (d.site, d.worker, d.day)), site


def step_count(history: History, extra: list[Step]) -> int:
    return (len(history.windows) + sum(w.end is not None for w in history.windows) + len(history.assignments)
            + len(history.arrival) + len(history.manual) + len(history.void_gate) + len(history.void_manual)
            + int(history.equivocate and bool(history.gate_punches)) + len(extra))


@SQLITE
@given(history=histories(max_punches=24), extra=extra_steps(), data=st.data())
def test_kept_days_are_the_days_of_the_punches_on_sqlite(history, extra, data):
    run_steps(None, history, extra, data)


@POSTGRESQL
@given(history=histories(max_punches=16), extra=extra_steps(), data=st.data())
def test_kept_days_are_the_days_of_the_punches_on_postgresql(postgres_schema_db, history, extra, data):
    run_steps(postgres_schema_db, history, extra, data)

