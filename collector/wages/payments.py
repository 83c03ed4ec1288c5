"""Paying an approved wage table: what a batch pays, and the bank's return recorded against it.

The rules (Regulations on Ensuring Payment of Wages to Migrant Workers, Art. 15 and 31):

- Only the period's approved version is paid, never a draft and never a version computed but not
  approved; a correction computed after the approval must be approved before anything more is paid.
- One credit per payable line, for what is still owed on it: the line's net less what the worker's
  pending and paid credits of the period already hold (a failed credit is owed again). So a corrected
  version pays only the difference, and a line is never paid twice. A worker whose credits hold more
  than the approved net is listed for a decision, never given a negative credit; a line held at the
  approval (it needed a decision) is not paid.
- Same period, same file: a batch is recorded with everything its file says (message id from site,
  period, version and batch number; creation time; requested execution date; the payer), so asking
  again when nothing more is owed writes the same bytes and records nothing. A new batch of the same
  version is made only for what became owed since (a credit the bank returned as failed). A credit the
  bank refused for its payee (account closed, 户名不符) is held until the approved line names another
  payee (collector/wages/refused.py).
- A bank's return settles pending credits once each: all of it is recorded, or (any refusal) none.
- Corrections leave a trail, nothing is deleted: a credit of a batch written but never sent is
  withdrawn (the whole batch, or one credit while none of its batch is settled), a paid credit the bank
  returned later (退汇) is reversed with the return's reference and date; each with who and why, and
  what it held is owed again (paid in the next batch; overdue past the pay day, with Art. 27's warning).
  A batch is written again without its withdrawn credits, never with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from collector import masking
from collector.localtime import local, local_text, to_local, zone
from collector.money import yuan
from collector.store import Store, StoreError
from collector.text import NAME_MAX_CHARS, REASON_MAX_CHARS, TextError, entered
from collector.wages.refused import hold_refused
from collector.wages.table import WageError, period_bounds
from collector.wages.workdays import PayDate, WorkCalendar, pay_date
from gate_agent.protocol import quoted, utc_now_text

log = logging.getLogger(__name__)

#: ISO 20022 Max35Text: the longest message or end-to-end id.
MAX_ID = 35


class PaymentError(WageError):
    """A batch or a return that cannot be made or recorded; the message says why."""


class ReturnRefused(PaymentError):
    """A bank's return with at least one line that cannot be recorded: nothing of it was recorded."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} line(s) refused, nothing recorded\n" + "\n".join(problems))


# ================================================================================== ids


def message_id(site: str, period: str, version: int, seq: int) -> str:
    """``S1-202610-V2-B1``: readable when it fits ISO 20022's 35 characters, else a digest of the same."""
    part = site if len(site) <= 16 else site[:7] + _digest(site)[:8]
    text = f"{part}-{period.replace('-', '')}-V{version}-B{seq}"
    return text if len(text) <= MAX_ID else "W" + _digest(f"{site}|{period}|{version}|{seq}")[:MAX_ID - 1]


def end_to_end_id(batch_id: str, position: int) -> str:
    text = f"{batch_id}-{position:04d}"
    return text if len(text) <= MAX_ID else f"{_digest(batch_id)[:20]}-{position:04d}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest().upper()


# ================================================================================== the batch


@dataclass
class Batch:
    """A batch as its file shows it, and what the request found besides."""

    batch: dict            # the wage_batches row with its ``payments`` (those it holds: none withdrawn)
    table: dict            # the version it pays, with its lines
    new: bool              # made now (False: the same batch again)
    held: list[dict]       # approved lines not paid: they needed a decision
    overpaid: list[dict]   # workers whose credits hold more than the approved net: for a decision
    withdrawn: list[dict] = dataclasses.field(default_factory=list)  # its credits withdrawn (not in the file)
    warned: list[dict] = dataclasses.field(default_factory=list)  # credits into an account the bank refused as frozen
    pay_date: PayDate | None = None  # made now: the pay day and the working day it is paid on (Art. 14)

    @property
    def credits(self) -> list[dict]:
        """Each credit with the line it pays (name, account, bank, ID number of the approved version)."""
        lines = {line["worker"]: line for line in self.table["lines"]}
        return [{**payment, "line": lines[payment["worker"]]} for payment in self.batch["payments"]]

    @property
    def total_fen(self) -> int:
        return sum(p["amount_fen"] for p in self.batch["payments"])


