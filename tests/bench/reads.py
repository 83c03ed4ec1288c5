"""The read side of the benchmark: a bank after a month of work, its kept days, and what each read costs.

    python tests/bench/run.py --reads [--quick] [--backend sqlite|postgresql|both] [--sites N] [--workers N]
                              [--days N] [--json FILE] [--keep]

It builds a bank on each engine as it stands after a month: ``sites`` sites with four gates each (keys
registered), ``workers`` workers per site with a card, an assignment, a payee and pay terms, each site's
pay day and minimum wage, and the gates' punches of ``days`` working days of the month measured (two a
worker-day; some lunch breaks, repeated INs, missing INs and OUTs, manual corrections and voids) plus the
last two working days of the month before. Punches are signed and chained as a gate makes them (each
gate's own key, ``gate_agent.protocol.sign_punch``, seq by seq) and stored with the store's own
``insert_punch``, which leaves the day marks, one transaction a site: MQTT is left out (the ingest
benchmark measures it; two million punches through the broker would take hours here). Then it builds the
kept days (``collector.attendance.days.refresh`` until no mark is left), checks one site's against the
punches (``days.differences``, what `collector days rebuild` reports), approves and pays the month before
at every site (partly: 70 % of the credits settled paid, the rest at the bank), approves and pays the
month measured at every site but the last, whose month stays unapproved past its pay day (the Art. 27
case), and puts ``inside`` workers (3,000 at full size) inside the first site now.

Then it measures each read (p50 and p99 over several runs, after one unmeasured run), and the peak
resident memory (VmHWM) of a fresh process doing the read once, against the targets (docs/performance.md):

- worker_month        a worker's month as their page shows it (collector.workers.record.record)
- worker_month_http   the same through the web app's /api/worker/record handler (session cookie, access log)
- metrics             /metrics as rendered (collector.web.metrics.render_metrics)
- headcount_trouble   the site page's headcount and trouble with ``inside`` workers inside
- site_month          a site's month of attendance as its table and CSV list it (collector.attendance.reports
                      .attendance, summary=True: each day without its shifts, anomalies and voided punches)
- site_month_whole    the same month with every day whole (`collector attendance --json`; no target of its own)
- wages_run           `collector wages run` of the unapproved site (collector.wages.table.run; rolled back)
- arrears             arrears of the whole bank as `collector arrears` and /api/arrears give it: what the
                      daemon keeps of each site (collector.wages.figures.arrears_report; the bank's figures
                      are computed once after the build, as the daemon's figures thread does, and timed)
- arrears_fresh       the same computed now, every site (`collector arrears --fresh`: collector.wages.arrears)
- wage_slip           one worker's wage slip (collector.wages.slip.slip and its page)
- ingest              ingest per punch with the day marks against the same without (Ingestor bursts; the
                      bare insert_punch is shown beside it, and the maintainer's upkeep per punch)

A read that misses its target gets a cProfile top 10 (where the time goes); a read that fails is shown
with its error and the others go on. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from multiprocessing import get_context
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collector.store import Store, Tail, partitions  # noqa: E402
from gate_agent.protocol import GENESIS, PUNCH_VERSION, Punch, format_time, sign_punch  # noqa: E402
from tests.bench.fakegates import gate_key, gate_names, public_keys  # noqa: E402

#: (sites, workers per site, working days of the month measured)
FULL = (20, 2000, 22)
QUICK = (2, 200, 5)
TZ = "Asia/Shanghai"
GATES_PER_SITE = 4  # two for IN, two for OUT
EARLIER_DAYS = 2  # working days of the month before (enough for its approved, partly paid table)
PAY_DAY = 2  # of the month after; the month measured is chosen so that it has passed
SEED = "reads"
#: What a worker-day may hold besides an IN and an OUT (shares of worker-days).
MISSING_IN, MISSING_OUT, LUNCH, DOUBLE_IN = 0.002, 0.005, 0.05, 0.01
MANUAL_SHARE, VOID_SHARE = 0.5, 0.3  # of missing OUTs corrected by hand; of repeated INs voided
PAID_SHARE = 0.7  # of the month before's credits settled paid; the rest stay at the bank
#: Rounds of marks per refresh while building the kept days: `collector days refresh` takes every mark at
#: once, which for two million per-punch marks holds them all in memory.
MARKS_PER_ROUND = 100_000
#: read -> (target ms for p99, target MB for the fresh process's peak, or None)
TARGETS = {
    "worker_month": (50, None),
    "worker_month_http": (50, None),
    "metrics": (200, None),
    "headcount_trouble": (100, None),
    "site_month": (1000, 150),
    "site_month_whole": (None, None),
    "wages_run": (2000, None),
    "arrears": (1000, None),
    "arrears_fresh": (1000, None),
    "wage_slip": (100, None),
}
INGEST_MAX_RATIO = 1.10
#: Bytes a stored punch may cost, table and indexes (issue: storage per punch).
STORAGE_MAX_BYTES = 400
#: Measured runs per read (fewer for the slow ones), and the time after which a read stops early.
RUNS = {"worker_month": 30, "worker_month_http": 20, "headcount_trouble": 20, "wage_slip": 20}
DEFAULT_RUNS, BUDGET_SECONDS, MIN_RUNS = 7, 60.0, 3
PUNCH_FIELDS = tuple(f.name for f in fields(Punch))


def say(text: str = "") -> None:
    print(text, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-int(round(fraction * len(ordered) * 1000)) // 1000))
    return ordered[min(len(ordered), rank) - 1]


def peak_kb() -> int:
    """This process's peak resident memory (VmHWM) so far, in kB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------- the bank


@dataclass(frozen=True)
class Size:
    sites: int
    workers: int
    days: int

    @property
    def inside(self) -> int:
        """Workers inside the first site now: 3,000 for 2,000 workers a site (its own and 1,000 more)."""
        return self.workers * 3 // 2


def site_name(index: int) -> str:
    return f"S{index:02d}"


def worker_id(site: str, number: int) -> str:
    return f"{site}-W{number:05d}"


def card_of(site_index: int, number: int) -> str:
    return f"04{site_index:04X}{number:06X}"


