"""Evidence files: a worker's days with everything needed to check them offline, and the check.

A file is written in format 2 (docs/evidence-format.md; ``build2`` writes it, ``verify2`` checks it): the
worker's own card's punches at each gate as the gate signed them, linked card punch to card punch (gate
protocol 3), the gate keys cited from the bank's register of gate keys, the worker's manual entries and
voids, the site rules and the days, the whole signed by the bank over its RFC 8785 bytes.

Files of format 1 keep verifying (``verify_evidence`` reads both): per gate, the unbroken segment of the
gate's chain from the worker's first to last punch (other workers' punches in between are the links),
the gates' public keys taken from the file, signed over Python's key-sorted ASCII JSON with floats. Only
the bank's signature vouches for what gates do not sign (segment bounds, card windows, manual entries,
voids, rules): a file edited anywhere fails it, and a file whose every signature an attacker made
himself fails the trust check.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.attendance.cards import CardIndex
from collector.attendance.reports import attendance, event_of, from_punches, record_dict
from collector.attendance.rules import Event, Rules, daily_records
from collector.evidence import build2, format2, verify2
from collector.evidence.reading import EvidenceError, read_evidence
from collector.localtime import zone
from collector.store import Store
from collector.workers.record import worker_sites
from gate_agent.protocol import (
    BankKeys,
    ProtocolError,
    Punch,
    canonical_json,
    check_link,
    key_id,
    parse_public_key,
    parse_time,
    verify_document,
    verify_punch,
)

__all__ = ["EvidenceError", "build_evidence", "days_id", "evidence_body", "evidence_id", "read_evidence",
           "stated_days", "verify_evidence"]

#: Card judgements an evidence file carries per punch (collector.ingest.sun): punches that prove no presence.
CARD_FLAGS = format2.CARD_FLAGS

FORMAT = "site-gate-evidence"
#: The version the bank writes; ``verify_evidence`` reads this one and version 1.
VERSION = format2.VERSION

#: Fields of a document that change with each writing of the same evidence (when, and with which bank
#: key): left out of its evidence id.
_NOT_IN_ID = ("generated_at", "bank_key", "key", "sig")


def evidence_id(document: dict) -> str:
    """The SHA-256 of what the document says (its canonical bytes without the fields that change with each
    writing): the same worker, period and punches give the same id whenever and with whichever bank key
    the file is written, so a wage slip can name the file the worker will get, and the file checked by
    ``collector verify`` shows the same id. Format 2 takes RFC 8785 bytes, format 1 its own."""
    if document.get("version") == 1:
        body = {name: value for name, value in document.items() if name not in _NOT_IN_ID}
        return hashlib.sha256(canonical_json(body)).hexdigest()
    return format2.evidence_id(document)


def days_id(days: list[dict]) -> str:
    """The SHA-256 of the RFC 8785 bytes of the days a format 2 file states (in site and date order): what a
    wage slip names, so that the worker can see the file ``collector verify`` accepts states the very days
    the slip paid. The days of a format 1 file (shifts in ``minutes``) get format 1's id, as its check
    shows it."""
    if any(isinstance(day, dict) and any(isinstance(shift, dict) and "minutes" in shift
                                         for shift in day.get("shifts") or ())
           for day in days):
        return _days_id_v1(days)
    return format2.days_id(days)


def _days_id_v1(days: list[dict]) -> str:
    return hashlib.sha256(canonical_json(sorted(days, key=lambda d: (d["site"], d["date"])))).hexdigest()


def stated_days(store: Store, worker: str, first: date, last: date, *, now: datetime) -> list[dict]:
    """The days an evidence file of ``worker`` for first..last written at ``now`` states, read from the kept
    days (``reports.attendance``) instead of computed from the punches as ``evidence_body`` does: the two
    agree (tests/test_read_properties.py), and ``days_id`` of either is the same. A day kept by a version
    before shifts carried their exact milliseconds is computed from the punches instead."""
    now = build2.whole_ms(now)
    days = []
    for site_row in worker_sites(store, worker):
        site = site_row["site"]
        kept = attendance(store, site, first, last, now=now, worker=worker)
        if any("ms" not in shift for day in kept for shift in day.get("shifts", ())):
            kept = from_punches(store, site, first, last, now=now, worker=worker)
        days += [format2.day_of(day) for day in kept]
    return sorted(days, key=lambda d: (format2.text_order(d["site"]), d["date"]))


def build_evidence(store: Store, worker: str, first: date, last: date, *, key: Ed25519PrivateKey,
                   now: datetime | None = None, progress=None) -> dict:
    """The worker's evidence for first..last (format 2), signed with the bank's ``key``."""
    return build2.build(store, worker, first, last, key=key, now=now or datetime.now(UTC), progress=progress)


def evidence_body(store: Store, worker: str, first: date, last: date, *, now: datetime, key=None,
                  progress=None) -> dict:
    """What the evidence file says, before the bank signs it (enough for its id)."""
    return build2.body(store, worker, first, last, now=now, key=key, progress=progress)


class Registry:
    """What the bank's registry says about gate keys, for checking a file against it (``--config``)."""

    def __init__(self, store: Store):
        self._keys: dict[tuple[str, str, str], dict] = {}
        for site in store.sites():
            for gate in store.gates(site["site"], with_gaps=False):
                for row in store.public_keys(site["site"], gate["gate"]):
                    self._keys[(site["site"], gate["gate"], row["key_id"])] = row

    def problem(self, site: str, gate: str, punch: Punch, public_key: str, received_at: str) -> str | None:
        """Why this gate key was not the gate's registered key when the bank received the punch, or None."""
        row = self._keys.get((site, gate, punch.key))
        if row is None:
            return f"key {punch.key} is not registered for gate {site}/{gate}"
        if row["public_key"].strip() != public_key.strip():
            return f"key {punch.key} of {site}/{gate} in the file differs from the registry's"
        if received_at < row["added_at"]:
            return f"key {punch.key} was registered for {site}/{gate} only at {row['added_at']}"
        if row["revoked_at"] and row["revoked_at"] <= received_at:
            return f"key {punch.key} of {site}/{gate} was revoked at {row['revoked_at']}"
        return None


