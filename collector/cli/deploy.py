"""Deployment: the PKI, broker configuration, gate enrolment and offline bundles."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from collector.cli.common import Context, check_id, emit, json_option, with_config
from collector.deploy.broker_config import (
    COLLECTOR_BIND,
    COLLECTOR_PORT,
    MEMORY_LIMIT_MIB,
    PERSISTENCE_DIR,
    QUEUE_LIMIT_MIB,
)

# ============================================================================== PKI


@click.group()
def ca() -> None:
    """The deployment CA for mutual TLS between gates, the broker and the collector."""


@ca.command("init")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Where to write the CA, the broker's and the collector's certificates and keys.")
@click.option("--host", "hosts", multiple=True,
              help="A name or address gates use to reach the broker (besides localhost and 127.0.0.1); "
                   "may be given more than once.")
@json_option
def ca_init(directory: str, hosts: tuple[str, ...], as_json: bool) -> None:
    """Create the CA (ca.crt, ca.key), the broker's certificate (server.crt, server.key) and the
    collector's client certificate (collector.crt, collector.key). Keys are 0600; nothing is overwritten."""
    from collector.deploy.pki import init_ca

    issued = init_ca(directory, list(hosts))
    rows = [{"name": i.name, "certificate": str(i.certificate), "key": str(i.key),
             "not_after": i.not_after.isoformat()} for i in issued]
    emit(as_json, rows, "\n".join(f"{i.certificate.name} + {i.key.name} (0600): {i.name}, valid until "
                                  f"{i.not_after:%Y-%m-%d}" for i in issued)
         + f"\nkeep {Path(directory) / 'ca.key'} offline or at least private: whoever holds it can enrol gates")


def gate_enroll_command() -> click.Command:
    @click.command("enroll")
    @click.argument("gate_id", metavar="GATE")
    @click.option("--site", "site_id", required=True, help="The site the gate stands at.")
    @click.option("--public-key", required=True, help="The line `gate-agent keygen` printed (ed25519:...).")
    @click.option("--pki", required=True, type=click.Path(file_okay=False), help="The directory of `ca init`.")
    @click.option("--out", required=True, type=click.Path(file_okay=False),
                  help="Where to write gate-tls.crt, gate-tls.key, ca.crt and bank.pub for the gate (never overwritten).")
    @json_option
    @with_config
    def gate_enroll(ctx: Context, gate_id: str, site_id: str, public_key: str, pki: str, out: str,
                    as_json: bool) -> None:
        """Register a gate (as `gate add` does), issue its MQTT client certificate, named after the gate
        (the broker's ACL lets that certificate publish only as this gate), and hand over the bank's
        public key (bank.pub), the only key whose acks, rosters and commands the gate will obey."""
        from collector.deploy.broker_config import reserved_names
        from collector.deploy.pki import check_out_free, issue_gate, load_ca
        from collector.signing import load_bank_key
        from gate_agent.protocol import public_key_text

        bank_public = public_key_text(load_bank_key(ctx.config).public_key())
        check_id("GATE", gate_id)
        check_id("SITE", site_id)
        load_ca(pki)
        check_out_free(out)
        from collector.cli.register import key_change

        with key_change(ctx) as store:  # and its entry in the register of gate keys, at once
            # The registry's rules (unique across sites, no reserved name), with this PKI's own names.
            outcome = store.add_gate(site_id, gate_id, public_key, reserved=reserved_names(pki))
        issued = issue_gate(pki, gate_id, out, bank_public=bank_public)
        registered = {"added": "added", "rotated": "given a new signing key",
                      "unchanged": "already registered with that key"}[outcome]
        emit(as_json, {"site": site_id, "gate": gate_id, "outcome": outcome, "certificate": str(issued.certificate),
                       "key": str(issued.key), "ca": str(Path(out) / "ca.crt"),
                       "bank_key": str(Path(out) / "bank.pub"),
                       "not_after": issued.not_after.isoformat()},
             f"gate {site_id}/{gate_id} {registered}; its MQTT certificate (name {gate_id}, valid until "
             f"{issued.not_after:%Y-%m-%d}) is in {out}: gate-tls.crt, gate-tls.key (0600), ca.crt, bank.pub\n"
             "now run `collector broker-config` again and reload the broker so that the gate may publish")

    return gate_enroll


@click.command("broker-config")
@click.option("--pki", required=True, type=click.Path(file_okay=False),
              help="Directory with ca.crt, server.crt and server.key, as the broker will read them.")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="The gates' TLS listener's port (8883).")
@click.option("--bind", help="The gates' listener listens on this address only (default: every address).")
@click.option("--collector-port", default=COLLECTOR_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="The collectors' TLS listener's port: the collector's [mqtt] port.")
@click.option("--collector-bind", default=COLLECTOR_BIND, show_default=True,
              help="The internal IP address of the collectors' listener; the gates' network must not reach it.")
