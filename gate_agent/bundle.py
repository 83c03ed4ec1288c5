"""Sneaker-net, the gate's side: export punches as a signed bundle file; load an ack file from the bank.

A site without network for days still gets its punches to the bank: an installer exports them to a USB
stick, the bank imports the file (``collector import``) through the same verification as MQTT. The gate
forgets nothing on export. It forgets only on the bank's acknowledgement, which arrives over MQTT once
the gate is back online, or as an ack file signed with the bank's key.

Bundle: JSON lines. Line 1 is the header ``{"format": "site-gate-bundle", "version": 1, "site", "gate",
"first", "last", "count", "created", "key", "punches_sha256", "sig"}``; then the punches exactly as the
gate signed and stored them, one per line, seq ``first`` to ``last``. ``punches_sha256`` is SHA-256 of
those lines (each with its newline), ``sig`` the gate's Ed25519 signature (hex) over the header's
canonical bytes without ``sig`` (compact, key-sorted ASCII JSON, as for punches), so a truncated or
edited file is refused before any punch is looked at. ``collector/ingest/bundle.py`` reads it.

Ack file: ``{"format": "site-gate-ack", "version": 1, "ack": ACK}`` where ACK is exactly the signed
message the collector publishes on the gate's ack topic (the bank holds punches 1..seq and its punch seq
has this digest; signed with the bank's key). The gate accepts it only with a key from its own
``bank_key``: not the broker's, not the CA's, not a gate's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import GateError
from .files import new_file
from .outbox import FILENAME, AckResult, Outbox, OutboxStatus
from .protocol import (
    ACK_FILE_FORMAT,
    BUNDLE_FORMAT,
    FILE_FORMAT_VERSION,
    Ack,
    BankKeys,
    ProtocolError,
    canonical_json,
    file_format_problem,
    format_time,
    key_id,
)

MAX_ACK_FILE_BYTES = 64 * 1024
_CHUNK = 2000  # punches read from the outbox at a time: a big backlog never sits in memory whole


class BundleError(GateError):
    """A bundle or ack file that cannot be written, read or trusted; the message is one line."""


# ---------------------------------------------------------------------------------------------- export


@dataclass(frozen=True, slots=True)
class ExportInfo:
    path: Path
    site: str
    gate: str
    first: int
    last: int
    count: int


def export_bundle(outbox: Outbox, key: Ed25519PrivateKey, path: str | os.PathLike, *, since: int | None = None,
                  now: datetime | None = None, synced: bool = False) -> ExportInfo:
    """Write punches ``since`` (default: the first unacknowledged) up to the head as a signed bundle.

    Safe while the agent runs: rows up to the head read at the start never change, and a new tap only
    adds rows beyond it. The file appears whole or not at all, never over an existing file or through a
    planted link, and mode 0600: it holds card numbers and times (a FAT stick keeps its own modes).
    """
    path = Path(path)
    if os.path.lexists(path):
        raise BundleError(f"{path} already exists; choose another name (an export never overwrites a file)")
    head, acked = outbox.head_seq, outbox.acked_seq
    first = acked + 1 if since is None else since
    if first > head:
        if since is None:
            raise BundleError(f"nothing to export: the bank has acknowledged every punch of gate "
                              f"{outbox.site}/{outbox.gate} (through seq {acked}); --since SEQ exports older ones")
        raise BundleError(f"nothing to export: gate {outbox.site}/{outbox.gate} has written only {head} punches")
    digest = hashlib.sha256()
    try:
        # The punches go aside first (their digest is in the header that precedes them), into an
        # unnamed file on the same medium: a big backlog never sits in memory whole.
        with tempfile.TemporaryFile(dir=path.parent) as body:
            expected = first
            while expected <= head:
                rows = outbox.bodies(expected, min(head, expected + _CHUNK - 1))
                if not rows or rows[0][0] != expected:
                    held = rows[0][0] if rows else None
                    raise BundleError(f"punch {expected} is no longer held here (acknowledged and pruned"
                                      + (f"; the oldest held from there is {held}" if held else "")
                                      + "); export from a later --since")
                for seq, data in rows:
                    if seq != expected:
                        raise BundleError(f"punch {expected} is missing from the outbox")
                    line = bytes(data) + b"\n"
                    body.write(line)
                    digest.update(line)
                    expected += 1
            header = {
                "format": BUNDLE_FORMAT, "version": FILE_FORMAT_VERSION, "site": outbox.site, "gate": outbox.gate,
                "first": first, "last": head, "count": head - first + 1,
                # With the head it says what a heartbeat says: at this time (if the clock was synchronised)
                # the gate had written nothing beyond ``last``.
                "created": format_time(now or datetime.now(UTC)), "synced": synced, "key": key_id(key.public_key()),
                "punches_sha256": digest.hexdigest(),
            }
            header["sig"] = key.sign(canonical_json(header)).hex()
            body.seek(0)
            with new_file(path, 0o600) as out:
                out.write(canonical_json(header) + b"\n")
                shutil.copyfileobj(body, out, 1024 * 1024)
    except FileExistsError:
        raise BundleError(f"{path} already exists; choose another name (an export never overwrites a file)") from None
    except OSError as error:
        raise BundleError(f"cannot write {path}: {error.strerror or error}") from None
    return ExportInfo(path, outbox.site, outbox.gate, first, head, head - first + 1)


# ---------------------------------------------------------------------------------------------- ack files


def read_ack_file(path: str | os.PathLike, *, site: str, gate: str, bank_keys: BankKeys) -> Ack:
    """The ack an ack file carries, once the bank's signature (a key this gate pinned) proves it is the
    bank's word for this gate. The checks are those of an ack over MQTT."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ACK_FILE_BYTES + 1)
    except OSError as error:
        raise BundleError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_ACK_FILE_BYTES:
        raise BundleError(f"{path} is larger than an ack file can be ({MAX_ACK_FILE_BYTES} bytes)")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{path} is not an ack file (not JSON)") from None
    problem = file_format_problem(document, ACK_FILE_FORMAT)
    if problem:
        raise BundleError(f"{path} is not an ack file of this version ({problem})")
    if set(document) != {"format", "version", "ack"}:
        raise BundleError(f"{path}: ack file fields {sorted(document)[:10]}, expected ['ack', 'format', 'version']")
    try:
        return Ack.decode(document["ack"], site=site, gate=gate, keys=bank_keys)
    except ProtocolError as error:
        if error.reason == "bad_signature":
            raise BundleError(f"{path}: {error.detail} (altered, or not signed by the bank key this gate "
                              "trusts: bank_key in its configuration)") from None
        raise BundleError(f"{path}: {error.detail}") from None


def apply_ack(data_dir: str | os.PathLike, site: str, gate: str, ack: Ack) -> tuple[AckResult, OutboxStatus]:
    """Acknowledge through the outbox's own checks (a seq beyond the head or a differing digest forgets
    nothing). Safe while the agent runs: its link reads the acknowledged seq from the database."""
    if not (Path(data_dir) / FILENAME).exists():
        raise BundleError(f"{Path(data_dir) / FILENAME} does not exist (has the agent ever run with this data_dir?)")
    with Outbox(data_dir, site, gate) as outbox:
        result = outbox.acknowledge(ack)
        return result, outbox.status()
