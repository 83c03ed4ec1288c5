#!/usr/bin/env python3
"""Check a worker's evidence file with nothing but the file, the bank's published key, Python 3 and the
``cryptography`` package (no collector installed, no network).

    python3 verify_evidence.py EVIDENCE.json BANK_KEY.pub

It reads format 2 (docs/evidence-format.md) and format 1 files. It checks that the bank signed every
byte of the file with the published key, that every punch in it was signed by its gate's key and that
the chains are unbroken: for format 2, each gate key cited by its register entry (signed by the bank's
key), each card chain linked punch to punch from a start before the period to an end after it (or the
newest punch the bank held), each segment of a gate's chain linked seq to seq. It lists the days as the
bank computed them and does not recompute them (that needs the attendance rules: ``collector verify``
applies them, and checks the gate keys against a copy of the register with ``--register``). Exit status
0: verified; 1: not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

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
    if document.get("version") == 2 and type(document.get("version")) is int:
        return verify_v2(document, trusted)
    if document.get("version") != 1:
        raise Failed("not a version this program reads (1 or 2)")
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


# ---------------------------------------------------------------------------------------------- format 2

GENESIS = "0" * 64
MAX_INTEGER = 2**53 - 1
CARD_FLAGS = ("card_forged", "card_replay", "card_unverified")
TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MANUAL_REF = re.compile(r"manual#[1-9][0-9]*")
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
TOP = {"format", "version", "generated_at", "worker", "period", "cards", "sites", "gates", "manual", "voids", "days",
       "bank_key", "key", "sig"}
ENTRY = {"register", "version", "index", "prev", "at", "action", "site", "gate", "key_id", "public_key", "since",
         "bank_key", "sig"}
PUNCH_V1 = {"v", "site", "gate", "seq", "time", "mono_ms", "boot", "synced", "card", "tech", "reader", "dir", "roster",
            "prev", "key", "sig"}
PUNCH = {1: PUNCH_V1, 2: PUNCH_V1 | {"kind", "sun"}, 3: PUNCH_V1 | {"kind", "sun", "cprev"}}


def jcs(value: object) -> bytes:
    """RFC 8785 canonical bytes of a value without fractional numbers (docs/evidence-format.md section 2)."""
    return "".join(_jcs(value)).encode("utf-8")


def _jcs(value: object):
    if value is None or value is True or value is False:
        yield {None: "null", True: "true", False: "false"}[value]
    elif type(value) is int:
        if abs(value) > MAX_INTEGER:
            raise Failed(f"the integer {value} is beyond +-(2**53 - 1)")
        yield str(value)
    elif isinstance(value, str):
        yield '"' + "".join(ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " else c) for c in value) + '"'
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _jcs(item)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for index, name in enumerate(sorted(value, key=lambda n: n.encode("utf-16-be", "surrogatepass"))):
            if index:
                yield ","
            yield from _jcs(name)
            yield ":"
            yield from _jcs(value[name])
        yield "}"
    else:
        raise Failed(f"a number with a fraction or an exponent ({value!r}): a version 2 file holds integers only")


def digest(value: dict) -> str:
    return hashlib.sha256(jcs(value)).hexdigest()


def members(obj: object, required: set[str], where: str, optional: frozenset = frozenset()) -> dict:
    """An object with exactly these members (and maybe the optional ones)."""
    if not isinstance(obj, dict):
        raise Failed(f"{where} is not an object")
    extra, missing = set(obj) - required - optional, required - set(obj)
    if extra or missing:
        raise Failed(f"{where}: " + "; ".join(part for part in (
            f"member(s) no version 2 file has: {', '.join(sorted(repr(n[:40]) for n in extra))}" if extra else "",
            f"lacks {', '.join(sorted(missing))}" if missing else "") if part))
    return obj


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise Failed(f"{where} is not text")
    return value


def wire_time(value: object, where: str) -> str:
    if not isinstance(value, str) or TIME.fullmatch(value) is None:
        raise Failed(f"{where} is not a time YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        raise Failed(f"{where} {value!r} is not a real time") from None
    return value


def key_text(value: object, where: str) -> tuple[str, Ed25519PublicKey]:
    kid, key = public_key(text(value, where))
    written = PREFIX + base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")
    if written != value:
        raise Failed(f"{where} is not written as a public key is (ed25519: and the base64 of 32 bytes)")
    return kid, key


def lower_hex(value: object, length: int, where: str) -> str:
    if not isinstance(value, str) or len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise Failed(f"{where} is not {length} lower-case hex digits")
    return value


def local_date(moment: str, zone: ZoneInfo) -> date:
    """The local date of a wire time in the site's zone; beyond year 1 / 9999: before / after every date."""
    instant = datetime.fromisoformat(moment[:-1]).replace(tzinfo=UTC)
    try:
        return instant.astimezone(zone).date()
    except (OverflowError, ValueError):
        return date.min if instant.year < 5000 else date.max


