"""Sneaker-net, the bank's side: import a gate's signed bundle; write a signed ack file for the gate.

The format is described in ``gate_agent/bundle.py``, which writes bundles and reads ack files. An import
takes the same path as MQTT: the punches become punch-topic messages of at most MAX_BATCH punches and go
through ``Ingestor`` (source ``import``), so each is verified on its own, stored exactly once, and
anything bad is quarantined with a reason. Importing a file twice, or what MQTT already delivered,
changes no punch. The gate learns of the import from the ack the collector daemon sends when the gate's
next heartbeat reports less acknowledged than the bank holds, or from an ack file (the same signed ack).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.attendance.reports import heartbeat_made
from collector.errors import CollectorError
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.files import write_new
from gate_agent.protocol import (
    ACK_FILE_FORMAT,
    BUNDLE_FORMAT,
    FILE_FORMAT_VERSION,
    MAX_BATCH,
    Ack,
    GateTopics,
    ProtocolError,
    canonical_json,
    encode_punch_bodies,
    file_format_problem,
    format_time,
    key_id,
    parse_public_key,
    parse_time,
    utc_now_text,
    valid_id,
)

#: Punch messages per ingest transaction: large enough to be quick, small enough not to hold the
#: database from the running daemon for long.
MESSAGES_PER_BURST = 10
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BundleError(CollectorError):
    """A bundle that cannot be read or trusted, or an ack file that cannot be written; one line."""


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Bundle:
    path: Path
    site: str
    gate: str
    first: int
    last: int
    created: str
    key: str
    lines: list[bytes]
    synced: bool = False  # the gate's clock was NTP-synchronised when it exported

    @property
    def count(self) -> int:
        return len(self.lines)


_HEADER_FIELDS = {"format": str, "version": int, "site": str, "gate": str, "first": int, "last": int, "synced": bool,
                  "count": int, "created": str, "key": str, "punches_sha256": str, "sig": str}


def read_bundle(path: str | os.PathLike, store: Store) -> Bundle:
    """Read a bundle and check it whole: header, the gate's signature with a key the bank registered for
    it, the punch count and digest. Nothing of a file that fails is ingested."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BundleError(f"cannot read {path}: {error.strerror}") from None
    first_line, _, rest = data.partition(b"\n")
    try:
        header = json.loads(first_line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{path} is not a punch bundle (its first line is not JSON)") from None
    problem = file_format_problem(header, BUNDLE_FORMAT)
    if problem:
        raise BundleError(f"{path} is not a punch bundle of this version ({problem})")
    if set(header) != set(_HEADER_FIELDS):
        raise BundleError(f"{path}: header fields {sorted(header)}, expected {sorted(_HEADER_FIELDS)}")
    for name, kind in _HEADER_FIELDS.items():
        if type(header[name]) is not kind:
            raise BundleError(f"{path}: header field {name} must be {kind.__name__}")
    site, gate = header["site"], header["gate"]
    if not (valid_id(site) and valid_id(gate)):
        raise BundleError(f"{path}: header names an invalid site or gate id")
    if not 1 <= header["first"] <= header["last"] or header["count"] != header["last"] - header["first"] + 1:
        raise BundleError(f"{path}: header range {header['first']}..{header['last']} does not hold "
                          f"{header['count']} punches")
    try:
        parse_time(header["created"])
    except ProtocolError as error:
        raise BundleError(f"{path}: created: {error.detail}") from None
    _verify_header(path, header, store)
    # Only now is the rest worth looking at: the signed header says exactly what it must be.
    if hashlib.sha256(rest).hexdigest() != header["punches_sha256"]:
        raise BundleError(f"{path}: the punches do not match the signed header (truncated or altered file); "
                          "nothing imported")
    lines = rest.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != header["count"]:
        raise BundleError(f"{path}: {len(lines)} punch lines, the header says {header['count']}")
    return Bundle(path, site, gate, header["first"], header["last"], header["created"], header["key"], lines,
                  header["synced"])


def _verify_header(path: Path, header: dict, store: Store) -> None:
    site, gate = header["site"], header["gate"]
    keys = store.public_keys(site, gate)
    if not keys:
        raise BundleError(f"{path}: gate {site}/{gate} is not registered here (collector gate add/enroll)")
    for row in keys:
        if key_id(row["public_key"]) != header["key"]:
            continue
        if row["revoked_at"]:
            raise BundleError(f"{path}: signed with key {header['key']} of {site}/{gate}, revoked {row['revoked_at']}")
        unsigned = {k: v for k, v in header.items() if k != "sig"}
        try:
            parse_public_key(row["public_key"]).verify(bytes.fromhex(header["sig"]), canonical_json(unsigned))
        except (InvalidSignature, ValueError):
            raise BundleError(f"{path}: the header's signature does not verify with {site}/{gate}'s key "
                              f"{header['key']} (altered file or not this gate's)") from None
        return
    raise BundleError(f"{path}: signed with key {header['key']}, which is not registered for {site}/{gate}")


# ---------------------------------------------------------------------------------------------- importing


@dataclass(frozen=True, slots=True)
class ImportSummary:
    site: str
    gate: str
    first: int
    last: int
    count: int
    stored: int
    duplicates: int
    quarantined: int
    equivocations: int
    chain_breaks: int
    held_through: int
    heartbeat: bool = False  # the bundle counts as the gate's heartbeat (finality for a site delivered by hand)

    @property
    def problems(self) -> int:
        return self.quarantined + self.equivocations + self.chain_breaks

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def import_bundle(store: Store, bundle: Bundle, *, progress: Callable[[int], None] | None = None,
                  future_tolerance: float = 300.0, backwards_tolerance: float = 60.0,
                  messages_per_burst: int = MESSAGES_PER_BURST, sun_key: bytes | None = None) -> ImportSummary:
    """Ingest a bundle's punches in bursts, each burst one transaction (as the daemon does for MQTT)."""
    ingestor = Ingestor(store, future_tolerance=future_tolerance, backwards_tolerance=backwards_tolerance,
                        source="import", sun_key=sun_key)
    topic = GateTopics(bundle.site, bundle.gate).punch
    counts: Counter = Counter()
    per_burst = MAX_BATCH * messages_per_burst
    for start in range(0, bundle.count, per_burst):
        burst = bundle.lines[start:start + per_burst]
        received_at = utc_now_text()
        messages = [Incoming(topic, encode_punch_bodies(burst[i:i + MAX_BATCH]), received_at)
                    for i in range(0, len(burst), MAX_BATCH)]
        counts.update(ingestor.ingest(messages).counts)
        if progress is not None:
            progress(len(burst))
    ingestor.flush_log(force=True)
    held_through = store.gate_progress(bundle.site, bundle.gate).contiguous_seq
    # A bundle says what a heartbeat says: when it was made the gate had written nothing beyond its last
    # punch. Once the bank holds every punch through that one, the bundle makes the site's days final as a
    # heartbeat would, for a site that only ever delivers by hand; only with a synchronised clock, since its
    # time is the gate's.
    heartbeat = held_through >= bundle.last and bundle.synced and store.save_heartbeat_if_newer(
        bundle.site, bundle.gate, {
            "v": 1, "state": "online", "site": bundle.site, "gate": bundle.gate, "source": "bundle",
            "time": bundle.created, "synced": True, "last_seq": bundle.last, "acked_seq": bundle.last,
            "pending": 0, "oldest_pending_at": None}, utc_now_text(), made=heartbeat_made)
    return ImportSummary(
        site=bundle.site, gate=bundle.gate, first=bundle.first, last=bundle.last, count=bundle.count,
        stored=counts["stored"], duplicates=counts["duplicates"], quarantined=counts["quarantined"],
        equivocations=counts["equivocations"], chain_breaks=counts["chain_breaks"], held_through=held_through,
        heartbeat=bool(heartbeat),
    )


# ---------------------------------------------------------------------------------------------- ack files


def write_ack_file(store: Store, site: str, gate: str, *, key: Ed25519PrivateKey, out: str | os.PathLike,
                   now: datetime | None = None) -> dict:
    """What the bank holds of a gate (its contiguous prefix), as the signed ack the daemon would publish,
    for the gate to load offline. Written whole or not at all, never over an existing file."""
    out = Path(out)
    if not store.public_keys(site, gate):
        raise BundleError(f"gate {site}/{gate} is not registered here")
    held = store.gate_progress(site, gate)
    seq, digest = held.contiguous_seq, held.contiguous_digest
    if seq == 0 or digest is None or not _HEX64.fullmatch(digest):
        raise BundleError(f"the bank holds no punches of gate {site}/{gate} from seq 1 yet: nothing to acknowledge")
    signed = Ack(seq, digest).sign(site, gate, format_time(now or datetime.now(UTC)), key)
    document = {"format": ACK_FILE_FORMAT, "version": FILE_FORMAT_VERSION, "ack": json.loads(signed)}
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
    try:
        write_new(out, data, 0o644)
    except FileExistsError:
        raise BundleError(f"{out} already exists; choose another name (nothing is overwritten)") from None
    except OSError as error:
        raise BundleError(f"cannot write {out}: {error.strerror}") from None
    return {"site": site, "gate": gate, "seq": seq, "digest": digest, "path": str(out)}