def approved_table(store: Store, site: str, period: str) -> dict:
    """The version a batch pays; PaymentError says why there is none."""
    period_bounds(period)
    if store.site(site) is None:
        raise StoreError(f"site {site} does not exist")
    versions = store.wage_tables(site, period)
    if not versions:
        raise PaymentError(f"{site} {period} has no wage table (collector wages run, then approve)")
    approved = [t for t in versions if t["status"] == "approved"]
    latest = versions[-1]
    if not approved:
        if latest["status"] == "draft":
            raise PaymentError(f"{site} {period} version {latest['version']} is a draft (the period was not final): "
                               "a draft is never paid")
        raise PaymentError(f"{site} {period} version {latest['version']} is not approved (collector wages approve): "
                           "only an approved table is paid")
    table = approved[-1]
    newer = [t for t in versions if t["version"] > table["version"] and t["status"] == "computed"]
    if newer:
        raise PaymentError(f"{site} {period} version {newer[-1]['version']} (a correction) is computed but not "
                           f"approved; approve it before paying more than version {table['version']}")
    return store.wage_table(site, period, table["version"])


#: What a batch debits, frozen in the approved version (wage_tables) and set by `site pay-day` (site_pay).
PAYER = (("--payer-account", "payer_account"), ("--payer-name", "payer_name"), ("--payer-bank", "payer_bank"))


def payer(store: Store, table: dict) -> dict:
    """The special wage account paid from (Art. 26, 31): the one frozen in the approved version, never the
    site's current row. A site whose payer in force on the period's last day is no longer that one is
    refused: a change of payer needs a new approval."""
    site, period, version = table["site"], table["period"], table["version"]
    _, last = period_bounds(period)
    frozen = {key: table.get(key) for _, key in PAYER}
    missing = [option for option, key in PAYER if not frozen[key]]
    if missing:
        raise PaymentError(f"{site} had no {', '.join(missing)} in force on {last} when {period} version {version} "
                           f"was approved, and a batch debits only the approved payer: set it (collector site pay-day "
                           f"{site} --payer-account ... --payer-name ... --payer-bank ...), then compute and approve a "
                           "new version (collector wages run --reason ..., collector wages approve)")
    row = store.site_pay_in_force(site, last.isoformat()) or {}
    if any(row.get(key) != frozen[key] for _, key in PAYER):
        raise PaymentError(
            f"{site}'s payer changed after {period} version {version} was approved: approved "
            f"{_payer_text(frozen)}, now {_payer_text(row)}"
            + (f" (set {row['added_at']} by {row['added_by']})" if row else "")
            + "; nothing written. A batch debits only the payer approved: compute and approve a new version to pay "
            "from the new one (collector wages run --reason ..., collector wages approve), or set the approved "
            "payer back (collector site pay-day)")
    return frozen


def _payer_text(row: dict) -> str:
    return (f"account {masking.account(row.get('payer_account')) or '-'} ({row.get('payer_name') or '-'}, "
            f"{row.get('payer_bank') or '-'})")


