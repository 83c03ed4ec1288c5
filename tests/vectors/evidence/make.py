#!/usr/bin/env python3
"""The evidence file test vectors (docs/evidence-format.md): files with their expected verdicts, for any
verifier to be tested against, written by this script and nothing else.

    PYTHONPATH=. python tests/vectors/evidence/make.py [FOLDER]

It writes FOLDER (this script's own folder by default): the files, ``manifest.json`` (each file's verdict,
a reason code and words, and for a file that verifies the SHA-256 of its canonical bytes, its evidence id
and days id), ``bank.pub`` (the bank key the files are checked against) and ``register.json`` (a copy of
the bank's register of gate keys, to check citations against). Everything is fixed: the keys come from
fixed seeds, every time is given, the database is a new SQLite file; running it again writes the same
bytes (tests/test_evidence_vectors.py checks that the committed files are what it writes).

The files that verify are built by the bank's own code from a real database: sites, gates, workers and
cards registered, punches made by the gate's own outbox (protocol 3; one gate of protocol 1, signed as
such gates signed) and ingested as a gate sends them, manual entries, voids and disputes entered, the
register of gate keys written, the file built and signed by ``collector.evidence.document.build_evidence``.
The files that must fail are copies edited by hand, each breaking one rule of the page (re-signed with
the bank's key where the edit must get past the bank's signature, so the rule itself is what fails).

``format1/ok-format1.json`` is a version 1 file written by the version 1 builder, kept as it was: version
1 files keep verifying with `collector verify`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence import format2, register, verify2
from collector.evidence.canonical import jcs
from collector.evidence.document import build_evidence, evidence_id
from collector.evidence.signer import document_bytes
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from collector.workers import disputes
from gate_agent.outbox import Outbox
from gate_agent.protocol import (
    GENESIS,
    GateTopics,
    Punch,
    encode_punches,
    format_time,
    key_id,
    public_key_text,
    sign_punch,
)

HERE = Path(__file__).resolve().parent
SHANGHAI, BERLIN = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")
#: When the bank wrote the files (an open shift's file: GENERATED_OPEN).
GENERATED = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
GENERATED_OPEN = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))


def key(name: str) -> Ed25519PrivateKey:
    """A key from a fixed seed: the same key at every run."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"site-gate-evidence test vectors: "
                                                               + name.encode()).digest())


BANK = key("bank")
OTHER_BANK = key("another bank")


def local(text: str, tz: ZoneInfo = SHANGHAI) -> datetime:
    """``YYYY-MM-DD HH:MM[:SS[.fff]]`` in ``tz``, as an aware UTC moment."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


class Clock:
    """The store's clock and the gates' clocks: set to each moment before what happens at it."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


