"""Disputes: a worker says a day of their record is wrong, and the bank must answer.

A dispute names one local date at one site and carries a short note in the worker's words. It is
answered once: **accepted**, when a correction fixes the day (a manual punch, or a void of a wrong
punch) and that correction is marked with the dispute's reference; or **rejected**, with a reason the
worker reads on their page. A pay period holding open disputes is not approved for payment unless an
override says why, and the override is kept (``dispute_overrides``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from collector.attendance.attribution import Attributor
from collector.attendance.reports import site_rules
from collector.errors import InputError
from collector.localtime import PLAUSIBLE_FROM, local
from collector.store import Store, StoreError
from collector.text import REASON_MAX_CHARS, TextError, entered

#: What a worker may write (a sentence, not a letter), and how many disputes may wait at once.
NOTE_MAX_CHARS = 200
MAX_OPEN_PER_WORKER = 20
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class DisputeError(InputError):
    """A dispute or an answer that cannot be recorded; one line for the worker or the operator."""


def clean_text(text: object, *, what: str, limit: int) -> str:
    """Text typed by a person, stripped; refused as ``collector.text`` refuses (empty, too long, control,
    direction-changing or invisible characters), in the words of a dispute."""
    try:
        return entered(text, what=what, limit=limit)
    except TextError as error:
        raise DisputeError(str(error)) from None


def file(store: Store, worker: str, *, site: str, day: str, note: object, via: str = "worker link",
         today: date | None = None) -> dict:
    """Record a dispute of the worker's day at the site (a date of a site the worker was assigned to)."""
    try:
        # Only YYYY-MM-DD: fromisoformat also takes ISO week dates ("2026-W49-1"), which no person means.
        when = date.fromisoformat(day) if isinstance(day, str) and _DAY.fullmatch(day) else None
    except ValueError:
        when = None
    if when is None:
        raise DisputeError("the day must be a date YYYY-MM-DD")
    if not isinstance(site, str) or site not in {a["site"] for a in store.assignments(worker=worker)}:
        raise DisputeError("the site is not one of your sites")
    tz = site_rules(store, site).tz
    today = today or datetime.now(UTC).astimezone(tz).date()
    if not (date.fromisoformat(PLAUSIBLE_FROM[:10]) <= when <= today):
        raise DisputeError(f"the day must be between 2020-01-01 and today ({today.isoformat()})")
    text = clean_text(note, what="the note", limit=NOTE_MAX_CHARS)
    try:
        return store.file_dispute(worker=worker, site=site, day=when.isoformat(), note=text, via=via,
                                  max_open=MAX_OPEN_PER_WORKER)
    except StoreError as error:
        raise DisputeError(str(error)) from None


def accept(store: Store, ref: str, *, by: str, punch_id: int | None = None, void_id: int | None = None,
           reason: str | None = None) -> dict:
    """Accept with a correction: ``punch_id`` a manual punch already entered for the worker at the site
    on the day (or the next, for a night shift), or ``void_id`` one of the worker's punches of that day,
    voided now with the reference if it is not void yet."""
    if (punch_id is None) == (void_id is None):
        raise DisputeError("an accepted dispute cites one correction: a manual punch (--punch ID) or a void (--void ID)")
    by = clean_text(by, what="--by", limit=100)
    dispute = _open(store, ref)
    tz = site_rules(store, dispute["site"]).tz
    day = date.fromisoformat(dispute["day"])
    target = punch_id if punch_id is not None else void_id
    punch = store.punch(target)
    if punch is None:
        raise DisputeError(f"there is no punch {target}")
    if punch["site"] != dispute["site"]:
        raise DisputeError(f"punch {target} is at site {punch['site']}, the dispute at {dispute['site']}")
    moment = local(punch["time"], tz)
    if moment is None or moment.date() not in (day, day + timedelta(days=1)):
        raise DisputeError(f"punch {target} is not on {dispute['day']} (or the night after) at {dispute['site']}")
    if punch_worker(store, punch) != dispute["worker"]:
        raise DisputeError(f"punch {target} is not the disputing worker's")
    if store.punch_dispute(target):
        raise DisputeError(f"punch {target} answers dispute {store.punch_dispute(target)} already")
    text = clean_text(reason, what="--reason", limit=REASON_MAX_CHARS) if reason else None
    with store.transaction():
        if punch_id is not None:
            if punch["source"] != "manual":
                raise DisputeError(f"punch {target} is a gate's punch: accept with --void {target}, or enter a "
                                   "manual punch (collector punch add) and cite it")
            if punch["void_at"]:
                raise DisputeError(f"manual punch {target} is void")
            answer = text or f"manual punch {target} added by {punch['manual_by']}: {punch['manual_reason']}"
            return store.answer_dispute(ref, status="accepted", by=by, answer=answer, kind="manual", punch_id=target)
        answer = text or f"punch {target} voided"
        if not punch["void_at"]:
            store.void_punch(target, reason=f"dispute {ref}: {answer}", by=by)
        return store.answer_dispute(ref, status="accepted", by=by, answer=answer, kind="void", punch_id=target)


def reject(store: Store, ref: str, *, by: str, reason: object) -> dict:
    """Reject with a reason the worker reads."""
    by = clean_text(by, what="--by", limit=100)
    text = clean_text(reason, what="--reason", limit=REASON_MAX_CHARS)
    _open(store, ref)
    return store.answer_dispute(ref, status="rejected", by=by, answer=text)


def _open(store: Store, ref: str) -> dict:
    dispute = store.dispute(ref)
    if dispute is None:
        raise DisputeError(f"there is no dispute {ref}")
    if dispute["status"] != "open":
        raise DisputeError(f"dispute {ref} is {dispute['status']} already ({dispute['answered_at']}, "
                           f"by {dispute['answered_by']})")
    return dispute


def punch_worker(store: Store, punch: dict) -> str | None:
    """Whose punch this is: the manual punch's worker, or whoever held the card at that time."""
    return Attributor.of(store).attribute(punch).worker


def open_in_period(store: Store, site: str, period: str) -> list[dict]:
    """The open disputes of days in the month ``period`` (YYYY-MM) at the site."""
    if not store.has("worker_access"):
        return []
    return store.disputes(site=site, status="open", first_day=f"{period}-01", last_day=f"{period}-31")


def check_approval(store: Store, site: str, period: str, *, table_version: int, override_reason: str | None,
                   by: str) -> list[str]:
    """Before a period is approved: refuse (DisputeError) while disputes of it are open, unless
    ``override_reason`` says why; the override is recorded. Returns the references overridden."""
    refs = [d["ref"] for d in open_in_period(store, site, period)]
    if not refs:
        return []
    if override_reason is None:
        raise DisputeError(f"{site} {period} has {len(refs)} open dispute(s): {', '.join(refs[:10])}; answer them "
                           "(collector disputes answer) or approve with --override-disputes --reason TEXT")
    reason = clean_text(override_reason, what="--reason", limit=REASON_MAX_CHARS)
    store.record_dispute_override(site=site, period=period, table_version=table_version, refs=refs, reason=reason,
                                  by=by)
    return refs

