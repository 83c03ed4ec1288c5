"""Mosquitto configuration for the bank's broker: a TLS listener that admits only certificates of the
deployment CA, and an ACL built from the collector's registry.

Identity is the certificate's common name (``use_identity_as_username``), which is also forced to be
the client id, so no client can take over another's session. Each active gate may publish only its own
punch and status topics and read only its own ack and cmd topics and its site's roster; the collector
reads punches and statuses and writes acks, commands and rosters. Anything else is refused by the broker
before it reaches a subscriber. Regenerate after enrolling or deactivating a gate and reload the broker
(Mosquitto re-reads the ACL file on SIGHUP).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gate_agent.files import replace_atomically
from gate_agent.protocol import PUNCH_SUBSCRIPTION, STATUS_SUBSCRIPTION, TOPIC_ROOT, GateTopics, valid_id

from .pki import COLLECTOR_NAME, RESERVED_NAMES, PkiError, common_name, load_certificate

BROKER_FILES = ("ca.crt", "server.crt", "server.key")
#: Certificates a PKI directory may hold besides gates' (`collector ca init`): their names are taken.
PKI_CERTIFICATES = ("ca.crt", "server.crt", "collector.crt")


@dataclass(frozen=True, slots=True)
class GateEntry:
    site: str
    gate: str
    active: bool


def reserved_names(pki: str | os.PathLike) -> frozenset[str]:
    """Names no gate may have: the fixed ones and those of the certificates in ``pki`` other than gates'
    (the broker's server certificate is named after the host given to `ca init`). The broker knows a
    client only by its certificate's name, so a gate sharing one would share that identity."""
    names = set(RESERVED_NAMES)
    for filename in PKI_CERTIFICATES:
        path = Path(pki) / filename
        if path.is_file():
            name = common_name(load_certificate(path))
            if name:
                names.add(name)
    return frozenset(names)


def registry_problem(gates: list[GateEntry], reserved: frozenset[str] = RESERVED_NAMES) -> str | None:
    """Why an ACL cannot express this registry, or None: an id that is no MQTT user name and topic level,
    an active gate under a reserved name, or one gate id active at two sites (its certificate would
    publish as both)."""
    sites_of: dict[str, list[str]] = defaultdict(list)
    for entry in sorted(gates, key=lambda g: (g.site, g.gate)):
        if not (valid_id(entry.site) and valid_id(entry.gate)):
            return (f"the registry holds gate {entry.site!r}/{entry.gate!r}, which is not a valid MQTT user name "
                    "and topic level (letters, digits, '_', '.', '-'; 1-64)")
        if not entry.active:
            continue
        if entry.gate in reserved:
            return (f"gate {entry.site}/{entry.gate} is active under a reserved name (a certificate of the bank's "
                    f"PKI has it); deactivate it: collector gate deactivate {entry.gate} --site {entry.site}")
        sites_of[entry.gate].append(entry.site)
    for gate, sites in sorted(sites_of.items()):
        if len(sites) > 1:
            return (f"gate id {gate} is active at sites {' and '.join(sites)}, but the broker tells gates apart "
                    f"by certificate name (the gate id) alone; deactivate all but one: "
                    f"collector gate deactivate {gate} --site {sites[-1]}")
    return None


def acl_text(gates: list[GateEntry]) -> str:
    lines = [
        "# Written by `collector broker-config` from the collector's registry; regenerate, do not edit.",
        "# A user is a client certificate's common name (use_identity_as_username).",
        "",
        f"user {COLLECTOR_NAME}",
        f"topic read {PUNCH_SUBSCRIPTION}",
        f"topic read {STATUS_SUBSCRIPTION}",
        f"topic write {TOPIC_ROOT}/+/+/ack",
        f"topic write {TOPIC_ROOT}/+/+/cmd",
        f"topic write {TOPIC_ROOT}/+/roster",
    ]
    for entry in sorted(gates, key=lambda g: (g.site, g.gate)):
        topics = GateTopics(entry.site, entry.gate)
        lines.append("")
        if not entry.active:
            # A deactivated gate keeps its punches until it is active again: better than quarantining them.
            lines.append(f"# gate {entry.site}/{entry.gate} is deactivated: no access")
            continue
        lines += [
            f"# gate {entry.site}/{entry.gate}",
            f"user {entry.gate}",
            f"topic write {topics.punch}",
            f"topic write {topics.status}",
            f"topic read {topics.ack}",
            f"topic read {topics.cmd}",
            f"topic read {topics.roster}",
        ]
    return "\n".join(lines) + "\n"


def config_text(pki: Path, port: int, acl_path: Path, bind: str | None) -> str:
    return "\n".join([
        "# Mosquitto configuration for site-gate attendance, written by `collector broker-config`.",
        "# Install it in /etc/mosquitto/conf.d/ (Debian's mosquitto.conf adds persistence and logging).",
        "",
        "# Clients authenticate by certificate only: no anonymous clients, no passwords.",
        "allow_anonymous false",
        "per_listener_settings false",
        f"acl_file {acl_path}",
        "",
        f"listener {port}" + (f" {bind}" if bind else ""),
        f"cafile {pki / 'ca.crt'}",
        f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}",
        "require_certificate true",
        "use_identity_as_username true",
        "# The client id becomes the certificate name: nobody can take over another client's session.",
        "# (A listener option: placed before any listener, Mosquitto would open a default one on 1883.)",
        "use_username_as_clientid true",
        "",
    ])


def write_broker_config(pki: str | os.PathLike, port: int, out: str | os.PathLike, gates: list[GateEntry],
                        *, bind: str | None = None) -> tuple[Path, Path]:
    """Write ``out`` and the ACL beside it (``out`` with the suffix ``.acl``); return both paths."""
    pki = Path(pki).resolve()
    missing = [name for name in BROKER_FILES if not (pki / name).is_file()]
    if missing:
        raise PkiError(f"{pki} lacks {', '.join(missing)} (made by `collector ca init`)")
    if not 1 <= port <= 65535:
        raise PkiError(f"port {port} is not between 1 and 65535")
    # Not resolve(): a symlink planted at ``out`` must be replaced, not followed to a file elsewhere.
    out = Path(os.path.abspath(out))
    acl_path = out.with_suffix(".acl")
    if acl_path == out:
        raise PkiError(f"{out}: name the configuration file with a suffix other than .acl")
    problem = registry_problem(gates, reserved_names(pki))
    if problem:
        raise PkiError(f"{problem}; nothing written")
    # The ACL first: a configuration naming a missing ACL file would stop the broker from starting.
    _replace(acl_path, acl_text(gates))
    _replace(out, config_text(pki, port, acl_path, bind))
    return out, acl_path


def _replace(path: Path, text: str) -> None:
    """Whole file or the old one: a broker reloading mid-write must not read half an ACL. 0644: Mosquitto
    reads it after dropping to its own user, and it holds no secret."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, text.encode(), 0o644)
    except OSError as error:
        raise PkiError(f"cannot write {path}: {error.strerror}") from None
