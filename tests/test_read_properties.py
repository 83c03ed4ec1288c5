"""Every read path over generated histories (tests/read_histories.py): none may fail, and the record
keeps its invariants whatever the history. A bank pays from these reads, so an example that happens to
start with a gate punch proves nothing about one that starts with a manual punch: hypothesis looks for
the history that breaks a read.

Invariants: a day's worked minutes are its complete shifts' and never exceed its span or a shift's
maximum; every counted punch counts on exactly one day, for the worker who held its card then (a void
punch, an unknown card, a card outside its window never count); a day reads the same whatever period it
is asked in; the worker's page, the evidence file (which verifies), the wage table and the reports agree
on a worker's days; another worker's punches change nobody else's days; nor does the order in which
punches reach the bank.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collector.attendance.headcount import headcount
from collector.attendance.reports import attendance, payroll, punch_rows
from collector.attendance.trouble import report as trouble_report
from collector.config import load_config
from collector.evidence.document import build_evidence, days_id, stated_days, verify_evidence
from collector.evidence.format2 import day_of
from collector.wages.arrears import arrears
from collector.wages.slip import render as render_slip
from collector.wages.slip import slip
from collector.wages.table import CONTESTED_FLAGS, DEFAULT_LIMITS, _in_force, compute, run
from collector.web.app import WebApp
from collector.web.metrics import render_metrics
from collector.workers.record import record as worker_record
from tests import postgres
from tests.helpers import BANK_KEY, BANK_KEYS, CollectorSetup
from tests.read_histories import (
    BASE,
    DAYS,
    FIRST_DAY,
    GATES,
    LAST_DAY,
    SITES,
    WORKERS,
    Bank,
    GatePunch,
    History,
    ManualPunch,
    Window,
    histories,
)

TOKEN = secrets.token_urlsafe(24)
PERIODS = ("2026-10", "2026-11")
#: When the reads are made: inside the period (shifts still open) or long after it (days final).
NOWS = st.sampled_from([BASE + timedelta(days=3, hours=5), BASE + timedelta(days=DAYS, hours=2),
                        BASE + timedelta(days=60)])
#: Per-example cost is a real database and a few hundred reads: the budget keeps the suite's time.
SQLITE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POSTGRESQL = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Database:
    """A fresh database per example: a SQLite file, or a PostgreSQL database dropped afterwards."""

    def __init__(self, engine: str):
        self.url = None
        if engine == "postgresql":
            postgres.require_server()
            self.url = postgres.create_database()
        self.bank = Bank(self.url, setup=lambda folder, url: CollectorSetup.create(
            folder, broker=SimpleNamespace(port=1883), db=url, **{"web.tokens": {TOKEN: "*"}}))

    def __enter__(self) -> Bank:
        return self.bank

    def __exit__(self, *exc) -> None:
        self.bank.close()
        if self.url:
            postgres.drop_database(self.url)


def days_between(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def whole(store, now: datetime) -> dict[str, list[dict]]:
    return {site: attendance(store, site, FIRST_DAY, LAST_DAY, now=now) for site in SITES}


def local_minutes(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60


def check_days(records: dict[str, list[dict]], bank: Bank, history: History) -> None:
    """A day's arithmetic, and every counted punch on exactly one day for the worker who held its card."""
    credited: list[tuple[str, str]] = []
    for site, rows in records.items():
        max_minutes = SITES[site][1] * 60
        for row in rows:
            assert row["status"] != "error", row
            assert row["site"] == site and row["worker"] in WORKERS
            complete = [s for s in row["shifts"] if s["status"] == "complete"]
            total = sum(s["minutes"] for s in complete)
            assert total - 1 < row["worked_minutes"] <= total + 1e-6, row
            for shift in complete:
                assert 0 <= shift["minutes"] <= max_minutes, row
            if complete:
                assert row["worked_minutes"] <= local_minutes(row["first_in"], row["last_out"]) + 1e-6, row
            if row["status"] == "complete":
                assert all(s["status"] == "complete" for s in row["shifts"]), row
            for shift in row["shifts"]:
                credited += [(ref, row["worker"]) for ref in (shift["in_ref"], shift["out_ref"]) if ref]
            credited += [(a["ref"], row["worker"]) for a in row["anomalies"]]
            assert row["shifts"] or row["anomalies"], f"a day with nothing counted on it: {row}"
    refs = [ref for ref, _ in credited]
    assert len(refs) == len(set(refs)), "a punch counted on two days"
    assert dict(credited) == bank.counted_refs(history)
    assert not set(refs) & bank.void_refs()


