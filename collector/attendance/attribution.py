"""Whose a punch is: decided in one place for gate and manual punches alike.

A gate punch belongs to whoever held its card at the punch's time (a card window, ``cards.CardIndex``);
nobody held it, the punch is unattributed. A manual punch names its worker, and carries no card window:
it never borrows one from the punch before it. Names and employers come from the worker registry, so a
worker who never had a card is still named on a record made by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.attendance.cards import CardIndex, Holder
from collector.store import Store


@dataclass(frozen=True, slots=True)
class Person:
    worker: str
    name: str | None
    employer: str | None
    team: str | None = None  # work team (班组) and trade (工种), as registered now
    trade: str | None = None


@dataclass(frozen=True, slots=True)
class Attribution:
    worker: str | None  # None: a gate punch whose card nobody held at its time
    holder: Holder | None  # the card window a gate punch was made under; None for a manual punch


class Attributor:
    """Card windows and the registry's people, read once; look-ups are in memory."""

    def __init__(self, windows: list[dict], people: list[dict], *, only: str | None = None):
        self.windows = windows  # the card windows it attributes by (an evidence file lists them)
        self.cards = CardIndex(windows)
        self._only = only
        self._people = {row["worker"]: Person(row["worker"], row.get("name"), row.get("employer"),
                                            row.get("team"), row.get("trade"))
                        for row in people}

    @classmethod
    def of(cls, store: Store, worker: str | None = None) -> Attributor:
        """From the database; with ``worker``, that worker's punches only (anybody else's, by card or by
        hand, is then unattributed, which is what a read of one worker's record wants)."""
        if worker is None:
            return cls(store.card_windows(), store.people())
        return cls(store.card_windows(worker), store.people_named([worker]), only=worker)

    def attribute(self, punch: dict) -> Attribution:
        if punch["source"] == "manual":
            worker = punch.get("worker")
            return Attribution(worker if self._only in (None, worker) else None, None)
        holder = self.cards.holder(punch.get("card"), punch["time"])
        return Attribution(holder.worker if holder else None, holder)

    def person(self, worker: str) -> Person:
        """The registered worker, or a person known only by id (a record kept after the registry lost
        them must still be readable)."""
        return self._people.get(worker) or Person(worker, None, None)
