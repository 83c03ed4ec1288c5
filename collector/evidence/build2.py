"""Writing a worker's evidence file, version 2 (docs/evidence-format.md), from the bank's database.

The days are the worker's days as every report computes them (``reports.history`` from where pairing
starts afresh, ``reports.days_of``, ``reports.record_dict``), in the file's shape (``format2.day_of``).
Per gate, the punches they rest on travel as chains a verifier checks without the rest of the gate:

- a gate whose every punch of the worker's cards in that window is protocol 3: one chain per card, that
  card's own punches at the gate (each names the card's previous one, ``cprev``) from its first in the
  window to its last, with the card's punch before the first when the first is in the period and not
  the card's first at the gate (the start), and the card's punches after the last until one falls after
  the period (``end: later``; ``newest`` when the bank holds none later);
- any other gate: the segment of the gate's own chain from the worker's first punch there to the last,
  as version 1 carried it (other cards' punches between are the links).

Each gate key that signed a punch in the file is cited by its entry in the bank's register of gate keys.
Only the worker's own manual entries and voids travel. Before it is signed the file is checked against
the verifier's own rules: a file the bank would hand out and ``collector verify`` refuse is a bug, raised.
"""

from __future__ import annotations

from datetime import date, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.attendance.attribution import Attributor
from collector.attendance.reports import (
    DayProblem,
    days_of,
    history,
    punch_flags,
    reach,
    record_dict,
    site_rules,
)
from collector.evidence import format2, register
from collector.evidence.format2 import CARD_FLAGS, GENESIS, MS, day_of, local_date, text_order
from collector.store import Store, StoreError
from collector.store.packed import signed_fields
from collector.workers.record import worker_sites
from gate_agent.protocol import format_time, parse_time