def check_windows(store, records: dict[str, list[dict]], now: datetime, data) -> None:
    """A day reads the same asked alone, inside the whole period, or inside any period around it."""
    for site, rows in records.items():
        for day in days_between(FIRST_DAY, LAST_DAY):
            expected = [r for r in rows if r["date"] == day.isoformat()]
            assert attendance(store, site, day, day, now=now) == expected, (site, day)
        first = data.draw(st.dates(FIRST_DAY, LAST_DAY), label="first")
        last = data.draw(st.dates(first, LAST_DAY), label="last")
        expected = [r for r in rows if first.isoformat() <= r["date"] <= last.isoformat()]
        assert attendance(store, site, first, last, now=now) == expected, (site, first, last)
        # A list of days without their shifts (the attendance table and CSV) is each whole day cut short.
        summary = [{k: v for k, v in r.items() if k not in ("shifts", "anomalies", "voided")} for r in expected]
        assert attendance(store, site, first, last, now=now, summary=True) == summary, (site, first, last)


def check_worker_reads(store, records: dict[str, list[dict]], now: datetime) -> None:
    """The worker's page and the evidence file give what the reports give, and only that worker's."""
    for worker in WORKERS:
        mine = {(r["site"], r["date"]): r for rows in records.values() for r in rows if r["worker"] == worker}
        page = []
        for month in PERIODS:
            shown = worker_record(store, worker, month, now=now)
            assert shown["worker"]["worker"] == worker
            page += shown["days"]
        in_period = {k: r for k, r in mine.items() if k[1][:7] in PERIODS}
        assert {(d["site"], d["date"]): (d["worked_minutes"], d["status"], d["final"]) for d in page} == \
            {k: (r["worked_minutes"], r["status"], r["final"]) for k, r in in_period.items()}
        document = build_evidence(store, worker, FIRST_DAY, LAST_DAY, key=BANK_KEY, now=now)
        summary = verify_evidence(document, BANK_KEYS)
        assert summary["worker"] == worker
        assert all(d["worker"] == worker for d in document["days"])
        assert {(d["site"], d["date"]): d for d in document["days"]} == {k: day_of(r) for k, r in mine.items()}
        # A wage slip names the file's days by their id, read from the kept days: the same days.
        assert summary["days_id"] == days_id(stated_days(store, worker, FIRST_DAY, LAST_DAY, now=now))
        own_manual = {f"manual#{row['id']}" for row in store.punches() if row["source"] == "manual"
                      and row["worker"] == worker}
        assert {entry["ref"] for entry in document["manual"]} <= own_manual


def pays_day(record: dict, history: list[dict]) -> bool:
    """Whether a complete, assigned, worked day is paid: terms in force, no contested punch left unsettled,
    and a day-rate day worked the minimum for a paid day (the defaults of [wages])."""
    terms = _in_force(history, date.fromisoformat(record["date"]))
    if terms is None:
        return False
    if any(flag in record["flags"] for flag in CONTESTED_FLAGS) and "void" not in record["flags"]:
        return False
    return terms["basis"] != "day" or record["worked_minutes"] >= DEFAULT_LIMITS.paid_day_minutes


def check_wages(store, records: dict[str, list[dict]], now: datetime) -> None:
    """A wage line pays exactly the worker's complete, assigned, worked days with terms, and its gross is
    the sum of its segments; the slip of every line renders."""
    terms = store.wage_terms()
    for site in SITES:
        for period in PERIODS:
            table = compute(store, site, period, now=now, draft=True)
            for line in table["lines"]:
                segments = line["detail"]["segments"]
                assert sum(s["days"] for s in segments) == line["days"]
                assert sum(s["minutes"] for s in segments) == line["worked_minutes"]
                day_fen = sum(s["rate_fen"] * s["days"] for s in segments if s["basis"] == "day")
                hour_fen = sum(s["rate_fen"] * s["minutes"] for s in segments if s["basis"] == "hour")
                assert line["gross_fen"] == day_fen + (2 * hour_fen + 60) // 120
                assert isinstance(line["gross_fen"], int) and isinstance(line["net_fen"], int)
                history = [t for t in terms if t["worker"] == line["worker"]]
                paid = [r for r in records[site] if r["worker"] == line["worker"] and r["date"][:7] == period
                        and r["status"] == "complete" and r["worked_minutes"] > 0
                        and "not_assigned" not in r["flags"] and pays_day(r, history)]
                assert line["days"] == len(paid), (line, paid)
            saved = run(store, site, period, by="ops", draft=True, now=now)
            for line in saved["lines"]:
                render_slip(slip(store, line["worker"], period, site=site, now=now))


