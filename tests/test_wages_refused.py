"""A credit the bank refused for its payee is not sent to the same payee again; on both engines, through the
CLI, from the reproduction: W2's credit came back 账户已销户 (account closed), and the next batch paid the
same closed account again with no hint.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.wages.refused import payee_refusal, refused_in
from tests import test_wages
from tests.test_wages_payments import PERIOD, approve, bank_return, batch, credits, paid_day, pain002, tx

month = test_wages.month
NEW_ACCOUNT = "6217001234567890123"


def returned(month, tmp_path, failures: dict[str, str], name: str = "r1.csv") -> dict:
    """Approve October, write its first batch, and record the bank's return: the workers of ``failures``
    failed with that reason, the others paid. worker -> (end-to-end id, fen) of the batch."""
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    rows = [(ids[w][0], "failed", "", "", failures[w]) if w in failures else (ids[w][0], "paid", f"V{w}", paid_day(), "")
            for w in sorted(ids)]
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / name, rows))
    return ids


def made(month, out, *extra):
    return json.loads(month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out),
                                "--json", *extra).stdout)


def test_a_credit_refused_for_a_closed_account_is_held_until_the_approved_line_names_another(month, tmp_path):
    ids = returned(month, tmp_path, {"W2": "账户已销户", "W3": "系统繁忙，请稍后重试"})
    # A busy bank is paid again at once; the closed account is not written into a file again.
    second = made(month, tmp_path / "b2.csv")
    assert [(p["worker"], p["amount_fen"]) for p in second["payments"]] == [("W3", 10000)]
    [held] = second["held"]
    assert (held["worker"], held["status"], held["owed_fen"], held["end_to_end_id"], held["refused"]) == \
        ("W2", "payee_refused", ids["W2"][1], ids["W2"][0], "account")
    assert held["account"] == "***************0002" and "6222021234567890002" not in json.dumps(second)
    assert "6222021234567890002" not in (tmp_path / "b2.csv").read_bytes().decode("utf-8-sig")
    shown = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                      str(tmp_path / "b2-again.csv")).stdout
    assert ("held: W2 (payee_refused: the bank refused account ***************0002 "
            f"({ids['W2'][0]}: 账户已销户); held until the approved line names another account) is not paid") in shown
    # Another version with the same account (a correction of something else) is held the same way.
    month.cli("wages", "deduct", *PERIOD, "--worker", "W5", "--item", "工具", "--amount-yuan", "1", "--reason",
              "a lost helmet", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W5's helmet")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    third = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                      str(tmp_path / "b3.csv"), check=False)
    assert third.returncode == 1 and "version 2: nothing to pay" in third.stderr
    assert "W2 held (payee_refused: the bank refused account ***************0002" in third.stderr
    assert not (tmp_path / "b3.csv").exists()
    # The arrears still owe it: held is not paid.
    rows = {r["worker"]: r for r in month.json("arrears", "--site", "S1", "--as-of", paid_day())["workers"]}
    assert rows["W2"]["paid_fen"] == 0
    # W2's own new account, a corrected version approved: the batch pays it there.
    month.cli("worker", "payee", "W2", "--account", NEW_ACCOUNT)
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's account was closed")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    fourth = made(month, tmp_path / "b4.csv")
    assert [(p["worker"], p["amount_fen"]) for p in fourth["payments"]] == [("W2", ids["W2"][1])]
    assert fourth["held"] == []
    assert NEW_ACCOUNT in (tmp_path / "b4.csv").read_bytes().decode("utf-8-sig")


def test_a_wrong_name_is_held_until_the_name_or_the_account_changes_and_the_return_says_so(month, tmp_path):
    ids = returned(month, tmp_path, {"W1": "户名不符"})
    with month.setup.store() as store:
        [failed] = [p for p in store.wage_payments("S1", "2026-10") if p["status"] == "failed"]
    assert failed["end_to_end_id"] == ids["W1"][0]
    shown = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                      str(tmp_path / "b2.csv"), check=False)
    # Nothing else is owed and a batch exists: the same batch again, with W1 held.
    assert "held: W1 (payee_refused: the bank refused account" in shown.stdout
    assert "held until the approved line names the registered name, or another account" in shown.stdout
    with month.setup.store() as store:
        store.edit_worker("W1", name="张伟")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W1's name as his bank holds it")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    paid = made(month, tmp_path / "b3.csv")
    assert [(p["worker"], p["amount_fen"]) for p in paid["payments"]] == [("W1", ids["W1"][1])]
    assert "张伟" in (tmp_path / "b3.csv").read_bytes().decode("utf-8-sig")


def test_the_return_of_a_refused_payee_tells_what_the_next_batch_does(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    report = pain002(tmp_path / "r.xml", "S1-202610-V1-B1",
                     [tx(ids["W2"][0], "RJCT", reason="Account closed"),
                      *[tx(ids[w][0], "ACSC", voucher=f"V{w}") for w in ("W1", "W3", "W4", "W5")]])
    out = month.cli("wages", "paid", "--by", "ops-sun", report).stdout
    assert (f"failed: {ids['W2'][0]} W2 {ids['W2'][1] / 100:.2f} yuan: AC04 Account closed (owed again; the bank "
            "refused the payee, so a batch holds it until W2's approved line names another account") in out
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "pain001", "--out",
                        str(tmp_path / "b2.xml"), check=False)
    assert "no new credit" in refused.stdout and "held: W2 (payee_refused" in refused.stdout


def test_a_paid_credit_the_bank_returned_later_for_a_closed_account_is_held_the_same_way(month, tmp_path):
    ids = returned(month, tmp_path, {})
    month.cli("wages", "reverse", ids["W2"][0], "--reference", "TH-20261207-01", "--on", paid_day(), "--reason",
              "收款账户已销户 退汇", "--by", "ops-sun")
    refused = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                        str(tmp_path / "b2.csv"), check=False)
    assert f"held: W2 (payee_refused: the bank refused account ***************0002 ({ids['W2'][0]}: 收款账户已销户 " \
           "退汇); held until the approved line names another account) is not paid" in refused.stdout
    assert "batch S1-202610-V1-B1 (the same batch again, no new credit)" in refused.stdout
    rows = {r["worker"]: r for r in month.json("arrears", "--site", "S1", "--as-of", paid_day())["workers"]}
    assert rows["W2"]["paid_fen"] == 0, "owed again, held, not paid"


def test_a_frozen_account_is_paid_again_with_a_warning(month, tmp_path):
    ids = returned(month, tmp_path, {"W2": "该账户已冻结"})
    second = made(month, tmp_path / "b2.csv")
    assert [(p["worker"], p["amount_fen"]) for p in second["payments"]] == [("W2", ids["W2"][1])]
    assert second["held"] == []
    [warned] = second["warned"]
    assert (warned["worker"], warned["refused"], warned["end_to_end_id"]) == ("W2", "frozen", ids["W2"][0])
    text = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out",
                     str(tmp_path / "b2-again.csv")).stdout
    assert "warning" not in text, "the same batch again makes no credit: nothing to warn of"


def test_what_the_return_says_of_each_failure(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    rows = [(ids["W1"][0], "failed", "", "", "账户已冻结"), (ids["W2"][0], "failed", "", "", "超时"),
            (ids["W3"][0], "failed", "", "", "户名不符")]
    out = month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", rows)).stdout
    assert "账户已冻结 (owed again: the next `collector wages batch --site S1 --period 2026-10` pays it, into the same " \
           "account: ask the worker whether it is open again)" in out
    assert "超时 (owed again: the next `collector wages batch --site S1 --period 2026-10` pays it)" in out
    assert "户名不符 (owed again; the bank refused the payee, so a batch holds it until W3's approved line names the " \
           "registered name, or another account" in out


@pytest.mark.parametrize("reason, kind", [
    ("账户已销户", "account"), ("该账户已冻结", "frozen"), ("止付", "frozen"), ("AC06 blocked", "frozen"),
    ("无此账户", "account"), ("账号不存在", "account"),
    ("卡号错误", "account"), ("AC04 Account closed", "account"), ("AC01", "account"), ("MD07 deceased", "account"),
    ("户名不符", "name"), ("账号户名不符", "name"), ("收款人姓名不符", "name"), ("BE01", "name"),
    ("Name mismatch", "name"), ("开户行错误", "bank"), ("RC01 Bank identifier incorrect", "bank"),
    ("行号不存在", "bank"),
])
def test_reasons_that_refuse_the_payee(reason, kind):
    assert payee_refusal(reason).kind == kind


@pytest.mark.parametrize("reason", ["系统繁忙", "超时", "AM04 insufficient funds", "余额不足", "", None,
                                    "rejected (no reason given)", "ACCOUNTING ERROR"])
def test_reasons_that_do_not(reason):
    assert payee_refusal(reason) is None


REASONS = ["账户已销户", "户名不符", "开户行错误", "账户冻结", "系统繁忙", None]
payee = st.fixed_dictionaries({"name": st.sampled_from(["工人", "工人 ", "张伟"]),
                               "bank_account": st.sampled_from(["62220001", "6222-0001", "62220002"]),
                               "bank_name": st.sampled_from(["工行", "建行"])})


@given(st.dictionaries(st.integers(1, 3), st.dictionaries(st.sampled_from(["W1", "W2"]), payee), min_size=1),
       st.lists(st.tuples(st.sampled_from(["W1", "W2"]), st.integers(1, 3),
                          st.sampled_from(["failed", "paid", "reversed", "withdrawn"]), st.sampled_from(REASONS))))
def test_a_worker_is_held_exactly_when_a_refused_payee_is_the_one_paid_now(versions, history):
    version = max(versions)
    lines = {v: {w: {"worker": w, **p} for w, p in found.items()} for v, found in versions.items()}
    # The bank's reason: a failed credit's, or a reversed one's (退汇); a withdrawal's is the bank's own.
    payments = [{"worker": w, "table_version": v, "status": status, "reason": reason if status == "failed" else None,
                 "undone_reason": reason if status in ("reversed", "withdrawn") else None, "end_to_end_id": f"E{n}"}
                for n, (w, v, status, reason) in enumerate(history)]
    found = refused_in(lines, version, payments)

    def same(field, a, b):
        if field == "bank_account":
            return a[field].replace("-", "") == b[field].replace("-", "")
        return a[field].strip() == b[field].strip()

    for worker in ("W1", "W2"):
        now = lines[version].get(worker)
        given_back = [(p, payee_refusal(p["reason"] if p["status"] == "failed" else p["undone_reason"]))
                      for p in payments if p["worker"] == worker and p["status"] in ("failed", "reversed")]
        matching = [r for p, r in given_back if r and now and worker in lines.get(p["table_version"], {})
                    and all(same(f, lines[p["table_version"]][worker], now) for f in r.fields)]
        if not matching:
            assert worker not in found
        else:
            assert found[worker]["holds"] == any(r.holds for r in matching)
