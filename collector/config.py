"""The collector's TOML configuration.

```toml
db = "/var/lib/collector/collector.sqlite3"
signing_key = "$CREDENTIALS_DIRECTORY/bank.key"   # the bank's Ed25519 key (collector keygen)
card_key = "$CREDENTIALS_DIRECTORY/card.key"     # optional: the bank card key gates hold too (docs/cards.md)
sun_key = "$CREDENTIALS_DIRECTORY/sun.key"       # optional: the NTAG 424 DNA master key (docs/cards.md)

[mqtt]
host = "127.0.0.1"
port = 8883
client_id = "collector"
tls_ca = "pki/ca.crt"
tls_cert = "pki/collector.crt"
tls_key = "pki/collector.key"

[ingest]                      # optional
gap_wait_seconds = 5          # how long a gap may stay open before a resend is requested

[database]                    # optional, PostgreSQL: bounds on every connection (docs/scale-out.md)
lock_timeout_seconds = 3.75   # daemon default: lease_seconds / 4; commands 30
idle_in_transaction_timeout_seconds = 15  # daemon default: lease_seconds; commands 600
statement_timeout_seconds = 60            # daemon default: 4 x lease_seconds (at least 30); commands 300

[evidence]                    # optional: what one worker's evidence may cost (docs/security.md)
builds_per_day = 10           # requests one worker may make in any 24 hours
stored_megabytes = 50         # signed files kept for one worker at once (each kept 7 days)
max_days = 366                # days of one period
max_segment_punches = 50000   # gate punches one file may carry (its chain segments)
memory_megabytes = 1024       # address space of the process that builds one file
build_seconds = 300           # time one build may take

[figures]                     # optional: what covers the whole bank, kept by the daemon for /metrics (docs/api.md)
refresh_seconds = 300         # each site's arrears and unknown cards inside, and the punches held, this often

[wages]                       # optional
approvers = ["ops-zhao", "ops-chen"]   # who may approve wage tables (default: anyone but who computed it)
paid_day_minutes = 240        # a day-rate day worked less is a short_day decision (0: off)
half_day_minutes = 0          # a day-rate day worked this long (and less than paid_day_minutes) pays half (0: off)
unusual_day_rate_yuan = 2000  # a warning above these (whole yuan); the hard bound is the code's, docs/wages.md
unusual_hourly_rate_yuan = 250
unusual_line_yuan = 60000     # one worker's month
unusual_batch_yuan = 5000000  # one batch's total

[web]                         # optional: `collector serve` (--host/--port override these)
host = "127.0.0.1"
port = 8080
live_streams = 64             # live streams at once; site tokens together leave one token's share free
live_streams_per_token = 8
requests_per_credential = 4   # requests in the works at once per token, sign-in session or worker (429 past it)
requests_per_site = 16        # ... per site, bank tokens not counted (503 past it; docs/security.md)
trusted_proxy = ["127.0.0.1"]  # optional, off by default: the reverse proxy's address(es) (docs/security.md)
forwarded_header = "X-Forwarded-For"   # where that proxy puts the client's address (or "X-Real-IP")

[web.tokens]                  # bearer tokens of the dashboard and API
"token-for-site-manager" = "S1"
"token-for-bank-ops" = "*"

[limits]                      # optional: what the pages are sized for (docs/security.md)
max_workers_per_file = 20000  # rows of one worker file (a larger one is refused, unread past the bound)
max_workers_per_site = 20000  # workers assigned to one site now (an import or assign past it is refused)
```
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from gate_agent.configfile import ConfigError, Table
from gate_agent.mqtt import MqttSettings
from gate_agent.protocol import valid_id

from .money import MAX_CREDIT_FEN, MAX_FEN
from .store import Timeouts
from .store.evidence_requests import STALE_CLAIM, EvidenceLimits
from .wages.limits import WageLimits

__all__ = ["CollectorConfig", "ConfigError", "load_config"]

#: The first pause before a failed database write is tried again (it doubles up to write_retry_max_seconds).
RETRY_FIRST_SECONDS = 0.5


@dataclass(frozen=True)
class CollectorConfig:
    """The collector's settings. ``mqtt`` and ``signing_key`` are resolved when first used: they name the
    daemon's secrets (``$CREDENTIALS_DIRECTORY/...``), which `collector serve`, reading the same file as
    another user without credentials, neither has nor needs. Their mistakes raise ConfigError then."""

    db: str | Path  # a postgresql:// URL or a SQLite file
    read_mqtt: Callable[[], MqttSettings] = field(repr=False, compare=False)
    read_signing_key: Callable[[], Path | None] = field(default=lambda: None, repr=False, compare=False)
    #: The bank card key (gate_agent.emv) and the NTAG 424 DNA master key (collector.ingest.sun) files, if set.
    read_card_key: Callable[[], Path | None] = field(default=lambda: None, repr=False, compare=False)
    read_sun_key: Callable[[], Path | None] = field(default=lambda: None, repr=False, compare=False)
    gap_wait_seconds: float = 5.0
    resend_interval_seconds: float = 30.0
    write_retry_max_seconds: float = 30.0  # a failed write is retried after 0.5 s, doubling up to this
    future_tolerance_seconds: float = 300.0
    backwards_tolerance_seconds: float = 60.0
    receive_maximum: int = 1000
    roster_interval_seconds: float = 5.0
    partitions: int = 1  # [cluster]: the sites split over this many MQTT sessions, each leased to one process
    lease_seconds: float = 15.0
    instance: str | None = None
    #: [database]: the bounds of every PostgreSQL connection; None: derived (``timeouts``).
    lock_timeout_seconds: float | None = None
    idle_in_transaction_timeout_seconds: float | None = None
    statement_timeout_seconds: float | None = None
    final_grace_hours: float = 6.0
    #: [evidence]: what one worker's requests may cost (checked when asked), and one build's caps.
    evidence_limits: EvidenceLimits = field(default_factory=EvidenceLimits)
    evidence_memory_megabytes: int = 1024
    evidence_build_seconds: float = 300.0
    #: [figures]: how often the daemon computes again what /metrics shows of the whole bank (collector.wages.figures).
    figures_refresh_seconds: float = 300.0
    #: [wages]: who may approve a wage table (empty: anyone but whoever computed the version).
    wage_approvers: tuple[str, ...] = ()
    #: [wages]: the paid day's minimum and the amounts that earn a warning (collector.wages.limits).
    wage_limits: WageLimits = field(default_factory=WageLimits)
    web_tokens: dict[str, str] = field(default_factory=dict)
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    live_streams: int = 64
    live_streams_per_token: int = 8
    #: Requests in the works at once per credential and per site (collector/web/bounds.py): a page fetches
    #: at most three things at once (the dashboard: attendance, disputes, the sites, beside its live stream),
    #: and a site rarely has more than a handful of pages loading in one instant.
    requests_per_credential: int = 4
    requests_per_site: int = 16
    #: [limits]: the workers one file may list and one site may have assigned now (collector/workers/registry.py).
    max_workers_per_file: int = 20_000
    max_workers_per_site: int = 20_000
    #: The reverse proxy's addresses and networks whose ``forwarded_header`` names the client (empty: none is
    #: trusted, the connection's address is the client's).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    forwarded_header: str = "X-Forwarded-For"
    source: Path | None = None

    @cached_property
    def mqtt(self) -> MqttSettings:
        return self.read_mqtt()

    @cached_property
    def signing_key(self) -> Path | None:
        return self.read_signing_key()

    def timeouts(self, *, daemon: bool = False) -> Timeouts:
        """The bounds of a PostgreSQL connection: those configured, else for the daemon derived from its
        lease (a paused process's transaction ends, and a wait gives up, well before the others would take
        its partitions twice over), else the generous defaults of commands (an import's transaction may
        stay open while it reads a large file)."""
        lease = self.lease_seconds
        derived = Timeouts(statement=max(30.0, 4 * lease), lock=lease / 4, idle_in_transaction=lease) \
            if daemon else Timeouts()
        return Timeouts(statement=self.statement_timeout_seconds or derived.statement,
                        lock=self.lock_timeout_seconds or derived.lock,
                        idle_in_transaction=self.idle_in_transaction_timeout_seconds or derived.idle_in_transaction)


#: A gate clock off by more than a day is flagged whatever the tolerance (clock_implausible).
MAX_TOLERANCE_SECONDS = 86400
MIN_TOKEN_CHARACTERS = 16
MIN_TOKEN_BITS = 80
_CHARACTER_CLASSES = ((str.islower, 26), (str.isupper, 26), (str.isdigit, 10))
_OTHER_CHARACTERS = 33


def token_bits(token: str) -> float:
    """A rough, deliberately low estimate of a token's entropy: log2 of the alphabet its character classes
    span, times the characters that are not predictable from the ones before (a repeat, or the next step
    of a run such as abc or 321), and at most twice the distinct characters (``passwordpassword``)."""
    pool = sum(size for test, size in _CHARACTER_CLASSES if any(c.isascii() and test(c) for c in token))
    if any(not (c.isascii() and c.isalnum()) for c in token):
        pool += _OTHER_CHARACTERS
    free = 0
    for i, char in enumerate(token):
        if i >= 1 and char == token[i - 1]:
            continue
        step = ord(char) - ord(token[i - 1]) if i >= 1 else 0
        if i >= 2 and abs(step) == 1 and step == ord(token[i - 1]) - ord(token[i - 2]):
            continue
        free += 1
    return min(free, 2 * len(set(token))) * math.log2(pool) if pool > 1 else 0.0


#: Overrides ``db``, so that a PostgreSQL password need not sit in the file (libpq's PGPASSWORD and
#: ~/.pgpass work too).
DB_ENVIRONMENT = "COLLECTOR_DB"


def _database(table: Table) -> str | Path | None:
    """``db``: a ``postgresql://`` URL, or a SQLite file (a path, or ``sqlite:PATH``)."""
    value = table.raw("db", None)
    override = os.environ.get(DB_ENVIRONMENT)
    if override:
        value = override
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise table.error("db", "must be a path or a postgresql:// URL")
    if value.split(":", 1)[0] in ("postgresql", "postgres"):
        if "@" not in value and "/" not in value.split("://", 1)[-1]:
            raise table.error("db", "a PostgreSQL URL names a database: postgresql://user@host:port/dbname")
        return value
    return table.expand_path("db", value[len("sqlite:"):] if value.startswith("sqlite:") else value)