def asgi_get(app, path: str) -> tuple[int, bytes]:
    """One GET through the real ASGI application, in process (the routes, their errors, their JSON)."""
    async def call():
        status, body, asked = {}, [], False

        async def receive():
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)

        async def send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        raw, _, query = path.partition("?")
        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                   "scheme": "http", "path": raw, "raw_path": raw.encode(), "query_string": query.encode(),
                   "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
                   "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode())]}, receive, send)
        return status["code"], b"".join(body)

    return asyncio.run(call())


def check_site_reads(bank: Bank, now: datetime) -> None:
    """Headcount, trouble, listings, payroll, arrears, /metrics and the site API: none fails."""
    store = bank.store
    for site in SITES:
        count = headcount(store, site, now)
        assert count["on_site"] == len(count["workers"])
        assert all(w["worker"] in WORKERS for w in count["workers"])
        trouble_report(store, site, now)
        punch_rows(store, site)
        for row in payroll(attendance(store, site, FIRST_DAY, LAST_DAY, now=now)):
            assert row["worker"] in WORKERS
    arrears(store, now=now)
    for family in text_string_to_metric_families(render_metrics(store, now)):
        assert family.name
    app = WebApp(load_config(bank.setup.config_path)).app
    paths = ["/metrics", "/api/arrears", "/api/sites"]
    for site in SITES:
        paths += [f"/api/sites/{site}/headcount", f"/api/sites/{site}/trouble",
                  *(f"/api/sites/{site}/attendance?date={day.isoformat()}"
                    for day in days_between(FIRST_DAY, LAST_DAY))]
    for path in paths:
        status, body = asgi_get(app, path)
        assert status == 200, (path, body[:300])


def bucket(count: int) -> str:
    return "0" if count == 0 else "1-9" if count < 10 else "10-29" if count < 30 else "30+"


def every_read(bank: Bank, history: History, now: datetime, data) -> dict[str, list[dict]]:
    records = whole(bank.store, now)
    check_days(records, bank, history)
    check_windows(bank.store, records, now, data)
    check_worker_reads(bank.store, records, now)
    check_wages(bank.store, records, now)
    check_site_reads(bank, now)
    covered(bank, history, records)
    return records


def covered(bank: Bank, history: History, records: dict[str, list[dict]]) -> None:
    """What the history covered (``--hypothesis-show-statistics``): a property that held only over empty
    histories, or never made a read look back for a restart point, would prove little."""
    if currently_in_test_context():
        rows = [r for site_rows in records.values() for r in site_rows]
        event(f"days: {bucket(len(rows))}")
        event(f"counted punches: {bucket(len(bank.counted_refs(history)))}")
        for status in sorted({r["status"] for r in rows}):
            event(f"a day {status}")
        if bank.lookbacks:
            event("a read went back further than a shift")
        if any(s["in_ref"] and s["in_ref"].startswith("manual#") for r in rows for s in r["shifts"]):
            event("a manual IN opens a shift")


def check_locality(bank: Bank, records: dict[str, list[dict]], now: datetime, data) -> None:
    """Another worker's punches (at the same gates, and by hand) change nobody else's days."""
    store = bank.store
    store.add_worker("W9", name="新来的", employer="别的劳务", cards=["0455667788AA"], sites=list(SITES))
    punches = data.draw(st.lists(st.builds(
        GatePunch, site=st.just("S1"), gate=st.sampled_from(GATES["S1"]), card=st.just("0455667788AA"),
        at=st.integers(0, DAYS * 24 * 60 - 1).map(lambda m: BASE + timedelta(minutes=m)),
        direction=st.sampled_from(["in", "out", "toggle"]), synced=st.just(True), delay_minutes=st.just(0),
        resent=st.just(False)), max_size=6), label="W9 punches")
    bank.send(punches, list(range(len(punches))))
    for entry in data.draw(st.lists(st.builds(
            ManualPunch, site=st.sampled_from(sorted(SITES)), worker=st.just("W9"),
            at=st.integers(0, DAYS * 24 * 60 - 1).map(lambda m: BASE + timedelta(minutes=m)),
            direction=st.sampled_from(["in", "out"])), max_size=3), label="W9 manual"):
        store.add_manual_punch(site=entry.site, worker=entry.worker, time=entry.at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                               direction=entry.direction, reason="forgot card", by="ops")
    after = whole(store, now)
    for site in SITES:
        assert [r for r in after[site] if r["worker"] != "W9"] == records[site]


