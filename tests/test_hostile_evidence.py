"""Evidence files under attack: every edit an interested party could make to add hours fails `verify`.

A genuine 3-hour day (in 08:00, out 11:00) is turned into a longer one the way someone holding the file
would: by editing what gates do not sign (segment bounds, voids, manual entries, card windows), restating
the days so that the file agrees with itself, or by re-making the whole file with keys of their own.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence.document import EvidenceError, _CheckedPunches, verify_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import (
    GateTopics,
    encode_punches,
    format_time,
    public_key_text,
    sign_document,
    sign_punch,
)
from tests.helpers import BANK_KEY, BANK_KEYS, BANK_PUBLIC, CollectorSetup, PunchFactory, cli

SHANGHAI = ZoneInfo("Asia/Shanghai")
W1, W2 = "04A1B2C3D4E5F6", "DEADBEEF"


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


@pytest.fixture
def bank(tmp_path):
    """A bank whose W1 worked 08:00-11:00 on 2 November, then tapped OUT once more at 20:00 by mistake
    (a repeated OUT, flagged, never counted); W2's punches interleave on both gates. The gates were
    registered on 1 November."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_gate("S1", "south", south.public_key)
        store.add_worker("W1", name="Zhang Wei", employer="Hua Jian", cards=[W1], sites=["S1"])
        store.add_worker("W2", name="Li Na", employer="Hua Jian", cards=[W2], sites=["S1"])
        for gate, card, when, direction in ((north, W1, "08:00", "in"), (north, W2, "08:05", "in"),
                                            (south, W1, "11:00", "out"), (south, W2, "18:00", "out"),
                                            (south, W1, "20:00", "out")):
            moment = local(f"2026-11-02 {when}")
            punch = gate.next(card=card, direction=direction, at=moment.astimezone(UTC))
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])
        with store.transaction():
            store.execute("UPDATE gate_keys SET added_at = '2026-11-01T00:00:00.000Z'")
    out = tmp_path / "w1.json"
    setup.run("evidence", "--worker", "W1", "--from", "2026-11-02", "--to", "2026-11-02", "--out", str(out))
    return SimpleNamespace(setup=setup, file=out, document=json.loads(out.read_text()), north=north, south=south)


def verify(path, *extra: str):
    return cli("collector", "verify", str(path), *extra, check=False)


def restated(document: dict) -> dict:
    """What an editor does after changing the punches: make ``days`` say what the punches now give, so
    that the file agrees with itself."""
    document = copy.deepcopy(document)
    days = _CheckedPunches(document, None).days()
    document["days"] = [{**{k: v for k, v in day.items() if k != "final"}, "name": "Zhang Wei",
                         "employer": "Hua Jian"} for day in days.values()]
    return document


def worked(document: dict) -> int:
    return sum(day["worked_minutes"] for day in document["days"])


def segment(document: dict, gate: str) -> dict:
    return next(g for g in document["gates"] if g["gate"] == gate)


def test_the_genuine_file_verifies_against_the_published_key_and_the_registry(bank):
    assert worked(bank.document) == 180
    published = bank.setup.directory / "bank.pub"
    published.write_text(BANK_PUBLIC + "\n")
    for anchor in (["--bank-key", BANK_PUBLIC], ["--bank-key", str(published)],
                   ["--config", str(bank.setup.config_path)]):
        result = verify(bank.file, *anchor)
        assert result.returncode == 0, result.stderr
        assert "OK: signed by bank key" in result.stdout and "3.00 h" in result.stdout
        assert "no manual entries, no voids" in result.stdout
    assert "registered for its gate when the bank received the punch" in verify(
        bank.file, "--config", str(bank.setup.config_path)).stdout


def drop_own_out_from_segment_start(document: dict) -> None:
    south = segment(document, "south")
    south["punches"].pop(0)
    south["received_at"].pop(0)
    south["first_seq"] += 1


