"""The arrears a report serves without computing the bank are the arrears computed from scratch, for
generated histories (tests/read_histories.py) with wage tables run, approved (over held lines) and paid in
part, or not, at every site and month, final or not:

- what the daemon keeps and `collector arrears` and /api/arrears serve (``figures.kept_arrears``) is the
  report ``arrears`` computes at the same moment: every row still owed, every employer's and site's
  totals, each site of age 0 when read at the moment it was computed;
- the days a wage line reads (``table.period_days``: a few fields of each kept day, taken out by the
  database) are those days as computed from the punches alone (``reports.from_punches``);
- a table's payees who are one payee with another worker of the bank (``payees_sharing``, an SQL look
  at the registry) are those comparing every payee of the bank finds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from collector.attendance.reports import from_punches
from collector.store import Store, StoreError
from collector.wages import figures, payments, table
from collector.wages.arrears import arrears
from collector.wages.table import LINE_FIELDS, WageError, period_bounds, period_days, same_payees
from gate_agent.protocol import format_time
from tests.helpers import heartbeat, resident_id
from tests.read_histories import BASE, DAYS, GATES, SITES, WORKERS, histories
from tests.test_days_property import Database

SQLITE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POSTGRESQL = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PERIODS = ("2026-10", "2026-11")
#: When the report is read: inside the period (shifts still open), just after it, after both pay days.
NOWS = st.sampled_from([BASE + timedelta(days=3, hours=5), BASE + timedelta(days=DAYS, hours=2),
                        BASE + timedelta(days=60)])
#: What becomes of a (site, month): nothing, a table run, approved, or approved and paid in part.
ACTIONS = st.sampled_from(["none", "run", "approve", "pay", "pay"])
#: The bank's word on each credit of a batch, in turn (the rest stay at the bank).
RETURNS = st.lists(st.sampled_from(["paid", "paid", "failed", None]), max_size=3)


#: A worker's payee: none (every line of theirs needs a decision), their own, or W1's account (one payee).
PAYEES = st.sampled_from(["none", "own", "own", "own", "shared"])


#: A site without gates whose days are entered by hand, shift by shift: lines with nothing to decide,
#: paid or not (a random history's lines mostly hold a day to decide).
HAND = "S3"
SHIFTS = st.lists(st.tuples(st.sampled_from(WORKERS), st.integers(-2, 28), st.integers(1, 11)), max_size=8,
                  unique_by=lambda shift: shift[:2])


@st.composite
def wages(draw) -> dict:
    return {"final": draw(st.booleans()), "payees": {worker: draw(PAYEES) for worker in WORKERS},
            "shifts": draw(SHIFTS),
            "actions": {(site, period): (draw(ACTIONS), draw(RETURNS))
                        for site in (*sorted(SITES), HAND) for period in PERIODS}}


def by_hand(store, plan: dict) -> None:
    """Site S3, with every worker assigned, their shifts entered by hand (08:00 for ``hours``)."""
    store.add_site(HAND, timezone="Asia/Shanghai")
    store.set_site_pay(HAND, pay_day=15, effective_from="2026-01-01", by="ops", payer_account="110000000003",
                       payer_name="总包", payer_bank="建行")
    for worker in WORKERS:
        store.assign(worker, HAND, by="ops")
    for worker, offset, hours in plan["shifts"]:
        start = datetime(2026, 11, 1, 0, tzinfo=UTC) + timedelta(days=offset)  # 08:00 in Shanghai
        for at, direction in ((start, "in"), (start + timedelta(hours=hours), "out")):
            store.add_manual_punch(site=HAND, worker=worker, time=format_time(at), direction=direction,
                                   reason="the site has no gate yet", by="foreman")


def payees(store, plan: dict) -> None:
    for number, worker in enumerate(WORKERS, start=1):
        kind = plan["payees"][worker]
        if kind != "none":
            store.set_payee(worker, id_number=resident_id(number), phone="13812345678",
                            bank_account=f"62220212345678{1 if kind == 'shared' else number:04d}")


def make_final(store) -> None:
    """Every gate has shown it holds nothing, after both months ended: every day of them is final."""
    when = datetime(2026, 12, 2, 9, tzinfo=UTC)
    with store.transaction():
        for site, gates in GATES.items():
            for gate in gates:
                store.save_status(site, gate, {"v": 1, "state": "online", **heartbeat(
                    site=site, gate=gate, time=format_time(when), pending=0, oldest_pending_at=None)},
                                  format_time(when))


def settle(store, plan: dict) -> None:
    """Each (site, month) as the plan says, through the product's own steps (a step the rules refuse, such
    as approving a draft, is left undone)."""
    payees(store, plan)
    by_hand(store, plan)
    if plan["final"]:
        make_final(store)
    for (site, period), (action, returns) in sorted(plan["actions"].items()):
        if action == "none":
            continue
        try:
            computed = table.run(store, site, period, by="ops", draft=not plan["final"])
            if action == "run":
                continue
            table.approve(store, site, period, by="lead", overrides={
                line["worker"]: "decided next month" for line in computed["lines"] if line["status"] != "payable"})
            if action == "approve":
                continue
            with store.transaction():
                batch = payments.make_batch(store, site, period, by="clerk")
        except (WageError, StoreError, payments.PaymentError):
            continue
        today = datetime.now(UTC).astimezone(ZoneInfo(store.site(site)["timezone"])).date().isoformat()
        entries = [{"where": f"line {n}", "end_to_end_id": credit["end_to_end_id"], "status": status,
                    "voucher": f"V{n}" if status == "paid" else None, "date": today if status == "paid" else None,
                    "reason": "account closed" if status == "failed" else None, "amount_fen": credit["amount_fen"]}
                   for n, (credit, status) in enumerate(zip(batch.batch["payments"], returns, strict=False), start=1)
                   if status]  # the credits beyond the drawn answers stay at the bank
        if entries:
            payments.record_return(store, entries, source=f"return {site} {period}", digest="0" * 64, kind="csv",
                                   by="clerk")


def without_age(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("kept", "computed_at", "age_seconds")}


def check_unkept(bank, now: datetime) -> None:
    """A change not kept yet (its mark waits for the daemon): a store that may not write lays the days
    it recomputes over the kept ones, and a line reads them as the punches give them."""
    bank.store.add_manual_punch(site=HAND, worker="W1", time=format_time(BASE + timedelta(days=2, hours=1)),
                                direction="in", reason="entered late", by="foreman")
    with Store(bank.store.location, readonly=True) as reader:
        for site in (*sorted(SITES), HAND):
            first, last = period_bounds("2026-10")[0], period_bounds("2026-11")[1]
            lean = period_days(reader, site, first, last, now=now, grace=timedelta(hours=6))
            whole = from_punches(reader, site, first, last, now=now)
            assert sorted(lean, key=lambda d: (d["worker"], d["date"])) == \
                [{k: d[k] for k in ("worker", "date", *LINE_FIELDS)} for d in whole]
    assert bank.store.pending_day_marks() > 0, "nothing was written by the reader"


def check(store, now: datetime) -> None:
    fresh = arrears(store, now=now)
    if currently_in_test_context():  # what the histories covered (--hypothesis-show-statistics)
        statuses = {row["status"] for row in fresh["workers"]}
        event(f"rows: {min(len(fresh['workers']), 10)}{'+' if len(fresh['workers']) >= 10 else ''}")
        for status in ("overdue", "paid", "due", "held", "not_due", "overpaid"):
            event(f"a row {status}: {status in statuses}")
        event(f"approved tables: {len(store.approved_wage_tables())}")
        event(f"estimates: {any(row['estimate'] for row in fresh['workers'])}")
    figures.refresh(store, now=now)
    kept = figures.kept_arrears(store, now=now)
    assert kept["workers"] == [r for r in fresh["workers"] if r["status"] not in figures.SETTLED]
    assert kept["employers"] == fresh["employers"]
    assert [without_age(s) for s in kept["sites"]] == fresh["sites"]
    assert all(s["kept"] and s["age_seconds"] == 0 for s in kept["sites"])
    later = figures.kept_arrears(store, now=now + timedelta(seconds=75), site="S2")
    assert [s["age_seconds"] for s in later["sites"]] == [75]
    assert later["workers"] == [r for r in kept["workers"] if r["site"] == "S2"]
    for site in (*sorted(SITES), HAND):
        for period in PERIODS:
            first, last = period_bounds(period)
            lean = period_days(store, site, first, last, now=now, grace=timedelta(hours=6))
            whole = from_punches(store, site, first, last, now=now)
            assert sorted(lean, key=lambda d: (d["worker"], d["date"])) == \
                [{k: d[k] for k in ("worker", "date", *LINE_FIELDS)} for d in whole]
    assert same_payees(store.payees_sharing()) == same_payees(store.payees())


def run_plan(location: str | None, history, plan: dict, now: datetime) -> None:
    with Database(location) as bank:
        bank.write(history)
        settle(bank.store, plan)
        check(bank.store, now)
        check_unkept(bank, now)


@SQLITE
@given(history=histories(max_punches=24), plan=wages(), now=NOWS)
def test_kept_arrears_are_the_arrears_computed_from_scratch_on_sqlite(history, plan, now):
    run_plan(None, history, plan, now)


@POSTGRESQL
@given(history=histories(max_punches=16), plan=wages(), now=NOWS)
def test_kept_arrears_are_the_arrears_computed_from_scratch_on_postgresql(postgres_schema_db, history, plan, now):
    run_plan(postgres_schema_db, history, plan, now)