def owed(table: dict, payments: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(credits owed now, held lines, overpaid workers) for an approved table and the period's credits so
    far. Credits are ordered by worker; each is ``{"worker", "amount_fen"}``."""
    outstanding: dict[str, int] = {}
    for payment in payments:
        if payment["status"] in ("pending", "paid"):
            outstanding[payment["worker"]] = outstanding.get(payment["worker"], 0) + payment["amount_fen"]
    lines = {line["worker"]: line for line in table["lines"]}
    credits, held, overpaid = [], [], []
    for worker in sorted(set(lines) | set(outstanding)):
        line, holds = lines.get(worker), outstanding.get(worker, 0)
        if line is not None and line["status"] != "payable":
            held.append({"worker": worker, "status": line["status"], "flags": line["flags"], "outstanding_fen": holds})
            continue
        target = line["net_fen"] if line is not None else 0
        if target > holds:
            credits.append({"worker": worker, "amount_fen": target - holds})
        elif target < holds:
            overpaid.append({"worker": worker, "approved_fen": target, "outstanding_fen": holds,
                             "over_fen": holds - target, "in_table": line is not None})
    return credits, held, overpaid


def make_batch(store: Store, site: str, period: str, *, by: str, now: datetime | None = None,
               again: str | None = None) -> Batch:
    """The batch to send for the period: a new one for what is owed now (recorded as made ``by``), or,
    when nothing more is owed, the approved version's latest batch again (the same file, without any
    credit withdrawn from it); with ``again``, that batch of the period again, whatever is owed. Must run
    inside ``store.transaction()`` together with writing the file, so that a file that cannot be written
    records nothing."""
    by = entered(by, what="who makes the batch", limit=NAME_MAX_CHARS)
    now = now or datetime.now(UTC)
    store.lock_wage_period(site, period)
    if again is not None:
        return _again(store, site, period, again)
    table = approved_table(store, site, period)
    version = table["version"]
    payments = store.wage_payments(site, period)
    credits, held, overpaid = owed(table, payments)
    credits, refused, warned = hold_refused(store, table, payments, credits)  # the same payee refused: held
    held += refused
    earlier = store.wage_batches(site, period, version)
    if not credits:
        sendable = [b for b in earlier if _holds(store.wage_batch(b["batch_id"]))]
        if not sendable:
            raise PaymentError(f"{site} {period} version {version}: nothing to pay (every payable line is paid or "
                               "at the bank already, or none is payable); no file written"
                               + _decisions(held, overpaid))
        return _kept(store.wage_batch(sendable[-1]["batch_id"]), table, held, overpaid)  # nothing made: no warning
    source = payer(store, table)
    seq = len(earlier) + 1
    batch_id = message_id(site, period, version, seq)
    tz = zone(store.site(site)["timezone"])
    today = to_local(now, tz).date()
    lines = {line["worker"]: line for line in table["lines"]}
    due = min(date.fromisoformat(lines[c["worker"]]["detail"].get("pay_day") or table["pay_day"]) for c in credits)
    # A pay day on a rest day or holiday is paid on the working day before it (Art. 14).
    paid_on = pay_date(WorkCalendar.of(store, site), due)
    if paid_on.date >= today:
        execution, rule = paid_on.date, ("working_day_before" if paid_on.moved else "pay_day")
    else:
        execution, rule = today, "batch_date"
    row = {"batch_id": batch_id, "site": site, "period": period, "table_version": version, "seq": seq,
           # The first batch of a version is created by its approval; a later one when it was first made.
           "created": table["approved_at"] if seq == 1 else utc_now_text(),
           "execution_date": execution.isoformat(), "execution_rule": rule, "made_by": by, **source}
    payments = [{"worker": c["worker"], "amount_fen": c["amount_fen"], "position": n,
                 "end_to_end_id": end_to_end_id(batch_id, n)} for n, c in enumerate(credits, start=1)]
    store.add_wage_batch(row, payments)
    log.info("wage batch %s: %d credit(s), %s yuan", batch_id, len(payments), yuan(sum(c["amount_fen"] for c in credits)))
    return Batch(store.wage_batch(batch_id), table, True, held, overpaid, warned=warned, pay_date=paid_on)


def _holds(batch: dict) -> bool:
    return any(p["status"] != "withdrawn" for p in batch["payments"])


def _kept(batch: dict, table: dict, held: list[dict], overpaid: list[dict]) -> Batch:
    """A batch made before, as its file is written again: without the credits withdrawn from it."""
    withdrawn = [p for p in batch["payments"] if p["status"] == "withdrawn"]
    batch = {**batch, "payments": [p for p in batch["payments"] if p["status"] != "withdrawn"]}
    return Batch(batch, table, False, held, overpaid, withdrawn)


def _again(store: Store, site: str, period: str, batch_id: str) -> Batch:
    """A batch of the period written again as asked (``wages batch --again``): its credits still held."""
    batch = store.wage_batch(batch_id)
    if batch is None or (batch["site"], batch["period"]) != (site, period):
        raise PaymentError(f"{quoted(batch_id)} is not a batch of {site} {period} (collector wages batches)")
    if not _holds(batch):
        raise PaymentError(f"batch {batch_id} holds no credit: every one was withdrawn; nothing written")
    table = store.wage_table(site, period, batch["table_version"])
    return _kept(batch, table, [], [])


def _decisions(held: list[dict], overpaid: list[dict]) -> str:
    notes = [f"; {o['worker']} holds {yuan(o['outstanding_fen'])} yuan in credits, {yuan(o['over_fen'])} more than "
             "the approved net (for a decision)" for o in overpaid]
    notes += [f"; {h['worker']} held ({h['status']}" + (f": {h['why']}" if h.get("why") else "") + ")" for h in held]
    return "".join(notes)


def created_time(batch: dict, tz_name: str) -> str:
    """The file's creation time, local to the site with its offset, to the second."""
    return local_text(batch["created"], zone(tz_name))


