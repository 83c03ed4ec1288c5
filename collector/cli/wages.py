"""Wages: pay terms, the monthly wage table, deductions and approval. Thin over collector/wages/table.py."""

from __future__ import annotations

from datetime import date, timedelta

import click

from collector import masking
from collector.cli.common import (
    Context,
    check_xlsx_output,
    emit,
    json_option,
    json_text,
    with_config,
    write_new_file,
)
from collector.export import to_csv
from collector.money import parse_yuan, rate_problem, yuan
from gate_agent.cli_output import say
from gate_agent.logsetup import escape_control


def _day(value: str, what: str = "--from") -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD", param_hint=what) from None


# ============================================================================== terms: workers and sites


def worker_commands(worker: click.Group) -> None:
    @worker.command("payee")
    @click.argument("worker_id", metavar="WORKER")
    @click.option("--id-number", help="Resident ID card number (shown masked, except in the payment batch).")
    @click.option("--phone", help="Contact phone (masked when shown).")
    @click.option("--account", "bank_account", help="The worker's own bank account, paid into (masked when shown).")
    @click.option("--bank", "bank_name", help="The bank of that account.")
    @click.option("--bank-code", help="The account's branch: its CNAPS code (收款行行号, 12 digits), for the batch.")
    @click.option("--bank-province", help="The branch's province (收款行省份), with --bank-code.")
    @click.option("--bank-city", help="The branch's city (收款行城市), with --bank-code.")
    @with_config
    def worker_payee(ctx: Context, worker_id: str, id_number, phone, bank_account, bank_name, bank_code,
                     bank_province, bank_city):
        """Set who a worker is as a payee (only the options given change). The branch (--bank-code,
        --bank-province, --bank-city) is set as a whole, for the account the worker has then."""
        if (bank_province or bank_city) and not bank_code:
            raise click.UsageError("--bank-province and --bank-city go with --bank-code (the branch is set as a whole)")
        with ctx.store() as store, store.transaction():
            store.set_payee(worker_id, id_number=id_number, phone=phone, bank_account=bank_account,
                            bank_name=bank_name)
            if bank_code:
                store.set_payee_routing(worker_id, bank_code=bank_code, province=bank_province, city=bank_city)
            payee = store.payee(worker_id)
        say(f"{worker_id} ({payee['name']}): ID {masking.id_number(payee['id_number']) or '-'}, phone "
            f"{masking.phone(payee['phone']) or '-'}, account {masking.account(payee['bank_account']) or '-'} "
            f"at {payee['bank_name'] or '-'}")

    @worker.command("pay")
    @click.argument("worker_id", metavar="WORKER")
    @click.option("--day-rate-yuan", help="Pay per complete day, in yuan (e.g. 350 or 350.50).")
    @click.option("--hourly-rate-yuan", help="Pay per hour worked, in yuan.")
    @click.option("--from", "effective_from", required=True, help="Local date from which it applies (YYYY-MM-DD).")
    @click.option("--by", required=True, help="Who sets it.")
    @click.option("--back-pay", "back_pay", metavar="REASON",
                  help="Terms from a date inside a period already approved: why they are paid back (shown on the "
                       "correction's line); without it such a date is refused.")
    @with_config
    def worker_pay(ctx: Context, worker_id: str, day_rate_yuan, hourly_rate_yuan, effective_from: str, by: str,
                   back_pay):
        """Set a worker's pay from a date on (earlier days keep their terms: no period is rewritten; a date
        inside an approved period only as a back pay, with its reason)."""
        if (day_rate_yuan is None) == (hourly_rate_yuan is None):
            raise click.UsageError("give exactly one of --day-rate-yuan and --hourly-rate-yuan")
        from collector.wages.limits import rate_warning

        basis, text = ("day", day_rate_yuan) if day_rate_yuan is not None else ("hour", hourly_rate_yuan)
        rate = parse_yuan(text, what="the rate")
        problem = rate_problem(basis, rate)
        if problem:
            raise click.ClickException(f"{problem}; nothing set")
        effective_from = _day(effective_from)
        with ctx.store() as store:
            used = store.first_period_with_table(worker_id)
            outcome = store.set_wage_terms(worker_id, basis=basis, rate_fen=rate, effective_from=effective_from,
                                           by=by, used_from=f"{used}-01" if used else None, back_pay=back_pay)
        click.echo(f"{worker_id}: {yuan(rate)} yuan per {basis} from {effective_from} ({outcome})"
                   + (f"; a back pay ({back_pay}): compute a correction of each approved period it reaches "
                      "(collector wages run --reason ...), its line shows it" if back_pay else ""))
        warning = rate_warning(basis, rate, ctx.config.wage_limits)
        if warning:
            say(f"  warning: {warning}", err=True)


