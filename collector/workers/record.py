"""One worker's own record as their personal page shows it: days, month totals, wages, disputes and
who looked. Built from that worker's own kept days, wage lines and payments only, so nothing of another
worker can reach it, and it costs what one worker's record costs whatever the size of the site."""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, date, datetime, timedelta

from collector.attendance.reports import attendance
from collector.errors import InputError
from collector.localtime import check_date, local_text, to_local, zone
from collector.store import Store, StoreError

log = logging.getLogger(__name__)

#: What a day tells its worker; the rest of record_dict (refs of gate chains) stays at the bank.
DAY_FIELDS = ("site", "date", "first_in", "last_out", "worked_minutes", "status", "flags", "final")


def parse_month(text: str | None, today: date) -> tuple[date, date]:
    """The first and last date of ``YYYY-MM`` (default: this month); InputError for anything else."""
    if text is None:
        year, month = today.year, today.month
    else:
        if not (isinstance(text, str) and len(text) == 7 and text[4] == "-" and text[:4].isdigit()
                and text[5:].isdigit()):
            raise InputError("month must be YYYY-MM")
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise InputError("month must be YYYY-MM")
    first = check_date(date(year, month, 1))
    return first, date(year, month, calendar.monthrange(year, month)[1])


def worker_days(store: Store, worker: str, first: date, last: date, *, now: datetime,
                grace: timedelta) -> list[dict]:
    """The worker's days at every site, first..last, oldest first: their own kept days, read only at the
    sites where they may have any."""
    days = []
    for site_row in worker_sites(store, worker):
        site = site_row["site"]
        for full in attendance(store, site, first, last, now=now, grace=grace, worker=worker):
            day = {k: full[k] for k in DAY_FIELDS}
            day["site_name"] = site_row["name"]
            day["shifts"] = [{"in": s["in"], "out": s["out"], "minutes": s["minutes"], "status": s["status"]}
                             for s in full["shifts"]]
            days.append(day)
    return sorted(days, key=lambda d: (d["date"], d["site"]))


def worker_sites(store: Store, worker: str) -> list[dict]:
    """The sites (rows, by site) where ``worker`` may have days: kept days, manual punches naming them,
    punches of cards they held. A database without kept days yet has every site looked at."""
    rows = store.sites()
    if not store.has("days"):
        return rows
    theirs = set(store.sites_of_worker(worker))
    return [row for row in rows if row["site"] in theirs]


def totals(days: list[dict]) -> dict:
    return {
        "days_present": sum(1 for d in days if any(s["in"] for s in d["shifts"])),
        "worked_minutes": sum(d["worked_minutes"] for d in days),
        "days_flagged": sum(1 for d in days if set(d["flags"]) - {"manual"} or d["status"] not in ("complete", "open")),
        "provisional_days": sum(1 for d in days if not d["final"]),
    }


def worker_wages(store: Store, worker: str, *, grace: timedelta, now: datetime | None = None) -> list[dict] | None:
    """Per site and month: what is due, paid, at the bank and overdue (None before wages exist), from
    the worker's own lines, payments and days only (``arrears`` for one worker)."""
    if not store.has("payments"):
        return None
    from collector.wages.arrears import arrears

    sites = sorted({a["site"] for a in store.assignments(worker=worker)})
    rows = []
    for site in sites:
        try:
            report = arrears(store, site=site, now=now, grace=grace, worker=worker)
        except (InputError, StoreError) as error:  # a site without pay terms: nothing to show, said in the log
            log.warning("wages of %s at %s cannot be shown: %s", worker, site, error)
            continue
        rows += [{k: r[k] for k in ("site", "period", "pay_day", "status", "due_fen", "paid_fen", "pending_fen",
                                    "overdue_fen", "days_overdue", "estimate", "estimate_fen")}
                 for r in report["workers"]]
    return sorted(rows, key=lambda r: (r["period"], r["site"]), reverse=True)


def reading_zone(store: Store, worker: str) -> dict:
    """The zone every instant on the worker's page is shown in ({timezone, site, name, named}): their site's
    (``Store.record_zone``; else a site they have days at). ``named``: the page says which zone, because
    their sites are in more than one (or, for a worker with no site at all, the zone is UTC)."""
    found = store.record_zone(worker)
    if found is None:
        found = next(({"site": s["site"], "name": s["name"], "timezone": s["timezone"], "zones": 1}
                      for s in worker_sites(store, worker)), None)
    if found is None:
        return {"timezone": "UTC", "site": None, "name": None, "named": True}
    return {"timezone": found["timezone"], "site": found["site"], "name": found["name"] or found["site"],
            "named": found["zones"] > 1}


def access_entries(store: Store, worker: str, timezone: str) -> list[dict]:
    """Who looked at the worker's record (``Store.access_log``), each look's times also in ``timezone``
    (``local_at``, ``local_first_at``: ISO with the offset, what the page shows)."""
    tz = zone(timezone)
    return [{**entry, "local_at": local_text(entry["at"], tz), "local_first_at": local_text(entry["first_at"], tz)}
            for entry in store.access_log(worker)]


def record(store: Store, worker: str, month: str | None = None, *, now: datetime | None = None,
           grace: timedelta = timedelta(hours=6)) -> dict:
    """Everything the worker's page shows for one month."""
    now = now or datetime.now(UTC)
    person = next(iter(store.people_named([worker])), None)
    if person is None:
        raise StoreError(f"worker {worker} does not exist")
    reading = reading_zone(store, worker)
    today = (to_local(now, zone(reading["timezone"])) or now).date()
    first, last = parse_month(month, today)
    days = worker_days(store, worker, first, last, now=now, grace=grace)
    sites = {s["site"]: s["name"] for s in store.sites()}
    assigned = sorted({a["site"] for a in store.assignments(worker=worker)})
    disputes = store.disputes(worker=worker)
    return {
        "worker": {"worker": worker, "name": person["name"], "employer": person["employer"]},
        "month": first.isoformat()[:7],
        # Today at the worker's site: the day a missing day's form offers first, and the last it takes.
        "today": today.isoformat(),
        "zone": reading,
        "days": days,
        "totals": totals(days),
        "wages": worker_wages(store, worker, grace=grace, now=now),
        "sites": [{"site": s, "name": sites.get(s, s)} for s in assigned],
        "disputes": [{k: d[k] for k in ("ref", "site", "day", "note", "filed_at", "status", "answered_at", "answer",
                                        "answer_kind")} for d in reversed(disputes)],
        "access": access_entries(store, worker, reading["timezone"]),
    }