# ================================================================================== the bank's return


def _entered_problem(entry: dict) -> str | None:
    """The bank's voucher and reason go onto the worker's slip: checked as any entered text."""
    for field, limit in (("voucher", NAME_MAX_CHARS), ("reason", REASON_MAX_CHARS)):
        try:
            entered(entry.get(field), what=f"the {field}", limit=limit, optional=True)
        except TextError as error:
            return f"is refused: {error}"
    return None


def _paid_date_problem(store: Store, entry: dict, payment: dict, batches: dict[str, tuple[date, date]]) -> str | None:
    """A credit is paid on a day from the one its batch was made on to today, both in the site's zone: a
    date before the batch (2000-01-01) would show it paid to ``arrears --as-of`` days it was owed, one to
    come would show it paid before it is. ``batches`` keeps each batch's two days for the return."""
    if entry.get("status") != "paid" or not entry.get("date"):
        return None
    if payment["batch_id"] not in batches:
        tz = zone(store.site(payment["site"])["timezone"])
        created = local(store.wage_batch(payment["batch_id"])["created"], tz)
        batches[payment["batch_id"]] = (created.date() if created else date.min, datetime.now(UTC).astimezone(tz).date())
    made, today = batches[payment["batch_id"]]
    paid = date.fromisoformat(entry["date"])
    if paid < made:
        return f"is paid on {paid} in the return, before its batch {payment['batch_id']} was made ({made})"
    if paid > today:
        return f"is paid on {paid} in the return, a day still to come (today is {today} at the site)"
    return None


