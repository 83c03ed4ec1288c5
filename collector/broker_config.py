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
from dataclasses import dataclass
from pathlib import Path

from gate_agent.protocol import PUNCH_SUBSCRIPTION, STATUS_SUBSCRIPTION, TOPIC_ROOT, GateTopics

from .pki import COLLECTOR_NAME, PkiError

BROKER_FILES = ("ca.crt", "server.crt", "server.key")


@dataclass(frozen=True, slots=True)
class GateEntry:
    site: str
    gate: str
    active: bool


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
    out = Path(out).resolve()
    acl_path = out.with_suffix(".acl")
    if acl_path == out:
        raise PkiError(f"{out}: name the configuration file with a suffix other than .acl")
    # The ACL first: a configuration naming a missing ACL file would stop the broker from starting.
    _replace(acl_path, acl_text(gates))
    _replace(out, config_text(pki, port, acl_path, bind))
    return out, acl_path


def _replace(path: Path, text: str) -> None:
    """Whole file or the old one: a broker reloading mid-write must not read half an ACL."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        raise PkiError(f"cannot write {path}: {error.strerror}") from None
