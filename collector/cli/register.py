"""``collector register``: the bank-signed register of gate keys (collector/evidence/register.py): show it,
export it for anyone to keep a copy, check a copy, and append what it lacks. Also how a command that
changes gate keys records the change in it (``key_change``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from collector.cli.common import Context, emit, json_option, json_text, say, with_config, write_new_file


@click.group("register")
def register_group() -> None:
    """The bank-signed, append-only register of gate keys that evidence files cite and anyone may mirror."""


@contextmanager
def key_change(ctx: Context) -> Iterator:
    """A store whose one transaction changes gate keys and appends to the register what changed, signed
    with the bank's key. Without the key at hand, the change alone is kept and a warning says the register
    gets it at the next sync (the daemon syncs when it starts and when keys change)."""
    from collector.evidence.register import sync
    from collector.signing import SigningKeyError, load_bank_key

    try:
        key = load_bank_key(ctx.config)
    except SigningKeyError as error:
        key, why = None, str(error)
    appended = []
    with ctx.store() as store:
        with store.transaction():
            yield store
            if key is not None:
                appended = sync(store, key)
    if key is None:
        say(f"warning: the register of gate keys does not record this change yet ({why}); the collector daemon "
            "adds it when it next starts or sees keys change, or run `collector register sync`", err=True)
    for entry in appended:
        say(f"register: entry {entry['index']}: {entry['action']} key {entry['key_id']} of "
            f"{entry['site']}/{entry['gate']} (publish with `collector register export`)", err=True)


@register_group.command("show")
@json_option
@with_config
def show_command(ctx: Context, as_json: bool) -> None:
    """Every entry of the register, oldest first, with its times at its site (keys are public)."""
    from collector.cli.display import aligned
    from collector.localtime import local_text, zone

    with ctx.store(readonly=True) as store:
        rows = store.register_entries()
        zones = {site["site"]: zone(site["timezone"]) for site in store.sites()}
    if as_json:
        import json

        click.echo(json_text([{"digest": row["digest"], "entry": json.loads(row["entry"])} for row in rows]))
        return
    if not rows:
        say("the register of gate keys is empty (`collector register sync` fills it from the registry)")
        return

    def shown(utc_text: str, site: str) -> str:
        tz = zones.get(site)
        text = local_text(utc_text, tz) if tz is not None else None
        return text.replace("T", " ") if text else utc_text

    lines = aligned([[row["idx"], shown(row["at"], row["site"]), row["action"], f"{row['site']}/{row['gate']}",
                      row["key_id"], shown(row["since"], row["site"]) + (" (entered later)" if _late(row) else ""),
                      row["digest"][:16]] for row in rows],
                    ["#", "written (site time)", "action", "gate", "key", "since (site time)", "digest"])
    for line in lines:
        say(line)
    say(f"{len(rows)} entries; head {rows[-1]['digest']}")


def _late(row: dict) -> bool:
    """Written more than a minute after the registry's change: a backfilled entry, which a verifier sees."""
    from gate_agent.protocol import parse_time

    return (parse_time(row["at"]) - parse_time(row["since"])).total_seconds() > 60


@register_group.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The file to write (mode 0644: the register is public). An existing file is left alone, "
                   "unless --replace.")
@click.option("--replace", is_flag=True,
              help="Replace FILE whole (a published copy, e.g. daily), only if the new export extends it.")
@with_config
def export_command(ctx: Context, out: str, replace: bool) -> None:
    """Write the register for anyone to keep a copy: {"format":"site-gate-key-register","version":1,
    "entries":[...]}, one entry a line. It is checked against the bank's keys before it is written."""
    from collector.evidence.register import (
        RegisterError,
        check_register,
        export_bytes,
        load_mirror,
        read_export,
    )

    trusted = _bank_keys(ctx)
    with ctx.store(readonly=True) as store:
        data = export_bytes(store)
    try:
        mirror = check_register(read_export(data), trusted)
    except RegisterError as error:
        raise click.ClickException(f"the bank's own register does not check, nothing was written: {error}") from None
    if replace:
        import os

        from gate_agent.files import replace_atomically

        if os.path.lexists(out):
            try:
                load_mirror(data, trusted, older=load_mirror(out, trusted))
            except RegisterError as error:
                raise click.ClickException(f"{out} is not replaced: {error}") from None
        try:
            replace_atomically(out, data, 0o644)
        except OSError as error:
            raise click.ClickException(f"cannot write {out}: {error.strerror}") from None
    else:
        write_new_file(out, data, 0o644)
    say(f"{out}: {mirror.length} entries, head {mirror.head}")


