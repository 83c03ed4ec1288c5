"""The register of gate keys: every gate key the bank accepted and every revocation, one bank-signed entry
each, hash-chained and append-only, exported for anyone (a labour bureau, a union) to keep a copy of.

Why: an evidence file is checked offline. If the gate keys it uses came from the file alone, a bank could
add a made-up gate with a made-up key, or replace a gate's key and re-sign its punches, and the check would
pass. So an evidence file cites, for each gate key it uses, the register entry that added it, and a verifier
holding a copy of the register (a *mirror*, taken before the punches) checks that the entry is in it at
that index and that the key was not revoked before the punches. The bank's signature alone proves only
that the bank says so now: the mirror is what stops a made-up gate.

An entry is a JSON object of strings and integers, signed over its RFC 8785 bytes without ``sig``
(``collector.evidence.canonical.jcs``)::

    {"register": "site-gate-keys", "version": 1, "index": N (1, 2, ...),
     "prev": digest of entry N-1 (64 zeros for N = 1), "at": when the entry was written (UTC, ms),
     "action": "add" | "revoke", "site": S, "gate": G, "key_id": the key's 16 hex digits,
     "public_key": "ed25519:..." (as gate_agent.protocol.public_key_text writes it),
     "since": when the bank's registry says the key was added / revoked, "bank_key": the signing bank
     key's id, "sig": 128 lower-case hex digits, Ed25519 over jcs(entry without "sig")}

``digest(entry)`` is the lower-case hex SHA-256 of jcs(entry without "sig"). Times never go back along
the chain; one "add" per key (a key belongs to one gate), at most one "revoke", after its "add". An entry
is written in the transaction that changes the key when the bank's signing key is at hand (``collector
gate add``, ``gate enroll``, ``gate revoke-key``); otherwise, and for keys registered before the register
existed, ``sync`` appends what the register lacks, in the registry's time order: such an entry's ``at``
(when it was written) is later than its ``since`` (when the registry says it happened), a difference a
verifier reports.

The export, what a mirror is a copy of: ``{"format": "site-gate-key-register", "version": 1, "entries":
[...]}``, one entry per line.

The library the evidence code calls:

- ``citation(store, site, gate, key_id) -> dict | None``: the signed "add" entry of that gate key (the
  whole entry, to put in a file), or None while the register lacks it (``sync`` first).
- ``check_citation(entry, trusted_bank_keys, *, mirror=None, received_at=(), gate_key=None) ->
  CitationCheck``: the entry's shape, its signature by a trusted bank key, its digest; with ``gate_key``
  (site, gate, public key text) that it names exactly that key; the bank's own ``since`` not after a
  punch was received; with a ``mirror``, that it is the mirror's entry at its index (same digest) and that
  no "revoke" of the key in the mirror has ``since`` at or before any ``received_at``. ``ok`` and
  ``problem`` (one line) say the verdict, ``notes`` what it rests on in plain words: the bank's signature
  only without a mirror; an entry published after the bank received punches signed by the key.
- ``load_mirror(path_or_bytes, trusted_bank_keys, *, older=None) -> Mirror``: an export read strictly (the
  evidence reader's rules: UTF-8 without a byte order mark, no name twice, no NaN) and checked whole
  (``check_register``); RegisterError names the first problem.
- ``check_register(document, trusted_bank_keys, *, older=None) -> Mirror``: every entry's shape and
  signature, each prev link, indexes 1..N without gaps, times that never go back, no key added twice, a
  revoke only after its add; with ``older`` (a Mirror, or an export's document) that its entries are
  exactly this one's first entries.
- ``sync(store, key) -> list[dict]``, ``export_bytes(store) -> bytes``, ``entry_digest(entry) -> str``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.errors import CollectorError
from collector.evidence.canonical import MAX_INTEGER, CanonicalError, jcs
from collector.store import Store
from gate_agent.errors import GateInputError
from gate_agent.protocol import (
    GENESIS,
    BankKeys,
    ProtocolError,
    format_time,
    key_id,
    parse_public_key,
    parse_time,
    public_key_text,
    quoted,
    valid_id,
)

REGISTER = "site-gate-keys"
ENTRY_VERSION = 1
EXPORT_FORMAT = "site-gate-key-register"
EXPORT_VERSION = 1
ACTIONS = ("add", "revoke")
ENTRY_FIELDS = ("register", "version", "index", "prev", "at", "action", "site", "gate", "key_id", "public_key",
                "since", "bank_key", "sig")

_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")


class RegisterError(CollectorError):
    """The register (or an entry, or a copy of it) does not check; the message names the first problem."""


# ---------------------------------------------------------------------------------------------- entries


def _unsigned(entry: dict) -> dict:
    return {name: value for name, value in entry.items() if name != "sig"}


def entry_digest(entry: dict) -> str:
    """What the next entry's ``prev`` names: SHA-256 of the entry's RFC 8785 bytes without ``sig``."""
    return hashlib.sha256(jcs(_unsigned(entry))).hexdigest()


def sign_entry(body: dict, key: Ed25519PrivateKey) -> dict:
    """``body`` (every field but ``bank_key`` and ``sig``) signed with the bank's ``key``."""
    entry = {name: value for name, value in body.items() if name not in ("bank_key", "sig")}
    entry["bank_key"] = key_id(key.public_key())
    entry["sig"] = key.sign(jcs(entry)).hex()
    return entry


