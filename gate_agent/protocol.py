"""The wire contract between gates and the collector.

A punch is one card tap, signed by the gate that saw it and chained to the gate's previous punch, so
that nobody (gate owner, contractor, bank) can alter, drop or invent a tap afterwards without it showing.
From version 3 it is also chained to the gate's previous punch of the same card (``cprev``), so one
worker's punches at a gate prove on their own that none of them is missing. Both sides import this module; it depends on the standard library and ``cryptography`` only.

Canonical bytes are the punch's fields without ``sig`` as compact, key-sorted, ASCII JSON. Every field
is a string, an integer or a boolean, so the encoding is unique and a verifier re-derives it exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import GateError, GateInputError

PROTOCOL_VERSION = 1
#: Punches name their card kind from version 2 on; a version 1 punch is a ``uid`` card. Version 3 adds
#: ``cprev``, the digest of the gate's previous punch of the same card, so that one card's punches form a
#: signed chain of their own. A gate writes version 3 for every punch; the collector reads all three.
#: Messages, rosters and files stay at PROTOCOL_VERSION.
PUNCH_VERSIONS = (1, 2, 3)
#: The version a gate writes.
PUNCH_VERSION = 3
TOPIC_ROOT = "attendance/v1"
GENESIS = "0" * 64  # ``prev`` of a gate's first punch; ``cprev`` of a card's first punch at a gate

#: The collector refuses larger messages before parsing them.
MAX_MESSAGE_BYTES = 512 * 1024
#: A batch never holds more punches than this (a gate flushing a backlog sends several batches).
MAX_BATCH = 500

DIRECTIONS = ("in", "out", "toggle")
TECHNOLOGIES = ("iso14443a", "iso14443b", "felica")
ROSTER_VERDICTS = ("known", "unknown", "none")
#: uid: the card's UID (cloneable); bank: a keyed identifier of an EMV card's PAN (gate_agent.emv);
#: ntag424: an NTAG 424 DNA's UID with its SUN message, which only the bank can check (collector.ingest.sun).
CARD_KINDS = ("uid", "bank", "ntag424")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")
_UID = re.compile(r"[0-9A-F]{8,20}")  # 4..10 byte ISO 14443 UIDs, 8-byte FeliCa IDm
_BANK_ID = re.compile(r"[0-9A-F]{32}")  # 16 bytes of HMAC-SHA256 over the PAN: never a UID's length
_ROSTER_CARD = re.compile(r"[0-9A-F]{8,20}|[0-9A-F]{32}")
#: An NTAG 424 DNA SUN message as the gate read it from the card's URL: the encrypted PICC data (16 bytes)
#: and the truncated SDM MAC (8 bytes), lower-case hex, "<picc>:<mac>".
_SUN = re.compile(r"[0-9a-f]{32}:[0-9a-f]{16}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_PUBKEY_PREFIX = "ed25519:"


#: Files carried by hand (gate-agent export, collector ack-file) and their version.
BUNDLE_FORMAT = "site-gate-bundle"
ACK_FILE_FORMAT = "site-gate-ack"
FILE_FORMAT_VERSION = 1


def file_format_problem(document: object, expected: str) -> str | None:
    """Why a decoded hand-carried file is not an ``expected`` file of this version, or None."""
    if not isinstance(document, dict) or document.get("format") != expected:
        return f"format is not {expected!r}"
    if document.get("version") != FILE_FORMAT_VERSION:
        return f"version {quoted(document.get('version'))}; this program reads {FILE_FORMAT_VERSION}"
    return None


def canonical_json(document: dict) -> bytes:
    """Compact, key-sorted, ASCII JSON: the bytes every signature in this system is over."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class ProtocolError(GateError, ValueError):
    """A message that does not follow the contract; ``reason`` is a stable code for counters. The
    ``detail`` is kept with the refused message and logged: names and values from the message appear in
    it only through ``quoted`` (repr: control characters escaped, length bounded)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def quoted(value: object, limit: int = 40) -> str:
    """A name or value from outside as a detail shows it: its repr (every control character escaped),
    at most ``limit`` characters of a string, at most ``limit`` characters of any other repr."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    return repr(value)[:limit]