@click.option("--persistence-dir", default=PERSISTENCE_DIR, show_default=True,
              help="Where Mosquitto keeps its sessions and queued messages (writable by user mosquitto).")
@click.option("--queue-limit-mib", default=QUEUE_LIMIT_MIB, show_default=True, type=int,
              help="What the broker may queue for one client (max_queued_bytes), in MiB.")
@click.option("--memory-limit-mib", default=MEMORY_LIMIT_MIB, show_default=True, type=int,
              help="The broker's whole heap (memory_limit), in MiB: at least twice --queue-limit-mib.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The Mosquitto configuration to write; the ACL goes beside it with the suffix .acl.")
@with_config
def broker_config(ctx: Context, pki: str, port: int, bind: str | None, collector_port: int, collector_bind: str,
                  persistence_dir: str, queue_limit_mib: int, memory_limit_mib: int, out: str) -> None:
    """Write the broker's whole Mosquitto configuration and an ACL from the registry: a TLS listener for
    the gates (client certificates, client id = certificate name) and one for the collectors on an
    internal address; queues bounded by bytes, persistence, session expiry. Each gate publishes only as
    itself and reads only its own acks, commands and site roster. Run again after enrolling or
    deactivating a gate, then reload the broker."""
    from collector.deploy.broker_config import BrokerSettings, GateEntry, write_broker_config

    settings = BrokerSettings(port, bind, collector_port, collector_bind, persistence_dir, queue_limit_mib,
                              memory_limit_mib)
    with ctx.store(readonly=True) as store:
        gates = [GateEntry(g["site"], g["gate"], bool(g["active"])) for g in store.gates()]
    conf, acl = write_broker_config(pki, out, gates, settings)
    active = sum(g.active for g in gates)
    click.echo(f"wrote {conf} and {acl}: gates' TLS listener on {bind or 'every address'}:{port}, collectors' on "
               f"{collector_bind}:{collector_port}, {active} gate(s) with access"
               + (f", {len(gates) - active} deactivated" if active < len(gates) else ""))


# ============================================================================== offline bundles


@click.command("import")
@click.argument("bundle_file", type=click.Path(dir_okay=False))
@json_option
@with_config
def import_command(ctx: Context, bundle_file: str, as_json: bool) -> None:
    """Import a gate's bundle (from `gate-agent export`) through the same verification and exactly-once
    storage as MQTT. Importing twice, or what MQTT already delivered, changes no punch."""
    from collector.ingest.bundle import import_bundle, read_bundle
    from collector.ingest.sun import load_master_key

    config = ctx.config
    sun_key = load_master_key(config)
    with ctx.store() as store:
        bundle = read_bundle(bundle_file, store)
        with click.progressbar(length=bundle.count, label=f"importing {bundle.site}/{bundle.gate}",
                               file=sys.stderr) as bar:
            summary = import_bundle(store, bundle, progress=bar.update,
                                    future_tolerance=config.future_tolerance_seconds,
                                    backwards_tolerance=config.backwards_tolerance_seconds, sun_key=sun_key)
    emit(as_json, summary.to_dict(),
         f"{bundle_file}: gate {summary.site}/{summary.gate} seq {summary.first}..{summary.last} "
         f"({summary.count} punches): stored {summary.stored}, duplicates {summary.duplicates}, "
         f"quarantined {summary.quarantined}, equivocations {summary.equivocations}"
         + (f", chain breaks {summary.chain_breaks}" if summary.chain_breaks else "")
         + f"; the bank now holds {summary.site}/{summary.gate} through seq {summary.held_through}"
         + ("; the bundle counts as the gate's heartbeat (its days can become final)" if summary.heartbeat else ""))
    if summary.problems:
        raise click.ClickException(f"{summary.problems} punch(es) not cleanly stored: see `collector quarantine` "
                                   "and `collector conflicts`")


@click.command("ack-file")
@click.option("--site", "site_id", required=True)
@click.option("--gate", "gate_id", required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The ack file to write.")
@json_option
@with_config
def ack_file(ctx: Context, site_id: str, gate_id: str, out: str, as_json: bool) -> None:
    """Write what the bank holds of a gate as an ack file signed with the bank's key (signing_key), for
    `gate-agent load-ack` at a gate without network."""
    from collector.ingest.bundle import write_ack_file
    from collector.signing import load_bank_key

    key = load_bank_key(ctx.config)
    with ctx.store(readonly=True) as store:
        written = write_ack_file(store, site_id, gate_id, key=key, out=out)
    emit(as_json, written, f"{out}: the bank holds {site_id}/{gate_id} through seq {written['seq']}; "
                           "load it at the gate with `gate-agent load-ack`")


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    main.add_command(ca)
    main.commands["gate"].add_command(gate_enroll_command())
    main.add_command(broker_config)
    main.add_command(import_command)
    main.add_command(ack_file)