def site_commands(site: click.Group) -> None:
    @site.command("pay-day")
    @click.argument("site_id", metavar="SITE")
    @click.option("--day", "pay_day", type=int,
                  help="Day of the month after the period on which its wages fall due (without it: the history).")
    @click.option("--employer", default="", help="Only this employer of the site (default: every employer).")
    @click.option("--payer-account", help="The general contractor's special wage account, paid from.")
    @click.option("--payer-name", help="That account's holder.")
    @click.option("--payer-bank", help="That account's bank.")
    @click.option("--from", "effective_from", help="Local date from which it applies.")
    @click.option("--by", help="Who sets it.")
    @json_option
    @with_config
    def site_pay_day(ctx: Context, site_id, pay_day, employer, payer_account, payer_name, payer_bank,
                     effective_from, by, as_json: bool):
        """Set a site's monthly pay day and the special wage account its wages are paid from; without --day,
        show every setting ever recorded (a change is a new row, the earlier kept; an approved wage table
        keeps the payer it was approved with)."""
        if pay_day is None:
            if any(v for v in (payer_account, payer_name, payer_bank, effective_from, by)):
                raise click.UsageError("setting the pay day needs --day, --from and --by")
            _pay_history(ctx, site_id, employer, as_json)
            return
        if effective_from is None or by is None:
            raise click.UsageError("setting the pay day needs --from and --by")
        effective_from = _day(effective_from)
        with ctx.store() as store:
            earlier = store.set_site_pay(site_id, pay_day=pay_day, employer=employer, payer_account=payer_account,
                                         payer_name=payer_name, payer_bank=payer_bank, effective_from=effective_from,
                                         by=by)
        shown = {"site": site_id, "employer": employer, "pay_day": pay_day, "effective_from": effective_from,
                 "payer_account": masking.account(payer_account), "payer_name": payer_name, "payer_bank": payer_bank,
                 "replaces": _pay_row(earlier) if earlier else None}
        emit(as_json, shown, f"{site_id}{' ' + employer if employer else ''}: wages due on day {pay_day} of the next "
                             f"month, paid from {_payer(shown)}, from {effective_from}"
             + (f"; it takes the place of the setting for that date recorded {earlier['added_at']} by "
                f"{earlier['added_by']} (kept in the history)" if earlier else ""))

    def _pay_history(ctx: Context, site_id: str, employer: str, as_json: bool) -> None:
        with ctx.store(readonly=True) as store:
            if store.site(site_id) is None:
                raise click.ClickException(f"site {site_id} does not exist")
            rows = [_pay_row(r) for r in store.site_pay(site_id) if not employer or r["employer"] == employer]
        # The row in force from a date is the last recorded for it; the others were replaced.
        for n, row in enumerate(rows):
            later = rows[n + 1] if n + 1 < len(rows) else None
            row["replaced"] = bool(later and (later["employer"], later["effective_from"])
                                   == (row["employer"], row["effective_from"]))
        emit(as_json, rows, "\n".join(
            f"{r['employer'] or '(every employer)'}: from {r['effective_from']} day {r['pay_day']}, paid from "
            f"{_payer(r)}; set {r['added_at']} by {r['added_by']}" + (" (replaced)" if r["replaced"] else "")
            for r in rows) or f"{site_id}: no pay day set")

    def _pay_row(row: dict) -> dict:
        return {key: row[key] for key in ("employer", "effective_from", "pay_day", "payer_name", "payer_bank",
                                          "added_at", "added_by")} | {"payer_account": masking.account(row["payer_account"])}

    def _payer(row: dict) -> str:
        return f"{row['payer_account'] or '-'} ({row['payer_name'] or '-'}, {row['payer_bank'] or '-'})"

    @site.command("work-calendar")
    @click.argument("site_id", metavar="SITE")
    @click.option("--rest", "rest", multiple=True, metavar="DATE",
                  help="A local date that is a rest day at the site (repeat for several).")
    @click.option("--work", "work", multiple=True, metavar="DATE",
                  help="A local date that is a working day at the site (repeat for several).")
    @click.option("--national", "national", multiple=True, metavar="DATE",
                  help="A date back to the national calendar (the site's own setting for it undone).")
    @click.option("--reason", help="Why (a local holiday, the site closed, the State Council's notice for a year).")
    @click.option("--by", help="Who sets it.")
    @click.option("--year", type=int, help="Also list that year's holidays, make-up working days and the site's own days.")
    @json_option
    @with_config
    def site_work_calendar(ctx: Context, site_id, rest, work, national, reason, by, year, as_json: bool):
        """A site's own working days over the national calendar (chinese-calendar: holidays and the make-up
        working days, 调休): a pay day on a rest day is paid on the working day before it (Art. 14). Without
        --rest, --work or --national, show every day the site has set (a change is a new row, the earlier kept)."""
        from collector.wages import workdays

        given = [(day, "rest") for day in rest] + [(day, "work") for day in work] + \
            [(day, "national") for day in national]
        if given:
            if not (reason or "").strip() or not (by or "").strip():
                raise click.UsageError("setting a site's days needs --reason and --by")
            days = [(_day(day, f"--{kind}"), kind) for day, kind in given]
            if len({day for day, _ in days}) != len(days):
                raise click.UsageError("a date is given twice")
            with ctx.store() as store, store.transaction():
                for day, kind in days:
                    store.set_work_day(site_id, day=day, kind=kind, reason=reason, by=by)
        with ctx.store(readonly=True) as store:
            if store.site(site_id) is None:
                raise click.ClickException(f"site {site_id} does not exist")
            rows = store.work_days(site_id)
            calendar = workdays.WorkCalendar.of(store, site_id)
        first, last = workdays.library_years()
        listed = []
        if year is not None:
            if not 2000 <= year <= 2100:
                raise click.BadParameter(f"{year} is not a year between 2000 and 2100", param_hint="--year")
            day, listed = date(year, 1, 1), []
            while day.year == year:
                verdict = calendar.day(day)
                if verdict.source == "site" or verdict.why != workdays.WEEKDAYS[day.weekday()]:  # not an ordinary day
                    listed.append({"date": day.isoformat(), "working": verdict.working, "why": verdict.why,
                                   "source": verdict.source})
                day += timedelta(days=1)
        warning = workdays.unknown_warning(calendar, [date(year, 1, 1)]) if year is not None else ""
        result = {"site": site_id, "national_calendar": workdays.library_name(), "national_years": [first, last],
                  "days": [{k: r[k] for k in ("day", "kind", "reason", "added_at", "added_by")} for r in rows],
                  "year": listed, "warnings": [warning] if warning else []}
        if as_json:
            click.echo(json_text(result))
            return
        for n, row in enumerate(rows):
            replaced = n + 1 < len(rows) and rows[n + 1]["day"] == row["day"]
            say(f"{row['day']} {row['kind']:8} {row['reason']}; set {row['added_at']} by {row['added_by']}"
                + (" (replaced)" if replaced else ""))
        if not rows:
            say(f"{site_id}: no days of its own; the national calendar only")
        say(f"national calendar: {workdays.library_name()}, {first} to {last}")
        for entry in listed:
            say(f"  {entry['date']} {'working' if entry['working'] else 'rest':7} {entry['why']}")
        if warning:
            say(f"  warning: {warning}")

    @site.command("minimum-wage")
    @click.argument("site_id", metavar="SITE")
    @click.option("--hourly-yuan", required=True, help="The local minimum hourly wage (part-time).")
    @click.option("--monthly-yuan", required=True, help="The local minimum monthly wage.")
    @click.option("--from", "effective_from", required=True)
    @click.option("--by", required=True)
    @with_config
    def site_minimum_wage(ctx: Context, site_id, hourly_yuan, monthly_yuan, effective_from, by):
        """Set the local minimum wage in force at a site from a date on."""
        hourly, monthly = parse_yuan(hourly_yuan, what="--hourly-yuan"), parse_yuan(monthly_yuan, what="--monthly-yuan")
        with ctx.store() as store:
            store.set_minimum_wage(site_id, hourly_fen=hourly, monthly_fen=monthly,
                                   effective_from=_day(effective_from), by=by)
        click.echo(f"{site_id}: minimum wage {yuan(hourly)} yuan an hour, {yuan(monthly)} a month, from {effective_from}")


# ============================================================================== the wage table


@click.group("wages")
def wages_group() -> None:
    """The monthly wage table (wage payment ledger) computed from final attendance."""


@wages_group.command("run")
@click.option("--site", required=True)
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.option("--by", required=True, help="Who computes it.")
@click.option("--reason", help="Why a new version of an approved table (a correction).")
@click.option("--draft", is_flag=True, help="Compute a period that is not final yet, to look at (never paid).")
@json_option
@with_config
def wages_run(ctx: Context, site: str, period: str, by: str, reason, draft: bool, as_json: bool):
    """Compute the period's table from final attendance and keep it as a new version."""
    from collector.wages.limits import line_warnings
    from collector.wages.table import run

    with ctx.store() as store:
        table = run(store, site, period, by=by, reason=reason, draft=draft,
                    grace=timedelta(hours=ctx.config.final_grace_hours), limits=ctx.config.wage_limits)
        paid_on = _paid_on(store, table)
        _as_now(store, table)
    warnings = ([paid_on.warning] if paid_on and paid_on.warning else []) \
        + line_warnings(table["lines"], ctx.config.wage_limits)
    _show(table, as_json=as_json, as_csv=False, paid_on=paid_on, warnings=warnings)


def _as_now(store, table: dict) -> None:
    """What a table's lines do not keep, as the registry says now: each worker's team and trade (one read
    of the table's workers), and the site's zone, in which its times are shown."""
    people = {p["worker"]: p for p in store.people_named(line["worker"] for line in table["lines"])}
    for line in table["lines"]:
        person = people.get(line["worker"]) or {}
        line["team"], line["trade"] = person.get("team"), person.get("trade")
    table["timezone"] = (store.site(table["site"]) or {}).get("timezone")


