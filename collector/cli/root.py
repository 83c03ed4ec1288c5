"""``collector``: the bank-side daemon and its admin and reporting commands. Thin over the library.

How a command fails (one line and exit 1 for what a person can act on, exit 75 when the database
failed, a logged traceback and exit 70 for a bug) is decided once, by ``CollectorGroup``
(collector/cli/common.py): commands let the library's errors through."""

from __future__ import annotations

import signal
import sys

import click

from collector.cli import cards as cli_cards
from collector.cli import days as cli_days
from collector.cli import db as cli_db
from collector.cli import deploy as cli_deploy
from collector.cli import register as cli_register
from collector.cli import reports as cli_reports
from collector.cli import retention as cli_retention
from collector.cli import signin as cli_signin
from collector.cli import wages as cli_wages
from collector.cli import web as cli_web
from collector.cli import worker as cli_worker
from collector.cli.common import (
    CollectorGroup,
    Context,
    LocalDate,
    check_id,
    emit,
    json_option,
    json_text,
    progressbar,
    resolve_day,
    say,
    with_config,
)
from gate_agent.logsetup import escape_control, setup_logging
from gate_agent.protocol import normalise_uid

#: The names a worker import shows as read.
SAMPLE_NAMES = 3


@click.group(cls=CollectorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
@click.version_option(package_name="site-gate-attendance")
def main(verbose: int, quiet: bool) -> None:
    """The collector: verified, exactly-once ingest of gate punches, and the records bank ops pay from."""
    setup_logging(-1 if quiet else verbose)


# ============================================================================== daemon


@main.command()
@with_config
def run(ctx: Context) -> None:
    """Run the collector daemon in the foreground until SIGTERM or Ctrl-C."""
    from collector.ingest.daemon import CollectorService

    service = CollectorService(ctx.config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    service.run()


# ============================================================================== the bank's signing key


@main.command()
@click.option("--key-file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the key (mode 0600; an existing file is never replaced).")
def keygen(key_file: str) -> None:
    """Create the bank's Ed25519 signing key, for `signing_key` in the configuration.

    It signs acks, rosters and commands to gates, ack files and evidence files. The last line printed is
    its public key: gates pin it at enrolment (bank.pub) and anyone checks evidence with it.
    """
    from gate_agent.keys import generate_key_file
    from gate_agent.protocol import public_key_text

    key = generate_key_file(key_file)
    click.echo(f"bank signing key written to {key_file} (mode 0600); its public key, to publish:", err=True)
    click.echo(public_key_text(key.public_key()))


@main.command("bank-key")
@json_option
@with_config
def bank_key(ctx: Context, as_json: bool) -> None:
    """The bank's public signing key (to publish, and what gates pin), and every earlier one on record."""
    from collector.signing import load_bank_key
    from collector.store import database_exists
    from gate_agent.protocol import key_id, public_key_text

    current = public_key_text(load_bank_key(ctx.config).public_key())
    history = []
    if database_exists(ctx.config.db):
        with ctx.store(readonly=True) as store:
            history = store.bank_keys()
    rows = [{"key_id": key_id(current), "public_key": current, "current": True}]
    rows += [{"key_id": r["key_id"], "public_key": r["public_key"], "current": False, "added_at": r["added_at"]}
             for r in history if r["key_id"] != rows[0]["key_id"]]
    emit(as_json, rows, "\n".join(f"{r['public_key']}  # {r['key_id']}" + (" (current)" if r["current"] else
                                                                          f" (earlier, since {r['added_at']})")
                                  for r in rows))


# ============================================================================== sites and gates


@main.group()
def site() -> None:
    """Construction sites."""


@site.command("add")
@click.argument("site_id", metavar="SITE")
@click.option("--timezone", required=True, help="IANA zone, e.g. Asia/Shanghai (local dates and DST).")
@click.option("--name", help="Human name of the site.")
@click.option("--max-shift-hours", default=16.0, show_default=True,
              help="An IN without OUT for longer than this is 'missing_out'.")
@json_option
@with_config
def site_add(ctx: Context, site_id: str, timezone: str, name: str | None, max_shift_hours: float, as_json: bool):
    """Register a site."""
    from collector.localtime import zone

    check_id("SITE", site_id)
    zone(timezone)
    with ctx.store() as store:
        store.add_site(site_id, timezone=timezone, name=name, max_shift_hours=max_shift_hours)
        emit(as_json, store.site(site_id), f"site {site_id} added ({timezone})")


@site.command("list")
@json_option
@with_config
def site_list(ctx: Context, as_json: bool):
    """Every site with its name, zone, maximum shift, and how many workers and gates it has now."""
    from collector.cli.display import aligned

    with ctx.store(readonly=True) as store:
        sites = store.sites()
        gates = store.gates(with_gaps=False)
        assigned = store.assignments()
    for row in sites:
        row["workers"] = len({a["worker"] for a in assigned if a["site"] == row["site"] and a["valid_to"] is None})
        row["gates"] = sum(1 for g in gates if g["site"] == row["site"] and g["active"])
    if as_json:
        click.echo(json_text(sites))
        return
    for line in aligned([[r["site"], r["name"], r["timezone"], f"{r['max_shift_hours']:g} h", r["workers"], r["gates"]]
                         for r in sites], ["site", "name", "zone", "max shift", "workers", "gates"]):
        say(line)


@site.command("edit")
@click.argument("site_id", metavar="SITE")
@click.option("--name")
@click.option("--max-shift-hours", type=float)
@click.option("--timezone", help="Only while the site has no punch (its zone decides their local dates).")
@with_config
def site_edit(ctx: Context, site_id: str, name, max_shift_hours, timezone):
    """Change a site's name, maximum shift or time zone."""
    from collector.localtime import zone

    if timezone is not None:
        zone(timezone)
    with ctx.store() as store:
        changes = store.edit_site(site_id, name=name, max_shift_hours=max_shift_hours, timezone=timezone)
    say(f"{site_id}: " + ("; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()) or "nothing changed"))


@main.group(invoke_without_command=False)
def gate() -> None:
    """Gates (one gate agent each)."""


@gate.command("add")
@click.argument("gate_id", metavar="GATE")
@click.option("--site", "site_id", required=True, help="The site the gate stands at.")
@click.option("--public-key", required=True, help="The line `gate-agent keygen` printed (ed25519:...).")
@json_option
@with_config
def gate_add(ctx: Context, gate_id: str, site_id: str, public_key: str, as_json: bool):
    """Register a gate, or add a new key to it (rotation keeps old keys valid for old punches).

    Gate ids are unique across sites and never a name the bank's certificates use (`collector`): the
    broker knows a gate by its certificate, named after the id."""
    check_id("GATE", gate_id)
    check_id("SITE", site_id)
    with cli_register.key_change(ctx) as store:  # and its entry in the register of gate keys, at once
        outcome = store.add_gate(site_id, gate_id, public_key)
    messages = {"added": f"gate {site_id}/{gate_id} added",
                "rotated": f"gate {site_id}/{gate_id}: new key added; earlier keys stay valid for earlier punches",
                "unchanged": f"gate {site_id}/{gate_id} already has that key"}
    emit(as_json, {"site": site_id, "gate": gate_id, "outcome": outcome}, messages[outcome])


@gate.command("keys")
@click.argument("gate_id", metavar="GATE")
@click.option("--site", "site_id", required=True)
@json_option
@with_config
def gate_keys(ctx: Context, gate_id: str, site_id: str, as_json: bool):
    """A gate's public keys and their fingerprints (what evidence files are checked against)."""
    from gate_agent.protocol import key_id

    with ctx.store(readonly=True) as store:
        keys = store.public_keys(site_id, gate_id)
    if not keys:
        raise click.ClickException(f"gate {site_id}/{gate_id} has no keys (is it registered?)")
    for key in keys:
        key["fingerprint"] = key_id(key["public_key"])
    emit(as_json, keys, "\n".join(f"{k['fingerprint']} {k['public_key']} added {k['added_at']}"
                                  + (f" REVOKED {k['revoked_at']}" if k["revoked_at"] else "") for k in keys))


def _gate_switch(name: str, active: bool, help_text: str) -> None:
    @gate.command(name, help=help_text)
    @click.argument("gate_id", metavar="GATE")
    @click.option("--site", "site_id", required=True)
    @with_config
    def switch(ctx: Context, gate_id: str, site_id: str):
        with ctx.store() as store:
            store.set_gate_active(site_id, gate_id, active)
        # The broker's ACL is written from the registry: until it is written again the broker lets a
        # deactivated gate publish (ingest quarantines what it sends) and refuses nothing new of an active one.
        click.echo(f"gate {site_id}/{gate_id} {'active' if active else 'deactivated'}; now run `collector broker-config` "
                   "again and reload the broker so that its access list says the same")


_gate_switch("deactivate", False, "Refuse further punches from a gate (they are quarantined as gate_inactive).")
_gate_switch("activate", True, "Accept punches from a deactivated gate again.")


@gate.command("delivery")
@click.argument("gate_id", metavar="GATE")
@click.option("--site", "site_id", required=True)
@click.option("--every-hours", type=click.FloatRange(min=0, min_open=True, max=24 * 90),
              help="Its punches reach the bank by hand (bundles) about this often.")
@click.option("--live", is_flag=True, help="Its punches reach the bank over the network (the default).")
@with_config
def gate_delivery(ctx: Context, gate_id: str, site_id: str, every_hours, live: bool):
    """Declare how a gate's punches reach the bank: a punch is late_upload only beyond that."""
    if live == (every_hours is not None):
        raise click.UsageError("give --every-hours N or --live")
    with ctx.store() as store:
        store.set_gate_delivery(site_id, gate_id, None if live else every_hours)
    click.echo(f"gate {site_id}/{gate_id}: " + ("live" if live else f"delivered by hand every {every_hours:g} h; "
               "its bundles count as heartbeats for finality when its clock is synchronised"))


@gate.command("revoke-key")
@click.argument("gate_id", metavar="GATE")
@click.option("--site", "site_id", required=True)
@click.option("--key", "kid", required=True, help="The key's fingerprint (`collector gate keys`).")
@with_config
def gate_revoke_key(ctx: Context, gate_id: str, site_id: str, kid: str):
    """Stop trusting a gate key (a stolen or leaked one): what it signs is quarantined as key_revoked."""
    with cli_register.key_change(ctx) as store:  # and its entry in the register of gate keys, at once
        store.revoke_key(site_id, gate_id, kid)
    click.echo(f"gate {site_id}/{gate_id}: key {kid} revoked")


@main.command()
@click.option("--site", "site_id", help="Only this site's gates.")
@json_option
@with_config
def gates(ctx: Context, site_id: str | None, as_json: bool):
    """Each gate: site, last seen, online/offline, highest contiguous seq stored, open gaps, reported pending."""
    from collector.attendance.health import gate_health

    with ctx.store(readonly=True) as store:
        if site_id is not None and store.site(site_id) is None:
            raise click.ClickException(f"site {site_id} does not exist")
        rows = gate_health(store, site_id)
    if as_json:
        click.echo(json_text(rows))
        return
    if not rows:
        click.echo("no gates registered")
        return
    for row in rows:
        gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in row["open_gaps"]) or "none"
        # What a gate reports about itself is checked at ingest; shown escaped all the same.
        say(f"{row['site']}/{row['gate']}: {row['state']}, last seen {row['last_seen'] or 'never'}, "
            f"stored through seq {row['contiguous_seq']} (max {row['max_seq']}), gaps {gaps}, "
            f"pending at gate {row['reported_pending'] if row['reported_pending'] is not None else '?'}"
            + ("" if row["active"] else " [deactivated]"))


# ============================================================================== workers and cards


@main.group()
def worker() -> None:
    """Workers and their cards."""


def _operator() -> str:
    """Who runs an admin command, when --by is not given: the login name."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


by_option = click.option("--by", default=_operator, show_default="your login name",
                         help="Who does it (kept with the change).")


@worker.command("add")
@click.argument("worker_id", metavar="WORKER")
@click.option("--name", required=True)
@click.option("--card", "cards", multiple=True, help="Card UID (hex); may be given more than once.")
@click.option("--employer", help="The labour contractor or company (单位).")
@click.option("--team", help="The work team (班组), e.g. 钢筋班.")
@click.option("--trade", help="The trade (工种), e.g. 钢筋工.")
@click.option("--site", "sites", multiple=True, help="A site the worker works at; may be given more than once.")
@click.option("--card-from", help="ISO time with offset from which the card is the worker's.")
@by_option
@json_option
@with_config
def worker_add(ctx: Context, worker_id: str, name: str, cards: tuple[str, ...], employer: str | None,
               team: str | None, trade: str | None, sites: tuple[str, ...], card_from: str | None, by: str,
               as_json: bool):
    """Register a worker with their card(s) and the site(s) they work at."""
    from collector.workers.registry import parse_moment

    check_id("WORKER", worker_id)
    uids = [normalise_uid(c) for c in cards]
    with ctx.store() as store, store.transaction():
        _room_at(store, ctx.config, sites, worker_id)
        store.add_worker(worker_id, name=name, employer=employer, cards=uids, sites=sites, by=by,
                         valid_from=parse_moment(card_from) if card_from else None, team=team, trade=trade)
        emit(as_json, store.worker(worker_id),
             f"worker {worker_id} ({name}) added" + (f" with card {', '.join(uids)}" if uids else "")
             + (f" at {', '.join(sites)}" if sites else " (at no site yet: collector worker assign)"))


@worker.command("list")
@click.option("--site", help="Only the workers assigned to this site now.")
@json_option
@with_config
def worker_list(ctx: Context, site: str | None, as_json: bool):
    """Every worker with employer, cards and the sites they work at now."""
    from collector.cli.display import aligned

    with ctx.store(readonly=True) as store:
        if site is not None and store.site(site) is None:
            raise click.ClickException(f"site {site} does not exist")
        workers = store.workers(site)
    if as_json:
        click.echo(json_text(workers))
        return
    rows = []
    for w in workers:
        held = [c["uid"] if c.get("kind", "uid") == "uid" else f"{c['kind']} {c.get('masked') or ''} {c['uid']}"
                .replace("  ", " ") for c in w["cards"] if c["valid_to"] is None]
        rows.append([w["worker"], w["name"], w["employer"] or "-", ", ".join(w["sites"]) or "-",
                     ", ".join(held) or "-", f"removed {w['removed_at']}" if w["removed_at"] else ""])
    for line in aligned(rows, ["worker", "name", "employer", "sites", "cards", ""]):
        say(line)


@worker.command("edit")
@click.argument("worker_id", metavar="WORKER")
@click.option("--name")
@click.option("--employer", help="The labour contractor or company (单位).")
@click.option("--team", help="The work team (班组).")
@click.option("--trade", help="The trade (工种).")
@by_option
@json_option
@with_config
def worker_edit(ctx: Context, worker_id: str, name: str | None, employer: str | None, team: str | None,
                trade: str | None, by: str, as_json: bool):
    """Change a worker's name, employer, team or trade (each change is kept: `worker history`)."""
    with ctx.store() as store:
        changes = store.edit_worker(worker_id, name=name, employer=employer, team=team, trade=trade, by=by)
    emit(as_json, {"worker": worker_id, "changed": changes},
         f"{worker_id}: " + ("; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()) or "nothing changed"))


@worker.command("history")
@click.argument("worker_id", metavar="WORKER")
@json_option
@with_config
def worker_history(ctx: Context, worker_id: str, as_json: bool):
    """Every change of a worker's name, employer, team or trade: what, who, when."""
    with ctx.store(readonly=True) as store:
        if store.worker(worker_id) is None:
            raise click.ClickException(f"worker {worker_id} does not exist")
        changes = store.worker_changes(worker_id)
    emit(as_json, changes, "\n".join(escape_control(f"{c['changed_at']} {c['field']} {c['before']!r} -> {c['after']!r} "
                                                     f"by {c['changed_by']}") for c in changes)
         or f"{worker_id}: no change recorded")


@worker.command("remove")
@click.argument("worker_id", metavar="WORKER")
@click.option("--at", "at", help="ISO time (default: now); without an offset, in the worker's site's zone.")
@by_option
@with_config
def worker_remove(ctx: Context, worker_id: str, at: str | None, by: str):
    """A worker leaves: their site assignments and cards end (their history is never deleted)."""
    from collector.attendance.headcount import headcount
    from collector.localtime import local_text
    from collector.workers.registry import parse_moment
    from gate_agent.protocol import utc_now_text

    with ctx.store() as store:
        tz = _zone_of_worker(store, worker_id)
        moment = parse_moment(at, tz) if at else utc_now_text()
        inside = [(site, row["since"]) for site in store.sites_of_worker(worker_id) if store.site(site)
                  for row in headcount(store, site)["workers"] if row["worker"] == worker_id]
        ended = store.remove_worker(worker_id, at=moment, by=by)
    shown = local_text(moment, tz) if tz else moment
    say(f"{worker_id} removed at {shown}: assignments ended at {', '.join(ended['sites']) or 'none'}; "
        f"cards ended {', '.join(ended['cards']) or 'none'}; punches, days and wages stay theirs")
    for site, since in inside:
        # Removing a worker records nobody's leaving: the open shift stays open, and the foreman's count
        # with it, until an OUT.
        say(f"warning: {worker_id} is inside {site} now (since {(since or '')[:16].replace('T', ' ')}): they stay in "
            f"the headcount until they leave through a gate, or until `collector punch add --worker {worker_id} "
            f"--site {site} --direction out ...` records when they left")


@worker.command("assign")
@click.argument("worker_id", metavar="WORKER")
@click.option("--site", required=True)
@click.option("--from", "valid_from", help="Date or ISO time in the site's zone (default: now).")
@click.option("--to", "valid_to", help="Date or ISO time the assignment ends (default: open).")
@by_option
@with_config
def worker_assign(ctx: Context, worker_id: str, site: str, valid_from, valid_to, by: str):
    """Assign a worker to a site (from a date): the site's roster then holds the worker's cards."""
    from gate_agent.protocol import utc_now_text

    with ctx.store() as store, store.transaction():
        tz = _site_zone(store, site)
        start = _moment_or_day(valid_from, tz) if valid_from else utc_now_text()
        end = _moment_or_day(valid_to, tz) if valid_to else None
        if end is None or end > utc_now_text():  # an assignment that ended already adds nobody now
            _room_at(store, ctx.config, [site], worker_id)
        store.assign(worker_id, site, by=by, valid_from=start, valid_to=end)
    click.echo(f"{worker_id} works at {site} from {_site_time(start, tz)}" + (f" to {_site_time(end, tz)}" if end else "")
               + " (the site's time)")


@worker.command("unassign")
@click.argument("worker_id", metavar="WORKER")
@click.option("--site", required=True)
@click.option("--at", "at", help="Date or ISO time in the site's zone (default: now).")
@by_option
@with_config
def worker_unassign(ctx: Context, worker_id: str, site: str, at: str | None, by: str):
    """End a worker's assignment to a site (the worker moves on; earlier days stay the site's)."""
    from gate_agent.protocol import utc_now_text

    with ctx.store() as store:
        tz = _site_zone(store, site)
        moment = _moment_or_day(at, tz) if at else utc_now_text()
        store.unassign(worker_id, site, at=moment, by=by)
        # A tap after the end of the assignment is flagged not_assigned: say so, with how many there are.
        later = store.db.value("SELECT COUNT(*) FROM punches p JOIN cards c ON c.uid = p.card AND c.worker = ? "
                               "WHERE p.site = ? AND p.time >= ? AND (c.valid_from IS NULL OR p.time >= c.valid_from) "
                               "AND (c.valid_to IS NULL OR p.time < c.valid_to)", (worker_id, site, moment))
    click.echo(f"{worker_id} no longer works at {site} from {_site_time(moment, tz)} (the site's time)")
    if later:
        say(f"warning: {later} tap(s) of {worker_id} at {site} are at or after that moment: their days are now "
            "flagged not_assigned (worked at a site the worker was not registered at)")


def _site_time(utc_text: str, tz) -> str:
    """A stored UTC instant as a person at the site reads it: 2026-11-03 08:00 (to the minute)."""
    from collector.localtime import local_text

    shown = local_text(utc_text, tz)
    return shown[:16].replace("T", " ") if shown else utc_text


@worker.command("import")
@click.argument("csv_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--sheet", help="The worksheet of a workbook to read (needed when several have a header row).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@by_option
@json_option
@with_config
def worker_import(ctx: Context, csv_file: str, sheet: str | None, dry_run: bool, by: str, as_json: bool):
    """Import a worker file (CSV in UTF-8 or GBK/GB18030, or XLSX; English or Chinese headers) as an
    upsert: new workers are added, changed ones changed, and the report says which; any bad row refuses
    the whole file."""
    from collector.tabular import in_order
    from collector.workers.registry import MAX_PROBLEMS_SHOWN, apply_import, plan_import, read_worker_file
    from gate_agent.protocol import utc_now_text

    limits = ctx.config
    parsed = read_worker_file(csv_file, sheet=sheet, max_workers=limits.max_workers_per_file)
    with ctx.store(readonly=dry_run) as store:
        plan = plan_import(parsed.rows, store, max_workers_per_site=limits.max_workers_per_site)
        problems = in_order(parsed.problems + plan.problems)
        if problems:
            for problem in problems[:MAX_PROBLEMS_SHOWN]:
                say(str(problem), err=True)
            if len(problems) > MAX_PROBLEMS_SHOWN:
                say(f"{csv_file}: ... and {len(problems) - MAX_PROBLEMS_SHOWN} more", err=True)
            raise click.ClickException(f"{csv_file}: {len(problems)} bad row(s); nothing imported")
        if not dry_run:
            with progressbar(length=len(plan.new) + len(plan.changed), label="importing workers") as bar:
                apply_import(plan, store, by=by, now=utc_now_text(), progress=bar.update)
    # The first names as read, so that a person sees a wrong decoding (mojibake) before applying.
    sample = [{"worker": row["worker"], "name": row["name"]} for row in parsed.rows[:SAMPLE_NAMES]]
    report = {**plan.report(), "encoding": parsed.encoding, "read_columns": parsed.read_columns,
              "ignored_columns": parsed.ignored_columns,
              "notes": parsed.notes, "sample_names": sample,
              "dry_run": dry_run}
    if as_json:
        click.echo(json_text(report))
        return
    verb = "would be" if dry_run else "were"
    say(f"{csv_file} ({parsed.encoding}): {len(plan.new)} new, {len(plan.changed)} changed, {len(plan.unchanged)} "
        f"unchanged; {len(plan.cards_added)} card(s) added, {len(plan.cards_replaced)} replaced; "
        f"{len(plan.assigned)} site assignment(s); {len(plan.terms)} pay term(s) {verb} set"
        + (" (dry run: nothing changed)" if dry_run else ""))
    if dry_run and sample:
        say("  names as read (check them before importing): "
            + ", ".join(escape_control(f"{row['worker']} {row['name']}") for row in sample))
    for change in plan.changed:
        say(f"  {change['worker']}: " + "; ".join(
            f"{k} {_shown(k, a)!r} -> {_shown(k, b)!r}" for k, (a, b) in change["fields"].items()))
    for entry in plan.cards_replaced:
        say(f"  {entry['worker']}: card {', '.join(entry['replaces'])} replaced by {entry['card']}")
    if parsed.read_columns:
        say("  columns read: " + ", ".join(escape_control(f"{header} -> {name}") for name, header in parsed.read_columns.items()))
    if parsed.ignored_columns:
        say(f"  columns not read: {', '.join(parsed.ignored_columns)}")
    for note in parsed.notes:
        say(f"  {note}")


def _room_at(store, config, sites, worker: str) -> None:
    """Inside the command's transaction: refuse (naming the figures) to assign ``worker`` to a site that
    has ``[limits] max_workers_per_site`` workers now; the site stays locked until the assignment commits."""
    from collector.workers.registry import assigned_now, check_room

    for site in sorted(set(sites)):
        if store.lock_site(site):  # an unknown site: the store's own refusal says so
            check_room({site: assigned_now(store, site)}, {site: 1}, config.max_workers_per_site,
                       what=f"assigning {worker}")


def _shown(column: str, value):
    from collector import masking

    masks = {"id_number": masking.id_number, "phone": masking.phone, "bank_account": masking.account}
    return masks[column](value) if column in masks else value


def _site_zone(store, site: str):
    from collector.localtime import zone

    row = store.site(site)
    if row is None:
        raise click.ClickException(f"site {site} does not exist")
    return zone(row["timezone"])


def _zone_of_worker(store, worker: str):
    """The zone a time typed for this worker is read in: their site's, when they work at one."""
    sites = [a["site"] for a in store.assignments(worker=worker) if a["valid_to"] is None]
    return _site_zone(store, sites[0]) if len(sites) == 1 else None


def _moment_or_day(text: str, tz) -> str:
    """A date (the start of that day in the site's zone) or an ISO time (without an offset: the site's)."""
    from datetime import date

    from collector.workers.registry import day_start, parse_moment

    try:
        return day_start(date.fromisoformat(text), tz)
    except ValueError:
        return parse_moment(text, tz)


@main.group()
def card() -> None:
    """Card validity windows (lost and replaced cards)."""


@card.command("assign")
@click.argument("uid")
@click.option("--worker", "worker_id", required=True)
@click.option("--from", "valid_from", help="ISO time with offset (default: now, or always for a new card).")
@with_config
def card_assign(ctx: Context, uid: str, worker_id: str, valid_from: str | None):
    """Give a card to a worker (a replacement for a lost one, say)."""
    from collector.workers.registry import parse_moment

    uid = normalise_uid(uid)
    with ctx.store() as store:
        store.assign_card(uid, worker_id, valid_from=parse_moment(valid_from) if valid_from else None)
    click.echo(f"card {uid} assigned to {worker_id}")


@card.command("revoke")
@click.argument("uid")
@click.option("--at", "at", help="ISO time with offset (default: now).")
@with_config
def card_revoke(ctx: Context, uid: str, at: str | None):
    """End a card's current window (lost, stolen, returned); its earlier punches stay with its holder. A
    bank card is named by its identifier (`collector worker list` shows it)."""
    from collector.workers.registry import parse_moment
    from gate_agent.protocol import normalise_card

    uid = normalise_card(uid)
    with ctx.store() as store:
        former = store.revoke_card(uid, at=parse_moment(at) if at else None)
    click.echo(f"card {uid} revoked from {former}")


# ============================================================================== reading


@main.command()
@json_option
@click.option("--limit", type=int, help="Only the newest N.")
@with_config
def quarantine(ctx: Context, as_json: bool, limit: int | None):
    """Refused messages kept, with their reasons, and what was refused but not kept, per topic."""
    with ctx.store(readonly=True) as store:
        rows = store.quarantined(limit)
        counters = store.counters()
        tally = store.quarantine_tally()
    for row in rows:
        row["raw"] = row["raw"].decode("utf-8", "backslashreplace") if row["raw"] is not None else None
    if as_json:
        click.echo(json_text(rows))
        return
    by_reason = {k.removeprefix("quarantined_"): v for k, v in counters.items() if k.startswith("quarantined_")}
    click.echo(f"{len(rows)} quarantined message(s) kept" +
               ("; refused in all: " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) if by_reason else ""))
    # Topics, details and bytes come from outside: escaped, one message per line whatever they hold.
    for row in rows:
        say(f"#{row['id']} {row['received_at']} {row['reason']}: {escape_control(row['detail'])} "
            f"[{escape_control(row['topic'])}, {row['size']} bytes" + ("" if row["raw"] is not None else ", bytes released")
            + "]")
    not_kept: dict[tuple[str, str], list] = {}
    for entry in tally:
        if entry["count"] > entry["kept"]:
            total = not_kept.setdefault((entry["topic"], entry["reason"]), [0, 0, entry["first_at"], entry["last_at"]])
            total[0] += entry["count"] - entry["kept"]
            total[1] += entry["count"]
            total[3] = entry["last_at"]
    if not_kept:
        click.echo("refused but not kept (each topic keeps its first refused messages per reason and hour):")
        for (topic, reason), (dropped, count, first, last) in sorted(not_kept.items()):
            say(f"  {escape_control(topic)} {reason}: {dropped} not kept of {count}, {first} to {last}")


@main.command()
@click.option("--site", "site_id", required=True)
@click.option("--date", "day", type=LocalDate(), help="Local date at the site, today or yesterday (default: all).")
@json_option
@with_config
def punches(ctx: Context, site_id: str, day, as_json: bool):
    """The site's punches (gate and manual, void ones marked), with the worker who held each card and
    the id `collector punch void` takes."""
    from collector.attendance.reports import punch_rows
    from collector.cli.display import aligned

    with ctx.store(readonly=True) as store:
        tz = _site_zone(store, site_id)
        rows = punch_rows(store, site_id, resolve_day(day, tz) if day else None)
    if as_json:
        click.echo(json_text(rows))
        return
    # A time with no local date in the site's zone (year 9999, a broken gate clock) shows as signed, in UTC.
    table = [[row["id"], row["local_time"] or row["time"], f"{row['gate'] or 'manual'}#{row['seq'] or row['id']}",
              row["direction"], (f"{row['card_kind']} " if row.get("card_kind") not in (None, "uid") else "")
              + (row["card"] or "-"), row["worker"] or "?", row["name"] or "", ";".join(row["flags"])]
             for row in rows]
    for line in aligned(table, ["id", "time", "punch", "dir", "card", "worker", "name", "flags"]):
        say(line)
    click.echo(f"{len(rows)} punch(es)")


@main.command()
@json_option
@with_config
def counters(ctx: Context, as_json: bool):
    """Ingest counters: stored, duplicates, equivocations, quarantined by reason, ..."""
    with ctx.store(readonly=True) as store:
        values = store.counters()
    emit(as_json, values, "\n".join(f"{k} {v}" for k, v in values.items()) or "no counters yet")


@main.command()
@json_option
@with_config
def conflicts(ctx: Context, as_json: bool):
    """Equivocations and chain breaks: evidence that a gate signed two histories."""
    with ctx.store(readonly=True) as store:
        rows = store.conflicts()
    emit(as_json, rows, "\n".join(f"#{r['id']} {r['kind']} {r['site']}/{r['gate']} seq {r['seq']}: {r['detail']}"
                                  for r in rows) or "no conflicts")


# ============================================================================== demo


@main.command()
@click.option("--dir", "directory", default="demo-data", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo keeps its broker, keys, configs and databases (recreated).")
def demo(directory: str) -> None:
    """Run everything locally: a Mosquitto, the collector, a gate on a virtual card, a few taps."""
    from collector.deploy.demo import run_demo
    from gate_agent.extras import require

    # The demo's gates read virtual cards through nfcpy: it needs the gate extra as well as the collector.
    require("nfc", "gate")

    sys.exit(run_demo(directory))


# Commands of their own modules: attendance and exports, the web dashboard, deployment (PKI, bundles).
for _module in (cli_reports, cli_web, cli_deploy, cli_db, cli_days, cli_wages, cli_retention, cli_cards, cli_signin,
                cli_worker, cli_register):
    _module.register(main)
