"""`collector card keygen / register-bank / provision`: the card kinds that prove who tapped (docs/cards.md)."""

from __future__ import annotations

import os
import sys

import click

from collector.cli.common import Context, emit, json_option, with_config
from gate_agent.files import write_new


def _key_file(ctx: Context, which: str):
    """The configured key file ``which`` (card_key / sun_key), checked as a secret, or a clear error."""
    from gate_agent.files import secret_file_problem

    reader = {"card_key": ctx.config.read_card_key, "sun_key": ctx.config.read_sun_key}[which]
    path = reader()
    if path is None:
        raise click.ClickException(f"{ctx.config.source}: no {which} set (docs/cards.md)")
    problem = secret_file_problem(path)
    if problem:
        raise click.ClickException(f"{which}: {problem}")
    try:
        return path, path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {which} {path}: {getattr(error, 'strerror', None) or error}") \
            from None


def load_card_key(ctx: Context) -> bytes:
    from collector.errors import InputError
    from gate_agent.emv import parse_card_key
    from gate_agent.errors import GateInputError

    path, text = _key_file(ctx, "card_key")
    try:
        return parse_card_key(text)
    except GateInputError as error:
        raise InputError(f"{path}: {error}") from None  # the message alone does not say which file


@click.command("keygen")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The new key file (created 0600, never overwritten).")
@click.option("--sun", is_flag=True, help="An NTAG 424 DNA master key (the bank's alone) instead of the bank "
                                          "card key (which gates hold too).")
def keygen(out: str, sun: bool) -> None:
    """Make the bank card key (gates and bank) or, with --sun, the NTAG 424 DNA master key (bank only)."""
    if sun:
        from collector.ingest.sun import new_master_key_text

        text = new_master_key_text()
    else:
        from gate_agent.emv import new_card_key_text

        text = new_card_key_text()
    try:
        write_new(out, text.encode("ascii"), 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; refusing to overwrite a key") from None
    except OSError as error:
        raise click.ClickException(f"cannot create {out}: {error.strerror or error}") from None
    click.echo(f"{'NTAG 424 master' if sun else 'bank card'} key written to {out} (mode 0600)")


def _read_pan() -> str:
    """The card number from a hidden prompt on a terminal, else the first line of stdin: never argv, which
    every user sees in ps."""
    if sys.stdin.isatty():
        return click.prompt("card number", hide_input=True, err=True)
    return sys.stdin.readline()


@click.command("register-bank")
@click.option("--worker", "worker_id", required=True)
@click.option("--from", "valid_from", help="ISO time with offset (default: now, or always for a new card).")
@json_option
@with_config
def register_bank(ctx: Context, worker_id: str, valid_from: str | None, as_json: bool) -> None:
    """Give a worker's bank card to the worker. The card number is read once from stdin (a hidden prompt
    on a terminal); only its keyed identifier and the masked number (first 6 / last 4) are kept."""
    from collector.workers.registry import parse_moment
    from gate_agent.emv import card_identifier, mask_pan, normalise_pan

    key = load_card_key(ctx)
    pan = normalise_pan(_read_pan())
    identifier, masked = card_identifier(key, pan), mask_pan(pan)
    del pan
    with ctx.store() as store:
        store.assign_card(identifier, worker_id, valid_from=parse_moment(valid_from) if valid_from else None,
                          kind="bank", masked=masked)
    emit(as_json, {"card": identifier, "kind": "bank", "masked": masked, "worker": worker_id},
         f"bank card {masked} ({identifier}) assigned to {worker_id}")


@click.command("provision")
@click.option("--uid", required=True, help="The NTAG 424 DNA's UID (7 bytes of hex), as a reader shows it.")
@click.option("--url", "url_base", required=True,
              help="The URL the card shows (https://...); the SUN parameters e= and c= are appended.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The card writer's file: the card's keys (created 0600, never overwritten).")
@click.option("--worker", "worker_id", help="Also give the card to this worker (as `card assign` does).")
@click.option("--from", "valid_from", help="With --worker: ISO time with offset (default: now, or always).")
@with_config
def provision(ctx: Context, uid: str, url_base: str, out: str, worker_id: str | None,
              valid_from: str | None) -> None:
    """Write what a card writer needs to set up an NTAG 424 DNA for SUN: the card's five AES keys
    (diversified from the master key, sun_key), the NDEF file, the file settings and the URL template."""
    import json

    from collector.ingest.sun import load_master_key, provisioning
    from collector.workers.registry import parse_moment
    from gate_agent.protocol import normalise_uid

    master = load_master_key(ctx.config)
    if master is None:
        raise click.ClickException(f"{ctx.config.source}: no sun_key set: make one with "
                                   "`collector card keygen --sun --out FILE` (docs/cards.md)")
    uid = normalise_uid(uid)
    document = provisioning(master, uid, url_base)
    try:
        write_new(out, json.dumps(document, indent=1).encode(), 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; refusing to overwrite a card's keys") from None
    except OSError as error:
        raise click.ClickException(f"cannot create {out}: {error.strerror or error}") from None
    if worker_id is not None:
        try:
            with ctx.store() as store:
                store.assign_card(uid, worker_id, valid_from=parse_moment(valid_from) if valid_from else None,
                                  kind="ntag424")
        except BaseException:
            os.unlink(out)  # no keys for a card the registry does not know
            raise
    click.echo(f"card {uid}: keys and settings written to {out} (mode 0600)"
               + (f"; assigned to {worker_id}" if worker_id else ""))


def register(main: click.Group) -> None:
    """Add this module's commands to ``collector card``."""
    group = main.commands["card"]
    for command in (keygen, register_bank, provision):
        group.add_command(command)