#: The headers a proxy may name the client in: the address it appends last (X-Forwarded-For), or the one it sets.
FORWARDED_HEADERS = ("X-Forwarded-For", "X-Real-IP")


def _trusted_proxies(web: Table) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``[web] trusted_proxy``: an address or network, or a list of them (off when absent)."""
    value = web.raw("trusted_proxy", None)
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise web.error("trusted_proxy", "must be an address or network (\"127.0.0.1\", \"10.0.0.0/24\"), or a list")
    networks = []
    for text in values:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise web.error("trusted_proxy", f"{text!r} is not an IP address or network") from None
    if any(network.prefixlen == 0 for network in networks):
        raise web.error("trusted_proxy", "trusting every address would let any client choose its own address")
    return tuple(networks)


def _wage_limits(wages: Table) -> WageLimits:
    """``[wages]``'s paid day and unusual amounts (whole yuan in the file, fen in the code)."""
    defaults = WageLimits()
    paid_day = wages.int("paid_day_minutes", defaults.paid_day_minutes, minimum=0, maximum=24 * 60)
    half_day = wages.int("half_day_minutes", defaults.half_day_minutes, minimum=0, maximum=24 * 60)
    if half_day and half_day >= paid_day:
        raise wages.error("half_day_minutes", f"{half_day} must be below paid_day_minutes ({paid_day})")

    def yuan(key: str, default_fen: int, maximum_fen: int) -> int:
        return 100 * wages.int(key, default_fen // 100, minimum=1, maximum=maximum_fen // 100)

    return WageLimits(
        paid_day_minutes=paid_day, half_day_minutes=half_day,
        unusual_day_rate_fen=yuan("unusual_day_rate_yuan", defaults.unusual_day_rate_fen, MAX_CREDIT_FEN),
        unusual_hourly_rate_fen=yuan("unusual_hourly_rate_yuan", defaults.unusual_hourly_rate_fen, MAX_CREDIT_FEN),
        unusual_line_fen=yuan("unusual_line_yuan", defaults.unusual_line_fen, MAX_CREDIT_FEN),
        unusual_batch_fen=yuan("unusual_batch_yuan", defaults.unusual_batch_fen, MAX_FEN))


def load_config(path: str | os.PathLike) -> CollectorConfig:
    table = Table.load(path)
    state_dir = os.environ.get("STATE_DIRECTORY", "/var/lib/collector").split(":")[0]
    db = _database(table) or Path(state_dir) / "collector.sqlite3"
    signing_key = table.path_later("signing_key", None)
    card_key = table.path_later("card_key", None)
    sun_key = table.path_later("sun_key", None)
    mqtt_table = table.table("mqtt", deferred=True)

    def read_mqtt() -> MqttSettings:
        settings = MqttSettings.from_table(mqtt_table, default_client_id="collector")
        mqtt_table.finish()
        return settings

    ingest = table.table("ingest")
    attendance = table.table("attendance")
    cluster = table.table("cluster")
    database = table.table("database")
    evidence = table.table("evidence")
    figures = table.table("figures")
    limits = table.table("limits")
    wages = table.table("wages")
    approvers = tuple(" ".join(name.split()) for name in wages.list_of_str("approvers", []))
    if any(not name for name in approvers):
        raise wages.error("approvers", "a name may not be blank")
    wage_limits = _wage_limits(wages)
    web = table.table("web")
    tokens_table = web.table("tokens")
    tokens = {}
    for token in tokens_table.keys():
        scope = tokens_table.str(token)
        if scope != "*" and not valid_id(scope):
            raise tokens_table.error(token[:4] + "...", f"scope {scope!r} is neither a site id nor '*'")
        if len(token) < MIN_TOKEN_CHARACTERS:
            raise tokens_table.error(token[:4] + "...", f"tokens must be at least {MIN_TOKEN_CHARACTERS} characters")
        bits = token_bits(token)
        if bits < MIN_TOKEN_BITS:
            raise tokens_table.error(token[:4] + "...", f"too easy to guess (about {bits:.0f} bits, estimated from its "
                                     f"characters; {MIN_TOKEN_BITS} wanted): use a random one "
                                     "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
        tokens[token] = scope
    live_streams = web.int("live_streams", 64, minimum=2, maximum=10_000)
    per_token = web.int("live_streams_per_token", 8, minimum=1, maximum=10_000)
    if per_token >= live_streams:
        raise web.error("live_streams_per_token", f"{per_token} must be below live_streams ({live_streams}): that many "
                        "streams stay free for bank tokens whatever the site tokens hold")
    trusted_proxies = _trusted_proxies(web)
    forwarded_header = web.choice("forwarded_header", FORWARDED_HEADERS, "X-Forwarded-For")
    lease_seconds = cluster.number("lease_seconds", 15, minimum=2, maximum=600)
    lock_timeout = database.number("lock_timeout_seconds", None, minimum=0.1, maximum=600)
    if lock_timeout is not None and lock_timeout >= lease_seconds:
        raise database.error("lock_timeout_seconds", f"{lock_timeout} must be below [cluster] lease_seconds "
                             f"({lease_seconds}): a burst waiting that long would outlive its lease")
    config = CollectorConfig(
        db=db,
        read_mqtt=read_mqtt,
        read_signing_key=signing_key,
        read_card_key=card_key,
        read_sun_key=sun_key,
        gap_wait_seconds=ingest.number("gap_wait_seconds", 5, minimum=0.1, maximum=3600),
        resend_interval_seconds=ingest.number("resend_interval_seconds", 30, minimum=1, maximum=86400),
        write_retry_max_seconds=ingest.number("write_retry_max_seconds", 30, minimum=RETRY_FIRST_SECONDS,
                                              maximum=3600),
        future_tolerance_seconds=ingest.number("future_tolerance_seconds", 300, minimum=0,
                                               maximum=MAX_TOLERANCE_SECONDS),
        backwards_tolerance_seconds=ingest.number("backwards_tolerance_seconds", 60, minimum=0,
                                                  maximum=MAX_TOLERANCE_SECONDS),
        receive_maximum=ingest.int("receive_maximum", 1000, minimum=1, maximum=65535),
        roster_interval_seconds=ingest.number("roster_interval_seconds", 5, minimum=0.1, maximum=3600),
        partitions=cluster.int("partitions", 1, minimum=1, maximum=256),
        lease_seconds=lease_seconds,
        instance=cluster.str("instance", None),
        lock_timeout_seconds=lock_timeout,
        idle_in_transaction_timeout_seconds=database.number("idle_in_transaction_timeout_seconds", None,
                                                            minimum=1, maximum=86400),
        statement_timeout_seconds=database.number("statement_timeout_seconds", None, minimum=1, maximum=86400),
        evidence_limits=EvidenceLimits(
            builds_per_day=evidence.int("builds_per_day", 10, minimum=1, maximum=1000),
            stored_bytes=evidence.int("stored_megabytes", 50, minimum=1, maximum=100_000) * 1024 * 1024,
            max_days=evidence.int("max_days", 366, minimum=1, maximum=366),
            max_segment_punches=evidence.int("max_segment_punches", 50_000, minimum=1, maximum=100_000_000)),
        evidence_memory_megabytes=evidence.int("memory_megabytes", 1024, minimum=64, maximum=1024 * 1024),
        # Below the claim's staleness: no other process takes a request over while its build may still run.
        evidence_build_seconds=evidence.number("build_seconds", 300, minimum=1,
                                               maximum=STALE_CLAIM.total_seconds() - 60),
        figures_refresh_seconds=figures.number("refresh_seconds", 300, minimum=10, maximum=86400),
        wage_approvers=approvers,
        wage_limits=wage_limits,
        final_grace_hours=attendance.number("final_grace_hours", 6, minimum=0, maximum=24 * 30),
        web_tokens=tokens,
        web_host=web.str("host", "127.0.0.1"),
        web_port=web.int("port", 8080, minimum=1, maximum=65535),
        live_streams=live_streams,
        live_streams_per_token=per_token,
        requests_per_credential=web.int("requests_per_credential", 4, minimum=1, maximum=10_000),
        requests_per_site=web.int("requests_per_site", 16, minimum=1, maximum=10_000),
        max_workers_per_file=limits.int("max_workers_per_file", 20_000, minimum=1, maximum=10_000_000),
        max_workers_per_site=limits.int("max_workers_per_site", 20_000, minimum=1, maximum=10_000_000),
        trusted_proxies=trusted_proxies,
        forwarded_header=forwarded_header,
        source=Path(path),
    )
    table.finish()
    return config
