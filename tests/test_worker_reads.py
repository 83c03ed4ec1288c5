"""One worker's reads (their page, wage slip, wages and draft wage line) read that worker's own rows only,
and give exactly what the whole site's reads give for them.

The final October of tests/test_wages.py (both engines): five workers at one site's two gates, pay day
2026-11-15. Then random histories (tests/read_histories.py): cards passed on, manual punches, voids,
assignments and terms that change mid-period, final or not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.attendance.reports import attendance
from collector.evidence.document import evidence_body
from collector.store import Store
from collector.wages.arrears import arrears
from collector.wages.slip import slip
from collector.wages.table import compute, period_bounds, run
from collector.workers.record import DAY_FIELDS, record
from gate_agent.protocol import format_time
from tests import test_wages
from tests.helpers import BANK_KEY, CollectorSetup, heartbeat
from tests.read_histories import BASE, FIRST_DAY, GATES, LAST_DAY, SITES, WORKERS, Bank, histories
from tests.test_wages_payments import PERIOD, approve, bank_return, batch, credits, paid_day

month = test_wages.month
#: The wages section of the worker's page: these fields of the bank's arrears rows.
WAGE_FIELDS = ("site", "period", "pay_day", "status", "due_fen", "paid_fen", "pending_fen", "overdue_fen",
               "days_overdue", "estimate", "estimate_fen")
OCTOBER = ("2026-10-01", "2026-10-31")


def shanghai_noon(day: str) -> datetime:
    """Noon at the Shanghai site on ``day``: the site's local date, whatever the time zone of the test."""
    return datetime.fromisoformat(f"{day}T04:00:00+00:00")


def page_days_of(rows: list[dict], worker: str, site_names: dict[str, str]) -> list[dict]:
    """What the worker's page shows of the whole site's records, for ``worker``."""
    days = []
    for row in rows:
        if row["worker"] != worker:
            continue
        day = {k: row[k] for k in DAY_FIELDS}
        day["site_name"] = site_names[row["site"]]
        day["shifts"] = [{k: s[k] for k in ("in", "out", "minutes", "status")} for s in row["shifts"]]
        days.append(day)
    return sorted(days, key=lambda d: (d["date"], d["site"]))


def check_worker_wages(store: Store, workers, sites, now: datetime) -> int:
    """Each worker's arrears rows, and their page's wages, are the whole report's rows for them."""
    whole = arrears(store, now=now)["workers"]
    for worker in workers:
        for site in sites:
            mine = arrears(store, site=site, now=now, worker=worker)
            assert mine["workers"] == [r for r in whole if r["worker"] == worker and r["site"] == site]
    return len(whole)


def check_lines(store: Store, site: str, period: str, workers, now: datetime) -> None:
    """One worker's draft line is the line the whole table has for them (none if it has none)."""
    table = compute(store, site, period, now=now, draft=True)
    for worker in workers:
        mine = compute(store, site, period, now=now, draft=True, worker=worker)
        assert {k: v for k, v in mine.items() if k != "lines"} == {k: v for k, v in table.items() if k != "lines"}
        assert mine["lines"] == [line for line in table["lines"] if line["worker"] == worker]


# ------------------------------------------------------------------------------ the October of test_wages


def test_a_workers_wages_and_draft_line_are_the_whole_sites_for_them(month, tmp_path):
    workers = ("W1", "W2", "W3", "W4", "W5", "W6")
    with month.setup.store() as store:
        store.add_worker("W6", name="工人W6", employer="华建劳务", sites=["S1"])
    # A deduction alone (no day worked) still makes a line.
    month.cli("wages", "deduct", *PERIOD, "--worker", "W6", "--item", "借支", "--amount-yuan", "100",
              "--reason", "advance", "--by", "ops-li")
    with month.setup.store() as store:
        check_lines(store, "S1", "2026-10", workers, shanghai_noon("2026-11-20"))
        assert [line["worker"] for line in compute(store, "S1", "2026-10", draft=True, worker="W6")["lines"]] == ["W6"]
        # No approved table: past the pay day, every verified worker is overdue on an estimate.
        assert check_worker_wages(store, workers, ["S1"], shanghai_noon("2026-11-20")) == 5
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W6=owes the advance; held")
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        *[(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4")],
        (ids["W2"][0], "failed", "", "", "account closed")]))
    now = datetime.now(UTC)
    with month.setup.store() as store:
        for day in ("2026-11-14", "2026-11-15", "2026-11-16"):
            assert check_worker_wages(store, workers, ["S1"], shanghai_noon(day)) == 6  # W6's line is held
        assert check_worker_wages(store, workers, ["S1"], now) == 6
        whole = arrears(store, now=now)["workers"]
        statuses = {r["worker"]: r["status"] for r in whole}
        assert (statuses["W1"], statuses["W2"], statuses["W6"]) == ("paid", "overdue", "held")
        for worker in workers:
            shown = record(store, worker, "2026-10", now=now)
            assert shown["wages"] == [{k: r[k] for k in WAGE_FIELDS} for r in whole if r["worker"] == worker]


