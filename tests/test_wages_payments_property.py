"""Over generated wage tables, bank returns, corrections, withdrawals and reversals (on both engines):
every batch's totals are the sum of its lines, writing a batch again gives the same bytes (until a credit
of it is withdrawn), and no line is ever paid twice: a worker's pending and paid credits never exceed the
approved net, a settled credit stays settled (a paid one reversed only by a reversal), and what arrears
count paid today is what is paid and not returned."""

from __future__ import annotations

import csv
import io
import itertools
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from collector.store import Store
from collector.wages.batchfile import render
from collector.wages.payments import PaymentError, ReturnRefused, make_batch, record_return, reverse, withdraw
from tests.test_wages_payments import paid_day

PAIN = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
SITES = itertools.count(1)
PERIOD = "2026-10"


@pytest.fixture
def store(database):
    with Store(database) as store:
        yield store


def line(worker: str, net: int, payable: bool) -> dict:
    return {"worker": worker, "name": f"工人{worker}", "employer": "华建劳务", "id_number": "110101199003070001",
            "phone": None, "bank_account": f"6222{abs(hash(worker)) % 10**12:012d}", "bank_name": "中国工商银行",
            "days": 1, "worked_minutes": 480, "basis": "day", "rate_fen": net, "gross_fen": net, "deductions_fen": 0,
            "net_fen": net, "status": "payable" if payable else "needs_decision",
            "flags": [] if payable else ["days_to_decide"], "detail": {"pay_day": "2026-11-15"}}


def approve(store: Store, site: str, lines: list[dict]) -> None:
    saved = store.save_wage_table(site=site, period=PERIOD, status="computed", final=True, lines=lines, by="t",
                                  reason="generated", pay_day="2026-11-15")
    store.approve_wage_table(saved["id"], by="checker", overrides={w["worker"]: "generated: held"
                                                                  for w in lines if w["status"] != "payable"})


def outstanding(store: Store, site: str) -> dict[str, int]:
    sums: dict[str, int] = {}
    for p in store.wage_payments(site, PERIOD):
        if p["status"] in ("pending", "paid"):
            sums[p["worker"]] = sums.get(p["worker"], 0) + p["amount_fen"]
    return sums


def check_files(batch) -> None:
    lines = batch.batch["payments"]
    total = sum(p["amount_fen"] for p in lines)
    xml = render(batch, "pain001", timezone="Asia/Shanghai")
    assert xml == render(batch, "pain001", timezone="Asia/Shanghai")
    root = ET.fromstring(xml)
    amounts = [Decimal(a.text) for a in root.iterfind(".//p:InstdAmt", PAIN)]
    for block in ("p:CstmrCdtTrfInitn/p:GrpHdr", "p:CstmrCdtTrfInitn/p:PmtInf"):
        assert int(root.findtext(f"{block}/p:NbOfTxs", namespaces=PAIN)) == len(lines) == len(amounts)
        assert Decimal(root.findtext(f"{block}/p:CtrlSum", namespaces=PAIN)) == sum(amounts) == Decimal(total) / 100
    text = render(batch, "csv", timezone="Asia/Shanghai").decode("utf-8-sig")
    _, control, credits = text.split("\n", 2)  # 总笔数,总金额 then their values, then the credits
    rows = list(csv.DictReader(io.StringIO(credits)))
    assert len(rows) == len(lines) and sum(Decimal(r["金额"]) for r in rows) == Decimal(total) / 100
    assert control == f"{len(lines)},{Decimal(total) / 100:.2f}"


