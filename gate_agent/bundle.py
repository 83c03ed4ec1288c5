"""Sneaker-net, the gate's side: export punches as a signed bundle file; load an ack file from the bank.

A site without network for days still gets its punches to the bank: an installer exports them to a USB
stick, the bank imports the file (``collector import``) through the same verification as MQTT. The gate
forgets nothing on export. It forgets only on the bank's acknowledgement, which arrives over MQTT once
the gate is back online, or as an ack file signed with the collector's certificate key.

Bundle: JSON lines. Line 1 is the header ``{"format": "site-gate-bundle", "version": 1, "site", "gate",
"first", "last", "count", "created", "key", "punches_sha256", "sig"}``; then the punches exactly as the
gate signed and stored them, one per line, seq ``first`` to ``last``. ``punches_sha256`` is SHA-256 of
those lines (each with its newline), ``sig`` the gate's Ed25519 signature (hex) over the header's
canonical bytes without ``sig`` (compact, key-sorted ASCII JSON, as for punches), so a truncated or
edited file is refused before any punch is looked at. ``collector/bundle.py`` reads it.

Ack file: one JSON object ``{"format": "site-gate-ack", "version": 1, "site", "gate", "seq", "digest",
"issued", "certificate", "sig"}``: the bank holds punches 1..seq and its punch seq has this digest.
``certificate`` is the collector's PEM certificate, ``sig`` its signature (base64) over the canonical
bytes of the rest. The gate accepts it only if that certificate was issued by its ``[mqtt] tls_ca`` to
the name ``collector``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from .outbox import FILENAME, AckResult, Outbox, OutboxStatus
from .protocol import (
    ACK_FILE_FORMAT,
    BUNDLE_FORMAT,
    FILE_FORMAT_VERSION,
    Ack,
    ProtocolError,
    canonical_json,
    file_format_problem,
    format_time,
    key_id,
    parse_time,
)

#: The certificate name whose signature an ack file must carry (the collector's MQTT identity).
BANK_SIGNER = "collector"
MAX_ACK_FILE_BYTES = 64 * 1024
_CHUNK = 2000  # punches read from the outbox at a time: a big backlog never sits in memory whole


class BundleError(Exception):
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
                  now: datetime | None = None) -> ExportInfo:
    """Write punches ``since`` (default: the first unacknowledged) up to the head as a signed bundle.

    Safe while the agent runs: rows up to the head read at the start never change, and a new tap only
    adds rows beyond it. The file appears whole or not at all (written aside, then renamed).
    """
    path = Path(path)
    if path.exists():
        raise BundleError(f"{path} already exists; choose another name (an export never overwrites a file)")
    head, acked = outbox.head_seq, outbox.acked_seq
    first = acked + 1 if since is None else since
    if first > head:
        if since is None:
            raise BundleError(f"nothing to export: the bank has acknowledged every punch of gate "
                              f"{outbox.site}/{outbox.gate} (through seq {acked}); --since SEQ exports older ones")
        raise BundleError(f"nothing to export: gate {outbox.site}/{outbox.gate} has written only {head} punches")
    body_path = path.with_name(f".{path.name}.body.tmp")
    final_tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    try:
        with open(body_path, "wb") as body:
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
            "created": format_time(now or datetime.now(UTC)), "key": key_id(key.public_key()),
            "punches_sha256": digest.hexdigest(),
        }
        header["sig"] = key.sign(canonical_json(header)).hex()
        with open(final_tmp, "wb") as out, open(body_path, "rb") as body:
            out.write(canonical_json(header) + b"\n")
            shutil.copyfileobj(body, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.replace(final_tmp, path)
        _sync_directory(path.parent)
    except OSError as error:
        raise BundleError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        for leftover in (body_path, final_tmp):
            try:
                leftover.unlink()
            except OSError:
                pass
    return ExportInfo(path, outbox.site, outbox.gate, first, head, head - first + 1)


def _sync_directory(directory: Path) -> None:
    """The rename is durable too: a USB stick pulled right after the command keeps the file."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- ack files


