"""NTAG 424 DNA read counters as the bank decrypted them from each punch's SUN message: a card's counter
only grows, so a message seen twice, or an older one shown after a newer one, is a replay."""

from __future__ import annotations

from .connection import Connection


class CardCounterQueries:
    """Mixed into Store."""

    db: Connection

    def counter_replays(self, site: str, gate: str, seq: int, card: str, counter: int, time: str) -> list[tuple]:
        """The punches of ``card`` that the punch (site, gate, seq) with ``counter`` at ``time`` shows to be
        replays, itself included when it is one: (site, gate, seq) each. A punch is a replay when another
        of the same card has the same counter, or a higher one at an earlier or equal time."""
        rows = self.db.execute(
            "SELECT site, gate, seq, card_counter, time FROM punches WHERE card = ? AND card_counter IS NOT NULL "
            "AND NOT (site = ? AND gate = ? AND seq = ?) AND (card_counter = ? OR (card_counter > ? AND time <= ?) "
            "OR (card_counter < ? AND time >= ?))",
            (card, site, gate, seq, counter, counter, time, counter, time)).fetchall()
        replays: list[tuple] = []
        for other_site, other_gate, other_seq, other_counter, other_time in rows:
            if other_counter == counter or (other_counter > counter and other_time <= time):
                if (site, gate, seq) not in replays:
                    replays.append((site, gate, seq))
            if other_counter == counter or (other_counter < counter and other_time >= time):
                replays.append((other_site, other_gate, other_seq))
        return replays