def quoted_names(names, limit: int = 5) -> str:
    """Field names from outside, sorted and quoted, the first ``limit`` of them and how many more."""
    ordered = sorted(names, key=str)
    shown = ", ".join(quoted(name) for name in ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


# ---------------------------------------------------------------------------------------------- ids, time


def valid_id(value: object) -> bool:
    """Site and gate ids become MQTT topic levels, so they exclude '/', '+' and '#'."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(kind: str, value: object) -> str:
    if not valid_id(value):
        raise ProtocolError("schema", f"{kind} {quoted(value)} is not an id (letters, digits, '_', '.', '-'; 1-64)")
    return value  # type: ignore[return-value]


def format_time(moment: datetime) -> str:
    """UTC with milliseconds, the only time format on the wire."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: wire times are UTC")
    moment = moment.astimezone(UTC)
    # Not strftime: its %Y does not pad years below 1000, which parse_time (rightly) refuses.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


def parse_time(text: str) -> datetime:
    if not isinstance(text, str) or _TIME.fullmatch(text) is None:
        raise ProtocolError("schema", f"time {quoted(text)} is not UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)")
    try:
        # The pattern above has fixed the layout; fromisoformat is ~10x faster than strptime and checks
        # the same ranges (month 13, day 31 of a 30-day month and second 60 all raise ValueError).
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as error:
        raise ProtocolError("schema", f"time {quoted(text)}: {error}") from None


def normalise_uid(uid: str) -> str:
    """Card UIDs are upper-case hex without separators ("04:a2:..." and "04a2..." are the same card)."""
    text = uid.replace(":", "").replace(" ", "").replace("-", "").upper()
    if _UID.fullmatch(text) is None or len(text) % 2:
        raise GateInputError(f"card UID {uid!r} is not 4 to 10 bytes of hex")
    return text


def normalise_card(card: str) -> str:
    """A card as the registry names it: a UID (normalise_uid) or a bank card's 32-hex-digit identifier."""
    text = card.strip().upper()
    if _BANK_ID.fullmatch(text):
        return text
    return normalise_uid(card)


