"""`collector days`: the kept daily records (collector.attendance.days): how far behind they are, catching
up, and checking them against the punches."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from collector.cli.common import (
    Context,
    LocalDate,
    emit,
    json_option,
    json_text,
    progressbar,
    resolve_day,
    say,
    with_config,
)
from collector.errors import InputError

#: Days compared per step of a check (a month: what one read of the punches holds in memory).
CHECK_DAYS = 31


@click.group("days")
def days_group() -> None:
    """Daily records kept as data: each change marks the days it touches, the daemon recomputes them."""


@days_group.command("status")
@json_option
@with_config
def days_status(ctx: Context, as_json: bool) -> None:
    """How many marks wait to be recomputed, and since when (read-only)."""
    from collector.attendance import days

    with ctx.store(readonly=True) as store:
        if not store.has("days"):
            raise InputError("the database has no kept days yet: run `collector db upgrade`")
        waiting = days.pending(store)
        kept = store.db.value("SELECT COUNT(*) FROM days")
    emit(as_json, {**waiting, "days": kept},
         f"{kept} day(s) kept; {waiting['marks']} change(s) waiting"
         + (f", the oldest made {waiting['oldest']}" if waiting["oldest"] else ""))


@days_group.command("refresh")
@json_option
@with_config
def days_refresh(ctx: Context, as_json: bool) -> None:
    """Recompute every day a change has marked (the daemon does this continuously)."""
    with ctx.store() as store:
        done = catch_up(store)
    emit(as_json, done, f"{done['units']} worker-site record(s) recomputed, {done['marks']} mark(s) settled")


@days_group.command("rebuild")
@click.option("--site", "sites", multiple=True, help="The site (repeat for several; default: every site).")
@click.option("--from", "first", type=LocalDate(), help="First local date (default: the site's first punch).")
@click.option("--to", "last", type=LocalDate(), help="Last local date (default: today, or the last punch).")
@json_option
@with_config
def days_rebuild(ctx: Context, sites: tuple[str, ...], first, last, as_json: bool) -> None:
    """Compare the kept days with the days computed from the punches alone, report every difference, then
    recompute the kept days from the punches (an operator's check after an upgrade or a restore).
    Exit status 1 when a difference was found (it is repaired)."""
    from collector.attendance import days

    now = datetime.now(UTC)
    with ctx.store() as store:
        if not store.has("days"):
            raise InputError("the database has no kept days yet: run `collector db upgrade`")
        chosen = list(sites) or [s["site"] for s in store.sites()]
        for site in chosen:
            if store.site(site) is None:
                raise InputError(f"site {site} does not exist")
        found: list[dict] = []
        checked = 0
        for site in chosen:
            tz = days.site_rules(store, site).tz
            span = days.history_span(store, site, now.astimezone(tz).date())
            start = resolve_day(first, tz) if first else (span[0] if span else None)
            end = resolve_day(last, tz) if last else (span[1] if span else None)
            if start is None or end is None:
                continue
            if end < start:
                raise InputError("--to is before --from")
            steps = []
            day = start
            while day <= end:
                steps.append((day, min(end, day + timedelta(days=CHECK_DAYS - 1))))
                day += timedelta(days=CHECK_DAYS)
            with progressbar(steps, label=f"checking {site}") as bar:
                for step_first, step_last in bar:
                    found += days.differences(store, site, step_first, step_last, now=now)
                    checked += (step_last - step_first).days + 1
            since = days.day_start(start, tz)
            store.mark_site_days([site], since=since)
        done = catch_up(store)
    result = {"sites": chosen, "days_checked": checked, "differences": found, "recomputed": done}
    if as_json:
        click.echo(json_text(result))
    else:
        for entry in found:
            say(f"DIFFERENT {entry['site']} {entry['worker']} {entry['date']}: kept "
                f"{_brief(entry['kept'])}, from the punches {_brief(entry['from_punches'])}")
        say(f"{len(chosen)} site(s), {checked} date(s) checked: {len(found)} difference(s); "
            f"{done['units']} worker-site record(s) recomputed from the punches")
    if found:
        sys.exit(1)


def _brief(day: dict | None) -> str:
    if day is None:
        return "no day"
    return f"{day['status']} {day['worked_minutes']} min [{','.join(day['flags'])}]"


def catch_up(store) -> dict:
    """Refresh until no mark is left (each round settles what it read)."""
    from collector.attendance import days

    units = marks = 0
    with progressbar(length=0, label="recomputing days") as bar:
        while True:
            done = days.refresh(store)
            units += done.units
            marks += done.dropped
            bar.update(done.units)
            if done.dropped == 0:
                break
    return {"units": units, "marks": marks, "skipped": done.skipped}


def register(main: click.Group) -> None:
    main.add_command(days_group)
