"""Four eyes on the wages, as a bank's payroll auditor checks them, on both engines and through the real
CLI: who computed a version does not approve it; only a configured approver does, when a list is set;
every held line is held with its own reason, kept with the approved version; every batch keeps who made
it, every file written of it who wrote it, and every credit who recorded the bank's return of it.

The month is tests/test_wages.py's October: W4 has a missing OUT (held); W2 paid into W1's account holds
W1 and W2 too.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import ConfigError, load_config
from collector.store import Store, StoreError, schema
from collector.text import REASON_MAX_CHARS, TextError, entered
from tests import test_wages
from tests.helpers import CollectorSetup
from tests.test_wages_payments import PERIOD, bank_return, paid_day

month = test_wages.month


def three_held(month) -> None:
    """W2 paid into W1's account (W1 and W2 held) besides W4's missing OUT; computed by ops-wang."""
    month.cli("worker", "payee", "W2", "--account", "6222021234567890001")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")


def test_who_computed_a_version_cannot_approve_it(month):
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    for same in ("ops-wang", "OPS-Wang", " ops-wang "):
        refused = month.cli("wages", "approve", *PERIOD, "--by", same, check=False)
        assert refused.returncode == 1, same
        assert (f"S1 2026-10 version 1 was computed by ops-wang: {same.strip()} cannot approve it too (four eyes: "
                "another person approves)") in refused.stderr
    assert month.json("wages", "show", *PERIOD)["status"] == "computed"
    approved = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao").stdout
    assert "version 1 approved by ops-zhao (computed by ops-wang)" in approved
    table = month.json("wages", "show", *PERIOD)
    assert (table["status"], table["computed_by"], table["approved_by"]) == ("approved", "ops-wang", "ops-zhao")
    shown = month.cli("wages", "show", *PERIOD).stdout.splitlines()[0]
    assert "by ops-wang" in shown and "approved" in shown and "by ops-zhao" in shown


def test_the_store_refuses_the_same_person_and_a_held_line_without_its_reason(database):
    """Whatever path approves (the CLI, a script, the bench), the store keeps four eyes."""
    line = {"worker": "W1", "name": "张伟", "employer": None, "id_number": None, "phone": None,
            "bank_account": None, "bank_name": None, "days": 1, "worked_minutes": 480, "basis": "day",
            "rate_fen": 30000, "gross_fen": 30000, "deductions_fen": 0, "net_fen": 30000, "flags": [], "detail": {}}
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        saved = store.save_wage_table(site="S1", period="2026-10", status="computed", final=True, by="Maker",
                                      lines=[{**line, "status": "payable"},
                                             {**line, "worker": "W2", "status": "needs_decision"}],
                                      reason=None, pay_day="2026-11-15")
        with pytest.raises(StoreError, match="was computed by Maker: maker cannot approve it too"):
            store.approve_wage_table(saved["id"], by="maker", overrides={"W2": "why"})
        with pytest.raises(StoreError, match="without a reason: W2"):
            store.approve_wage_table(saved["id"], by="checker")
        with pytest.raises(StoreError, match="not held: W1"):
            store.approve_wage_table(saved["id"], by="checker", overrides={"W1": "x", "W2": "y"})
        with pytest.raises(TextError, match="the override reason of W2's line is empty"):
            store.approve_wage_table(saved["id"], by="checker", overrides={"W2": "  "})
        assert store.wage_table("S1", "2026-10")["status"] == "computed"
        store.approve_wage_table(saved["id"], by="checker", overrides={"W2": "the payee is checked"})
        table = store.wage_table("S1", "2026-10")
        assert [(x["worker"], x["override"]) for x in table["lines"]] == [("W1", None), ("W2", "the payee is checked")]
        assert store.line_overrides("S1") == [{"table_id": saved["id"], "worker": "W2",
                                               "override": "the payee is checked"}]


def test_only_a_configured_approver_approves(month):
    month.setup.write_config(wages={"approvers": ["ops-zhao", "ops-chen"]})
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-zhao")
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-li", check=False)
    assert refused.returncode == 1 and ("ops-li is not among who may approve wage tables ([wages] approvers in the "
                                        "collector's config: ops-zhao, ops-chen)") in refused.stderr
    # On the list, but the one who computed it.
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", check=False)
    assert refused.returncode == 1 and "computed by ops-zhao: ops-zhao cannot approve it too" in refused.stderr
    assert "approved by ops-chen" in month.cli("wages", "approve", *PERIOD, "--by", "ops-chen").stdout


@pytest.mark.parametrize("approvers", [[], [""], "ops-zhao", [1]])
def test_an_approver_list_that_names_nobody_is_refused(tmp_path, approvers):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), wages={})
    assert load_config(setup.write_config(wages={"approvers": ["ops-zhao ", " ops  chen"]})).wage_approvers == (
        "ops-zhao", "ops chen")
    with pytest.raises(ConfigError, match="wages.approvers"):
        load_config(setup.write_config(wages={"approvers": approvers}))


def test_each_held_line_needs_its_own_reason_and_keeps_it(month, tmp_path):
    three_held(month)
    # One reason for every held line is not a decision about each.
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "paid next month", check=False)
    assert refused.returncode == 2 and "'paid next month' is not WORKER=REASON" in refused.stderr
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W4=the OUT is checked",
                        check=False)
    assert refused.returncode == 1 and "2 line(s) need a decision first: W1 (" in refused.stderr
    assert "W4 (" not in refused.stderr and "--override WORKER=REASON" in refused.stderr
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W4=a", "--override", "W4=b",
                        check=False)
    assert refused.returncode == 2 and "W4 has a reason already" in refused.stderr
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--override", "W5=x", "--override", "W9=y",
                        check=False)
    assert refused.returncode == 1 and "only for a line held for a decision: W5 (payable), W9 (not in the table)" \
        in refused.stderr
    assert month.json("wages", "show", *PERIOD)["status"] == "computed"

    reasons = tmp_path / "held.txt"
    reasons.write_text("# held at the approval of October\nW1 = the account is W1's own: checked with 华建劳务\n\n"
                       "W2=W2's own account to be registered\n", encoding="utf-8")
    approved = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--overrides-file", str(reasons),
                         "--override", "W4=the OUT is checked with the site").stdout
    assert "  held: W2 247.56 yuan, not paid: W2's own account to be registered" in approved
    table = month.json("wages", "show", *PERIOD)
    assert table["override"] is None
    assert {x["worker"]: x["override"] for x in table["lines"]} == {
        "W1": "the account is W1's own: checked with 华建劳务", "W2": "W2's own account to be registered",
        "W3": None, "W4": "the OUT is checked with the site", "W5": None}
    assert "held at the approval: the OUT is checked with the site" in month.cli("wages", "show", *PERIOD).stdout
    history = month.json("wages", "history", "--site", "S1")
    assert history[0]["held"]["W2"] == "W2's own account to be registered"
    assert "held W4: the OUT is checked with the site" in month.cli("wages", "history", "--site", "S1").stdout
    # A correction is approved on its own reasons; the earlier version keeps its own.
    month.cli("worker", "payee", "W2", "--account", "6222021234567890002")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's own account")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-chen", "--override", "W4=still checked")
    history = month.json("wages", "history", "--site", "S1")
    assert [(t["status"], t["held"]) for t in history] == [
        ("superseded", {"W1": "the account is W1's own: checked with 华建劳务", "W2": "W2's own account to be registered",
                        "W4": "the OUT is checked with the site"}),
        ("approved", {"W4": "still checked"})]


def test_an_overrides_file_is_checked_as_hostile(month, tmp_path):
    three_held(month)
    for name, data, said in [("bad.txt", b"W1 only a reason\n", "bad.txt line 1"),
                             ("latin.txt", "W1=caf\u00e9".encode("latin-1"), "is not UTF-8"),
                             ("big.txt", b"W1=" + b"x" * (1 << 20), "not an overrides file")]:
        path = tmp_path / name
        path.write_bytes(data)
        refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--overrides-file", str(path), check=False)
        assert refused.returncode == 2 and said in refused.stderr, name
    path = tmp_path / "control.txt"
    path.write_text("W1=a\x1b[2Jreason\nW2=b\nW4=c\n", encoding="utf-8")
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", "--overrides-file", str(path), check=False)
    assert refused.returncode == 1 and "\x1b" not in refused.stderr
    assert month.json("wages", "show", *PERIOD)["status"] == "computed"


def test_every_batch_file_and_return_keeps_who(month, tmp_path):
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    first, again = tmp_path / "b1.xml", tmp_path / "b1-again.xml"
    refused = month.cli("wages", "batch", *PERIOD, "--format", "pain001", "--out", str(first), check=False)
    assert refused.returncode == 2 and "--by" in refused.stderr and not first.exists()
    made = month.json("wages", "batch", *PERIOD, "--format", "pain001", "--out", str(first), "--by", "ops-qian")
    assert (made["made_by"], made["written_by"]) == ("ops-qian", "ops-qian")
    assert made["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    said = month.cli("wages", "batch", *PERIOD, "--format", "pain001", "--out", str(again), "--by", "ops-sun").stdout
    assert "the same batch again, no new credit" in said and "by ops-qian, written by ops-sun" in said
    listed = month.json("wages", "batches", *PERIOD)
    assert [(b["batch_id"], b["made_by"]) for b in listed] == [("S1-202610-V1-B1", "ops-qian")]
    assert [(f["written_by"], f["format"], f["file"], f["sha256"]) for f in listed[0]["files"]] == [
        ("ops-qian", "pain001", str(first), hashlib.sha256(first.read_bytes()).hexdigest()),
        ("ops-sun", "pain001", str(again), hashlib.sha256(again.read_bytes()).hexdigest())]
    assert listed[0]["payer_account"] == "********0001" and "110000000001" not in json.dumps(listed)

    ids = {p["worker"]: p["end_to_end_id"] for p in listed[0]["payments"]}
    path = bank_return(tmp_path / "r.csv", [(ids["W1"], "paid", "V1", paid_day(), ""),
                                            (ids["W2"], "failed", "", "", "AC04 closed")])
    refused = month.cli("wages", "paid", path, check=False)
    assert refused.returncode == 2 and "--by" in refused.stderr
    recorded = month.json("wages", "paid", path, "--by", "ops-sun")
    assert recorded["recorded_by"] == "ops-sun" and {r["settled_by"] for r in recorded["recorded"]} == {"ops-sun"}
    settled = {p["worker"]: p for p in month.json("wages", "batches", *PERIOD)[0]["payments"]}
    assert (settled["W1"]["status"], settled["W1"]["settled_by"]) == ("paid", "ops-sun")
    assert (settled["W2"]["status"], settled["W2"]["settled_by"]) == ("failed", "ops-sun")
    assert settled["W3"]["settled_by"] is None and settled["W3"]["status"] == "pending"
    text = month.cli("wages", "batches", *PERIOD).stdout
    assert "made" in text and "by ops-qian" in text and "written" in text and "by ops-sun: pain001" in text
    assert "paid voucher V1" in text and "by ops-sun" in text


def test_a_version_approved_before_keeps_its_one_reason_on_each_line_it_held(empty_database):
    line = {"worker": "W1", "name": "张伟", "employer": None, "id_number": None, "phone": None,
            "bank_account": None, "bank_name": None, "days": 1, "worked_minutes": 480, "basis": "day",
            "rate_fen": 30000, "gross_fen": 30000, "deductions_fen": 0, "net_fen": 30000, "flags": [], "detail": {}}
    with Store(empty_database, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["four_eyes"] - 1)
        store.add_site("S1", timezone="Asia/Shanghai")
        for period, override in (("2026-09", "disputed days, paid next month"), ("2026-10", None)):
            saved = store.save_wage_table(site="S1", period=period, status="computed", final=True, by="ops",
                                          lines=[{**line, "status": "payable"},
                                                 {**line, "worker": "W2", "status": "needs_decision"}],
                                          reason=None, pay_day=None)
            store.execute("UPDATE wage_tables SET status = 'approved', approved_by = 'ops', override = ? WHERE id = ?",
                          (override, saved["id"]))
        assert not store.has("four_eyes")
        schema.upgrade(store.db)
        assert store.has("four_eyes")
        assert [(x["worker"], x["override"]) for x in store.wage_table("S1", "2026-09")["lines"]] == [
            ("W1", None), ("W2", "disputed days, paid next month")]
        assert [x["override"] for x in store.wage_table("S1", "2026-10")["lines"]] == [None, None]


def readable(reason: str) -> bool:
    try:
        return entered(reason, what="a reason", limit=REASON_MAX_CHARS) is not None
    except TextError:
        return False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_approval_holds_exactly_the_lines_needing_a_decision_each_with_its_reason(database, data):
    """Over generated tables and reasons: approved iff each held line and only a held line has a reason;
    what is read back (the lines, line_overrides) is what was given, and a refusal changes nothing."""
    workers = [f"W{n}" for n in range(data.draw(st.integers(1, 6), label="workers"))]
    held = data.draw(st.sets(st.sampled_from(workers)), label="held")
    given_reasons = data.draw(st.dictionaries(st.sampled_from(workers + ["W9"]),
                                              st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                                                      min_size=1, max_size=20).filter(str.strip)), label="reasons")
    period = f"20{data.draw(st.integers(10, 99))}-{data.draw(st.integers(1, 12)):02d}"
    with Store(database) as store:
        if store.site("S1") is None:
            store.add_site("S1", timezone="Asia/Shanghai")
        line = {"name": "n", "employer": None, "id_number": None, "phone": None, "bank_account": None,
                "bank_name": None, "days": 1, "worked_minutes": 480, "basis": "day", "rate_fen": 1, "gross_fen": 1,
                "deductions_fen": 0, "net_fen": 1, "flags": [], "detail": {}}
        saved = store.save_wage_table(site="S1", period=period, status="computed", final=True, by="maker",
                                      lines=[{**line, "worker": w, "status": "needs_decision" if w in held
                                              else "payable"} for w in workers], reason=None, pay_day=None)
        before = store.wage_table("S1", period, saved["version"])
        try:
            store.approve_wage_table(saved["id"], by="checker", overrides=given_reasons)
        except (StoreError, TextError):
            assert set(given_reasons) != held or not all(map(readable, given_reasons.values()))
            assert store.wage_table("S1", period, saved["version"]) == before
            return
        assert set(given_reasons) == held and all(map(readable, given_reasons.values()))
        table = store.wage_table("S1", period, saved["version"])
        assert {x["worker"]: x["override"] for x in table["lines"]} == {
            w: given_reasons[w].strip() if w in held else None for w in workers}
        # The period may repeat across examples (one database for them all): this version's rows only.
        assert {r["worker"]: r["override"] for r in store.line_overrides("S1", period)
                if r["table_id"] == saved["id"]} == {w: given_reasons[w].strip() for w in held}
