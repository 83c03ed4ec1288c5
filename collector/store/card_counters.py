"""NTAG 424 DNA read counters as the bank decrypted them from each punch's SUN message: a card's counter
only grows, so a message seen twice, or an older one shown after a newer one, is a replay."""

from __future__ import annotations

from .connection import Connection


class CardCounterQueries:
    """Mixed into Store."""

    db: Connection

    def counter_replays(self, site: str, gate: str, seq: int, card: str, counter: int, time: str) -> list[tuple]:
        """The punches of ``card`` that the punch (site, gate, seq) with ``counter`` at ``time`` shows to be
        replays, itself included when it is one: (site, gate, seq) each. Of two punches with the same
        counter the later is the replay (the first showed the message the card made); a punch whose counter
        is lower than that of an earlier punch shows an old message again: a replay too."""
        me = (time, site, gate, seq)
        rows = self.db.execute(
            "SELECT site, gate, seq, card_counter, time FROM punches WHERE card = ? AND card_counter IS NOT NULL "
            "AND NOT (site = ? AND gate = ? AND seq = ?) AND (card_counter = ? OR (card_counter > ? AND time <= ?) "
            "OR (card_counter < ? AND time >= ?))",
            (card, site, gate, seq, counter, counter, time, counter, time)).fetchall()
        replays: list[tuple] = []
        for other_site, other_gate, other_seq, other_counter, other_time in rows:
            other = (other_time, other_site, other_gate, other_seq)
            if other_counter == counter:
                later = max(me, other)
                replays.append(later[1:])
            elif other_counter > counter and other_time <= time:
                replays.append(me[1:])
            elif other_counter < counter and other_time >= time:
                replays.append(other[1:])
        return sorted(set(replays))
