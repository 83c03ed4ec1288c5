"""`collector verify` is strict: a file the bank signed still fails when its days say anything the punches do
not give, and a file whose bytes two JSON readers could read differently fails before anything is checked.

The edits are those an outside auditor made to a genuine file, re-signed with the trusted bank key (a bank
that signs a wrong file), and the byte-level tricks that let one file say two things. The bank's word alone
(a flag that rests on what the file does not carry) is the one thing left out, and said so.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.evidence import format2
from collector.evidence.canonical import CanonicalError
from collector.evidence.document import EvidenceError, read_evidence, verify_evidence
from collector.evidence.format2 import BANK_FLAGS
from tests.helpers import BANK_KEY, BANK_KEYS, BANK_PUBLIC
from tests.test_hostile_evidence import bank, verify  # noqa: F401 - the fixture: a genuine 3-hour day of W1

assert bank  # the fixture, used by name below


def resigned(document: dict) -> dict:
    """What a bank that signs a wrong file hands out: the edit, under the trusted key."""
    return format2.sign(document, BANK_KEY)


def day(document: dict) -> dict:
    return document["days"][0]


def edit(document: dict, change) -> dict:
    document = copy.deepcopy(document)
    change(document)
    return resigned(document)


EDITS = {
    "a flag added": lambda d: day(d)["flags"].append("late_upload"),
    "a flag taken away": lambda d: day(d)["flags"].remove("repeated_out"),
    "the anomaly dropped": lambda d: day(d).__setitem__("anomalies", []),
    "the anomaly's reason changed": lambda d: day(d)["anomalies"][0].__setitem__("why", "repeated_in"),
    "a punch said voided": lambda d: day(d)["voided"].append(day(d)["anomalies"][0]["ref"]),
    "the name changed": lambda d: day(d).__setitem__("name", "王五"),
    "the employer changed": lambda d: day(d).__setitem__("employer", "Other Co"),
    "the worker changed": lambda d: day(d).__setitem__("worker", "W2"),
    "the day listed twice": lambda d: d["days"].append(copy.deepcopy(day(d))),
    "a field added to the day": lambda d: day(d).__setitem__("bonus_minutes", 60),
    "a field taken from the day": lambda d: day(d).pop("voided"),
    "a void of a punch not in the file": lambda d: d["voids"].append(
        {"ref": "north#999", "site": "S1", "void_at": "2026-11-02T12:00:00.000Z", "by": "ops", "reason": "x"}),
    "a void at a site not in the file": lambda d: d["voids"].append(
        {"ref": f"north#{d['gates'][0]['chains'][0]['punches'][0]['seq']}", "site": "S9",
         "void_at": "2026-11-02T12:00:00.000Z",
         "by": "ops", "reason": "x"}),
    "a manual entry at a site not in the file": lambda d: d["manual"].append(
        {"ref": "manual#7", "site": "S9", "time": "2026-11-02T01:00:00.000Z", "direction": "in", "by": "ops",
         "reason": "x", "entered_at": "2026-11-02T02:00:00.000Z"}),
}


def test_the_genuine_file_has_what_the_edits_change(bank):
    """The edits below are meaningful on this file: a day with a flagged anomaly (the repeated OUT)."""
    assert day(bank.document)["anomalies"] and "repeated_out" in day(bank.document)["flags"]
    verify_evidence(resigned(bank.document), BANK_KEYS)


@pytest.mark.parametrize("name", EDITS)
def test_a_day_the_punches_do_not_give_fails_though_the_bank_signed_it(bank, tmp_path, name):
    forged = edit(bank.document, EDITS[name])
    with pytest.raises(EvidenceError):
        verify_evidence(forged, BANK_KEYS)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1 and "FAILED" in result.stderr and "Traceback" not in result.stderr


def test_days_out_of_order_fail(bank):
    """Two days in reverse order: the file lists days by site and date."""
    document = copy.deepcopy(bank.document)
    later = copy.deepcopy(day(document))
    later.update(date="2026-11-03")
    document["days"] = [later, day(document)]
    with pytest.raises(EvidenceError, match="out of order"):
        verify_evidence(resigned(document), BANK_KEYS)


def test_a_flag_on_the_banks_word_is_left_out_and_nothing_else_is(bank):
    """A flag resting on what the file does not carry (an assignment; the bank's clock at receipt) may be
    stated without the punches giving it: the verifier cannot recompute it, and docs/verify-evidence.md says
    so. Every other flag must be what the punches give."""
    for flag in sorted(BANK_FLAGS):
        document = edit(bank.document, lambda d, flag=flag: day(d).__setitem__("flags", sorted(day(d)["flags"] + [flag])))
        verify_evidence(document, BANK_KEYS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_to_what_a_day_says_fails_unless_it_is_the_banks_word(bank, data):
    """A generated change to one field of the day (a value from another field's vocabulary, a list with an
    element more or less): every one that changes what the day says fails."""
    document = copy.deepcopy(bank.document)
    target = day(document)
    field = data.draw(st.sampled_from(sorted(target)), label="field")
    original = copy.deepcopy(target[field])
    words = ["complete", "open", "anomaly", "missing_out", "repeated_out", "late_upload", "manual", "void",
             "W1", "S1", "2026-11-02", "Zhang Wei", "Hua Jian", None, 0, 180, 181, 179.5]
    if isinstance(original, list):
        if original and data.draw(st.booleans(), label="drop"):
            changed = original[:-1]
        else:
            extra = copy.deepcopy(original[0]) if original else data.draw(st.sampled_from(words), label="extra")
            changed = original + [extra]
    else:
        changed = data.draw(st.sampled_from([w for w in words if w != original or type(w) is not type(original)]),
                            label="value")
    target[field] = changed
    flags_only_bank = field == "flags" and set(changed) ^ set(original) <= BANK_FLAGS
    if flags_only_bank:
        return
    try:
        signed = resigned(document)
    except CanonicalError:  # a float: no bank can sign it in format 2, and a reader refuses it before anything
        signed = document
    with pytest.raises(EvidenceError):
        verify_evidence(signed, BANK_KEYS)


def genuine_bytes(bank) -> bytes:
    return bank.file.read_bytes()


def test_the_genuine_bytes_read_strictly(bank):
    assert read_evidence(genuine_bytes(bank)) == bank.document


@pytest.mark.parametrize("trick", ["duplicate name", "duplicate sig", "byte order mark", "NaN", "Infinity",
                                   "lone surrogate", "trailing data", "upper-case signature"])
def test_bytes_two_readers_could_read_differently_fail(bank, tmp_path, trick):
    text = genuine_bytes(bank).decode("utf-8")
    if trick == "duplicate name":  # a reader keeping the first name reads 王五; Python's json keeps the last
        data = text.replace('"name":', '"name": "王五", "name":', 1).encode()
    elif trick == "duplicate sig":
        data = text.replace('"sig":', '"sig": "' + "0" * 128 + '", "sig":', 1).encode()
    elif trick == "byte order mark":
        data = b"\xef\xbb\xbf" + text.encode()
    elif trick == "NaN":
        data = text.replace('"max_shift_ms":', '"max_shift_ms": NaN, "x":', 1).encode()
    elif trick == "Infinity":
        data = text.replace('"max_shift_ms":', '"max_shift_ms": Infinity, "x":', 1).encode()
    elif trick == "lone surrogate":
        data = text.replace('"reason"', '"r\\ud800"', 1).encode() if '"reason"' in text else \
            text.replace('"employer":', '"\\ud800": 1, "employer":', 1).encode()
    elif trick == "trailing data":
        data = text.encode() + b"\n{}"
    else:
        document = json.loads(text)
        document["sig"] = document["sig"].upper()
        data = json.dumps(document).encode()
    assert data != genuine_bytes(bank)
    path = tmp_path / "tricked.json"
    path.write_bytes(data)
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1, result.stdout
    assert "FAILED" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
