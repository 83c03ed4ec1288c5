"""Retention: what may be pruned, and what the regulation says must be kept.

Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15: the wage payment ledger is kept
at least 3 years; Art. 28: the employment records until the project's wages are settled, and 3 years
more. So, per site and month (the period a row belongs to):

- **wages** (the wage tables with every version and line, deductions, employer sheets, payment batches
  and credits) are kept until 3 years after the month's last day, and beyond that for as long as the
  month is not settled (a credit still at the bank, no approved table, or a line not paid in full).
  Past both, `collector prune --what wages` deletes the month, all of it or nothing.
- **punches** (gate and manual, with voids; the evidence under the wage lines) are kept 3 years after
  the month of their local date and are never deleted by prune even past that: each gate's chain is
  held from its first punch, and a deleted prefix would read as a gap the gate is asked to resend.
- **quarantine** rows (refused messages, not evidence of anything paid) and the hourly quarantine tally
  may be pruned up to any past date; the counters keep every total.

Asked to prune what must be kept, prune refuses all of it, names each site, month and the date it is
kept until, and deletes nothing. Everything pruned is recorded in ``retention_log`` (who, when, what,
up to which date, how many rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from collector.wages.table import period_bounds

from .errors import CollectorError
from .localtime import local, zone
from .store import Store

#: Years the wage ledger and what it rests on are kept after the period (Art. 15 and 28).
RETENTION_YEARS = 3
#: What prune can be asked for; the default is only what may go.
KINDS = ("quarantine", "wages", "punches")


class RetentionError(CollectorError):
    """A prune that cannot be done as asked; the message says why."""


class PruneRefused(RetentionError):
    """Asked to prune what must be kept: nothing was deleted."""

    def __init__(self, plan: dict):
        self.plan = plan
        super().__init__(f"refused, nothing deleted: {len(plan['refused'])} reason(s)\n" + "\n".join(plan["refused"]))


def kept_until(period: str) -> date:
    """The last day a month's records are kept: 3 years after its last day (29 February -> 28th); they may
    go the day after."""
    _, last = period_bounds(period)
    try:
        return last.replace(year=last.year + RETENTION_YEARS)
    except ValueError:  # 29 February
        return last.replace(year=last.year + RETENTION_YEARS, day=28)


@dataclass
class Plan:
    before: date
    today: date
    what: tuple[str, ...]
    quarantine: dict[str, int] = field(default_factory=dict)
    wages: list[dict] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"before": self.before.isoformat(), "today": self.today.isoformat(), "what": list(self.what),
                "quarantine": self.quarantine, "wages": self.wages, "refused": self.refused}


def plan(store: Store, before: date, what: tuple[str, ...], *, today: date | None = None) -> Plan:
    """What pruning everything before ``before`` would delete, and what it must refuse."""
    today = today or datetime.now(UTC).date()
    unknown = sorted(set(what) - set(KINDS))
    if unknown or not what:
        raise RetentionError(f"prune what? one or more of {', '.join(KINDS)}")
    if before > today:
        raise RetentionError(f"--before {before} is in the future (today is {today})")
    cutoff = f"{before.isoformat()}T00:00:00.000Z"
    result = Plan(before=before, today=today, what=tuple(k for k in KINDS if k in what))
    if "quarantine" in what:
        result.quarantine = store.quarantine_counts_before(cutoff)
    if "wages" in what:
        for site, period in store.wage_periods_before(before.strftime("%Y-%m")):
            until = kept_until(period)
            counts = store.wage_period_counts(site, period)
            held = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
            if until >= today:
                result.refused.append(f"wages of {site} {period} ({held}): kept until {until} (Art. 15/28: at least "
                                      f"{RETENTION_YEARS} years after the period)")
                continue
            unsettled = store.wage_period_unsettled(site, period)
            if unsettled:
                result.refused.append(f"wages of {site} {period} ({held}): not settled ({unsettled}); kept until "
                                      f"settled and {RETENTION_YEARS} years more (Art. 28)")
                continue
            result.wages.append({"site": site, "period": period, "kept_until": until.isoformat(), "rows": counts})
    if "punches" in what:
        for span in store.punch_span_before(cutoff):
            site = store.site(span["site"])
            last_day = local(span["last"], zone(site["timezone"])).date()
            until = kept_until(last_day.strftime("%Y-%m"))
            if until >= today:
                result.refused.append(f"punches of {span['site']} before {before} ({span['punches']}, the last on "
                                      f"{last_day}): kept until {until} (Art. 15/28: the attendance the wage ledger "
                                      f"rests on, at least {RETENTION_YEARS} years)")
            else:
                result.refused.append(f"punches of {span['site']} before {before} ({span['punches']}): past their "
                                      "retention, but prune never deletes punches: each gate's chain is held from its "
                                      "first punch, and a deleted prefix would read as a gap")
    return result


def prune(store: Store, before: date, what: tuple[str, ...], *, by: str, dry_run: bool = False,
          today: date | None = None) -> Plan:
    """Delete what ``plan`` allows and record it in the retention log; refuse all of it (PruneRefused)
    when asked for anything that must be kept."""
    if not (by or "").strip():
        raise RetentionError("say who prunes (--by)")
    with store.transaction():
        result = plan(store, before, what, today=today)
        if result.refused:
            raise PruneRefused(result.as_dict())
        if dry_run:
            return result
        cutoff = before.isoformat()
        if "quarantine" in result.what:
            deleted = store.delete_quarantine_before(f"{cutoff}T00:00:00.000Z")
            store.log_retention(by=by.strip(), what="quarantine", cutoff=cutoff, rows=sum(deleted.values()),
                                detail=deleted)
        if "wages" in result.what:
            detail = {}
            for month in result.wages:
                detail[f"{month['site']} {month['period']}"] = store.delete_wage_period(month["site"], month["period"])
            store.log_retention(by=by.strip(), what="wages", cutoff=cutoff,
                                rows=sum(sum(c.values()) for c in detail.values()), detail=detail)
    return result
