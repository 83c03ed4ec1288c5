"""The deployment PKI: a private CA for mutual TLS between gates, the broker and the collector.

``ca init`` makes the CA, the broker's server certificate and the collector's client certificate;
``gate enroll`` issues each gate a client certificate whose common name is the gate id, which the
broker takes as the MQTT username for its ACLs. These keys authenticate connections only: what the bank
says to gates is signed with the bank's own Ed25519 key (``collector/signing.py``), which a gate pins
at enrolment (``bank.pub``), so holding the broker's or the collector's TLS key is not enough to make a
gate forget a punch.

ECDSA P-256 throughout: OpenSSL (Mosquitto), Python's ssl (paho) and a Raspberry Pi all handle it, and
signatures stay small. Private keys are written once, mode 0600, and never overwritten.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.errors import CollectorError
from collector.names import COLLECTOR_NAME, is_reserved_name

#: A gate stays at a site for years and is visited rarely: certificates outlive the hardware.
CA_DAYS = 20 * 365
LEAF_DAYS = 10 * 365

CA_FILES = ("ca.crt", "ca.key")
SERVER_FILES = ("server.crt", "server.key")
COLLECTOR_FILES = ("collector.crt", "collector.key")
#: The TLS pair is named apart from gate.key, the gate's signing key: copying the directory onto the gate
#: must never overwrite the key that signs every punch.
GATE_FILES = ("gate-tls.crt", "gate-tls.key", "ca.crt", "bank.pub")


class PkiError(CollectorError):
    """A PKI operation that cannot be done; the message is one line."""


@dataclass(frozen=True, slots=True)
class Issued:
    name: str
    certificate: Path
    key: Path
    not_after: datetime


# ---------------------------------------------------------------------------------------------- files


def write_private_key(path: Path, key) -> None:
    """0600 from the first byte, never over an existing file (a key replaced in place orphans whatever
    it signed or authenticated)."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(path, pem, 0o600)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise PkiError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as error:
        raise PkiError(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _refuse_existing(directory: Path, names: tuple[str, ...]) -> None:
    existing = [name for name in names if (directory / name).exists()]
    if existing:
        raise PkiError(f"{directory} already holds {', '.join(existing)}; refusing to overwrite "
                       "(use another directory)")


def load_certificate(path: str | os.PathLike) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as error:
        raise PkiError(f"cannot read certificate {path}: {error.strerror}") from None
    except ValueError as error:
        raise PkiError(f"{path} is not a PEM certificate: {error}") from None


def load_key(path: str | os.PathLike):
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as error:
        raise PkiError(f"cannot read private key {path}: {error.strerror}") from None
    except (ValueError, TypeError) as error:
        raise PkiError(f"{path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | Ed25519PrivateKey):
        raise PkiError(f"{path} holds a {type(key).__name__}; only EC and Ed25519 keys are supported")
    return key


def same_key(certificate: x509.Certificate, key) -> bool:
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


# ---------------------------------------------------------------------------------------------- issuing


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "site-gate-attendance"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            # An hour of slack: a Pi without a real-time clock may boot a little behind.
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _leaf(ca_cert: x509.Certificate, ca_key, common: str, *, server_names: list[str] | None = None
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(_name(common), ca_cert.subject, key.public_key(), LEAF_DAYS)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server_names is not None:
        builder = (builder
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                                  critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def check_host(host: str) -> str:
    """A broker host name or address for the server certificate."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or not all(label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
                           for label in labels):
        raise PkiError(f"--host {host!r} is neither an IP address nor a DNS name")
    return host.rstrip(".").lower()


def _write_pair(directory: Path, stem: str, certificate: x509.Certificate, key) -> Issued:
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
    write_private_key(key_path, key)
    _write_new(cert_path, certificate.public_bytes(Encoding.PEM), 0o644)
    return Issued(common_name(certificate) or stem, cert_path, key_path, certificate.not_valid_after_utc)


def init_ca(directory: str | os.PathLike, hosts: list[str] = ()) -> list[Issued]:
    """Create the CA, the broker's certificate (localhost, 127.0.0.1 and ``hosts``) and the collector's."""
    directory = Path(directory)
    names = ["localhost", "127.0.0.1"] + [h for h in (check_host(h) for h in hosts)
                                          if h not in ("localhost", "127.0.0.1")]
    names = list(dict.fromkeys(names))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PkiError(f"cannot create {directory}: {error.strerror}") from None
    _refuse_existing(directory, CA_FILES + SERVER_FILES + COLLECTOR_FILES)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name("site-gate-attendance CA")
    ca_cert = (_builder(ca_subject, ca_subject, ca_key.public_key(), CA_DAYS)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    issued = [_write_pair(directory, "ca", ca_cert, ca_key)]
    # The first name a client dials should be the subject too, for tools that still look at the CN.
    server_name = names[2] if len(names) > 2 else "localhost"
    issued.append(_write_pair(directory, "server", *_leaf(ca_cert, ca_key, server_name, server_names=names)))
    issued.append(_write_pair(directory, "collector", *_leaf(ca_cert, ca_key, COLLECTOR_NAME)))
    return issued


def load_ca(pki: str | os.PathLike) -> tuple[x509.Certificate, object]:
    pki = Path(pki)
    missing = [name for name in CA_FILES if not (pki / name).is_file()]
    if missing:
        raise PkiError(f"{pki} lacks {', '.join(missing)} (create the CA with `collector ca init --dir {pki}`)")
    certificate, key = load_certificate(pki / "ca.crt"), load_key(pki / "ca.key")
    if not same_key(certificate, key):
        raise PkiError(f"{pki}/ca.key does not belong to {pki}/ca.crt")
    return certificate, key


def check_gate_name(gate: str) -> str:
    if is_reserved_name(gate):
        raise PkiError(f"gate id {gate!r} is reserved: a certificate of the bank's PKI or a session of the "
                       "collector has that name")
    return gate


def issue_gate(pki: str | os.PathLike, gate: str, out: str | os.PathLike, *, bank_public: str) -> Issued:
    """Write ``out``/gate-tls.crt, gate-tls.key (0600) and ca.crt, the gate's MQTT client identity, and bank.pub,
    the bank's public signing key the gate is to trust."""
    check_gate_name(gate)
    ca_cert, ca_key = load_ca(pki)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PkiError(f"cannot create {out}: {error.strerror}") from None
    _refuse_existing(out, GATE_FILES)
    issued = _write_pair(out, "gate-tls", *_leaf(ca_cert, ca_key, gate))
    _write_new(out / "ca.crt", ca_cert.public_bytes(Encoding.PEM), 0o644)
    _write_new(out / "bank.pub", (bank_public.strip() + "\n").encode("ascii"), 0o644)
    return issued


def check_out_free(out: str | os.PathLike) -> None:
    """Refuse before anything is registered when the enrolment's files would land on existing ones."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PkiError(f"{out} is not a directory")
    if out.is_dir():
        _refuse_existing(out, GATE_FILES)