def whole_ms(moment: datetime) -> datetime:
    """``moment`` cut to the millisecond, as ``generated_at`` states it: the days are judged "open" at the
    instant the file names, not a fraction of a millisecond after it."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def build(store: Store, worker: str, first: date, last: date, *, key: Ed25519PrivateKey, now: datetime,
          progress=None) -> dict:
    """The worker's evidence for first..last, signed with the bank's ``key`` (which also signs any entry the
    register of gate keys still lacks)."""
    return format2.sign(body(store, worker, first, last, now=now, key=key, progress=progress), key)


def body(store: Store, worker: str, first: date, last: date, *, now: datetime, key: Ed25519PrivateKey | None = None,
         progress=None) -> dict:
    """What the file says, before the bank signs it. Without ``key``, a gate key the register lacks cannot
    be entered there, and the file cannot be made (StoreError)."""
    now = whole_ms(now)
    person = next(iter(store.people_named([worker])), None)
    if person is None:
        raise StoreError(f"worker {worker} does not exist")
    attributor = Attributor.of(store, worker)
    sites, gates, manual, voids, days = {}, [], [], [], []
    for site_row in worker_sites(store, worker):
        site = site_row["site"]
        rules = site_rules(store, site)
        events, _, punches = history(store, site, rules, attributor, *reach(first, last, rules, now), worker=worker)
        mine = [e for e in events if e.worker == worker]
        if not mine:
            continue
        sites[site] = {"timezone": site_row["timezone"], "max_shift_ms": rules.max_shift // MS}
        refs = {e.ref for e in mine}
        by_gate: dict[str, list[dict]] = {}
        for row in punches:
            if row["source"] != "manual" and f"{row['gate']}#{row['seq']}" in refs:
                by_gate.setdefault(row["gate"], []).append(row)
        for gate in sorted(by_gate, key=text_order):
            writer = _Gate(store, site, gate, rules.tz, attributor, worker, first, last)
            chains = writer.chains(by_gate[gate])
            gates.append({"site": site, "gate": gate, "keys": _citations(store, site, gate, writer.keys, key),
                          "chains": chains})
            voids += writer.voids
            if progress is not None:
                progress(sum(len(c["punches"]) for c in chains))
        for row in punches:
            if row["source"] == "manual" and row["worker"] == worker:
                ref = f"manual#{row['id']}"
                manual.append(_cites({"ref": ref, "site": site, "time": row["time"], "direction": row["direction"],
                                      "by": row["manual_by"], "reason": row["manual_reason"],
                                      "entered_at": row["received_at"]}, row))
                if row["void_at"]:
                    voids.append(_void(ref, site, row))
        assignments = store.assignments(worker=worker, site=site)
        for found in days_of(mine, rules, now, first, last, assignments, site=site):
            if isinstance(found, DayProblem):
                raise StoreError(f"the day {found.date.isoformat()} of worker {worker} at {site} {found.reason}")
            days.append(day_of(record_dict(found, site, rules.tz, attributor.person(worker), final=False)))
    document = {
        "format": format2.FORMAT, "version": format2.VERSION, "generated_at": format_time(now),
        "worker": {"worker": worker, "name": person["name"], "employer": person["employer"]},
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        # By uid, then from when (one order on both engines: PostgreSQL sorts a NULL last, SQLite first).
        "cards": [{"uid": w["uid"], "valid_from": w["valid_from"], "valid_to": w["valid_to"]} for w in
                  sorted(attributor.windows, key=lambda w: (text_order(w["uid"]), w["valid_from"] or ""))],
        "sites": sites, "gates": gates,
        "manual": sorted(manual, key=lambda e: text_order(e["ref"])),
        "voids": sorted(voids, key=lambda v: (text_order(v["site"]), text_order(v["ref"]))),
        "days": sorted(days, key=lambda d: (text_order(d["site"]), d["date"])),
    }
    _self_check(document)
    return document


class _NoStart(Exception):
    """A card's chain cannot start before the period at this gate: its segment of the gate's chain is used."""


class _Gate:
    """The chains of one gate, the keys that signed their punches and the voids of the worker's punches."""

    def __init__(self, store: Store, site: str, gate: str, tz, attributor: Attributor, worker: str, first: date,
                 last: date):
        self.store, self.site, self.gate, self.tz = store, site, gate, tz
        self.attributor, self.worker, self.first, self.last = attributor, worker, first, last
        self.keys: dict[str, list[str]] = {}  # key id -> received_at of the punches it signed
        self.voids: list[dict] = []

    def chains(self, rows: list[dict]) -> list[dict]:
        """Card chains when every punch of the worker's here is protocol 3, else (or when a card's chain
        cannot start before the period: the gate was upgraded within it) one segment of the gate's chain."""
        seqs = [row["seq"] for row in rows]
        if all(signed_fields(row)["v"] >= 3 for row in rows):
            by_card: dict[str, list[int]] = {}
            for row in rows:
                by_card.setdefault(row["card"], []).append(row["seq"])
            try:
                return [self._card_chain(card, min(numbers), max(numbers)) for card, numbers in
                        sorted(by_card.items(), key=lambda item: text_order(item[0]))]
            except _NoStart:
                self.keys, self.voids = {}, []
        return [self._segment(min(seqs), max(seqs))]

    def _card_chain(self, card: str, first_seq: int, last_seq: int) -> dict:
        store, site, gate = self.store, self.site, self.gate
        rows = store.card_punch_rows(site, gate, card, first_seq, last_seq)
        where = f"gate {site}/{gate}, card {card}"
        # Back to a punch of the card before the period, or its first at the gate (a card that changed
        # hands within the period brings the punches of the one who held it before).
        while self._date(rows[0]) >= self.first and signed_fields(rows[0]).get("cprev") != GENESIS:
            if signed_fields(rows[0])["v"] < 3:
                raise _NoStart  # a punch from before the gate's upgrade, within the period: it names no predecessor
            before = store.card_punch_before(site, gate, card, rows[0]["seq"])
            if before is None:
                raise StoreError(f"{where}: the bank does not hold the card's punch before seq {rows[0]['seq']} (it "
                                 "names one), so the file could not show that none is missing before the period")
            rows.insert(0, before)
        end = "later"
        while not self._date(rows[-1]) > self.last:
            after = store.card_punch_after(site, gate, card, rows[-1]["seq"])
            if after is None:
                end = "newest"
                break
            rows.append(after)
        fields = [signed_fields(row) for row in rows]
        for index in range(1, len(rows)):
            if fields[index]["v"] < 3 or fields[index]["cprev"] != rows[index - 1]["digest"]:
                raise StoreError(f"{where}: seq {rows[index]['seq']} names a previous punch of the card that the bank "
                                 f"does not hold after seq {rows[index - 1]['seq']} (a punch not yet delivered?): ask "
                                 "again later")
        chain = {"link": "card", "card": card, "end": end}
        chain.update(self._parallel(rows, fields))
        return chain

    def _segment(self, first_seq: int, last_seq: int) -> dict:
        rows = self.store.gate_punch_rows(self.site, self.gate, first_seq, last_seq)
        if [row["seq"] for row in rows] != list(range(first_seq, last_seq + 1)):
            raise StoreError(f"gate {self.site}/{self.gate}: the bank does not hold every punch from seq {first_seq} to "
                             f"{last_seq} (a gap in the gate's chain): ask again once the gate has delivered them")
        chain = {"link": "gate"}
        chain.update(self._parallel(rows, [signed_fields(row) for row in rows]))
        return chain

    def _parallel(self, rows: list[dict], fields: list[dict]) -> dict:
        judged = []
        for row, punch in zip(rows, fields, strict=True):
            holder = self.attributor.attribute(row).holder
            if holder is not None and holder.worker == self.worker:
                judged.append(sorted(CARD_FLAGS & set(punch_flags(row, holder))))
                if row["void_at"]:
                    self.voids.append(_void(f"{self.gate}#{row['seq']}", self.site, row))
            else:
                # Nobody's, or another holder's: what ingest stored (the worker's cards' windows alone are known here).
                judged.append(sorted(CARD_FLAGS.intersection((row.get("flags") or "").split(","))))
            self.keys.setdefault(punch["key"], []).append(row["received_at"])
        return {"punches": fields, "received_at": [row["received_at"] for row in rows], "card_flags": judged}

    def _date(self, row: dict) -> date:
        return local_date(parse_time(row["time"]), self.tz)