def verify_evidence(document: object, trusted: BankKeys, *, registry: Registry | None = None,
                    mirror=None) -> dict:
    """Check an evidence document of format 1 or 2; return a summary, or raise EvidenceError naming the
    first failure.

    ``trusted`` are the bank keys the caller got from the bank (its published key or its registry),
    never the one the file carries. ``mirror`` (format 2): a copy of the register of gate keys
    (``register.load_mirror``) to check each cited gate key against; ``registry`` (format 1): the bank's
    registry of gate keys."""
    try:
        if isinstance(document, dict) and document.get("format") == FORMAT and type(document.get("version")) is int \
                and document["version"] == format2.VERSION:
            return verify2.verify(document, trusted, mirror=mirror)
        return _verify(document, trusted, registry)
    except EvidenceError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, RecursionError,
            ProtocolError) as error:
        # A malformed file is a failure to verify, said in one line, never a traceback.
        raise EvidenceError(f"malformed file: {type(error).__name__}: {str(error)[:200]}") from None


def _verify(document: object, trusted: BankKeys, registry: Registry | None) -> dict:
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != 1:
        raise EvidenceError(f"not a {FORMAT} document of version 1 or 2")
    bank_id = _check_bank_signature(document, trusted)
    checked = _CheckedPunches(document, registry)
    _check_entries(document, checked)
    stated = _stated_days(document)
    recomputed = checked.days()
    for key in sorted(set(stated) | set(recomputed)):
        a, b = stated.get(key), recomputed.get(key)
        if a is None or b is None:
            raise EvidenceError(f"day {key[1]} at {key[0]}: {'not stated' if a is None else 'not supported by the punches'}")
        for field in RECOMPUTED_FIELDS:
            mine, theirs = a.get(field), b.get(field)
            if field == "flags" and isinstance(mine, list):
                mine = [flag for flag in mine if flag not in BANK_FLAGS]
                theirs = [flag for flag in theirs if flag not in BANK_FLAGS]
            elif field == "voided" and isinstance(mine, list) and all(isinstance(ref, str) for ref in mine):
                # Listed in the order the bank read its punches, which ties at one time may not tell.
                mine, theirs = sorted(mine), sorted(theirs)
            if mine != theirs:
                raise EvidenceError(f"day {key[1]} at {key[0]}: {field} stated {a.get(field)!r}, "
                                    f"the punches give {b.get(field)!r}")
    return {"worker": checked.worker, "period": document["period"], "days": len(recomputed),
            "evidence_id": evidence_id(document), "days_id": _days_id_v1(document["days"]), "version": 1,
            "punches": checked.total, "worked_minutes": sum(d["worked_minutes"] for d in recomputed.values()),
            "bank_key": bank_id, "keys": sorted(set(checked.fingerprints)), "registry_checked": registry is not None,
            "manual_entries": [{**{k: e[k] for k in ("ref", "site", "time", "direction", "by", "reason", "entered_at")},
                                "dispute": e.get("dispute")} for e in document["manual"]],
            "voids": [{**{k: v[k] for k in ("ref", "site", "void_at", "by", "reason")}, "dispute": v.get("dispute")}
                      for v in document["voids"]]}


