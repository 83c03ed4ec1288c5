"""Attendance, headcount, manual punches and the exports bank ops pay from."""

from __future__ import annotations

import json
from datetime import date, timedelta

import click

from gate_agent.logsetup import escape_control

from .cli_common import Context, emit, json_option, progressbar, with_config

date_type = click.DateTime(["%Y-%m-%d"])
CHUNK_DAYS = 7


def _period(day, first, last) -> tuple[date, date]:
    if day and (first or last):
        raise ValueError("give --date, or --from and --to, not both")
    if day:
        return day.date(), day.date()
    if not (first and last):
        raise ValueError("give --date, or both --from and --to")
    if last < first:
        raise ValueError("--to is before --from")
    return first.date(), last.date()


def _format_option(func):
    func = click.option("--csv", "as_csv", is_flag=True, help="CSV for spreadsheets.")(func)
    return json_option(func)


def _records(ctx: Context, site: str, first: date, last: date) -> list[dict]:
    """Records chunk by chunk, with a progress bar on long periods (shown on a terminal only)."""
    from .reports import attendance

    grace = timedelta(hours=ctx.config.final_grace_hours)
    chunks = []
    start = first
    while start <= last:
        chunks.append((start, min(last, start + timedelta(days=CHUNK_DAYS - 1))))
        start += timedelta(days=CHUNK_DAYS)
    rows: list[dict] = []
    with ctx.store(readonly=True) as store, progressbar(chunks, label="computing days") as bar:
        for chunk_first, chunk_last in bar:
            rows += attendance(store, site, chunk_first, chunk_last, grace=grace)
    return sorted(rows, key=lambda r: (r["date"], r["worker"]))


@click.command("attendance")
@click.option("--site", required=True)
@click.option("--date", "day", type=date_type, help="One local date.")
@click.option("--from", "first", type=date_type, help="First local date.")
@click.option("--to", "last", type=date_type, help="Last local date.")
@_format_option
@with_config
def attendance_command(ctx: Context, site: str, day, first, last, as_json: bool, as_csv: bool):
    """Daily records per worker: first in, last out, worked minutes, status, flags, final."""
    from .export import ATTENDANCE_COLUMNS, to_csv, to_json

    rows = _records(ctx, site, *_period(day, first, last))
    if as_json:
        click.echo(to_json(rows))
    elif as_csv:
        click.echo(to_csv(rows, ATTENDANCE_COLUMNS), nl=False)
    else:
        for r in rows:
            click.echo(f"{r['date']} {r['worker']:8} {escape_control(r['name'] or '')[:18]:18} in {_clock(r['first_in'])} "
                       f"out {_clock(r['last_out'])} {r['worked_minutes'] // 60:3d}h{r['worked_minutes'] % 60:02d} "
                       f"{r['status']:11} {'final' if r['final'] else 'provisional'} {','.join(r['flags'])}")
        click.echo(f"{len(rows)} record(s)")


def _clock(text: str | None) -> str:
    return text[11:16] if text else "--:--"


@click.command("payroll")
@click.option("--site", required=True)
@click.option("--from", "first", type=date_type, required=True)
@click.option("--to", "last", type=date_type, required=True)
@_format_option
@with_config
def payroll_command(ctx: Context, site: str, first, last, as_json: bool, as_csv: bool):
    """Per worker over a period: days present, worked minutes, days flagged, provisional days."""
    from .export import PAYROLL_COLUMNS, to_csv, to_json
    from .reports import payroll

    rows = payroll(_records(ctx, site, *_period(None, first, last)))
    if as_json:
        click.echo(to_json(rows))
    elif as_csv:
        click.echo(to_csv(rows, PAYROLL_COLUMNS), nl=False)
    else:
        for r in rows:
            click.echo(f"{r['worker']:8} {escape_control(r['name'] or '')[:18]:18} {r['days_present']:3d} days "
                       f"{r['worked_minutes'] / 60:7.2f} h  flagged {r['days_flagged']}  provisional {r['provisional_days']}")


