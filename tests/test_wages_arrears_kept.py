"""The bank's arrears as `collector arrears` and /api/arrears serve them, on both engines: what the daemon
keeps of each site (the rows still owed, the employers' and the site's totals), with its age, never the
whole bank computed per request; `--fresh` and a date asked for compute; a site not computed yet is never
left out. A site's wage table reads its own workers' payees, and still finds a payee shared with a worker
of another site, in whatever form an older version kept the account.

The final October of tests/test_wages.py: pay day 2026-11-15; W4's only day lacks an OUT.
"""

from __future__ import annotations

import json
from datetime import timedelta

from collector.config import load_config
from collector.wages import figures
from collector.web.app import WebApp
from gate_agent.protocol import format_time, parse_time
from tests import test_wages
from tests.test_read_properties import TOKEN, asgi_get
from tests.test_wages_payments import NETS, PERIOD, approve

month = test_wages.month


def by_worker(report: dict) -> dict:
    return {row["worker"]: row for row in report["workers"]}


def keep(month) -> str:
    """What the daemon's figures thread does once; returns when it computed them."""
    with month.setup.store() as store:
        figures.refresh(store)
        return {f.site: f for f in store.figures(["arrears"])}["S1"].computed_at


def test_the_report_reads_what_the_daemon_keeps_with_its_age(month):
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")  # never approved: every verified worker is owed
    computed = month.json("arrears")  # nothing kept yet: the site is computed for the asker
    (site,) = computed["sites"]
    assert (computed["kept"], site["kept"], site["age_seconds"], site["overdue_workers"]) == (False, False, 0, 5)
    assert sorted(by_worker(computed)) == ["W1", "W2", "W3", "W4", "W5"]

    at = keep(month)
    kept = month.json("arrears")
    (site,) = kept["sites"]
    assert kept["kept"] and site["kept"] and site["computed_at"] == at and site["error"] is None
    assert 0 <= site["age_seconds"] == kept["oldest_age_seconds"] < 600
    fresh = month.json("arrears", "--fresh")
    assert not fresh["kept"] and fresh["sites"][0]["age_seconds"] == 0
    assert kept["workers"] == [r for r in fresh["workers"] if r["status"] not in ("paid", "not_due")]
    assert kept["employers"] == fresh["employers"]
    assert {k: v for k, v in site.items() if k not in ("kept", "computed_at", "age_seconds")} == \
        {k: v for k, v in fresh["sites"][0].items() if k not in ("kept", "computed_at", "age_seconds")}
    text = month.cli("arrears").stdout
    assert f"5 worker(s) overdue (kept: computed {at}" in text and "ART.27 S1 2026-10 W1" in text


def test_a_kept_figure_shows_its_age_until_the_daemon_computes_it_again(month, tmp_path):
    keep(month)
    before = month.json("arrears")
    assert before["sites"][0]["overdue_workers"] == 5 and before["sites"][0]["overdue_fen"] == 0
    approve(month)  # October approved: its amounts are due, no longer estimated
    stale = month.json("arrears")
    assert stale["workers"] == before["workers"], "the kept figure, with its age: not computed per report"
    assert stale["sites"][0]["age_seconds"] >= before["sites"][0]["age_seconds"]
    fresh = month.json("arrears", "--fresh")
    assert {r["worker"]: r["due_fen"] for r in fresh["workers"]} == NETS
    as_of = month.json("arrears", "--as-of", "2026-11-20")
    assert not as_of["kept"] and {r["worker"]: r["overdue_fen"] for r in as_of["workers"]} == NETS
    keep(month)
    again = month.json("arrears")
    assert again["kept"] and {r["worker"]: r["overdue_fen"] for r in again["workers"]} == NETS


