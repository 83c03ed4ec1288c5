"""Who is paid: one bank account or one ID number on several workers holds their lines for a decision,
and an employer's sheet naming another person than the registered worker is a finding; on both engines,
through the CLI, from the attacks that passed before.

October 2026 as tests/test_wages.py builds it (W1 to W5 of 华建劳务 at S1, each registered with an ID
number and an account of their own), with a worker W6 of another employer, registered at a site S2.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta

from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.wages.table import same_payees
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests import test_wages
from tests.helpers import PunchFactory, heartbeat, resident_id
from tests.test_wages import CARDS, local
from tests.test_wages_sheet import ACCOUNT, HEADER, Sheets

#: The final October of tests/test_wages.py, on both engines.
month = test_wages.month
PERIOD = ("--site", "S1", "--period", "2026-10")
#: A resident ID number with a valid check digit, nobody's in the fixture.
OTHER_ID = "11010519491231002X"
OTHER_ACCOUNT = "6217000099998888777"


def registered_id(worker: str) -> str:
    return resident_id(int(worker[1:]))


def add_w6(month, *, account: str | None = None, id_number: str | None = None) -> PunchFactory:
    """W6 of another employer, at site S2 (its own gate): in the bank's registry, in no table of S1."""
    east = PunchFactory(site="S2", gate="east")
    with month.setup.store() as store:
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_gate("S2", "east", east.public_key)
        store.add_worker("W6", name="王五", employer="宏达劳务", cards=["04A1B2C3D4E506"], sites=["S2"])
    options = [("--account", account), ("--id-number", id_number)]
    month.cli("worker", "payee", "W6", *[text for option, value in options if value for text in (option, value)])
    return east


def lines(table: dict) -> dict:
    return {line["worker"]: line for line in table["lines"]}


# ============================================================================== the table (item 8)


