"""What the live headcount of one site reads (``collector.attendance.headcount``): the kept days with a
shift open now, the cards their INs were made with, and the site's recent punches of cards nobody held.
Each costs what is inside the site now and what happened there lately, never the site's whole history
nor the bank's card windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .connection import Connection

#: Values bound in one statement's IN list.
CHUNK = 500

#: A gate punch whose card nobody held at its time (no card window covers it: ``cards.CardIndex``).
NOBODY_HELD = ("NOT EXISTS (SELECT 1 FROM cards c WHERE c.uid = p.card AND (c.valid_from IS NULL OR c.valid_from <= p.time) "
               "AND (c.valid_to IS NULL OR p.time < c.valid_to))")


class InsideQueries:
    """Mixed into Store, whose ``db``, ``_punch_rows`` and ``_delivery`` it uses."""

    db: Connection

    def open_days(self, site: str, until_text: str) -> list[tuple[str, str, str, dict, dict | None]]:
        """(worker, day, open_until, record, person) of the kept days of ``site`` holding a shift open until
        ``until_text`` or later (the record as it reads while that shift is open), with the worker as the
        registry holds them now (``people()``'s name, employer, team and trade; None for a worker it no
        longer holds)."""
        teams = "w.team, w.trade" if self.has("teams") else "NULL, NULL"
        rows = self.db.execute(f"SELECT d.worker, d.day, d.open_until, d.record, w.worker, w.name, w.employer, {teams} "
                               "FROM days d LEFT JOIN workers w ON w.worker = d.worker "
                               "WHERE d.site = ? AND d.open_until >= ?", (site, until_text)).fetchall()
        # One parse of them all: a site's thousands of records cost half what as many parses would.
        records = json.loads("[" + ",".join(row[3] for row in rows) + "]")
        return [(worker, day, open_until, record,
                 None if known is None else {"worker": known, "name": name, "employer": employer, "team": team,
                                             "trade": trade})
                for (worker, day, open_until, _, known, name, employer, team, trade), record
                in zip(rows, records, strict=True)]

    def unattributed_punches(self, site: str, cards: Iterable[str], *, start: str | None,
                             end: str | None = None) -> list[dict]:
        """Gate punches of ``cards`` at ``site`` in [start, end) (None: unbounded) whose card nobody held
        at their time, oldest first."""
        where = f"p.site = ? AND p.source <> 'manual' AND {NOBODY_HELD}"
        params: list = [site]
        for op, value in ((">=", start), ("<", end)):
            if value is not None:
                where += f" AND p.time {op} ?"
                params.append(value)
        found: list[dict] = []
        for chunk in _chunks(sorted(set(cards))):
            found += self._punch_rows(f"SELECT p.*, {self._delivery()} FROM punches p LEFT JOIN gates g "
                                      f"ON g.site = p.site AND g.gate = p.gate WHERE {where} "
                                      f"AND p.card IN ({', '.join('?' for _ in chunk)})", params + chunk)
        return sorted(found, key=lambda p: (p["time"], p["gate"], p["seq"], p["id"]))

    def unattributed_cards(self, site: str, *, start: str) -> set[str]:
        """Cards of the gate punches at ``site`` from ``start`` on that nobody held at their time."""
        return set(self.db.column(f"SELECT DISTINCT p.card FROM punches p WHERE p.site = ? AND p.source <> 'manual' "
                                  f"AND p.time >= ? AND {NOBODY_HELD}", (site, start)))

    def first_card_punch_time(self, site: str, cards: Iterable[str]) -> str | None:
        """When the earliest punch at ``site`` of any of ``cards`` was made, or None."""
        times = [self.db.value(f"SELECT MIN(time) FROM punches WHERE site = ? AND card IN ({', '.join('?' for _ in chunk)})",
                               [site, *chunk]) for chunk in _chunks(sorted(set(cards)))]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def gate_punch_cards_since(self, site: str, start: str) -> dict[tuple[str, int], str | None]:
        """The card of each gate punch at ``site`` made at ``start`` or later, by (gate, seq)."""
        return {(gate, seq): card for gate, seq, card in self.db.execute(
            "SELECT gate, seq, card FROM punches WHERE site = ? AND time >= ? AND source <> 'manual'",
            (site, start)).fetchall()}

    def manual_punch_times(self, site: str, ids: Iterable[int]) -> dict[int, str]:
        """The time of each of these manual punches at ``site`` (by id), for those held."""
        found: dict[int, str] = {}
        for chunk in _chunks(sorted(set(ids))):
            found.update(self.db.execute(f"SELECT id, time FROM punches WHERE site = ? AND source = 'manual' AND id IN "
                                         f"({', '.join('?' for _ in chunk)})", [site, *chunk]).fetchall())
        return found


def _chunks(values: list) -> list[list]:
    return [values[start:start + CHUNK] for start in range(0, len(values), CHUNK)]