@register_group.command("check")
@click.argument("register_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--older", "older_file", type=click.Path(dir_okay=False),
              help="A copy taken earlier: FILE must hold exactly its entries first (append-only).")
@click.option("--bank-key", "bank_key",
              help="The bank's published public key (ed25519:...), or a file holding it (bank.pub).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The collector's configuration: trust the bank keys of its registry.")
@json_option
def check_command(register_file: str, older_file: str | None, bank_key: str | None, config_path: str | None,
                  as_json: bool) -> None:
    """Check a copy of the register: every entry's signature by a bank key you trust, each link to the
    entry before, entries 1..N without a gap, times that never go back, no key added twice, a revoke only
    after its add; with --older, that FILE extends that earlier copy. Exit 1 at the first problem."""
    from collector.cli.reports import _trust
    from collector.evidence.register import RegisterError, load_mirror

    if bank_key is None and config_path is None:
        raise click.UsageError("give the bank's published key (--bank-key) or the collector's --config: a copy is "
                               "trusted only against a key that came from the bank")
    trusted, _ = _trust(bank_key, config_path)
    try:
        older = None
        if older_file is not None:
            try:
                older = load_mirror(older_file, trusted)
            except RegisterError as error:
                raise RegisterError(f"the older copy {older_file}: {error}") from None
        mirror = load_mirror(register_file, trusted, older=older)
    except RegisterError as error:
        if as_json:
            click.echo(json_text({"ok": False, "file": register_file, "problem": str(error)}))
            raise SystemExit(1) from None
        raise click.ClickException(f"{register_file}: FAILED: {error}") from None
    summary = {"ok": True, "file": register_file, "entries": mirror.length, "head": mirror.head,
               "last_written": mirror.entries[-1]["at"] if mirror.entries else None,
               "bank_keys": sorted({entry["bank_key"] for entry in mirror.entries}),
               "older": None if older is None else {"file": older_file, "entries": older.length, "head": older.head}}
    line = (f"{register_file}: OK: {mirror.length} entries"
            + (f" (the last written {summary['last_written']}), head {mirror.head}; signed by bank key(s) "
               f"{', '.join(summary['bank_keys'])}" if mirror.entries else f", head {mirror.head} (an empty register)"))
    if older is not None:
        line += f"\n  extends {older_file} ({older.length} entries, head {older.head}): nothing in it was changed or removed"
    emit(as_json, summary, line)


@register_group.command("sync")
@with_config
def sync_command(ctx: Context) -> None:
    """Append an entry, signed with the bank's key, for every gate key added or revoked that the register
    does not record yet (keys of before the register, changes made without the key). Idempotent."""
    from collector.evidence.register import sync
    from collector.signing import load_bank_key

    key = load_bank_key(ctx.config)
    with ctx.store() as store:
        appended = sync(store, key)
        head = store.register_head()
    for entry in appended:
        say(f"entry {entry['index']}: {entry['action']} key {entry['key_id']} of {entry['site']}/{entry['gate']} "
            f"since {entry['since']}")
    say(f"{len(appended)} entr{'y' if len(appended) == 1 else 'ies'} appended; the register holds "
        f"{head['idx'] if head else 0}" + (f", head {head['digest']}" if head else ""))


def _bank_keys(ctx: Context) -> dict:
    """The bank's public keys: the configured signing key's (when at hand) and every one on record."""
    from collector.signing import SigningKeyError, load_bank_key
    from gate_agent.protocol import key_id, parse_public_key, public_key_text

    texts = []
    try:
        texts.append(public_key_text(load_bank_key(ctx.config).public_key()))
    except SigningKeyError:
        pass
    with ctx.store(readonly=True) as store:
        texts += [row["public_key"] for row in store.bank_keys()]
    return {key_id(text): parse_public_key(text) for text in texts}


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    main.add_command(register_group)