# ---------------------------------------------------------------------------------------------- keys


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line form that ``gate-agent keygen`` prints and ``collector gate add`` takes."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _PUBKEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if not text.startswith(_PUBKEY_PREFIX):
        raise GateInputError(f"public key must start with {_PUBKEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(_PUBKEY_PREFIX):], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise GateInputError(f"public key is not 32 bytes of base64 Ed25519: {error}") from None


def key_id(key: Ed25519PublicKey | str) -> str:
    """Short fingerprint carried in each punch so a verifier picks the right key after a rotation."""
    if isinstance(key, str):
        key = parse_public_key(key)
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- punches


@dataclass(frozen=True, slots=True)
class Punch:
    """One signed card tap. Field names are the wire names."""

    v: int
    site: str
    gate: str
    seq: int
    time: str  # gate's wall clock, UTC with ms
    mono_ms: int  # gate's CLOCK_MONOTONIC in ms: orders taps within one boot whatever the wall clock did
    boot: str  # kernel boot id: mono_ms is comparable only within one boot
    synced: bool  # was the wall clock NTP-synchronised (a Raspberry Pi has no RTC)
    card: str
    tech: str
    reader: str
    dir: str
    roster: str  # the gate's verdict from its last roster: known / unknown / none (no roster yet)
    prev: str  # digest of the gate's previous punch, GENESIS for seq 1
    key: str  # key_id of the signing key
    sig: str = ""  # hex Ed25519 signature over canonical_bytes()
    kind: str = "uid"  # from v 2: the card kind (CARD_KINDS); a v 1 punch has neither field on the wire
    sun: str = ""  # from v 2: an ntag424 card's SUN message, "" for other kinds
    #: from v 3: digest of the previous punch this gate wrote of the same card (GENESIS for none): the card's
    #: own chain, which proves that none of one card's punches at this gate was left out
    cprev: str = ""

    def _fields(self) -> dict:
        # dataclasses.asdict deep-copies every value; these are all str/int/bool. Profiling ingest showed
        # asdict at ~10% of the collector's time (canonical bytes, body and digest per punch).
        return {name: getattr(self, name) for name in _NAMES.get(self.v, _FIELD_NAMES)}

    def canonical_bytes(self) -> bytes:
        body = self._fields()
        del body["sig"]
        return canonical_json(body)

    def digest(self) -> str:
        """What the next punch's ``prev`` holds; what an ack names."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def to_dict(self) -> dict:
        return self._fields()

    def to_json(self) -> bytes:
        return canonical_json(self._fields())

    @property
    def moment(self) -> datetime:
        return parse_time(self.time)

    @classmethod
    def from_dict(cls, data: object) -> Punch:
        """Validate a decoded punch strictly: anything unexpected is a ProtocolError, never a guess."""
        if not isinstance(data, dict):
            raise ProtocolError("schema", f"punch is {type(data).__name__}, not an object")
        version = data.get("v")
        if type(version) is int and version not in PUNCH_VERSIONS:
            raise ProtocolError("unsupported_version", f"punch protocol version {version}")
        expected = _FIELDS.get(version, _PUNCH_FIELDS)
        missing = [name for name in expected if name not in data]
        extra = sorted(set(data) - set(expected))
        if missing:
            raise ProtocolError("schema", f"punch lacks {', '.join(missing)}")
        if extra:
            raise ProtocolError("schema", f"punch has unknown field(s) {quoted_names(extra)}")
        for name, kind in expected.items():
            value = data[name]
            # bool is an int in Python; the wire keeps them apart.
            if type(value) is not kind:
                raise ProtocolError("schema", f"{name} is {type(value).__name__}, expected {kind.__name__}")
        check_id("site", data["site"])
        check_id("gate", data["gate"])
        if not 1 <= data["seq"] < 2**63:
            raise ProtocolError("schema", f"seq {data['seq']} out of range")
        parse_time(data["time"])
        if not 0 <= data["mono_ms"] < 2**63:
            raise ProtocolError("schema", f"mono_ms {data['mono_ms']} out of range")
        if not 1 <= len(data["boot"]) <= 64 or not data["boot"].isprintable():
            raise ProtocolError("schema", "boot id must be 1-64 printable characters")
        kind = data.get("kind", "uid")
        if kind not in CARD_KINDS:
            raise ProtocolError("schema", f"kind {quoted(kind, 20)} not one of {', '.join(CARD_KINDS)}")
        if kind == "bank":
            if _BANK_ID.fullmatch(data["card"]) is None:
                raise ProtocolError("schema", f"bank card {quoted(data['card'])} is not 16 bytes of upper-case hex")
        elif _UID.fullmatch(data["card"]) is None or len(data["card"]) % 2:
            raise ProtocolError("schema", f"card {quoted(data['card'])} is not 4-10 bytes of upper-case hex")
        sun = data.get("sun", "")
        if kind == "ntag424" and _SUN.fullmatch(sun) is None:
            raise ProtocolError("schema", f"ntag424 sun {quoted(sun)} is not <32 hex>:<16 hex>")
        if kind != "ntag424" and sun != "":
            raise ProtocolError("schema", f"a {kind} card carries no sun message")
        if data["tech"] not in TECHNOLOGIES:
            raise ProtocolError("schema", f"tech {data['tech'][:20]!r} not one of {', '.join(TECHNOLOGIES)}")
        if not 1 <= len(data["reader"]) <= 64 or not data["reader"].isprintable():
            raise ProtocolError("schema", "reader must be 1-64 printable characters")
        if data["dir"] not in DIRECTIONS:
            raise ProtocolError("schema", f"dir {data['dir'][:20]!r} not one of {', '.join(DIRECTIONS)}")
        if data["roster"] not in ROSTER_VERDICTS:
            raise ProtocolError("schema", f"roster {data['roster'][:20]!r} not one of {', '.join(ROSTER_VERDICTS)}")
        _check_hex("prev", data["prev"], 64)
        _check_hex("key", data["key"], 16)
        _check_hex("sig", data["sig"], 128)
        if data["seq"] == 1 and data["prev"] != GENESIS:
            raise ProtocolError("schema", "seq 1 must link to the genesis digest")
        if "cprev" in expected:
            _check_hex("cprev", data["cprev"], 64)
            if data["seq"] == 1 and data["cprev"] != GENESIS:
                raise ProtocolError("schema", "seq 1 must link its card to the genesis digest (cprev)")
        return cls(**data)


_PUNCH_FIELDS: dict[str, type] = {f.name: {"int": int, "str": str, "bool": bool}[f.type] for f in fields(Punch)}
_FIELD_NAMES = tuple(_PUNCH_FIELDS)
_V2_FIELDS = {name: kind for name, kind in _PUNCH_FIELDS.items() if name != "cprev"}
_V1_FIELDS = {name: kind for name, kind in _V2_FIELDS.items() if name not in ("kind", "sun")}
#: The fields of each version a punch may have (the newest: every field).
_FIELDS = {1: _V1_FIELDS, 2: _V2_FIELDS, 3: _PUNCH_FIELDS}
_NAMES = {version: tuple(names) for version, names in _FIELDS.items()}


def _check_hex(name: str, value: str, length: int) -> None:
    if len(value) != length or _HEX.fullmatch(value) is None:
        raise ProtocolError("schema", f"{name} must be {length} lower-case hex digits")


def sign_punch(unsigned: Punch, private_key: Ed25519PrivateKey) -> Punch:
    """Return the punch with ``key`` and ``sig`` set by ``private_key``."""
    keyed = _replace(unsigned, key=key_id(private_key.public_key()), sig="")
    signature = private_key.sign(keyed.canonical_bytes())
    return _replace(keyed, sig=signature.hex())


def _replace(punch: Punch, **changes) -> Punch:
    data = punch.to_dict()
    data.update(changes)
    return Punch(**data)


def verify_punch(punch: Punch, public_key: Ed25519PublicKey) -> None:
    """Raise ProtocolError('bad_signature') unless ``public_key`` signed exactly this punch."""
    if punch.key != key_id(public_key):
        raise ProtocolError("bad_signature", f"punch names key {punch.key}, not {key_id(public_key)}")
    try:
        public_key.verify(bytes.fromhex(punch.sig), punch.canonical_bytes())
    except InvalidSignature:
        raise ProtocolError("bad_signature", f"signature of {punch.gate} seq {punch.seq} does not verify") from None


def check_link(previous: Punch, punch: Punch) -> None:
    """Raise ProtocolError('chain_break') unless ``punch`` directly follows ``previous``."""
    if (previous.site, previous.gate) != (punch.site, punch.gate):
        raise ProtocolError("chain_break", "punches from different gates")
    if punch.seq != previous.seq + 1:
        raise ProtocolError("chain_break", f"seq {punch.seq} does not follow seq {previous.seq}")
    if punch.prev != previous.digest():
        raise ProtocolError(
            "chain_break", f"{punch.gate} seq {punch.seq} does not link to the seq {previous.seq} held here"
        )


def check_card_link(previous: Punch | None, punch: Punch) -> None:
    """Raise ProtocolError('chain_break') unless ``punch`` (version 3) names ``previous`` as the gate's
    punch of its card before it; ``previous`` None: the card's first punch at this gate (``cprev`` GENESIS).
    A chain of one card may begin at a punch of version 1 or 2 (written before the gate's upgrade), which
    names no predecessor of its own."""
    if punch.v < 3:
        raise ProtocolError("chain_break", f"{punch.gate} seq {punch.seq} is version {punch.v}: it names no card link")
    if previous is None:
        if punch.cprev != GENESIS:
            raise ProtocolError("chain_break", f"{punch.gate} seq {punch.seq} links its card to an earlier punch")
        return
    if (previous.site, previous.gate, previous.card) != (punch.site, punch.gate, punch.card):
        raise ProtocolError("chain_break", "card link between punches of different gates or cards")
    if previous.seq >= punch.seq:
        raise ProtocolError("chain_break", f"seq {punch.seq} cannot follow its card's seq {previous.seq}")
    if punch.cprev != previous.digest():
        raise ProtocolError("chain_break", f"{punch.gate} seq {punch.seq} does not link its card to the seq "
                                           f"{previous.seq} held here")


def verify_chain(punches: list[Punch], keys: dict[str, Ed25519PublicKey]) -> None:
    """Check signatures and links of consecutive punches of one gate; the first failure raises.

    ``keys`` maps key ids to public keys (several after a rotation). The first punch's own link is
    checked only when it is seq 1 (its predecessor is not in the list).
    """
    previous: Punch | None = None
    for punch in punches:
        key = keys.get(punch.key)
        if key is None:
            raise ProtocolError("bad_signature", f"{punch.gate} seq {punch.seq}: key {punch.key} is not known")
        verify_punch(punch, key)
        if previous is not None:
            check_link(previous, punch)
        previous = punch


# ---------------------------------------------------------------------------------------------- messages


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _load_json(payload: bytes, what: str, limit: int = MAX_MESSAGE_BYTES) -> dict:
    if len(payload) > limit:
        raise ProtocolError("oversized", f"{what} of {len(payload)} bytes exceeds {limit}")
    try:
        # Python's json accepts NaN, Infinity and -Infinity, and reads 1e999 as infinity; none of them is
        # JSON (RFC 8259), and a non-finite number breaks every JSON reader downstream (browsers included).
        data = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError("malformed", f"{what} is not UTF-8 JSON: {str(error)[:120]}") from None
    if not isinstance(data, dict):
        raise ProtocolError("schema", f"{what} is {type(data).__name__}, not an object")
    version = data.get("v")
    if type(version) is not int:
        raise ProtocolError("schema", f"{what} has no integer protocol version 'v'")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"{what} protocol version {version}")
    return data


def encode_punches(punches: list[Punch]) -> bytes:
    """One message on the punch topic: one live punch, or a batch of consecutive ones from a backlog."""
    return encode_punch_bodies([p.to_json() for p in punches])


def encode_punch_bodies(bodies: list[bytes]) -> bytes:
    """The same from punches already serialised (as the gate's outbox stores them)."""
    if not 1 <= len(bodies) <= MAX_BATCH:
        raise ValueError(f"a message carries 1 to {MAX_BATCH} punches, not {len(bodies)}")
    return b'{"v":%d,"punches":[%s]}' % (PROTOCOL_VERSION, b",".join(bodies))


def decode_punch_message(payload: bytes) -> list[object]:
    """Split a punch message into raw punch objects; each is validated on its own by Punch.from_dict
    so that one bad punch in a batch does not hide the good ones."""
    data = _load_json(payload, "punch message")
    if set(data) != {"v", "punches"}:
        raise ProtocolError("schema", f"punch message keys {quoted_names(data)}, expected 'punches', 'v'")
    items = data["punches"]
    if not isinstance(items, list) or not items:
        raise ProtocolError("schema", "'punches' must be a non-empty list")
    if len(items) > MAX_BATCH:
        raise ProtocolError("oversized", f"batch of {len(items)} punches exceeds {MAX_BATCH}")
    return items


# ---------------------------------------------------------------------------------------------- bank messages
#
# What the bank sends to gates (acks, resend commands, rosters) and the files it hands out (ack files,
# evidence) are signed with the bank's own Ed25519 key, which each gate pins at enrolment: whoever
# controls the broker, or holds the broker's TLS key, can delay or drop them but cannot forge one. A
# signed document carries ``key`` (the key id) and ``sig`` (hex Ed25519 over its canonical bytes without
# ``sig``); every kind names itself in ``type``, so a signature over one kind never passes as another.

#: key id -> public key: the bank keys a gate or a verifier trusts.
BankKeys = dict[str, Ed25519PublicKey]


def parse_bank_keys(text: str) -> BankKeys:
    """One or more ``ed25519:...`` lines (the current key, and the previous one during a rotation). A
    ``#`` starts a comment, on a line of its own or after a key: ``collector bank-key`` prints each key
    with its id after one, and that very line (or file) is what an operator hands over."""
    keys: BankKeys = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()  # base64 has no '#': nothing of a key is cut
        if line:
            key = parse_public_key(line)
            keys[key_id(key)] = key
    if not keys:
        raise GateInputError("no ed25519:... public key found")
    return keys


def sign_document(document: dict, private_key: Ed25519PrivateKey) -> dict:
    """``document`` with ``key`` and ``sig`` set: the signature covers every other field."""
    body = {name: value for name, value in document.items() if name not in ("key", "sig")}
    body["key"] = key_id(private_key.public_key())
    body["sig"] = private_key.sign(canonical_json(body)).hex()
    return body


def verify_document(document: dict, keys: BankKeys, what: str) -> None:
    """Raise ProtocolError('bad_signature') unless one of ``keys`` signed exactly this document."""
    kid, signature = document.get("key"), document.get("sig")
    if not isinstance(kid, str) or not isinstance(signature, str):
        raise ProtocolError("bad_signature", f"{what} is not signed")
    key = keys.get(kid)
    if key is None:
        raise ProtocolError("bad_signature", f"{what} is signed by key {kid[:16]!r}, not a bank key this side trusts")
    if _SIGNATURE.fullmatch(signature) is None:  # one spelling only: bytes.fromhex reads upper case and spaces too
        raise ProtocolError("bad_signature", f"{what}: the signature is not 128 lower-case hex digits")
    unsigned = {name: value for name, value in document.items() if name != "sig"}
    try:
        key.verify(bytes.fromhex(signature), canonical_json(unsigned))
    except (InvalidSignature, ValueError):
        raise ProtocolError("bad_signature", f"{what}: the bank's signature does not verify") from None


def _signed_message(payload: bytes | dict, kind: str, fields: dict[str, type], keys: BankKeys) -> dict:
    """Decode (when bytes), check the exact fields and their types, then the signature."""
    data = _load_json(payload, kind) if isinstance(payload, bytes | bytearray) else payload
    if not isinstance(data, dict):
        raise ProtocolError("schema", f"{kind} is not an object")
    expected = {"v": int, "type": str, **fields, "issued": str, "key": str, "sig": str}
    if set(data) != set(expected):
        raise ProtocolError("schema", f"{kind} fields {quoted_names(data)}, expected "
                                      f"{', '.join(map(repr, sorted(expected)))}")
    for name, kind_of in expected.items():
        if type(data[name]) is not kind_of:
            raise ProtocolError("schema", f"{kind} {name} must be {kind_of.__name__}")
    if data["v"] != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"{kind} protocol version {data['v']}")
    if data["type"] != kind:
        raise ProtocolError("schema", f"a {str(data['type'])[:20]!r} message, not a {kind}")
    parse_time(data["issued"])
    verify_document(data, keys, kind)
    return data


def _check_addressee(data: dict, kind: str, site: str, gate: str | None) -> None:
    """A message signed for another gate is refused: the bank's word for one gate is not for all."""
    if data["site"] != site or (gate is not None and data["gate"] != gate):
        to = data["site"] + (f"/{data['gate']}" if gate is not None else "")
        if not (valid_id(data["site"]) and (gate is None or valid_id(data["gate"]))):
            to = quoted(to, 140)
        raise ProtocolError("schema", f"{kind} is for {to}, not {site}" + (f"/{gate}" if gate else ""))


@dataclass(frozen=True, slots=True)
class Ack:
    """The collector holds this gate's punches 1..seq; ``digest`` is its copy of punch ``seq``.

    The gate forgets nothing on an ack whose digest differs from its own punch: that would mean the
    bank holds a different history than the gate signed.
    """

    seq: int
    digest: str
    issued: str = field(default="", compare=False)  # when the bank signed it (wire UTC text), decoded

    def document(self, site: str, gate: str, issued: str) -> dict:
        return {"v": PROTOCOL_VERSION, "type": "ack", "site": site, "gate": gate, "seq": self.seq,
                "digest": self.digest, "issued": issued}

    def sign(self, site: str, gate: str, issued: str, key: Ed25519PrivateKey) -> bytes:
        return canonical_json(sign_document(self.document(site, gate, issued), key))

    @classmethod
    def decode(cls, payload: bytes | dict, *, site: str, gate: str, keys: BankKeys) -> Ack:
        data = _signed_message(payload, "ack", {"site": str, "gate": str, "seq": int, "digest": str}, keys)
        _check_addressee(data, "ack", site, gate)
        if data["seq"] < 0:
            raise ProtocolError("schema", "ack seq must be a non-negative integer")
        _check_hex("digest", data["digest"], 64)
        return cls(data["seq"], data["digest"], data["issued"])


@dataclass(frozen=True, slots=True)
class Resend:
    """Command from the collector: publish punches first..last again (a gap it saw). ``issued`` orders
    commands, so that a replayed old one is told from a new one."""

    first: int
    last: int
    issued: str = ""

    def sign(self, site: str, gate: str, issued: str, key: Ed25519PrivateKey) -> bytes:
        document = {"v": PROTOCOL_VERSION, "type": "resend", "site": site, "gate": gate, "from": self.first,
                    "to": self.last, "issued": issued}
        return canonical_json(sign_document(document, key))

    @classmethod
    def decode(cls, payload: bytes | dict, *, site: str, gate: str, keys: BankKeys) -> Resend:
        data = _signed_message(payload, "resend", {"site": str, "gate": str, "from": int, "to": int}, keys)
        _check_addressee(data, "resend", site, gate)
        if not 1 <= data["from"] <= data["to"]:
            raise ProtocolError("schema", "resend needs integers 1 <= from <= to")
        return cls(data["from"], data["to"], data["issued"])


#: What a refusal may name: why the bank does not take this gate's punches or statuses.
REFUSAL_REASONS = ("unknown_gate", "site_mismatch", "gate_inactive", "unknown_key", "key_revoked", "bad_signature")


@dataclass(frozen=True, slots=True)
class Refusal:
    """The bank's answer to a gate whose punches or statuses it refuses (an unregistered gate, a key the
    bank does not know, a deactivated gate): the gate says why in its log and its status, instead of
    only noticing that no ack comes."""

    reason: str
    detail: str
    issued: str = ""

    def sign(self, site: str, gate: str, issued: str, key: Ed25519PrivateKey) -> bytes:
        document = {"v": PROTOCOL_VERSION, "type": "refused", "site": site, "gate": gate, "reason": self.reason,
                    "detail": self.detail[:300], "issued": issued}
        return canonical_json(sign_document(document, key))

    @classmethod
    def decode(cls, payload: bytes | dict, *, site: str, gate: str, keys: BankKeys) -> Refusal:
        data = _signed_message(payload, "refused", {"site": str, "gate": str, "reason": str, "detail": str}, keys)
        _check_addressee(data, "refused", site, gate)
        if data["reason"] not in REFUSAL_REASONS:
            raise ProtocolError("schema", f"refusal reason {quoted(data['reason'])}")
        return cls(data["reason"], data["detail"][:300], data["issued"])


def decode_command(payload: bytes, *, site: str, gate: str, keys: BankKeys) -> Resend | Refusal:
    """A message on a gate's cmd topic: a resend request or a refusal, told apart by its signed type."""
    data = _load_json(payload, "command")
    kind = data.get("type")
    if kind == "refused":
        return Refusal.decode(data, site=site, gate=gate, keys=keys)
    return Resend.decode(data, site=site, gate=gate, keys=keys)


@dataclass(frozen=True, slots=True)
class Roster:
    """Card UIDs valid now at a site, retained so an offline-started gate still knows them. A gate keeps
    the newest by ``issued``: an older roster, replayed, never replaces a newer one."""

    site: str
    issued: str
    cards: frozenset[str]

    def document(self) -> dict:
        return {"v": PROTOCOL_VERSION, "type": "roster", "site": self.site, "issued": self.issued,
                "cards": sorted(self.cards)}

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return canonical_json(sign_document(self.document(), key))

    def encode(self) -> bytes:
        """The unsigned form a gate keeps on its own disk once it has checked the signature."""
        return canonical_json(self.document())

    @classmethod
    def decode(cls, payload: bytes | dict, *, site: str, keys: BankKeys) -> Roster:
        data = _signed_message(payload, "roster", {"site": str, "cards": list}, keys)
        _check_addressee(data, "roster", site, None)
        return cls._from(data)

    @classmethod
    def load(cls, stored: bytes) -> Roster:
        """A roster this gate checked and stored itself (``encode``)."""
        data = _load_json(stored, "stored roster")
        return cls._from(data)

    @classmethod
    def _from(cls, data: dict) -> Roster:
        site = check_id("site", data.get("site"))
        issued = data.get("issued")
        parse_time(issued)  # type: ignore[arg-type]
        cards = data.get("cards")
        if not isinstance(cards, list) or not all(isinstance(c, str) and _ROSTER_CARD.fullmatch(c) for c in cards):
            raise ProtocolError("schema", "roster cards must be a list of upper-case hex UIDs or bank card ids")
        return cls(site, issued, frozenset(cards))  # type: ignore[arg-type]


STATUS_STATES = ("online", "offline")
#: A heartbeat is a few hundred bytes; nothing a gate says about itself needs more.
MAX_STATUS_BYTES = 4096
#: What the agent counts and reports in each heartbeat (gate_agent.agent).
STATUS_COUNTERS = ("recorded", "duplicates", "unknown_cards", "not_recorded", "unreadable_cards")
READER_STATES = ("ok", "down")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}")


def encode_status(state: str, **facts: object) -> bytes:
    """Retained gate status: heartbeats carry counters; the last will says 'offline'."""
    if state not in STATUS_STATES:
        raise ValueError(f"status state {state!r}")
    return json.dumps({"v": PROTOCOL_VERSION, "state": state, **facts}, sort_keys=True).encode()


def decode_status(payload: bytes) -> dict:
    """A gate's status, checked field by field before anything stores or shows it: a heartbeat carries
    every fact gate_agent.link sends (finality and health read them; a missing one would be a guess),
    the last will only the gate's ids. Anything else, and any value out of its type or range, is refused."""
    data = _load_json(payload, "status", MAX_STATUS_BYTES)
    state = data.get("state")
    if state not in STATUS_STATES:
        raise ProtocolError("schema", f"status state {str(state)[:20]!r}")
    expected = _STATUS_FIELDS if state == "online" else _WILL_FIELDS
    optional = _OPTIONAL_STATUS_FIELDS if state == "online" else {}
    extra = set(data) - set(expected) - set(optional) - {"v", "state"}
    if extra:
        raise ProtocolError("schema", f"{state} status has unknown field(s) {quoted_names(extra)}")
    missing = [name for name in expected if name not in data]
    if missing:
        raise ProtocolError("schema", f"{state} status lacks {', '.join(missing)}")
    for name, check in expected.items():
        check(name, data[name])
    for name, check in optional.items():
        if name in data:
            check(name, data[name])
    if state == "online" and not (data["acked_seq"] <= data["last_seq"]
                                  and data["pending"] == data["last_seq"] - data["acked_seq"]):
        raise ProtocolError("schema", f"status says pending {data['pending']} with last_seq {data['last_seq']} "
                                      f"and acked_seq {data['acked_seq']}")
    return data


def _status_id(name: str, value: object) -> None:
    check_id(name, value)


def _status_count(name: str, value: object) -> None:
    # bool is an int in Python; the wire keeps them apart.
    if type(value) is not int or not 0 <= value < 2**63:
        raise ProtocolError("schema", f"status {name} must be an integer from 0 to 2**63-1")


def _status_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise ProtocolError("schema", f"status {name} must be true or false")


def _status_time(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ProtocolError("schema", f"status {name} must be a time (YYYY-MM-DDTHH:MM:SS.mmmZ)")
    parse_time(value)


def _status_time_or_null(name: str, value: object) -> None:
    if value is not None:
        _status_time(name, value)


def _status_number(low: float, high: float, *, low_included: bool):
    def check(name: str, value: object) -> None:
        if type(value) not in (int, float) or not math.isfinite(value) or not (
                (low <= value if low_included else low < value) and value <= high):
            bounds = f"{'[' if low_included else '('}{low:g}, {high:g}]"
            raise ProtocolError("schema", f"status {name} must be a number in {bounds}")
    return check


def _status_version(name: str, value: object) -> None:
    if not isinstance(value, str) or _VERSION.fullmatch(value) is None:
        raise ProtocolError("schema", f"status {name} must be a version (letters, digits, '.+_-'; 1-40)")


def _status_boot(name: str, value: object) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise ProtocolError("schema", f"status {name} must be 1-64 printable characters")


def _status_reader(name: str, value: object) -> None:
    if value not in READER_STATES:
        raise ProtocolError("schema", f"status {name} must be one of {', '.join(READER_STATES)}")


def _status_refusal(name: str, value: object) -> None:
    if value is not None and value not in REFUSAL_REASONS:
        raise ProtocolError("schema", f"status {name} must be null or one of {', '.join(REFUSAL_REASONS)}")


def _status_counters(name: str, value: object) -> None:
    if not isinstance(value, dict) or not set(value) <= set(STATUS_COUNTERS):
        raise ProtocolError("schema", f"status {name} must be an object with keys among {', '.join(STATUS_COUNTERS)}")
    for key, count in value.items():
        _status_count(f"{name}.{key}", count)


#: Every field of an online status (gate_agent.link._publish_status) and its check.
_STATUS_FIELDS = {
    "site": _status_id, "gate": _status_id, "version": _status_version,
    "heartbeat_seconds": _status_number(0, 86400, low_included=False),
    "last_seq": _status_count, "acked_seq": _status_count, "pending": _status_count,
    "oldest_pending_at": _status_time_or_null, "bytes_on_disk": _status_count,
    "time": _status_time, "boot": _status_boot, "mono_ms": _status_count, "synced": _status_bool,
    "reader": _status_reader, "buffer_pct": _status_number(0, 10000, low_included=True),
    "buffer_warning": _status_bool, "roster_issued": _status_time_or_null, "counters": _status_counters,
}
#: Facts a heartbeat may carry: why the bank last refused this gate's messages (its signed answer).
_OPTIONAL_STATUS_FIELDS = {"bank_refuses": _status_refusal}
#: The last will and a clean stop's final status.
_WILL_FIELDS = {"site": _status_id, "gate": _status_id}


# ---------------------------------------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class GateTopics:
    site: str
    gate: str

    def __post_init__(self) -> None:
        check_id("site", self.site)
        check_id("gate", self.gate)

    @property
    def base(self) -> str:
        return f"{TOPIC_ROOT}/{self.site}/{self.gate}"

    @property
    def punch(self) -> str:
        return f"{self.base}/punch"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def roster(self) -> str:
        return roster_topic(self.site)


def roster_topic(site: str) -> str:
    return f"{TOPIC_ROOT}/{check_id('site', site)}/roster"


PUNCH_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/punch"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/status"


def parse_gate_topic(topic: str) -> tuple[str, str, str]:
    """``attendance/v1/<site>/<gate>/<kind>`` -> (site, gate, kind)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ProtocolError("topic", f"topic {topic[:200]!r} is not {TOPIC_ROOT}/<site>/<gate>/<kind>")
    _, _, site, gate, kind = parts
    if not (valid_id(site) and valid_id(gate)):
        raise ProtocolError("topic", f"topic {topic[:200]!r} has an invalid site or gate id")
    return site, gate, kind


def utc_now_text() -> str:
    return format_time(datetime.now(UTC))