#: The fields of a day in the file (and ``error``, why the rules could not compute it, on an error day).
DAY_KEYS = frozenset({"worker", "name", "employer", "site", "date", "first_in", "last_out", "worked_minutes", "status",
                      "flags", "shifts", "anomalies", "voided"})
#: What a verifier recomputes from the punches and compares, field by field, with what the day states.
RECOMPUTED_FIELDS = ("worked_minutes", "status", "first_in", "last_out", "shifts", "anomalies", "voided", "flags")
#: Flags that rest on what the file does not carry, taken on the bank's word (its signature): the worker's
#: assignments to sites, and what ingest judged of a punch against the bank's clock and the gate's other
#: punches. A verifier leaves them out of the comparison and says so (docs/verify-evidence.md).
BANK_FLAGS = frozenset({"not_assigned", "clock_future", "clock_backwards", "chain_break", "equivocated"})


def _stated_days(document: dict) -> dict[tuple[str, str], dict]:
    """The file's days by (site, date): each once, in site and date order, with exactly the day's fields,
    naming the file's worker as the file's header does."""
    days = document["days"]
    if not isinstance(days, list):
        raise EvidenceError("days is not a list")
    person = document["worker"]
    stated: dict[tuple[str, str], dict] = {}
    for index, day in enumerate(days):
        if not isinstance(day, dict) or not isinstance(day.get("site"), str) or not isinstance(day.get("date"), str):
            raise EvidenceError(f"day #{index + 1}: not a day (site and date)")
        key = (day["site"], day["date"])
        where = f"day {key[1]} at {key[0]}"
        if key in stated:
            raise EvidenceError(f"{where}: stated twice")
        if stated and key < list(stated)[-1]:
            raise EvidenceError(f"{where}: out of order (days are in site and date order)")
        expected = DAY_KEYS | ({"error"} if day.get("status") == "error" else set())
        if set(day) != expected:
            extra, missing = sorted(set(day) - expected), sorted(expected - set(day))
            raise EvidenceError(f"{where}: " + "; ".join(
                part for part in (f"fields not in a day: {', '.join(map(repr, extra))}" if extra else "",
                                  f"fields missing: {', '.join(missing)}" if missing else "") if part))
        for field in ("worker", "name", "employer"):
            if day[field] != person.get(field):
                raise EvidenceError(f"{where}: {field} {day[field]!r} is not the file's worker's {person.get(field)!r}")
        stated[key] = day
    return stated


def _check_entries(document: dict, checked: _CheckedPunches) -> None:
    """Manual entries at a site of the file, each once; voids each once, of a punch the file holds."""
    manual = set()
    for entry in document["manual"]:
        ref = entry.get("ref") if isinstance(entry, dict) else None
        if not isinstance(ref, str) or not ref.startswith("manual#") or not ref[len("manual#"):].isdigit():
            raise EvidenceError(f"manual entry {ref!r}: not a manual#N reference")
        if ref in manual:
            raise EvidenceError(f"manual entry {ref}: listed twice")
        if entry.get("site") not in checked.sites:
            raise EvidenceError(f"manual entry {ref}: site {entry.get('site')!r} has no rules in the file")
        manual.add(ref)
    voided = set()
    for void in document["voids"]:
        ref = void.get("ref") if isinstance(void, dict) else None
        if ref in voided:
            raise EvidenceError(f"void of {ref}: listed twice")
        if ref not in manual and (void.get("site"), ref) not in checked.refs:
            raise EvidenceError(f"void of {ref!r} at {void.get('site')!r}: no such punch in the file")
        voided.add(ref)