nets = st.integers(min_value=0, max_value=3_000_00)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(data=st.data())
def test_batch_totals_are_the_lines_and_no_line_is_paid_twice(store, data):
    site = f"P{next(SITES)}"
    store.add_site(site, timezone="Asia/Shanghai")
    workers = [f"{site}-W{n}" for n in range(data.draw(st.integers(1, 5), label="workers"))]
    for worker in workers:
        store.add_worker(worker, name=f"工人{worker}")
    store.set_site_pay(site, pay_day=15, payer_account="110000000001", payer_name="总包", payer_bank="建设银行",
                       effective_from="2026-01-01", by="t")

    def draw_table() -> list[dict]:
        return [line(w, data.draw(nets, label=f"net {w}"), data.draw(st.booleans(), label=f"payable {w}"))
                for w in workers]

    table = draw_table()
    approve(store, site, table)
    highest = {w["worker"]: w["net_fen"] for w in table}
    settled: dict[str, tuple] = {}
    files: dict[str, bytes] = {}

    def batch_now() -> None:
        before = outstanding(store, site)
        current = {w["worker"]: w for w in store.wage_table(site, PERIOD)["lines"]}
        try:
            with store.transaction():
                batch = make_batch(store, site, PERIOD, by="maker")
        except PaymentError as error:
            assert "nothing to pay" in str(error)
            return
        check_files(batch)
        data_bytes = render(batch, "pain001", timezone="Asia/Shanghai")
        if batch.batch["batch_id"] in files:
            assert not batch.new and files[batch.batch["batch_id"]] == data_bytes, "the same batch, the same bytes"
        files[batch.batch["batch_id"]] = data_bytes
        after = outstanding(store, site)
        for worker, row in current.items():
            if row["status"] == "payable":
                assert after.get(worker, 0) == max(row["net_fen"], before.get(worker, 0))
            else:
                assert after.get(worker, 0) == before.get(worker, 0), "a held line is not paid"

    # Each step is an action and then a batch, as an operator asks for one after each change.
    for step in range(data.draw(st.integers(1, 8), label="steps")):
        action = data.draw(st.sampled_from(["batch", "return", "correct", "repay", "withdraw", "reverse"]),
                           label=f"step {step}")
        if action in ("return", "repay"):
            pending = [p for p in store.wage_payments(site, PERIOD) if p["status"] == "pending"]
            chosen = pending if action == "return" else [p for p in store.wage_payments(site, PERIOD)
                                                          if p["status"] != "pending"]
            entries = []
            for n, payment in enumerate(chosen):
                status = data.draw(st.sampled_from(["paid", "failed", None]), label=f"return {n}")
                if status:
                    entries.append({"where": f"line {n}", "end_to_end_id": payment["end_to_end_id"], "status": status,
                                    "voucher": "V" if status == "paid" else None,
                                    "date": paid_day() if status == "paid" else None,
                                    "reason": "no" if status == "failed" else None, "amount_fen": None})
            if entries and action == "repay":  # settling a settled credit again: refused, and nothing changes
                before = store.wage_payments(site, PERIOD)
                with pytest.raises(ReturnRefused):
                    record_return(store, entries, source="r", digest="x", kind="csv", by="clerk")
                assert store.wage_payments(site, PERIOD) == before
            elif entries:
                for row in record_return(store, entries, source="r", digest="x", kind="csv", by="clerk"):
                    settled[row["end_to_end_id"]] = (row["status"], row["amount_fen"])
        elif action == "withdraw":
            unsent = [b for b in store.wage_batches(site, PERIOD)
                      if {p["status"] for p in store.wage_batch(b["batch_id"])["payments"]} <= {"pending", "withdrawn"}
                      and any(p["status"] == "pending" for p in store.wage_batch(b["batch_id"])["payments"])]
            if unsent:
                chosen = data.draw(st.sampled_from(unsent), label="batch withdrawn")["batch_id"]
                pending = [p for p in store.wage_batch(chosen)["payments"] if p["status"] == "pending"]
                one = data.draw(st.sampled_from([None, *pending]), label="credit withdrawn")
                withdrawn = withdraw(store, batch_id=None if one else chosen, end_to_end_id=one and one["end_to_end_id"],
                                     reason="not sent", by="clerk")
                assert {p["end_to_end_id"] for p in withdrawn} == ({one["end_to_end_id"]} if one else
                                                                    {p["end_to_end_id"] for p in pending})
                files.pop(chosen, None)  # written again without what was withdrawn
        elif action == "reverse":
            paid = [p for p in store.wage_payments(site, PERIOD) if p["status"] == "paid"]
            if paid:
                chosen = data.draw(st.sampled_from(paid), label="credit reversed")
                reverse(store, chosen["end_to_end_id"], reference="TH", returned_on=date.fromisoformat(paid_day()),
                        reason="frozen", by="clerk")
                settled[chosen["end_to_end_id"]] = ("reversed", chosen["amount_fen"])
        elif action == "correct":
            table = draw_table()
            approve(store, site, table)
            for row in table:
                highest[row["worker"]] = max(highest[row["worker"]], row["net_fen"])
        # Whatever happened: no worker holds more than the most any approved version gave, and what the
        # bank settled stays as it said.
        batch_now()
        for worker, amount in outstanding(store, site).items():
            assert amount <= highest[worker]
        payments = {p["end_to_end_id"]: p for p in store.wage_payments(site, PERIOD)}
        for e2e, (status, amount) in settled.items():
            assert (payments[e2e]["status"], payments[e2e]["amount_fen"]) == (status, amount)
        paid_today = {row["worker"]: row["paid"] for row in store.payment_sums(site, paid_day())}
        for worker in workers:
            assert paid_today.get(worker, 0) == sum(p["amount_fen"] for p in payments.values()
                                                    if p["worker"] == worker and p["status"] == "paid")
