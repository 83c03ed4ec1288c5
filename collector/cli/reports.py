"""Attendance, headcount, manual punches and the exports bank ops pay from."""

from __future__ import annotations

from datetime import date, timedelta

import click

from collector.cli.common import (
    Context,
    LocalDate,
    check_xlsx_output,
    emit,
    format_options,
    json_option,
    json_text,
    progressbar,
    resolve_day,
    say,
    with_config,
    write_new_file,
)
from collector.errors import InputError
from gate_agent.logsetup import safe_json

CHUNK_DAYS = 7


def _period(day, first, last, tz=None) -> tuple[date, date]:
    """The local dates asked for, bounded (InputError: one line, exit 1): see reports.check_period.
    No date at all means today at the site."""
    from collector.attendance.reports import check_period

    if day and (first or last):
        raise InputError("give --date, or --from and --to, not both")
    if day or not (first or last):
        today = resolve_day(day or LocalDate().convert("today", None, None), tz)
        return check_period(today, today)
    if not (first and last):
        raise InputError("give --date, or both --from and --to")
    first, last = resolve_day(first, tz), resolve_day(last, tz)
    if last < first:
        raise InputError("--to is before --from")
    return check_period(first, last)


def _site_zone(ctx: Context, site: str):
    from collector.localtime import zone

    with ctx.store(readonly=True) as store:
        row = store.site(site)
    if row is None:
        raise InputError(f"site {site} does not exist")
    return zone(row["timezone"])


def _records(ctx: Context, site: str, first: date, last: date, *, summary: bool = False) -> list[dict]:
    """Records chunk by chunk, with a progress bar on long periods (shown on a terminal only); with
    ``summary``, without their shifts (``reports.SUMMARY_FIELDS``). Each names its worker's team and
    trade as registered now, from the read that names the worker (never a read per day)."""
    from collector.attendance.reports import attendance

    grace = timedelta(hours=ctx.config.final_grace_hours)
    chunks = []
    start = first
    while start <= last:
        chunks.append((start, min(last, start + timedelta(days=CHUNK_DAYS - 1))))
        start += timedelta(days=CHUNK_DAYS)
    rows: list[dict] = []
    with ctx.store(readonly=True) as store, progressbar(chunks, label="computing days") as bar:
        for chunk_first, chunk_last in bar:
            rows += attendance(store, site, chunk_first, chunk_last, grace=grace, summary=summary, teams=True)
    return sorted(rows, key=lambda r: (r["date"], r["worker"]))


@click.command("attendance")
@click.option("--site", required=True)
@click.option("--date", "day", type=LocalDate(), help="One local date, today or yesterday (default: today).")
@click.option("--from", "first", type=LocalDate(), help="First local date.")
@click.option("--to", "last", type=LocalDate(), help="Last local date.")
@click.option("--xlsx", "xlsx_file", type=click.Path(dir_okay=False),
              help="Write an XLSX workbook instead (Chinese headers, codes in words; a new file, 0600).")
@format_options
@with_config
def attendance_command(ctx: Context, site: str, day, first, last, xlsx_file: str | None, as_json: bool, as_csv: bool):
    """Daily records per worker: first in, last out, worked minutes, status, flags, final."""
    from collector.cli.display import aligned
    from collector.export import ATTENDANCE_COLUMNS, attendance_sheet, to_csv, to_json

    check_xlsx_output(xlsx_file, as_json, as_csv)
    first, last = _period(day, first, last, _site_zone(ctx, site))
    rows = _records(ctx, site, first, last, summary=not as_json)
    if xlsx_file:
        _write_xlsx(xlsx_file, attendance_sheet(rows, site=site, first=first.isoformat(), last=last.isoformat()),
                    f"{len(rows)} record(s)")
    elif as_json:
        click.echo(to_json(rows))
    elif as_csv:
        click.echo(to_csv(rows, ATTENDANCE_COLUMNS), nl=False)
    else:
        table = [[r["date"], r["worker"], r["name"] or "", *_teams(r, rows), f"in {_clock(r['first_in'])}",
                  f"out {_clock(r['last_out'])}", f"{r['worked_minutes'] // 60}h{r['worked_minutes'] % 60:02d}",
                  r["status"], "final" if r["final"] else "provisional", ";".join(r["flags"])] for r in rows]
        for line in aligned(table):
            say(line)
        click.echo(f"{len(rows)} record(s)")


