"""Mosquitto configuration for the bank's broker: two TLS listeners that admit only certificates of the
deployment CA, queues bounded by bytes rather than by a message count, persistence, session lifetimes,
and an ACL built from the collector's registry.

Identity is the certificate's common name (``use_identity_as_username``). On the gates' listener it is
also forced to be the client id, so no client can take over another's session. The collector needs a
client id of its own per partition (``collector``, ``collector-p01``...), which that option forbids, so
it connects on a second listener bound to an internal address that gates must not be able to reach.
Each active gate may publish only its own punch and status topics and read only its own ack and cmd
topics and its site's roster; the collector reads punches and statuses and writes acks, commands and
rosters. Anything else is refused by the broker before it reaches a subscriber. Regenerate after
enrolling or deactivating a gate and reload the broker (Mosquitto re-reads the ACL file on SIGHUP).

Started as root, Mosquitto drops to its own user (``mosquitto``) before it reads its certificate and key,
so it cannot read the folder ``collector ca init`` made (0700, keys 0600 root). broker-config copies the
three files the broker reads, and only those, from that folder into one of the broker's own (``certs/NAME``
beside the configuration): the directory 0750 and the key 0640, both root's and the broker's group, the
certificates 0644. The CA's key is never copied and never made readable; a broker folder holding it is
refused. Run as root, it then checks, as the broker's user, that each file the configuration names can be
read, and writes nothing if one cannot.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from collector.deploy.pki import PkiError, common_name, load_certificate
from collector.names import COLLECTOR_NAME, RESERVED_NAMES, is_reserved_name
from gate_agent.files import replace_atomically, replacing_file
from gate_agent.protocol import PUNCH_SUBSCRIPTION, STATUS_SUBSCRIPTION, TOPIC_ROOT, GateTopics, valid_id

BROKER_FILES = ("ca.crt", "server.crt", "server.key")
#: The CA's private key: in the folder `ca init` made, never copied, never made readable to the broker.
CA_KEY = "ca.key"
#: The user Mosquitto drops to when started as root (Debian's mosquitto package creates it).
BROKER_USER = "mosquitto"
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: Certificates a PKI directory may hold besides gates' (`collector ca init`): their names are taken.
PKI_CERTIFICATES = ("ca.crt", "server.crt", "collector.crt")

#: The collectors' listener: an internal address and a port of its own (see BrokerSettings).
COLLECTOR_BIND = "127.0.0.1"
COLLECTOR_PORT = 8884
#: Debian's mosquitto package creates this directory for user mosquitto.
PERSISTENCE_DIR = "/var/lib/mosquitto"
#: What the broker may queue for one client, and for everything together (MiB). A punch message is
#: ~400 bytes: 256 MiB is ~650,000 punches, a day of a 5,000-worker site (~8 MB) many times over, and
#: minutes of a whole region's shift-start peak for one partition whose collector is being replaced.
QUEUE_LIMIT_MIB = 256
MEMORY_LIMIT_MIB = 4096
#: The message count limit is the byte limit over this: bytes bind first for anything larger.
MIN_MESSAGE_BYTES = 64
#: Mosquitto 2.0 parses max_queued_bytes with atoi(): past 2**31 - 1 it wraps to "no limit".
MAX_QUEUE_LIMIT_MIB = 2047
#: Seconds between snapshots of the broker's memory to disk (a clean stop always writes one).
AUTOSAVE_SECONDS = 60
#: How long a disconnected session is kept, whatever the client asked for (Mosquitto's syntax).
SESSION_EXPIRATION = "14d"
#: Unacknowledged QoS 1 messages per client and direction, for clients that do not say otherwise.
MAX_INFLIGHT = 20


@dataclass(frozen=True, slots=True)
class GateEntry:
    site: str
    gate: str
    active: bool


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the broker listens and what it may hold, checked when made (PkiError: one line).

    The gates' listener forces each client id to the certificate's name. The collectors' listener
    cannot (every partition of the collector needs its own client id under the one collector
    certificate), so whoever reaches it with any certificate of the CA may pick any client id, a
    collector's included: it must be bound to an address the gates' network cannot reach.
    """

    port: int
    bind: str | None = None
    collector_port: int = COLLECTOR_PORT
    collector_bind: str = COLLECTOR_BIND
    persistence_dir: str = PERSISTENCE_DIR
    queue_limit_mib: int = QUEUE_LIMIT_MIB
    memory_limit_mib: int = MEMORY_LIMIT_MIB

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise PkiError(f"{problem}; nothing written")

    def problem(self) -> str | None:
        for option, port in (("--port", self.port), ("--collector-port", self.collector_port)):
            if not 1 <= port <= 65535:
                return f"{option} {port} is not between 1 and 65535"
        if self.collector_port == self.port:
            return f"--collector-port {self.collector_port} is the gates' --port: the collectors' listener needs its own"
        for option, value in (("--bind", self.bind), ("--collector-bind", self.collector_bind)):
            if value is not None and not _plain(value):
                return f"{option} {value!r} holds a line break, a space or a control character"
        try:
            address = ipaddress.ip_address(self.collector_bind)
        except ValueError:
            return (f"--collector-bind {self.collector_bind!r} is not an IP address: give the internal address "
                    "the collectors connect to (a name could resolve to one the gates reach)")
        if address.is_unspecified:
            return (f"--collector-bind {self.collector_bind} listens on every address, the gates' network "
                    f"included: give an internal address (default {COLLECTOR_BIND})")
        if self.bind is not None and _same_address(self.bind, address) and not address.is_loopback:
            return (f"--collector-bind {self.collector_bind} is the address the gates reach (--bind): on the "
                    "collectors' listener a client picks its own client id, so gates must not reach it")
        if not os.path.isabs(self.persistence_dir) or not _plain(self.persistence_dir, spaces=True):
            return f"--persistence-dir {self.persistence_dir!r} is not an absolute path on one line"
        if self.queue_limit_mib < 1:
            return f"--queue-limit-mib {self.queue_limit_mib} is not a positive number of MiB"
        if self.queue_limit_mib > MAX_QUEUE_LIMIT_MIB:
            return (f"--queue-limit-mib {self.queue_limit_mib} is more than {MAX_QUEUE_LIMIT_MIB}: Mosquitto reads "
                    "max_queued_bytes as a 32-bit integer, and a larger value would silently mean no limit")
        if self.memory_limit_mib < 2 * self.queue_limit_mib:
            return (f"--memory-limit-mib {self.memory_limit_mib} is less than twice --queue-limit-mib "
                    f"{self.queue_limit_mib}: one collector's full queue would exhaust the broker's memory before "
                    "its own limit applied, and then the broker refuses messages to and from everyone")
        return None


