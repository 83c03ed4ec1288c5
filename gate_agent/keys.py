"""The gate's Ed25519 signing key on disk: created once, mode 0600, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .errors import GateError
from .files import secret_file_problem


class KeyFileError(GateError):
    """A key file that cannot be created or used; the message says which and why."""


def generate_key_file(path: str | os.PathLike) -> Ed25519PrivateKey:
    """Write a new private key to ``path`` (0600). An existing file is never replaced: losing a gate's
    key would orphan every punch it signed that the bank has not yet verified."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a signing key") from None
    except OSError as error:
        raise KeyFileError(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read signing key {path}: {error.strerror}") from None
    problem = secret_file_problem(path)
    if problem:
        raise KeyFileError(f"signing key: {problem}")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is not a PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_card_key(path: str | os.PathLike) -> bytes:
    """The bank card key (gate_agent.emv): a secret like the signing key, so held to the same file rules."""
    from .emv import parse_card_key

    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"cannot read card key {path}: {getattr(error, 'strerror', None) or error}") from None
    problem = secret_file_problem(path)
    if problem:
        raise KeyFileError(f"card key: {problem}")
    try:
        return parse_card_key(text)
    except ValueError as error:
        raise KeyFileError(f"{path}: {error}") from None
