"""What a version 2 evidence file is (docs/evidence-format.md): its fields and their types, a day's shape,
its ids and its signature. The builder (``build2``) writes it, the verifier (``verify2``) reads it; both
take the shape from here, so that what one writes the other expects, field for field.

Version 2 signs RFC 8785 bytes (``canonical.jcs``) of a document that holds no float: durations are
integer milliseconds (a site's ``max_shift_ms``, a shift's ``ms``), times are text. Its chains carry the
worker's own card's punches (gate protocol 3 links each punch to the card's previous one at that gate),
its gate keys are citations of the bank's register of gate keys, and its manual entries and voids are the
worker's own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence.canonical import MAX_INTEGER, jcs
from collector.evidence.reading import EvidenceError
from gate_agent.protocol import ProtocolError, key_id, parse_time, public_key_text

FORMAT = "site-gate-evidence"
VERSION = 2

#: The bank's judgements of a punch's card a chain carries (docs/cards.md): punches that prove no presence.
CARD_FLAGS = frozenset({"card_forged", "card_replay", "card_unverified"})
#: Day flags that rest on what the file does not carry, on the bank's word: a verifier leaves them out of
#: the comparison (the worker's assignments; the gate's declared delivery interval; what ingest judged of
#: a punch against the bank's clock and the gate's other punches).
BANK_FLAGS = frozenset({"not_assigned", "late_upload", "clock_future", "clock_backwards", "chain_break",
                        "equivocated"})
#: A chain's ``end``: a punch of the card after the period closes it, or the bank held none later.
ENDS = ("later", "newest")
LINKS = ("card", "gate")
GENESIS = "0" * 64
MS = timedelta(milliseconds=1)

#: A document's fields in the order the page lists them (the bytes signed sort them anyway).
TOP_FIELDS = ("format", "version", "generated_at", "worker", "period", "cards", "sites", "gates", "manual", "voids",
              "days", "bank_key", "key", "sig")
#: What the evidence id leaves out: what changes with each writing of the same evidence.
NOT_IN_ID = ("generated_at", "bank_key", "key", "sig")
DAY_FIELDS = ("worker", "name", "employer", "site", "date", "shifts", "worked_minutes", "first_in", "last_out",
              "status", "anomalies", "voided", "flags")
SHIFT_FIELDS = ("in", "out", "in_ref", "out_ref", "ms", "status")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_MANUAL_REF = re.compile(r"manual#[1-9][0-9]*")


# ---------------------------------------------------------------------------------------------- ids, signature


def evidence_id(document: dict) -> str:
    """SHA-256 of the RFC 8785 bytes of what the document says (without when and with which key it was
    signed): the same days and punches written twice have one id."""
    return hashlib.sha256(jcs({k: v for k, v in document.items() if k not in NOT_IN_ID})).hexdigest()


def days_id(days: list[dict]) -> str:
    """SHA-256 of the RFC 8785 bytes of the ``days`` array (in site and date order): what a wage slip names."""
    return hashlib.sha256(jcs(days)).hexdigest()


def sign(document: dict, key: Ed25519PrivateKey) -> dict:
    """``document`` with ``bank_key``, ``key`` and ``sig``: the bank's Ed25519 signature over the RFC 8785
    bytes of everything but ``sig``."""
    body = {name: value for name, value in document.items() if name not in ("bank_key", "key", "sig")}
    body["bank_key"] = public_key_text(key.public_key())
    body["key"] = key_id(key.public_key())
    body["sig"] = key.sign(jcs(body)).hex()
    return body


# ---------------------------------------------------------------------------------------------- days


def day_of(record: dict) -> dict:
    """A day as a version 2 file states it, from a day as reports give it (``reports.record_dict`` or a
    kept day read back): shifts in integer milliseconds, the voided refs sorted, no ``final`` (which rests
    on gate heartbeats the file does not carry). A day the rules could not compute has no version 2 form."""
    if record.get("status") == "error":
        raise ValueError(f"the day {record['date']} at {record['site']} could not be computed: {record.get('error')}")
    return {
        "worker": record["worker"], "name": record["name"], "employer": record["employer"],
        "site": record["site"], "date": record["date"],
        "shifts": [{"in": s["in"], "out": s["out"], "in_ref": s["in_ref"], "out_ref": s["out_ref"], "ms": s["ms"],
                    "status": s["status"]} for s in record["shifts"]],
        "worked_minutes": record["worked_minutes"], "first_in": record["first_in"], "last_out": record["last_out"],
        "status": record["status"], "anomalies": [{"ref": a["ref"], "why": a["why"]} for a in record["anomalies"]],
        "voided": sorted(record["voided"], key=_utf16), "flags": list(record["flags"]),
    }


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def text_order(text: str) -> bytes:
    """The order the page means by "compared as text": UTF-16 code units (as JavaScript compares)."""
    return _utf16(text)


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The local date of ``moment`` in ``tz``; a moment whose local date falls before year 1 counts as
    before every date, one after year 9999 as after every date (docs/evidence-format.md section 4.2)."""
    try:
        return moment.astimezone(tz).date()
    except (OverflowError, ValueError):
        return date.min if moment.year < 5000 else date.max