def _paid_on(store, table: dict):
    """The day the table's pay day is paid on (Art. 14: the working day before a rest day or holiday)."""
    from collector.wages.workdays import WorkCalendar, pay_date

    if not table["pay_day"]:
        return None
    return pay_date(WorkCalendar.of(store, table["site"]), date.fromisoformat(table["pay_day"]))


@wages_group.command("show")
@click.option("--site", required=True)
@click.option("--period", required=True)
@click.option("--version", type=int, help="An earlier version (default: the latest).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV for spreadsheets.")
@click.option("--xlsx", "xlsx_file", type=click.Path(dir_okay=False),
              help="Write an XLSX workbook instead (Chinese headers, amounts as exact yuan; a new file, 0600).")
@with_config
def wages_show(ctx: Context, site: str, period: str, version: int | None, as_json: bool, as_csv: bool,
               xlsx_file: str | None):
    """Show a version of the period's table (ID numbers, phones and accounts masked)."""
    from collector.wages.table import WageError, period_bounds

    check_xlsx_output(xlsx_file, as_json, as_csv)
    period_bounds(period)
    with ctx.store(readonly=True) as store:
        table = store.wage_table(site, period, version)
        paid_on = _paid_on(store, table) if table is not None else None
        if table is not None:
            _as_now(store, table)
    if table is None:
        raise WageError(f"{site} {period} has no wage table" + (f" version {version}" if version else ""))
    if xlsx_file is not None:
        from collector.export import wage_table_sheet
        from collector.workbook import workbook_bytes

        write_new_file(xlsx_file, workbook_bytes([wage_table_sheet(table, [shown_line(line) for line in table["lines"]])]))
        click.echo(f"{xlsx_file}: {site} {period} version {table['version']}, {len(table['lines'])} line(s)")
        return
    _show(table, as_json=as_json, as_csv=as_csv, paid_on=paid_on,
          warnings=[paid_on.warning] if paid_on and paid_on.warning else [])


@wages_group.command("approve")
@click.option("--site", required=True)
@click.option("--period", required=True)
@click.option("--by", required=True, help="Who approves (not who computed the version; one of [wages] approvers if set).")
@click.option("--override", "overrides", multiple=True, metavar="WORKER=REASON",
              help="Hold a line that needs a decision, and why (repeat per line; held lines are not paid).")
@click.option("--overrides-file", type=click.Path(exists=True, dir_okay=False),
              help="WORKER=REASON lines (UTF-8; '#' comments and blank lines skipped), as --override.")
@click.option("--override-disputes", is_flag=True,
              help="Approve although workers' disputes of the period are open (needs --reason; recorded).")
@click.option("--reason", help="Why the open disputes are overridden (with --override-disputes).")
@click.option("--version", type=int,
              help="The version looked at (it must be the latest that is not a draft; default: that one).")
@with_config
def wages_approve(ctx: Context, site: str, period: str, by: str, overrides, overrides_file, override_disputes: bool,
                  reason, version: int | None):
    """Freeze the latest version that is not a draft for payment (a correction later is a new version; this
    one is kept); a draft computed only to look stays out of the way. Four eyes: whoever computed the
    version cannot approve it."""
    from collector.wages.table import approve

    if override_disputes and not (reason or "").strip():
        raise click.UsageError("--override-disputes needs --reason: why pay before the disputes are answered")
    if reason is not None and not override_disputes:
        raise click.UsageError("--reason goes with --override-disputes")
    held = _overrides(overrides, overrides_file)
    with ctx.store() as store:
        table = approve(store, site, period, by=by, overrides=held,
                        override_disputes=reason if override_disputes else None,
                        approvers=ctx.config.wage_approvers, version=version)
        paid_on = _paid_on(store, table)
    payable = [line for line in table["lines"] if line["status"] == "payable"]
    click.echo(f"{site} {period} version {table['version']} approved by {table['approved_by']} (computed by "
               f"{table['computed_by']}): {len(payable)} line(s), "
               f"{yuan(sum(line['net_fen'] for line in payable))} yuan net, due "
               f"{paid_on.text() if paid_on else table['pay_day']}, paid from "
               f"{masking.account(table['payer_account']) or 'no payer account (set one, then approve a new version)'}"
               + (f"; open disputes overridden: {reason}" if override_disputes else ""))
    for line in table["lines"]:
        if line["status"] != "payable":
            say(f"  held: {line['worker']} {yuan(line['net_fen'])} yuan, not paid: {line.get('override')}")
    if paid_on and paid_on.warning:
        say(f"  warning: {paid_on.warning}")


#: The most an overrides file may hold: reasons for every line of a large site, not a stray dump.
OVERRIDES_FILE_MAX_BYTES = 1 << 20


def _overrides(given: tuple[str, ...], path: str | None) -> dict[str, str]:
    """worker -> reason from --override WORKER=REASON and an overrides file; one line, one reason."""
    entries = [("--override", text) for text in given]
    if path is not None:
        with open(path, "rb") as file:
            data = file.read(OVERRIDES_FILE_MAX_BYTES + 1)
        if len(data) > OVERRIDES_FILE_MAX_BYTES:
            raise click.UsageError(f"{path} is over {OVERRIDES_FILE_MAX_BYTES} bytes: not an overrides file")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise click.UsageError(f"{path} is not UTF-8 text") from None
        entries += [(f"{path} line {n}", line) for n, line in enumerate(text.splitlines(), start=1)
                    if line.strip() and not line.lstrip().startswith("#")]
    found: dict[str, str] = {}
    for where, text in entries:
        worker, sep, why = text.partition("=")
        worker, why = worker.strip(), why.strip()
        if not sep or not worker or not why:
            raise click.UsageError(f"{where}: {escape_control(text[:60])!r} is not WORKER=REASON (each held line "
                                   "takes its own reason)")
        if worker in found:
            raise click.UsageError(f"{where}: {escape_control(worker)} has a reason already: one reason per line")
        found[worker] = why
    return found


@wages_group.command("history")
@click.option("--site", required=True)
@click.option("--period", help="One month (default: every month).")
@json_option
@with_config
def wages_history(ctx: Context, site: str, period, as_json: bool):
    """Every version of the site's tables: who computed and approved each, when and why."""
    with ctx.store(readonly=True) as store:
        tables = store.wage_tables(site, period)
        site_row = store.site(site) if tables else None
        overrides = store.dispute_overrides(site, period) if store.has("dispute_answers") else []
        held: dict[int, dict[str, str]] = {}
        for row in store.line_overrides(site, period):
            held.setdefault(row["table_id"], {})[row["worker"]] = row["override"]
    for table in tables:
        table["held"] = held.get(table["id"], {})
        table["payer_account"] = masking.account(table.get("payer_account"))
        table["dispute_overrides"] = [o for o in overrides
                                      if (o["period"], o["table_version"]) == (table["period"], table["version"])]
    from collector.cli.common import site_time
    from collector.localtime import zone

    tz = zone(site_row["timezone"]) if site_row else None

    def at(utc_text: str) -> str:
        return site_time(utc_text, tz) if tz else utc_text

    emit(as_json, tables, (f"{site}: times in {site_row['timezone']} (the site's time)\n" if tz else "") + "\n".join(
        f"{t['period']} v{t['version']} {t['status']:10} computed {at(t['computed_at'])} by {t['computed_by']}"
        + (f" ({t['reason']})" if t["reason"] else "")
        + (f"; approved {at(t['approved_at'])} by {t['approved_by']}" if t["approved_at"] else "")
        + (f", paid from {t['payer_account']}" if t["payer_account"] else "")
        + (f"; override: {t['override']}" if t["override"] and not t["held"] else "")
        + "".join(f"; held {worker}: {why}" for worker, why in t["held"].items())
        + "".join(f"; open disputes {', '.join(o['refs'])} overridden by {o['by']}: {o['reason']}"
                  for o in t["dispute_overrides"]) for t in tables) or f"{site}: no wage tables")