def read_ack_file(path: str | os.PathLike, *, site: str, gate: str, tls_ca: str | os.PathLike | None,
                  now: datetime | None = None) -> Ack:
    """The ack an ack file carries, once its certificate and signature prove it comes from the bank."""
    if tls_ca is None:
        raise BundleError("this gate has no [mqtt] tls_ca, so it cannot check that an ack file comes from "
                          "the bank; configure the deployment CA first (collector gate enroll writes ca.crt)")
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
    expected = {"format", "version", "site", "gate", "seq", "digest", "issued", "certificate", "sig"}
    if set(document) != expected:
        raise BundleError(f"{path}: ack file fields {sorted(document)}, expected {sorted(expected)}")
    if not isinstance(document["sig"], str) or not document["sig"]:
        raise BundleError(f"{path} is not signed")
    if not isinstance(document["certificate"], str):
        raise BundleError(f"{path}: certificate must be PEM text")
    if (document["site"], document["gate"]) != (site, gate):
        raise BundleError(f"{path} is for gate {document['site']}/{document['gate']}, not {site}/{gate}")
    try:
        ack = Ack.decode(json.dumps({"v": 1, "seq": document["seq"], "digest": document["digest"]}).encode())
        if isinstance(document["issued"], str):
            parse_time(document["issued"])
        else:
            raise ProtocolError("schema", "issued must be a time")
    except ProtocolError as error:
        raise BundleError(f"{path}: {error.detail}") from None
    try:
        certificate = x509.load_pem_x509_certificate(document["certificate"].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise BundleError(f"{path}: the embedded certificate is not PEM: {error}") from None
    _check_bank_certificate(certificate, tls_ca, now or datetime.now(UTC))
    unsigned = {k: v for k, v in document.items() if k != "sig"}
    try:
        signature = base64.b64decode(document["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{path}: the signature is not base64") from None
    if not _signature_holds(certificate, signature, canonical_json(unsigned)):
        raise BundleError(f"{path}: the signature does not verify (the file was altered, or not signed "
                          "by the collector's key)")
    return ack


def _check_bank_certificate(certificate: x509.Certificate, tls_ca: str | os.PathLike, now: datetime) -> None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else None
    if name != BANK_SIGNER:
        raise BundleError(f"the ack file is signed by certificate {name!r}, not the bank's {BANK_SIGNER!r}")
    try:
        authorities = x509.load_pem_x509_certificates(Path(tls_ca).read_bytes())
    except OSError as error:
        raise BundleError(f"cannot read tls_ca {tls_ca}: {error.strerror}") from None
    except ValueError:
        raise BundleError(f"tls_ca {tls_ca} holds no PEM certificate") from None
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    else:
        raise BundleError(f"the ack file's certificate was not issued by this gate's CA ({tls_ca})")
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise BundleError(f"the ack file's certificate is valid from {certificate.not_valid_before_utc:%Y-%m-%d} "
                          f"to {certificate.not_valid_after_utc:%Y-%m-%d}, not now ({now:%Y-%m-%d} by this "
                          "gate's clock)")
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise BundleError("the ack file is signed by a CA certificate, not the collector's")
    except x509.ExtensionNotFound:
        pass


def _signature_holds(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    public_key = certificate.public_key()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def apply_ack(data_dir: str | os.PathLike, site: str, gate: str, ack: Ack) -> tuple[AckResult, OutboxStatus]:
    """Acknowledge through the outbox's own checks (a seq beyond the head or a differing digest forgets
    nothing). Safe while the agent runs: its link reads the acknowledged seq from the database."""
    if not (Path(data_dir) / FILENAME).exists():
        raise BundleError(f"{Path(data_dir) / FILENAME} does not exist (has the agent ever run with this data_dir?)")
    with Outbox(data_dir, site, gate) as outbox:
        result = outbox.acknowledge(ack)
        return result, outbox.status()