def add_unsigned_void_of_the_out(document: dict) -> None:
    south = segment(document, "south")
    document["voids"].append({"ref": f"south#{south['punches'][0]['seq']}", "site": "S1",
                              "void_at": "2026-11-02T12:00:00.000Z", "by": "ops", "reason": "mistake"})


def add_manual_out_at_2359(document: dict) -> None:
    add_unsigned_void_of_the_out(document)
    document["manual"].append({"ref": "manual#99", "site": "S1", "time": "2026-11-02T15:59:00.000Z",
                               "direction": "out", "by": "ops", "reason": "left late",
                               "entered_at": "2026-11-03T01:00:00.000Z"})


def cut_the_out_from_the_card_window(document: dict) -> None:
    document["cards"] = [{"uid": W1, "valid_from": None, "valid_to": "2026-11-02T02:59:00.000Z"},
                         {"uid": W1, "valid_from": "2026-11-02T03:01:00.000Z", "valid_to": None}]


ATTACKS = [drop_own_out_from_segment_start, add_unsigned_void_of_the_out, add_manual_out_at_2359,
           cut_the_out_from_the_card_window]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_an_edited_file_that_agrees_with_itself_fails(bank, tmp_path, attack):
    document = copy.deepcopy(bank.document)
    attack(document)
    forged = restated(document)
    assert worked(forged) > worked(bank.document), "the edit must add hours, or it proves nothing"
    # The forgery agrees with itself and with every gate signature: only the bank's signature over the
    # whole file (here: the bank signing it would be the bank's own lie) tells it from the truth.
    verify_evidence(sign_document(forged, BANK_KEY), BANK_KEYS)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged, indent=1))
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1 and result.stdout == ""
    assert "FAILED" in result.stderr and "changed after the bank signed it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_any_change_of_a_value_fails(bank):
    """Every leaf of the document, changed: nothing in the file is outside the bank's signature."""
    def leaves(node, path=()):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, path + (key,))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from leaves(value, path + (index,))
        else:
            yield path, node

    checked = 0
    for path, value in leaves(bank.document):
        if path in (("sig",), ("format",), ("version",)):
            continue
        document = copy.deepcopy(bank.document)
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = ("x" + value) if isinstance(value, str) else (None if value is not None else 1)
        with pytest.raises(EvidenceError):
            verify_evidence(document, BANK_KEYS)
        checked += 1
    assert checked > 50


def test_a_file_made_entirely_with_the_attackers_own_keys_fails(bank, tmp_path):
    """New gate keys re-sign every punch, a new 'bank' key signs the file: it agrees with itself, and the
    embedded keys vouch for it. Only a key that came from the bank does not."""
    gate_keys = {"north": Ed25519PrivateKey.generate(), "south": Ed25519PrivateKey.generate()}
    document = copy.deepcopy(bank.document)
    for gate in document["gates"]:
        key = gate_keys[gate["gate"]]
        previous = None
        resigned = []
        for raw in gate["punches"]:
            punch = PunchFactory(gate=gate["gate"]).next()  # only for the type; every field is replaced
            data = dict(raw)
            if gate["gate"] == "south" and data["card"] == W1 and data["seq"] == 1:
                data["time"] = "2026-11-02T11:00:00.000Z"  # 19:00 local
            if previous is not None:
                data["prev"] = previous.digest()
            punch = sign_punch(type(punch)(**data), key)
            resigned.append(punch)
            previous = punch
        gate["punches"] = [p.to_dict() for p in resigned]
        gate["public_keys"] = [public_key_text(key.public_key())]
    own_bank = Ed25519PrivateKey.generate()
    forged = restated(document)
    forged["bank_key"] = public_key_text(own_bank.public_key())
    forged = sign_document(forged, own_bank)
    assert worked(forged) == 11 * 60
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    for anchor in (["--bank-key", BANK_PUBLIC], ["--config", str(bank.setup.config_path)]):
        result = verify(path, *anchor)
        assert result.returncode == 1 and "is not a bank key you trust" in result.stderr, result.stderr
    # Even if the bank's own key had signed it, the registry knows these are not the gates' keys.
    bank_signed = sign_document(dict(forged, bank_key=BANK_PUBLIC), BANK_KEY)
    path.write_text(json.dumps(bank_signed))
    assert verify(path, "--bank-key", BANK_PUBLIC).returncode == 0
    result = verify(path, "--config", str(bank.setup.config_path))
    assert result.returncode == 1 and "is not registered for gate S1/north" in result.stderr