def test_a_payee_another_worker_also_is_is_found_from_one_workers_line_too(month):
    """W6 holds W1's account and W3's ID number as an older version kept them (spaced, a lower-case x):
    one worker's line names the others exactly as the whole table does."""
    with month.setup.store() as store:
        store.add_worker("W6", name="工人W6", employer="华建劳务", cards=["04A1B2C3D4E5AA"], sites=["S1"])
        w1, w3 = store.payee("W1"), store.payee("W3")
        spaced = " ".join(w1["bank_account"][i:i + 4] for i in range(0, len(w1["bank_account"]), 4))
        store.execute("UPDATE workers SET bank_account = ?, id_number = ? WHERE worker = 'W6'",
                      (spaced, f" {w3['id_number'][:9]} {w3['id_number'][9:].lower()}"))
    month.cli("wages", "deduct", *PERIOD, "--worker", "W6", "--item", "借支", "--amount-yuan", "100",
              "--reason", "advance", "--by", "ops-li")
    with month.setup.store() as store:
        check_lines(store, "S1", "2026-10", ("W1", "W2", "W3", "W6"), shanghai_noon("2026-11-20"))
        lines = {line["worker"]: line for line in compute(store, "S1", "2026-10", draft=True)["lines"]}
        assert lines["W1"]["detail"]["shared_account_with"] == ["W6"]
        assert lines["W3"]["detail"]["duplicate_id_with"] == ["W6"]
        assert {"shared_account", "duplicate_id"} <= set(lines["W6"]["flags"])
        assert "shared_account" not in lines["W2"]["flags"]


def test_a_workers_page_and_slip_read_nothing_of_another_workers(month, tmp_path, monkeypatch):
    """The other workers' kept days and wage lines made unreadable, and every read of the site's whole
    punches refused: W1's page, slip and evidence come out exactly as before."""
    approve(month)
    batch(month, tmp_path / "b1.xml")
    now = shanghai_noon("2026-11-20")
    with month.setup.store() as store:
        # First: it enters the gate keys in the register (with the bank's key, which the slip then lists).
        evidence = evidence_body(store, "W1", *(datetime.fromisoformat(d).date() for d in OCTOBER), now=now,
                                 key=BANK_KEY)
        page = record(store, "W1", "2026-10", now=now)
        paper = slip(store, "W1", "2026-10", site="S1", now=now)
        assert [d["date"] for d in page["days"]] == ["2026-10-14", "2026-10-15", "2026-10-16", "2026-10-17"]
        assert page["wages"] and paper["line"]["net_fen"] == 144000 and len(evidence["days"]) == 4
        store.execute("UPDATE days SET record = 'unreadable', after = 'unreadable' WHERE worker <> 'W1'")
        store.execute("UPDATE wage_lines SET detail = 'unreadable' WHERE worker <> 'W1'")
        with pytest.raises(ValueError):  # the corruption is real: the site's own reads fail on it
            attendance(store, "S1", *(datetime.fromisoformat(d).date() for d in OCTOBER), now=now)
        with pytest.raises(ValueError):
            store.wage_table("S1", "2026-10")

        def whole_site(*args, **kwargs):
            raise AssertionError(f"the whole site's punches were read: {args} {kwargs}")

        monkeypatch.setattr(store, "punches", whole_site)
        assert record(store, "W1", "2026-10", now=now) == page
        assert slip(store, "W1", "2026-10", site="S1", now=now) == paper
        assert evidence_body(store, "W1", *(datetime.fromisoformat(d).date() for d in OCTOBER), now=now) == evidence


# ------------------------------------------------------------------------------ random histories


def make_final(store: Store) -> None:
    """Every gate heartbeats long after the period, holding nothing: every day of it is final."""
    at = format_time(BASE + timedelta(days=45))
    with store.transaction():
        for site, gates in GATES.items():
            for gate in gates:
                store.save_status(site, gate, {"v": 1, "state": "online", **heartbeat(
                    site=site, gate=gate, time=at, pending=0, oldest_pending_at=None)}, at)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), final=st.booleans(), approved=st.booleans(),
       now=st.sampled_from([BASE + timedelta(days=3, hours=5), BASE + timedelta(days=60)]))
def test_per_worker_reads_are_the_whole_sites_reads_for_that_worker(history, final, approved, now):
    bank = Bank(None, setup=lambda folder, url: CollectorSetup.create(folder, broker=SimpleNamespace(port=1883),
                                                                      db=url))
    try:
        bank.write(history)
        store = bank.store
        if final:
            make_final(store)
        site_names = {s["site"]: s["name"] for s in store.sites()}
        whole = {site: attendance(store, site, FIRST_DAY, LAST_DAY, now=now) for site in SITES}
        for worker in WORKERS:
            for month_text in ("2026-10", "2026-11"):
                shown = record(store, worker, month_text, now=now)["days"]
                rows = [r for site_rows in whole.values() for r in site_rows if r["date"][:7] == month_text]
                assert shown == page_days_of(rows, worker, site_names)
        for site in SITES:
            for period in ("2026-10", "2026-11"):
                check_lines(store, site, period, WORKERS, now)
                ready = compute(store, site, period, now=now, draft=True)["final"]
                table = run(store, site, period, by="ops", draft=not ready, now=now)
                if approved and table["status"] == "computed":
                    store.approve_wage_table(table["id"], by="checker", overrides={
                        line["worker"]: "a test" for line in table["lines"] if line["status"] != "payable"})
                records = attendance(store, site, *period_bounds(period), now=now)
                for line in table["lines"]:
                    paper = slip(store, line["worker"], period, site=site, now=now)
                    assert [(d["date"], d["worked_minutes"], d["status"]) for d in paper["days"]] == \
                        [(r["date"], r["worked_minutes"], r["status"]) for r in records if r["worker"] == line["worker"]]
        for later in (now, now + timedelta(days=60)):
            check_worker_wages(store, WORKERS, SITES, later)
    finally:
        bank.close()