class _CheckedPunches:
    """The file's punches, each checked (gate signature, link, segment bounds, optionally the registry),
    as attendance events per site."""

    def __init__(self, document: dict, registry: Registry | None):
        try:
            self.worker = document["worker"]["worker"]
            self.first = date.fromisoformat(document["period"]["from"])
            self.last = date.fromisoformat(document["period"]["to"])
            self.generated = parse_time(document["generated_at"])
            self.cards = CardIndex([{**c, "worker": self.worker, "name": document["worker"]["name"],
                                     "employer": document["worker"]["employer"]} for c in document["cards"]])
            self.sites = {site: Rules(zone(r["timezone"]), timedelta(hours=r["max_shift_hours"]))
                          for site, r in document["sites"].items()}
        except (KeyError, TypeError, ValueError, ProtocolError) as error:
            raise EvidenceError(f"malformed header: {error}") from None
        self.events: dict[str, list[Event]] = {site: [] for site in self.sites}
        self.fingerprints: list[str] = []
        self.refs: set[tuple[str, str]] = set()  # (site, gate#seq) of every gate punch in the file
        self.total = 0
        self._voided = {v["ref"]: v for v in document["voids"]}
        for segment in document["gates"]:
            self._segment(segment, registry)
        for entry in document["manual"]:
            row = {"id": entry["ref"].split("#")[1], "gate": None, "seq": None, "time": entry["time"],
                   "direction": entry["direction"], "source": "manual", "flags": "",
                   "void_at": (self._voided.get(entry["ref"]) or {}).get("void_at"), "received_at": entry["entered_at"]}
            if entry["site"] in self.events:
                self.events[entry["site"]].append(event_of(row, self.worker, None))

    def _segment(self, segment: dict, registry: Registry | None) -> None:
        site, gate = segment["site"], segment["gate"]
        name = f"{site}/{gate}"
        if site not in self.sites:
            raise EvidenceError(f"gate {name}: site {site} has no rules in the file")
        keys, texts = {}, {}
        for text in segment["public_keys"]:
            try:
                key = parse_public_key(text)
            except ValueError as error:
                raise EvidenceError(f"gate {name}: bad public key: {error}") from None
            keys[key_id(key)], texts[key_id(key)] = key, text
            self.fingerprints.append(f"{name} {key_id(key)}")
        previous = None
        expected = segment["first_seq"]
        received = segment["received_at"]
        card_flags = segment.get("card_flags") or [[] for _ in segment["punches"]]
        if not isinstance(card_flags, list) or len(card_flags) != len(segment["punches"]) or not all(
                isinstance(f, list) and set(f) <= CARD_FLAGS for f in card_flags):
            raise EvidenceError(f"gate {name}: card_flags do not match its punches")
        for index, raw in enumerate(segment["punches"]):
            try:
                punch = Punch.from_dict(raw)
            except ProtocolError as error:
                raise EvidenceError(f"gate {name} punch #{index + 1}: {error}") from None
            label = f"punch {name} seq {punch.seq}"
            if (punch.site, punch.gate) != (site, gate):
                raise EvidenceError(f"{label}: belongs to {punch.site}/{punch.gate}")
            if punch.seq != expected:
                raise EvidenceError(f"{label}: expected seq {expected} (a punch is missing or out of order)")
            key = keys.get(punch.key)
            if key is None:
                raise EvidenceError(f"{label}: signed by key {punch.key}, which the file does not hold")
            try:
                verify_punch(punch, key)
                if previous is not None:
                    check_link(previous, punch)
            except ProtocolError as error:
                raise EvidenceError(f"{label}: {error.detail}") from None
            if registry is not None:
                problem = registry.problem(site, gate, punch, texts[punch.key], received[index])
                if problem:
                    raise EvidenceError(f"{label}: {problem}")
            holder = self.cards.holder(punch.card, punch.time)
            if holder is not None:
                row = {"id": None, "gate": gate, "seq": punch.seq, "time": punch.time, "direction": punch.dir,
                       "source": "gate", "void_at": (self._voided.get(f"{gate}#{punch.seq}") or {}).get("void_at"),
                       "flags": ",".join(card_flags[index] + ([] if punch.synced else ["clock_unsynced"])),
                       "received_at": received[index], "card": punch.card}
                self.events[site].append(event_of(row, self.worker, holder))
            self.refs.add((site, f"{gate}#{punch.seq}"))
            previous, expected, self.total = punch, expected + 1, self.total + 1
        if previous is None or previous.seq != segment["last_seq"]:
            raise EvidenceError(f"gate {name}: segment does not end at its declared seq {segment['last_seq']}")

    def days(self) -> dict[tuple[str, str], dict]:
        recomputed = {}
        for site, rules in self.sites.items():
            for record in daily_records(self.events[site], rules, self.generated):
                if self.first <= record.date <= self.last:
                    day = record_dict(record, site, rules.tz, None, False)
                    for shift in day["shifts"]:
                        del shift["ms"]  # format 2's; a format 1 file states minutes only
                    recomputed[(site, record.date.isoformat())] = day
        return recomputed


def _check_bank_signature(document: dict, trusted: BankKeys) -> str:
    """The bank key id that signed the whole document, which must be one the verifier trusts."""
    text = document.get("bank_key")
    if not isinstance(text, str):
        raise EvidenceError("the file is not signed by the bank (no bank_key)")
    try:
        key = parse_public_key(text)
    except ValueError as error:
        raise EvidenceError(f"bank_key: {error}") from None
    try:
        verify_document(document, {key_id(key): key}, "the file")
    except ProtocolError as error:
        raise EvidenceError(f"{error.detail} (changed after the bank signed it)") from None
    if key_id(key) not in trusted:
        raise EvidenceError(f"signed by key {key_id(key)}, which is not a bank key you trust "
                            f"({', '.join(sorted(trusted)) or 'none given'})")
    return key_id(key)