def test_workers_sharing_one_account_are_held_for_a_decision_before_approval_and_batch(month, tmp_path):
    # W2's account is W1's; W3's is W6's, a worker of another site and employer who is in no table here.
    month.cli("worker", "payee", "W2", "--account", ACCOUNT["W1"])
    add_w6(month, account=ACCOUNT["W3"])
    month.cli("punch", "add", "--worker", "W4", "--site", "S1", "--at", "2026-10-10T17:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    table = lines(month.json("wages", "run", *PERIOD, "--by", "ops-wang"))
    for worker, others in (("W1", ["W2"]), ("W2", ["W1"]), ("W3", ["W6"])):
        assert (table[worker]["status"], table[worker]["shared_account_with"]) == ("needs_decision", others)
        assert "shared_account" in table[worker]["flags"]
    assert (table["W4"]["status"], table["W5"]["status"]) == ("payable", "payable")
    assert table["W5"]["shared_account_with"] == [] and "W6" not in table
    assert ACCOUNT["W1"] not in json.dumps(table), "accounts stay masked"
    shown = month.cli("wages", "show", *PERIOD).stdout
    assert "to decide: the same bank account as another worker: W2 (shared_account)" in shown
    assert "to decide: the same bank account as another worker: W6 (shared_account)" in shown
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", check=False)
    assert refused.returncode == 1
    assert ("3 line(s) need a decision first: W1 (rate_changed, shared_account: the same bank account as another "
            "worker, W2); W2 (shared_account: the same bank account as another worker, W1)" in refused.stderr)
    assert "W3 (below_minimum, shared_account: the same bank account as another worker, W6)" in refused.stderr
    # Approved over them, the three lines are held: the batch pays W4 and W5 only.
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", *(
        arg for w in ("W1", "W2", "W3") for arg in ("--override", f"{w}=accounts being checked with 华建劳务")))
    out = tmp_path / "batch.csv"
    made = month.cli("wages", "batch", "--by", "ops-qian", *PERIOD, "--format", "csv", "--out", str(out)).stdout
    assert "2 credit(s), 700.00 yuan" in made
    assert "held: W2 (needs_decision: shared_account: the same bank account as another worker) is not paid" in made
    batch_text = out.read_bytes().decode("utf-8-sig")
    assert "W1" not in batch_text and "W2" not in batch_text and "W3" not in batch_text
    # W2's own account registered, the correction pays W1 and W2; W3 still shares W6's.
    month.cli("worker", "payee", "W2", "--account", ACCOUNT["W2"])
    again = lines(month.json("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "W2's own account"))
    assert (again["W1"]["status"], again["W2"]["status"], again["W3"]["status"]) == \
        ("payable", "payable", "needs_decision")
    assert "shared_account" not in again["W1"]["flags"] and again["W1"]["shared_account_with"] == []


def test_one_id_number_on_two_workers_is_a_decision_the_slip_explains_without_naming_the_other(month, tmp_path):
    month.cli("worker", "payee", "W2", "--id-number", OTHER_ID)
    month.cli("worker", "payee", "W3", "--id-number", OTHER_ID)
    table = lines(month.json("wages", "run", *PERIOD, "--by", "ops-wang"))
    assert (table["W2"]["flags"], table["W2"]["duplicate_id_with"], table["W2"]["status"]) == \
        (["duplicate_id"], ["W3"], "needs_decision")
    assert table["W3"]["duplicate_id_with"] == ["W2"] and table["W1"]["duplicate_id_with"] == []
    assert OTHER_ID not in json.dumps(table)
    refused = month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao", check=False)
    assert "W2 (duplicate_id: the same ID number as another worker, W3)" in refused.stderr
    out = tmp_path / "w3.html"
    data = month.json("wages", "slip", "--worker", "W3", "--period", "2026-10", "--out", str(out))
    assert data["flag_words"]["duplicate_id"] == ["与其他工人身份证号相同", "the same ID number as another worker"]
    page = out.read_text(encoding="utf-8")
    assert "待核定 To decide: 与其他工人身份证号相同 the same ID number as another worker" in page
    assert "W2" not in page and OTHER_ID not in page


def test_one_worker_paid_at_two_sites_from_one_account_is_one_payee_not_a_flag(month):
    east = PunchFactory(site="S2", gate="east")
    with month.setup.store() as store:
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_gate("S2", "east", east.public_key)
        store.assign("W1", "S2", by="ops-li")
    for direction, at in (("in", "2026-10-20 08:00"), ("out", "2026-10-20 17:00")):
        punch = east.next(card=CARDS["W1"], direction=direction, at=local(at).astimezone(UTC))
        with month.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S2", "east").punch, encode_punches([punch]),
                                             format_time(local(at) + timedelta(seconds=2)))])
    with month.setup.store() as store, store.transaction():
        when = local("2026-11-02 09:00")
        store.save_status("S2", "east", {"v": 1, "state": "online", **heartbeat(
            gate="east", time=format_time(when), pending=0, oldest_pending_at=None)}, format_time(when))
    s1 = lines(month.json("wages", "run", *PERIOD, "--by", "ops-wang"))
    s2 = lines(month.json("wages", "run", "--site", "S2", "--period", "2026-10", "--by", "ops-wang"))
    assert s2["W1"]["days"] == 1 and s2["W1"]["status"] == "payable"
    for line in (s1["W1"], s2["W1"]):
        assert not {"shared_account", "duplicate_id"} & set(line["flags"])


@given(st.dictionaries(st.sampled_from([f"W{n}" for n in range(8)]),
                       st.tuples(st.sampled_from(["", "6222 0001", "62220001", "6222-0002", None]),
                                 st.sampled_from(["", "11010519491231002x", "11010519491231002X", None]))))
def test_a_worker_is_flagged_exactly_when_another_worker_is_the_same_payee(registry):
    payees = {worker: {"worker": worker, "bank_account": account, "id_number": id_number}
              for worker, (account, id_number) in registry.items()}
    found = same_payees(payees)

    def key(flag, payee):
        if flag == "shared_account":
            return "".join(c for c in payee["bank_account"] or "" if c.isdigit())
        return "".join((payee["id_number"] or "").split()).upper()

    for worker, payee in payees.items():
        for flag in ("shared_account", "duplicate_id"):
            others = sorted(w for w, p in payees.items()
                            if w != worker and key(flag, payee) and key(flag, p) == key(flag, payee))
            assert found.get(worker, {}).get(flag, []) == others


# ============================================================================== the employer's sheet (item 10)


