"""Retention: `collector prune` and its log. Thin over collector/retention.py."""

from __future__ import annotations

from datetime import date

import click

from collector.cli.common import Context, emit, json_option, json_text, with_config
from gate_agent.cli_output import say


@click.command("prune")
@click.option("--before", required=True, help="Prune what belongs before this date, YYYY-MM-DD (not in the future).")
@click.option("--what", "what", multiple=True, type=click.Choice(["quarantine", "wages", "punches"]),
              default=("quarantine",), show_default=True,
              help="What to prune (again for more). Wages and punches are kept at least 3 years: asked for "
                   "within that, prune refuses and says until when.")
@click.option("--by", required=True, help="Who prunes (recorded in the retention log).")
@click.option("--dry-run", is_flag=True, help="Say what would be pruned; delete nothing, record nothing.")
@json_option
@with_config
def prune_command(ctx: Context, before: str, what: tuple[str, ...], by: str, dry_run: bool, as_json: bool):
    """Delete what may go (quarantine rows, wages past their retention) and record it; refuse, deleting
    nothing, when asked for anything the regulation keeps (Art. 15/28: 3 years after the period)."""
    from collector.retention import PruneRefused, prune

    try:
        day = date.fromisoformat(before)
    except ValueError:
        raise click.BadParameter(f"{before!r} is not a date YYYY-MM-DD", param_hint="--before") from None
    try:
        with ctx.store() as store:
            result = prune(store, day, what, by=by, dry_run=dry_run)
    except PruneRefused as refused:
        if as_json:
            click.echo(json_text({**refused.plan, "pruned": False}))
        for reason in refused.plan["refused"]:
            say(f"refused: {reason}", err=True)
        raise click.ClickException("nothing was pruned: the records above must be kept") from None
    data = {**result.as_dict(), "pruned": not dry_run}
    verb = "would delete" if dry_run else "deleted"
    lines = []
    if "quarantine" in result.what:
        lines.append(f"quarantine before {before}: {verb} {result.quarantine['quarantine']} row(s) and "
                     f"{result.quarantine['quarantine_tally']} tally hour(s)")
    if "wages" in result.what:
        lines.append(f"wages before {before}: {verb} {len(result.wages)} site-month(s)"
                     + "".join(f"\n  {m['site']} {m['period']} (kept until {m['kept_until']}): "
                               + ", ".join(f"{n} {t}" for t, n in m["rows"].items() if n) for m in result.wages))
    if not dry_run:
        lines.append(f"recorded in the retention log (collector prune-log) as pruned by {by}")
    emit(as_json, data, "\n".join(lines))


@click.command("prune-log")
@json_option
@with_config
def prune_log_command(ctx: Context, as_json: bool):
    """What prune deleted: when, by whom, what, up to which date and how many rows."""
    with ctx.store(readonly=True) as store:
        rows = store.retention_log()
    emit(as_json, rows, "\n".join(
        f"{r['pruned_at']} {r['pruned_by']}: {r['what']} before {r['cutoff']}, {r['row_count']} row(s)"
        for r in rows) or "nothing was ever pruned")


def register(main: click.Group) -> None:
    main.add_command(prune_command)
    main.add_command(prune_log_command)
