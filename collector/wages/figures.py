"""Figures that cover the whole bank, kept with their age: the daemon computes them, /metrics reads them.

Arrears per site take reading the site's wage tables, payments and days (seconds for a large site), the
cards nobody holds inside a site take reading its recent punches, and the punches held take counting the
bank's punches. A scrape every few seconds cannot pay that for every site of the bank, so the daemon
computes them in a thread of its own (``FigureKeeper``), with its own database connection, one site at a
time, each once it is older than ``[figures] refresh_seconds``, and keeps them in ``bank_figures`` with the
moment it computed them. /metrics exports what is kept with its age and never computes it; a figure not
computed yet is not exported (``collector_figures_missing`` counts them). A site that fails is kept as
failed with the reason and the others go on. Several collector processes share the work: a figure another
process has just computed is not computed again.

The arrears a report lists (`collector arrears`, /api/arrears) are kept beside each site's totals by the
same computation: the rows still owed (all but the ``SETTLED`` ones: paid, not due yet) and each
employer's totals. A report of the bank reads them (``kept_arrears``) with each site's age, so that its
cost is the rows owed, not every site's wage tables and days; /metrics reads the totals only. A report
as of another date, or asked fresh, computes (``collector.wages.arrears``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from collector.attendance.headcount import unknown_inside
from collector.attendance.reports import site_rules
from collector.errors import InputError
from collector.store import Store, Timeouts
from collector.store.background import BackgroundRounds
from collector.wages.arrears import arrears
from gate_agent.protocol import format_time, parse_time

log = logging.getLogger(__name__)

#: Seconds between two computations of a figure, unless configured (``[figures] refresh_seconds``).
REFRESH_SECONDS = 300.0
#: Seconds to wait after the database failed before trying again.
FAILURE_SECONDS = 10.0
#: The bank as a whole, where a figure is kept under a site.
BANK = ""


#: The rows of an arrears report that are kept and served: what is owed or in question. A paid row, and
#: one not due yet, are left to a report computed afresh.
SETTLED = ("paid", "not_due")
#: Kept beside the site's arrears totals (which /metrics reads): the rows and employers a report lists.
ARREARS_ROWS = "arrears_rows"


def _arrears(store: Store, site: str, now: datetime, grace: timedelta) -> dict | None:
    if not store.has("payments"):
        return None  # a database without wage payments has no arrears to judge
    report = arrears(store, site=site, now=now, grace=grace)
    (summary,) = report["sites"]
    if summary["error"]:
        raise FigureFailed(summary["error"])
    return {**{key: value for key, value in summary.items() if key not in ("site", "error")},
            ARREARS_ROWS: {"workers": [row for row in report["workers"] if row["status"] not in SETTLED],
                           "employers": report["employers"]}}


def _inside(store: Store, site: str, now: datetime, grace: timedelta) -> dict:
    return {"unknown_cards": len(unknown_inside(store, site, site_rules(store, site), now))}


def _punches(store: Store, now: datetime, grace: timedelta) -> dict:
    # An exact count is a scan of every punch (PostgreSQL keeps no row count): paid here, once a period.
    return {"held": store.punch_count()}


#: Figures per site, and of the bank as a whole: name -> what computes it (None: nothing to compute).
SITE_FIGURES: dict[str, Callable[[Store, str, datetime, timedelta], dict | None]] = {
    "arrears": _arrears, "inside": _inside}
BANK_FIGURES: dict[str, Callable[[Store, datetime, timedelta], dict | None]] = {"punches": _punches}
#: Figures computed with another and kept beside it (figure -> their names, each a key of its value).
BESIDE = {"arrears": (ARREARS_ROWS,)}
#: Every figure name kept as a figure of its own (those beside others included).
KEPT = (*SITE_FIGURES, *BANK_FIGURES)


class FigureFailed(Exception):
    """A figure that could not be computed, with the reason the computation gave."""


def refresh(store: Store, *, grace: timedelta = timedelta(hours=6), max_age: float | None = None,
            now: datetime | None = None, sites: list[str] | None = None,
            stopping: Callable[[], bool] = lambda: False) -> int:
    """Compute and keep the figures older than ``max_age`` seconds (None: all of them), of ``sites``
    (None: every site) and of the bank, one at a time, each with the store's time when it starts (or
    ``now``). Returns how many were computed; stops early once ``stopping()``."""
    computed = 0
    names = [s["site"] for s in store.sites()] if sites is None else sites
    jobs = [(site, figure, compute) for site in names for figure, compute in SITE_FIGURES.items()]
    jobs += [(BANK, figure, compute) for figure, compute in BANK_FIGURES.items()] if sites is None else []
    for site, figure, compute in jobs:
        if stopping():
            break
        # Looked at just before: another process may have computed it since this round began.
        if max_age is not None and not _due(store, site, figure, max_age, now):
            continue
        moment = now or store.now()
        started = time.perf_counter()
        value, error = None, None
        try:
            value = compute(store, site, moment, grace) if site != BANK else compute(store, moment, grace)
        except FigureFailed as failure:
            error = str(failure)
        except Exception as failure:  # noqa: BLE001 - one site that cannot be computed must not stop the others
            log.exception("figure %s of %s cannot be computed", figure, site or "the bank")
            error = f"cannot be computed ({type(failure).__name__}: {failure})"
        if value is None and error is None:
            continue
        beside = {name: None if value is None else value.pop(name) for name in BESIDE.get(figure, ())}
        seconds = round(time.perf_counter() - started, 3)
        with store.transaction():  # a reader sees the totals and the rows of one computation
            store.save_figure(site, figure, value=value, error=error, computed_at=format_time(moment), seconds=seconds)
            for name, kept in beside.items():
                store.save_figure(site, name, value=kept, error=error, computed_at=format_time(moment),
                                  seconds=seconds)
        computed += 1
    return computed


def _due(store: Store, site: str, figure: str, max_age: float, now: datetime | None) -> bool:
    kept = store.figure_computed_at(site, figure)
    if kept is None:
        return True
    age = ((now or store.now()) - parse_time(kept)).total_seconds()
    return not 0 <= age < max_age  # a time ahead of this clock is not trusted to be recent


def next_due(store: Store, max_age: float) -> float:
    """Seconds until the oldest kept figure is due again (0: one is due, or missing, now)."""
    figures = store.figures(KEPT)
    per_site = len(SITE_FIGURES) - (not store.has("payments"))  # no arrears without wage payments
    expected = len(store.sites()) * per_site + len(BANK_FIGURES)
    if len(figures) < expected:
        return 0.0
    now = store.now()
    ages = [(now - parse_time(f.computed_at)).total_seconds() for f in figures]
    return max(0.0, min(max_age - age if age >= 0 else 0.0 for age in ages))


class FigureKeeper(BackgroundRounds):
    """The daemon's thread that keeps the figures (``refresh``) until stopped."""

    what = "figures"

    def __init__(self, db: str | Path, *, timeouts: Timeouts, refresh_seconds: float = REFRESH_SECONDS,
                 grace: timedelta = timedelta(hours=6)):
        super().__init__(db, timeouts=timeouts, failure_seconds=FAILURE_SECONDS)
        self.refresh_seconds, self.grace = refresh_seconds, grace
        self.computed = 0  # figures computed since start

    def round(self, store: Store) -> float:
        self.computed += refresh(store, grace=self.grace, max_age=self.refresh_seconds, stopping=self.stopping)
        # At least a second: a figure that cannot be saved must not turn this into a busy loop.
        return min(self.refresh_seconds, max(1.0, next_due(store, self.refresh_seconds)))


