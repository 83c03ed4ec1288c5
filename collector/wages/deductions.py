"""Deductions from a worker's wages for a period: recorded with item, reason and who, and taken back by a
reversal with who and why (kept, shown reversed; never deleted). The same deduction entered twice is
what a slip of the hand or a second import looks like: recorded, with a warning naming the first."""

from __future__ import annotations

import logging

from collector.store import Store
from collector.text import NAME_MAX_CHARS, entered
from collector.wages.table import WageError, period_bounds

log = logging.getLogger(__name__)


class DeductionError(WageError):
    """A deduction that cannot be recorded or reversed; the message says why."""


def add(store: Store, *, site: str, period: str, worker: str, item: str, amount_fen: int, reason: str,
        by: str) -> dict:
    """Record a deduction an operator enters; returns it (``id``) with ``identical``: the deductions in
    force already for the same worker, period, item and amount (a warning, not a refusal: two equal
    deductions can both be right)."""
    period_bounds(period)
    by = entered(by, what="who adds the deduction", limit=NAME_MAX_CHARS)
    with store.transaction():
        if store.site(site) is None:
            raise DeductionError(f"site {site} does not exist")
        item = entered(item, what="the deduction's item", limit=NAME_MAX_CHARS)
        identical = [row for row in store.deductions(site, period, worker=worker)
                     if row["item"] == item and row["amount_fen"] == amount_fen]
        number = store.add_deduction(site=site, period=period, worker=worker, item=item, amount_fen=amount_fen,
                                     reason=reason, source=f"operator {by}", by=by)
    if identical:
        log.info("deduction %s of %s %s %s is identical to deduction(s) %s", number, site, period, worker,
                 ", ".join(str(row["id"]) for row in identical))
    return {**store.deduction(number), "identical": identical}


def reverse(store: Store, deduction_id: int, *, reason: str, by: str) -> dict:
    """Take a deduction back, with who and why: the next version of its period's table no longer deducts
    it, and its line shows it reversed. Returns the deduction as now recorded."""
    row = store.deduction(deduction_id)
    if row is None:
        raise DeductionError(f"there is no deduction {deduction_id} (collector wages deductions --site S --period P)")
    reversed_row = store.reverse_deduction(deduction_id, reason=reason, by=by)
    log.info("deduction %s of %s %s %s reversed by %s", deduction_id, row["site"], row["period"], row["worker"], by)
    return reversed_row
