"""What the bank-wide and foreman reads cost on a bank of a realistic size, measured by hand.

    python tests/bench/bank_reads.py build LOCATION [--workers 3000] [--sites 3] [--days 60]
    python tests/bench/bank_reads.py copy SQLITE_PATH POSTGRESQL_URL   # the same bank, kept days and all
    python tests/bench/bank_reads.py measure LOCATION [--repeat 5]

``build`` writes a bank into LOCATION (a SQLite path or a postgresql:// URL of an empty database): one
big site (``--workers`` workers, two gates, an IN and an OUT a working day for ``--days`` days, about
half of them inside now, a few strangers' cards), ``--sites`` smaller sites of a tenth of that, pay days
and pay terms (so that the months past their pay day have arrears to work out), and the kept days. The
punches go in as rows (their signatures are not what these reads look at), which keeps a build of a few
hundred thousand punches to minutes. ``measure`` times, on a read-only store as `collector serve` has:
/metrics, the big site's headcount and trouble, the live stream's snapshot, arrears for the whole bank
(what `collector arrears` computes, and what the daemon's figures refresh costs), and the charts of the
big site's day (the foreman's page) and month (the bank's).

It asserts nothing: the tests do that.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.store import Store  # noqa: E402
from gate_agent.protocol import format_time  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Punches:
    """Rows of one site's gate punches, numbered per gate in the order made."""

    def __init__(self, site: str, seqs: dict[str, int], rows: list[tuple]):
        self.site, self.seqs, self.rows = site, seqs, rows

    def __call__(self, gate: str, card: str, at: datetime, direction: str) -> None:
        self.seqs[gate] += 1
        self.rows.append((self.site, gate, self.seqs[gate], format_time(at), card, direction,
                          format_time(at + timedelta(seconds=2)), "mqtt", ""))