def entry_problem(entry: object, trusted: BankKeys) -> str | None:
    """Why ``entry`` is not a well-formed entry signed by one of the ``trusted`` bank keys, or None."""
    if not isinstance(entry, dict):
        return f"is {type(entry).__name__}, not an object"
    names = set(entry)
    missing = [name for name in ENTRY_FIELDS if name not in names]
    extra = sorted(names - set(ENTRY_FIELDS), key=str)
    if missing:
        return f"lacks {', '.join(missing)}"
    if extra:
        return f"has field(s) no entry has: {', '.join(quoted(name) for name in extra[:5])}"
    if entry["register"] != REGISTER:
        return f"register {quoted(entry['register'])} is not {REGISTER!r}"
    for name in ("version", "index"):
        if type(entry[name]) is not int:
            return f"{name} {quoted(entry[name])} is not an integer"
    if entry["version"] != ENTRY_VERSION:
        return f"version {entry['version']}; this program reads {ENTRY_VERSION}"
    if not 1 <= entry["index"] <= MAX_INTEGER:
        return f"index {entry['index']} is not 1 or more"
    for name in ENTRY_FIELDS:
        if name not in ("version", "index") and not isinstance(entry[name], str):
            return f"{name} is {type(entry[name]).__name__}, not text"
    if _DIGEST.fullmatch(entry["prev"]) is None:
        return f"prev {quoted(entry['prev'])} is not 64 lower-case hex digits"
    for name in ("at", "since"):
        try:
            parse_time(entry[name])
        except ProtocolError:
            return f"{name} {quoted(entry[name])} is not a UTC time with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)"
    if entry["action"] not in ACTIONS:
        return f"action {quoted(entry['action'])} is neither 'add' nor 'revoke'"
    for name in ("site", "gate"):
        if not valid_id(entry[name]):
            return f"{name} {quoted(entry[name])} is not an id"
    if _KEY_ID.fullmatch(entry["key_id"]) is None:
        return f"key_id {quoted(entry['key_id'])} is not 16 lower-case hex digits"
    try:
        public = parse_public_key(entry["public_key"])
    except GateInputError:
        return f"public_key {quoted(entry['public_key'])} is not an ed25519: public key"
    if public_key_text(public) != entry["public_key"]:
        return f"public_key {quoted(entry['public_key'])} is not written as a key is (ed25519: and 44 base64 characters)"
    if key_id(public) != entry["key_id"]:
        return f"key_id {entry['key_id']} is not the id of its public key ({key_id(public)})"
    if entry["since"] > entry["at"]:
        return f"says the key was {_done(entry['action'])} at {entry['since']}, after the entry was written ({entry['at']})"
    if _KEY_ID.fullmatch(entry["bank_key"]) is None:
        return f"bank_key {quoted(entry['bank_key'])} is not 16 lower-case hex digits"
    if _SIGNATURE.fullmatch(entry["sig"]) is None:  # one spelling only: bytes.fromhex reads upper case too
        return "sig is not 128 lower-case hex digits"
    bank = trusted.get(entry["bank_key"])
    if bank is None:
        return f"is signed by bank key {entry['bank_key']}, not a bank key you trust"
    try:
        bank.verify(bytes.fromhex(entry["sig"]), jcs(_unsigned(entry)))
    except InvalidSignature:
        return f"the signature of bank key {entry['bank_key']} does not verify (the entry was changed, or forged)"
    except CanonicalError as error:
        return f"has no canonical form: {error}"
    return None


def _done(action: str) -> str:
    return "added" if action == "add" else "revoked"


def _describe(entry: dict) -> str:
    return f"key {entry['key_id']} of {entry['site']}/{entry['gate']}"