def arrears_report(store: Store, *, site: str | None = None, as_of: date | None = None, fresh: bool = False,
                   now: datetime | None = None, grace: timedelta = timedelta(hours=6),
                   compute_missing: bool = False) -> dict:
    """What a report of the arrears shows: as of ``as_of``, or ``fresh``, computed now (every row, each
    site of age 0); else as kept (``kept_arrears``)."""
    now = now or store.now()
    if as_of is None and not fresh:
        return kept_arrears(store, site=site, now=now, grace=grace, compute_missing=compute_missing)
    report = arrears(store, site=site, as_of=as_of, now=now, grace=grace)
    for summary in report["sites"]:
        summary.update(kept=False, computed_at=format_time(now), age_seconds=0.0)
    return {**report, "kept": False, "oldest_age_seconds": None}


def kept_arrears(store: Store, *, site: str | None = None, now: datetime | None = None,
                 grace: timedelta = timedelta(hours=6), compute_missing: bool = False) -> dict:
    """The arrears report of the bank (or of ``site``) as the daemon last computed each site: the rows
    still owed (``SETTLED`` ones are left out), the employers' and the sites' totals, each site with
    when it was computed (``computed_at``) and its age in seconds, and ``kept`` true. A site whose
    computation failed is shown with its error, as a fresh report shows it. A site not computed yet is
    computed here with ``compute_missing`` (``kept`` false for it), else shown with an error saying so:
    never left out, so that no arrear is hidden."""
    now = now or store.now()
    sites = [s["site"] for s in store.sites() if site is None or s["site"] == site]
    if site is not None and not sites:
        raise InputError(f"site {site} does not exist")
    kept = {(f.site, f.figure): f for f in store.figures(("arrears", ARREARS_ROWS))}
    workers, employers, summaries = [], [], []
    for name in sites:
        totals, rows = kept.get((name, "arrears")), kept.get((name, ARREARS_ROWS))
        if totals is None or (totals.error is None and (rows is None or rows.value is None
                                                        or rows.computed_at != totals.computed_at)):
            if compute_missing:
                fresh = arrears(store, site=name, now=now, grace=grace)
                workers += [row for row in fresh["workers"] if row["status"] not in SETTLED]
                employers += fresh["employers"]
                summaries += [{**summary, "kept": False, "computed_at": format_time(now), "age_seconds": 0.0}
                              for summary in fresh["sites"]]
            else:
                summaries.append(_not_kept(name, now))
            continue
        age = round(max(0.0, (now - parse_time(totals.computed_at)).total_seconds()), 3)  # a clock a little ahead
        head = {"site": name, "kept": True, "computed_at": totals.computed_at, "age_seconds": age}
        if totals.error is not None:
            summaries.append({**head, **_no_totals(), "as_of": None, "notes": [totals.error], "error": totals.error})
            continue
        summaries.append({**head, **totals.value, "error": None})
        workers += rows.value["workers"]
        employers += rows.value["employers"]
    ages = [s["age_seconds"] for s in summaries if s["kept"]]
    return {"as_of": None, "kept": bool(ages), "oldest_age_seconds": max(ages, default=None),
            "workers": workers, "employers": sorted(employers, key=lambda e: (e["site"], e["employer"])),
            "sites": summaries}


def _no_totals() -> dict:
    return {"due_fen": 0, "paid_fen": 0, "pending_fen": 0, "overdue_fen": 0, "overdue_estimate_fen": 0,
            "overdue_workers": 0, "art27_warnings": 0}


def _not_kept(site: str, now: datetime) -> dict:
    reason = ("not computed yet: the collector daemon keeps each site's arrears ([figures] refresh_seconds); "
              "`collector arrears --fresh` computes them now")
    return {"site": site, "kept": False, "computed_at": None, "age_seconds": None, "as_of": None, **_no_totals(),
            "notes": [reason], "error": reason}
