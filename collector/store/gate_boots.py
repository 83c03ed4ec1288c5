"""Gate boots: what every punch of one gate between two boots signs alike (its boot id, its reader and its
key id), held once in a row of ``gate_boots`` that each punch's packed proof names (format 2 of
collector.store.packed) instead of repeating it, about 40 bytes a punch.

A row is never changed nor deleted, so an id means the same for as long as the database lives, and each
``GateBoots`` (one per Store, one per connection) remembers the ids it has met. It remembers only rows that
are committed: a row its own open transaction made may still be rolled back (with a savepoint or the
whole transaction), and then its id names nothing, or on SQLite, which gives a rolled-back row id again,
another gate boot; a punch packed with a remembered id would then never verify again. So the id of a
row the open transaction made is looked up again for each punch until the transaction is over, and it
is remembered from the first look after that. Several collectors share one PostgreSQL database: each
makes a row with INSERT ... ON CONFLICT DO NOTHING, and if another made it first, reads its id.
"""

from __future__ import annotations

from collections.abc import Iterable

from gate_agent.protocol import Punch

from .connection import Connection
from .packed import Boot, boot_ref, punch_row

#: The ``at_commit`` entry holding the ids of the rows the open transaction made.
_MADE = "gate_boots.made"
#: Ids bound in one statement's IN list.
_CHUNK = 500


def _nothing(made: dict) -> None:
    """The rows are written when made; the entry only has to end with the transaction."""


class GateBoots:
    """The gate boots of one connection's database: the id of a punch's gate boot (made if new), and the
    gate boots that rows read name."""

    def __init__(self, db: Connection):
        self.db = db
        self._ids: dict[Boot, int] = {}
        self._boots: dict[int, Boot] = {}

    def ref(self, punch: Punch) -> int:
        """The id of ``punch``'s gate boot, made if no row holds it yet. Inside a transaction."""
        boot = Boot(punch.site, punch.gate, punch.boot, punch.reader, punch.key)
        found = self._ids.get(boot)
        if found is not None:
            return found
        made = self.db.at_commit(_MADE, _nothing)
        found = self._find(boot)
        if found is None:
            found = self.db.value("INSERT INTO gate_boots (site, gate, boot, reader, key_id) VALUES (?, ?, ?, ?, ?) "
                                  "ON CONFLICT DO NOTHING RETURNING id", boot)
            if found is not None:
                made[found] = boot
                return found
            found = self._find(boot)  # another collector's, committed since the first look
            if found is None:
                raise RuntimeError(f"gate boot {boot} neither made nor found")
        if found not in made:
            self._remember(found, boot)
        return found

    def rows(self, rows: Iterable[dict]) -> list[dict]:
        """``punch_row`` of each punches row, with the gate boots their packed values name."""
        rows = list(rows)
        refs = {ref for row in rows if (ref := boot_ref(row.get("signed"))) is not None}
        missing = sorted(refs - self._boots.keys())
        fresh: dict[int, Boot] = {}
        if missing:
            made = self.db.at_commit(_MADE, _nothing) if self.db.in_transaction else {}
            for at in range(0, len(missing), _CHUNK):
                chunk = missing[at:at + _CHUNK]
                for row in self.db.execute("SELECT id, site, gate, boot, reader, key_id FROM gate_boots WHERE id IN "
                                           f"({', '.join('?' for _ in chunk)})", chunk).fetchall():
                    ident, boot = row[0], Boot(*row[1:])
                    if ident in made:
                        fresh[ident] = boot
                    else:
                        self._remember(ident, boot)
        boots = self._boots
        if fresh:  # rows of the open transaction: for these rows only
            boots = {ref: self._boots[ref] for ref in refs if ref in self._boots} | fresh
        return [punch_row(row, boots) for row in rows]

    def _find(self, boot: Boot) -> int | None:
        return self.db.value("SELECT id FROM gate_boots WHERE site = ? AND gate = ? AND boot = ? AND reader = ? "
                             "AND key_id = ?", boot)

    def _remember(self, ident: int, boot: Boot) -> None:
        self._boots[ident] = boot
        self._ids[boot] = ident