def id_number(serial: int) -> str:
    """A resident ID number with a valid check digit, one per serial (birth date and sequence from it)."""
    born = date(1965, 1, 1) + timedelta(days=serial // 1000)
    body = f"110101{born:%Y%m%d}{serial % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def month_of(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def working_days(first: date, last: date) -> list[date]:
    """Every date of the month but Sundays."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)
            if (first + timedelta(days=n)).weekday() != 6]


@dataclass
class Calendar:
    """The month measured (``period``) and the month before it (``earlier``), placed so that the month
    measured's pay day (PAY_DAY of the month after) is behind the site's local today."""

    now: datetime
    period: str
    first: date
    last: date
    earlier: str
    earlier_first: date
    earlier_last: date
    days: list[date]
    earlier_days: list[date]

    @classmethod
    def around(cls, now: datetime, days: int) -> Calendar:
        today = now.astimezone(ZoneInfo(TZ)).date()
        previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        first = previous if today.day > PAY_DAY else (previous - timedelta(days=1)).replace(day=1)
        first, last = month_of(first)
        earlier_first, earlier_last = month_of(first - timedelta(days=1))
        available = working_days(first, last)
        if days > len(available):
            raise SystemExit(f"bench: --days {days}: {first:%Y-%m} has {len(available)} days that are not Sundays")
        return cls(now, f"{first:%Y-%m}", first, last, f"{earlier_first:%Y-%m}", earlier_first, earlier_last,
                   available[:days], working_days(earlier_first, earlier_last)[-EARLIER_DAYS:])


@dataclass
class Bank:
    """What the reads need to know of the bank built."""

    location: str | Path
    directory: Path
    size: Size
    calendar: Calendar
    sites: list[str]
    punches: int = 0
    manual: int = 0
    voids: int = 0
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sample_workers: list[str] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # worker -> session cookie value
    slip: dict | None = None  # {"worker", "site", "period"}
    config: Path | None = None

    @property
    def head(self) -> str:
        """The site with ``inside`` workers inside now."""
        return self.sites[0]

    @property
    def late(self) -> str:
        """The site whose month measured is unapproved past its pay day."""
        return self.sites[-1]

    def params(self) -> dict:
        """What a read needs, as JSON (a fresh process is given the same)."""
        return {"location": str(self.location), "head": self.head, "late": self.late, "period": self.calendar.period,
                "first": self.calendar.first.isoformat(), "last": self.calendar.last.isoformat(),
                "workers": self.sample_workers, "sessions": self.sessions, "slip": self.slip,
                "config": str(self.config) if self.config else None}


def site_punches(task: dict) -> dict:
    """One site's gate punches of the days given, signed and chained gate by gate (run in a pool).

    Returns rows (the punch's fields, received_at) in each gate's seq order, the repeated
    INs to void (gate, seq) and the manual OUTs that correct some missing ones."""
    site, index, workers = task["site"], task["index"], task["workers"]
    tz = ZoneInfo(TZ)
    rng = random.Random(f"{SEED}/{site}")
    gates = gate_names(site, GATES_PER_SITE)
    events: list[tuple[datetime, str, str, str, bool]] = []  # time, gate, card, direction, to void
    manual: list[tuple[str, str, str]] = []  # worker, time, direction

    def at(day: date, hour: int, minute: int, spread_seconds: int) -> datetime:
        start = datetime.combine(day, clock_time(hour, minute), tz)
        return start + timedelta(seconds=rng.randrange(spread_seconds), milliseconds=rng.randrange(1000))

    for number in range(workers):
        worker, card = worker_id(site, number), card_of(index, number)
        gate_in, gate_out = gates[number % 2], gates[2 + number % 2]
        for day in (date.fromisoformat(d) for d in task["days"]):
            came, left = at(day, 7, 0, 75 * 60), at(day, 17, 0, 80 * 60)
            draw = rng.random()
            has_in, has_out = draw >= MISSING_IN, not MISSING_IN <= draw < MISSING_IN + MISSING_OUT
            if not has_out and rng.random() < MANUAL_SHARE:
                manual.append((worker, format_time(datetime.combine(day, clock_time(17, 30), tz)), "out"))
            if has_in:
                events.append((came, gate_in, card, "in", False))
            if has_out:
                events.append((left, gate_out, card, "out", False))
            if has_in and has_out and rng.random() < LUNCH:
                events.append((at(day, 12, 0, 600), gate_out, card, "out", False))
                events.append((at(day, 12, 55, 600), gate_in, card, "in", False))
            if has_in and rng.random() < DOUBLE_IN:
                again = came + timedelta(seconds=rng.randrange(30, 180))
                events.append((again, gate_in, card, "in", rng.random() < VOID_SHARE))
    rows, voids = [], []
    for gate in gates:
        key = gate_key(SEED, site, gate)
        prev, seq, heads = GENESIS, 0, {}
        for moment, _, card, direction, void in sorted(e for e in events if e[1] == gate):
            seq += 1
            punch = signed(key, site, gate, seq, prev, moment, card, direction, heads.get(card, GENESIS))
            prev = heads[card] = punch.digest()
            rows.append((tuple(getattr(punch, name) for name in PUNCH_FIELDS),
                         format_time(moment + timedelta(seconds=2))))
            if void:
                voids.append((gate, seq))
    return {"site": site, "rows": rows, "voids": voids, "manual": manual}


def signed(key, site: str, gate: str, seq: int, prev: str, moment: datetime, card: str, direction: str,
           cprev: str) -> Punch:
    """A punch as a gate agent signs it (version 3: ``cprev`` links the card's previous punch at the gate; its
    boot's monotonic clock counted from 2020)."""
    mono = int((moment - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    return sign_punch(Punch(
        v=PUNCH_VERSION, site=site, gate=gate, seq=seq, time=format_time(moment), mono_ms=mono, boot="bench-boot",
        synced=True, card=card, tech="iso14443a", reader="pcsc:bench", dir=direction, roster="known", prev=prev,
        key="", sig="", cprev=cprev,
    ), key)


def store_site(store: Store, result: dict) -> int:
    """A site's punches in one transaction, as ingest stores them (insert_punch leaves the day marks),
    each gate's progress moved on; then the manual OUTs and the voids, each as the CLI makes them."""
    site = result["site"]
    last: dict[str, str] = {}
    with store.transaction():
        for values, received in result["rows"]:
            punch = Punch(*values)
            store.insert_punch(punch, received_at=received, source="mqtt", flags="")
            last[punch.gate] = received
        for gate, received in last.items():
            store.advance_contiguous(site, gate, received)
        for worker, moment, direction in result["manual"]:
            store.add_manual_punch(site=site, worker=worker, time=moment, direction=direction,
                                   reason="the gate did not read the card; the foreman saw the worker leave",
                                   by="bench-foreman")
        for gate, seq in result["voids"]:
            punch_id = store.db.value("SELECT id FROM punches WHERE site = ? AND gate = ? AND seq = ?", (site, gate, seq))
            store.void_punch(punch_id, reason="a second tap of the same card", by="bench-foreman")
    return len(result["rows"])


def register(store: Store, size: Size, sites: list[str], calendar: Calendar) -> None:
    """Sites, gates and keys, pay days and minimum wages; workers with a card, an assignment, a payee and
    pay terms (the first site has ``inside`` workers, the others ``workers``)."""
    terms_from = calendar.earlier_first.isoformat()
    for index, site in enumerate(sites):
        with store.transaction():
            store.add_site(site, timezone=TZ, name=f"工地{index:02d}")
            for gate, key in public_keys(SEED, site, GATES_PER_SITE).items():
                store.add_gate(site, gate, key)
            store.set_site_pay(site, pay_day=PAY_DAY, effective_from="2020-01-01", by="bench-ops",
                               payer_account=f"1100{index:08d}", payer_name=f"总承包{index:02d}",
                               payer_bank="中国建设银行")
            store.set_minimum_wage(site, hourly_fen=2350, monthly_fen=269000, effective_from="2020-01-01",
                                   by="bench-ops")
            rng = random.Random(f"{SEED}/terms/{site}")
            for number in range(max(size.workers, size.inside if index == 0 else 0)):
                worker, serial = worker_id(site, number), index * 100_000 + number
                store.add_worker(worker, name=f"工人{index:02d}{number:05d}", employer=f"劳务{index:02d}-{number % 4}",
                                 cards=[card_of(index, number)], sites=[site], by="bench-ops")
                store.set_payee(worker, id_number=id_number(serial), phone=f"13{serial:09d}",
                                bank_account=f"62220{serial:014d}", bank_name="中国工商银行")
                if rng.random() < 0.7:
                    store.set_wage_terms(worker, basis="day", rate_fen=30000 + 500 * rng.randrange(21),
                                         effective_from=terms_from, by="bench-ops")
                else:
                    store.set_wage_terms(worker, basis="hour", rate_fen=4000 + 50 * rng.randrange(21),
                                         effective_from=terms_from, by="bench-ops")


def heartbeats(store: Store, sites: list[str], now: datetime) -> None:
    """Every gate online now, holding nothing unacknowledged: every day before now is final."""
    from tests.helpers import heartbeat

    with store.transaction():
        for site in sites:
            for gate in gate_names(site, GATES_PER_SITE):
                store.save_status(site, gate, {"v": 1, "state": "online", **heartbeat(
                    site=site, gate=gate, time=format_time(now), pending=0, oldest_pending_at=None,
                    heartbeat_seconds=60, last_seq=0, acked_seq=0)}, format_time(now))


def refresh_all(store: Store) -> dict:
    """Recompute every marked day, MARKS_PER_ROUND marks at a time, until none is left."""
    from collector.attendance import days

    units = marks = rounds = 0
    while True:
        done = days.refresh(store, limit=MARKS_PER_ROUND)
        units, marks, rounds = units + done.units, marks + done.dropped, rounds + 1
        if done.dropped == 0:
            break
    return {"units": units, "marks": marks, "rounds": rounds, "left": store.pending_day_marks()}


def build_bank(location: str | Path, directory: Path, size: Size, *, processes: int | None = None,
               now: datetime | None = None) -> Bank:
    """Register the bank and store its punches (steps timed in ``bank.timings``)."""
    now = now or datetime.now(UTC)
    calendar = Calendar.around(now, size.days)
    sites = [site_name(n) for n in range(size.sites)]
    bank = Bank(location, directory, size, calendar, sites)
    say(f"  month measured {calendar.period} ({len(calendar.days)} working days from {calendar.days[0]}), "
        f"the month before {calendar.earlier} ({len(calendar.earlier_days)} days), pay day {PAY_DAY} of the month after")
    started = time.perf_counter()
    with Store(location) as store:
        # A bank that has been running holds the months' partitions before their punches come (PostgreSQL;
        # the daemon makes each two months ahead). UTC months: a local month starts 8 hours into the last
        # UTC day of the month before.
        with store.transaction():
            partitions.ensure(store.db, now=now, wanted=partitions.months(
                (calendar.earlier_first - timedelta(days=1)).strftime("%Y-%m"), now.strftime("%Y-%m")))
        register(store, size, sites, calendar)
        bank.timings["register_s"] = round(time.perf_counter() - started, 2)
        registered = refresh_all(store)  # the workers' own marks, long settled in a bank that is running
        bank.timings["register_days_s"] = round(time.perf_counter() - started - bank.timings["register_s"], 2)
        say(f"  registered {size.sites} sites, {size.sites * size.workers + max(0, size.inside - size.workers):,} "
            f"workers in {bank.timings['register_s']:.1f} s (their {registered['marks']:,} marks settled in "
            f"{bank.timings['register_days_s']:.1f} s)")
        days = [d.isoformat() for d in calendar.earlier_days + calendar.days]
        tasks = [{"site": site, "index": n, "workers": size.workers, "days": days} for n, site in enumerate(sites)]
        started = time.perf_counter()
        processes = processes if processes is not None else min(len(tasks), os.cpu_count() or 1)
        for result in _generated(tasks, processes):
            bank.punches += store_site(store, result)
            bank.manual += len(result["manual"])
            bank.voids += len(result["voids"])
            elapsed = time.perf_counter() - started
            if len(sites) > 2:
                say(f"    {result['site']}: {bank.punches:,} punches so far ({bank.punches / elapsed:,.0f}/s signed "
                    "and stored)")
        bank.timings["punches_s"] = round(time.perf_counter() - started, 2)
        heartbeats(store, sites, now)
    say(f"  {bank.punches:,} gate punches signed, chained and stored in {bank.timings['punches_s']:.1f} s "
        f"({bank.punches / max(bank.timings['punches_s'], 0.01):,.0f}/s, {processes} signing process(es)); {bank.manual} manual "
        f"OUTs, {bank.voids} voids")
    return bank


def _generated(tasks: list[dict], processes: int):
    """Each site's punches in site order, signed ahead in a pool while the store takes the previous ones
    (at most ``processes`` + 1 sites in memory at once). A spawned pool: a forked child would share the
    store's connection."""
    if processes <= 1:
        for task in tasks:
            yield site_punches(task)
        return
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        pending = [pool.submit(site_punches, task) for task in tasks[:processes + 1]]
        following = processes + 1
        while pending:
            result = pending.pop(0).result()
            if following < len(tasks):
                pending.append(pool.submit(site_punches, tasks[following]))
                following += 1
            yield result


def build_days(bank: Bank) -> None:
    started = time.perf_counter()
    with Store(bank.location) as store:
        done = refresh_all(store)
    bank.timings["days_build_s"] = round(time.perf_counter() - started, 2)
    with Store(bank.location, readonly=True) as store:
        kept = store.db.value("SELECT COUNT(*) FROM days")
    bank.timings["days_kept"] = kept
    say(f"  kept days built in {bank.timings['days_build_s']:.1f} s: {done['marks']:,} marks, {done['units']:,} "
        f"worker-site records recomputed in {done['rounds']} round(s), {kept:,} days kept, {done['left']} marks left")


def check_days(bank: Bank) -> None:
    """`collector days rebuild`'s comparison on one site for the month measured: kept against computed."""
    from collector.attendance import days

    site = bank.late
    started = time.perf_counter()
    try:
        with Store(bank.location, readonly=True) as store:
            found = days.differences(store, site, bank.calendar.first, bank.calendar.last, now=datetime.now(UTC))
    except Exception as error:  # noqa: BLE001 - reported, and the reads go on
        bank.notes.append(f"days.differences failed: {type(error).__name__}: {error}")
        say(f"  days.differences on {site}: FAILED {type(error).__name__}: {error}")
        return
    bank.timings["differences_s"] = round(time.perf_counter() - started, 2)
    bank.timings["differences"] = len(found)
    say(f"  kept days of {site} {bank.calendar.period} against the punches: {len(found)} difference(s) "
        f"({bank.timings['differences_s']:.1f} s)")
    for entry in found[:5]:
        say(f"    DIFFERENT {entry['worker']} {entry['date']}: kept {entry['kept'] and entry['kept']['status']}, "
            f"from the punches {entry['from_punches'] and entry['from_punches']['status']}")


def settle_wages(bank: Bank) -> None:
    """The month before approved at every site and 70 % of its credits paid; the month measured approved
    and paid at every site but the last (its pay day passes unapproved)."""
    from collector.wages import payments, table

    today = datetime.now(UTC).astimezone(ZoneInfo(TZ)).date().isoformat()
    started = time.perf_counter()
    runs = []
    for site in bank.sites:
        for period, share in ((bank.calendar.earlier, PAID_SHARE), (bank.calendar.period, 1.0)):
            if period == bank.calendar.period and site == bank.late:
                continue
            try:
                with Store(bank.location) as store:
                    run_started = time.perf_counter()
                    table.run(store, site, period, by="bench-ops")
                    runs.append(time.perf_counter() - run_started)
                    table.approve(store, site, period, by="bench-lead",
                                  overrides={line["worker"]: "held for a decision: paid next month"
                                             for line in store.wage_table(site, period)["lines"]
                                             if line["status"] != "payable"})
                    with store.transaction():
                        batch = payments.make_batch(store, site, period, by="bench-clerk")
                    credits = batch.batch["payments"][:int(len(batch.batch["payments"]) * share)]
                    entries = [{"where": f"line {n}", "end_to_end_id": c["end_to_end_id"], "status": "paid",
                                "voucher": f"V{site}{period}{n:05d}", "date": today, "reason": None,
                                "amount_fen": c["amount_fen"]} for n, c in enumerate(credits, start=1)]
                    payments.record_return(store, entries, source=f"return {site} {period}", digest="0" * 64,
                                           kind="csv", by="bench-clerk")
            except Exception as error:  # noqa: BLE001 - the reads go on with less to read
                bank.notes.append(f"wages of {site} {period}: {type(error).__name__}: {error}")
                say(f"  wages of {site} {period} not settled: {type(error).__name__}: {error}")
    bank.timings["wages_setup_s"] = round(time.perf_counter() - started, 2)
    if runs:
        bank.timings["wages_runs_while_building_s"] = {"tables": len(runs), "median": round(statistics.median(runs), 3),
                                                       "max": round(max(runs), 3)}
    say(f"  wage tables run, approved and paid in {bank.timings['wages_setup_s']:.1f} s ({len(runs)} tables, "
        f"`wages run` median {statistics.median(runs) if runs else 0:.2f} s); {bank.calendar.period} left unapproved "
        f"at {bank.late}")


def put_inside(bank: Bank) -> None:
    """``inside`` workers of the first site tap IN within the last nine hours (each gate's chain goes on),
    and the workers whose pages and slip are read are chosen, with sessions for the web handler."""
    from collector.workers import links

    now = datetime.now(UTC)
    site, size = bank.head, bank.size
    rng = random.Random(f"{SEED}/inside")
    gates = gate_names(site, GATES_PER_SITE)
    taps = sorted((now - timedelta(seconds=rng.randrange(1800, 9 * 3600)), gates[n % 2], card_of(0, n))
                  for n in range(size.inside))
    started = time.perf_counter()
    with Store(bank.location) as store:
        tails = {gate: store.highest_punch(site, gate) for gate in gates[:2]}
        heads: dict[tuple[str, str], str] = {}  # (gate, card) -> digest of the card's latest punch there
        with store.transaction():
            for moment, gate, card in taps:
                tail = tails[gate]
                if (gate, card) not in heads:
                    held = store.card_punch_before(site, gate, card, 2**62)
                    heads[(gate, card)] = held["digest"] if held else GENESIS
                punch = signed(gate_key(SEED, site, gate), site, gate, (tail.seq if tail else 0) + 1,
                               tail.digest if tail else GENESIS, moment, card, "in", heads[(gate, card)])
                heads[(gate, card)] = punch.digest()
                received = format_time(moment + timedelta(seconds=2))
                store.insert_punch(punch, received_at=received, source="mqtt", flags="")
                tails[gate] = Tail(punch.seq, punch.digest(), punch.time)
            for gate in gates[:2]:
                store.advance_contiguous(site, gate, format_time(now))
        refresh_all(store)
        heartbeats(store, bank.sites, datetime.now(UTC))
        bank.punches += len(taps)
        pick = random.Random(f"{SEED}/sample")
        bank.sample_workers = [worker_id(s, pick.randrange(size.workers)) for s in
                               (pick.choice(bank.sites) for _ in range(20))]
        for worker in bank.sample_workers[:5]:
            secret, _ = links.issue(store, worker, by="bench-ops")
            bank.sessions[worker] = links.open_session(store, secret)[0]
        for site_of_slip, period in ((bank.sites[0], bank.calendar.period), (bank.sites[0], bank.calendar.earlier)):
            if site_of_slip == bank.late and period == bank.calendar.period:
                continue
            held = store.wage_table(site_of_slip, period)
            payable = [line["worker"] for line in (held or {}).get("lines", []) if line["status"] == "payable"]
            if payable:
                bank.slip = {"worker": payable[len(payable) // 2], "site": site_of_slip, "period": period}
                break
    bank.timings["inside_s"] = round(time.perf_counter() - started, 2)
    bank.config = bank.directory / "collector.toml"
    bank.config.write_text(f"db = {json.dumps(str(bank.location))}\n")
    say(f"  {size.inside:,} workers inside {site} now ({bank.timings['inside_s']:.1f} s)")


def keep_figures(bank: Bank) -> None:
    """The bank's figures as the daemon's figures thread keeps them (collector.wages.figures.refresh),
    computed once, each site's time shown: what that thread spends, away from any read."""
    from collector.wages import figures

    started = time.perf_counter()
    with Store(bank.location) as store:
        computed = figures.refresh(store)
        each = {(f.site, f.figure): f.seconds for f in store.figures(figures.KEPT)}
    bank.timings["figures_s"] = round(time.perf_counter() - started, 2)
    arrears = {site: seconds for (site, figure), seconds in each.items() if figure == "arrears"}
    bank.timings["figures_arrears_s"] = arrears
    say(f"  the bank's {computed} figures kept in {bank.timings['figures_s']:.1f} s (each site's arrears: "
        + ", ".join(f"{site} {seconds:.2f} s" for site, seconds in sorted(arrears.items())) + ")")


# ---------------------------------------------------------------------------------------------- the reads


def _asgi_get(app, loop, path: str, query: str, cookie: str) -> bytes:
    """GET through the ASGI app as `collector serve` runs it (no socket): the body, or an error."""
    sent: list[dict] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query.encode(),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"cookie", f"worker_link={cookie}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    loop.run_until_complete(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {body[:200]!r}")
    return body


class Reader:
    """The reads, each a call on a store it holds (the web's read-only one, or a writable one for `wages
    run`), with the parameters of the bank; ``run(name, i)`` does read ``name`` the i-th time."""

    def __init__(self, params: dict):
        self.params = params
        self.location = params["location"]
        self._stores: dict[bool, Store] = {}
        self._app = None
        self._loop = None

    def store(self, readonly: bool = True) -> Store:
        if readonly not in self._stores:
            self._stores[readonly] = Store(self.location, readonly=readonly)
        return self._stores[readonly]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        if self._loop is not None:
            self._loop.close()

    def run(self, name: str, i: int) -> str:
        """Do the read; returns a few words on what it read (to see it read what it should)."""
        return getattr(self, name)(i)

    def worker_month(self, i: int) -> str:
        from collector.workers.record import record

        worker = self.params["workers"][i % len(self.params["workers"])]
        found = record(self.store(), worker, self.params["period"], now=datetime.now(UTC))
        return f"{len(found['days'])} days"

    def worker_month_http(self, i: int) -> str:
        if self._app is None:
            from collector.config import load_config
            from collector.web.app import WebApp

            self._app = WebApp(load_config(self.params["config"])).app
            self._loop = asyncio.new_event_loop()
        sessions = sorted(self.params["sessions"].items())
        _, cookie = sessions[i % len(sessions)]
        body = _asgi_get(self._app, self._loop, "/api/worker/record", f"month={self.params['period']}", cookie)
        return f"{len(json.loads(body)['days'])} days, {len(body):,} bytes"

    def metrics(self, i: int) -> str:
        from collector.web.metrics import render_metrics

        text = render_metrics(self.store(), datetime.now(UTC))
        return f"{text.count(chr(10)):,} lines"

    def headcount_trouble(self, i: int) -> str:
        from collector.attendance.headcount import headcount
        from collector.attendance.trouble import trouble

        now = datetime.now(UTC)
        inside = headcount(self.store(), self.params["head"], now)
        facts = trouble(self.store(), self.params["head"], now)
        return f"{inside['on_site']:,} inside, {len(facts)} trouble"

    def site_month(self, i: int) -> str:
        from collector.attendance.reports import attendance

        records = attendance(self.store(), self.params["late"], date.fromisoformat(self.params["first"]),
                             date.fromisoformat(self.params["last"]), now=datetime.now(UTC), summary=True)
        return f"{len(records):,} days of {len({r['worker'] for r in records}):,} workers"

    def site_month_whole(self, i: int) -> str:
        from collector.attendance.reports import attendance

        records = attendance(self.store(), self.params["late"], date.fromisoformat(self.params["first"]),
                             date.fromisoformat(self.params["last"]), now=datetime.now(UTC))
        return f"{len(records):,} days, {sum(len(r['shifts']) for r in records):,} shifts"

    def wages_run(self, i: int) -> str:
        """`collector wages run` of the unapproved site and month: computed and saved, then rolled back, so
        that every run finds the same bank."""
        from collector.wages import table

        class Discard(Exception):
            pass

        store = self.store(readonly=False)
        found = {}
        try:
            with store.transaction():
                found = table.run(store, self.params["late"], self.params["period"], by="bench-ops")
                raise Discard
        except Discard:
            pass
        return f"{len(found['lines']):,} lines"

    def arrears(self, i: int) -> str:
        from collector.wages.figures import arrears_report

        found = arrears_report(self.store(), now=datetime.now(UTC), compute_missing=True)
        return (f"{len(found['workers']):,} rows owed, {sum(s['art27_warnings'] for s in found['sites']):,} Art. 27, "
                f"oldest site {found['oldest_age_seconds']} s old")

    def arrears_fresh(self, i: int) -> str:
        from collector.wages.arrears import arrears

        found = arrears(self.store(), now=datetime.now(UTC))
        return f"{len(found['workers']):,} rows, {sum(s['art27_warnings'] for s in found['sites']):,} Art. 27"

    def wage_slip(self, i: int) -> str:
        from collector.wages.slip import render, slip

        chosen = self.params["slip"]
        if chosen is None:
            raise RuntimeError("no approved table with a payable line to make a slip of")
        data = slip(self.store(), chosen["worker"], chosen["period"], site=chosen["site"], now=datetime.now(UTC))
        page = render(data)
        return f"{chosen['period']}, {len(data['days'])} days, {len(page):,} characters"


def measure(reader: Reader, name: str) -> dict:
    """One unmeasured run (a read of a second or more counts it: what it warms is little beside it), then up
    to RUNS of them (fewer past BUDGET_SECONDS)."""
    begun = time.perf_counter()
    said = reader.run(name, 0)
    first = time.perf_counter() - begun
    times = [first] if first >= 1.0 else []
    limit = RUNS.get(name, DEFAULT_RUNS)
    started = time.perf_counter()
    for i in range(1, limit + 1):
        begun = time.perf_counter()
        said = reader.run(name, i)
        times.append(time.perf_counter() - begun)
        if len(times) >= MIN_RUNS and time.perf_counter() - started > BUDGET_SECONDS:
            break
    return {"runs": len(times), "p50_ms": round(percentile(times, 0.5) * 1000, 1),
            "p99_ms": round(percentile(times, 0.99) * 1000, 1), "found": said}


def fresh_peak(params: dict, name: str) -> dict:
    """Peak resident memory of a fresh process doing the read once (and what it held before it)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__)), "child", json.dumps({"read": name, "params": params})],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the fresh process failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    figures = json.loads(lines[-1])
    figures["wall_s"] = round(time.perf_counter() - started, 2)
    return figures


def child(spec: str) -> int:
    """The read once in this fresh process: its time and this process's peak memory before and after."""
    wanted = json.loads(spec)
    reader = Reader(wanted["params"])
    import collector.attendance.reports  # noqa: F401 - what any collector process has loaded before it reads
    import collector.web.app  # noqa: F401

    reader.store(readonly=wanted["read"] != "wages_run")
    before = peak_kb()
    started = time.perf_counter()
    reader.run(wanted["read"], 0)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 3), "peak_mb": round(peak_kb() / 1024, 1),
                      "before_mb": round(before / 1024, 1)}), flush=True)
    reader.close()
    return 0


def profile(reader: Reader, name: str, lines: int = 10) -> list[str]:
    """Where one run of the read spends its time: the collector's functions by cumulative time, then the
    three functions with the most time of their own (a driver's wait, a parser). The web handler
    runs in the app's worker thread, out of the profiler's sight: its record() call is profiled instead."""
    name = "worker_month" if name == "worker_month_http" else name
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        reader.run(name, 0)
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler).stats
    product = str(ROOT / "collector")
    ranked = sorted(((ct, tt, nc, where) for where, (_, nc, tt, ct, _) in stats.items()
                     if where[0].startswith(product)), reverse=True)
    own = sorted(((tt, ct, nc, where) for where, (_, nc, tt, ct, _) in stats.items()), reverse=True)
    shown = [f"{ct * 1000:9.1f} ms cum {tt * 1000:8.1f} ms own {nc:>8} calls  {_where(where)}"
             for ct, tt, nc, where in ranked[:lines]]
    shown.append("most time of its own:")
    shown += [f"{ct * 1000:9.1f} ms cum {tt * 1000:8.1f} ms own {nc:>8} calls  {_where(where)}"
              for tt, ct, nc, where in own[:3]]
    return shown


def _where(where: tuple) -> str:
    path, line, function = where
    try:
        path = str(Path(path).relative_to(ROOT))
    except ValueError:
        path = Path(path).name if path.startswith("/") else path
    return f"{path}:{line}({function})"


def measure_reads(bank: Bank, engine: str) -> list[dict]:
    params = bank.params()
    rows = []
    reader = Reader(params)
    try:
        for name, (target_ms, target_mb) in TARGETS.items():
            row = {"read": name, "engine": engine, "target_ms": target_ms, "target_mb": target_mb, "error": None,
                   "profile": []}
            say(f"  {name} ...")
            try:
                row.update(measure(reader, name))
            except Exception as error:  # noqa: BLE001 - printed as the read's result; the others go on
                row["error"] = f"{type(error).__name__}: {error}"
                row["traceback"] = traceback.format_exc(limit=-3)
                say(f"    FAILED {row['error']}")
            try:
                peak = fresh_peak(params, name)
                row.update(peak_mb=peak["peak_mb"], before_mb=peak["before_mb"], fresh_s=peak["seconds"])
            except Exception as error:  # noqa: BLE001
                row["peak_error"] = f"{type(error).__name__}: {error}"
            row["met"] = verdict(row)
            if row["met"] is False:
                try:
                    row["profile"] = profile(reader, name)
                except Exception as error:  # noqa: BLE001
                    row["profile"] = [f"(no profile: {type(error).__name__}: {error})"]
            if row["error"] is None:
                say(f"    p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms over {row['runs']} runs; "
                    f"fresh process peak {row.get('peak_mb', '?')} MB; read {row['found']}")
            rows.append(row)
    finally:
        reader.close()
    return rows


def verdict(row: dict) -> bool | None:
    if row.get("error") or row["target_ms"] is None:
        return None
    met = row["p99_ms"] <= row["target_ms"]
    if row.get("target_mb") is not None:
        if "peak_mb" not in row:
            return None
        met = met and row["peak_mb"] <= row["target_mb"]
    return met


# ---------------------------------------------------------------------------------------------- storage


def storage(bank: Bank, engine: str) -> dict:
    """Bytes per stored punch: the punches table (with TOAST) and its indexes, over every partition on
    PostgreSQL (made as the daemon makes them, then VACUUM ANALYZE); on PostgreSQL also after a REINDEX,
    what a month costs once it is closed and its indexes rebuilt packed."""
    with Store(bank.location) as store:
        db = store.db
        count = db.value("SELECT COUNT(*) FROM punches")
        reindexed = None
        if engine == "postgresql":
            with db.transaction():
                partitions.ensure(db, wanted=partitions.held_months(db))
            db.execute("VACUUM ANALYZE punches")
            leaves = ("SELECT relid FROM pg_partition_tree('punches') WHERE isleaf UNION ALL SELECT 'punches'::regclass "
                      "WHERE NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'punches'::regclass)")
            sizes = f"SELECT SUM(pg_table_size(relid)), SUM(pg_indexes_size(relid)) FROM ({leaves}) r"
            table, indexes = (int(value) for value in db.one(sizes))
            db.execute("REINDEX TABLE punches")
            reindexed = int(db.one(sizes)[1])
            db.execute("VACUUM ANALYZE days")
            days_bytes = int(db.value("SELECT pg_total_relation_size('days')"))
        else:
            def sqlite_sizes(table_name: str) -> dict[str, int]:
                names = db.column("SELECT name FROM sqlite_master WHERE tbl_name = ? AND type = 'index'", (table_name,))
                return {r["name"]: r["size"] for r in db.rows(
                    f"SELECT name, SUM(pgsize) AS size FROM dbstat WHERE name IN ({', '.join('?' * (len(names) + 1))}) "
                    "GROUP BY name", [table_name, *names])}

            sizes = sqlite_sizes("punches")
            table = sizes.pop("punches", 0)
            indexes = sum(sizes.values())
            days_bytes = sum(sqlite_sizes("days").values())
        days = db.value("SELECT COUNT(*) FROM days")
    row = {"engine": engine, "punches": count, "table_b": table / count, "indexes_b": indexes / count,
           "total_b": (table + indexes) / count, "target_b": STORAGE_MAX_BYTES, "days": days,
           "day_b": days_bytes / days if days else None}
    if reindexed is not None:
        row["total_reindexed_b"] = (table + reindexed) / count
    row["met"] = row["total_b"] <= STORAGE_MAX_BYTES
    return row


# ---------------------------------------------------------------------------------------------- ingest


class StoreWithoutMarks(Store):
    """The store with the day marks switched off: the yardstick for what the marks cost ingest."""

    def _mark_days(self, **_) -> None:
        pass

    def _mark_card_days(self, **_) -> None:
        pass


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        values = handle.read().rsplit(")", 1)[1].split()
    return (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds this process and the store's PostgreSQL backend (on this machine) spend: on a machine
    shared with other work, a steadier yardstick than wall time (SQLite works in this process)."""

    def __init__(self, store: Store):
        self.backend = store.db.value("SELECT pg_backend_pid()") if store.db.dialect == "postgresql" else None

    def __call__(self) -> float:
        return time.process_time() + (cpu_seconds(self.backend) if self.backend else 0.0)


def measure_ingest(bank: Bank, engine: str, *, per_run: int, rounds: int = 6, burst: int = 100) -> list[dict]:
    """Punches ingested with the day marks and without, alternating (ABBA) on fresh gates of a site of their
    own in the bank built: through the Ingestor in bursts of ``burst`` one-punch messages as a live
    collector takes them, and through bare insert_punch transactions of ``burst`` punches. Judged by the
    CPU each punch costs (this process and its PostgreSQL backend), wall time shown beside it. Then the
    maintainer's recomputing of what the marked punches named, per punch (in its own thread, beside ingest)."""
    from collector.attendance import days
    from collector.ingest.pipeline import Incoming, Ingestor
    from gate_agent.protocol import GateTopics, encode_punch_bodies

    site = "INGEST"
    plan = [(path, marks, r) for r in range(rounds) for path in ("ingest", "insert")
            for marks in ((True, False) if r % 2 == 0 else (False, True))]
    gates = {(path, marks, r): f"{site}-{path}-{'m' if marks else 'n'}{r}" for path, marks, r in plan}
    with Store(bank.location) as store:
        store.add_site(site, timezone=TZ)
        for gate in gates.values():
            store.add_gate(site, gate, public_keys_for(site, gate))
    start = datetime.now(UTC) - timedelta(hours=1)
    cards = [card_of(0, n) for n in range(bank.size.workers)]
    cpu: dict[tuple[str, bool], list[float]] = {}
    wall: dict[tuple[str, bool], list[float]] = {}
    marked = 0
    for path, marks, r in plan:
        gate = gates[(path, marks, r)]
        key, prev, punches, heads = gate_key(SEED, site, gate), GENESIS, [], {}
        for seq in range(1, per_run + 1):
            card = cards[(seq * 7 + r) % len(cards)]
            punch = signed(key, site, gate, seq, prev, start + timedelta(milliseconds=500 * seq), card,
                           "in" if seq % 2 else "out", heads.get(card, GENESIS))
            prev = heads[card] = punch.digest()
            punches.append(punch)
        received = format_time(datetime.now(UTC))
        kind = Store if marks else StoreWithoutMarks
        with kind(bank.location) as store:
            meter = CpuMeter(store)
            if path == "ingest":
                ingestor = Ingestor(store)
                messages = [Incoming(GateTopics(site, gate).punch, encode_punch_bodies([p.to_json()]), received)
                            for p in punches]
                begun, used = time.perf_counter(), meter()
                for at in range(0, len(messages), burst):
                    ingestor.ingest(messages[at:at + burst])
            else:
                begun, used = time.perf_counter(), meter()
                for at in range(0, len(punches), burst):
                    with store.transaction():
                        for punch in punches[at:at + burst]:
                            store.insert_punch(punch, received_at=received, source="mqtt", flags="")
                        store.advance_contiguous(site, gate, received)
            used, elapsed = meter() - used, time.perf_counter() - begun
            held = store.db.value("SELECT COUNT(*) FROM punches WHERE site = ? AND gate = ?", (site, gate))
        if held != per_run:
            raise RuntimeError(f"{path}: {held} of {per_run} punches stored at {gate}")
        marked += per_run if marks else 0
        cpu.setdefault((path, marks), []).append(used * 1e6 / per_run)
        wall.setdefault((path, marks), []).append(elapsed * 1e6 / per_run)
    with Store(bank.location) as store:
        begun, used = time.perf_counter(), time.process_time()
        while days.refresh(store).dropped:
            pass
        upkeep, upkeep_cpu = time.perf_counter() - begun, time.process_time() - used
    rows = []
    for path, label in (("ingest", "ingest"), ("insert", "insert_punch")):
        medians = {marks: (statistics.median(cpu[(path, marks)]), statistics.median(wall[(path, marks)]))
                   for marks in (True, False)}
        ratio = medians[True][0] / medians[False][0]
        rows.append({"read": label, "engine": engine, "cpu_us_per_punch": round(medians[True][0], 1),
                     "cpu_us_per_punch_without_marks": round(medians[False][0], 1), "ratio": round(ratio, 3),
                     "wall_us_per_punch": round(medians[True][1], 1),
                     "wall_us_per_punch_without_marks": round(medians[False][1], 1),
                     "wall_ratio": round(medians[True][1] / medians[False][1], 3),
                     "runs": rounds, "punches_per_run": per_run, "error": None, "profile": [],
                     "target": f"<= {INGEST_MAX_RATIO - 1:.0%} slower",
                     "met": ratio <= INGEST_MAX_RATIO if path == "ingest" else None,
                     "each_run": {"cpu_us_marks": [round(v, 1) for v in cpu[(path, True)]],
                                  "cpu_us_none": [round(v, 1) for v in cpu[(path, False)]],
                                  "wall_us_marks": [round(v, 1) for v in wall[(path, True)]],
                                  "wall_us_none": [round(v, 1) for v in wall[(path, False)]]}})
        say(f"    {label}: {medians[True][0]:.0f} us CPU a punch with the marks, {medians[False][0]:.0f} without "
            f"({(ratio - 1) * 100:+.1f} %); wall {medians[True][1]:.0f} against {medians[False][1]:.0f} us")
    rows.append({"read": "days_upkeep", "engine": engine, "cpu_us_per_punch": round(upkeep_cpu * 1e6 / marked, 1),
                 "wall_us_per_punch": round(upkeep * 1e6 / marked, 1), "runs": 1, "error": None, "profile": [],
                 "target": "(its own thread)", "met": None})
    say(f"    the maintainer recomputes what {marked:,} marked punches name in {upkeep:.1f} s "
        f"({upkeep * 1e6 / marked:.0f} us a punch, this process's CPU {upkeep_cpu * 1e6 / marked:.0f} us)")
    return rows


def public_keys_for(site: str, gate: str) -> str:
    from gate_agent.protocol import public_key_text

    return public_key_text(gate_key(SEED, site, gate).public_key())


# ---------------------------------------------------------------------------------------------- the run


def print_table(rows: list[dict]) -> None:
    say("")
    say(f"{'read':20} {'engine':10} {'p50':>10} {'p99':>10} {'peak RSS':>9}  {'target':24} verdict")
    for row in rows:
        if row.get("error"):
            say(f"{row['read']:20} {row['engine']:10} ERROR {row['error'][:150]}")
            continue
        if "cpu_us_per_punch" in row:
            p50 = f"{row['cpu_us_per_punch']:.0f} us"
            p99 = f"{(row['ratio'] - 1) * 100:+.1f} %" if "ratio" in row else "-"
            rss, target = "-", row["target"]
        else:
            p50, p99 = f"{row['p50_ms']:.1f} ms", f"{row['p99_ms']:.1f} ms"
            rss = f"{row['peak_mb']:.0f} MB" if "peak_mb" in row else "?"
            target = ("-" if row["target_ms"] is None else
                      f"p99 <= {row['target_ms']:,} ms" + (f", {row['target_mb']} MB" if row["target_mb"] else ""))
        verdict_text = "-" if row["met"] is None else "PASS" if row["met"] else "MISS"
        say(f"{row['read']:20} {row['engine']:10} {p50:>10} {p99:>10} {rss:>9}  {target:24} {verdict_text}")
    say("  (ingest, insert_punch: CPU per punch with the day marks, and how much more than without them;"
        " days_upkeep: the maintainer's CPU per marked punch, in its own thread)")
    for row in rows:
        if row.get("profile"):
            say(f"\n{row['read']} on {row['engine']} misses its target; where one run spends its time:")
            for line in row["profile"]:
                say(f"  {line}")
        if row.get("peak_error"):
            say(f"\n{row['read']} on {row['engine']}: no memory figure ({row['peak_error']})")


class Database:
    """A throwaway database: an SQLite file in ``directory``, or a PostgreSQL database on the tests' server
    (COLLECTOR_TEST_POSTGRES, as tests/postgres.py) dropped afterwards unless kept."""

    def __init__(self, engine: str, directory: Path):
        self.engine, self.name = engine, None
        if engine == "postgresql":
            from tests.postgres import SERVER, admin, server_available, url_for

            problem = server_available()
            if problem is not None:
                raise SystemExit(f"bench: PostgreSQL at {SERVER} is not available ({problem})")
            self.name = f"collector_reads_{uuid.uuid4().hex[:10]}"
            with admin() as conn:
                conn.execute(f"CREATE DATABASE {self.name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
                             "LC_CTYPE 'C'")
            self.location: str | Path = url_for(self.name)
        else:
            self.location = directory / "collector.sqlite3"

    def close(self, keep: bool) -> None:
        if self.name and not keep:
            from tests.postgres import admin

            with admin() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def run_engine(engine: str, size: Size, directory: Path, *, keep: bool, quick: bool) -> dict:
    say(f"- {engine}: building the bank ({size.sites} sites x {size.workers:,} workers x {size.days} days)")
    (directory / engine).mkdir(parents=True, exist_ok=True)
    database = Database(engine, directory / engine)
    out: dict = {"engine": engine}
    try:
        bank = build_bank(database.location, directory / engine, size)
        build_days(bank)
        check_days(bank)
        settle_wages(bank)
        put_inside(bank)
        keep_figures(bank)
        out["storage"] = storage(bank, engine)
        out.update(punches=bank.punches, manual=bank.manual, voids=bank.voids, timings=bank.timings,
                   notes=bank.notes, params={k: v for k, v in bank.params().items() if k != "sessions"})
        say(f"- {engine}: measuring the reads")
        rows = measure_reads(bank, engine)
        say(f"- {engine}: ingest per punch, with the day marks and without")
        try:
            rows += measure_ingest(bank, engine, per_run=1000 if quick else 3000)
        except Exception as error:  # noqa: BLE001
            rows.append({"read": "ingest", "engine": engine, "error": f"{type(error).__name__}: {error}",
                         "met": None, "profile": []})
        out["rows"] = rows
        if keep:
            say(f"  kept the database: {database.location}")
    finally:
        database.close(keep)
    return out


def sizes(args: argparse.Namespace) -> Size:
    sites, workers, days = QUICK if args.quick else FULL
    return Size(args.sites or sites, args.workers or workers, args.days or days)


def main(args: argparse.Namespace) -> int:
    """``run.py --reads``: the bank on each engine asked for, the reads measured, one table."""
    size = sizes(args)
    engines = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    directory = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    started = time.monotonic()
    say(f"read benchmark ({'quick' if args.quick else 'full'}) in {directory}; {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {', '.join(engines)}; {size.sites} sites x {size.workers:,} workers x "
        f"{size.days} days, {size.inside:,} inside")
    if os.getloadavg()[0] > 0.5:
        say(f"  note: load average {os.getloadavg()[0]:.2f} at start; other work on this machine skews every figure")
    results: dict = {"quick": args.quick, "size": {"sites": size.sites, "workers": size.workers, "days": size.days,
                                                   "inside": size.inside},
                     "load_average_at_start": os.getloadavg(), "engines": {}}
    rows = []
    for engine in engines:
        results["engines"][engine] = run_engine(engine, size, directory, keep=args.keep, quick=args.quick)
        rows += results["engines"][engine]["rows"]
    results["targets"] = {name: {"p99_ms": ms, "peak_mb": mb} for name, (ms, mb) in TARGETS.items()}
    results["targets"]["ingest"] = {"ratio": INGEST_MAX_RATIO}
    results["load_average_at_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    for engine in engines:
        timings = results["engines"][engine]["timings"]
        say(f"\n{engine}: {results['engines'][engine]['punches']:,} punches stored in {timings['punches_s']:.0f} s, "
            f"kept days built in {timings['days_build_s']:.0f} s ({timings['days_kept']:,} days), "
            f"{timings.get('differences', '?')} difference(s) against the punches")
    print_table(rows)
    say("\nstorage per punch (the punches table and its indexes)")
    for engine in engines:
        kept = results["engines"][engine].get("storage")
        if kept:
            after = (f", {kept['total_reindexed_b']:.0f} B with its indexes rebuilt (a closed month)"
                     if "total_reindexed_b" in kept else "")
            say(f"  {engine:10} {kept['total_b']:.0f} B ({kept['table_b']:.0f} table, {kept['indexes_b']:.0f} indexes)"
                f"{after}; target <= {kept['target_b']} B: {'PASS' if kept['met'] else 'MISS'}")
            if kept.get("day_b"):
                say(f"  {'':10} and a kept day (the days table with its indexes): {kept['day_b']:.0f} B a worker-day "
                    f"({kept['days']:,} days)")
    say(f"\nload average at start {results['load_average_at_start'][0]:.2f}, at end "
        f"{results['load_average_at_end'][0]:.2f}; the run took {results['seconds']:.0f} s")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
        say(f"figures written to {args.json_file}")
    if args.keep:
        say(f"kept {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(child(sys.argv[2]))
    sys.exit("usage: python tests/bench/run.py --reads ... (this file is run by it)")