@click.command("headcount")
@click.option("--site", required=True)
@json_option
@with_config
def headcount_command(ctx: Context, site: str, as_json: bool):
    """Who is on site now, since when and through which gate."""
    from .headcount import headcount

    with ctx.store(readonly=True) as store:
        data = headcount(store, site)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{site}: {data['on_site']} on site" +
               (f", and {data['unknown_cards']} unknown card(s)" if data["unknown_cards"] else ""))
    for w in data["workers"]:
        click.echo(f"  {w['worker']:8} {escape_control(w['name'] or ''):20} since {w['since']} via {w['gate'] or 'manual entry'}")


@click.command("evidence")
@click.option("--worker", required=True)
@click.option("--from", "first", type=date_type, required=True)
@click.option("--to", "last", type=date_type, required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True))
@with_config
def evidence_command(ctx: Context, worker: str, first, last, out: str):
    """Write a worker's punches as signed, the gate keys, chain links and computed days to FILE."""
    from .evidence import build_evidence

    first, last = _period(None, first, last)
    with ctx.store(readonly=True) as store, progressbar(length=0, label="collecting punches") as bar:
        document = build_evidence(store, worker, first, last, progress=bar.update)
    with open(out, "w") as handle:
        json.dump(document, handle, indent=1)
    punches = sum(len(g["punches"]) for g in document["gates"])
    click.echo(f"{out}: {len(document['days'])} day(s) of {worker}, {punches} signed punch(es) from "
               f"{len(document['gates'])} gate(s), {len(document['manual'])} manual entr(y/ies)")


@click.command("verify")
@click.argument("evidence_file", type=click.Path(exists=True, dir_okay=False))
@json_option
def verify_command(evidence_file: str, as_json: bool):
    """Check an evidence file offline: every signature and link, and the days it states."""
    from .evidence import EvidenceError, verify_evidence

    try:
        with open(evidence_file) as handle:
            document = json.load(handle)
        summary = verify_evidence(document)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{evidence_file}: unreadable: {error}") from None
    except EvidenceError as error:
        raise click.ClickException(f"{evidence_file}: FAILED: {error}") from None
    emit(as_json, summary,
         f"{evidence_file}: OK: {summary['punches']} signed punch(es), {summary['days']} day(s) of "
         f"{summary['worker']}, {summary['worked_minutes'] / 60:.2f} h; gate keys {', '.join(summary['keys'])} "
         "(compare with the bank's registry)")


@click.group("punch")
def punch_group() -> None:
    """Manual corrections (a gate's punch is never edited)."""


@punch_group.command("add")
@click.option("--worker", required=True)
@click.option("--site", required=True)
@click.option("--at", "at", required=True, help="ISO time with offset, e.g. 2026-11-28T07:58:00+08:00.")
@click.option("--direction", type=click.Choice(["in", "out"]), required=True)
@click.option("--reason", required=True)
@click.option("--by", "by", required=True, help="Who enters it.")
@json_option
@with_config
def punch_add(ctx: Context, worker: str, site: str, at: str, direction: str, reason: str, by: str, as_json: bool):
    """Add a manual punch (marked manual, with who, why and when)."""
    from .registry import parse_moment

    with ctx.store() as store:
        punch_id = store.add_manual_punch(site=site, worker=worker, time=parse_moment(at), direction=direction,
                                          reason=reason, by=by)
        row = store.punch(punch_id)
    emit(as_json, {k: row[k] for k in ("id", "site", "worker", "time", "direction", "manual_by", "manual_reason",
                                       "received_at")},
         f"manual punch {punch_id}: {worker} {direction} at {at} (by {by}: {reason})")


@punch_group.command("void")
@click.argument("punch_id", type=int)
@click.option("--reason", required=True)
@click.option("--by", "by", required=True)
@with_config
def punch_void(ctx: Context, punch_id: int, reason: str, by: str):
    """Mark a punch void: kept and shown, no longer counted."""
    with ctx.store() as store:
        row = store.void_punch(punch_id, reason=reason, by=by)
    what = f"{row['site']}/{row['gate']} seq {row['seq']}" if row["gate"] else f"manual punch at {row['site']}"
    click.echo(f"punch {punch_id} ({what}) is void (by {by}: {reason})")


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    for command in (attendance_command, payroll_command, headcount_command, evidence_command, verify_command,
                    punch_group):
        main.add_command(command)
