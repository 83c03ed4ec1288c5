"""`collector db`: the database's schema version and upgrades, and moving a pilot's SQLite file;
`collector cluster`: who holds what."""

from __future__ import annotations

import sys

import click

from collector.cli.common import Context, emit, json_option, json_text, progressbar, say, with_config


@click.group("db")
def db_group() -> None:
    """The collector's database (SQLite file or PostgreSQL)."""


@db_group.command("status")
@json_option
@with_config
def db_status(ctx: Context, as_json: bool) -> None:
    """Which schema steps the database has, and which are pending (read-only)."""
    from collector.store import display, schema

    with ctx.store(readonly=True) as store:
        applied = schema.applied(store.db)
    rows = [{"version": step.version, "name": step.name, "applied_at": applied.get(step.version)}
            for step in schema.STEPS]
    pending = [r for r in rows if r["applied_at"] is None]
    emit(as_json, {"database": display(ctx.config.db), "steps": rows, "pending": len(pending)},
         "\n".join(f"{r['version']:3} {r['name']:28} {r['applied_at'] or 'pending'}" for r in rows)
         + f"\n{display(ctx.config.db)}: {len(pending)} step(s) pending")


@db_group.command("upgrade")
@json_option
@with_config
def db_upgrade(ctx: Context, as_json: bool) -> None:
    """Apply pending schema steps (the daemon does so at start too; several collectors starting at once
    apply each step once)."""
    from collector.cli.days import catch_up
    from collector.store import Store, display, schema

    with Store(ctx.config.db, upgrade=False) as store:
        done = schema.upgrade(store.db)
        version = max(schema.applied(store.db), default=0)
        # A step may have marked days to build (the one that brought kept days marks them all).
        days = catch_up(store)
    emit(as_json, {"database": display(ctx.config.db), "applied": [s.version for s in done], "version": version,
                   "days_recomputed": days["units"]},
         f"{display(ctx.config.db)}: " + (f"applied {', '.join(f'{s.version} {s.name}' for s in done)}; "
                                          if done else "nothing to apply; ") + f"schema version {version}"
         + (f"; {days['units']} worker-site record(s) of days built" if days["units"] else ""))


@db_group.command("partitions")
@click.option("--make", is_flag=True, help="Make the partitions of this month and the next two now (the daemon "
              "does so every hour), and move what the default partition holds of a month into its own.")
@json_option
@with_config
def db_partitions(ctx: Context, make: bool, as_json: bool) -> None:
    """The punches table's months on PostgreSQL: rows (the planner's estimate), size and tablespace of each,
    for moving old months to cheaper storage (docs/bank-ops.md). SQLite keeps one table."""
    from collector.store import display, partitions

    with ctx.store(readonly=not make) as store:
        if not partitions.is_partitioned(store.db):
            emit(as_json, {"database": display(ctx.config.db), "partitioned": False, "partitions": [], "made": []},
                 f"{display(ctx.config.db)}: punches are one table (partitions are PostgreSQL's)")
            return
        made = []
        if make:
            with store.db.transaction():
                made = partitions.ensure(store.db)
        rows = [{"name": p.name, "month": p.month or None, "rows": p.rows, "bytes": p.bytes,
                 "tablespace": p.tablespace or None} for p in partitions.listing(store.db)]
    lines = [f"{r['month'] or 'other':8} {r['name']:18} {r['rows']:>12,} rows {r['bytes'] / 2**20:>10.1f} MiB"
             + (f"  in {r['tablespace']}" if r["tablespace"] else "") for r in rows]
    if made:
        lines.append(f"made: {', '.join(made)}")
    emit(as_json, {"database": display(ctx.config.db), "partitioned": True, "partitions": rows, "made": made},
         "\n".join(lines))


@db_group.command("copy")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False),
              help="The pilot's SQLite database (read only; stop its collector first).")
@click.option("--to", "target", required=True,
              help="postgresql://user@host:port/dbname of an empty database (a password may come from PGPASSWORD "
                   "or ~/.pgpass instead of the URL).")
@json_option
def db_copy(source: str, target: str, as_json: bool) -> None:
    """Copy a pilot's SQLite database into an empty PostgreSQL database, verify every table and every
    gate's chain there, and commit only if everything matches (exit 1 otherwise: nothing is kept)."""
    from collector.store.copy import copy_database

    report = copy_database(source, target, progress=lambda label, total: progressbar(length=total, label=label))
    if as_json:
        click.echo(json_text(report.to_dict()))
    else:
        say(_copy_summary(report))
        if not report.ok:
            say("\n".join([f"MISMATCH: {problem}" for problem in report.problems]
                          + ["nothing was committed: the target is as it was"]), err=True)
    if not report.ok:
        sys.exit(1)


def _copy_summary(report) -> str:
    lines = [f"{report.source} -> {report.target} in {report.seconds:.1f} s",
             f"  {'table':18} {'source':>10} {'target':>10}"]
    for table in report.tables:
        lines.append(f"  {table.table:18} {table.source_rows:>10} {table.target_rows:>10}  "
                     + ("ok" if table.ok else "MISMATCH"))
    for gate in report.gates:
        lines.append(f"  gate {gate.site}/{gate.gate}: {gate.punches} punch(es) verified, contiguous to seq "
                     f"{gate.contiguous_seq}" + (f", {gate.chain_breaks} chain break(s) recorded by ingest"
                                                 if gate.chain_breaks else "") + ("" if gate.ok else "  MISMATCH"))
    if report.ok:
        lines.append("OK: every table and every gate's chain verified on the target; committed")
    return "\n".join(lines)


@click.group("cluster")
def cluster_group() -> None:
    """Several collector processes sharing one database: partitions, leases, members."""


@cluster_group.command("status")
@json_option
@with_config
def cluster_status(ctx: Context, as_json: bool) -> None:
    """Which collector process holds each partition, and for how much longer (read-only)."""
    with ctx.store(readonly=True) as store:
        leases = store.leases() if store.db.table_exists("leases") else []
        members = store.members() if store.db.table_exists("members") else []
    rows = [{"partition": int(lease["name"].split("/")[1]), "owner": lease["owner"], "epoch": lease["epoch"],
             "held": lease["remaining"] > 0, "seconds_left": round(lease["remaining"], 1)} for lease in leases]
    unheld = [r["partition"] for r in rows if not r["held"]]
    lines = [f"partition {r['partition']:3}: " + (f"{r['owner']} ({r['seconds_left']:.0f} s left, epoch {r['epoch']})"
                                                  if r["held"] else "NOT HELD") for r in rows]
    lines.append(f"{len(members)} collector(s) alive: {', '.join(m['instance'] for m in members) or 'none'}"
                 + (f"; partitions not held: {unheld}" if unheld else ""))
    emit(as_json, {"partitions": rows, "members": members}, "\n".join(lines))


def register(main: click.Group) -> None:
    main.add_command(db_group)
    main.add_command(cluster_group)
