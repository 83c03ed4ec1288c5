"""Figures that cover the whole bank, kept with the moment they were computed (``collector.wages.figures``
computes them; /metrics reads them), and the few bank-wide reads /metrics makes itself, each one row per
site or gate whatever the bank holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True)
class Figure:
    site: str  # '' : the bank as a whole
    figure: str  # arrears (arrears_rows beside it) / inside / punches
    value: dict | None  # None: it could not be computed (``error`` says why)
    error: str | None
    computed_at: str  # UTC text
    seconds: float  # how long computing it took


class FigureQueries:
    """Mixed into Store, whose ``db`` and ``has`` it uses."""

    db: Connection

    def save_figure(self, site: str, figure: str, *, value: dict | None, error: str | None, computed_at: str,
                    seconds: float) -> None:
        """The figure as just computed (or the reason it could not be), in place of the one before."""
        with self.transaction():
            self.db.execute(
                """INSERT INTO bank_figures (site, figure, value, error, computed_at, seconds) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (site, figure) DO UPDATE SET value = excluded.value, error = excluded.error,
                   computed_at = excluded.computed_at, seconds = excluded.seconds""",
                (site, figure, None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":")),
                 error, computed_at, seconds))

    def figures(self, names: Iterable[str] | None = None) -> list[Figure]:
        """Every kept figure (of these ``names``, if given: a figure holding a report's rows is read only
        by what lists them); none on a database the daemon has not upgraded yet."""
        if not self.has("bank_figures"):
            return []
        where, params = "", []
        if names is not None:
            params = sorted(set(names))
            where = f"WHERE figure IN ({', '.join('?' for _ in params)}) " if params else "WHERE 1 = 0 "
        rows = self.db.execute("SELECT site, figure, value, error, computed_at, seconds FROM bank_figures "
                               f"{where}ORDER BY site, figure", params).fetchall()
        return [Figure(site, figure, None if value is None else json.loads(value), error, computed_at, seconds)
                for site, figure, value, error, computed_at, seconds in rows]

    def figure_computed_at(self, site: str, figure: str) -> str | None:
        return self.db.value("SELECT computed_at FROM bank_figures WHERE site = ? AND figure = ?", (site, figure))

    def recorded_gaps(self, site: str | None = None) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """Per gate (of ``site``, or every gate), the seq ranges missing in the gaps the daemon recorded
        open (it reconciles a gate's gaps with its punches after each burst, about once a second): one
        look at the open gaps only, where ``open_gaps`` reads every punch above a gate's first hole."""
        where, params = ("AND site = ? ", (site,)) if site is not None else ("", ())
        rows: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for gap_site, gate, first, last in self.db.execute(
                f"SELECT site, gate, first, last FROM gaps WHERE filled_at IS NULL {where}ORDER BY site, gate, first",
                params).fetchall():
            rows.setdefault((gap_site, gate), []).append((first, last))
        return {gate: _union(ranges) for gate, ranges in rows.items()}

    def workers_inside(self, site: str, now_text: str) -> int:
        """How many workers the kept days of ``site`` show inside at ``now_text``: those whose day holds a
        shift open until then or later (an index range over the days open now, not the site's days)."""
        return self.db.value("SELECT COUNT(DISTINCT worker) FROM days WHERE site = ? AND open_until >= ?",
                             (site, now_text)) or 0


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges sorted by start, those that overlap or touch made one (a row kept open while a wider one
    was recorded is not counted twice)."""
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