def test_the_api_serves_the_kept_arrears_and_never_leaves_a_site_out(month):
    month.setup.write_config(**{"web.tokens": {TOKEN: "*"}})
    with month.setup.store() as store:
        store.add_site("S2", timezone="Asia/Shanghai")
    app = WebApp(load_config(month.setup.config_path)).app

    def get(path: str) -> dict:
        status, body = asgi_get(app, path)
        assert status == 200, body[:300]
        return json.loads(body)

    missing = get("/api/arrears")
    assert not missing["kept"] and missing["workers"] == []
    assert [(s["site"], s["kept"], s["age_seconds"]) for s in missing["sites"]] == [("S1", False, None),
                                                                                    ("S2", False, None)]
    assert all("not computed yet" in s["error"] for s in missing["sites"]), "shown as missing, not as nothing owed"
    at = keep(month)
    kept = get("/api/arrears")
    by_site = {s["site"]: s for s in kept["sites"]}
    assert by_site["S1"]["computed_at"] == at and by_site["S1"]["overdue_workers"] == 5
    assert by_site["S2"]["error"] is None and by_site["S2"]["overdue_workers"] == 0
    assert sorted(by_worker(kept)) == ["W1", "W2", "W3", "W4", "W5"] and kept["oldest_age_seconds"] >= 0
    asked = get("/api/arrears?as_of=2026-11-14")  # a date asked for is computed: nothing due yet
    assert not asked["kept"] and asked["workers"] == [] and asked["sites"][0]["age_seconds"] == 0


def test_a_failed_site_is_kept_failed_and_shown_with_its_error(month):
    with month.setup.store() as store, store.transaction():
        store.add_site("S2", timezone="Asia/Shanghai")
        store.execute("UPDATE sites SET timezone = 'Nowhere/Atlantis' WHERE site = 'S2'")
    keep(month)
    report = month.json("arrears")
    by_site = {s["site"]: s for s in report["sites"]}
    assert by_site["S1"]["error"] is None and by_site["S1"]["overdue_workers"] == 5
    assert by_site["S2"]["kept"] and "Nowhere/Atlantis" in by_site["S2"]["error"]
    assert {r["site"] for r in report["workers"]} == {"S1"}


def test_the_age_is_counted_from_when_the_daemon_computed_it(month):
    at = keep(month)
    with month.setup.store() as store:
        later = figures.kept_arrears(store, now=parse_time(at) + timedelta(minutes=7))
    assert later["sites"][0]["age_seconds"] == later["oldest_age_seconds"] == 420


def test_a_payee_shared_with_another_sites_worker_is_found_in_any_form(month):
    """An account (or ID number) kept with spaces by an older version, at another site, is the same payee."""
    with month.setup.store() as store:
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_worker("X1", name="工人X1", employer="别的劳务", sites=["S2"])
        store.add_worker("X2", name="工人X2", employer="别的劳务", sites=["S2"])
        w1, w3 = store.payee("W1"), store.payee("W3")
        account = w1["bank_account"]
        with store.transaction():  # as an older version wrote them, before payees were checked
            store.execute("UPDATE workers SET bank_account = ? WHERE worker = 'X1'",
                          (f"{account[:4]} {account[4:8]} {account[8:]}",))
            store.execute("UPDATE workers SET id_number = ? WHERE worker = 'X2'", (w3["id_number"].lower() + " ",))
        sharing = store.payees_sharing()
        assert {"W1", "X1", "W3", "X2"} <= set(sharing) and "W2" not in sharing
    table = month.json("wages", "run", *PERIOD, "--by", "ops-wang")
    lines = {line["worker"]: line for line in table["lines"]}
    assert "shared_account" in lines["W1"]["flags"] and lines["W1"]["shared_account_with"] == ["X1"]
    assert "duplicate_id" in lines["W3"]["flags"] and lines["W3"]["duplicate_id_with"] == ["X2"]
    assert not {"shared_account", "duplicate_id"} & {f for w in ("W2", "W4", "W5") for f in lines[w]["flags"]}


def test_a_figure_the_daemon_left_long_ago_says_so(month):
    at = keep(month)
    long_ago = format_time(parse_time(at) - timedelta(hours=1))
    with month.setup.store() as store, store.transaction():  # as a daemon stopped an hour ago left them
        store.execute("UPDATE bank_figures SET computed_at = ? WHERE figure IN ('arrears', 'arrears_rows')",
                      (long_ago,))
    report = month.json("arrears")
    assert report["sites"][0]["computed_at"] == long_ago and report["oldest_age_seconds"] >= 3600
    text = month.cli("arrears").stdout
    assert "5 worker(s) overdue" in text and "is the collector daemon running?" in text