def test_a_sheet_naming_another_person_under_a_registered_number_is_found_and_shown_masked(month, tmp_path):
    add_w6(month, account="6217000011110006", id_number=resident_id(6))
    sheets = Sheets(month, tmp_path / "sheets")
    sheets.run_table()
    rows = [
        ["工号", "姓名", "身份证号", "出勤天数", "应发工资", "扣款", "银行账号"],
        # 王五 with his own ID and account under W1's number: another person claiming W1's wage.
        ["W1", "王五", OTHER_ID, "4", "1460.00", "20.00", OTHER_ACCOUNT],
        # W2 as a person writes a name: a space and a full-width letter are the same name.
        ["W2", "工人 Ｗ2", registered_id("W2"), "3", "247.56", "0", ACCOUNT["W2"]],
        # W3's ID with other birth digits: masked, both read alike, and the finding says so.
        ["W3", "工人W3", resident_id(3, region="110102"), "1", "100.00", "0", ACCOUNT["W3"]],
        ["W5", "工人W5", "", "1", "400.00", "0", ACCOUNT["W5"]],
        # W6 works for 宏达劳务: on 华建劳务's sheet, someone else's worker.
        ["W6", "王五", "", "1", "350.00", "0", "6217000011110006"],
    ]
    sheets.import_(sheets.csv("huajian.csv", rows), "--employer", "华建劳务")
    result = json.loads(sheets.check())
    found = {(f["kind"], f["worker"]): f for f in result["findings"]}
    identity = {key for key in found if key[0] in ("other_employer", "name_differs", "id_differs", "account_differs")}
    assert identity == {("name_differs", "W1"), ("id_differs", "W1"), ("account_differs", "W1"),
                        ("id_differs", "W3"), ("other_employer", "W6")}
    name = found[("name_differs", "W1")]
    assert (name["name"], name["row"], name["sheet_says"], name["gates_say"]) == \
        ("工人W1", 2, "name 王五", "registered as 工人W1")
    assert found[("id_differs", "W1")]["sheet_says"] == "ID 110***********002X"
    assert found[("id_differs", "W1")]["gates_say"] == "registered ID 110***********0001"
    assert found[("account_differs", "W1")]["detail"] == {"sheet_bank_account": "***************8777",
                                                         "registered_bank_account": "***************0001"}
    assert found[("id_differs", "W3")]["gates_say"] == \
        "registered ID 110***********0003 (they differ in the hidden digits)"
    other = found[("other_employer", "W6")]
    assert (other["sheet_says"], other["gates_say"]) == ("on the sheet of 华建劳务", "registered with 宏达劳务")
    text = sheets.check(fmt="--csv") + sheets.month.cli("wages", "check", *PERIOD).stdout + json.dumps(result)
    for whole in (OTHER_ID, OTHER_ACCOUNT, resident_id(3, region="110102"), registered_id("W1"), ACCOUNT["W1"]):
        assert whole not in text, "numbers are shown masked, never whole"
    shown = sheets.month.cli("wages", "check", *PERIOD).stdout
    assert "name_differs    W1       工人W1         line 2    sheet: name 王五 | gates: registered as 工人W1" in shown
    assert "other_employer 1, name_differs 1, id_differs 2, account_differs 1" in shown


def test_other_employer_needs_the_sheet_s_employer_and_a_name_from_the_sheet_is_escaped(month, tmp_path):
    add_w6(month)
    sheets = Sheets(month, tmp_path / "sheets")
    sheets.run_table()
    sheets.import_(sheets.csv("october.csv", [HEADER, ["W1", "王五\x1b[2J\nW2 fake", "4", "1460.00", "20.00",
                                                       ACCOUNT["W1"]],
                                              ["W6", "王五", "1", "350.00", "0", "6217000011110006"]]))
    result = json.loads(sheets.check())
    assert not [f for f in result["findings"] if f["kind"] == "other_employer"]
    assert "the sheet names no employer: other_employer not checked (import-sheet --employer)" in result["notes"]
    assert ("account_differs", "W6") in {(f["kind"], f["worker"]) for f in result["findings"]}, \
        "an account the bank never registered for the worker"
    shown = sheets.month.cli("wages", "check", *PERIOD).stdout
    assert "\x1b" not in shown and not any(line.startswith("W2 fake") for line in shown.splitlines())
    assert "sheet: name 王五\\x1b[2J\\nW2 fake | gates: registered as 工人W1" in shown