# ---------------------------------------------------------------------------------------------- the shape
#
# Each check takes the value and where it is (for the message) and raises EvidenceError, or returns the
# value. Only what JSON gives is met here: dicts, lists, str, int, bool, None (check_numbers has refused
# floats before).

Check = Callable[[object, str], object]


def _fail(where: str, what: str) -> EvidenceError:
    return EvidenceError(f"{where}: {what}")


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "text", bool: "true/false", int: "an integer",
            type(None): "null"}.get(type(value), type(value).__name__)


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"is {_kind(value)}, not text")
    return value


def integer(value: object, where: str) -> int:
    if type(value) is not int:
        raise _fail(where, f"is {_kind(value)}, not an integer")
    return value


def time(value: object, where: str) -> str:
    text(value, where)
    try:
        parse_time(value)
    except ProtocolError:
        raise _fail(where, f"{value[:40]!r} is not a time YYYY-MM-DDTHH:MM:SS.mmmZ") from None
    return value


def day(value: object, where: str) -> str:
    text(value, where)
    try:
        if _DATE.fullmatch(value) is None:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise _fail(where, f"{value[:40]!r} is not a date YYYY-MM-DD") from None
    return value


def hex16(value: object, where: str) -> str:
    if not isinstance(value, str) or _HEX16.fullmatch(value) is None:
        raise _fail(where, "is not 16 lower-case hex digits")
    return value


def signature(value: object, where: str) -> str:
    if not isinstance(value, str) or _HEX128.fullmatch(value) is None:
        raise _fail(where, "is not 128 lower-case hex digits")
    return value


def key_text(value: object, where: str) -> str:
    """A public key written exactly as the page says: ``ed25519:`` and the padded standard base64 of 32 bytes."""
    from gate_agent.errors import GateInputError
    from gate_agent.protocol import parse_public_key

    text(value, where)
    try:
        written = public_key_text(parse_public_key(value))
    except GateInputError:
        written = None
    if written != value:
        raise _fail(where, f"{value[:60]!r} is not a public key (ed25519: and the base64 of 32 bytes)")
    return value


def nullable(check: Check) -> Check:
    def checked(value: object, where: str) -> object:
        return None if value is None else check(value, where)
    return checked


def one_of(*values: str) -> Check:
    def checked(value: object, where: str) -> str:
        if not isinstance(value, str) or value not in values:
            shown = repr(value[:40]) if isinstance(value, str) else _kind(value)
            raise _fail(where, f"{shown} is not one of {', '.join(values)}")
        return value
    return checked


def array(check: Check, *, least: int = 0) -> Check:
    def checked(value: object, where: str) -> list:
        if not isinstance(value, list):
            raise _fail(where, f"is {_kind(value)}, not an array")
        if len(value) < least:
            raise _fail(where, f"holds {len(value)} element(s), at least {least} expected")
        for index, item in enumerate(value):
            check(item, f"{where}[{index}]")
        return value
    return checked


def any_object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, f"is {_kind(value)}, not an object")
    return value