@wages_group.command("deduct")
@click.option("--site", required=True)
@click.option("--period", required=True)
@click.option("--worker", "worker_id", required=True)
@click.option("--item", required=True, help="What is deducted (e.g. 个人所得税, social insurance).")
@click.option("--amount-yuan", required=True)
@click.option("--reason", required=True)
@click.option("--by", required=True)
@json_option
@with_config
def wages_deduct(ctx: Context, site, period, worker_id, item, amount_yuan, reason, by, as_json: bool):
    """Record a deduction from a worker's wages for a period (shown on the line and the slip); the same
    item and amount recorded already for the worker and period is warned of."""
    from collector.wages import deductions

    amount = parse_yuan(amount_yuan, what="--amount-yuan")
    with ctx.store() as store:
        row = deductions.add(store, site=site, period=period, worker=worker_id, item=item, amount_fen=amount,
                             reason=reason, by=by)
    if as_json:
        click.echo(json_text(row))
        return
    say(f"{site} {period} {worker_id}: deduction {row['id']}, {row['item']} {yuan(amount)} yuan deducted "
        f"({row['reason']}); run the table again")
    for same in row["identical"]:
        say(f"warning: the same deduction is recorded already: deduction {same['id']}, {same['item']} "
            f"{yuan(same['amount_fen'])} yuan ({same['reason']}), {same['added_at']} by {same['added_by']}; if it was "
            f"entered twice, reverse one: collector wages reverse-deduction {row['id']} --reason ... --by ...",
            err=True)


@wages_group.command("reverse-deduction")
@click.argument("deduction_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why it is taken back.")
@click.option("--by", required=True, help="Who takes it back.")
@json_option
@with_config
def wages_reverse_deduction(ctx: Context, deduction_id: int, reason: str, by: str, as_json: bool):
    """Take a deduction back (kept, shown reversed with who and why); the next version of the period's
    table no longer deducts it."""
    from collector.wages import deductions

    with ctx.store() as store:
        row = deductions.reverse(store, deduction_id, reason=reason, by=by)
    emit(as_json, row, f"{row['site']} {row['period']} {row['worker']}: deduction {row['id']} ({row['item']} "
                       f"{yuan(row['amount_fen'])} yuan, {row['reason']}) reversed by {row['reversed_by']}: "
                       f"{row['reversed_reason']}; run the table again"
                       + (" (a correction: --reason)" if _approved(ctx, row["site"], row["period"]) else ""))


def _approved(ctx: Context, site: str, period: str) -> bool:
    with ctx.store(readonly=True) as store:
        return any(t["status"] == "approved" for t in store.wage_tables(site, period))


@wages_group.command("deductions")
@click.option("--site", required=True)
@click.option("--period", required=True)
@click.option("--worker", "worker_id", help="One worker (default: every worker).")
@json_option
@with_config
def wages_deductions(ctx: Context, site, period, worker_id, as_json: bool):
    """Every deduction of the period, those reversed too: id, item, amount, reason, source, who and when."""
    from collector.wages.table import period_bounds

    period_bounds(period)
    with ctx.store(readonly=True) as store:
        rows = store.deductions(site, period, worker=worker_id, with_reversed=True)
    emit(as_json, rows, "\n".join(
        f"{r['id']:5} {r['worker']:8} {escape_control(r['item'])} {yuan(r['amount_fen']):>10} yuan "
        f"({escape_control(r['reason'])}; {escape_control(r['source'])}) {r['added_at']} by {r['added_by']}"
        + (f"; REVERSED {r['reversed_at']} by {r['reversed_by']}: {escape_control(r['reversed_reason'])}"
           if r.get("reversed_at") else "") for r in rows) or f"{site} {period}: no deductions")


@wages_group.command("terms")
@click.option("--worker", "worker_id", help="One worker (default: every worker).")
@json_option
@with_config
def wages_terms(ctx: Context, worker_id, as_json: bool):
    """Pay terms with their history: each rate and the date it applies from."""
    with ctx.store(readonly=True) as store:
        rows = store.wage_terms(worker_id)
    emit(as_json, rows, "\n".join(f"{r['worker']:10} {yuan(r['rate_fen']):>10} yuan per {r['basis']:4} from "
                                  f"{r['effective_from']} (set by {r['added_by']})"
                                  + "".join(f"; back pay through {b['through']} ({b['reason']}), set {b['at']} by {b['by']}"
                                            for b in r.get("back_pay") or ()) for r in rows) or "no pay terms")


@wages_group.command("import-sheet")
@click.option("--site", required=True)
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.argument("sheet_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--employer", default="", help="The employer (labour subcontractor) whose sheet it is.")
@click.option("--worksheet", "--sheet", "sheet", metavar="NAME",
              help="The worksheet of a workbook to read (needed when several have a header row).")
@click.option("--by", required=True, help="Who imports it.")
@click.option("--take-deductions", is_flag=True,
              help="Record the deductions the sheet claims as the period's (source: sheet <sha256 prefix>).")
@json_option
@with_config
def wages_import_sheet(ctx: Context, site: str, period: str, sheet_file: str, employer: str, sheet: str | None,
                       by: str, take_deductions: bool, as_json: bool):
    """Keep an employer's wage sheet (CSV or XLSX) to check against the gates; any bad row refuses the file."""
    from collector.wages.check import SheetRefused, import_sheet
    from collector.wages.sheet import SheetError

    try:
        with ctx.store() as store:
            result = import_sheet(store, sheet_file, site=site, period=period, employer=employer, by=by,
                                  take_deductions=take_deductions, sheet=sheet)
    except SheetError as error:  # it names the file
        raise click.ClickException(f"{error}; nothing imported") from None
    except SheetRefused as refused:
        for line in refused.shown():
            say(line, err=True)
        raise
    if as_json:
        click.echo(json_text(result))
        return
    say(_imported(result, sheet_file))


def _where_in(result: dict) -> str:
    return "row" if result["format"] == "xlsx" else "line"


def _imported(result: dict, sheet_file: str) -> str:
    head = (f"{sheet_file} was imported before as sheet {result['id']}: nothing changed" if result["already_imported"]
            else f"sheet {result['id']}: {sheet_file} ({result['format']}, {result['encoding']}), {result['lines']} "
                 f"line(s), {yuan(result['amount_fen'])} yuan claimed")
    lines = [head]
    if result["ignored_columns"]:
        lines.append("  ignored column(s): " + ", ".join(escape_control(c) for c in result["ignored_columns"]))
    lines += [f"  {escape_control(note)}" for note in result["notes"]]
    taken = result["deductions_taken"]
    if result["deductions_fen"]:
        if taken and taken["recorded"]:
            lines.append(f"  deductions recorded for the period: {yuan(taken['recorded_fen'])} yuan on "
                         f"{taken['recorded']} line(s); run the table again")
        elif result["deductions_taken_at"]:
            lines.append(f"  its deductions were recorded on {result['deductions_taken_at']} by "
                         f"{result['deductions_taken_by']}")
        else:
            lines.append(f"  deductions claimed: {yuan(result['deductions_fen'])} yuan, not recorded "
                         "(--take-deductions records them as the period's)")
        if taken and taken["not_registered"]:
            lines.append("  not recorded, not registered workers: " + ", ".join(taken["not_registered"]))
    for line in result.get("deductions_over_half", []):
        lines.append(f"  a decision: {line['worker']} ({_where_in(result)} {line['row']}) has {yuan(line['deductions_fen'])} "
                     f"yuan deducted of {yuan(line['amount_fen'])}, more than half (taken as the period's, the wage "
                     "line is held until a person approves over it)")
    lines.append(f"  check it: collector wages check --site {result['site']} --period {result['period']}"
                 + (f" --employer {result['employer']}" if result["employer"] else ""))
    return "\n".join(lines)