def _citations(store: Store, site: str, gate: str, keys: dict[str, list[str]],
               key: Ed25519PrivateKey | None) -> list[dict]:
    """The register entry of each gate key, entering what the register lacks first (with the bank's key)."""
    if not store.has("gate_key_register"):
        raise StoreError("the database has no register of gate keys yet: upgrade it (collector db upgrade)")
    entries = []
    synced = False
    for kid in sorted(keys):
        entry = register.citation(store, site, gate, kid)
        if entry is None and key is not None and not synced:
            register.sync(store, key)
            synced = True
            entry = register.citation(store, site, gate, kid)
        if entry is None:
            raise StoreError(f"gate {site}/{gate}: key {kid} is not in the register of gate keys (collector register "
                             "sync enters it), so the file could not cite where it was published")
        entries.append(entry)
    return sorted(entries, key=lambda e: e["index"])


def _void(ref: str, site: str, row: dict) -> dict:
    return _cites({"ref": ref, "site": site, "void_at": row["void_at"], "by": row["void_by"],
                   "reason": row["void_reason"]}, row)


def _cites(entry: dict, row: dict) -> dict:
    """A correction that answers a worker's dispute names it (under the bank's signature like the rest)."""
    if row.get("dispute"):
        entry["dispute"] = row["dispute"]
    return entry


def _self_check(document: dict) -> None:
    """The file as a verifier reads it: its shape, its chains, and its days recomputed from what it carries.
    Anything a verifier would refuse is the bank's bug, never a file handed out."""
    from collector.evidence import verify2
    from collector.evidence.reading import EvidenceError

    try:
        verify2.check_unsigned(document)
    except EvidenceError as error:
        raise RuntimeError(f"the evidence file built does not verify: {error}") from None
