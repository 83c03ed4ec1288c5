"""``gate-agent``: keygen, run, status, readers, virtual-card. Thin over the library.

How a command fails (one line and exit 1 for a gate error a person can act on, a logged traceback and
exit 70 for a bug) is decided once, by ``GateGroup``: commands let the library's errors through."""

from __future__ import annotations

import signal
import sys

import click

from .cli_output import ToolGroup, json_text, say
from .logsetup import setup_logging
from .protocol import normalise_uid, public_key_text


class GateGroup(ToolGroup):
    def user_errors(self) -> tuple[type[Exception], ...]:
        """What a person set up or typed: the configuration, key files, the data directory, bundle and ack
        files, a virtual card's arguments, a UID or key. Not ProtocolError, EmvError or SunError: those
        are about bytes from the network or a card, handled where they are read; reaching a command's
        top, they are a bug."""
        from .bundle import BundleError
        from .configfile import ConfigError
        from .errors import GateInputError
        from .keys import KeyFileError
        from .outbox import OutboxError
        from .virtual_card import VirtualCardError

        return (ConfigError, KeyFileError, OutboxError, BundleError, VirtualCardError, GateInputError)


def _load(config_path: str):
    from .config import load_config

    return load_config(config_path)


#: Where the configuration is when --config is not given: this variable, else the installed file.
CONFIG_ENVIRONMENT = "GATE_AGENT_CONFIG"
config_option = click.option("--config", "config_path", envvar=CONFIG_ENVIRONMENT, default="/etc/gate-agent/gate.toml",
                             show_default=True, type=click.Path(dir_okay=False),
                             help=f"The agent's TOML configuration file (or ${CONFIG_ENVIRONMENT}).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(cls=GateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, -vvv: nfcpy and paho too).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
@click.version_option(package_name="site-gate-attendance")
def main(verbose: int, quiet: bool) -> None:
    """The gate agent: NFC card taps become signed, durable punches delivered to the bank."""
    setup_logging(-1 if quiet else verbose)


@main.command()
@click.option("--key-file", required=True, type=click.Path(dir_okay=False), help="Where to write the key.")
def keygen(key_file: str) -> None:
    """Create the gate's Ed25519 signing key (mode 0600; never overwrites).

    The last line printed is the public key, in the form `collector gate add --public-key` takes.
    """
    from .keys import generate_key_file

    key = generate_key_file(key_file)
    say(f"signing key written to {key_file} (mode 0600); register the gate at the bank with:", err=True)
    click.echo(public_key_text(key.public_key()))


@main.command()
@config_option
def run(config_path: str) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C."""
    from .agent import Agent, build_feedback
    from .keys import load_card_key
    from .reader import NfcReader

    config = _load(config_path)
    card_key = load_card_key(config.card_key_file) if config.card_key_file else None
    reader = NfcReader(config.reader, config.technologies, card_key=card_key, read_sun=config.read_sun)
    agent = Agent(config, reader=reader, feedback=build_feedback(config, reader))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop())
    agent.run()


@main.command()
@config_option
@json_option
def status(config_path: str, as_json: bool) -> None:
    """What the outbox holds: last seq, pending (unacknowledged) punches, acked seq."""
    from .outbox import Outbox

    config = _load(config_path)
    with Outbox(config.data_dir, config.site, config.gate, readonly=True) as outbox:
        facts = {"site": config.site, "gate": config.gate, **outbox.status().to_dict()}
        roster = outbox.load_roster()
        refusal = outbox.load_refusal()
    facts["bank_refuses"] = refusal
    facts["roster_cards"] = len(roster.cards) if roster else None
    facts["roster_issued"] = roster.issued if roster else None
    if as_json:
        click.echo(json_text(facts))
        return
    click.echo(f"gate {facts['site']}/{facts['gate']}: last seq {facts['last_seq']}, acked {facts['acked_seq']}, "
               f"pending {facts['pending']}"
               + (f" (oldest {facts['oldest_pending_at']})" if facts["oldest_pending_at"] else "")
               + (f"; roster {facts['roster_cards']} cards issued {facts['roster_issued']}" if roster
                  else "; no roster received yet")
               + (f"\nTHE BANK REFUSES THIS GATE'S PUNCHES: {refusal['reason']}: {refusal['detail']} "
                  f"(since {refusal['issued']}); they stay here until it takes them" if refusal else ""))


@main.command()
@json_option
@click.option("--probe-serial", is_flag=True, help="Also try PN532 readers on ttyAMA0, ttyS0 and ttyUSB0.")
def readers(as_json: bool, probe_serial: bool) -> None:
    """List the readers nfcpy can use here, with hints for those it cannot."""
    from .reader import list_readers

    found = list_readers(probe_tty=("AMA0", "S0", "USB0") if probe_serial else ())
    if as_json:
        click.echo(json_text(found))
        return
    if not found:
        click.echo("no known reader found (USB: ACR122U, SCL3711, RC-S380, PN533; serial PN532 with --probe-serial)")
        sys.exit(1)
    for entry in found:
        state = "usable" if entry["usable"] else "NOT usable"
        say(f"{entry['path']:22} {entry['name']} ({entry['node']}): {state}"
                   + (f" - {entry['hint']}" if entry["hint"] and not entry["usable"] else ""))


@main.command("virtual-card")
@click.option("--device", required=True, help="udp:HOST:PORT, the path the reader polls.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a reader, per card.")
@click.option("--hold", default=0.0, show_default=True,
              help="Seconds each card stays in the field after it was first read.")
@click.option("--kind", type=click.Choice(["ntag", "bank", "ntag424"]), default="ntag", show_default=True,
              help="ntag: a Type 2 tag known by its UID; bank: a contactless bank card (needs --pan-stdin); "
                   "ntag424: an NTAG 424 DNA with SUN (needs --keys).")
@click.option("--pan-stdin", is_flag=True, help="Read the bank card's number (test cards only) from stdin.")
@click.option("--keys", "keys_file", type=click.Path(dir_okay=False),
              help="ntag424: the card file `collector card provision` wrote (its keys and read counter).")
@click.argument("uids", nargs=-1, required=True)
def virtual_card(device: str, timeout: float, hold: float, kind: str, pan_stdin: bool, keys_file: str | None,
                 uids: tuple[str, ...]) -> None:
    """Present virtual NFC-A cards (4- or 7-byte UIDs) to a reader, one after another. A UID of "random" is
    a new random UID (08xxxxxx) at each presentation, as bank cards show."""
    from .virtual_card import EmvApplet, IsoDepCard, Ntag, VirtualCard, VirtualCardError, random_uid

    normalised = [uid if uid.lower() == "random" else normalise_uid(uid) for uid in uids]
    for uid in normalised:
        if uid != "random" and len(uid) not in (8, 14):
            raise VirtualCardError(f"virtual cards have 4- or 7-byte UIDs, not {uid}")
    pan = None
    if kind == "bank":
        if not pan_stdin:
            raise VirtualCardError("a virtual bank card needs --pan-stdin (its number is never an argument)")
        pan = sys.stdin.readline().strip()
    ntag424 = None
    if kind == "ntag424":
        if not keys_file:
            raise VirtualCardError("a virtual NTAG 424 card needs --keys")
        from .virtual_ntag424 import VirtualNtag424

        ntag424 = VirtualNtag424.load(keys_file)
    with VirtualCard(device) as card:
        for uid in normalised:
            raw = random_uid() if uid == "random" else bytes.fromhex(uid)
            if kind == "bank":
                made = IsoDepCard(raw, EmvApplet(pan or ""))
            elif kind == "ntag424":
                made = ntag424.card(raw)
            else:
                made = Ntag(raw)
            shown = card.present_card(made, timeout=timeout, hold=hold)
            if ntag424 is not None:
                ntag424.save(keys_file)  # the read counter moved
            click.echo(f"card {shown.uid} read ({shown.reads} read{'s' if shown.reads != 1 else ''}, "
                       f"{shown.seconds:.2f} s)")


@main.command()
@config_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The bundle file to write.")
@click.option("--since", type=click.IntRange(min=1),
              help="First seq to export (default: the first punch the bank has not acknowledged).")
def export(config_path: str, out: str, since: int | None) -> None:
    """Write the gate's punches to a signed bundle for `collector import` (a site without network).

    Nothing is forgotten here: the punches stay pending until the bank's ack arrives over MQTT or from
    an ack file (`gate-agent load-ack`). Safe while the agent runs.
    """
    from .bundle import export_bundle
    from .clock import SystemClock
    from .keys import load_private_key
    from .outbox import Outbox

    config = _load(config_path)
    key = load_private_key(config.key_file)
    with Outbox(config.data_dir, config.site, config.gate, readonly=True) as outbox:
        info = export_bundle(outbox, key, out, since=since, synced=SystemClock().synchronised())
        acked = outbox.acked_seq
    # --since may reach back into punches the bank holds already: say which of them are still waiting here.
    waiting = max(0, info.last - max(acked, info.first - 1)) if info.count else 0
    if waiting == info.count:
        after = "they stay pending here until the bank acknowledges them"
    elif waiting:
        after = (f"the bank holds up to seq {acked} already; the other {waiting} stay pending here until it "
                 "acknowledges them")
    else:
        after = f"the bank holds every one of them already (up to seq {acked}): nothing is pending here"
    say(f"exported {info.count} punch{'es' if info.count != 1 else ''} of gate {info.site}/{info.gate} "
        f"(seq {info.first}..{info.last}) to {info.path}; {after}")


@main.command("load-ack")
@config_option
@click.argument("ack_file", type=click.Path(dir_okay=False))
def load_ack(config_path: str, ack_file: str) -> None:
    """Apply an ack file from the bank (`collector ack-file`): punches it covers count as delivered.

    The file must be signed with the bank's key this gate trusts (bank_key), and names the bank's digest
    of its last punch: a differing digest forgets nothing.
    """
    from .bundle import apply_ack, read_ack_file
    from .outbox import AckResult

    config = _load(config_path)
    ack = read_ack_file(ack_file, site=config.site, gate=config.gate, bank_keys=config.bank_keys)
    result, state = apply_ack(config.data_dir, config.site, config.gate, ack)
    if result is AckResult.BEYOND_HEAD:
        raise click.ClickException(f"the bank acknowledges seq {ack.seq} but this gate has written only "
                                   f"{state.last_seq}: nothing forgotten (is this the right data directory?)")
    if result is AckResult.DIGEST_MISMATCH:
        raise click.ClickException(f"the bank's punch {ack.seq} differs from this gate's: nothing forgotten; "
                                   "the bank must investigate (collector conflicts)")
    if result is AckResult.STALE:
        click.echo(f"already acknowledged through seq {state.acked_seq} (the file says {ack.seq}); "
                   f"pending {state.pending}")
        return
    click.echo(f"the bank holds {config.site}/{config.gate} through seq {ack.seq}: acknowledged; pending {state.pending}")
