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
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import uuid

from gate_agent.protocol import CARD_KINDS, ROSTER_VERDICTS, TECHNOLOGIES, ProtocolError, Punch

FORMAT = 1
_HEAD = struct.Struct(">BBBBBBQ")
_LENGTH = struct.Struct(">H")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class PackError(ValueError):
    """A stored value that is not a packed punch (a damaged or edited database)."""


def pack(punch: Punch) -> bytes:
    """The packed form of ``punch``'s fields that have no column. ``unpack`` gives the same punch back,
    field for field, for every punch ``Punch.from_dict`` accepts (tests/test_packed.py proves it on
    generated punches); a value outside those rules raises ValueError rather than packing something else."""
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
    return b"".join(parts)


def unpack(signed: bytes, *, site: str, gate: str, seq: int, time: str, card: str, direction: str) -> Punch:
    """The punch the gate signed, from its columns and its packed value; PackError if the value is not one."""
    try:
        return _unpack(bytes(signed), site, gate, seq, time, card, direction)
    except (struct.error, IndexError, UnicodeDecodeError, TypeError, ValueError) as error:
        raise PackError(f"{site}/{gate} seq {seq}: the stored proof is damaged ({error})") from None


def _unpack(data: bytes, site: str, gate: str, seq: int, time: str, card: str, direction: str) -> Punch:
    form, v, synced, tech, roster, kind, mono_ms = _HEAD.unpack_from(data, 0)
    if form != FORMAT:
        raise ValueError(f"packed format {form}, this program reads {FORMAT}")
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
    if at + 1 + length != len(data):
        raise ValueError(f"{len(data) - at - 1 - length} byte(s) left over")
    if synced not in (0, 1):
        raise ValueError("synced is neither 0 nor 1")
    return Punch(v=v, site=site, gate=gate, seq=seq, time=time, mono_ms=mono_ms, boot=boot, synced=bool(synced),
                 card=card, tech=TECHNOLOGIES[tech], reader=reader, dir=direction, roster=ROSTER_VERDICTS[roster],
                 prev=prev, key=key, sig=sig, kind=CARD_KINDS[kind], sun=sun)


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
DERIVED = frozenset(("body", "digest", "prev", "key_id", "boot", "mono_ms", "reader", "tech", "roster", "synced"))
#: The columns a punch is rebuilt from (besides ``signed``, and ``body`` where a row keeps one).
COLUMNS = ("site", "gate", "seq", "time", "card", "direction")


class PunchRow(dict):
    """A row of ``punches`` as the store's readers know it: its columns, and on first use what the gate
    signed (``body``, its ``digest``, ``prev``, ``key_id``...), rebuilt from the packed value. A manual
    punch has none of them (None). A row whose packed value is damaged gives None for them too, and says
    why under ``damaged``, so that a check can name it instead of a read crashing on it."""

    __slots__ = ()

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
        return unpack(signed, **{name: self[name] for name in COLUMNS})

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
                          reader=punch.reader, tech=punch.tech, roster=punch.roster, synced=int(punch.synced))
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


def punch_row(row: dict) -> dict:
    """A punches row as readers get it: a PunchRow where the proof is packed; a row read from a database
    not upgraded yet (a read-only reader) holds its columns and body as they are."""
    if "signed" not in row:
        if isinstance(row.get("body"), memoryview):
            row["body"] = bytes(row["body"])
        return row
    held = PunchRow(row)
    if dict.get(held, "body") is None:
        dict.pop(held, "body", None)
    return held
