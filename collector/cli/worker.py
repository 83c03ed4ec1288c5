"""`collector worker link` (a worker's personal link to their own record) and `collector disputes`."""

from __future__ import annotations

import os

import click

from collector.cli.common import (
    CONFIG_ENVIRONMENT,
    DEFAULT_CONFIG,
    Context,
    Group,
    emit,
    json_option,
    say,
    with_config,
)
from collector.cli.display import aligned


def operator_name() -> str:
    """Who runs a command at the bank: the login name."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


by_option = click.option("--by", default=operator_name, show_default="your login name",
                         help="Who does it (kept with the change).")


@click.command("link")
@click.option("--worker", "worker_id", required=True)
@click.option("--revoke", is_flag=True, help="End the worker's link (a lost slip or phone); issue a new one later.")
@click.option("--base-url", help="The address workers open the page at (default: http://[web] host:port).")
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False),
              help="Also write the link as a QR code: FILE.png or FILE.svg, or FILE.html, a printable card "
                   "(a new file, 0600: it is the link).")
@by_option
@json_option
@with_config
def worker_link(ctx: Context, worker_id: str, revoke: bool, base_url: str | None, qr_file: str | None, by: str,
                as_json: bool):
    """Issue a worker's personal link to their own record (the old link stops working), or --revoke it.

    The link is shown once, here: the bank keeps only its SHA-256. Hand it over as a QR code (--qr) or on
    the wage slip (--json for scripts)."""
    from collector import qr
    from collector.workers import links as worker_links

    if qr_file is not None:
        if revoke:
            raise click.UsageError("--qr makes the code of a new link; a revoked link has none")
        qr.kind_of(qr_file)  # a name it cannot write is refused before a link is issued
        if os.path.lexists(qr_file):
            raise click.ClickException(f"{qr_file} already exists; choose another name (nothing is overwritten)")
    with ctx.store() as store:
        if revoke:
            ended = worker_links.revoke(store, worker_id, by=by)
            store.log_access(worker_id, via="bank CLI", who=by, what="link revoked")
            emit(as_json, {"worker": worker_id, "revoked": ended},
                 f"{worker_id}: link revoked" if ended else f"{worker_id} had no valid link")
            return
        secret, issued = worker_links.issue(store, worker_id, by=by)
        store.log_access(worker_id, via="bank CLI", who=by, what="link issued")
        person = next(iter(store.people_named([worker_id])), {})
    base = base_url or f"http://{ctx.config.web_host}:{ctx.config.web_port}"
    url = worker_links.link_url(base, secret)
    written = None
    if qr_file is not None:
        name = person.get("name") or worker_id
        written = qr.write(qr_file, url, title=f"{name}的考勤记录", lines=[
            f"工号 {worker_id}。用手机扫码，看你自己的考勤、工资和申诉。",
            "这是你一个人的链接：不要拍照发给别人。丢了请找银行重新办一个，旧的就不能用了。"])
    emit(as_json, {**issued, "url": url, "qr": qr_file if written else None},
         f"{worker_id}: {url}\n(shown once; the previous link, if any, no longer works)"
         + (f"\nQR code written to {qr_file} ({written}; 0600: whoever holds it holds the link)" if written else ""))


@click.group("disputes", cls=Group, invoke_without_command=True)
@click.option("--site", help="Only this site's disputes.")
@click.option("--open", "only_open", is_flag=True, help="Only those still waiting for an answer.")
@by_option
@json_option
@click.option("--config", "config_path", envvar=CONFIG_ENVIRONMENT, default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False), help=f"The collector's TOML configuration file (or ${CONFIG_ENVIRONMENT}).")
@click.pass_context
def disputes_group(click_ctx: click.Context, site: str | None, only_open: bool, by: str, as_json: bool,
                   config_path: str):
    """Days workers say are wrong, from their personal pages; answer them with `collector disputes answer`."""
    if click_ctx.invoked_subcommand is not None:
        return  # the subcommand reads its own --config
    _list_disputes(Context(config_path), site, only_open, by, as_json)


def _list_disputes(ctx: Context, site: str | None, only_open: bool, by: str, as_json: bool) -> None:
    with ctx.store(readonly=True) as store:
        rows = store.disputes(site=site, status="open" if only_open else None)
        names = {w["worker"]: w["name"] for w in store.workers()}
    if rows:
        with ctx.store() as store:
            for worker in sorted({r["worker"] for r in rows}):
                store.log_access(worker, via="bank CLI", who=by, what="disputes")
    for row in rows:
        row["name"] = names.get(row["worker"])
    if as_json:
        emit(True, rows, "")
        return
    lines = aligned([[r["ref"], r["status"], r["site"], r["day"], r["worker"], r["name"], r["note"],
                      r["answer"] or ""] for r in rows],
                    ["ref", "status", "site", "day", "worker", "name", "note", "answer"])
    say("\n".join(lines) if rows else "no disputes")


@disputes_group.command("answer")
@click.argument("ref")
@click.option("--accept", "accepted", flag_value=True, default=None, help="The day was wrong and is corrected.")
@click.option("--reject", "accepted", flag_value=False, help="The day stands; --reason says why.")
@click.option("--punch", "punch_id", type=int, help="With --accept: the manual punch (collector punch add) that "
                                                     "corrects the day.")
@click.option("--void", "void_id", type=int, help="With --accept: the worker's punch of that day to void.")
@click.option("--reason", help="Shown to the worker (required with --reject).")
@by_option
@json_option
@with_config
def disputes_answer(ctx: Context, ref: str, accepted, punch_id, void_id, reason, by: str, as_json: bool):
    """Answer a dispute: --accept citing a correction (--punch ID or --void ID), or --reject --reason TEXT."""
    from collector.workers import disputes

    if accepted is None:
        raise click.UsageError("say --accept or --reject")
    if not accepted and (punch_id is not None or void_id is not None):
        raise click.UsageError("--punch and --void go with --accept")
    with ctx.store() as store:
        if accepted:
            row = disputes.accept(store, ref, by=by, punch_id=punch_id, void_id=void_id, reason=reason)
        else:
            row = disputes.reject(store, ref, by=by, reason=reason)
    emit(as_json, row, f"{ref}: {row['status']} by {by}: {row['answer']}")


def register(main: click.Group) -> None:
    """Add ``worker link`` to the ``worker`` group and ``disputes`` to ``collector``."""
    main.commands["worker"].add_command(worker_link)
    main.add_command(disputes_group)
