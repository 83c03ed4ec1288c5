"""A gate punch as the store holds it: the fields queries use in columns, the rest of what the gate signed
packed into one small binary value.

The gate signs ``canonical_bytes`` of its punch, and every field of the punch is a string, an integer or a
boolean under strict rules (``gate_agent.protocol.Punch.from_dict``), so the exact bytes signed and the
digest that chains the next punch are rebuilt from the fields whenever they are asked for; they need not be
stored. Storing them beside the fields cost about 600 bytes a punch (the JSON body, its digest and the
hex ``prev``), more than everything else in the row: at 20 million punches a day that is most of the
database. Packed, a punch's proof (its version, technology, roster verdict, clock state, boot id,
monotonic time, reader, ``prev``, key id, signature, card kind and SUN message) is about 150 bytes.

The columns are the single record of site, gate, seq, time, card and direction: they are part of what is
verified, so a row edited in the database no longer verifies (before, the body could say one thing and
the columns another).

Layout (format 1, big-endian)::

    B format  B v  B synced  B tech  B roster  B kind  Q mono_ms
    boot      B 1 + 16 bytes (a lower-case UUID, as Linux writes boot_id) | B 0 + H length + UTF-8
    reader    H length + UTF-8
    prev      32 bytes   key  8 bytes   sig  64 bytes
    sun       B length (0 or 24) + the PICC data (16) and MAC (8)

A gate's boot id, reader and key id stay the same for every punch between two boots (a day's thousands):
format 2 holds them once, in a row of ``gate_boots`` (collector.store.gate_boots), and each punch names
that row, about 40 bytes less a punch (about 105 instead of 150). Format 1 values stay as they are and
read as before::

    B format  B v-1 | synced << 1 | tech << 2 | roster << 4 | kind << 6   I gate_boots id
    mono_ms   unsigned LEB128 (1 to 9 bytes, the shortest)
    prev      32 bytes   sig  64 bytes
    sun       the PICC data (16) and MAC (8) for an NTAG 424 card (only it has one), else nothing

A version 3 punch also signs ``cprev``, the digest of its gate's previous punch of the same card. Format 3
is format 2 for version 3 punches: the version is the format's, and the head's low bit says whether
``cprev`` follows (a card's first punch at a gate names 64 zeros, which take no bytes)::

    B format  B has cprev | synced << 1 | tech << 2 | roster << 4 | kind << 6   I gate_boots id
    mono_ms   unsigned LEB128 (1 to 9 bytes, the shortest)
    prev      32 bytes   sig  64 bytes
    cprev     32 bytes if the low bit is set, else nothing (64 zeros)
    sun       the PICC data (16) and MAC (8) for an NTAG 424 card, else nothing

Format 1 holds a version 3 punch too (where no gate boot can be named): its ``cprev``, 32 bytes, follows
the SUN message's field.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import uuid
from collections.abc import Mapping
from typing import NamedTuple

from gate_agent.protocol import CARD_KINDS, GENESIS, ROSTER_VERDICTS, TECHNOLOGIES, ProtocolError, Punch

FORMAT = 1
#: The packed form that names its gate boot (``Boot``) instead of holding it.
FORMAT_BOOTS = 2
#: Format 2 for a version 3 punch, with its ``cprev``.
FORMAT_CARD_LINK = 3
#: The punch version each boot-naming format holds (format 2: versions 1 and 2, told by a bit).
_BOOT_FORMATS = {1: FORMAT_BOOTS, 2: FORMAT_BOOTS, 3: FORMAT_CARD_LINK}
_HEAD = struct.Struct(">BBBBBBQ")
_HEAD_BOOTS = struct.Struct(">BBI")
_LENGTH = struct.Struct(">H")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class PackError(ValueError):
    """A stored value that is not a packed punch (a damaged or edited database)."""


class Boot(NamedTuple):
    """A row of ``gate_boots``: what every punch of one gate between two boots signs alike."""

    site: str
    gate: str
    boot: str
    reader: str
    key: str


def pack(punch: Punch, boot_ref: int | None = None) -> bytes:
    """The packed form of ``punch``'s fields that have no column: format 2 naming the ``gate_boots`` row
    ``boot_ref`` (which must hold the punch's site, gate, boot, reader and key), format 1 without one.
    ``unpack`` gives the same punch back, field for field, for every punch ``Punch.from_dict`` accepts
    (tests/test_packed.py proves it on generated punches); a value outside those rules raises ValueError
    rather than packing something else. A version 3 punch naming a gate boot is packed in format 3. A punch
    outside what formats 2 and 3 assume (a version above 3, a SUN message on a card that is no NTAG 424, a
    row id past 4 bytes) is packed in format 1, which holds any."""
    if (boot_ref is not None and 0 <= boot_ref < 2**32 and punch.v in _BOOT_FORMATS
            and bool(punch.sun) == (punch.kind == "ntag424")):
        return _pack_boots(punch, boot_ref)
    parts = [_HEAD.pack(FORMAT, punch.v, int(punch.synced), TECHNOLOGIES.index(punch.tech),
                        ROSTER_VERDICTS.index(punch.roster), CARD_KINDS.index(punch.kind), punch.mono_ms)]
    if _UUID.fullmatch(punch.boot):
        parts += [b"\x01", uuid.UUID(punch.boot).bytes]
    else:
        parts += [b"\x00", _text(punch.boot)]
    parts.append(_text(punch.reader))
    parts += [_hex(punch.prev, 32), _hex(punch.key, 8), _hex(punch.sig, 64)]
    if punch.sun:
        picc, mac = punch.sun.split(":")
        parts += [b"\x18", _hex(picc, 16), _hex(mac, 8)]
    else:
        parts.append(b"\x00")
    if punch.v >= 3:
        parts.append(_hex(punch.cprev, 32))
    return b"".join(parts)


def _pack_boots(punch: Punch, boot_ref: int) -> bytes:
    form = _BOOT_FORMATS[punch.v]
    low = punch.v - 1 if form == FORMAT_BOOTS else int(punch.cprev != GENESIS)
    bits = (low | int(punch.synced) << 1 | TECHNOLOGIES.index(punch.tech) << 2
            | ROSTER_VERDICTS.index(punch.roster) << 4 | CARD_KINDS.index(punch.kind) << 6)
    parts = [_HEAD_BOOTS.pack(form, bits, boot_ref), _varint(punch.mono_ms), _hex(punch.prev, 32),
             _hex(punch.sig, 64)]
    if form == FORMAT_CARD_LINK and low:
        parts.append(_hex(punch.cprev, 32))
    if punch.sun:
        picc, mac = punch.sun.split(":")
        parts += [_hex(picc, 16), _hex(mac, 8)]
    return b"".join(parts)


def boot_ref(signed: bytes | None) -> int | None:
    """The ``gate_boots`` row a packed value names (formats 2 and 3), None for one that names none."""
    if signed is None or len(signed) < _HEAD_BOOTS.size or signed[0] not in (FORMAT_BOOTS, FORMAT_CARD_LINK):
        return None
    return _HEAD_BOOTS.unpack_from(signed, 0)[2]


def unpack(signed: bytes, *, site: str, gate: str, seq: int, time: str, card: str, direction: str,
           boots: Mapping[int, Boot] | None = None) -> Punch:
    """The punch the gate signed, from its columns and its packed value (and for format 2, the gate boot
    it names, looked up in ``boots``); PackError if the value is not one."""
    try:
        return _unpack(bytes(signed), site, gate, seq, time, card, direction, boots or {})
    except (struct.error, IndexError, UnicodeDecodeError, TypeError, ValueError) as error:
        raise PackError(f"{site}/{gate} seq {seq}: the stored proof is damaged ({error})") from None


def _unpack(data: bytes, site: str, gate: str, seq: int, time: str, card: str, direction: str,
            boots: Mapping[int, Boot]) -> Punch:
    if data[:1] in (bytes((FORMAT_BOOTS,)), bytes((FORMAT_CARD_LINK,))):
        return _unpack_boots(data, site, gate, seq, time, card, direction, boots)
    form, v, synced, tech, roster, kind, mono_ms = _HEAD.unpack_from(data, 0)
    if form != FORMAT:
        raise ValueError(f"packed format {form}, this program reads {FORMAT}, {FORMAT_BOOTS} and {FORMAT_CARD_LINK}")
    at = _HEAD.size
    if data[at] == 1:
        boot, at = str(uuid.UUID(bytes=data[at + 1:at + 17])), at + 17
    elif data[at] == 0:
        boot, at = _read_text(data, at + 1)
    else:
        raise ValueError("unknown boot id form")
    reader, at = _read_text(data, at)
    prev, key, sig = data[at:at + 32].hex(), data[at + 32:at + 40].hex(), data[at + 40:at + 104].hex()
    at += 104
    length = data[at]
    if length == 24:
        sun = f"{data[at + 1:at + 17].hex()}:{data[at + 17:at + 25].hex()}"
    elif length == 0:
        sun = ""
    else:
        raise ValueError("unknown SUN message length")
    at += 1 + length
    cprev = ""
    if v >= 3:
        if at + 32 > len(data):
            raise ValueError("cprev runs past the end")
        cprev, at = data[at:at + 32].hex(), at + 32
    if at != len(data):
        raise ValueError(f"{len(data) - at} byte(s) left over")
    if synced not in (0, 1):
        raise ValueError("synced is neither 0 nor 1")
    return Punch(v=v, site=site, gate=gate, seq=seq, time=time, mono_ms=mono_ms, boot=boot, synced=bool(synced),
                 card=card, tech=TECHNOLOGIES[tech], reader=reader, dir=direction, roster=ROSTER_VERDICTS[roster],
                 prev=prev, key=key, sig=sig, kind=CARD_KINDS[kind], sun=sun, cprev=cprev)


def _unpack_boots(data: bytes, site: str, gate: str, seq: int, time: str, card: str, direction: str,
                  boots: Mapping[int, Boot]) -> Punch:
    form, bits, ref = _HEAD_BOOTS.unpack_from(data, 0)
    found = boots.get(ref)
    if found is None:
        raise ValueError(f"gate boot {ref} is not held")
    if (found.site, found.gate) != (site, gate):
        raise ValueError(f"gate boot {ref} is one of {found.site}/{found.gate}")
    mono_ms, at = _read_varint(data, _HEAD_BOOTS.size)
    prev, sig = data[at:at + 32].hex(), data[at + 32:at + 96].hex()
    at += 96
    if form == FORMAT_CARD_LINK:
        version, cprev = 3, GENESIS
        if bits & 1:
            if at + 32 > len(data):
                raise ValueError("cprev runs past the end")
            cprev, at = data[at:at + 32].hex(), at + 32
            if cprev == GENESIS:  # pack leaves a GENESIS cprev out: one packed form for each punch
                raise ValueError("cprev of 64 zeros is held, not left out")
    else:
        version, cprev = (bits & 1) + 1, ""
    kind = CARD_KINDS[bits >> 6]
    rest, wanted = len(data) - at, (24 if kind == "ntag424" else 0)
    if rest != wanted:
        raise ValueError(f"{rest} byte(s) after the signature of a {kind} card's punch, not {wanted}")
    sun = f"{data[at:at + 16].hex()}:{data[at + 16:].hex()}" if wanted else ""
    return Punch(v=version, site=site, gate=gate, seq=seq, time=time, mono_ms=mono_ms, boot=found.boot,
                 synced=bool(bits >> 1 & 1), card=card, tech=TECHNOLOGIES[bits >> 2 & 3], reader=found.reader,
                 dir=direction, roster=ROSTER_VERDICTS[bits >> 4 & 3], prev=prev, key=found.key, sig=sig,
                 kind=kind, sun=sun, cprev=cprev)


def _varint(value: int) -> bytes:
    if not 0 <= value < 2**63:
        raise ValueError(f"{value} is outside 0 .. 2**63 - 1")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 63:
            raise ValueError("mono_ms runs past 9 bytes")
    if byte == 0 and shift:  # a longer form than the shortest: not what pack writes
        raise ValueError("mono_ms is not in its shortest form")
    if value >= 2**63:
        raise ValueError("mono_ms is out of range")
    return value, at


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _LENGTH.pack(len(data)) + data


def _read_text(data: bytes, at: int) -> tuple[str, int]:
    (length,) = _LENGTH.unpack_from(data, at)
    end = at + 2 + length
    if end > len(data):
        raise ValueError("text runs past the end")
    return data[at + 2:end].decode("utf-8"), end


def _hex(value: str, size: int) -> bytes:
    raw = bytes.fromhex(value)
    if len(raw) != size or raw.hex() != value:
        raise ValueError(f"{value[:16]!r} is not {size} bytes of lower-case hex")
    return raw


# ---------------------------------------------------------------------------------------------- rows

#: What a punches row held in columns before the proof was packed, and a reader still finds in it: worked
#: out from the packed value the first time one of them is asked for, since most reads never look.
DERIVED = frozenset(("body", "digest", "prev", "key_id", "boot", "mono_ms", "reader", "tech", "roster", "synced",
                     "cprev"))
#: The columns a punch is rebuilt from (besides ``signed``, and ``body`` where a row keeps one).
COLUMNS = ("site", "gate", "seq", "time", "card", "direction")


class PunchRow(dict):
    """A row of ``punches`` as the store's readers know it: its columns, and on first use what the gate
    signed (``body``, its ``digest``, ``prev``, ``key_id``, a version 3 punch's ``cprev``...), rebuilt from
    the packed value. A manual punch has none of them (None), nor has a punch of version 1 or 2 a ``cprev``.
    A row whose packed value is damaged gives None for them too, and says why under ``damaged``, so that a
    check can name it instead of a read crashing on it. ``boots`` holds the gate boot a format 2 or 3 value
    names (``gate_boots.GateBoots.rows`` looks it up with the row)."""

    __slots__ = ("boots",)

    def __init__(self, row: dict, boots: Mapping[int, Boot] | None = None):
        super().__init__(row)
        self.boots = boots

    def __missing__(self, key):
        if key in DERIVED:
            self._derive()
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def get(self, key, default=None):
        if key in DERIVED and not dict.__contains__(self, key):
            self._derive()
        return dict.get(self, key, default)

    def punch(self) -> Punch | None:
        """The punch as the gate signed it, None for a manual punch; PackError if damaged."""
        body = dict.get(self, "body")
        if body is not None:
            return Punch.from_dict(json.loads(bytes(body)))
        signed = dict.get(self, "signed")
        if signed is None:
            return None
        return unpack(signed, **{name: self[name] for name in COLUMNS}, boots=self.boots)

    def _derive(self) -> None:
        values = dict.fromkeys(DERIVED)
        try:
            punch = self.punch()
        except (PackError, ProtocolError, ValueError) as error:
            punch = None
            self["damaged"] = str(error)
        if punch is not None:
            body = dict.get(self, "body")
            values.update(body=bytes(body) if body is not None else punch.to_json(), digest=digest_of(punch),
                          prev=punch.prev, key_id=punch.key, boot=punch.boot, mono_ms=punch.mono_ms,
                          reader=punch.reader, tech=punch.tech, roster=punch.roster, synced=int(punch.synced),
                          cprev=punch.cprev if punch.v >= 3 else None)
        for key, value in values.items():
            dict.__setitem__(self, key, value)


def digest_of(punch: Punch) -> str:
    """What the gate's next punch holds as ``prev``: SHA-256 of the canonical bytes."""
    return hashlib.sha256(punch.canonical_bytes()).hexdigest()


def signed_fields(row: dict) -> dict:
    """The punch's fields as its gate signed them (what ``json.loads`` of its body gives), without
    encoding and decoding JSON for a punch held packed: evidence files carry thousands of them."""
    if isinstance(row, PunchRow) and dict.get(row, "body") is None:
        punch = row.punch()
        if punch is not None:
            return punch.to_dict()
    return json.loads(row["body"])


def punch_row(row: dict, boots: Mapping[int, Boot] | None = None) -> dict:
    """A punches row as readers get it: a PunchRow where the proof is packed (``boots``: the gate boots
    its value may name); a row read from a database not upgraded yet (a read-only reader) holds its
    columns and body as they are."""
    if "signed" not in row:
        if isinstance(row.get("body"), memoryview):
            row["body"] = bytes(row["body"])
        return row
    held = PunchRow(row, boots)
    if dict.get(held, "body") is None:
        dict.pop(held, "body", None)
    return held