@wages_group.command("check")
@click.option("--site", required=True)
@click.option("--period", required=True)
@click.option("--employer", help="The employer whose sheet (when several employers sent one).")
@click.option("--sheet", "sheet_id", type=int, help="An earlier sheet (default: the latest).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="The findings as CSV for spreadsheets.")
@with_config
def wages_check(ctx: Context, site: str, period: str, employer, sheet_id, as_json: bool, as_csv: bool):
    """Check the employer's wage sheet against the gates' verified days and the latest wage table."""
    from collector.wages.check import check

    with ctx.store(readonly=True) as store:
        result = check(store, site, period, employer=employer, sheet_id=sheet_id,
                       grace=timedelta(hours=ctx.config.final_grace_hours))
    if as_json:
        click.echo(json_text(result))
        return
    if as_csv:
        rows = [{**finding, "site": site, "period": period, "sheet": result["sheet"]["id"]}
                for finding in result["findings"]]
        click.echo(to_csv(rows, CHECK_CSV_COLUMNS), nl=False)
        return
    sheet, table = result["sheet"], result["table"]
    say(f"{site} {period}: sheet {sheet['id']} {escape_control(sheet['file_name'])} ({sheet['format']}, {sheet['encoding']}; sha256 "
        f"{sheet['sha256'][:16]}; imported {sheet['imported_at']} by {sheet['imported_by']}) against the gates "
        f"and wage table version {table['version']} ({table['status']})")
    for note in result["notes"]:
        say(f"  note: {note}")
    for f in result["findings"]:
        at = f"{'row' if sheet['format'] == 'xlsx' else 'line'} {f['row']}" if f["row"] is not None else "-"
        # One finding, one line: a name from the file may hold any character, line feeds included.
        name = escape_control((f["name"] or "")[:12])
        say(f"  {f['kind']:15} {f['worker']:8} {name:12} {at:9} sheet: {escape_control(f['sheet_says'])} | "
            f"gates: {escape_control(f['gates_say'])}")
    counts = ", ".join(f"{kind} {n}" for kind, n in result["summary"].items() if n)
    say(f"{len(result['findings'])} finding(s): {counts}" if counts
        else f"no findings: the sheet's {sheet['lines']} line(s) agree with the gates and the wage table")


#: Columns of `wages check --csv` (values from the employer's file neutralised).
CHECK_CSV_COLUMNS = ("site", "period", "sheet", "kind", "worker", "name", "row", "sheet_says", "gates_say")


#: Columns of `wages show --csv` (the table as a spreadsheet; masked personal data).
CSV_COLUMNS = ("site", "period", "version", "worker", "name", "employer", "team", "trade", "id_number", "bank_account",
               "days",
               "worked_minutes", "basis", "rate_yuan", "gross_yuan", "deductions_yuan", "net_yuan", "status", "flags")


def shown_line(line: dict) -> dict:
    """A line as shown anywhere but the payment batch: personal data masked, money in fen and yuan."""
    from collector.wages.table import SAME_PAYEE

    shown = {k: line[k] for k in ("worker", "name", "employer", "days", "worked_minutes", "basis", "rate_fen",
                                  "gross_fen", "deductions_fen", "net_fen", "status", "flags")}
    # The worker's team and trade now (the line does not keep them; ``_as_now``), None where unknown.
    shown["team"], shown["trade"] = line.get("team"), line.get("trade")
    shown["id_number"] = masking.id_number(line["id_number"])
    shown["phone"] = masking.phone(line["phone"])
    shown["bank_account"] = masking.account(line["bank_account"])
    shown["bank_name"] = line["bank_name"]
    shown["pay_day"] = line["detail"].get("pay_day")
    shown["segments"] = line["detail"]["segments"]
    shown["deductions"] = line["detail"]["deductions"]
    shown["days_to_decide"] = line["detail"]["days_to_decide"]
    shown["override"] = line.get("override")  # held at the approval: why (None before four eyes was recorded)
    shown["back_pay"] = line["detail"].get("back_pay", [])  # terms set into an approved period, and why
    shown["deductions_reversed"] = line["detail"].get("deductions_reversed", [])
    for key in ("standard_minutes", "standard_pay_fen", "minimum_fen"):  # tables kept before these have none
        shown[key] = line["detail"].get(key)
    for detail in SAME_PAYEE.values():  # tables kept before these were flagged have none
        shown[detail] = line["detail"].get(detail, [])
    return shown


def _show(table: dict, *, as_json: bool, as_csv: bool, paid_on=None, warnings: list[str] = ()) -> None:
    from collector.wages.table import FLAG_WORDS, SAME_PAYEE

    lines = [shown_line(line) for line in table["lines"]]
    head = {k: table[k] for k in ("site", "period", "version", "status", "final", "pay_day", "computed_at",
                                  "computed_by", "reason", "approved_at", "approved_by", "override")}
    # The day the pay day is paid on, as the site's working-day calendar says now (Art. 14).
    head["paid_on"] = paid_on.date.isoformat() if paid_on else None
    head["paid_on_why"] = paid_on.why if paid_on else ""
    head["warnings"] = list(warnings)
    if as_json:
        click.echo(json_text({**head, "lines": lines}))
        return
    if as_csv:
        rows = [{**line, "site": table["site"], "period": table["period"], "version": table["version"],
                 "rate_yuan": yuan(line["rate_fen"]) if line["rate_fen"] is not None else "",
                 "gross_yuan": yuan(line["gross_fen"]), "deductions_yuan": yuan(line["deductions_fen"]),
                 "net_yuan": yuan(line["net_fen"])} for line in lines]  # to_csv joins the flags
        click.echo(to_csv(rows, CSV_COLUMNS), nl=False)
        return
    from collector.cli.display import pad, width
    from collector.localtime import local_text, zone

    tz = zone(table["timezone"]) if table.get("timezone") else None

    def at(utc_text: str) -> str:
        """A time the table was run or approved, in the site's time (the zone named once, in the heading)."""
        shown = local_text(utc_text, tz) if tz else None
        return shown[:16].replace("T", " ") if shown else utc_text

    say(f"{table['site']} {table['period']} version {table['version']}: {table['status']}, due "
        f"{paid_on.text() if paid_on else table['pay_day'] or '?'}"
        + ("" if table["final"] else " (NOT FINAL: a draft, never paid)")
        + f" (run by {table['computed_by']} at {at(table['computed_at'])}"
        + (f"; approved by {table['approved_by']} at {at(table['approved_at'])}" if table["approved_at"] else "")
        + (f"; {table['timezone']} time)" if tz else ")"))
    # Names (and teams, when the site records them) padded by the columns they take on screen.
    name_width = min(16, max([width(line["name"][:16]) for line in lines] + [0]))
    teams = any(line["team"] or line["trade"] for line in lines)
    team_width = max([width(f"{line['team'] or '-'}/{line['trade'] or '-'}") for line in lines] + [0]) if teams else 0
    for line in lines:
        rate = f"{yuan(line['rate_fen'])}/{line['basis']}" if line["rate_fen"] is not None else "no terms"
        team = " " + pad(f"{line['team'] or '-'}/{line['trade'] or '-'}", team_width) if teams else ""
        say(f"  {line['worker']:8} {pad(line['name'][:16], name_width)}{team} {line['days']:3} d "
            f"{line['worked_minutes'] / 60:7.2f} h "
            f"{rate:>14} gross {yuan(line['gross_fen']):>10} deduct {yuan(line['deductions_fen']):>8} "
            f"net {yuan(line['net_fen']):>10} {line['status']}" + (f" [{','.join(line['flags'])}]" if line["flags"] else ""))
        for day in line["days_to_decide"]:
            say(f"      to decide: {day['date']} {day['why']}")
        for flag, detail in SAME_PAYEE.items():
            if line[detail]:
                say(f"      to decide: {FLAG_WORDS[flag][1]}: {', '.join(line[detail])} ({flag})")
        if "below_minimum" in line["flags"] and line["minimum_fen"] is not None:
            say(f"      below the minimum wage: {min(line['standard_minutes'], 174 * 60) / 60:.2f} h of standard time paid "
                f"{yuan(line['standard_pay_fen'])} yuan (overtime kept out), the minimum for it "
                f"{yuan(line['minimum_fen'])}")
        if line["override"]:
            say(f"      held at the approval: {line['override']}")
        for pay in line["back_pay"]:
            earlier = pay["earlier"]
            say(f"      back pay: {yuan(pay['rate_fen'])}/{pay['basis']} from {pay['from']}"
                + (f" instead of {yuan(earlier['rate_fen'])}/{earlier['basis']}" if earlier else "")
                + f" ({pay['reason']}; set {pay['at']} by {pay['by']})")
        for taken in line["deductions_reversed"]:
            say(f"      deduction reversed: {taken['id']} {taken['item']} {yuan(taken['amount_fen'])} "
                f"({taken['reversed_reason']}; {taken['reversed_at']} by {taken['reversed_by']})")
    total = sum(line["net_fen"] for line in lines if line["status"] == "payable")
    say(f"{len(lines)} line(s); payable net {yuan(total)} yuan")
    for warning in warnings:
        say(f"  warning: {warning}")


@wages_group.command("slip")
@click.option("--worker", "worker_id", required=True)
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.option("--site", help="The site (needed only when the worker is in several sites' tables that month).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The HTML page to write (a new file, mode 0600; never overwritten).")
@json_option
@with_config
def wages_slip(ctx: Context, worker_id: str, period: str, site, out: str, as_json: bool):
    """The worker's wage slip (工资清单) for a month: a printable page in Chinese and English with each day,
    the rate, gross, deductions, net, the payment and the id of the days the bank-signed evidence states."""
    import os

    from gate_agent.extras import require

    require("jinja2", "bank")  # the slip's template; a gate's install has none
    from collector.wages.slip import render, slip

    if os.path.lexists(out):
        raise click.ClickException(f"{out} already exists; choose another name (nothing is overwritten)")
    with ctx.store(readonly=True) as store:
        data = slip(store, worker_id, period, site=site, grace=timedelta(hours=ctx.config.final_grace_hours))
    write_new_file(out, render(data).encode("utf-8"))
    if as_json:
        click.echo(json_text({"file": out, **data}))
        return
    line = data["line"]
    say(f"{out}: wage slip of {worker_id} for {period} at {data['site']}, table version {data['table']['version']} "
        f"({data['table']['status']}{'' if data['table']['final'] else ', NOT FINAL: a draft'}): net "
        f"{yuan(line['net_fen'])} yuan, {data['payment_status'][0]}; days id {data['evidence']['days_id'][:16]}")
    if data["differs"]:
        say("  note: the attendance has changed since the table was computed (the slip says so)")


# ============================================================================== payment and arrears


@wages_group.command("batch")
@click.option("--site", required=True)
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "pain001"]), required=True,
              help="The bank's bulk-payment CSV or XLSX (text cells for account and ID numbers), or ISO 20022 "
                   "pain.001.001.09.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The file to write (mode 0600: it holds account and ID numbers; never overwritten).")