def fields(value: object, where: str, required: dict[str, Check], optional: dict[str, Check] | None = None) -> dict:
    """An object with exactly the ``required`` members (and maybe the ``optional`` ones), each checked."""
    any_object(value, where)
    optional = optional or {}
    extra = sorted(set(value) - set(required) - set(optional), key=_utf16)
    if extra:
        raise _fail(where, f"has member(s) no version 2 file has: {', '.join(repr(n[:40]) for n in extra[:5])}")
    missing = [name for name in required if name not in value]
    if missing:
        raise _fail(where, f"lacks {', '.join(missing)}")
    for name, check in {**required, **optional}.items():
        if name in value:
            check(value[name], f"{where}.{name}")
    return value


def record(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    def checked(value: object, where: str) -> dict:
        return fields(value, where, required, optional)
    return checked


def sorted_flags(value: object, where: str) -> list:
    """A punch's card judgements: an array of card flags, sorted, each once."""
    array(one_of(*sorted(CARD_FLAGS)), least=0)(value, where)
    if value != sorted(set(value)):
        raise _fail(where, "is not sorted, each flag once")
    return value


def positive_ms(value: object, where: str) -> int:
    integer(value, where)
    if not 0 < value <= MAX_INTEGER:
        raise _fail(where, f"{value} is not a positive number of milliseconds")
    return value


def manual_ref(value: object, where: str) -> str:
    if not isinstance(value, str) or _MANUAL_REF.fullmatch(value) is None:
        raise _fail(where, f"{str(value)[:40]!r} is not manual#N (N a positive decimal integer)")
    return value


WORKER = record({"worker": text, "name": text, "employer": nullable(text)})
PERIOD = record({"from": day, "to": day})
CARD = record({"uid": text, "valid_from": nullable(time), "valid_to": nullable(time)})
SITE = record({"timezone": text, "max_shift_ms": positive_ms})
_PARALLEL = {"punches": array(any_object, least=1), "received_at": array(time, least=1),
             "card_flags": array(sorted_flags, least=1)}
CARD_CHAIN = record({"link": one_of("card"), "card": text, "end": one_of(*ENDS), **_PARALLEL})
GATE_CHAIN = record({"link": one_of("gate"), **_PARALLEL})
MANUAL = record({"ref": manual_ref, "site": text, "time": time, "direction": one_of("in", "out"), "by": text,
                 "reason": text, "entered_at": time}, {"dispute": text})
VOID = record({"ref": text, "site": text, "void_at": time, "by": text, "reason": text}, {"dispute": text})


def chain(value: object, where: str) -> dict:
    any_object(value, where)
    link = value.get("link")
    if link == "card":
        CARD_CHAIN(value, where)
    elif link == "gate":
        GATE_CHAIN(value, where)
    else:
        raise _fail(where, f"link {str(link)[:20]!r} is neither 'card' nor 'gate'" if "link" in value else "lacks link")
    lengths = {len(value[name]) for name in _PARALLEL}
    if len(lengths) != 1:
        raise _fail(where, "punches, received_at and card_flags are not of one length")
    return value


def sites(value: object, where: str) -> dict:
    any_object(value, where)
    for name, rules in value.items():
        SITE(rules, f"{where}[{name!r}]")
    return value


GATE = record({"site": text, "gate": text, "keys": array(any_object, least=1), "chains": array(chain, least=1)})
DOCUMENT = {"format": one_of(FORMAT), "version": integer, "generated_at": time, "worker": WORKER, "period": PERIOD,
            "cards": array(CARD), "sites": sites, "gates": array(GATE), "manual": array(MANUAL),
            "voids": array(VOID), "days": array(any_object), "bank_key": key_text, "key": hex16, "sig": signature}


def check_shape(document: object, *, signed: bool = True) -> dict:
    """Every member of a version 2 document present, none more, each of its type (EvidenceError otherwise).
    Register entries and punches are checked by their own rules, days by recomputing them. ``signed``
    False: a document before the bank signs it (no bank_key, key, sig)."""
    fields(document, "the file", DOCUMENT if signed else
           {name: check for name, check in DOCUMENT.items() if name not in ("bank_key", "key", "sig")})
    if document["version"] != VERSION:
        raise EvidenceError(f"the file: version {document['version']} is not {VERSION}")
    if document["period"]["from"] > document["period"]["to"]:
        raise EvidenceError("the file: the period ends before it starts")
    return document