def numbers(node: object) -> None:
    """A version 2 file holds integers only, each within +-(2**53 - 1)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            raise Failed(f"a number with a fraction or an exponent ({item!r}): a version 2 file holds integers only")
        if type(item) is int and abs(item) > MAX_INTEGER:
            raise Failed(f"the integer {item} is beyond +-(2**53 - 1)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def verify_v2(document: dict, trusted: dict[str, Ed25519PublicKey]) -> dict:
    numbers(document)
    kid, _ = key_text(document.get("bank_key"), "bank_key")
    if document.get("key") != kid:
        raise Failed("key is not the id of bank_key")
    if kid not in trusted:
        raise Failed(f"signed by key {kid}, which is not the bank key given")
    try:
        trusted[kid].verify(signature_bytes(document.get("sig")),
                            jcs({name: value for name, value in document.items() if name != "sig"}))
    except InvalidSignature:
        raise Failed("the bank's signature does not verify: the file was changed after the bank signed it") from None
    members(document, TOP, "the file")
    worker = members(document["worker"], {"worker", "name", "employer"}, "worker")
    if not isinstance(worker["worker"], str) or not isinstance(worker["name"], str) or \
            not isinstance(worker["employer"], str | None):
        raise Failed("worker: worker and name are not text, or employer is neither text nor null")
    period = members(document["period"], {"from", "to"}, "period")
    for name in ("from", "to"):
        if not isinstance(period[name], str) or DATE.fullmatch(period[name]) is None:
            raise Failed(f"period.{name} is not a date")
    first, last = date.fromisoformat(period["from"]), date.fromisoformat(period["to"])
    windows = []
    for index, card in enumerate(document["cards"]):
        members(card, {"uid", "valid_from", "valid_to"}, f"cards[{index}]")
        windows.append((text(card["uid"], f"cards[{index}].uid"),
                        *(None if card[n] is None else wire_time(card[n], f"cards[{index}].{n}")
                          for n in ("valid_from", "valid_to"))))

    def own(punch: dict) -> bool:
        return any(punch["card"] == uid and (start is None or start <= punch["time"]) and (end is None or punch["time"] < end)
                   for uid, start, end in windows)

    zones = {}
    for site, rules in document["sites"].items():
        members(rules, {"timezone", "max_shift_ms"}, f"sites[{site!r}]")
        if type(rules["max_shift_ms"]) is not int or rules["max_shift_ms"] <= 0:
            raise Failed(f"sites[{site!r}].max_shift_ms is not a positive integer")
        try:
            zones[site] = ZoneInfo(text(rules["timezone"], f"sites[{site!r}].timezone"))
        except (ValueError, KeyError, OSError):
            raise Failed(f"sites[{site!r}].timezone is not an IANA time zone") from None
    refs, punches, chains, cited, seen_gates = set(), 0, 0, [], set()
    for gate in document["gates"]:
        members(gate, {"site", "gate", "keys", "chains"}, "a gate")
        site, name = text(gate["site"], "gate.site"), text(gate["gate"], "gate.gate")
        where = f"{site}/{name}"
        if (site, name) in seen_gates or site not in zones:
            raise Failed(f"{where}: listed twice, or at a site the file has no rules for")
        seen_gates.add((site, name))
        keys = {}
        if not gate["keys"] or not gate["chains"]:
            raise Failed(f"{where}: no keys, or no chains")
        for entry in gate["keys"]:
            members(entry, ENTRY, f"{where}: a key's register entry")
            gate_kid, gate_key = key_text(entry["public_key"], f"{where}: public_key")
            if (entry["register"], entry["version"], entry["action"]) != ("site-gate-keys", 1, "add") or \
                    (entry["site"], entry["gate"]) != (site, name) or entry["key_id"] != gate_kid or gate_kid in keys:
                raise Failed(f"{where}: the register entry of key {str(entry['key_id'])[:16]} is not an 'add' of a key of "
                             "this gate, or is cited twice")
            if type(entry["index"]) is not int or entry["index"] < 1:
                raise Failed(f"{where}: the register entry's index is not 1 or more")
            lower_hex(entry["prev"], 64, f"{where}: entry prev")
            if wire_time(entry["since"], f"{where}: entry since") > wire_time(entry["at"], f"{where}: entry at"):
                raise Failed(f"{where}: the register entry of key {gate_kid} says it was added after it was written")
            bank = trusted.get(lower_hex(entry["bank_key"], 16, f"{where}: entry bank_key"))
            if bank is None:
                raise Failed(f"{where}: the register entry of key {gate_kid} is signed by bank key {entry['bank_key']}, "
                             "not the bank key given")
            try:
                bank.verify(signature_bytes(entry["sig"]), jcs({k: v for k, v in entry.items() if k != "sig"}))
            except InvalidSignature:
                raise Failed(f"{where}: the register entry of key {gate_kid} is not signed by the bank") from None
            keys[gate_kid] = gate_key
            cited.append(entry["index"])
        seqs = set()
        for chain in gate["chains"]:
            link = chain.get("link") if isinstance(chain, dict) else None
            members(chain, {"link", "punches", "received_at", "card_flags"} | ({"card", "end"} if link == "card" else set()),
                    f"{where}: a chain")
            rows = chain["punches"]
            if link not in ("card", "gate") or not isinstance(rows, list) or not rows or \
                    not len(rows) == len(chain["received_at"]) == len(chain["card_flags"]):
                raise Failed(f"{where}: a chain is not a card or gate chain of parallel, non-empty arrays")
            for index, flags in enumerate(chain["card_flags"]):
                wire_time(chain["received_at"][index], f"{where}: received_at")
                if not isinstance(flags, list) or flags != sorted(set(flags)) or not set(flags) <= set(CARD_FLAGS):
                    raise Failed(f"{where}: card_flags are not sorted card flags, each once")
            previous = None
            for punch in rows:
                version = punch.get("v") if isinstance(punch, dict) else None
                if type(version) is not int or version not in PUNCH:
                    raise Failed(f"{where}: a punch of no protocol version 1, 2 or 3")
                members(punch, PUNCH[version], f"{where}: a punch")
                label = f"{where} seq {punch['seq']}"
                if (punch["site"], punch["gate"]) != (site, name) or type(punch["seq"]) is not int or punch["seq"] < 1:
                    raise Failed(f"{label}: not a punch of this gate")
                if punch["seq"] in seqs:
                    raise Failed(f"{label}: in the file twice")
                seqs.add(punch["seq"])
                key = keys.get(punch["key"])
                if key is None:
                    raise Failed(f"{label}: signed by key {str(punch['key'])[:16]}, which the gate's keys do not cite")
                for field in ("prev",) + (("cprev",) if version == 3 else ()):
                    lower_hex(punch[field], 64, f"{label}: {field}")
                wire_time(punch["time"], f"{label}: time")
                body = {k: v for k, v in punch.items() if k != "sig"}
                try:
                    key.verify(signature_bytes(punch["sig"]), canonical(body))
                except InvalidSignature:
                    raise Failed(f"{label}: the gate's signature does not verify") from None
                if previous is not None:
                    if link == "gate" and (punch["seq"] != previous[0]["seq"] + 1 or punch["prev"] != previous[1]):
                        raise Failed(f"{label}: does not link to seq {previous[0]['seq']}")
                    if link == "card" and (version != 3 or punch["seq"] <= previous[0]["seq"] or punch["cprev"] != previous[1]):
                        raise Failed(f"{label}: cprev does not name seq {previous[0]['seq']} before it in the chain")
                previous = (punch, hashlib.sha256(canonical(body)).hexdigest())
                if own(punch):
                    refs.add((site, f"{name}#{punch['seq']}"))
                punches += 1
            zone = zones[site]
            if link == "card":
                if chain["end"] not in ("later", "newest") or any(p["card"] != chain["card"] for p in rows):
                    raise Failed(f"{where}: a card chain of other cards' punches, or with no end")
                head = rows[0]
                if not (local_date(head["time"], zone) < first or (head["v"] == 3 and head["cprev"] == GENESIS)):
                    raise Failed(f"{where} seq {head['seq']}: a card chain starts within the period, not at the card's "
                                 "first punch at the gate: a punch of the card before it could be missing")
                if chain["end"] == "later" and not local_date(rows[-1]["time"], zone) > last:
                    raise Failed(f"{where} seq {rows[-1]['seq']}: a card chain ends 'later' within the period: a later "
                                 "punch of the card could be missing")
            elif not own(rows[0]) or not own(rows[-1]):
                raise Failed(f"{where}: a segment of the gate's chain does not start and end with the worker's punches")
            chains += 1
    manual = set()
    for entry in document["manual"]:
        members(entry, {"ref", "site", "time", "direction", "by", "reason", "entered_at"}, "a manual entry",
                frozenset({"dispute"}))
        if not isinstance(entry["ref"], str) or MANUAL_REF.fullmatch(entry["ref"]) is None or entry["ref"] in \
                {ref for _, ref in manual} or entry["site"] not in zones or entry["direction"] not in ("in", "out"):
            raise Failed(f"manual entry {str(entry['ref'])[:40]!r}: not manual#N, listed twice, or at no site of the file")
        wire_time(entry["time"], "a manual entry's time")
        manual.add((entry["site"], entry["ref"]))
    voided = set()
    for void in document["voids"]:
        members(void, {"ref", "site", "void_at", "by", "reason"}, "a void", frozenset({"dispute"}))
        key = (void["site"], void["ref"])
        if key in voided or (key not in refs and key not in manual):
            raise Failed(f"void of {str(void['ref'])[:40]!r}: voided twice, or no punch of the worker or manual entry "
                         "of the file")
        voided.add(key)
    if not isinstance(document["days"], list) or not all(isinstance(d, dict) for d in document["days"]):
        raise Failed("days is not an array of days")
    return {"version": 2, "worker": worker, "period": period, "days": document["days"], "punches": punches,
            "chains": chains, "cited": sorted(cited), "bank_key": kid, "manual": document["manual"],
            "voids": document["voids"]}


def safe(text: object) -> str:
    """What the file says, made harmless for a terminal (control and direction characters escaped)."""
    return "".join(c if c.isprintable() and not 0x202A <= ord(c) <= 0x202E and not 0x2066 <= ord(c) <= 0x2069
                   else f"\\u{ord(c):04x}" for c in str(text))


def report(name: str, summary: dict) -> list[str]:
    worker = summary["worker"]
    if summary.get("version") == 2:
        head = (f"{name}: OK: signed by bank key {summary['bank_key']}; {summary['punches']} gate-signed punches in "
                f"{summary['chains']} chain(s), every chain unbroken, every gate key cited from the bank's register "
                f"(entries {', '.join(map(str, summary['cited'])) or 'none'}) (format 2)")
    else:
        head = f"{name}: OK: signed by bank key {summary['bank_key']}; {summary['punches']} gate-signed punches, " \
               "every chain unbroken"
    lines = [head,
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
    if summary.get("version") == 2:
        lines.append("not checked here: the days (the bank's, as listed; `collector verify` recomputes them) and the "
                     "gate keys against a copy of the register (`collector verify --register`)")
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