@click.option("--encoding", type=click.Choice(["utf-8", "gbk"]), default="utf-8", show_default=True,
              help="The CSV's encoding (UTF-8 with a BOM, or GBK for banks that want it).")
@click.option("--template", "template_file", type=click.Path(exists=True, dir_okay=False),
              help="The bank's column layout for CSV or XLSX (a TOML file; default: the common layout).")
@click.option("--by", required=True, help="Who writes the batch (recorded with the file's name and digest).")
@click.option("--again", "again", metavar="BATCH_ID",
              help="Write this batch of the period again (without its withdrawn credits), whatever is owed now.")
@json_option
@with_config
def wages_batch(ctx: Context, site: str, period: str, fmt: str, out: str, encoding: str, template_file, by: str, again,
                as_json: bool):
    """Write the bank's bulk credit transfer for the period's approved table: one credit per payable line
    for what is still unpaid of it. Asked again with nothing more owed, it writes the same batch again.
    Every file written is recorded: who, when, its name, format and SHA-256 (`collector wages batches`)."""
    import hashlib
    import os

    from collector.wages import batchtemplate
    from collector.wages.batchfile import render
    from collector.wages.limits import batch_warnings
    from collector.wages.payments import make_batch
    from collector.wages.table import flag_text

    if os.path.lexists(out):
        raise click.ClickException(f"{out} already exists; choose another name (nothing is overwritten)")
    if template_file and fmt == "pain001":
        raise click.UsageError("--template is a CSV or XLSX layout; a pain.001 has the ISO 20022 one")
    template = batchtemplate.load(template_file) if template_file else batchtemplate.DEFAULT
    with ctx.store() as store, store.transaction():
        batch = make_batch(store, site, period, by=by, again=again)
        routing = store.payee_routing(c["worker"] for c in batch.credits) if store.has("payee_routing") else {}
        data = render(batch, fmt, timezone=store.site(site)["timezone"], encoding=encoding, template=template,
                      routing=routing)
        digest = hashlib.sha256(data).hexdigest()
        store.add_wage_batch_file(batch.batch["batch_id"], by=by, fmt=fmt, file=os.path.abspath(out), sha256=digest)
        write_new_file(out, data)
    head = batch.batch
    summary = {"file": out, "format": fmt, "batch_id": head["batch_id"], "new": batch.new, "site": site,
               "period": period, "table_version": head["table_version"], "credits": len(head["payments"]),
               "total_fen": batch.total_fen, "execution_date": head["execution_date"],
               "execution_rule": head["execution_rule"], "made_at": head["made_at"], "made_by": head["made_by"],
               "written_by": by, "sha256": digest,
               "payments": [{k: p[k] for k in ("end_to_end_id", "worker", "amount_fen", "status")}
                            for p in head["payments"]],
               "held": batch.held, "overpaid": batch.overpaid, "warned": batch.warned,
               "withdrawn": [{k: p[k] for k in ("end_to_end_id", "worker", "amount_fen", "undone_at", "undone_by",
                                                "undone_reason")} for p in batch.withdrawn],
               "pay_day": batch.pay_date.due.isoformat() if batch.pay_date else None,
               "pay_day_why": batch.pay_date.why if batch.pay_date else "",
               "warnings": ([batch.pay_date.warning] if batch.pay_date and batch.pay_date.warning else [])
               + batch_warnings(batch, ctx.config.wage_limits)}
    if as_json:
        click.echo(json_text(summary))
        return
    when = {"pay_day": "the pay day",
            "working_day_before": "the working day before the pay day" + (
                f" {batch.pay_date.due} ({batch.pay_date.why}; Art. 14)" if batch.pay_date else " (Art. 14)"),
            }.get(head["execution_rule"], "the batch date: the pay day had passed when it was made")
    say(f"{out}: batch {head['batch_id']} ({'new' if batch.new else 'the same batch again, no new credit'}), "
        f"version {head['table_version']}: {len(head['payments'])} credit(s), {yuan(batch.total_fen)} yuan, "
        f"to be executed on {head['execution_date']} ({when}); made {head['made_at']} by {head['made_by'] or '?'}, "
        f"written by {by} (sha256 {digest[:16]})")
    for warning in summary["warnings"]:
        say(f"  warning: {warning}")
    for over in batch.overpaid:
        say(f"  for a decision: {over['worker']} holds {yuan(over['outstanding_fen'])} yuan in credits, "
            f"{yuan(over['over_fen'])} more than the approved {yuan(over['approved_fen'])} (no negative credit is made)")
    for held in batch.held:
        say(f"  held: {held['worker']} ({held['status']}: {held.get('why') or flag_text(held['flags'])}) is not paid")
    for warned in batch.warned:
        say(f"  warning: {warned['worker']} {yuan(warned['amount_fen'])} yuan: {warned['why']}")
    for gone in batch.withdrawn:
        say(f"  not in the file: {gone['end_to_end_id']} {gone['worker']} {yuan(gone['amount_fen'])} yuan, withdrawn "
            f"{gone['undone_at']} by {gone['undone_by']} ({gone['undone_reason']})")