def _plain(text: str, *, spaces: bool = False) -> bool:
    """A configuration value Mosquitto reads as one value: a line break would start another setting."""
    return bool(text) and text.isprintable() and (spaces or " " not in text)


def _same_address(bind: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(bind) == address
    except ValueError:
        return False  # a name: Mosquitto resolves it, we cannot


def queue_settings(queue_limit_mib: int = QUEUE_LIMIT_MIB, memory_limit_mib: int = MEMORY_LIMIT_MIB) -> list[str]:
    """The production queue limits, also used by the local broker of the demo and the tests."""
    queue_bytes = queue_limit_mib * 1024 * 1024
    return [
        "# Queues are bounded by bytes, not by a message count. Mosquitto's default (1,000 messages per",
        "# client) silently drops QoS 1 messages owed to a collector that is offline for a moment, being",
        "# replaced, or slow in a burst: with one session per partition, the successor of a killed collector",
        "# must find everything its predecessor was owed. The count below never binds before the byte limit",
        f"# for messages of {MIN_MESSAGE_BYTES} bytes or more (a punch is ~400). It is not 0 (\"no limit\"): with 0,",
        "# Mosquitto 2.0.11 disconnects a client whose QoS 1 publish the ACL refused, and 2.0 releases had",
        "# other faults with 0 (eclipse-mosquitto#1956, #2879).",
        "# Past max_queued_bytes Mosquitto drops what is owed to that one client and logs \"Outgoing messages",
        "# are being dropped for client ...\" (and counts $SYS/broker/publish/messages/dropped); the gates",
        "# keep every punch until the collector acks it and send it again: the safety net, not the normal",
        "# path. memory_limit protects the host: reaching it, Mosquitto refuses messages and disconnects the",
        "# clients concerned, whoever they are, so it stays well above one client's limit.",
        f"max_queued_messages {queue_bytes // MIN_MESSAGE_BYTES}",
        f"max_queued_bytes {queue_bytes}",
        f"memory_limit {memory_limit_mib * 1024 * 1024}",
    ]


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
    an active gate under a reserved name, a gate (active or not) named like a session of the collector
    (its certificate would take that session over), or one gate id active at two sites (its certificate
    would publish as both)."""
    sites_of: dict[str, list[str]] = defaultdict(list)
    for entry in sorted(gates, key=lambda g: (g.site, g.gate)):
        if not (valid_id(entry.site) and valid_id(entry.gate)):
            return (f"the registry holds gate {entry.site!r}/{entry.gate!r}, which is not a valid MQTT user name "
                    "and topic level (letters, digits, '_', '.', '-'; 1-64)")
        if entry.active and entry.gate in reserved:
            return (f"gate {entry.site}/{entry.gate} is active under a reserved name (a certificate of the bank's "
                    f"PKI has it); deactivate it: collector gate deactivate {entry.gate} --site {entry.site}")
        if is_reserved_name(entry.gate) and entry.gate not in RESERVED_NAMES:
            # Deactivating does not help: the certificate still connects, and its client id is its name.
            return (f"gate {entry.site}/{entry.gate} is named like a session of the collector: its certificate "
                    "would take that session over at the broker, active or not; enrol the gate under another id "
                    "and keep the old certificate off the broker (a new CA)")
        if entry.active:
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


def config_text(certs: Path, acl_path: Path, settings: BrokerSettings, user: str = BROKER_USER) -> str:
    """The configuration; the broker reads ca.crt, server.crt and server.key from ``certs``."""
    tls = [f"cafile {certs / 'ca.crt'}", f"certfile {certs / 'server.crt'}", f"keyfile {certs / 'server.key'}",
           "require_certificate true", "use_identity_as_username true"]
    return "\n".join([
        "# Mosquitto configuration for site-gate attendance, written by `collector broker-config`; regenerate,",
        "# do not edit. It is the broker's whole configuration (mosquitto -c THIS_FILE): it chooses where",
        "# sessions are kept, and Mosquitto refuses a second persistence_location from another file.",
        "",
        "# Started as root, Mosquitto drops to this user before it reads its certificate and key (below):",
        "# `broker-config` made them readable by it, and by nobody else but root.",
        f"user {user}",
        "",
        "# Clients authenticate by certificate only: no anonymous clients, no passwords.",
        "allow_anonymous false",
        "per_listener_settings false",
        f"acl_file {acl_path}",
        "",
        *queue_settings(settings.queue_limit_mib, settings.memory_limit_mib),
        "# MQTT 5 clients (gates and collectors) set their own Receive Maximum toward the broker (the",
        "# collector: [ingest] receive_maximum); this is the broker's toward each client, and the limit for",
        "# a client that sets none. Mosquitto's default, stated.",
        f"max_inflight_messages {MAX_INFLIGHT}",
        "",
        "# Sessions and queued messages survive a restart: a clean stop writes them to disk, and a snapshot",
        f"# every {AUTOSAVE_SECONDS} s bounds what a crash loses to what arrived since (the gates send that again).",
        "# A snapshot blocks the broker while it writes; with queues drained it holds little more than the",
        "# sessions and the retained acks, statuses and rosters.",
        "persistence true",
        f"persistence_location {settings.persistence_dir.rstrip('/')}/",
        f"autosave_interval {AUTOSAVE_SECONDS}",
        "autosave_on_changes false",
        "",
        "# Gates and collectors ask for sessions that never expire. This caps every disconnected session,",
        "# MQTT 5 ones included (Mosquitto takes the shorter of this and the client's): far longer than a",
        "# collector partition waits for its next owner or a site stays shut, short enough that a session",
        "# nobody comes back for (a retired partition, a scrapped gate) stops holding its queue. A gate or",
        "# collector whose session expired subscribes again on its next connect, acks and rosters are",
        "# retained, and what was queued comes again from the gates, which keep every unacknowledged punch.",
        f"persistent_client_expiration {SESSION_EXPIRATION}",
        "",
        "# The gates' listener. The client id becomes the certificate name: no client can take over another's",
        "# session. (Listener options: placed before any listener, Mosquitto would open a default one on 1883.)",
        f"listener {settings.port}" + (f" {settings.bind}" if settings.bind else ""),
        *tls,
        "use_username_as_clientid true",
        "",
        "# The collectors' listener: one collector certificate, a client id per partition (collector,",
        "# collector-p01, ...), which use_username_as_clientid would forbid. Here any certificate of the CA may",
        "# choose any client id, so this address must be unreachable from the gates' network.",
        f"listener {settings.collector_port} {settings.collector_bind}",
        *tls,
        "",
    ])


@dataclass(frozen=True, slots=True)
class Written:
    """What `broker-config` wrote: the configuration, its ACL, and where the broker reads its TLS files
    (``copied``: copies made from the CA's folder; ``key_access``: server.key's mode and owner there)."""

    conf: Path
    acl: Path
    certs: Path
    copied: bool
    key_access: str


def write_broker_config(pki: str | os.PathLike, out: str | os.PathLike, gates: list[GateEntry],
                        settings: BrokerSettings, *, certs: str | os.PathLike | None = None,
                        user: str = BROKER_USER) -> Written:
    """Write ``out`` and the ACL beside it (``out`` with the suffix ``.acl``). The broker reads its TLS
    files from a folder of its own, ``certs`` (default ``certs/NAME`` beside ``out``): copies of ca.crt,
    server.crt and server.key from ``pki`` (never ca.key), unless ``pki`` is that folder. Run as root,
    each file is then checked readable by ``user``, the user the broker runs as."""
    pki = Path(pki).resolve()
    missing = [name for name in BROKER_FILES if not (pki / name).is_file()]
    if missing:
        raise PkiError(f"{pki} lacks {', '.join(missing)} (made by `collector ca init`)")
    if not _USER_NAME.fullmatch(user):
        raise PkiError(f"--broker-user {user!r} is not a user name; nothing written")
    # Not resolve(): a symlink planted at ``out`` must be replaced, not followed to a file elsewhere.
    out = Path(os.path.abspath(out))
    acl_path = out.with_suffix(".acl")
    if acl_path == out:
        raise PkiError(f"{out}: name the configuration file with a suffix other than .acl")
    target = Path(os.path.abspath(certs if certs is not None else out.parent / "certs" / out.stem))
    for path in (pki, acl_path, target):
        if not _plain(str(path), spaces=True):
            raise PkiError(f"{str(path)!r} holds a line break or a control character, which would end the "
                           "setting in Mosquitto's configuration; nothing written")
    copy = target.resolve() != pki
    if not copy and (pki / CA_KEY).exists():
        raise PkiError(f"{pki} holds {CA_KEY}: the broker never reads its files beside the CA's key; give the "
                       "broker's copies a folder of their own (--certs, or the default certs/NAME beside --out); "
                       "nothing written")
    problem = registry_problem(gates, reserved_names(pki))
    if problem:
        raise PkiError(f"{problem}; nothing written")
    account = _broker_account(user)
    if copy:
        _copy_broker_files(pki, target, account)
    if account is not None:
        unreadable = _unreadable_by(account, [target / name for name in BROKER_FILES])
        if unreadable and copy:
            raise PkiError(f"user {user}, whom Mosquitto runs as, cannot reach the copies in {target}: a directory "
                           f"above it is closed to that user; put --out (or --certs) where it may enter, such as "
                           f"/etc/mosquitto; the configuration was not written")
        if unreadable:
            raise PkiError(
                f"user {user}, whom Mosquitto runs as, cannot read {', '.join(str(p) for p in unreadable)}: give "
                f"--pki the folder `collector ca init` made and broker-config writes copies the broker can read, "
                f"or make these readable: chgrp {user} {target} {target / 'server.key'} && chmod 0750 {target} && "
                f"chmod 0640 {target / 'server.key'} && chmod 0644 {target / 'ca.crt'} {target / 'server.crt'}; "
                "nothing written")
    # The ACL first: a configuration naming a missing ACL file would stop the broker from starting.
    _replace(acl_path, acl_text(gates))
    _replace(out, config_text(target, acl_path, settings, user))
    return Written(out, acl_path, target, copy, _access(target / "server.key"))


@dataclass(frozen=True, slots=True)
class _Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _broker_account(user: str) -> _Account | None:
    """The broker's user when this runs as root (who else could hand files to it), else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PkiError(f"there is no user {user} on this host: install mosquitto first (its package creates the "
                       "user it runs as), or name that user with --broker-user; nothing written") from None
    return _Account(user, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(user, entry.pw_gid)))