# ---------------------------------------------------------------------------------------------- a whole register


@dataclass(frozen=True)
class Mirror:
    """A register checked whole (an export, or the bank's own): its entries in order and their digests."""

    entries: tuple[dict, ...]
    digests: tuple[str, ...]
    _adds: dict = field(default_factory=dict, repr=False, compare=False)
    _revokes: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            place = self._adds if entry["action"] == "add" else self._revokes
            place[(entry["site"], entry["gate"], entry["key_id"])] = entry

    @property
    def length(self) -> int:
        """How many entries it holds (N: entries 1 to N)."""
        return len(self.entries)

    @property
    def head(self) -> str:
        """The last entry's digest (64 zeros for an empty register): names the whole register."""
        return self.digests[-1] if self.digests else GENESIS

    def entry(self, index: int) -> dict | None:
        """Entry ``index`` (1, 2, ...), or None beyond the mirror."""
        return self.entries[index - 1] if type(index) is int and 1 <= index <= len(self.entries) else None

    def addition(self, site: str, gate: str, kid: str) -> dict | None:
        return self._adds.get((site, gate, kid))

    def revocation(self, site: str, gate: str, kid: str) -> dict | None:
        return self._revokes.get((site, gate, kid))

    def extension_problem(self, older: Mirror) -> str | None:
        """Why this register is not an append-only extension of ``older`` (a copy taken earlier), or None."""
        if older.length > self.length:
            removed = (f"entry {older.length} was" if older.length == self.length + 1 else
                       f"entries {self.length + 1} to {older.length} were")
            return f"the older copy holds {older.length} entries, this one only {self.length}: {removed} removed"
        for index, (mine, theirs) in enumerate(zip(self.entries, older.entries, strict=False), start=1):
            if jcs(mine) != jcs(theirs):
                return (f"entry {index} differs from entry {index} of the older copy (digest {self.digests[index - 1]} "
                        f"here, {older.digests[index - 1]} there): the register was rewritten, not appended to")
        return None


def check_register(document: object, trusted: BankKeys, *, older: Mirror | dict | None = None) -> Mirror:
    """An export's document checked whole against the ``trusted`` bank keys (RegisterError names the first
    problem); with ``older``, also that it extends that earlier copy."""
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise RegisterError(f"not a {EXPORT_FORMAT} file")
    if type(document.get("version")) is not int or document["version"] != EXPORT_VERSION:
        raise RegisterError(f"version {quoted(document.get('version'))}; this program reads {EXPORT_VERSION}")
    if set(document) != {"format", "version", "entries"}:
        extra = sorted(set(document) - {"format", "version", "entries"}, key=str)
        raise RegisterError(f"has field(s) {', '.join(quoted(n) for n in extra[:5])}" if extra else "lacks entries")
    entries = document["entries"]
    if not isinstance(entries, list):
        raise RegisterError("entries is not a list")
    mirror = _checked_entries(entries, trusted)
    if older is not None:
        if not isinstance(older, Mirror):
            try:
                older = check_register(older, trusted)
            except RegisterError as error:
                raise RegisterError(f"the older copy: {error}") from None
        problem = mirror.extension_problem(older)
        if problem:
            raise RegisterError(problem)
    return mirror


def _checked_entries(entries: list, trusted: BankKeys) -> Mirror:
    digests: list[str] = []
    prev, last_at = GENESIS, None
    added: dict[str, dict] = {}  # key_id -> its add entry (a key belongs to one gate)
    revoked: dict[str, dict] = {}
    for position, entry in enumerate(entries, start=1):
        problem = entry_problem(entry, trusted)
        if problem:
            raise RegisterError(f"entry #{position}: {problem}")
        where = f"entry {position}"
        if entry["index"] != position:
            raise RegisterError(f"entry #{position} says it is entry {entry['index']}: entries are numbered 1, 2, ... "
                                "without a gap (one was removed, added or moved)")
        if entry["prev"] != prev:
            raise RegisterError(f"{where}: prev does not name entry {position - 1}'s digest" if position > 1 else
                                f"{where}: prev is not 64 zeros, as the first entry's is")
        if last_at is not None and entry["at"] < last_at:
            raise RegisterError(f"{where} was written at {entry['at']}, before entry {position - 1} ({last_at}): "
                                "times never go back along the register")
        kid = entry["key_id"]
        if entry["action"] == "add":
            earlier = added.get(kid)
            if earlier is not None:
                raise RegisterError(f"{where} adds key {kid} for {entry['site']}/{entry['gate']}, which entry "
                                    f"{earlier['index']} added already (for {earlier['site']}/{earlier['gate']})")
            added[kid] = entry
        else:
            earlier = added.get(kid)
            if earlier is None or (earlier["site"], earlier["gate"]) != (entry["site"], entry["gate"]):
                raise RegisterError(f"{where} revokes {_describe(entry)}, which no earlier entry added")
            if earlier["public_key"] != entry["public_key"]:
                raise RegisterError(f"{where} revokes {_describe(entry)} with another public key than entry "
                                    f"{earlier['index']} added")
            if kid in revoked:
                raise RegisterError(f"{where} revokes {_describe(entry)}, which entry {revoked[kid]['index']} "
                                    "revoked already")
            revoked[kid] = entry
        prev = entry_digest(entry)
        digests.append(prev)
        last_at = entry["at"]
    return Mirror(tuple(entries), tuple(digests))