@wages_group.command("paid")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--worksheet", "--sheet", "sheet", metavar="NAME",
              help="The worksheet of a workbook to read (needed when several have a header row).")
@click.option("--by", required=True, help="Who records the return (kept on each credit it settles).")
@json_option
@with_config
def wages_paid(ctx: Context, file: str, sheet: str | None, by: str, as_json: bool):
    """Record the bank's return for a batch: each credit paid (voucher, date) or failed (reason). A CSV
    or XLSX (end_to_end_id,status,voucher,date,reason[,amount]) or a pain.002.001.03; all of it or nothing."""
    from pathlib import Path

    from collector.wages import bankreturn
    from collector.wages.payments import record_return

    data = Path(file).read_bytes()
    kind, entries, notes = bankreturn.read(data, file, sheet=sheet)
    with ctx.store() as store:
        recorded = record_return(store, entries, source=file, digest=bankreturn.digest(data), kind=kind, by=by)
    if as_json:
        click.echo(json_text({"file": file, "kind": kind, "recorded_by": by, "recorded": recorded,
                              "not_recorded": notes}))
        return
    paid = [r for r in recorded if r["status"] == "paid"]
    failed = [r for r in recorded if r["status"] == "failed"]
    say(f"{file}: {len(paid)} credit(s) paid ({yuan(sum(r['amount_fen'] for r in paid))} yuan), {len(failed)} failed; "
        f"recorded by {by}")
    for row in failed:
        say(f"  failed: {row['end_to_end_id']} {row['worker']} {yuan(row['amount_fen'])} yuan: {row['reason']} "
            f"({_owed_again(row)})")
    for note in notes:
        say(f"  {note}")


def _owed_again(row: dict) -> str:
    """What happens to a failed credit next, by the bank's reason (collector/wages/refused.py)."""
    from collector.wages.refused import payee_refusal

    refusal = payee_refusal(row["reason"])
    if refusal is not None and refusal.holds:
        return (f"owed again; the bank refused the payee, so a batch holds it until {row['worker']}'s approved line "
                f"names {refusal.fix}: collector worker payee, then wages run --reason and approve")
    return (f"owed again: the next `collector wages batch --site {row['site']} --period {row['period']}` pays it"
            + (", into the same account: ask the worker whether it is open again" if refusal is not None else ""))


@wages_group.command("withdraw")
@click.option("--batch", "batch_id", help="Withdraw this batch (each of its credits).")
@click.option("--credit", "end_to_end_id", help="Withdraw one credit (its end-to-end id).")
@click.option("--reason", required=True, help="Why (e.g. the payee's account was wrong; the file was not sent).")
@click.option("--by", required=True, help="Who withdraws it.")
@json_option
@with_config
def wages_withdraw(ctx: Context, batch_id, end_to_end_id, reason: str, by: str, as_json: bool):
    """Withdraw a batch written but never sent, or one credit of it: kept, shown withdrawn with who and
    why; what it held is owed again (the next batch pays it), and a return naming it is refused."""
    from collector.wages.payments import withdraw

    if (batch_id is None) == (end_to_end_id is None):
        raise click.UsageError("give --batch or --credit (one of the two)")
    with ctx.store() as store:
        withdrawn = withdraw(store, batch_id=batch_id, end_to_end_id=end_to_end_id, reason=reason, by=by)
    if as_json:
        click.echo(json_text({"withdrawn": withdrawn, "by": by, "reason": reason}))
        return
    first = withdrawn[0]
    say(f"batch {first['batch_id']}: {len(withdrawn)} credit(s) withdrawn, "
        f"{yuan(sum(p['amount_fen'] for p in withdrawn))} yuan, by {by} ({reason}); owed again")
    for p in withdrawn:
        say(f"  {p['end_to_end_id']} {p['worker']:8} {yuan(p['amount_fen']):>10} withdrawn")
    say(f"  do not send a file of it written before; the next `collector wages batch --site {first['site']} "
        f"--period {first['period']}` pays what is owed"
        + (f" (and `--again {first['batch_id']}` writes this batch without it)" if end_to_end_id else ""))


@wages_group.command("reverse")
@click.argument("end_to_end_id", metavar="CREDIT")
@click.option("--reference", required=True, help="The bank's reference of the return (退汇).")
@click.option("--on", "returned_on", required=True, help="The date the money came back, YYYY-MM-DD (site's date).")
@click.option("--reason", required=True, help="Why the bank returned it (e.g. 收款账户已冻结).")
@click.option("--by", required=True, help="Who records it.")
@json_option
@with_config
def wages_reverse(ctx: Context, end_to_end_id: str, reference: str, returned_on: str, reason: str, by: str,
                  as_json: bool):
    """Record that the bank returned a paid credit (退汇): who, why, the return's reference and date. The
    amount is owed again: the next batch pays it, and past the pay day it is overdue (Art. 27)."""
    from collector.wages.payments import reverse

    day = date.fromisoformat(_day(returned_on, "--on"))
    with ctx.store() as store:
        credit = reverse(store, end_to_end_id, reference=reference, returned_on=day, reason=reason, by=by)
    emit(as_json, credit,
         f"{credit['end_to_end_id']} {credit['worker']} {yuan(credit['amount_fen'])} yuan, paid on "
         f"{credit['paid_on']} (voucher {escape_control(credit['voucher'] or '-')}), reversed: returned on "
         f"{credit['returned_on']} (return {escape_control(credit['returned_ref'])}: {escape_control(reason)}), recorded "
         f"by {by}; owed again: check the payee (collector worker payee), then `collector wages batch --site "
         f"{credit['site']} --period {credit['period']}`; `collector arrears` shows it overdue past the pay day")


