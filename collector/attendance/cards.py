"""Which worker held a card at a moment: cards belong to workers over validity windows.

A replaced card keeps its old punches with the worker who held it then; a punch from a card that
nobody held at the time stays unattributed (and flagged) until a window covering it is registered.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Holder:
    worker: str
    name: str
    employer: str | None
    card_kind: str = "uid"  # how the card was registered: uid / bank / ntag424


class CardIndex:
    """Built from ``Store.card_windows()``; look-ups are in memory."""

    def __init__(self, windows: list[dict]):
        self._by_uid: dict[str, list[tuple[str, str | None, Holder]]] = {}
        for row in windows:
            self._by_uid.setdefault(row["uid"], []).append(
                (row["valid_from"] or "", row["valid_to"], Holder(row["worker"], row["name"], row["employer"],
                                                                  row.get("kind") or "uid")))
        for entries in self._by_uid.values():
            entries.sort(key=lambda e: e[0])
        self._starts = {uid: [e[0] for e in entries] for uid, entries in self._by_uid.items()}

    def holder(self, uid: str | None, moment: str) -> Holder | None:
        """The worker holding ``uid`` at ``moment`` (UTC text), or None."""
        entries = self._by_uid.get(uid or "")
        if not entries:
            return None
        index = bisect.bisect_right(self._starts[uid], moment) - 1
        if index < 0:
            return None
        start, end, holder = entries[index]
        if end is not None and moment >= end:
            return None
        return holder