def _clock(text: str | None) -> str:
    return text[11:16] if text else "--:--"


def _teams(row: dict, rows: list[dict]) -> list[str]:
    """A table's team and trade cells: none at all when no row names either (a site that records none)."""
    if not any(r.get("team") or r.get("trade") for r in rows):
        return []
    return [row.get("team") or "-", row.get("trade") or "-"]




def _write_xlsx(path: str, sheet, what: str) -> None:
    """The sheet as a new 0600 workbook (it names workers), and a line saying so."""
    from collector.workbook import workbook_bytes

    write_new_file(path, workbook_bytes([sheet]))
    click.echo(f"{path}: {what}")


@click.command("timesheet")
@click.option("--site", required=True)
@click.option("--month", required=True, help="YYYY-MM (the site's calendar month).")
@click.option("--employer", help="Only this employer's workers (a labour company's own sheet).")
@click.option("--team", help="Only this work team's (班组) workers.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="FILE.xlsx (to print from a spreadsheet) or FILE.html (to print from a browser); a new file, "
                   "0600: it names every worker.")
@json_option
@with_config
def timesheet_command(ctx: Context, site: str, month: str, employer: str | None, team: str | None, out: str,
                      as_json: bool):
    """The month's 考勤表 of SITE: one row per worker, a mark per day, the totals and a column for each
    worker's signature (docs/foreman.md says what the marks mean)."""
    import os
    from pathlib import Path

    from collector.attendance.timesheet import page, timesheet, workbook

    ending = Path(out).suffix.lower()
    if ending not in (".xlsx", ".html"):
        raise click.ClickException(f"{out}: the sheet is written as .xlsx or .html")
    if os.path.lexists(out):
        raise click.ClickException(f"{out} already exists; choose another name (nothing is overwritten)")
    with ctx.store(readonly=True) as store:
        if store.site(site) is None:
            raise InputError(f"site {site} does not exist")
        sheet = timesheet(store, site, month, grace=timedelta(hours=ctx.config.final_grace_hours),
                          employer=employer, team=team)
    if ending == ".xlsx":
        from collector.workbook import workbook_bytes

        data = workbook_bytes([workbook(sheet)])
    else:
        data = page(sheet).encode("utf-8")
    write_new_file(out, data)
    review = sum(row.review for row in sheet["rows"])
    emit(as_json, {"site": site, "month": sheet["month"], "file": out, "workers": len(sheet["rows"]),
                   "days_to_review": review},
         f"{out}: 考勤表 of {site} for {sheet['month']}, {len(sheet['rows'])} worker(s)"
         + (f", {review} day(s) marked 疑 to look at before it is signed" if review else ""))


@click.command("payroll")
@click.option("--site", required=True)
@click.option("--from", "first", type=LocalDate(), required=True)
@click.option("--to", "last", type=LocalDate(), required=True)
@click.option("--xlsx", "xlsx_file", type=click.Path(dir_okay=False),
              help="Write an XLSX workbook instead (Chinese headers, codes in words; a new file, 0600).")