def build(location: str, *, workers: int, sites: int, days: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = _now()
    today = now.astimezone(SHANGHAI).date()
    first_day = today - timedelta(days=days)
    with Store(location) as store:
        plan = [("BIG", workers)] + [(f"S{n}", max(1, workers // 10)) for n in range(1, sites + 1)]
        for site, count in plan:
            store.add_site(site, timezone="Asia/Shanghai")
            for gate in ("north", "south"):
                store.db.execute("INSERT INTO gates (site, gate, active, added_at) VALUES (?, ?, 1, ?)",
                                 (site, f"{site}-{gate}", format_time(now)))
            store.set_site_pay(site, pay_day=15, effective_from=(first_day - timedelta(days=400)).isoformat(),
                               by="bench", payer_account="110000000001", payer_name="总包", payer_bank="建行")
            with store.transaction():
                for n in range(count):
                    worker = f"{site}-W{n:05d}"
                    store.db.execute("INSERT INTO workers (worker, name, employer, created_at) VALUES (?, ?, ?, ?)",
                                     (worker, f"工人{n}", f"劳务{n % 7}", format_time(now)))
                    store.db.execute("INSERT INTO cards (uid, worker, valid_from, valid_to, added_at) "
                                     "VALUES (?, ?, NULL, NULL, ?)", (f"{site}C{n:08X}", worker, format_time(now)))
                    store.db.execute("INSERT INTO assignments (worker, site, valid_from, valid_to, added_at, added_by) "
                                     "VALUES (?, ?, NULL, NULL, ?, 'bench')", (worker, site, format_time(now)))
                    store.db.execute("INSERT INTO wage_terms (worker, basis, rate_fen, effective_from, added_at, added_by) "
                                     "VALUES (?, 'day', 35000, ?, ?, 'bench')",
                                     (worker, (first_day - timedelta(days=400)).isoformat(), format_time(now)))
            seqs = {f"{site}-north": 0, f"{site}-south": 0}
            rows = []
            punch = _Punches(site, seqs, rows)

            for offset in range(days + 1):
                day = first_day + timedelta(days=offset)
                start = datetime(day.year, day.month, day.day, 7, tzinfo=SHANGHAI).astimezone(UTC)
                for n in range(count):
                    card = f"{site}C{n:08X}"
                    if rng.random() < 0.1:
                        continue  # a day off
                    at_in = start + timedelta(minutes=rng.randint(0, 90))
                    if day == today:
                        if at_in < now and n % 2 == 0:
                            punch(f"{site}-north", card, at_in, "in")  # inside now
                        continue
                    punch(f"{site}-north", card, at_in, "in")
                    if rng.random() < 0.02:
                        continue  # a forgotten OUT
                    punch(f"{site}-south", card, at_in + timedelta(hours=9, minutes=rng.randint(0, 120)), "out")
                for n in range(3):
                    if day >= today - timedelta(days=1):
                        punch(f"{site}-north", f"STRANGER{n}", start + timedelta(hours=n), "in")
            rows.sort(key=lambda r: (r[1], r[2]))
            with store.transaction():
                store.db.executemany("INSERT INTO punches (site, gate, seq, time, card, direction, received_at, "
                                     "source, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                for gate, seq in seqs.items():
                    store.db.execute("UPDATE gate_state SET contiguous_seq = ?, max_seq = ?, last_punch_at = ? "
                                     "WHERE site = ? AND gate = ?", (seq, seq, format_time(now), site, gate))
                    store.db.execute("INSERT INTO gate_state (site, gate, contiguous_seq, max_seq, last_punch_at) "
                                     "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM gate_state "
                                     "WHERE site = ? AND gate = ?)", (site, gate, seq, seq, format_time(now), site, gate))
            print(f"{site}: {count} workers, {len(rows)} punches", flush=True)
        from collector.attendance import days as kept

        store.mark_site_days()
        started = time.perf_counter()
        done = kept.refresh(store)
        print(f"kept days built: {done.units} (site, worker) in {time.perf_counter() - started:.1f} s", flush=True)


def copy(source: str, target: str) -> None:
    """Every table of a built SQLite bank into an empty PostgreSQL database as it is, kept days included
    (building them again there would take as long as the first time). Unlike `collector db copy`, which
    verifies every gate punch's signature (these have none), nothing is verified."""
    from collector.store import copy as dbcopy
    from collector.store import schema
    from collector.store.connection import connect

    src, tgt = connect(source, readonly=True), connect(target)
    try:
        with tgt.transaction():
            schema.upgrade(tgt)
            for table in dbcopy.TABLES:
                dbcopy._copy_table(src, tgt, table, dbcopy.BATCH, lambda n: None)
            dbcopy._set_sequences(tgt)
        tgt.execute("ANALYZE")
    finally:
        src.close()
        tgt.close()


def timed(label: str, repeat: int, function) -> dict:
    """Wall time, and this process's CPU time (SQLite works in the process: on a busy machine its CPU
    time says what the read costs where wall time says how long others made it wait)."""
    wall, cpu = [], []
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    result = {"what": label, "median_ms": round(statistics.median(wall), 1), "min_ms": round(min(wall), 1),
              "cpu_median_ms": round(statistics.median(cpu), 1)}
    print(f"{label:32} wall median {result['median_ms']:9.1f} ms  min {result['min_ms']:9.1f} ms   "
          f"cpu median {result['cpu_median_ms']:9.1f} ms", flush=True)
    return result


def measure(location: str, *, repeat: int) -> list[dict]:
    from collector.attendance.headcount import headcount
    from collector.attendance.trouble import report as trouble_report
    from collector.charts.day import day_chart, day_figures
    from collector.charts.month import month_chart, month_figures
    from collector.charts.words import Words
    from collector.wages.arrears import arrears
    from collector.web import app as web_app
    from collector.web.metrics import render_metrics

    results = []
    with Store(location, readonly=True) as store:
        count = store.punch_count()
        print(f"{count} punches, {len(store.sites())} sites", flush=True)
        inside = headcount(store, "BIG")
        print(f"BIG: {inside['on_site']} inside, {inside['unknown_cards']} unknown cards", flush=True)
        results.append(timed("/metrics (render_metrics)", repeat, lambda: render_metrics(store)))
        results.append(timed("headcount(BIG)", repeat, lambda: headcount(store, "BIG")))
        results.append(timed("trouble(BIG)", repeat, lambda: trouble_report(store, "BIG")))
        results.append(timed("live snapshot(BIG)", repeat, lambda: web_app._snapshot(store, "BIG")))
        results.append(timed("arrears(whole bank)", max(1, repeat // 5), lambda: arrears(store)))
        # The foreman's chart of today (the kept days of today and last night, then drawn), and the bank's
        # chart of the big site's month (the 考勤表's count of every worker).
        today = datetime.now(UTC).astimezone(SHANGHAI).date()
        results.append(timed("today's chart(BIG)", repeat, lambda: day_chart(day_figures(store, "BIG", today),
                                                                              Words())))
        results.append(timed("month's days chart(BIG)", max(1, repeat // 5), lambda: month_chart(
            month_figures(store, "BIG", f"{today:%Y-%m}"), Words())))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "copy", "measure"])
    parser.add_argument("location")
    parser.add_argument("target", nargs="?", help="copy: the PostgreSQL URL")
    parser.add_argument("--workers", type=int, default=3000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    if args.action == "build":
        build(args.location, workers=args.workers, sites=args.sites, days=args.days)
        return
    if args.action == "copy":
        copy(args.location, args.target)
        return
    results = measure(args.location, repeat=args.repeat)
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