def read_export(data: bytes) -> object:
    """An export's bytes as JSON, as strictly as an evidence file is read (RegisterError otherwise)."""
    # Imported here: the evidence document checks citations with this module.
    from collector.evidence.document import EvidenceError, read_evidence

    try:
        return read_evidence(data)
    except EvidenceError as error:
        raise RegisterError(str(error)) from None


def load_mirror(source: str | Path | bytes, trusted: BankKeys, *, older: Mirror | None = None) -> Mirror:
    """A copy of the register (a file's path, or its bytes) read strictly and checked whole."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise RegisterError(f"{source}: cannot read: {error.strerror}") from None
    return check_register(read_export(data), trusted, older=older)


# ---------------------------------------------------------------------------------------------- citations


@dataclass(frozen=True, slots=True)
class CitationCheck:
    """The verdict on a cited register entry: ``ok``, else ``problem`` (one line); ``notes`` say in plain
    words what the verdict rests on (always at least one)."""

    ok: bool
    problem: str | None
    notes: tuple[str, ...]
    index: int | None = None
    digest: str | None = None
    mirrored: bool = False

    def __post_init__(self) -> None:
        if self.ok == (self.problem is not None):
            raise ValueError("a citation check is ok, or has a problem")


def _refused(problem: str, notes: list[str] | tuple = ()) -> CitationCheck:
    return CitationCheck(False, problem, tuple(notes))


def check_citation(entry: object, trusted: BankKeys, *, mirror: Mirror | None = None,
                   received_at: Iterable[str] = (), gate_key: tuple[str, str, str] | None = None) -> CitationCheck:
    """Check a register entry an evidence file cites for a gate key whose punches the bank received at
    ``received_at`` (UTC wire times); ``gate_key`` is (site, gate, public key text) the punches use."""
    problem = entry_problem(entry, trusted)
    if problem:
        return _refused(f"the cited register entry {problem}")
    assert isinstance(entry, dict)
    if entry["action"] != "add":
        return _refused(f"the cited entry {entry['index']} revokes {_describe(entry)}: a key is cited by the entry "
                        "that added it")
    if gate_key is not None:
        site, gate, public = gate_key
        if (entry["site"], entry["gate"]) != (site, gate) or entry["public_key"] != public.strip():
            return _refused(f"the cited entry {entry['index']} adds {_describe(entry)}, not the key the punches of "
                            f"{site}/{gate} use")
    times = list(received_at)
    for moment in times:
        try:
            parse_time(moment)
        except ProtocolError:
            return _refused(f"received_at {quoted(moment)} is not a UTC time with milliseconds")
    times.sort()
    index, digest, what = entry["index"], entry_digest(entry), _describe(entry)
    notes = [f"{what} is entry {index} of the bank's register of gate keys, signed by bank key {entry['bank_key']} "
             f"(added {entry['since']}, published {entry['at']})"]
    if times and times[0] < entry["since"]:
        return _refused(f"the register says {what} was added at {entry['since']}, after the bank received a punch "
                        f"signed by it ({times[0]})", notes)
    if times and entry["at"] > times[0]:
        notes.append(f"{what} was published in the register at {entry['at']}, after the bank received punches "
                     f"signed by it (the first at {times[0]}): entered afterwards (a key of before the register, or "
                     "one the register learnt of late), or made up after the fact; only a copy of the register "
                     f"taken before {times[0]} tells which")
    if mirror is None:
        notes.append("no copy of the register was given: the key rests on the bank's signature only, which the bank "
                     "can make at any time; check against a copy taken before the punches")
        return CitationCheck(True, None, tuple(notes), index, digest, False)
    held = mirror.entry(index)
    if held is None:
        return _refused(f"entry {index} ({what}) is not in the copy of the register, which holds entries 1 to "
                        f"{mirror.length}: the bank published it after that copy was taken", notes)
    if mirror.digests[index - 1] != digest:
        return _refused(f"entry {index} of the copy of the register is not the cited one ({mirror.digests[index - 1]} "
                        f"there, {digest} cited): the bank signed two different entries {index}", notes)
    revoke = mirror.revocation(entry["site"], entry["gate"], entry["key_id"])
    if revoke is not None:
        if times and revoke["since"] <= times[-1]:
            return _refused(f"{what} was revoked at {revoke['since']} (entry {revoke['index']} of the copy of the "
                            f"register), at or before a punch the bank received at {times[-1]}", notes)
        notes.append(f"{what} was revoked at {revoke['since']} (entry {revoke['index']}), after every punch here")
    last = mirror.entries[-1]["at"]
    notes.append(f"entry {index} is in the copy of the register held here (entries 1 to {mirror.length}, the last "
                 f"written {last}): that copy, if it was taken before the punches, shows the bank published the "
                 "key before it used it")
    return CitationCheck(True, None, tuple(notes), index, digest, True)


# ---------------------------------------------------------------------------------------------- the bank's side


def citation(store: Store, site: str, gate: str, kid: str) -> dict | None:
    """The signed "add" entry of that gate key, whole, or None while the register lacks it."""
    row = store.register_entry_of(site, gate, kid, "add")
    return json.loads(row["entry"]) if row is not None else None


def missing_states(store: Store) -> list[tuple[str, str, str, str, str, str]]:
    """Key states the registry has and the register lacks, in the registry's time order: (since, action,
    site, gate, key_id, public key text). A revoke sorts after its key's add whatever the clocks said."""
    present = store.registered_key_states()
    missing = []
    for row in store.all_gate_keys():
        site, gate, kid = row["site"], row["gate"], row["key_id"]
        public = public_key_text(parse_public_key(row["public_key"]))
        if ("add", site, gate, kid) not in present:
            missing.append(((row["added_at"], 0), (row["added_at"], "add", site, gate, kid, public)))
        if row["revoked_at"] and ("revoke", site, gate, kid) not in present:
            order = max(row["revoked_at"], row["added_at"])
            missing.append(((order, 1), (row["revoked_at"], "revoke", site, gate, kid, public)))
    missing.sort(key=lambda item: (item[0], item[1][2:5]))
    return [state for _, state in missing]