@format_options
@with_config
def payroll_command(ctx: Context, site: str, first, last, xlsx_file: str | None, as_json: bool, as_csv: bool):
    """Per worker over a period: days present, worked minutes, days flagged, provisional days."""
    from collector.attendance.reports import payroll
    from collector.cli.display import aligned
    from collector.export import PAYROLL_COLUMNS, payroll_sheet, to_csv, to_json

    check_xlsx_output(xlsx_file, as_json, as_csv)
    first, last = _period(None, first, last, _site_zone(ctx, site))
    rows = payroll(_records(ctx, site, first, last))
    for row in rows:
        row.update({"site": site, "from": first.isoformat(), "to": last.isoformat()})
    if xlsx_file:
        _write_xlsx(xlsx_file, payroll_sheet(rows, site=site, first=first.isoformat(), last=last.isoformat()),
                    f"{len(rows)} worker(s)")
    elif as_json:
        click.echo(to_json(rows))
    elif as_csv:
        click.echo(to_csv(rows, PAYROLL_COLUMNS), nl=False)
    else:
        table = [[r["worker"], r["name"] or "", *_teams(r, rows), f"{r['days_present']} days",
                  f"{r['worked_minutes'] / 60:.2f} h",
                  f"flagged {r['days_flagged']}", f"provisional {r['provisional_days']}"] for r in rows]
        for line in aligned(table):
            say(line)


@click.command("headcount")
@click.option("--site", required=True)
@json_option
@with_config
def headcount_command(ctx: Context, site: str, as_json: bool):
    """Who is on site now, since when and through which gate."""
    from collector.attendance.headcount import headcount
    from collector.cli.display import aligned

    with ctx.store(readonly=True) as store:
        data = headcount(store, site)
    if as_json:
        click.echo(json_text(data))
        return
    click.echo(f"{site}: {data['on_site']} on site" +
               (f", and {data['unknown_cards']} unknown card(s)" if data["unknown_cards"] else ""))
    # Padded by the columns a name takes on screen: a Chinese character is two (collector/cli/display.py).
    # The gate as the site calls it, with its id for the bank.
    for line in aligned([[w["worker"], w["name"] or "", *_teams(w, data["workers"]), f"since {w['since']}",
                          "via " + (f"{w['gate_name']} ({w['gate']})" if w["gate_name"] else w["gate"] or "manual entry")]
                         for w in data["workers"]]):
        click.echo(f"  {line}")


@click.command("evidence")
@click.option("--worker", required=True)
@click.option("--from", "first", type=LocalDate(), required=True)
@click.option("--to", "last", type=LocalDate(), required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The evidence file to write (a new file, mode 0600: it holds personal data).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="Also write the same file as a page the worker reads or prints (Chinese, the site's time, a "
                   "QR code of how to check it): a new file, mode 0600.")
@with_config
def evidence_command(ctx: Context, worker: str, first, last, out: str, html_out: str | None):
    """Write a worker's evidence file (format 2, docs/evidence-format.md) to FILE: the worker's card's punches
    as the gates signed them, linked card punch to card punch, the gate keys cited from the register of
    gate keys, the worker's manual entries and voids and the computed days, the whole signed with the
    bank's key (signing_key). A gate key the register lacks is entered in it first."""
    import os

    from collector.evidence.document import build_evidence, days_id, evidence_id
    from collector.signing import load_bank_key

    first, last = _period(None, first, last)
    for path in (out, html_out):
        if path is not None and os.path.lexists(path):
            raise click.ClickException(f"{path} already exists; choose another name (nothing is overwritten)")
    if html_out is not None and os.path.abspath(html_out) == os.path.abspath(out):
        raise click.ClickException("--html names the evidence file itself; give the page a name of its own")
    key = load_bank_key(ctx.config)
    # Writable: the register of gate keys may lack a key the file must cite.
    with ctx.store() as store, progressbar(length=0, label="collecting punches") as bar:
        document = build_evidence(store, worker, first, last, key=key, progress=bar.update)
    data = safe_json(document, indent=1).encode()
    write_new_file(out, data)
    if html_out is not None:
        from collector.evidence.page import render_evidence_bytes

        # Made from the bytes just written, as the worker's page makes it from the stored file.
        write_new_file(html_out, render_evidence_bytes(data, file_name=os.path.basename(out)).encode("utf-8"))
    from collector.cli.worker import operator_name

    with ctx.store() as store:  # the worker sees on their page who took their record, and when
        store.log_access(worker, via="bank CLI", who=operator_name(),
                         what=f"evidence {first.isoformat()}..{last.isoformat()}")
    chains = [chain for gate in document["gates"] for chain in gate["chains"]]
    punches = sum(len(chain["punches"]) for chain in chains)
    click.echo(f"{out}: {len(document['days'])} day(s) of {worker}, {punches} signed punch(es) in {len(chains)} "
               f"chain(s) from {len(document['gates'])} gate(s), {len(document['manual'])} manual entr(y/ies), "
               f"{len(document['voids'])} void(s); signed by bank key {document['key']}; evidence id "
               f"{evidence_id(document)}, days id {days_id(document['days'])}")
    if html_out is not None:
        click.echo(f"{html_out}: the same evidence as a page to read or print (it proves nothing by itself: "
                   f"collector verify {out} checks the file)")