@wages_group.command("batches")
@click.option("--site", required=True)
@click.option("--period", required=True, help="The month, YYYY-MM.")
@json_option
@with_config
def wages_batches(ctx: Context, site: str, period: str, as_json: bool):
    """Every batch of the period: who made it and when, each file written of it (who, when, name, SHA-256),
    and each credit with the bank's word and who recorded it (accounts are not shown)."""
    from collector.wages.table import period_bounds

    period_bounds(period)
    with ctx.store(readonly=True) as store:
        if store.site(site) is None:
            raise click.ClickException(f"site {site} does not exist")
        batches = [store.wage_batch(b["batch_id"]) for b in store.wage_batches(site, period)]
        files = store.wage_batch_files(site, period)
    shown = []
    for batch in batches:
        shown.append({
            **{k: batch[k] for k in ("batch_id", "table_version", "seq", "created", "execution_date",
                                     "execution_rule", "made_at")},
            "made_by": batch.get("made_by"), "payer_account": masking.account(batch["payer_account"]),
            "total_fen": sum(p["amount_fen"] for p in batch["payments"]),
            "files": [{k: f[k] for k in ("written_at", "written_by", "format", "file", "sha256")}
                      for f in files if f["batch_id"] == batch["batch_id"]],
            "payments": [{k: p.get(k) for k in ("end_to_end_id", "worker", "amount_fen", "status", "voucher",
                                                "paid_on", "reason", "settled_at", "settled_by", "settled_from",
                                                "undone_at", "undone_by", "undone_reason", "returned_ref",
                                                "returned_on")}
                         for p in batch["payments"]]})
    if as_json:
        click.echo(json_text(shown))
        return
    if not shown:
        say(f"{site} {period}: no batches")
    for batch in shown:
        say(f"{batch['batch_id']} version {batch['table_version']}: {len(batch['payments'])} credit(s), "
            f"{yuan(batch['total_fen'])} yuan from {batch['payer_account']}; made {batch['made_at']} by "
            f"{batch['made_by'] or '? (before who made batches was recorded)'}")
        for f in batch["files"]:
            say(f"  written {f['written_at']} by {f['written_by']}: {f['format']} {escape_control(f['file'])} "
                f"sha256 {f['sha256'][:16]}")
        for p in batch["payments"]:
            settled = (f", recorded {p['settled_at']} by {p['settled_by'] or '?'}" if p["settled_at"] else "")
            undone = (f" {p['undone_at']} by {p['undone_by']}: {escape_control(p['undone_reason'])}"
                      if p["undone_at"] else "")
            # A reversed credit was paid first: its voucher, then the return that undid it.
            say(f"  {p['end_to_end_id']} {p['worker']:8} {yuan(p['amount_fen']):>10} "
                + ("paid" if p["status"] == "reversed" else p["status"])
                + (undone if p["status"] == "withdrawn" else "")
                + (f" voucher {escape_control(p['voucher'])} on {p['paid_on']}" if p["voucher"] else "")
                + (f" ({escape_control(p['reason'])})" if p["reason"] else "") + settled
                + (f"; REVERSED{undone} (return {escape_control(p['returned_ref'])} on {p['returned_on']})"
                   if p["status"] == "reversed" else ""))


@click.command("arrears")
@click.option("--site", help="One site (default: every site).")
@click.option("--as-of", "as_of", help="The date to judge on, YYYY-MM-DD (default: each site's today); computed now.")
@click.option("--fresh", is_flag=True, help="Compute every site now (every row, paid ones too) instead of reading "
                                            "what the daemon keeps.")
@json_option
@with_config
def arrears_command(ctx: Context, site, as_of, fresh: bool, as_json: bool):
    """Wages due, paid and overdue per worker and employer; Art. 27 warnings for gate-verified workers
    whose wages are overdue (with or without an approved table). By default as the daemon last computed
    each site (its age shown; the rows still owed), a site it has not computed yet computed now."""
    from collector.localtime import check_date
    from collector.wages.figures import arrears_report

    day = check_date(date.fromisoformat(_day(as_of, "--as-of"))) if as_of else None
    with ctx.store(readonly=True) as store:
        report = arrears_report(store, site=site, as_of=day, fresh=fresh, compute_missing=True,
                                grace=timedelta(hours=ctx.config.final_grace_hours))
    if as_json:
        click.echo(json_text(report))
        return
    late = 2 * ctx.config.figures_refresh_seconds
    for summary in report["sites"]:
        age = (f" (kept: computed {summary['computed_at']}, {summary['age_seconds']:.0f} s ago)" if summary["kept"]
               else "")
        if summary["kept"] and summary["age_seconds"] > late:
            age += " [older than twice [figures] refresh_seconds: is the collector daemon running? --fresh computes now]"
        if summary["error"]:
            say(f"{summary['site']} as of {summary['as_of']}: {summary['error']} (the collector's log says why){age}")
            continue
        say(f"{summary['site']} as of {summary['as_of']}: due {yuan(summary['due_fen'])} yuan, paid "
            f"{yuan(summary['paid_fen'])}, overdue {yuan(summary['overdue_fen'])}"
            + (f" and an estimated {yuan(summary['overdue_estimate_fen'])} without an approved amount"
               if summary["overdue_estimate_fen"] else "")
            + f"; {summary['overdue_workers']} worker(s) overdue{age}")
        for note in summary["notes"]:
            say(f"  note: {note}")
    for row in report["workers"]:
        if row["status"] in ("paid", "not_due"):
            continue
        amount = (f"overdue {yuan(row['overdue_fen'])} of {yuan(row['due_fen'])}" if row["due_fen"] is not None
                  else "no approved amount" + (f", estimate {yuan(row['estimate_fen'])}" if row["estimate_fen"]
                                               is not None else ""))
        say(f"  {'ART.27 ' if row['art27'] else ''}{row['site']} {row['period']} {row['worker']:8} "
            f"{(row['name'] or '')[:16]:16} {row['employer'] or '-'}: {row['status']}, {amount}, paid "
            f"{yuan(row['paid_fen'])}" + (f", at the bank {yuan(row['pending_fen'])}" if row["pending_fen"] else "")
            + f", {row['verified_days']} verified day(s), pay day {row['pay_day']}"
            + (f" ({row['days_overdue']} day(s) ago)" if row["days_overdue"] else "")
            + (f" [{row['note']}]" if row["note"] else ""))
    for employer in report["employers"]:
        if employer["overdue_workers"]:
            say(f"  employer {employer['employer'] or '-'} at {employer['site']}: {employer['overdue_workers']} "
                f"worker(s) overdue, {yuan(employer['overdue_fen'])} yuan"
                + (f" and an estimated {yuan(employer['overdue_estimate_fen'])}" if employer["overdue_estimate_fen"]
                   else ""))


def register(main: click.Group) -> None:
    main.add_command(wages_group)
    main.add_command(arrears_command)
    worker_commands(main.commands["worker"])
    site_commands(main.commands["site"])
