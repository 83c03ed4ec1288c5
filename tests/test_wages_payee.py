"""Who is paid, what is deducted and when a credit was paid, built from the attacks; on both engines.

- `collector worker payee` took ``--id-number ABC``, ``--account 12AB`` and ``--phone 123`` while the worker
  file refused them: one check (collector/identity.py) now sits in the store, which every path writes
  through; a wage line with no ID number or no contact is flagged (Art. 15).
- `wages import-sheet --take-deductions` added a sheet's deductions on top of those recorded, doubling
  them when they agreed: only the difference is taken, and a sheet that deducts less is refused.
- A bank return recorded a credit paid on 2000-01-01 for a batch made today, and `arrears --as-of` a day
  before the batch then showed it paid: a paid date before the batch, or still to come, is refused.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.errors import InputError
from collector.identity import PayeeError, bank_account, id_number, phone, valid_id_number
from collector.store import Store
from tests import test_wages
from tests.helpers import resident_id
from tests.test_wages_payments import PERIOD, approve, bank_return, batch, credits, paid_day, pain002, tx
from tests.test_wages_sheet import ACCOUNT, AGREEING, HEADER, Sheets

month = test_wages.month
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


# ============================================================================== the one check


def born(yyyymmdd: str) -> bool:
    try:
        return date(1900, 1, 1) <= date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])) <= date.today()
    except ValueError:
        return False


@given(st.text(alphabet="0123456789", min_size=6, max_size=6),
       st.one_of(st.dates(date(1890, 1, 1), date(2100, 12, 31)).map(lambda d: d.strftime("%Y%m%d")),
                 st.text(alphabet="0123456789", min_size=8, max_size=8)),
       st.text(alphabet="0123456789", min_size=3, max_size=3), st.sampled_from("0123456789Xx"))
def test_an_id_number_is_accepted_exactly_when_its_birth_date_and_check_character_are_right(region, birth, serial,
                                                                                           last):
    body = region + birth + serial
    right = "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]
    if last.upper() == right and born(birth):
        assert id_number(body + last) == body + right and valid_id_number(body + right)
    else:
        with pytest.raises(PayeeError):
            id_number(body + last)


@given(st.text(alphabet="0123456789", min_size=6, max_size=6), st.text(alphabet="0123456789", min_size=6, max_size=6),
       st.text(alphabet="0123456789", min_size=3, max_size=3))
def test_a_15_digit_id_number_is_kept_in_its_18_character_form_when_its_birth_date_is_one(region, birth, serial):
    old = region + birth + serial
    if born("19" + birth):
        kept = id_number(old)
        assert kept[:6] + kept[8:17] == old and kept[6:8] == "19" and valid_id_number(kept)
        assert id_number(kept) == kept
    else:
        with pytest.raises(PayeeError, match="or the 15 digits of a card issued before 1999"):
            id_number(old)


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_anything_is_either_refused_masked_or_kept_as_it_is_checked_again(value):
    for check in (id_number, phone, bank_account):
        try:
            kept = check(value)
        except PayeeError as error:
            message = str(error)
            assert "\n" not in message and isinstance(error, InputError)
            digits = "".join(c for c in value if c.isdigit())
            assert len(digits) < 8 or digits not in message, "a refused number is never shown whole"
            continue
        assert check(kept) == kept


@pytest.mark.parametrize("given, kept", [
    ("+86 138-1234-5678", "13812345678"), ("0086 13812345678", "13812345678"), ("13812345678", "13812345678"),
    ("010-12345678", "01012345678"), ("0755 8888 1234", "075588881234"), ("+44 20 7946 0958", "+442079460958"),
])
def test_phones_people_have(given, kept):
    assert phone(given) == kept


@pytest.mark.parametrize("bad", ["123", "12345", "12812345678", "1381234567", "+86 12812345678", "phone", "+8613812"])
def test_phones_that_are_not(bad):
    with pytest.raises(PayeeError, match="is not a mobile number"):
        phone(bad)


@pytest.fixture
def store(database):
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="Site one")
        store.add_worker("W1", name="Worker one", employer="E", sites=["S1"])
        yield store


def test_the_store_refuses_a_payee_that_is_not_one_on_every_write(store):
    valid = resident_id(1)
    wrong_check = valid[:17] + ("0" if valid[17] != "0" else "1")
    for fields, why in (({"id_number": "ABC"}, "ID number '***' is not a resident ID number: 18 characters"),
                        ({"id_number": wrong_check}, "valid check digit"),
                        ({"bank_account": "12AB"}, "bank account '****' is not 8 to 32 digits"),
                        ({"phone": "123"}, "phone '***' is not a mobile number"),
                        ({"id_number": ""}, "ID number (empty)"),
                        ({"bank_account": "6222021234567890001" * 3}, "(57 characters)")):
        with pytest.raises(PayeeError, match=re.escape(why)) as refused:
            store.set_payee("W1", **fields)
        assert wrong_check not in str(refused.value)
    assert {k: v for k, v in store.payee("W1").items() if k in ("id_number", "phone", "bank_account")} == \
        {"id_number": None, "phone": None, "bank_account": None}, "nothing written"
    store.set_payee("W1", id_number=valid[:17] + valid[17].lower(), phone="+86 138-1234-5678",
                    bank_account="6222 0212 3456 7890 001")
    assert (store.payee("W1")["id_number"], store.payee("W1")["phone"], store.payee("W1")["bank_account"]) == \
        (valid, "13812345678", "6222021234567890001")


def test_worker_payee_refuses_what_the_worker_file_refuses_and_a_line_without_id_or_contact_is_flagged(month):
    before = month.json("worker", "list")
    for option, value, shown in (("--id-number", "ABC", "'***'"), ("--account", "12AB", "'****'"),
                                 ("--phone", "123", "'***'"), ("--id-number", "110101199003071234",
                                                                "'110***********1234'")):
        refused = month.cli("worker", "payee", "W1", option, value, check=False)
        assert refused.returncode == 1 and shown in refused.stderr, (option, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        if len(value) > 8:
            assert value not in refused.stderr, "masked"
    assert month.json("worker", "list") == before
    with month.setup.store() as store:
        assert store.payee("W1")["id_number"] == resident_id(1)
    # Workers registered before the check, or without an ID number or phone: the table shows it.
    with month.setup.store() as store, store.transaction():
        store.execute("UPDATE workers SET id_number = NULL WHERE worker = 'W2'")
        store.execute("UPDATE workers SET phone = NULL WHERE worker = 'W3'")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang")
    lines = {line["worker"]: line for line in month.json("wages", "show", *PERIOD)["lines"]}
    assert "no_id_number" in lines["W2"]["flags"] and "no_contact" not in lines["W2"]["flags"]
    assert "no_contact" in lines["W3"]["flags"] and "no_id_number" not in lines["W3"]["flags"]
    assert not {"no_id_number", "no_contact"} & set(lines["W1"]["flags"])


def old_form(id_18: str) -> str:
    """The 15-digit number of a card issued before 1999 for the person of ``id_18`` (born in the 1900s)."""
    return id_18[:6] + id_18[8:17]


def test_a_15_digit_id_number_is_one_person_with_its_18_character_form_on_every_path(month, tmp_path):
    w1 = resident_id(1)
    # worker payee, the worker file: kept in the 18-character form; a bad birth date is refused on both.
    month.cli("worker", "payee", "W2", "--id-number", old_form(w1))
    with month.setup.store() as store:
        assert store.payee("W2")["id_number"] == w1
    (tmp_path / "w.csv").write_text(f"worker,name,id_number\nW7,王七,{old_form(resident_id(7))}\n"
                                    "W8,王八,110101901307123\n", encoding="utf-8")
    refused = month.cli("worker", "import", str(tmp_path / "w.csv"), check=False)
    assert refused.returncode == 1 and "w.csv: line 3: ID number '110********7123' is not a resident ID number" \
        in refused.stderr and "line 2" not in refused.stderr
    refused = month.cli("worker", "payee", "W3", "--id-number", "110101901307123", check=False)
    assert refused.returncode == 1 and "or the 15 digits of a card issued before 1999" in refused.stderr
    (tmp_path / "w.csv").write_text(f"worker,name,id_number\nW7,王七,{old_form(resident_id(7))}\n", encoding="utf-8")
    month.cli("worker", "import", str(tmp_path / "w.csv"))
    with month.setup.store() as store:
        assert store.payee("W7")["id_number"] == resident_id(7)
    # So one person given in both forms is one ID number on two workers: held for a decision.
    lines = {line["worker"]: line for line in month.json("wages", "run", *PERIOD, "--by", "ops-wang")["lines"]}
    assert (lines["W1"]["duplicate_id_with"], lines["W2"]["duplicate_id_with"]) == (["W2"], ["W1"])
    assert lines["W1"]["status"] == lines["W2"]["status"] == "needs_decision"


def test_a_sheet_reads_id_numbers_and_accounts_by_the_same_rules(month, tmp_path):
    sheets = Sheets(month, tmp_path / "sheets")
    sheets.run_table()
    header = ["工号", "姓名", "身份证号", "出勤天数", "应发工资", "扣款", "银行账号"]
    w3 = resident_id(3)
    wrong_check = w3[:17] + ("0" if w3[17] != "0" else "1")
    refused = sheets.import_(sheets.csv("bad.csv", [header, ["W1", "工人W1", "110101199002301238", "4", "1460.00", "20.00",
                                                             ACCOUNT["W1"]],
                                                    ["W3", "工人W3", wrong_check, "1", "100.00", "0", ACCOUNT["W3"]]]),
                             check=False)
    assert refused.returncode == 1 and "bad.csv: 2 bad row(s); nothing imported" in refused.stderr
    assert "bad.csv: line 2: ID number '110***********1238' is not a resident ID number" in refused.stderr
    assert "bad.csv: line 3: ID number " in refused.stderr and wrong_check not in refused.stderr
    # W1's ID number in its 15-digit form is W1's: no id_differs; W3's another person's.
    other = resident_id(3, region="110102")
    sheets.import_(sheets.csv("ok.csv", [header, ["W1", "工人W1", old_form(resident_id(1)), "4", "1460.00", "20.00",
                                                  ACCOUNT["W1"]],
                                         ["W3", "工人W3", old_form(other), "1", "100.00", "0", ACCOUNT["W3"]]]))
    found = {(f["kind"], f["worker"]) for f in json.loads(sheets.check())["findings"]}
    assert ("id_differs", "W3") in found and ("id_differs", "W1") not in found


def test_the_payer_account_is_an_account_too(month):
    before = month.cli("site", "pay-day", "S1").stdout
    refused = month.cli("site", "pay-day", "S1", "--day", "15", "--payer-account", "12AB", "--payer-name", "某公司",
                        "--payer-bank", "某银行", "--from", "2026-02-01", "--by", "ops-li", check=False)
    assert refused.returncode == 1 and "bank account '****' is not 8 to 32 digits" in refused.stderr
    assert month.cli("site", "pay-day", "S1").stdout == before, "nothing recorded"
    month.cli("site", "pay-day", "S1", "--day", "15", "--payer-account", "1100 0000-0002", "--payer-name", "某公司",
              "--payer-bank", "某银行", "--from", "2026-02-01", "--by", "ops-li")
    with month.setup.store() as store:
        assert store.site_pay_in_force("S1", "2026-10-31")["payer_account"] == "110000000002"


# ============================================================================== deductions from a sheet


def test_a_sheet_adds_only_what_it_claims_beyond_the_recorded_deductions_and_never_less(month, tmp_path):
    sheets = Sheets(month, tmp_path / "sheets")  # W1 has 20.00 (个人所得税) recorded by ops-li
    claims_more = [HEADER, ["W1", "工人W1", "4", "1460.00", "50.00", ACCOUNT["W1"]], *AGREEING[1:]]
    taken = sheets.import_(sheets.csv("more.csv", claims_more), "--take-deductions", "--json").stdout
    assert '"recorded": 1' in taken and '"recorded_fen": 3000' in taken
    with month.setup.store() as store:
        rows = [(d["worker"], d["item"], d["amount_fen"], d["reason"]) for d in store.deductions("S1", "2026-10")]
    assert rows == [("W1", "个人所得税", 2000, rows[0][3]),
                    ("W1", "扣款", 3000, "claimed in the employer's wage sheet more.csv, line 2: 50.00 yuan, "
                                        "20.00 of it recorded before")]
    # The same figures in another file: nothing more.
    again = [HEADER, ["W1", "工人W1", "4", "1460.00", "50.00", ACCOUNT["W1"]], AGREEING[2]]
    assert '"recorded_fen": 0' in sheets.import_(sheets.csv("again.csv", again), "--take-deductions",
                                                  "--json").stdout
    # Less than is recorded: refused with both figures, and the sheet is not kept.
    kept = sheets.count("wage_sheets")
    less = [HEADER, ["W1", "工人W1", "4", "1460.00", "10.00", ACCOUNT["W1"]], *AGREEING[1:]]
    refused = sheets.import_(sheets.csv("less.csv", less), "--take-deductions", check=False)
    assert refused.returncode == 1 and "W1: the sheet deducts 10.00 yuan, 50.00 are recorded" in refused.stderr
    assert "nothing imported" in refused.stderr and sheets.count("wage_sheets") == kept
    with month.setup.store() as store:
        assert sum(d["amount_fen"] for d in store.deductions("S1", "2026-10")) == 5000
    # Without --take-deductions the sheet is kept for the check, as before.
    assert sheets.import_(sheets.csv("less.csv", less)).returncode == 0


# ============================================================================== the paid date


def test_a_return_cannot_date_a_payment_before_its_batch_or_in_the_future(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    today = date.fromisoformat(paid_day())
    tomorrow = (datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)).isoformat()
    for name, path in (
            ("csv", bank_return(tmp_path / "old.csv", [(ids["W1"][0], "paid", "V1", "2000-01-01", "")])),
            ("pain.002", pain002(tmp_path / "old.xml", "S1-202610-V1-B1",
                                 [tx(ids["W1"][0], "ACSC", voucher="V1", day="2000-01-01")]))):
        refused = month.cli("wages", "paid", "--by", "ops-sun", path, check=False)
        assert refused.returncode == 1 and "nothing recorded" in refused.stderr, name
        assert f"{ids['W1'][0]} is paid on 2000-01-01 in the return, before its batch S1-202610-V1-B1 was made " \
               f"({today})" in refused.stderr, refused.stderr
    future = bank_return(tmp_path / "future.csv", [(ids["W1"][0], "paid", "V1", "2099-01-01", ""),
                                                   (ids["W3"][0], "paid", "V3", tomorrow, "")])
    refused = month.cli("wages", "paid", "--by", "ops-sun", future, check=False)
    assert refused.returncode == 1 and refused.stderr.count("a day still to come") == 2
    assert "future.csv: line 2" in refused.stderr and "future.csv: line 3" in refused.stderr
    # Nothing was recorded: as of a day before the batch the credit is not paid, nor is it today.
    for as_of in ("2026-11-20", paid_day()):
        rows = {r["worker"]: r for r in month.json("arrears", "--site", "S1", "--as-of", as_of)["workers"]}
        assert rows["W1"]["paid_fen"] == 0
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "today.csv", [(ids["W1"][0], "paid", "V1", paid_day(), "")]))
    rows = {r["worker"]: r for r in month.json("arrears", "--site", "S1", "--as-of", paid_day())["workers"]}
    assert "W1" not in rows or rows["W1"]["paid_fen"] == 144000
