"""The bank's signing key: what makes the bank's word checkable by gates and by anyone holding a file.

One Ed25519 key (made by ``collector keygen``, kept like the gates' keys: mode 0600 or a systemd
credential, never overwritten) signs everything the bank says that someone else acts on: acks (a gate
forgets punches on them), resend commands and rosters, ack files, and evidence files. Gates pin its
public half at enrolment (``bank.pub``); the bank publishes it for anyone who checks evidence. The
public halves of every key the bank has signed with are kept in the registry, so evidence signed before
a key rotation still checks against the registry.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_agent.configfile import ConfigError
from gate_agent.keys import KeyFileError, load_private_key

from .config import CollectorConfig
from .errors import CollectorError


class SigningKeyError(CollectorError):
    """The bank's signing key is not configured or cannot be used; one line."""


def load_bank_key(config: CollectorConfig) -> Ed25519PrivateKey:
    try:
        path = config.signing_key
    except ConfigError as error:
        raise SigningKeyError(str(error)) from None
    if path is None:
        raise SigningKeyError(f"{config.source}: signing_key is not set: the bank signs acks, rosters, commands "
                              "and evidence with it (make one with `collector keygen --key-file PATH`)")
    try:
        return load_private_key(path)
    except KeyFileError as error:
        raise SigningKeyError(str(error)) from None