def sync(store: Store, key: Ed25519PrivateKey) -> list[dict]:
    """Append an entry, signed with the bank's ``key``, for every key state the registry has and the
    register lacks (nothing when it lacks none); returns the entries appended. Inside a caller's
    transaction (a key change) it is part of it."""
    if not missing_states(store):  # the common case, without taking the lock
        return []
    bank_public = public_key_text(key.public_key())
    appended = []
    with store.transaction():
        store.lock_register()
        missing = missing_states(store)  # again: another writer may have appended meanwhile
        if not missing:
            return []
        store.record_bank_key(bank_public)  # a verifier with the registry trusts what signed the register
        head = store.register_head()
        index, prev, last_at = (head["idx"], head["digest"], head["at"]) if head else (0, GENESIS, "")
        now = format_time(store.now())
        for since, action, site, gate, kid, public in missing:
            index += 1
            # Never before the entry before it, nor before what it records (clocks of several hosts).
            at = max(now, last_at, since)
            entry = sign_entry({"register": REGISTER, "version": ENTRY_VERSION, "index": index, "prev": prev,
                                "at": at, "action": action, "site": site, "gate": gate, "key_id": kid,
                                "public_key": public, "since": since}, key)
            prev = entry_digest(entry)
            store.append_register_entry(index=index, entry=jcs(entry).decode("utf-8"), digest=prev, at=at,
                                        action=action, site=site, gate=gate, key_id=kid, since=since)
            appended.append(entry)
            last_at = at
    return appended


def export_document(store: Store) -> dict:
    """The register as its export says it."""
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "entries": [json.loads(row["entry"]) for row in store.register_entries()]}


def export_bytes(store: Store) -> bytes:
    """The export's bytes: one entry (its stored RFC 8785 text) a line, so that two copies compare by line."""
    lines = [row["entry"].encode("utf-8") for row in store.register_entries()]
    head = b'{"format":"%s","version":%d,"entries":[' % (EXPORT_FORMAT.encode(), EXPORT_VERSION)
    if not lines:
        return head + b"]}\n"
    return head + b"\n" + b",\n".join(lines) + b"\n]}\n"