def record_return(store: Store, entries: list[dict], *, source: str, digest: str, kind: str, by: str) -> list[dict]:
    """Settle pending credits from a parsed return (collector/wages/bankreturn.py): every entry, or none,
    each kept with who recorded it (``by``). An entry is ``{"where", "end_to_end_id" | "batch_id",
    "status", "voucher", "date", "reason", "amount_fen"}``; one naming a batch settles each of its pending
    credits. Returns what was recorded."""
    by = entered(by, what="who records the bank's return", limit=NAME_MAX_CHARS)
    problems: list[str] = []
    settle: list[dict] = []
    with store.transaction():
        expanded = []
        for entry in entries:
            if entry.get("problem"):
                problems.append(entry["problem"])
            elif entry.get("batch_id") is not None:
                batch = store.wage_batch(entry["batch_id"])
                if batch is None:
                    problems.append(f"{entry['where']}: {quoted(entry['batch_id'])} is not a batch of ours")
                    continue
                pending = [p for p in batch["payments"] if p["status"] == "pending"]
                if not pending:
                    problems.append(f"{entry['where']}: batch {batch['batch_id']} has no pending credit left")
                expanded += [{**entry, "end_to_end_id": p["end_to_end_id"], "batch_id": None} for p in pending]
            else:
                expanded.append(entry)
        ids = [e["end_to_end_id"] for e in expanded]
        held = store.payments_by_end_to_end(list(dict.fromkeys(ids)))
        seen: dict[str, str] = {}
        batches: dict[str, tuple[date, date]] = {}
        for entry in expanded:
            e2e, where = entry["end_to_end_id"], entry["where"]
            payment = held.get(e2e)
            if e2e in seen:
                problems.append(f"{where}: {quoted(e2e)} is settled twice in this return (first at {seen[e2e]})")
                continue
            seen[e2e] = where
            if payment is None:
                problems.append(f"{where}: {quoted(e2e)} is not a credit of any batch")
                continue
            if payment["status"] == "paid":
                problems.append(f"{where}: {e2e} was recorded paid already on {payment['paid_on']} (voucher "
                                f"{quoted(payment['voucher'])}): a credit is paid once")
                continue
            if payment["status"] in ("withdrawn", "reversed"):
                problems.append(f"{where}: {e2e} was {payment['status']} on {payment['undone_at']} by "
                                f"{payment['undone_by']} ({quoted(payment['undone_reason'], 60)}): "
                                + ("it was never sent" if payment["status"] == "withdrawn"
                                   else "the bank returned it after paying it"))
                continue
            if payment["status"] == "failed":
                problems.append(f"{where}: {e2e} was recorded failed already ({quoted(payment['reason'], 60)}); what "
                                "it owed goes in a later batch under a new id")
                continue
            if entry.get("in_batch") is not None and entry["in_batch"] != payment["batch_id"]:
                problems.append(f"{where}: {e2e} is a credit of batch {payment['batch_id']}, not of "
                                f"{quoted(entry['in_batch'])} as the report says")
                continue
            if entry.get("amount_fen") is not None and entry["amount_fen"] != payment["amount_fen"]:
                problems.append(f"{where}: {e2e} is {yuan(entry['amount_fen'])} yuan in the return but "
                                f"{yuan(payment['amount_fen'])} in batch {payment['batch_id']}")
                continue
            problem = _entered_problem(entry) or _paid_date_problem(store, entry, payment, batches)
            if problem:
                problems.append(f"{where}: {e2e} {problem}")
                continue
            settle.append({**entry, "payment": payment})
        if problems:
            raise ReturnRefused(source, problems)
        for entry in settle:
            store.settle_payment(entry["end_to_end_id"], status=entry["status"], voucher=entry.get("voucher"),
                                 paid_on=entry.get("date"), reason=entry.get("reason"),
                                 settled_from=f"{kind} sha256:{digest}", by=by)
    log.info("bank return %s: %d credit(s) settled", source, len(settle))
    return [{"end_to_end_id": e["end_to_end_id"], "batch_id": e["payment"]["batch_id"], "site": e["payment"]["site"],
             "period": e["payment"]["period"], "worker": e["payment"]["worker"],
             "amount_fen": e["payment"]["amount_fen"], "status": e["status"], "voucher": e.get("voucher"),
             "paid_on": e.get("date"), "reason": e.get("reason"), "settled_by": by} for e in settle]


# ================================================================================== corrections


def _credit(payment: dict) -> dict:
    return {k: payment.get(k) for k in ("end_to_end_id", "batch_id", "site", "period", "worker", "amount_fen", "status",
                                        "voucher", "paid_on", "undone_at", "undone_by", "undone_reason",
                                        "returned_ref", "returned_on")}


