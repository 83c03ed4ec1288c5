"""The worker's wage slip: a printable page with the days, money, payment and the evidence id, on both
engines, with the real CLI; the refusals; escaping and masking.

The final October of tests/test_wages.py: W1 day rate 350 then 380 from the 16th, four days, 20 yuan
deducted; W5 one overnight shift (22:00-06:00); pay day 2026-11-15.
"""

from __future__ import annotations

import os
import re
import stat

from tests import test_wages
from tests.helpers import cli, resident_id
from tests.test_wages_payments import PERIOD, approve, bank_return, batch, credits, paid_day

month = test_wages.month


def slip(month, tmp_path, worker: str, name: str, *extra: str, check: bool = True):
    out = tmp_path / name
    result = month.cli("wages", "slip", "--worker", worker, "--period", "2026-10", "--out", str(out), *extra,
                       check=check)
    return result, out


def test_a_paid_slip_shows_each_day_the_money_the_voucher_and_the_evidence_it_names(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [(ids["W1"][0], "paid", "VCH-0001", paid_day(), "")]))
    result, out = slip(month, tmp_path, "W1", "w1.html")
    assert "net 1440.00 yuan, paid" in result.stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page and "@media print" in page
    assert "<script" not in page and "http" not in page, "self-contained: no script, nothing fetched"
    assert "DRAFT" not in page and "NOT APPROVED" not in page
    # Each day in local time, its hours and rate; the money; the voucher.
    for day, rate in (("2026-10-14", "350.00"), ("2026-10-16", "380.00")):
        assert re.search(rf"<td[^>]*>{day}</td><td[^>]*>08:00</td><td[^>]*>17:00</td><td class=\"n\"[^>]*>9:00</td>"
                         rf"<td[^>]*>是 yes, {rate}", page)
    assert "2 天 day(s) × 350.00 元/天 day" in page and "2 天 day(s) × 380.00 元/天 day" in page
    assert ">1460.00<" in page and "个人所得税" in page and "−20.00" in page and ">1440.00<" in page
    assert "已支付 Paid" in page and "VCH-0001" in page and ids["W1"][0] in page
    # Masked: the ID number and the account only in part.
    assert "110***********0001" in page and "***************0001" in page
    assert resident_id(1) not in page and "6222021234567890001" not in page
    # The days the slip names are those the file `collector evidence` writes states, as `collector verify`
    # shows them.
    named = re.search(r"Days id \(SHA-256\): <code>([0-9a-f]{64})</code>", page).group(1)
    assert "collector evidence --worker W1 --from 2026-10-01 --to 2026-10-31" in page
    month.cli("evidence", "--worker", "W1", "--from", "2026-10-01", "--to", "2026-10-31",
              "--out", str(tmp_path / "w1.json"))
    bank_key = re.search(r"ed25519:\S+", month.cli("bank-key").stdout).group(0)
    verified = cli("collector", "verify", str(tmp_path / "w1.json"), "--bank-key", bank_key)
    assert f"days id {named}" in verified.stdout
    # An overnight shift is one day, its OUT shown with the next date; W5 is not paid yet.
    _, out = slip(month, tmp_path, "W5", "w5.html")
    page = out.read_text(encoding="utf-8")
    assert re.search(r"<td[^>]*>2026-10-25</td><td[^>]*>22:00</td><td[^>]*>10-26 06:00</td><td class=\"n\"[^>]*>8:00</td>",
                     page)
    assert "银行处理中 At the bank" in page


def test_refusals_a_draft_and_hostile_names(month, tmp_path):
    refused, out = slip(month, tmp_path, "W1", "none.html", check=False)
    assert refused.returncode == 1 and "no wage table for 2026-10" in refused.stderr and not out.exists()
    with month.setup.store() as store:
        store.execute("UPDATE workers SET name = ? WHERE worker = 'W3'", ('<script>alert("x")</script>&',))
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    refused, _ = slip(month, tmp_path, "W9", "w9.html", "--site", "S1", check=False)
    assert refused.returncode == 1 and "W9 is not in the S1 2026-10 wage table (version 1)" in refused.stderr
    _, out = slip(month, tmp_path, "W3", "w3.html")
    page = out.read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;" in page
    assert "未审批 NOT APPROVED" in page and "Not approved, not paid" in page
    again, _ = slip(month, tmp_path, "W3", "w3.html", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    # A month not final is a draft, and its slip says so at the top.
    month.shift("W1", "2026-11-02 08:00", "2026-11-02 17:00")
    month.cli("wages", "run", "--site", "S1", "--period", "2026-11", "--by", "ops", "--draft")
    out = tmp_path / "draft.html"
    month.cli("wages", "slip", "--worker", "W1", "--period", "2026-11", "--out", str(out))
    assert '<div class="banner">草稿 DRAFT: 本月考勤尚未最终确定，此为草稿，不予支付' in out.read_text(encoding="utf-8")


def test_the_evidence_id_names_what_the_file_says_not_when_or_with_which_key_it_was_signed():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collector.evidence.document import evidence_id
    from gate_agent.protocol import public_key_text, sign_document

    body = {"format": "site-gate-evidence", "version": 1, "worker": {"worker": "W1"}, "days": [{"date": "2026-10-14"}]}
    one, two = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    first = sign_document({**body, "generated_at": "2026-11-28T00:00:00.000Z",
                           "bank_key": public_key_text(one.public_key())}, one)
    later = sign_document({**body, "generated_at": "2027-03-01T00:00:00.000Z",
                           "bank_key": public_key_text(two.public_key())}, two)
    assert first["sig"] != later["sig"] and evidence_id(first) == evidence_id(later)
    changed = {**first, "days": [{"date": "2026-10-15"}]}
    assert evidence_id(changed) != evidence_id(first)
