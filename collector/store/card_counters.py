"""NTAG 424 DNA read counters as the bank decrypted them from each punch's SUN message: a card's counter
only grows, so a message seen twice, or an older one shown after a newer one, is a replay."""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True, order=True)
class PunchRef:
    """A gate punch by its place in its gate's chain (ordered by site, gate, seq)."""

    site: str
    gate: str
    seq: int


class CardCounterQueries:
    """Mixed into Store."""

    db: Connection

    def counter_replays(self, site: str, gate: str, seq: int, card: str, counter: int, time: str) -> list[PunchRef]:
        """The punches of ``card`` that the punch (site, gate, seq) with ``counter`` at ``time`` shows to be
        replays, itself included when it is one. Of two punches with the same counter the later is the
        replay (the first showed the message the card made); a punch whose counter is lower than that of
        an earlier punch shows an old message again: a replay too."""
        me = PunchRef(site, gate, seq)
        rows = self.db.rows(
            "SELECT site, gate, seq, card_counter, time FROM punches WHERE card = ? AND card_counter IS NOT NULL "
            "AND NOT (site = ? AND gate = ? AND seq = ?) AND (card_counter = ? OR (card_counter > ? AND time <= ?) "
            "OR (card_counter < ? AND time >= ?))",
            (card, site, gate, seq, counter, counter, time, counter, time))
        replays: set[PunchRef] = set()
        for row in rows:
            other = PunchRef(row["site"], row["gate"], row["seq"])
            if row["card_counter"] == counter:
                # The later by time (then by place, for two punches of one instant) is the replay.
                replays.add(other if (row["time"], other) > (time, me) else me)
            elif row["card_counter"] > counter and row["time"] <= time:
                replays.add(me)
            elif row["card_counter"] < counter and row["time"] >= time:
                replays.add(other)
        return sorted(replays)