@click.command("verify")
@click.argument("evidence_file", type=click.Path(dir_okay=False))
@click.option("--bank-key", "bank_key",
              help="The bank's published public key (ed25519:...), or a file holding it (bank.pub).")
@click.option("--register", "register_path", type=click.Path(dir_okay=False),
              help="A copy of the bank's register of gate keys (`collector register export`), taken elsewhere or "
                   "earlier: each gate key a format 2 file cites must be in it, not revoked before its punches.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The collector's configuration: trust the bank keys of its registry and check every gate "
                   "key against the registry (format 1).")
@json_option
def verify_command(evidence_file: str, bank_key: str | None, register_path: str | None, config_path: str | None,
                   as_json: bool):
    """Check an evidence file offline (format 1 or 2): the bank's signature over all of it (against the bank's
    published key or its registry, never the key the file carries), every gate signature and link, the
    gate keys' register entries, and the days recomputed; then say what it proved and what it trusted."""
    from collector.evidence.document import EvidenceError, read_evidence, verify_evidence

    if bank_key is None and config_path is None:
        raise click.UsageError("give the bank's published key (--bank-key) or the collector's --config: a file "
                               "is trusted only against a key that came from the bank, not one it carries")
    trusted, registry = _trust(bank_key, config_path)
    mirror = None
    if register_path is not None:
        from collector.evidence.register import RegisterError, load_mirror

        try:
            mirror = load_mirror(register_path, trusted)
        except RegisterError as error:
            raise click.ClickException(f"--register {register_path}: {error}") from None
    try:
        with open(evidence_file, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise click.ClickException(f"{evidence_file}: cannot read: {error.strerror}") from None
    try:
        summary = verify_evidence(read_evidence(data), trusted, registry=registry, mirror=mirror)
    except EvidenceError as error:
        raise click.ClickException(f"{evidence_file}: FAILED: {error}") from None
    lines = _verified_v2(evidence_file, summary) if summary["version"] == 2 else _verified_v1(evidence_file, summary)
    emit(as_json, summary, "\n".join(lines))


def _verified_v2(evidence_file: str, summary: dict) -> list[str]:
    """What a format 2 check proved and what it took on the bank's word (docs/evidence-format.md section 6)."""
    worked = summary["worked_minutes"]
    lines = [f"{evidence_file}: OK: signed by bank key {summary['bank_key']}; {summary['days']} day(s) of worker "
             f"{summary['worker']} ({summary['name']}), {summary['period']['from']} to {summary['period']['to']}, "
             f"{worked // 60} h {worked % 60:02d} min (format 2)",
             f"  evidence id {summary['evidence_id']}",
             f"  days id {summary['days_id']} (what a wage slip names)",
             "  proved:"]
    lines += [f"    - {line}" for line in summary["proved"]]
    for gate in summary["gates"]:
        keys = ", ".join(f"{k['key_id']} (register entry {k['index']}"
                         + (", in your copy)" if k["mirrored"] else ")") for k in gate["keys"])
        lines.append(f"    {gate['site']}/{gate['gate']}: key(s) {keys}")
        for chain in gate["chains"]:
            what = f"card {chain['card']}" if chain["link"] == "card" else "gate chain"
            end = {"later": ", ending after the period", "newest": ", ending at the newest punch the bank held",
                   None: ""}[chain["end"]]
            lines.append(f"      {what}: seq {chain['first_seq']} to {chain['last_seq']}, {chain['punches']} punch(es), "
                         f"{chain['own_punches']} the worker's; starting {chain['start']}{end}")
    lines.append("  trusted (the bank's word):")
    lines += [f"    - {line}" for line in summary["trusted"]]
    lines += _entry_lines(summary, "    ")
    if summary["notes"]:
        lines.append("  notes on the gate keys:")
        lines += [f"    - {note}" for note in summary["notes"]]
    return lines


def _entry_lines(summary: dict, indent: str) -> list[str]:
    """The file's manual entries and voids as `collector verify` lists them: who, when, why."""
    lines = [f"{indent}manual entry {entry['ref']} at {entry['site']}: {entry['direction']} {entry['time']}, "
             f"entered {entry['entered_at']} by {entry['by']}: {entry['reason']}"
             + (f" (answers dispute {entry['dispute']})" if entry["dispute"] else "") for entry in summary["manual_entries"]]
    return lines + [f"{indent}void {void['site']} {void['ref']} since {void['void_at']} by {void['by']}: {void['reason']}"
                    + (f" (answers dispute {void['dispute']})" if void["dispute"] else "") for void in summary["voids"]]


def _verified_v1(evidence_file: str, summary: dict) -> list[str]:
    lines = [f"{evidence_file}: OK: signed by bank key {summary['bank_key']}; {summary['punches']} signed "
             f"punch(es), {summary['days']} day(s) of {summary['worker']}, {summary['worked_minutes'] / 60:.2f} h; "
             f"gate keys {', '.join(summary['keys']) or 'none'} "
             + ("(each registered for its gate when the bank received the punch)" if summary["registry_checked"]
                else "(not checked against the registry: give --config for that)"),
             f"  evidence id {summary['evidence_id']} (format 1)",
             f"  days id {summary['days_id']}"]
    lines += _entry_lines(summary, "  ")
    if not summary["manual_entries"] and not summary["voids"]:
        lines.append("  no manual entries, no voids")
    return lines


def _trust(bank_key: str | None, config_path: str | None):
    """Bank keys to trust and, with a configuration, the registry to check gate keys against."""
    from pathlib import Path

    from collector.evidence.document import Registry
    from collector.signing import SigningKeyError, load_bank_key
    from gate_agent.errors import GateInputError
    from gate_agent.protocol import parse_bank_keys, public_key_text

    trusted = {}
    if bank_key is not None:
        text = bank_key
        if not bank_key.strip().startswith("ed25519:"):
            try:
                text = Path(bank_key).read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise click.ClickException(f"--bank-key {bank_key}: cannot read: "
                                           f"{getattr(error, 'strerror', None) or error}") from None
        try:
            trusted.update(parse_bank_keys(text))
        except GateInputError as error:
            raise InputError(f"--bank-key: {error}") from None
    registry = None
    if config_path is not None:
        ctx = Context(config_path)
        texts = []
        try:
            texts.append(public_key_text(load_bank_key(ctx.config).public_key()))
        except SigningKeyError:
            pass  # a verifying machine need not hold the private key: the registry has the public ones
        with ctx.store(readonly=True) as store:
            texts += [row["public_key"] for row in store.bank_keys()]
            registry = Registry(store)
        if texts:
            trusted.update(parse_bank_keys("\n".join(texts)))
    return trusted, registry


@click.group("punch")
def punch_group() -> None:
    """Manual corrections (a gate's punch is never edited)."""


#: How far ahead of now a manual punch may be (a clock a little fast, entries made at the gate).
MANUAL_AHEAD_MINUTES = 10


@punch_group.command("add")
@click.option("--worker", required=True)
@click.option("--site", required=True)
@click.option("--at", "at", required=True,
              help="ISO time, e.g. 2026-11-28T07:58; without an offset it is the site's local time.")
@click.option("--direction", type=click.Choice(["in", "out"]), required=True)
@click.option("--reason", required=True)
@click.option("--by", "by", required=True, help="Who enters it.")
@json_option
@with_config
def punch_add(ctx: Context, worker: str, site: str, at: str, direction: str, reason: str, by: str, as_json: bool):
    """Add a manual punch (marked manual, with who, why and when)."""
    from collector.localtime import local_text

    tz = _site_zone(ctx, site)
    with ctx.store() as store:
        punch_id = store.add_manual_punch(site=site, worker=worker, time=_manual_time(at, tz), direction=direction,
                                          reason=reason, by=by)
        row = store.punch(punch_id)
    emit(as_json, {k: row[k] for k in ("id", "site", "worker", "time", "direction", "manual_by", "manual_reason",
                                       "received_at")},
         f"manual punch {punch_id}: {worker} {direction} at {local_text(row['time'], tz)} (by {by}: {reason})")


def _manual_time(text: str, tz) -> str:
    """``--at`` as wire UTC text (without an offset: in the site's zone), refused unless attendance can
    count it: from 2020 to a few minutes from now (nobody enters a tap that has not happened)."""
    from datetime import UTC, datetime

    from collector.localtime import PLAUSIBLE_FROM
    from collector.workers.registry import parse_moment
    from gate_agent.protocol import format_time, parse_time

    moment = parse_moment(text, tz)
    latest = datetime.now(UTC) + timedelta(minutes=MANUAL_AHEAD_MINUTES)
    if moment < PLAUSIBLE_FROM:
        raise InputError(f"--at {text!r} is before 2020: not a time attendance can count")
    if parse_time(moment) > latest:
        shown = latest.astimezone(tz).isoformat(timespec="minutes") if tz else f"{format_time(latest)[:16]} UTC"
        raise InputError(f"--at {text!r} is in the future (after {shown}): a manual punch records a tap that "
                         "happened")
    return moment


@punch_group.command("void")
@click.argument("punch_id", type=int, required=False)
@click.option("--site", help="With --gate and --seq: the gate punch to void (instead of PUNCH_ID).")
@click.option("--gate", "gate_id")
@click.option("--seq", type=int)
@click.option("--reason", required=True)
@click.option("--by", "by", required=True)
@with_config
def punch_void(ctx: Context, punch_id: int | None, site, gate_id, seq, reason: str, by: str):
    """Mark a punch void: kept and shown, no longer counted. Name it by the id `collector punches`
    shows, or a gate punch by --site, --gate and --seq."""
    by_gate = (site, gate_id, seq)
    if (punch_id is None) == all(v is None for v in by_gate) or (punch_id is None and None in by_gate):
        raise click.UsageError("give PUNCH_ID, or all of --site, --gate and --seq")
    with ctx.store() as store:
        if punch_id is None:
            found = store.gate_punch_rows(site, gate_id, seq, seq)
            if not found:
                raise InputError(f"there is no punch {site}/{gate_id} seq {seq}")
            punch_id = found[0]["id"]
        row = store.void_punch(punch_id, reason=reason, by=by)
    what = f"{row['site']}/{row['gate']} seq {row['seq']}" if row["gate"] else f"manual punch at {row['site']}"
    click.echo(f"punch {punch_id} ({what}) is void (by {by}: {reason})")


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    for command in (attendance_command, payroll_command, timesheet_command, headcount_command, evidence_command,
                    verify_command, punch_group):
        main.add_command(command)