def _copy_broker_files(pki: Path, target: Path, account: _Account | None) -> None:
    """Copy ca.crt, server.crt and server.key (never ca.key) into ``target``: as root, the directory
    0750 and the key 0640 owned by root and the broker's group; otherwise owned by whoever runs this,
    the key 0600. Each file is replaced whole."""
    gid = account.gid if account is not None else os.getegid()
    try:
        if target.is_symlink():
            raise PkiError(f"{target} is a symbolic link: the broker's folder must be a real directory; "
                           "nothing written")
        if not target.exists():
            target.mkdir(mode=0o700, parents=True)
            if account is not None:
                os.chown(target, 0, gid)
            os.chmod(target, 0o750)
        for name, mode in (("ca.crt", 0o644), ("server.crt", 0o644),
                           ("server.key", 0o640 if account is not None else 0o600)):
            data = (pki / name).read_bytes()
            with replacing_file(target / name, 0o600) as handle:
                # Owner and mode set on the open file before it takes the name: never a moment readable
                # by more than root, nor chmodded through a path someone could have swapped.
                if account is not None:
                    os.fchown(handle.fileno(), 0, gid)
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
    except OSError as error:
        raise PkiError(f"cannot write the broker's copies in {target}: {error.strerror}; nothing else written") \
            from None