def run_history(engine: str, history: History, now: datetime, data) -> None:
    with Database(engine) as bank:
        bank.write(history)
        records = every_read(bank, history, now, data)
        check_locality(bank, records, now, data)


@SQLITE
@given(history=histories(), now=NOWS, data=st.data())
def test_every_read_path_keeps_the_invariants_on_sqlite(history, now, data):
    run_history("sqlite", history, now, data)


@POSTGRESQL
@given(history=histories(max_punches=25), now=NOWS, data=st.data())
def test_every_read_path_keeps_the_invariants_on_postgresql(history, now, data):
    run_history("postgresql", history, now, data)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(max_punches=30), now=NOWS, order=st.randoms(use_true_random=False))
def test_the_order_punches_reach_the_bank_does_not_change_the_days(history, now, order):
    """The same punches, delivered in another order (late, out of order, resent), give the same days."""
    results = []
    for arrival in (history.arrival, order.sample(history.arrival, len(history.arrival))):
        with Database("sqlite") as bank:
            history.arrival = arrival
            bank.write(history)
            results.append({site: [{k: r[k] for k in ("worker", "date", "worked_minutes", "status", "shifts",
                                                      "anomalies", "voided")} for r in rows]
                            for site, rows in whole(bank.store, now).items()})
    assert results[0] == results[1]


# ------------------------------------------------------------------------------ the histories that were faults


def manual_first() -> History:
    """A month entered by hand: a site whose gates are not installed yet (the fault that took every read
    of the bank down)."""
    at = datetime(2026, 10, 29, 0, 0, tzinfo=UTC)
    return History(windows=[Window("DEADBEEF", "W1", None, None)], assignments=[("W1", "S1", None, None)],
                   terms=[("W1", "day", 35000, date(2026, 10, 1))], gate_punches=[
                       GatePunch("S1", "s1-north", "DEADBEEF", at + timedelta(hours=1), "in", True, 0, False)],
                   manual=[ManualPunch("S1", "W1", at, "in"), ManualPunch("S1", "W2", at, "in"),
                           ManualPunch("S1", "W1", at + timedelta(hours=9), "out")],
                   void_gate=[], void_manual=[], equivocate=False, arrival=[0])


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_manual_punch_before_the_first_gate_punch_is_read_everywhere(engine):
    history = manual_first()
    with Database(engine) as bank:
        bank.write(history)
        now = datetime(2026, 12, 1, tzinfo=UTC)
        records = every_read(bank, history, now, SimpleNamespace(draw=lambda strategy, label=None: FIRST_DAY))
        (day,) = [r for r in records["S1"] if r["worker"] == "W1"]
        # The gate IN an hour after the manual IN is a repeated IN: counted once, flagged, 9 hours worked.
        assert (day["date"], day["worked_minutes"], day["status"]) == ("2026-10-29", 540, "anomaly")
        assert day["name"] == "工人W1"


