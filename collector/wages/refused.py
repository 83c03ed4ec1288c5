"""A credit the bank refused because of its payee, and the batch that would pay that payee again.

A credit returned failed is owed again, and the next batch pays it (collector/wages/payments.py). When the
bank's reason is the payee itself (the account closed, frozen or unknown: 销户, 冻结, 无此账户; the name not
the account holder's: 户名不符; the wrong bank: 开户行错误), the same credit to the same payee comes back
again, and the worker waits a round longer for nothing. So a batch holds such a worker until the line it
pays names another payee than the refused credit's: a new account for an account refused, a corrected name
(or a new account) for a name refused, a corrected bank (or a new account) for a bank refused. An account
refused for a state it can leave again (frozen, 止付, reported lost, dormant) is paid again, with a warning:
held, it could never be paid into once reopened. A batch pays
the approved version's line, so the change is made as any correction: `collector worker payee` (or the
worker's name), `collector wages run --reason`, `collector wages approve`.

The bank's reason is free text in a CSV return, an ISO 20022 reason code (with its text) in a pain.002,
or the reason recorded for a paid credit the bank returned later (退汇, `wages reverse`): all are read
here. A reason not recognised is what it was before: owed again, paid in the next batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collector import masking
from collector.store import Store


@dataclass(frozen=True)
class Refusal:
    """One kind of payee reason: the ISO 20022 codes and the words banks write for it, and the line's fields
    of which one must change before the payee is paid again."""

    kind: str
    codes: tuple[str, ...]
    words: tuple[str, ...]
    fields: tuple[str, ...]
    fix: str
    #: False for a state an account leaves again (frozen, reported lost, dormant): paid again, with a warning.
    holds: bool = True


#: In this order: a reason naming both the name and the account (账号户名不符) is about the name.
REFUSALS = (
    Refusal("name", ("BE01",),
            ("户名", "姓名不符", "名称不符", "姓名错误", "name mismatch", "wrong name", "incorrect name",
             "name does not match", "inconsistent with end customer"),
            ("name", "bank_account"), "the registered name, or another account"),
    Refusal("bank", ("RC01", "RC07"),
            ("开户行", "行号", "wrong bank", "bank identifier", "bank code"),
            ("bank_name", "bank_account"), "the account's bank, or another account"),
    Refusal("account", ("AC01", "AC03", "AC04", "AC07", "MD07"),
            ("销户", "注销", "不存在", "无此账", "无此户", "账号错误", "账号有误", "卡号错误", "账户错误", "closed",
             "no such account", "unknown account", "invalid account", "incorrect account", "account not found",
             "deceased"),
            ("bank_account",), "another account"),
    Refusal("frozen", ("AC06",),
            ("冻结", "止付", "挂失", "久悬", "睡眠户", "不动户", "状态异常", "frozen", "blocked", "dormant"),
            ("bank_account",), "another account", holds=False),
)
_CODE = re.compile(r"\b([A-Z]{2}[0-9]{2})\b")


def payee_refusal(reason: str | None) -> Refusal | None:
    """The kind of payee the bank's ``reason`` refuses, or None when it is not about the payee."""
    if not reason:
        return None
    codes = set(_CODE.findall(reason))
    text = reason.casefold()
    for refusal in REFUSALS:
        if codes & set(refusal.codes) or any(word in text for word in refusal.words):
            return refusal
    return None


def bank_reason(payment: dict) -> str | None:
    """Why the bank gave a credit back: the return's reason of a failed credit, or of a paid one it
    returned later (退汇, reversed); None for any other (a withdrawn credit was never the bank's)."""
    if payment["status"] == "failed":
        return payment.get("reason")
    if payment["status"] == "reversed":
        return payment.get("undone_reason")
    return None


def _same(field: str, before: dict, now: dict) -> bool:
    if field == "bank_account":  # as the table compares accounts: their digits
        return re.sub(r"\D", "", before.get(field) or "") == re.sub(r"\D", "", now.get(field) or "")
    return " ".join((before.get(field) or "").split()) == " ".join((now.get(field) or "").split())


def refused_payees(store: Store, table: dict, payments: list[dict]) -> dict[str, dict]:
    """Per worker whose line in ``table`` (an approved version, with its lines) names the payee a failed
    credit of the period (``payments``) was refused for: that credit, its reason and what must change."""
    lines = {table["version"]: {line["worker"]: line for line in table["lines"]}}
    for version in sorted({p["table_version"] for p in payments if bank_reason(p)} - set(lines)):
        paid = store.wage_table(table["site"], table["period"], version)
        lines[version] = {line["worker"]: line for line in paid["lines"]} if paid else {}
    return refused_in(lines, table["version"], payments)


def refused_in(lines: dict[int, dict[str, dict]], version: int, payments: list[dict]) -> dict[str, dict]:
    """``refused_payees`` from each version's lines (version -> worker -> line): what the credits paid to,
    and ``version``'s, what a batch would pay to now."""
    found: dict[str, dict] = {}
    for payment in payments:
        refusal = payee_refusal(bank_reason(payment))
        now = lines[version].get(payment["worker"])
        if refusal is None or now is None or found.get(payment["worker"], {}).get("holds"):
            continue  # a hold is the last word; a warning gives way to a hold
        before = lines.get(payment["table_version"], {}).get(payment["worker"])
        if before is not None and all(_same(field, before, now) for field in refusal.fields):
            found[payment["worker"]] = {
                "end_to_end_id": payment["end_to_end_id"], "reason": bank_reason(payment), "refused": refusal.kind,
                "account": masking.account(now.get("bank_account")), "change": refusal.fix, "holds": refusal.holds}
    return found


def hold_refused(store: Store, table: dict, payments: list[dict],
                 credits: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(the credits to make, the workers held, the workers warned about): a credit to a payee the bank
    refused is not made again until the approved line names another payee (``refused_payees``); one whose
    account was refused for a state it can leave (frozen) is made, with a warning."""
    if not any(bank_reason(p) for p in payments):
        return credits, [], []
    refused = refused_payees(store, table, payments)
    making, held, warned = [], [], []
    for credit in credits:
        found = refused.get(credit["worker"])
        if found is None or not found["holds"]:
            making.append(credit)
        if found is None:
            continue
        said = f"the bank refused account {found['account']} ({found['end_to_end_id']}: {found['reason']})"
        if found["holds"]:
            held.append({"worker": credit["worker"], "status": "payee_refused", "flags": ["payee_refused"],
                         "owed_fen": credit["amount_fen"], **found,
                         "why": f"{said}; held until the approved line names {found['change']}"})
        else:
            warned.append({"worker": credit["worker"], "amount_fen": credit["amount_fen"], **found,
                           "why": f"{said}; paid into it again, as an account leaves that state: ask the worker "
                                  "whether it is open again, or register another account"})
    return making, held, warned