def _access(path: Path) -> str:
    """A file's mode and owner as ``ls -l`` names them: ``0640 root:mosquitto``."""
    import grp
    import pwd

    info = path.stat()
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{stat.S_IMODE(info.st_mode):04o} {user}:{group}"


def _unreadable_by(account: _Account, paths: list[Path]) -> list[Path]:
    """The files ``account`` cannot read, asked as that user (the kernel's answer: modes, owners, groups,
    ACLs and every directory on the way)."""
    script = 'for f in "$@"; do [ -r "$f" ] || printf "%s\\n" "$f"; done'
    try:
        result = subprocess.run(["/bin/sh", "-c", script, "sh", *map(str, paths)], user=account.uid,
                                group=account.gid, extra_groups=list(account.groups), capture_output=True,
                                text=True, timeout=30, cwd="/", check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise PkiError(f"cannot check what user {account.name} may read: {error}; nothing written") from None
    unreadable = set(result.stdout.splitlines())
    return [path for path in paths if str(path) in unreadable]


def _replace(path: Path, text: str) -> None:
    """Whole file or the old one: a broker reloading mid-write must not read half an ACL. 0644: Mosquitto
    reads it after dropping to its own user, and it holds no secret."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, text.encode(), 0o644)
    except OSError as error:
        raise PkiError(f"cannot write {path}: {error.strerror}") from None