class GateClock:
    """What a gate's outbox reads: its wall clock (synchronised), its monotonic clock, its boot id."""

    boot_id = "3f0c2a1e-7b4d-4c11-9a2e-5d6f7a8b9c0d"

    def __init__(self):
        self.moment = datetime(2026, 9, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def monotonic_ms(self) -> int:
        return int((self.moment - datetime(2026, 9, 1, tzinfo=UTC)).total_seconds() * 1000) + 5000

    def synchronised(self) -> bool:
        return True


class Tap:
    """A tap scheduled on the timeline; ``punch`` once it happened."""

    punch: Punch | None = None


class Gate:
    """A gate: protocol 3 punches from its own outbox, or (``legacy``) protocol 1 punches signed as a gate
    before the upgrade signed them; each delivered to the bank two seconds after it was made."""

    def __init__(self, bank: Bank, site: str, gate: str, *, legacy: bool = False):
        self.bank, self.site, self.gate, self.legacy = bank, site, gate, legacy
        self.key = key(f"gate {site}/{gate}")
        self.clock = GateClock()
        self.outbox = None if legacy else Outbox(bank.folder / f"gate-{gate}", site, gate, key=self.key)
        self.seq, self.prev = 0, GENESIS
        bank.store.add_gate(site, gate, public_key_text(self.key.public_key()))

    def tap(self, card: str, direction: str, when: datetime) -> Tap:
        """A tap at ``when``, put on the bank's timeline."""
        tap = Tap()
        self.bank.later(when, lambda: setattr(tap, "punch", self._tap(card, direction, when)))
        return tap

    def _tap(self, card: str, direction: str, when: datetime) -> Punch:
        self.clock.moment = when
        if self.legacy:
            self.seq += 1
            punch = sign_punch(Punch(v=1, site=self.site, gate=self.gate, seq=self.seq, time=format_time(when),
                                     mono_ms=self.clock.monotonic_ms(), boot=self.clock.boot_id, synced=True,
                                     card=card, tech="iso14443a", reader="usb:072f:2200", dir=direction,
                                     roster="known", prev=self.prev, key="", sig=""), self.key)
            self.prev = punch.digest()
        else:
            punch = self.outbox.append(card=card, tech="iso14443a", reader="usb:072f:2200", direction=direction,
                                       roster="known", clock=self.clock)
        received = format_time(when + timedelta(seconds=2))
        self.bank.ingestor.ingest([Incoming(GateTopics(self.site, self.gate).punch, encode_punches([punch]), received)])
        return punch


class Bank:
    """The bank's database, its sites, gates and workers, and the history the vectors are made of: a
    timeline of taps and of what the bank's operators did, played in the order it happened."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.clock = Clock(datetime(2026, 9, 1, tzinfo=UTC))
        self.store = Store(folder / "bank.sqlite3", clock=self.clock)
        self.ingestor = Ingestor(self.store)
        self.timeline: list[tuple[datetime, int, Callable[[], object]]] = []
        store = self.store
        store.add_site("S1", timezone="Asia/Shanghai", name="一号工地", max_shift_hours=16.0)
        store.add_site("S2", timezone="Europe/Berlin", name="Baustelle Nord", max_shift_hours=12.0)
        self.north, self.south = Gate(self, "S1", "north"), Gate(self, "S1", "south")
        self.turnstile = Gate(self, "S1", "turnstile")
        self.west = Gate(self, "S1", "west")
        self.east = Gate(self, "S1", "east", legacy=True)
        self.tor = Gate(self, "S2", "tor")
        people = [("W1", "张伟", "建安劳务", ["04A1B2C3D4E5F6"], ["S1"]),
                  ("W2", "Anna Müller", "Bau GmbH", ["04B2000000000B"], ["S2"]),
                  ("W3", "王芳", "建安劳务", ["04C3000000000C"], ["S1"]),
                  ("W4", "李娜", "建安劳务", ["04D4000000000D"], ["S1"]),
                  ("W5", "赵强", "建安劳务", ["04E5000000000E"], ["S1"]),
                  ("W6", "陈静", "建安劳务", ["04F6000000000F"], ["S1"]),
                  ("W7", "刘洋", None, [], ["S1"]),
                  ("W8", "周敏", None, [], ["S1"]),
                  ("W9", "孙丽", "建安劳务", ["04A9000000000A"], ["S1"]),
                  ("W10", "吴刚", "建安劳务", ["04AA000000000010"], ["S1"]),
                  ("W11", "黄磊", "建安劳务", ["04AB000000000011"], ["S1"]),
                  ("W12", "郑伟", "建安劳务", ["04AC000000000012"], ["S1"]),
                  ("W14", "Jonas Weber", "Bau GmbH", ["04AE000000000014"], ["S2"])]
        for worker, name, employer, cards, sites in people:
            store.add_worker(worker, name=name, employer=employer, cards=cards, sites=sites)
        # W3 holds a second card, an NTAG 424 DNA: a punch naming its UID without its SUN message is a copy.
        store.assign_card("04C3000000424D", "W3", kind="ntag424")
        # W7's first card is lost on 15 October and replaced; it goes to W8 on 20 October.
        store.assign_card("04A7000000000A", "W7", valid_from="2026-10-01T00:00:00.000Z")
        store.revoke_card("04A7000000000A", at="2026-10-15T00:00:00.000Z")
        store.assign_card("04A7000000000B", "W7", valid_from="2026-10-15T00:00:00.000Z")
        store.assign_card("04A7000000000A", "W8", valid_from="2026-10-20T00:00:00.000Z")
        self.at("2026-09-01T00:10:00.000Z")
        register.sync(store, BANK)

    def at(self, text: str) -> None:
        self.clock.moment = datetime.fromisoformat(text.replace("Z", "+00:00"))

    def later(self, when: datetime | str, action: Callable[[], object]) -> None:
        """``action`` at ``when`` (the store's clock then says so)."""
        moment = when if isinstance(when, datetime) else datetime.fromisoformat(when.replace("Z", "+00:00"))
        self.timeline.append((moment, len(self.timeline), action))

    def play(self) -> None:
        for moment, _, action in sorted(self.timeline, key=lambda item: item[:2]):
            self.clock.moment = moment
            action()
        self.timeline = []

    def day(self, card: str, gate_in: Gate, start: str, gate_out: Gate, end: str, tz: ZoneInfo = SHANGHAI) -> None:
        gate_in.tap(card, "in", local(start, tz))
        gate_out.tap(card, "out", local(end, tz))

    def manual(self, worker: str, when: datetime, direction: str, reason: str) -> int:
        return self.store.add_manual_punch(site="S1", worker=worker, time=format_time(when), direction=direction,
                                           reason=reason, by="ops-li")

    def punch_id(self, tap: Tap) -> int:
        return self.store.gate_punch_rows(tap.punch.site, tap.punch.gate, tap.punch.seq, tap.punch.seq)[0]["id"]

    def build(self, worker: str, first: date, last: date, now: datetime = GENERATED) -> dict:
        self.clock.moment = now
        return build_evidence(self.store, worker, first, last, key=BANK, now=now)


def history(bank: Bank) -> None:
    """Every worker's taps, and the corrections and disputes of the bank's operators."""
    n, s = bank.north, bank.south
    # W1: a day before the period (the card chains' start), ordinary days, a night shift, times with
    # milliseconds, and a day after the period (the chains' end).
    w1 = "04A1B2C3D4E5F6"
    bank.day(w1, n, "2026-09-28 08:00", s, "2026-09-28 17:00")
    bank.day(w1, n, "2026-10-08 08:00", s, "2026-10-08 17:30")
    bank.day(w1, n, "2026-10-09 22:00", s, "2026-10-10 06:00")
    bank.day(w1, n, "2026-10-12 07:58:30.250", s, "2026-10-12 16:02:10.750")
    bank.day(w1, n, "2026-11-03 08:00", s, "2026-11-03 17:00")
    # W2 at Berlin: a night shift across the end of summer time (25 October, 03:00 CEST becomes 02:00 CET).
    w2, t = "04B2000000000B", bank.tor
    bank.day(w2, t, "2026-10-24 22:00", t, "2026-10-25 06:00", BERLIN)
    bank.day(w2, t, "2026-10-25 14:00", t, "2026-10-25 22:00", BERLIN)
    bank.day(w2, t, "2026-10-26 08:00", t, "2026-10-26 12:00", BERLIN)
    # W14 at Berlin: 02:30 twice on 25 October, an hour apart.
    t.tap("04AE000000000014", "in", datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    t.tap("04AE000000000014", "out", datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    # W3: a repeated IN inside the maximum shift, an IN 1 ms past it; a repeated OUT inside the maximum after
    # the closing OUT, an OUT 1 ms past it; a copy of their NTAG 424 card's UID.
    w3 = "04C3000000000C"
    n.tap(w3, "in", local("2026-10-05 08:00"))
    n.tap(w3, "in", local("2026-10-05 09:00"))
    s.tap(w3, "out", local("2026-10-05 17:00"))
    n.tap(w3, "in", local("2026-10-06 08:00"))
    n.tap(w3, "in", local("2026-10-07 00:00:00.001"))
    s.tap(w3, "out", local("2026-10-07 08:00"))
    bank.day(w3, n, "2026-10-13 08:00", s, "2026-10-13 17:00")
    s.tap(w3, "out", local("2026-10-13 17:30"))
    bank.day(w3, n, "2026-10-14 08:00", s, "2026-10-14 12:00")
    s.tap(w3, "out", local("2026-10-15 04:00:00.001"))
    bank.day(w3, n, "2026-10-20 08:00", s, "2026-10-20 17:00")
    n.tap("04C3000000424D", "in", local("2026-10-20 12:00"))
    # W4 at the turnstile (toggle): in and out; an IN left open past the maximum, then a toggle that opens anew.
    for moment in ("2026-10-05 08:00", "2026-10-05 17:00", "2026-10-06 07:00", "2026-10-07 07:00",
                   "2026-10-07 15:00"):
        bank.turnstile.tap("04D4000000000D", "toggle", local(moment))
    # W5: a shift of exactly the maximum (16 h), and one of the maximum and 1 ms.
    bank.day("04E5000000000E", n, "2026-10-05 06:00", s, "2026-10-05 22:00")
    bank.day("04E5000000000E", n, "2026-10-07 06:00", s, "2026-10-07 22:00:00.001")
    # W6: manual entries, a void of a gate punch, a void of a manual entry, two disputes answered.
    w6, ids = "04F6000000000F", {}
    bank.day(w6, n, "2026-10-05 08:00", s, "2026-10-05 17:00")
    for at, direction in (("2026-10-05 18:00", "in"), ("2026-10-05 20:00", "out")):
        bank.later("2026-10-06T01:00:00.000Z", lambda at=at, direction=direction: bank.manual(
            "W6", local(at), direction, "badge reader at the material gate down"))
    n.tap(w6, "in", local("2026-10-06 08:00"))
    mistake = s.tap(w6, "out", local("2026-10-06 09:00"))
    s.tap(w6, "out", local("2026-10-06 17:00"))
    bank.later("2026-10-07T01:00:00.000Z", lambda: bank.store.void_punch(
        bank.punch_id(mistake), reason="tapped OUT on the way to the canteen", by="ops-wang"))
    bank.later("2026-10-07T02:00:00.000Z", lambda: ids.update(twice=bank.manual(
        "W6", local("2026-10-07 08:00"), "in", "gate did not read the card")))
    bank.day(w6, n, "2026-10-07 08:00", s, "2026-10-07 17:00")
    bank.later("2026-10-08T01:00:00.000Z", lambda: bank.store.void_punch(
        ids["twice"], reason="entered twice: the gate read the card after all", by="ops-wang"))
    n.tap(w6, "in", local("2026-10-08 08:00"))
    n.tap(w6, "in", local("2026-10-09 08:00"))
    double = n.tap(w6, "in", local("2026-10-09 08:05"))
    s.tap(w6, "out", local("2026-10-09 17:00"))

    def file_disputes() -> None:
        for day, note in (("2026-10-08", "我17点下班，闸机没读卡"), ("2026-10-09", "早上刷了两次卡")):
            ids[day] = disputes.file(bank.store, "W6", site="S1", day=day, note=note, today=date(2026, 10, 10))["ref"]

    bank.later("2026-10-10T01:00:00.000Z", file_disputes)
    bank.later("2026-10-10T02:00:00.000Z", lambda: ids.update(answer=bank.manual(
        "W6", local("2026-10-08 17:00"), "out", "dispute: the gate did not read the card")))
    bank.later("2026-10-10T02:05:00.000Z", lambda: disputes.accept(bank.store, ids["2026-10-08"], by="ops-li",
                                                                    punch_id=ids["answer"]))
    bank.later("2026-10-10T02:06:00.000Z", lambda: disputes.accept(
        bank.store, ids["2026-10-09"], by="ops-li", void_id=bank.punch_id(double),
        reason="the second tap is the same arrival"))
    # W7: card A until 15 October, then card B; card A is W8's from 20 October.
    bank.day("04A7000000000A", n, "2026-10-05 08:00", s, "2026-10-05 17:00")
    bank.day("04A7000000000B", n, "2026-10-16 08:00", s, "2026-10-16 17:00")
    bank.day("04A7000000000A", n, "2026-10-21 08:00", s, "2026-10-21 17:00")
    n.tap("04A7000000000A", "in", local("2026-11-02 08:00"))
    # W9: a day, then a shift still open when the file is written.
    bank.day("04A9000000000A", n, "2026-11-19 08:00", s, "2026-11-19 17:00")
    n.tap("04A9000000000A", "in", local("2026-11-20 08:00"))
    # W10 and W11 at the east gate, of protocol 1: W11's punches are links of W10's segment.
    e, w10, w11 = bank.east, "04AA000000000010", "04AB000000000011"
    for card, direction, at in ((w10, "in", "2026-10-05 08:00"), (w11, "in", "2026-10-05 08:10"),
                                (w11, "out", "2026-10-05 17:00"), (w10, "out", "2026-10-05 17:30"),
                                (w10, "in", "2026-10-06 08:00"), (w11, "in", "2026-10-06 08:05"),
                                (w10, "out", "2026-10-06 16:00")):
        e.tap(card, direction, local(at))
    # W12 at the west gate, whose key is revoked later, as of 5 October 10:00 (once the file is written).
    bank.day("04AC000000000012", bank.west, "2026-10-05 08:00", bank.west, "2026-10-05 17:00")
    bank.play()


# ---------------------------------------------------------------------------------------------- the files


class Vectors:
    """The folder being written, and the manifest's entries."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.entries: list[dict] = []

    def ok(self, name: str, document: dict, reason: str, *, data: bytes | None = None) -> dict:
        """A file that verifies, as the bank serves it (or as ``data``)."""
        data = data if data is not None else document_bytes(document).encode() + b"\n"
        (self.folder / name).write_bytes(data)
        self.entries.append({"file": name, "version": 2, "verdict": "OK", "verdict_without_register": "OK",
                             "reason": {"code": "ok", "text": reason},
                             "sha256": hashlib.sha256(jcs(document)).hexdigest(),
                             "evidence_id": format2.evidence_id(document), "days_id": format2.days_id(document["days"])})
        return document

    def fail(self, name: str, code: str, text: str, check: str, *, document: dict | None = None,
             data: bytes | None = None) -> None:
        """A file that must fail: ``check`` names what catches it (docs of manifest.json: ``checks``)."""
        if data is None:
            data = document_bytes(document).encode() + b"\n"
        (self.folder / name).write_bytes(data)
        self.entries.append({"file": name, "version": 2, "verdict": "FAIL",
                             "verdict_without_register": "OK" if check == "register" else "FAIL",
                             "reason": {"code": code, "text": text}, "check": check})


#: What catches a file that must fail (manifest.json "checks"): tools/verify_evidence.py catches every kind
#: but "days" and "register".
CHECKS = {
    "reading": "reading the bytes strictly (section 1)",
    "shape": "the members and their types (sections 1, 3 and 4)",
    "signature": "a signature: the bank's over the file, a register entry's, a gate's over a punch (sections 2, 3, 4.1)",
    "chain": "the links, start and end of a chain (section 4.2)",
    "entries": "manual entries and voids (section 4.4)",
    "days": "the days recomputed from the events (section 5)",
    "register": "a copy of the register of gate keys (section 4.1): OK without one",
}


def resign(document: dict) -> dict:
    return format2.sign(document, BANK)


def chain_of(document: dict, gate: str, index: int = 0) -> dict:
    return next(g for g in document["gates"] if g["gate"] == gate)["chains"][index]


def drop(found: dict, index: int) -> None:
    """A punch taken out of a chain with its receipt and card flags."""
    for name in ("punches", "received_at", "card_flags"):
        del found[name][index]


def edited(document: dict, change: Callable[[dict], object], *, sign: bool = True) -> dict:
    document = copy.deepcopy(document)
    change(document)
    return resign(document) if sign else document


def regate(punch: dict, gate_key: Ed25519PrivateKey, **changes) -> dict:
    """A punch with ``changes``, signed again by its gate's own key (so only the rule broken fails)."""
    data = {name: value for name, value in punch.items()}
    data.update(changes)
    return sign_punch(Punch(**{**data, "sig": ""}), gate_key).to_dict()


def restated(document: dict) -> dict:
    document = copy.deepcopy(document)
    document["days"] = list(verify2._Checked(document, None, None).days().values())
    return document


def remade_with(document: dict, gate: str, gate_key: Ed25519PrivateKey, index: int, earlier: timedelta) -> dict:
    """What a bank that makes up a gate key writes: ``gate``'s punches re-signed with ``gate_key`` (each
    ``earlier``, the card links made again), cited from a register entry it signs now at ``index``, the
    days restated."""
    document = copy.deepcopy(document)
    found = next(g for g in document["gates"] if g["gate"] == gate)
    for each in found["chains"]:
        previous = None
        punches = []
        for raw in each["punches"]:
            moment = datetime.fromisoformat(raw["time"].replace("Z", "+00:00")) - earlier
            changes = {"time": format_time(moment), "key": key_id(gate_key.public_key())}
            if previous is not None:
                changes["cprev"] = previous.digest()
            signed = Punch(**regate(raw, gate_key, **changes))
            punches.append(signed)
            previous = signed
        each["punches"] = [p.to_dict() for p in punches]
    entry = found["keys"][0]
    body = {k: v for k, v in entry.items() if k not in ("sig", "bank_key")}
    body.update(index=index, key_id=key_id(gate_key.public_key()), public_key=public_key_text(gate_key.public_key()))
    found["keys"] = [register.sign_entry(body, BANK)]
    return resign(restated(document))


def write(folder: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="evidence-vectors-"))
    try:
        bank = Bank(work)
        history(bank)
        _write(folder, bank)
        bank.store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(folder: Path, bank: Bank) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    v = Vectors(folder)
    gates = {g.gate: g for g in (bank.north, bank.south, bank.turnstile, bank.west, bank.east, bank.tor)}

    basic = v.ok("ok-overnight.json", bank.build("W1", *OCTOBER),
                 "ordinary days, a night shift, times with milliseconds; the card chains start before the period "
                 "and end after it")
    v.ok("ok-dst-berlin.json", bank.build("W2", date(2026, 10, 20), date(2026, 10, 31)),
         "Europe/Berlin: a night shift across the end of summer time (9 h elapsed, offsets +02:00 and +01:00); "
         "the card's first punches at the gate (cprev zeros), the newest the bank holds")
    v.ok("ok-dst-ambiguous-hour.json", bank.build("W14", date(2026, 10, 25), date(2026, 10, 25)),
         "Europe/Berlin: IN at 02:30+02:00 and OUT at 02:30+01:00, one hour apart")
    repeats = v.ok("ok-repeats.json", bank.build("W3", *OCTOBER),
                   "a repeated IN inside the maximum shift and an IN 1 ms past it (missing_out); a repeated OUT inside "
                   "the maximum after the closing OUT and an OUT 1 ms past it (missing_in); a card copy (card_forged)")
    v.ok("ok-toggles.json", bank.build("W4", *OCTOBER),
         "a toggle gate: toggles pair as IN and OUT; a toggle after the open IN ran past the maximum opens a new "
         "shift (the IN before is missing_out)")
    v.ok("ok-max-shift.json", bank.build("W5", *OCTOBER),
         "a shift of exactly max_shift_ms is complete; one of max_shift_ms + 1 is missing_out and missing_in")
    manual = v.ok("ok-manual-voids-disputes.json", bank.build("W6", *OCTOBER),
                  "manual entries, a void of a gate punch and of a manual entry, corrections answering two "
                  "disputes (a manual entry and a void)")
    replaced = v.ok("ok-card-replaced.json", bank.build("W7", *OCTOBER),
                    "a card lost on 15 October and replaced (two card windows, a chain per card); the lost card, "
                    "W8's from 20 October, brings W8's punches of it as links until one after the period")
    v.ok("ok-open-shift.json", bank.build("W9", date(2026, 11, 1), date(2026, 11, 30), GENERATED_OPEN),
         "a shift still open at generated_at")
    open_shift = json.loads((folder / "ok-open-shift.json").read_text())
    legacy = v.ok("ok-legacy-gate.json", bank.build("W10", *OCTOBER),
                  "a gate of protocol 1: a segment of the gate's chain, W11's punches between W10's as links")
    flagged = edited(basic, lambda d: d["days"][0]["flags"].extend(["not_assigned"]))
    v.ok("ok-bank-flag.json", flagged, "a day flag on the bank's word alone (not_assigned): left out of the "
                                       "comparison")
    v.ok("ok-reformatted.json", basic, "ok-overnight.json written another way: UTF-8 text, members in another "
                                       "order, other whitespace (the same canonical bytes)",
         data=_reformatted(basic))

    # W12's key revoked, as of 10:00 on 5 October (before its OUT arrived), after the file was written.
    with bank.store.transaction():
        bank.store.execute("UPDATE gate_keys SET revoked_at = '2026-10-05T02:00:00.000Z' WHERE site = 'S1' "
                           "AND gate = 'west'")
    bank.at("2026-11-20T03:00:00.000Z")
    register.sync(bank.store, BANK)
    v.fail("fail-register-revoked.json", "register-revoked", "the copy of the register revokes the key as of "
           "before a punch it signed was received", "register",
           document=bank.build("W12", *OCTOBER))
    mirror = register.export_bytes(bank.store)
    (folder / "register.json").write_bytes(mirror)
    entries = len(json.loads(mirror)["entries"])

    # Reading the bytes (section 1).
    text = document_bytes(basic)
    v.fail("fail-bom.json", "bom", "a byte order mark before the document", "reading",
           data=b"\xef\xbb\xbf" + text.encode())
    v.fail("fail-duplicate-name.json", "duplicate-name", "the worker's name twice in one object (a reader keeping "
           "the first reads 王五)", "reading",
           data=text.replace('"name": ', '"name": "\\u738b\\u4e94", "name": ', 1).encode())
    v.fail("fail-float.json", "float", "max_shift_ms written 57600000.0 (its value unchanged)", "reading",
           data=text.replace('"max_shift_ms": 57600000', '"max_shift_ms": 57600000.0', 1).encode())
    v.fail("fail-exponent.json", "exponent", "max_shift_ms written 5.76e7 (its value unchanged)", "reading",
           data=text.replace('"max_shift_ms": 57600000', '"max_shift_ms": 5.76e7', 1).encode())
    v.fail("fail-big-integer.json", "big-integer", "an integer beyond 2^53 - 1", "reading",
           data=text.replace('"max_shift_ms": 57600000', '"max_shift_ms": 9007199254740993', 1).encode())
    v.fail("fail-nan.json", "nan", "NaN for a number", "reading",
           data=text.replace('"max_shift_ms": 57600000', '"max_shift_ms": NaN', 1).encode())
    v.fail("fail-lone-surrogate.json", "lone-surrogate", "a \\ud800 escape with no low surrogate after it", "reading",
           data=text.replace('"reason": "', '"reason": "\\ud800', 1).encode() if '"reason": "' in text else
           text.replace('"employer": "', '"employer": "\\ud800', 1).encode())
    v.fail("fail-trailing-data.json", "trailing-data", "a second JSON value after the document", "reading",
           data=text.encode() + b"\n{}\n")
    v.fail("fail-not-utf8.json", "not-utf8", "a byte that is not UTF-8 in the employer", "reading",
           data=text.encode().replace(b'"employer": "', b'"employer": "\xff', 1))

    # Signatures (sections 2, 3, 4.1, 4.2).
    v.fail("fail-bank-signature.json", "bank-signature", "a day's minutes changed after the bank signed the file",
           "signature", document=edited(basic, lambda d: d["days"][0].update(worked_minutes=600), sign=False))
    other = copy.deepcopy(basic)
    v.fail("fail-wrong-bank-key.json", "wrong-bank-key", "signed (and bank_key given) by a key that is not the "
           "bank's", "signature", document=format2.sign(other, OTHER_BANK))
    v.fail("fail-key-not-bank-key-id.json", "key-id", "key is not the key id of bank_key", "signature",
           document=edited(basic, lambda d: d.update(key="0123456789abcdef"), sign=False))
    v.fail("fail-upper-case-bank-signature.json", "upper-case-hex", "the bank's signature in upper-case hex (the same "
           "bytes)", "signature", document={**basic, "sig": basic["sig"].upper()})
    v.fail("fail-upper-case-gate-signature.json", "upper-case-hex", "a punch's signature in upper-case hex (the same "
           "bytes), the file re-signed", "shape",
           document=edited(basic, lambda d: chain_of(d, "north")["punches"][1].update(
               sig=chain_of(d, "north")["punches"][1]["sig"].upper())))
    v.fail("fail-gate-signature.json", "gate-signature", "a punch's time moved an hour earlier, the file re-signed",
           "signature", document=edited(basic, lambda d: chain_of(d, "north")["punches"][1].update(
               time="2026-10-07T23:00:00.000Z")))
    made_up = key("made-up gate key")
    v.fail("fail-key-not-cited.json", "key-not-cited", "the chain's last punch signed by a key no register entry "
           "of the file cites", "signature", document=edited(basic, lambda d: chain_of(d, "north")["punches"].__setitem__(
               -1, regate(chain_of(d, "north")["punches"][-1], made_up, key=key_id(made_up.public_key())))))
    v.fail("fail-no-keys.json", "missing-member", "a gate citing no key at all", "shape",
           document=edited(legacy, lambda d: d["gates"][0].update(keys=[])))
    v.fail("fail-citation-untrusted.json", "citation-untrusted", "the register entry signed by a key that is not the "
           "bank's", "signature", document=edited(basic, lambda d: d["gates"][0].update(keys=[register.sign_entry(
               {k: val for k, val in d["gates"][0]["keys"][0].items() if k not in ("sig", "bank_key")},
               OTHER_BANK)])))
    v.fail("fail-citation-other-gate.json", "citation-other-gate", "the north gate's keys cite the south gate's "
           "entry", "signature", document=edited(basic, lambda d: d["gates"][0].update(keys=d["gates"][1]["keys"])))

    # The shape (sections 1, 3, 4).
    v.fail("fail-unknown-member.json", "unknown-member", "a member no version 2 file has, at the top", "shape",
           document=edited(basic, lambda d: d.update(note="paid in cash")))
    v.fail("fail-unknown-member-chain.json", "unknown-member", "a member no chain has", "shape",
           document=edited(basic, lambda d: chain_of(d, "north").update(gap=False)))
    v.fail("fail-missing-member.json", "missing-member", "a chain without its end", "shape",
           document=edited(basic, lambda d: chain_of(d, "north").pop("end")))
    v.fail("fail-missing-voids.json", "missing-member", "the file without voids", "shape",
           document=edited(basic, lambda d: d.pop("voids")))
    v.fail("fail-wrong-type.json", "wrong-type", "the employer a number", "shape",
           document=edited(basic, lambda d: d["worker"].update(employer=5)))
    v.fail("fail-card-flags-unsorted.json", "card-flags", "a punch's card flags not sorted", "shape",
           document=edited(basic, lambda d: chain_of(d, "north")["card_flags"].__setitem__(
               1, ["card_unverified", "card_forged"])))

    # Chains (section 4.2).
    v.fail("fail-punch-removed.json", "punch-removed", "a punch taken out of the middle of a card chain",
           "chain", document=edited(basic, lambda d: drop(chain_of(d, "north"), 2)))
    north_key = gates["north"].key
    v.fail("fail-broken-cprev.json", "broken-cprev", "a punch's cprev changed (and signed again by the gate's key)",
           "chain", document=edited(basic, lambda d: chain_of(d, "north")["punches"].__setitem__(
               2, regate(chain_of(d, "north")["punches"][2], north_key, cprev="1" * 64))))
    v.fail("fail-start-in-period.json", "start-in-period", "the chain's first punch (before the period) taken out: "
           "it now starts within the period, not at the card's first punch", "chain",
           document=edited(basic, lambda d: drop(chain_of(d, "north"), 0)))
    v.fail("fail-later-in-period.json", "later-in-period", "the chain's last punch (after the period) taken out; "
           "end still 'later'", "chain", document=edited(basic, lambda d: drop(chain_of(d, "north"), -1)))
    v.fail("fail-punch-twice.json", "punch-twice", "a punch in the chain twice", "chain",
           document=edited(basic, lambda d: [a.insert(1, copy.deepcopy(a[1])) for a in (
               chain_of(d, "north")["punches"], chain_of(d, "north")["received_at"], chain_of(d, "north")["card_flags"])]))
    v.fail("fail-other-card-in-chain.json", "other-card", "a punch of the replacement card put in the lost "
           "card's chain", "chain", document=edited(replaced, lambda d: [
               chain_of(d, "north", 0)[name].append(chain_of(d, "north", 1)[name][0])
               for name in ("punches", "received_at", "card_flags")]))
    v.fail("fail-gate-segment-gap.json", "gate-segment-gap", "another worker's punch taken out of a segment of the "
           "gate's chain", "chain", document=edited(legacy, lambda d: drop(d["gates"][0]["chains"][0], 1)))
    v.fail("fail-gate-segment-end.json", "gate-segment-end", "a segment of the gate's chain whose last punch is "
           "another worker's", "chain", document=edited(legacy, lambda d: drop(d["gates"][0]["chains"][0], -1)))

    # Manual entries and voids (section 4.4).
    v.fail("fail-void-unknown.json", "void-unknown", "a void of a punch the file does not hold", "entries",
           document=edited(manual, lambda d: d["voids"].append(
               {"ref": "north#9999", "site": "S1", "void_at": "2026-10-11T00:00:00.000Z", "by": "ops", "reason": "x"})))
    v.fail("fail-void-twice.json", "void-twice", "one punch voided twice", "entries",
           document=edited(manual, lambda d: d["voids"].append(copy.deepcopy(d["voids"][0]))))
    v.fail("fail-manual-site.json", "manual-site", "a manual entry at a site the file has no rules for", "entries",
           document=edited(manual, lambda d: d["manual"][0].update(site="S9")))
    v.fail("fail-manual-ref.json", "manual-ref", "a manual entry's ref with a leading zero (manual#07)", "shape",
           document=edited(manual, lambda d: d["manual"][0].update(ref="manual#0" + d["manual"][0]["ref"][7:])))

    # The register of gate keys (section 4.1): OK on the bank's word, FAIL against a copy.
    north_index = basic["gates"][0]["keys"][0]["index"]
    v.fail("fail-register-made-up-key.json", "register-made-up-key", "the bank re-signed the north gate's punches "
           "an hour earlier with a key it made up, cited from an entry it signed under an index its register gave "
           "another key", "register",
           document=remade_with(basic, "north", made_up, north_index, timedelta(hours=1)))
    v.fail("fail-register-beyond-copy.json", "register-beyond-copy", "the same, cited from an entry past the end of "
           "the copy of the register", "register",
           document=remade_with(basic, "north", made_up, entries + 1, timedelta(hours=1)))

    # The days (section 5).
    v.fail("fail-day-edited.json", "day-edited", "a day's worked minutes changed", "days",
           document=edited(basic, lambda d: d["days"][0].update(worked_minutes=d["days"][0]["worked_minutes"] + 60)))
    v.fail("fail-day-ms-edited.json", "day-edited", "a shift's ms one more", "days",
           document=edited(basic, lambda d: d["days"][0]["shifts"][0].update(ms=d["days"][0]["shifts"][0]["ms"] + 1)))
    v.fail("fail-day-missing.json", "day-missing", "a day the punches give taken out", "days",
           document=edited(basic, lambda d: d["days"].pop(1)))
    v.fail("fail-day-extra.json", "day-extra", "a day no punch gives added", "days",
           document=edited(basic, lambda d: d["days"].append({**copy.deepcopy(d["days"][-1]), "date": "2026-10-31"})))
    v.fail("fail-day-outside-period.json", "day-extra", "a day after the period (the punches give it) stated", "days",
           document=edited(basic, lambda d: d["days"].append({**copy.deepcopy(d["days"][-1]), "date": "2026-11-03"})))
    v.fail("fail-day-twice.json", "day-twice", "a day stated twice", "days",
           document=edited(basic, lambda d: d["days"].insert(1, copy.deepcopy(d["days"][0]))))
    v.fail("fail-day-order.json", "day-order", "two days in reverse order", "days",
           document=edited(basic, lambda d: d["days"].insert(0, d["days"].pop(1))))
    v.fail("fail-day-flag.json", "day-flag", "a flag the punches do not give added (manual)", "days",
           document=edited(basic, lambda d: d["days"][0]["flags"].insert(0, "manual")))
    v.fail("fail-day-anomaly.json", "day-anomaly", "a repeated IN dropped from a day's anomalies", "days",
           document=edited(repeats, lambda d: d["days"][0].update(anomalies=[])))
    v.fail("fail-day-name.json", "day-name", "a day naming another worker", "days",
           document=edited(basic, lambda d: d["days"][0].update(name="王五")))
    v.fail("fail-day-member.json", "day-member", "a member no day has (bonus_minutes)", "days",
           document=edited(basic, lambda d: d["days"][0].update(bonus_minutes=60)))
    v.fail("fail-day-voided.json", "day-voided", "a void left out of a day's voided", "days",
           document=edited(manual, lambda d: next(day for day in d["days"] if day["voided"]).update(voided=[])))
    v.fail("fail-open-at-generated-at.json", "open-at-generated-at", "generated_at moved a day later: the open "
           "shift is then missing_out", "days",
           document=edited(open_shift, lambda d: d.update(generated_at="2026-11-21T04:00:00.000Z")))
    v.fail("fail-card-window.json", "card-window", "the card window cut so that the night shift's OUT is not the "
           "worker's", "days", document=edited(basic, lambda d: d.update(cards=[
               {"uid": "04A1B2C3D4E5F6", "valid_from": None, "valid_to": "2026-10-09T21:00:00.000Z"},
               {"uid": "04A1B2C3D4E5F6", "valid_from": "2026-10-09T23:00:00.000Z", "valid_to": None}])))

    format1 = HERE / "format1" / "ok-format1.json"
    if folder != HERE:
        (folder / "format1").mkdir(exist_ok=True)
        shutil.copyfile(format1, folder / "format1" / "ok-format1.json")
    document1 = json.loads(format1.read_bytes())
    v.entries.append({"file": "format1/ok-format1.json", "version": 1, "verdict": "OK",
                      "verdict_without_register": "OK",
                      "reason": {"code": "ok", "text": "a version 1 file, written by the version 1 builder: "
                                                       "`collector verify` reads it still"},
                      "evidence_id": evidence_id(document1)})
    (folder / "bank.pub").write_text(f"{public_key_text(BANK.public_key())}  # {key_id(BANK.public_key())}\n")
    manifest = {"format": "site-gate-evidence-vectors", "version": 1,
                "spec": "docs/evidence-format.md", "generator": "tests/vectors/evidence/make.py",
                "bank_key": public_key_text(BANK.public_key()), "register": "register.json",
                "checks": CHECKS,
                "how": "check each file against bank_key and the register copy: its verdict is 'verdict'; "
                       "without the register copy it is 'verdict_without_register'. For a file that verifies, "
                       "sha256 is of the canonical bytes (RFC 8785) of the whole document.",
                "vectors": v.entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _reformatted(document: dict) -> bytes:
    """The same document as UTF-8 text, members in reverse order, other whitespace."""
    def reverse(value):
        if isinstance(value, dict):
            return {name: reverse(value[name]) for name in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(item) for item in value]
        return value
    return (json.dumps(reverse(document), ensure_ascii=False, indent="\t", separators=(" ,", " : ")) + "\r\n").encode()


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
