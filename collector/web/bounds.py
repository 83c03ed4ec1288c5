"""How much of `collector serve` one credential and one site may hold at once: requests in the works.

A request's work runs in a thread of a small shared pool, and reading a worker's page or a site's figures
can take seconds on a large bank. Unbounded, ten concurrent loads by one worker made another worker's page
wait 154 s. So a request holds a slot for as long as its work runs, and is refused at once when its
credential or its site already holds as many as allowed:

- ``credential``: a bearer token, a foreman's sign-in session, a worker (all the browsers of one worker's
  link together), and, before any of these is looked up, the secret as presented (so a flood with one
  value never reaches the database); past ``per_credential`` the answer is 429: the caller's own requests
  are what it waits for.
- ``site``: the site a request reads (a site token's or session's, or the sites a worker is assigned to
  now), so one site's crowd leaves the pool to the others; past ``per_site`` the answer is 503. Bank
  tokens are counted per token only: the bank is never shut out of a site it must look at.

A slot is given back when the request's work ends, however it ends (an answer, an error, a client that
went away: a thread's work cannot be stopped, so it keeps its slot until it finishes). Counts live in the
serving process's memory; each refusal is counted by reason for /metrics. Thread-safe: slots are taken on
the event loop (before any thread is used) and in the request's thread (once the worker is known).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

#: What a refused client is told to wait: a request's work takes milliseconds to seconds.
RETRY_SECONDS = 2
#: Why a request was refused (the label of collector_web_refusals_total): its credential's slots, its
#: site's, the live streams' (collector/web/app.py), or a live stream's round put off for its site.
REASONS = ("credential", "site", "live_streams", "live_round")


@dataclass(frozen=True)
class Refused(Exception):
    """No slot: ``reason`` is "credential" or "site", ``limit`` the bound that was reached."""

    reason: str
    limit: int


class Bounds:
    """Slots held per credential and per site, and refusals counted by reason."""

    def __init__(self, per_credential: int, per_site: int):
        if per_credential < 1 or per_site < 1:
            raise ValueError("a bound is at least 1")
        self.per_credential, self.per_site = per_credential, per_site
        self._held: Counter[tuple[str, Hashable]] = Counter()
        self._working = 0
        self._refused: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, *, credential: Hashable | None = None, sites: Iterable[str] = ()) -> Callable[[], None]:
        """A slot of ``credential`` and of each site, all or none; returns its release (idempotent).
        Refused (counted) when one of them holds its bound already."""
        keys = ([("credential", credential)] if credential is not None else []) + \
            [("site", site) for site in sorted(set(sites))]
        with self._lock:
            for key in keys:
                limit = self.per_credential if key[0] == "credential" else self.per_site
                if self._held[key] >= limit:
                    self._refused[key[0]] += 1
                    raise Refused(key[0], limit)
            for key in keys:
                self._held[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                for key in keys:
                    self._held[key] -= 1
                    if not self._held[key]:
                        del self._held[key]

        return release

    def count(self, reason: str) -> None:
        """A refusal decided elsewhere (a live stream), counted with these."""
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        with self._lock:
            self._refused[reason] += 1

    def start(self) -> Callable[[], None]:
        """A request of a guarded route is being worked on (the gauge of /metrics); returns its end."""
        with self._lock:
            self._working += 1
        ended = False

        def end() -> None:
            nonlocal ended
            with self._lock:
                if not ended:
                    ended = True
                    self._working -= 1

        return end

    def held(self, *, credential: Hashable | None = None, site: str | None = None) -> int:
        """Slots held now by this credential or this site."""
        with self._lock:
            return self._held[("credential", credential)] if site is None else self._held[("site", site)]

    def snapshot(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """(refusals by reason, every reason present, since the process started; requests being worked on;
        slots held per site now, the sites holding any)."""
        with self._lock:
            return ({reason: self._refused[reason] for reason in REASONS}, self._working,
                    {key[1]: held for key, held in sorted(self._held.items()) if key[0] == "site"})

    def idle(self) -> bool:
        """No slot is held (what every test ends with: nothing leaks)."""
        with self._lock:
            return not self._held and self._working == 0