def test_gate_keys_are_checked_against_the_registry_at_the_time(bank, tmp_path):
    """A key revoked before the bank received a punch does not vouch for it."""
    kid = bank.document["gates"][0]["punches"][0]["key"]
    gate = bank.document["gates"][0]["gate"]
    with bank.setup.store() as store, store.transaction():
        store.execute("UPDATE gate_keys SET revoked_at = ? WHERE key_id = ?", ("2026-11-01T12:00:00.000Z", kid))
    result = verify(bank.file, "--config", str(bank.setup.config_path))
    assert result.returncode == 1 and f"of S1/{gate} was revoked at 2026-11-01T12:00" in result.stderr
    assert verify(bank.file, "--bank-key", BANK_PUBLIC).returncode == 0


def test_manual_entries_and_voids_are_listed_never_silent(bank, tmp_path):
    setup = bank.setup
    setup.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-11-02T12:00:00+08:00",
              "--direction", "in", "--reason", "came back through the material gate", "--by", "ops-li")
    setup.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-11-02T13:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    punch_id = next(p["id"] for p in setup.json("punches", "--site", "S1") if p.get("card") == W2
                    and p["direction"] == "out")
    setup.run("punch", "void", str(punch_id), "--reason", "tapped twice", "--by", "ops-wang")
    out = tmp_path / "w1-corrected.json"
    setup.run("evidence", "--worker", "W1", "--from", "2026-11-02", "--to", "2026-11-02", "--out", str(out))
    result = verify(out, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum("manual entry manual#" in line and "ops-li" in line for line in lines) == 2
    assert any("came back through the material gate" in line for line in lines)
    summary = json.loads(cli("collector", "verify", str(out), "--bank-key", BANK_PUBLIC, "--json").stdout)
    assert [e["direction"] for e in summary["manual_entries"]] == ["in", "out"]
    assert summary["worked_minutes"] == 240


MALFORMED = {
    "not json": b"{nope",
    "not utf-8": b"\xff\xfe{}",
    "a list": b"[1, 2, 3]",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "gates not a list": None,
    "a punch not an object": None,
    "days not a list": None,
    "segment without received_at": None,
    "huge max_shift_hours": None,
    "bad period": None,
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_one_line_and_exit_1_never_a_traceback(bank, tmp_path, case):
    data = MALFORMED[case]
    if data is None:
        document = copy.deepcopy(bank.document)
        if case == "gates not a list":
            document["gates"] = "north"
        elif case == "a punch not an object":
            document["gates"][0]["punches"][0] = 42
        elif case == "days not a list":
            document["days"] = {"x": 1}
        elif case == "segment without received_at":
            del document["gates"][0]["received_at"]
        elif case == "huge max_shift_hours":
            document["sites"]["S1"]["max_shift_hours"] = 1e308
        elif case == "bad period":
            document["period"] = {"from": "9999-99-99"}
        # Signed by the bank: the structure itself, not the signature, is what fails.
        data = json.dumps(sign_document(document, BANK_KEY)).encode()
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "FAILED" in result.stderr


def test_verify_needs_a_key_from_the_bank_not_the_one_in_the_file(bank):
    result = verify(bank.file)
    assert result.returncode == 2 and "--bank-key" in result.stderr
    other = public_key_text(Ed25519PrivateKey.generate().public_key())
    result = verify(bank.file, "--bank-key", other)
    assert result.returncode == 1 and "is not a bank key you trust" in result.stderr
