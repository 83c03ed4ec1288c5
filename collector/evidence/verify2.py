"""The check of a version 2 evidence file: everything docs/evidence-format.md says a verifier MUST check, in
the page's order, naming the first thing that does not hold; and, when all holds, what it proved and what
it took on the bank's word (the page's section 6).

The days are recomputed with the attendance rules the bank computes every report with
(``attendance.rules.daily_records``), from the events the file's own punches and manual entries give: the
file can only pass if its days are what the rules give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from cryptography.exceptions import InvalidSignature

from collector.attendance.attribution import Person
from collector.attendance.reports import record_dict
from collector.attendance.rules import Event, Rules, daily_records
from collector.errors import InputError
from collector.evidence import register
from collector.evidence.canonical import jcs
from collector.evidence.format2 import (
    BANK_FLAGS,
    DAY_FIELDS,
    GENESIS,
    check_shape,
    day_of,
    days_id,
    evidence_id,
    local_date,
    text_order,
)
from collector.evidence.reading import EvidenceError, check_numbers
from collector.localtime import implausible, zone
from gate_agent.errors import GateInputError
from gate_agent.protocol import BankKeys, ProtocolError, Punch, key_id, parse_public_key, parse_time


def verify(document: object, trusted: BankKeys, *, mirror: register.Mirror | None = None) -> dict:
    """Check a version 2 document against the bank keys the caller got from the bank (never the one the
    file carries) and, given one, a copy of the register of gate keys; a summary, or EvidenceError."""
    check_numbers(document)
    if not isinstance(document, dict):
        raise EvidenceError("the file is not a JSON object")
    bank = _bank_signature(document, trusted)
    check_shape(document)
    checked = _Checked(document, trusted, mirror)
    recomputed = checked.days()
    _compare(_stated_days(document), recomputed)
    return checked.summary(bank, document, recomputed)


def check_unsigned(document: dict) -> None:
    """What the builder checks of a file before the bank signs it: its shape, the links and bounds of its
    chains and its days recomputed (not the signatures: the punches were checked when they arrived, and
    the register's entries when they were written)."""
    check_numbers(document)
    check_shape(document, signed=False)
    checked = _Checked(document, None, None)
    _compare(_stated_days(document), checked.days())


def _bank_signature(document: dict, trusted: BankKeys) -> str:
    """``key`` is the id of ``bank_key``, ``sig`` verifies with it over the RFC 8785 bytes of the rest, and
    the key is one the verifier trusts: before anything else is read."""
    text, kid, sig = document.get("bank_key"), document.get("key"), document.get("sig")
    if not all(isinstance(value, str) for value in (text, kid, sig)):
        raise EvidenceError("the file is not signed by the bank (bank_key, key and sig are not all there, as text)")
    try:
        public = parse_public_key(text)
    except GateInputError as error:
        raise EvidenceError(f"bank_key: {error}") from None
    if key_id(public) != kid:
        raise EvidenceError(f"key {kid[:20]!r} is not the id of bank_key ({key_id(public)})")
    if len(sig) != 128 or any(c not in "0123456789abcdef" for c in sig):
        raise EvidenceError("sig is not 128 lower-case hex digits")
    try:
        public.verify(bytes.fromhex(sig), jcs({name: value for name, value in document.items() if name != "sig"}))
    except InvalidSignature:
        raise EvidenceError("the bank's signature does not verify (changed after the bank signed it)") from None
    if kid not in trusted:
        raise EvidenceError(f"signed by key {kid}, which is not a bank key you trust "
                            f"({', '.join(sorted(trusted)) or 'none given'})")
    return kid


@dataclass
class _Chain:
    """What a checked chain says, for the report."""

    site: str
    gate: str
    link: str
    card: str | None
    end: str | None
    first_seq: int
    last_seq: int
    punches: int
    own: int
    start: str


@dataclass
class _Key:
    site: str
    gate: str
    key_id: str
    index: int
    digest: str | None
    mirrored: bool
    notes: tuple[str, ...] = ()


@dataclass
class _Checked:
    """The file's header, gates, chains, manual entries and voids, each checked, as attendance events."""

    document: dict
    trusted: BankKeys | None  # None: signatures are not checked (the builder's own check)
    mirror: register.Mirror | None
    events: dict[str, list[Event]] = field(default_factory=dict)
    chains: list[_Chain] = field(default_factory=list)
    keys: list[_Key] = field(default_factory=list)
    card_flagged: int = 0

    def __post_init__(self) -> None:
        document = self.document
        self.worker = document["worker"]["worker"]
        self.person = Person(self.worker, document["worker"]["name"], document["worker"]["employer"])
        self.first = date.fromisoformat(document["period"]["from"])
        self.last = date.fromisoformat(document["period"]["to"])
        self.generated = parse_time(document["generated_at"])
        self.windows = [(c["uid"], c["valid_from"], c["valid_to"]) for c in document["cards"]]
        self.rules: dict[str, Rules] = {}
        for site, rules in document["sites"].items():
            try:
                tz = zone(rules["timezone"])
            except InputError:
                raise EvidenceError(f"sites[{site!r}]: timezone {rules['timezone'][:40]!r} is not an IANA time zone") from None
            self.rules[site] = Rules(tz, timedelta(milliseconds=rules["max_shift_ms"]))
            self.events[site] = []
        self.voided = self._voids()
        self.own_refs: set[tuple[str, str]] = set()  # (site, GATE#SEQ) of every punch of the worker
        self.total = 0
        seen = set()
        for index, gate in enumerate(document["gates"]):
            ident = (gate["site"], gate["gate"])
            if ident in seen:
                raise EvidenceError(f"gates[{index}]: gate {ident[0]}/{ident[1]} is listed twice")
            seen.add(ident)
            self._gate(gate, f"gate {ident[0]}/{ident[1]}")
        self._manual()
        for site, ref in self.voided:
            if (site, ref) not in self.own_refs and (site, ref) not in self.manual_refs:
                raise EvidenceError(f"void of {ref} at {site}: no punch of the worker and no manual entry in the file "
                                    "has that reference")

    # ------------------------------------------------------------------ card windows, voids

    def holds(self, card: str, moment: str) -> bool:
        """Whether the worker held ``card`` at ``moment`` by a window of ``cards`` (times compare as text)."""
        return any(uid == card and (start is None or start <= moment) and (end is None or moment < end)
                   for uid, start, end in self.windows)

    def _voids(self) -> dict[tuple[str, str], dict]:
        voided = {}
        for index, void in enumerate(self.document["voids"]):
            key = (void["site"], void["ref"])
            if key in voided:
                raise EvidenceError(f"voids[{index}]: {void['ref']} at {void['site']} is voided twice")
            if void["site"] not in self.rules:
                raise EvidenceError(f"voids[{index}]: site {void['site']!r} is not one of the file's sites")
            voided[key] = void
        return voided

    # ------------------------------------------------------------------ gates

    def _gate(self, gate: dict, name: str) -> None:
        site = gate["site"]
        if site not in self.rules:
            raise EvidenceError(f"{name}: site {site!r} is not one of the file's sites")
        keys: dict[str, object] = {}
        entries: dict[str, dict] = {}
        for index, entry in enumerate(gate["keys"]):
            # The entry's own form and the bank's signature first: then its key signs punches.
            if self.trusted is not None:
                check = register.check_citation(entry, self.trusted)
                if not check.ok:
                    raise EvidenceError(f"{name}: keys[{index}]: {check.problem}")
            if (entry["site"], entry["gate"]) != (site, gate["gate"]):
                raise EvidenceError(f"{name}: keys[{index}] cites a key of {entry['site']}/{entry['gate']}")
            if entry["key_id"] in keys:
                raise EvidenceError(f"{name}: key {entry['key_id']} is cited twice")
            keys[entry["key_id"]] = parse_public_key(entry["public_key"])
            entries[entry["key_id"]] = entry
        received: dict[str, list[str]] = {kid: [] for kid in keys}
        seqs: set[int] = set()
        for index, chain in enumerate(gate["chains"]):
            self._chain(site, gate["gate"], chain, f"{name} chain #{index + 1}", keys, received, seqs)
        for kid, entry in entries.items():
            if self.trusted is None:
                continue
            # Revocations are judged from the entry's own ``since`` on: a punch received before it is no
            # question the page asks of a citation (docs/evidence-format.md section 4.1), and a revocation
            # is always after its key's addition.
            times = [moment for moment in received[kid] if moment >= entry["since"]]
            check = register.check_citation(entry, self.trusted, mirror=self.mirror, received_at=times,
                                            gate_key=(site, gate["gate"], entry["public_key"]))
            if not check.ok:
                raise EvidenceError(f"{name}: key {kid}: {check.problem}")
            self.keys.append(_Key(site, gate["gate"], kid, entry["index"], check.digest, check.mirrored, check.notes))

    def _chain(self, site: str, gate: str, chain: dict, name: str, keys: dict, received: dict[str, list[str]],
               seqs: set[int]) -> None:
        rules = self.rules[site]
        if self.trusted is None and chain["link"] == "gate":
            self._segment_unchecked(site, gate, chain, name, keys, seqs)
            return
        punches: list[Punch] = []
        for index, raw in enumerate(chain["punches"]):
            try:
                punch = Punch.from_dict(raw)
            except ProtocolError as error:
                raise EvidenceError(f"{name} punch #{index + 1}: {error.detail}") from None
            label = f"{name}: {gate} seq {punch.seq}"
            if (punch.site, punch.gate) != (site, gate):
                raise EvidenceError(f"{label}: a punch of {punch.site}/{punch.gate}")
            key = keys.get(punch.key)
            if key is None:
                raise EvidenceError(f"{label}: signed by key {punch.key}, which the gate's keys do not cite")
            try:
                if self.trusted is not None:
                    key.verify(bytes.fromhex(punch.sig), punch.canonical_bytes())
            except InvalidSignature:
                raise EvidenceError(f"{label}: the gate's signature does not verify") from None
            if punch.seq in seqs:
                raise EvidenceError(f"{label}: the punch is in the file twice")
            seqs.add(punch.seq)
            received[punch.key].append(chain["received_at"][index])
            punches.append(punch)
        own = [self.holds(p.card, p.time) for p in punches]
        if chain["link"] == "card":
            start = self._card_links(chain, punches, rules, name)
        else:
            start = self._gate_links(punches, own, name)
        for index, punch in enumerate(punches):
            self.total += 1
            if not own[index]:
                continue
            self._event(site, gate, punch, chain["received_at"][index], chain["card_flags"][index])
        self.chains.append(_Chain(site, gate, chain["link"], chain.get("card"), chain.get("end"), punches[0].seq,
                                  punches[-1].seq, len(punches), sum(own), start))

    def _segment_unchecked(self, site: str, gate: str, chain: dict, name: str, keys: dict, seqs: set[int]) -> None:
        """The builder's own check of a segment of a gate's chain: the worker's punches as events, its bounds
        and seqs; not the other cards' punches one by one (tens of thousands on a busy gate), whose links
        the bank checked as they arrived."""
        raws = chain["punches"]
        numbers = [raw["seq"] for raw in raws]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or seqs & set(numbers):
            raise EvidenceError(f"{name}: not consecutive seqs, or a punch in the file twice")
        seqs.update(numbers)
        own = [index for index, raw in enumerate(raws) if self.holds(raw["card"], raw["time"])]
        if not own or own[0] != 0 or own[-1] != len(raws) - 1:
            raise EvidenceError(f"{name}: a segment of the gate's chain that does not start and end with the "
                                "worker's punches")
        for index in own:
            punch = Punch.from_dict(raws[index])
            if punch.key not in keys:
                raise EvidenceError(f"{name}: {gate} seq {punch.seq}: signed by key {punch.key}, which the gate's "
                                    "keys do not cite")
            self._event(site, gate, punch, chain["received_at"][index], chain["card_flags"][index])
        self.total += len(raws)
        self.chains.append(_Chain(site, gate, "gate", None, None, numbers[0], numbers[-1], len(raws), len(own),
                                  "a segment of the gate's chain"))

    def _card_links(self, chain: dict, punches: list[Punch], rules: Rules, name: str) -> str:
        """One card's punches, consecutive in its own chain at the gate; a start before the period (or the
        card's first punch there) and an end after it (or the bank's word that it held none later)."""
        card = chain["card"]
        for index, punch in enumerate(punches):
            label = f"{name}: {punch.gate} seq {punch.seq}"
            if punch.card != card:
                raise EvidenceError(f"{label}: a punch of card {punch.card}, not the chain's card {card}")
            if index == 0:
                continue
            previous = punches[index - 1]
            if punch.v < 3:
                raise EvidenceError(f"{label}: protocol version {punch.v} names no previous punch of its card")
            if punch.seq <= previous.seq:
                raise EvidenceError(f"{label}: comes after seq {previous.seq} in the chain")
            if punch.cprev != previous.digest():
                raise EvidenceError(f"{label}: cprev does not name seq {previous.seq} before it (a punch of the card "
                                    "is missing, or the chain was broken)")
        first, last = punches[0], punches[-1]
        if local_date(parse_time(first.time), rules.tz) < self.first:
            start = "before the period"
        elif first.v >= 3 and first.cprev == GENESIS:
            start = "the card's first punch at the gate"
        else:
            raise EvidenceError(f"{name}: starts at {first.gate} seq {first.seq}, within the period and not the card's "
                                "first punch at the gate: a punch of the card before it could be missing")
        if chain["end"] == "later" and not local_date(parse_time(last.time), rules.tz) > self.last:
            raise EvidenceError(f"{name}: ends 'later' at {last.gate} seq {last.seq}, whose local date is not after "
                                "the period: a later punch of the card could be missing")
        return start

    def _gate_links(self, punches: list[Punch], own: list[bool], name: str) -> str:
        """Consecutive punches of the gate's own chain, the first and the last being the worker's."""
        for previous, punch in zip(punches, punches[1:], strict=False):
            if punch.seq != previous.seq + 1:
                raise EvidenceError(f"{name}: {punch.gate} seq {punch.seq} does not follow seq {previous.seq}")
            if punch.prev != previous.digest():
                raise EvidenceError(f"{name}: {punch.gate} seq {punch.seq} does not link to seq {previous.seq}")
        if not own[0] or not own[-1]:
            end = punches[0] if not own[0] else punches[-1]
            raise EvidenceError(f"{name}: {end.gate} seq {end.seq} at its end is not the worker's punch (the card "
                                "windows do not hold it)")
        return "a segment of the gate's chain"

    def _event(self, site: str, gate: str, punch: Punch, received_at: str, card_flags: list[str]) -> None:
        ref = f"{gate}#{punch.seq}"
        self.own_refs.add((site, ref))
        flags = set(card_flags)
        if card_flags:
            self.card_flagged += 1
        if not punch.synced:
            flags.add("clock_unsynced")
        if implausible(punch.time, received_at):
            flags.add("clock_implausible")
        self.events[site].append(Event(ref=ref, worker=self.worker, time=parse_time(punch.time), direction=punch.dir,
                                       gate=gate, manual=False, void=(site, ref) in self.voided,
                                       flags=frozenset(flags)))

    # ------------------------------------------------------------------ manual entries

    def _manual(self) -> None:
        self.manual_refs: set[tuple[str, str]] = set()
        seen = set()
        for index, entry in enumerate(self.document["manual"]):
            ref, site = entry["ref"], entry["site"]
            if ref in seen:
                raise EvidenceError(f"manual[{index}]: {ref} is listed twice")
            seen.add(ref)
            if site not in self.rules:
                raise EvidenceError(f"manual[{index}]: site {site!r} is not one of the file's sites")
            self.manual_refs.add((site, ref))
            flags = frozenset({"clock_implausible"}) if implausible(entry["time"], entry["entered_at"]) else frozenset()
            self.events[site].append(Event(ref=ref, worker=self.worker, time=parse_time(entry["time"]),
                                           direction=entry["direction"], gate=None, manual=True,
                                           void=(site, ref) in self.voided, flags=flags))

    # ------------------------------------------------------------------ days

    def days(self) -> dict[tuple[str, str], dict]:
        """The days of the period the rules give from the file's events, by (site, date)."""
        recomputed = {}
        for site, rules in self.rules.items():
            for found in daily_records(self.events[site], rules, self.generated):
                if self.first <= found.date <= self.last:
                    recomputed[(site, found.date.isoformat())] = day_of(
                        record_dict(found, site, rules.tz, self.person, False))
        return recomputed

    # ------------------------------------------------------------------ the report

    def summary(self, bank: str, document: dict, recomputed: dict) -> dict:
        gates: dict[tuple[str, str], dict] = {}
        for key in self.keys:
            gates.setdefault((key.site, key.gate), {"site": key.site, "gate": key.gate, "keys": [], "chains": []})
            gates[(key.site, key.gate)]["keys"].append({"key_id": key.key_id, "index": key.index, "digest": key.digest,
                                                        "mirrored": key.mirrored})
        for chain in self.chains:
            gates[(chain.site, chain.gate)]["chains"].append({
                "link": chain.link, "card": chain.card, "first_seq": chain.first_seq, "last_seq": chain.last_seq,
                "punches": chain.punches, "own_punches": chain.own, "start": chain.start, "end": chain.end})
        manual = [{**{k: e[k] for k in ("ref", "site", "time", "direction", "by", "reason", "entered_at")},
                   "dispute": e.get("dispute")} for e in document["manual"]]
        voids = [{**{k: v[k] for k in ("ref", "site", "void_at", "by", "reason")}, "dispute": v.get("dispute")}
                 for v in document["voids"]]
        worked = sum(d["worked_minutes"] for d in recomputed.values())
        own = sum(c.own for c in self.chains)
        card_chains = [c for c in self.chains if c.link == "card"]
        segments = [c for c in self.chains if c.link == "gate"]
        proved = [f"bank key {bank}, which you trust, signed every byte of the file",
                  f"each of the {self.total} punch(es) is signed by its gate's key, published for that gate by an entry "
                  f"of the bank's register of gate keys that the bank signed ({len(self.keys)} key(s), each entry cited)"]
        if card_chains:
            proved.append(f"each of the {len(card_chains)} card chain(s) is unbroken from a start before the period "
                          "(or the card's first punch at the gate) to a punch after it, or to the last the bank held")
        if segments:
            proved.append(f"each of the {len(segments)} segment(s) of a gate's chain (gates before protocol 3) is "
                          "unbroken between the worker's first and last punch there; the other cards' punches in it "
                          "are links only")
        proved.append(f"the {len(recomputed)} day(s) are what the attendance rules give from the worker's {own} "
                      f"punch(es) and {len(manual)} manual entr(y/ies): {worked // 60} h {worked % 60:02d} min")
        trusted = [
            "the card windows: " + ("; ".join(f"{uid} from {start or 'the beginning'} to {end or 'now'}"
                                              for uid, start, end in self.windows) or "none"),
            "the site rules: " + ("; ".join(f"{site} in {r['timezone']}, a shift at most {r['max_shift_ms']} ms "
                                            f"({_hours(r['max_shift_ms'])})"
                                            for site, r in document["sites"].items()) or "none"),
            f"when the bank received each punch, and its judgement of the cards ({self.card_flagged} punch(es) flagged)",
            f"{len(manual)} manual entr(y/ies) and {len(voids)} void(s), with who made them and why (listed below)",
            "the day flags that rest on what the file does not carry: " + ", ".join(sorted(BANK_FLAGS)),
            "that the file names every gate the worker used",
        ]
        newest = [c for c in card_chains if c.end == "newest"]
        if newest:
            trusted.append("that the bank held no later punch of the card when it wrote the file: "
                           + ", ".join(f"{c.site}/{c.gate} card {c.card}" for c in newest))
        if self.mirror is None and self.keys:
            trusted.append("the gate keys: no copy of the register was given (--register), so they rest on the bank's "
                           "signature, which the bank can make at any time")
        elif self.keys:
            proved.append(f"each gate key is in the copy of the register you gave (entries 1 to {len(self.mirror.entries)}) "
                          "and was not revoked before the punches it signed were received")
        return {
            "version": 2, "worker": self.worker, "name": self.person.name, "employer": self.person.employer,
            "period": document["period"], "generated_at": document["generated_at"], "bank_key": bank,
            "evidence_id": evidence_id(document), "days_id": days_id(document["days"]), "days": len(recomputed),
            "worked_minutes": worked, "punches": self.total, "own_punches": own,
            "keys": sorted(f"{k.site}/{k.gate} {k.key_id}" for k in self.keys),
            "register_checked": self.mirror is not None, "gates": list(gates.values()),
            "manual_entries": manual, "voids": voids, "proved": proved, "trusted": trusted,
            "notes": [note for key in self.keys for note in key.notes if not _said(note)],
        }


def _said(note: str) -> bool:
    """A citation's note that the proved and trusted lists say already (once for every key)."""
    return note.startswith("no copy of the register was given") or re.match(r"entry \d+ is in the copy", note) is not None


def _hours(ms: int) -> str:
    minutes, rest = divmod(ms, 60000)
    return f"{minutes // 60} h {minutes % 60:02d} min" + (f" {rest} ms" if rest else "")


def _stated_days(document: dict) -> dict[tuple[str, str], dict]:
    """The file's days by (site, date): each with exactly a day's members, naming the file's worker, in
    site and date order, each once."""
    person = document["worker"]
    stated: dict[tuple[str, str], dict] = {}
    previous = None
    for index, day in enumerate(document["days"]):
        where = f"days[{index}]"
        if not isinstance(day.get("site"), str) or not isinstance(day.get("date"), str):
            raise EvidenceError(f"{where}: not a day (site and date as text)")
        key = (day["site"], day["date"])
        where = f"day {key[1]} at {key[0]}"
        extra = sorted(set(day) - set(DAY_FIELDS), key=text_order)
        missing = [name for name in DAY_FIELDS if name not in day]
        if extra or missing:
            raise EvidenceError(f"{where}: " + "; ".join(part for part in (
                f"member(s) no day has: {', '.join(repr(n[:40]) for n in extra[:5])}" if extra else "",
                f"lacks {', '.join(missing)}" if missing else "") if part))
        if key in stated:
            raise EvidenceError(f"{where}: stated twice")
        order = (text_order(key[0]), key[1])
        if previous is not None and order < previous:
            raise EvidenceError(f"{where}: out of order (days are in site and date order)")
        previous = order
        for name in ("worker", "name", "employer"):
            if jcs(day[name]) != jcs(person[name]):
                raise EvidenceError(f"{where}: {name} {day[name]!r} is not the file's worker's {person[name]!r}")
        flags = day["flags"]
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags) or \
                [text_order(f) for f in flags] != sorted({text_order(f) for f in flags}):
            raise EvidenceError(f"{where}: flags are not text, sorted, each once")
        stated[key] = day
    return stated


#: The members of a day compared with what the rules give (``flags`` without the bank's flags).
COMPARED = ("shifts", "worked_minutes", "first_in", "last_out", "status", "anomalies", "voided", "flags")


def _compare(stated: dict[tuple[str, str], dict], recomputed: dict[tuple[str, str], dict]) -> None:
    """The same days, and every member of each the same (RFC 8785 bytes: ``1`` is not ``true``)."""
    for key in sorted(set(stated) | set(recomputed), key=lambda k: (text_order(k[0]), k[1])):
        mine, theirs = stated.get(key), recomputed.get(key)
        where = f"day {key[1]} at {key[0]}"
        if mine is None:
            raise EvidenceError(f"{where}: the punches give this day, and the file does not state it")
        if theirs is None:
            raise EvidenceError(f"{where}: stated, and the punches give no such day in the period")
        for name in COMPARED:
            a, b = mine[name], theirs[name]
            if name == "flags":
                a = [flag for flag in a if flag not in BANK_FLAGS]
                b = [flag for flag in b if flag not in BANK_FLAGS]
            if jcs(a) != jcs(b):
                raise EvidenceError(f"{where}: {name} stated {_short(mine[name])}, the punches give {_short(theirs[name])}")


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 300 else shown[:300] + "..."