def test_a_day_that_cannot_be_computed_is_that_workers_problem_and_everyone_else_is_served(monkeypatch, caplog):
    """Whatever makes one worker's days fail (here a fault put into the pairing rules for W2), the other
    workers' days, the pages and the wage table are served, and W2's days say why they are missing."""
    import collector.attendance.reports as reports

    history = manual_first()
    history.windows.append(Window("CAFEF00D", "W2", None, None))
    history.gate_punches.append(GatePunch("S1", "s1-north", "CAFEF00D", datetime(2026, 10, 29, 1, tzinfo=UTC), "in",
                                          True, 0, False))
    history.arrival = [0, 1]
    original = reports.daily_records

    def failing_for_w2(events, rules, now):
        events = list(events)
        if any(e.worker == "W2" for e in events):
            raise KeyError("a fault in the rules")
        return original(events, rules, now)

    monkeypatch.setattr(reports, "daily_records", failing_for_w2)
    with Database("sqlite") as bank:
        bank.write(history)
        now = datetime(2026, 12, 1, tzinfo=UTC)
        rows = {r["worker"]: r for r in attendance(bank.store, "S1", FIRST_DAY, LAST_DAY, now=now)}
        assert rows["W1"]["worked_minutes"] == 540 and rows["W1"]["status"] == "anomaly"
        problem = rows["W2"]
        assert (problem["date"], problem["status"], problem["worked_minutes"], problem["final"]) == \
            ("2026-10-29", "error", 0, False)
        assert "KeyError" in problem["error"] and "a fault in the rules" in problem["error"]
        assert "Traceback" in caplog.text and "W2" in caplog.text
        # The attendance table and CSV (days without their shifts) say why too.
        listed = {r["worker"]: r for r in attendance(bank.store, "S1", FIRST_DAY, LAST_DAY, now=now, summary=True)}
        assert listed["W2"]["error"] == problem["error"] and "shifts" not in listed["W2"]
        # The wage table holds W2's day for a decision, and W1's line is what W1's punches give.
        lines = {line["worker"]: line for line in compute(bank.store, "S1", "2026-10", now=now, draft=True)["lines"]}
        assert lines["W2"]["status"] == "needs_decision"
        assert [d["status"] for d in lines["W2"]["detail"]["days_to_decide"]] == ["error"]
        assert [d["status"] for d in lines["W1"]["detail"]["days_to_decide"]] == ["anomaly"]
        # W2's own page says the day could not be computed; W1's page is whole.
        assert [(d["date"], d["status"]) for d in worker_record(bank.store, "W2", "2026-10", now=now)["days"]] == \
            [("2026-10-29", "error")]
        assert worker_record(bank.store, "W1", "2026-10", now=now)["totals"]["worked_minutes"] == 540
        assert asgi_get(WebApp(load_config(bank.setup.config_path)).app,
                        "/api/sites/S1/attendance?date=2026-10-29")[0] == 200


def test_a_site_that_cannot_be_read_leaves_the_bank_s_other_sites_served(monkeypatch, caplog):
    """Arrears and /metrics cover the whole bank: a fault at one site (here put into S2's arrears and
    unknown cards inside) is that site's, named with its reason, and the other sites' figures are all there."""
    import collector.wages.arrears as arrears_module
    import collector.wages.figures as figures_module

    history = manual_first()
    with Database("sqlite") as bank:
        bank.write(history)
        now = datetime(2026, 12, 1, tzinfo=UTC)
        site_arrears, site_unknown = arrears_module._site, figures_module.unknown_inside
        alone = arrears(bank.store, site="S1", now=now)

        def failing_site(store, site, *args):
            if site == "S2":
                raise ZeroDivisionError("a fault at S2")
            return site_arrears(store, site, *args)

        def failing_unknown(store, site, *args):
            if site == "S2":
                raise ZeroDivisionError("a fault at S2")
            return site_unknown(store, site, *args)

        monkeypatch.setattr(arrears_module, "_site", failing_site)
        monkeypatch.setattr(figures_module, "unknown_inside", failing_unknown)
        report = arrears(bank.store, now=now)
        by_site = {s["site"]: s for s in report["sites"]}
        assert by_site["S1"] == alone["sites"][0] and by_site["S1"]["error"] is None
        assert "ZeroDivisionError: a fault at S2" in by_site["S2"]["error"]
        assert report["workers"] == alone["workers"]
        figures_module.refresh(bank.store, now=now)  # what the daemon keeps for /metrics
        kept = {(f.site, f.figure): f for f in bank.store.figures()}
        assert "ZeroDivisionError: a fault at S2" in kept[("S2", "arrears")].error
        assert "ZeroDivisionError: a fault at S2" in kept[("S2", "inside")].error
        samples = {(s.name, s.labels.get("site")): s.value
                   for family in text_string_to_metric_families(render_metrics(bank.store, now))
                   for s in family.samples}
        assert samples[("collector_site_read_failed", "S2")] == 1
        assert samples[("collector_site_read_failed", "S1")] == 0
        assert ("collector_site_unknown_cards_inside", "S1") in samples
        assert ("collector_site_unknown_cards_inside", "S2") not in samples
        assert ("collector_wages_overdue_fen", "S1") in samples and ("collector_wages_overdue_fen", "S2") not in samples
        assert "Traceback" in caplog.text
