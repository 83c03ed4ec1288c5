#!/usr/bin/env python3
"""Check a worker's evidence file with nothing but the file, the bank's published key, Python 3 and the
``cryptography`` package (no collector installed, no network).

    python3 verify_evidence.py EVIDENCE.json BANK_KEY.pub

It checks that the bank signed every byte of the file with the published key, that every punch in it
was signed by its gate's key (as the file lists it) and that each gate's punches form one unbroken
chain. It lists the days as the bank computed them. ``collector verify`` checks the same and, on top,
recomputes every day from the punches with the attendance rules. Exit status 0: verified; 1: not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = "ed25519:"
GENESIS = "0" * 64


class Failed(Exception):
    pass


def canonical(document: dict) -> bytes:
    """Compact, key-sorted, ASCII JSON: the bytes every signature of the system is over."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def public_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """A key line as `collector bank-key` prints it: the key, then maybe a ``#`` comment (base64 has no '#')."""
    text = text.split("#", 1)[0].strip()
    if not text.startswith(PREFIX):
        raise Failed(f"not a public key (expected {PREFIX}...): {text[:40]!r}")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len(PREFIX):], validate=True))
    except ValueError as error:
        raise Failed(f"not an Ed25519 public key: {error}") from None
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16], key


def strict(data: bytes) -> object:
    """The file as JSON, read so that no other reader could read it differently: UTF-8 with no byte order
    mark, each name once in an object, no NaN or Infinity, no lone surrogate, nothing after it."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise Failed("not JSON: the file starts with a byte order mark")

    def once(pairs):
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise Failed(f"not JSON: a name appears twice in one object ({sorted(n for n in names if names.count(n) > 1)[0]!r})")
        return dict(pairs)

    def constant(name):
        raise Failed(f"not JSON: {name} is not a number")

    document = json.loads(data.decode("utf-8"), object_pairs_hook=once, parse_constant=constant)
    # A lone surrogate (written as an escape) is not text; UTF-8 cannot hold it.
    json.dumps(document, ensure_ascii=False).encode("utf-8")
    return document


def signature_bytes(text: object) -> bytes:
    """A signature as the system writes it: 128 lower-case hex digits, one spelling only."""
    if not isinstance(text, str) or len(text) != 128 or any(c not in "0123456789abcdef" for c in text):
        raise Failed("a signature is not 128 lower-case hex digits")
    return bytes.fromhex(text)


def verify(document: object, trusted: dict[str, Ed25519PublicKey]) -> dict:
    if not isinstance(document, dict) or document.get("format") != "site-gate-evidence":
        raise Failed("not a site-gate-evidence file")
    kid, signature = document.get("key"), document.get("sig")
    if kid not in trusted:
        raise Failed(f"signed by key {str(kid)[:16]!r}, which is not the bank key given")
    unsigned = {name: value for name, value in document.items() if name != "sig"}
    try:
        trusted[kid].verify(signature_bytes(signature), canonical(unsigned))
    except (InvalidSignature, ValueError, TypeError):
        raise Failed("the bank's signature does not verify: the file was changed after the bank signed it") from None
    punches = 0
    for segment in document["gates"]:
        name = f"{segment['site']}/{segment['gate']}"
        keys = dict(public_key(text) for text in segment["public_keys"])
        previous_digest, expected = None, segment["first_seq"]
        for punch in segment["punches"]:
            if (punch["site"], punch["gate"]) != (segment["site"], segment["gate"]) or punch["seq"] != expected:
                raise Failed(f"{name}: expected seq {expected}, found {punch['site']}/{punch['gate']} seq {punch['seq']}")
            body = {k: v for k, v in punch.items() if k != "sig"}
            key = keys.get(punch["key"])
            if key is None:
                raise Failed(f"{name} seq {punch['seq']}: signed by a key the file does not hold")
            try:
                key.verify(signature_bytes(punch["sig"]), canonical(body))
            except (InvalidSignature, ValueError):
                raise Failed(f"{name} seq {punch['seq']}: the gate's signature does not verify") from None
            if previous_digest is not None and punch["prev"] != previous_digest:
                raise Failed(f"{name} seq {punch['seq']}: does not link to seq {punch['seq'] - 1}")
            previous_digest = hashlib.sha256(canonical(body)).hexdigest()
            expected += 1
            punches += 1
        if expected - 1 != segment["last_seq"]:
            raise Failed(f"{name}: the segment does not end at seq {segment['last_seq']}")
    return {"worker": document["worker"], "period": document["period"], "days": document["days"],
            "punches": punches, "bank_key": kid, "manual": document["manual"], "voids": document["voids"]}


def safe(text: object) -> str:
    """What the file says, made harmless for a terminal (control and direction characters escaped)."""
    return "".join(c if c.isprintable() and not 0x202A <= ord(c) <= 0x202E and not 0x2066 <= ord(c) <= 0x2069
                   else f"\\u{ord(c):04x}" for c in str(text))


def report(name: str, summary: dict) -> list[str]:
    worker = summary["worker"]
    lines = [f"{name}: OK: signed by bank key {summary['bank_key']}; {summary['punches']} gate-signed punches, "
             "every chain unbroken",
             f"worker {worker['worker']} ({worker['name']}), {summary['period']['from']} to {summary['period']['to']}:"]
    for day in summary["days"]:
        lines.append(f"  {day['date']} {day['site']}: in {day['first_in'] or '-'}, out {day['last_out'] or '-'}, "
                     f"{day['worked_minutes'] // 60} h {day['worked_minutes'] % 60:02d} min, {day['status']}"
                     + (f" [{', '.join(day['flags'])}]" if day["flags"] else ""))
    for entry in summary["manual"]:
        lines.append(f"  manual entry {entry['ref']} at {entry['time']} ({entry['direction']}) by {entry['by']}: "
                     f"{entry['reason']}" + (f" (answers dispute {entry['dispute']})" if entry.get("dispute") else ""))
    for entry in summary["voids"]:
        lines.append(f"  void {entry['ref']} at {entry['void_at']} by {entry['by']}: {entry['reason']}"
                     + (f" (answers dispute {entry['dispute']})" if entry.get("dispute") else ""))
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 verify_evidence.py EVIDENCE.json BANK_KEY.pub", file=sys.stderr)
        return 2
    try:
        with open(argv[2], encoding="ascii") as handle:
            trusted = dict(public_key(line) for line in handle if line.split("#", 1)[0].strip())
        with open(argv[1], "rb") as handle:
            document = strict(handle.read())
        lines = report(argv[1], verify(document, trusted))
    except (Failed, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            UnicodeError) as error:
        reason = str(error) if isinstance(error, Failed) else f"malformed file: {type(error).__name__}: {error}"
        print(safe(f"{argv[1]}: FAILED: {reason}"), file=sys.stderr)
        return 1
    for line in lines:  # everything in them comes from the file
        print(safe(line))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