def withdraw(store: Store, *, batch_id: str | None = None, end_to_end_id: str | None = None, reason: str,
             by: str) -> list[dict]:
    """Withdraw a batch written but never sent (each of its credits), or one credit of it, with who and
    why: what they held is owed again (the next batch pays it, to the payee of the version approved
    then), and a return naming them is refused. A batch with a credit the bank has answered was sent:
    refused, as is a credit that is not pending. Returns the credits withdrawn."""
    if (batch_id is None) == (end_to_end_id is None):
        raise PaymentError("withdraw a batch or one credit of it (one of the two)")
    reason = entered(reason, what="the reason for the withdrawal", limit=REASON_MAX_CHARS)
    by = entered(by, what="who withdraws", limit=NAME_MAX_CHARS)
    with store.transaction():
        if end_to_end_id is not None:
            payment = store.payments_by_end_to_end([end_to_end_id]).get(end_to_end_id)
            if payment is None:
                raise PaymentError(f"{quoted(end_to_end_id)} is not a credit of any batch (collector wages batches)")
            batch_id = payment["batch_id"]
        batch = store.wage_batch(batch_id)
        if batch is None:
            raise PaymentError(f"{quoted(batch_id)} is not a batch of ours (collector wages batches)")
        store.lock_wage_period(batch["site"], batch["period"])
        batch = store.wage_batch(batch_id)
        answered = [p for p in batch["payments"] if p["status"] in ("paid", "failed", "reversed")]
        if answered:
            first = answered[0]
            raise PaymentError(f"batch {batch_id} was sent: the bank's return recorded {first['end_to_end_id']} "
                               f"{first['status']}" + (f" on {first['settled_at']} by {first['settled_by']}"
                                                       if first.get("settled_at") else "")
                               + "; only a batch never sent is withdrawn (a credit the bank paid and returned "
                               "later is reversed: collector wages reverse)")
        chosen = [p for p in batch["payments"] if end_to_end_id is None or p["end_to_end_id"] == end_to_end_id]
        pending = [p for p in chosen if p["status"] == "pending"]
        if not pending:
            what = f"credit {end_to_end_id} was" if end_to_end_id else f"every credit of batch {batch_id} was"
            done = chosen[0]
            raise PaymentError(f"{what} withdrawn already on {done['undone_at']} by {done['undone_by']} "
                               f"({quoted(done['undone_reason'], 60)})")
        store.withdraw_payments([p["end_to_end_id"] for p in pending], reason=reason, by=by)
        found = store.payments_by_end_to_end([p["end_to_end_id"] for p in pending])
    log.info("batch %s: %d credit(s) withdrawn by %s", batch_id, len(pending), by)
    return [_credit(found[p["end_to_end_id"]]) for p in pending]


def reverse(store: Store, end_to_end_id: str, *, reference: str, returned_on: date, reason: str, by: str) -> dict:
    """A paid credit the bank returned later (退汇: the receiving bank sent it back, the account was frozen
    ...), recorded with the return's reference and its date (the site's local date, from the day it was
    paid to today), who and why: the amount is owed again, overdue past the pay day (arrears warn).
    Returns the credit as now recorded."""
    reference = entered(reference, what="the return's reference (--reference)", limit=NAME_MAX_CHARS)
    reason = entered(reason, what="the reason for the reversal", limit=REASON_MAX_CHARS)
    by = entered(by, what="who records the reversal", limit=NAME_MAX_CHARS)
    with store.transaction():
        payment = store.payments_by_end_to_end([end_to_end_id]).get(end_to_end_id)
        if payment is None:
            raise PaymentError(f"{quoted(end_to_end_id)} is not a credit of any batch (collector wages batches)")
        store.lock_wage_period(payment["site"], payment["period"])
        if payment["status"] == "reversed":
            raise PaymentError(f"{end_to_end_id} was reversed already on {payment['undone_at']} by "
                               f"{payment['undone_by']} (return {quoted(payment['returned_ref'])})")
        if payment["status"] != "paid":
            raise PaymentError(f"{end_to_end_id} is {payment['status']}, not paid: only a credit the bank paid is "
                               "reversed" + (" (a credit never sent is withdrawn: collector wages withdraw)"
                                             if payment["status"] == "pending" else ""))
        today = datetime.now(UTC).astimezone(zone(store.site(payment["site"])["timezone"])).date()
        paid = date.fromisoformat(payment["paid_on"]) if payment["paid_on"] else None
        if paid is not None and returned_on < paid:
            raise PaymentError(f"{end_to_end_id} was paid on {paid}: it cannot have come back on {returned_on}")
        if returned_on > today:
            raise PaymentError(f"{returned_on} is a day still to come (today is {today} at the site)")
        store.reverse_payment(end_to_end_id, reference=reference, returned_on=returned_on.isoformat(), reason=reason,
                              by=by)
        payment = store.payments_by_end_to_end([end_to_end_id])[end_to_end_id]
    log.info("credit %s reversed by %s", end_to_end_id, by)
    return _credit(payment)
