"""Evidence files under attack: every edit an interested party could make to add hours fails `verify`.

A genuine 3-hour day (in 08:00, out 11:00) is turned into a longer one the way someone holding the file
would: by editing what gates do not sign (voids, manual entries, card windows) and restating the days so
that the file agrees with itself, which only the bank's signature tells from the truth; by cutting the
worker's card chain, which the gates' own links tell even when the bank signs the cut; or by re-making
the whole file with keys of their own, which a key from the bank tells, and a bank doing it with made-up
gate keys, which a copy of the register of gate keys tells.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence import format2, register, verify2
from collector.evidence.document import EvidenceError, verify_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import (
    GateTopics,
    Punch,
    encode_punches,
    format_time,
    key_id,
    public_key_text,
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
    (a repeated OUT, flagged, never counted); W2's punches interleave on both gates, of protocol 3. The
    gates were registered on 1 November; a copy of the register is taken after the file is written."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    north, south = PunchFactory(gate="north", version=3), PunchFactory(gate="south", version=3)
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
    mirror = tmp_path / "register.json"
    setup.run("register", "export", "--out", str(mirror))
    return SimpleNamespace(setup=setup, file=out, document=json.loads(out.read_text()), north=north, south=south,
                           mirror=mirror)


def verify(path, *extra: str):
    return cli("collector", "verify", str(path), *extra, check=False)


def restated(document: dict) -> dict:
    """What an editor does after changing the punches: make ``days`` say what the punches now give, so
    that the file agrees with itself."""
    document = copy.deepcopy(document)
    document["days"] = list(verify2._Checked(document, None, None).days().values())
    return document


def worked(document: dict) -> int:
    return sum(day["worked_minutes"] for day in document["days"])


def chain(document: dict, gate: str) -> dict:
    (found,) = next(g for g in document["gates"] if g["gate"] == gate)["chains"]
    return found


def test_the_genuine_file_verifies_against_the_published_key_and_the_register(bank):
    assert worked(bank.document) == 180
    assert [c["link"] for g in bank.document["gates"] for c in g["chains"]] == ["card", "card"]
    published = bank.setup.directory / "bank.pub"
    published.write_text(BANK_PUBLIC + "\n")
    for anchor in (["--bank-key", BANK_PUBLIC], ["--bank-key", str(published)],
                   ["--config", str(bank.setup.config_path)]):
        result = verify(bank.file, *anchor)
        assert result.returncode == 0, result.stderr
        assert "OK: signed by bank key" in result.stdout and "3 h 00 min" in result.stdout
        assert "no copy of the register was given" in result.stdout
    result = verify(bank.file, "--bank-key", BANK_PUBLIC, "--register", str(bank.mirror))
    assert result.returncode == 0, result.stderr
    assert "in the copy of the register you gave" in result.stdout
    assert "no copy of the register was given" not in result.stdout


def test_the_file_carries_nothing_of_another_worker(bank):
    """W2's punches interleave with W1's at both gates: none of them, nor W2's card, is in W1's file."""
    text = bank.file.read_text()
    assert W2 not in text and "Li Na" not in text
    assert all(p["card"] == W1 for g in bank.document["gates"] for c in g["chains"] for p in c["punches"])


def add_unsigned_void_of_the_out(document: dict) -> None:
    south = chain(document, "south")
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


#: Edits of what no gate signs, on the bank's word: only the bank's signature tells them.
BANK_WORD = [add_unsigned_void_of_the_out, add_manual_out_at_2359, cut_the_out_from_the_card_window]


@pytest.mark.parametrize("attack", BANK_WORD, ids=lambda a: a.__name__)
def test_an_edited_file_that_agrees_with_itself_fails(bank, tmp_path, attack):
    document = copy.deepcopy(bank.document)
    attack(document)
    forged = restated(document)
    assert worked(forged) > worked(bank.document), "the edit must add hours, or it proves nothing"
    # The forgery agrees with itself and with every gate signature: only the bank's signature over the
    # whole file (here: the bank signing it would be the bank's own lie) tells it from the truth.
    verify_evidence(format2.sign(forged, BANK_KEY), BANK_KEYS)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged, indent=1))
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1 and result.stdout == ""
    assert "FAILED" in result.stderr and "changed after the bank signed it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def drop_the_out_from_the_chain(document: dict) -> None:
    """The card's first punch at the south gate (its OUT at 11:00) taken out: the 20:00 OUT then closes the day."""
    south = chain(document, "south")
    for name in ("punches", "received_at", "card_flags"):
        south[name].pop(0)


def replace_the_out_with_a_later_one(document: dict) -> None:
    """The chain's first punch swapped for a copy of the later one: the two now name one predecessor."""
    south = chain(document, "south")
    for name in ("punches", "received_at", "card_flags"):
        south[name][0] = copy.deepcopy(south[name][1])


def end_the_chain_before_the_evening(document: dict) -> None:
    """The 20:00 OUT taken out and the chain said to end after the period (``later``)."""
    south = chain(document, "south")
    for name in ("punches", "received_at", "card_flags"):
        south[name].pop()
    south["end"] = "later"


#: Cuts of the worker's card chain: the gates' links tell them, even with the bank's signature on them.
CHAIN_CUTS = {drop_the_out_from_the_chain: "a punch of the card before it could be missing",
              replace_the_out_with_a_later_one: "the punch is in the file twice",
              end_the_chain_before_the_evening: "whose local date is not after the period"}


@pytest.mark.parametrize("attack", CHAIN_CUTS, ids=lambda a: a.__name__)
def test_a_cut_card_chain_fails_though_the_bank_signs_it(bank, tmp_path, attack):
    document = copy.deepcopy(bank.document)
    attack(document)
    # Whatever the days then say (the check never reaches them), the bank signs it.
    forged = format2.sign(document, BANK_KEY)
    with pytest.raises(EvidenceError, match=CHAIN_CUTS[attack]):
        verify_evidence(forged, BANK_KEYS)
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(forged))
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 1 and CHAIN_CUTS[attack] in result.stderr


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


def remade(document: dict, gate_keys: dict, bank_key: Ed25519PrivateKey, *, index_of) -> dict:
    """The file re-made with ``gate_keys``: every punch re-signed and re-linked (card and gate links), the
    south OUT at 19:00 instead of 11:00, each key cited by a register entry ``bank_key`` signs."""
    document = copy.deepcopy(document)
    for gate in document["gates"]:
        key = gate_keys[gate["gate"]]
        for found in gate["chains"]:
            previous = None
            resigned = []
            for raw in found["punches"]:
                data = dict(raw, key=key_id(key.public_key()))
                if gate["gate"] == "south" and data["card"] == W1 and data["dir"] == "out" and previous is None:
                    data["time"] = "2026-11-02T11:00:00.000Z"  # 19:00 local
                if previous is not None:
                    data["cprev"] = previous.digest()
                punch = sign_punch(Punch(**data), key)
                resigned.append(punch)
                previous = punch
            found["punches"] = [p.to_dict() for p in resigned]
        entry = gate["keys"][0]
        public = public_key_text(key.public_key())
        gate["keys"] = [register.sign_entry({**{k: v for k, v in entry.items() if k not in ("sig", "bank_key")},
                                             "index": index_of(entry), "key_id": key_id(key.public_key()),
                                             "public_key": public}, bank_key)]
    forged = restated(document)
    return format2.sign(forged, bank_key)


def test_a_file_made_entirely_with_the_attackers_own_keys_fails(bank, tmp_path):
    """New gate keys re-sign every punch, a new 'bank' key signs the register entries and the file: it
    agrees with itself, and its own keys vouch for it. Only a key that came from the bank does not."""
    gate_keys = {"north": Ed25519PrivateKey.generate(), "south": Ed25519PrivateKey.generate()}
    own_bank = Ed25519PrivateKey.generate()
    forged = remade(bank.document, gate_keys, own_bank, index_of=lambda entry: entry["index"])
    assert worked(forged) == 11 * 60
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    for anchor in (["--bank-key", BANK_PUBLIC], ["--config", str(bank.setup.config_path)]):
        result = verify(path, *anchor)
        assert result.returncode == 1 and "is not a bank key you trust" in result.stderr, result.stderr


@pytest.mark.parametrize("index", ["the same index", "a new index"])
def test_gate_keys_the_bank_makes_up_fail_against_a_copy_of_the_register(bank, tmp_path, index):
    """The bank itself re-makes the file with made-up gate keys it cites from register entries it signs
    now (under an index its register already gave another key, or a new one past the copy). With the
    bank's key alone that is the bank's word, and the check says so; a copy of the register taken before
    tells the made-up keys."""
    gate_keys = {"north": Ed25519PrivateKey.generate(), "south": Ed25519PrivateKey.generate()}
    shift = 0 if index == "the same index" else 10
    forged = remade(bank.document, gate_keys, BANK_KEY, index_of=lambda entry: entry["index"] + shift)
    assert worked(forged) == 11 * 60
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    result = verify(path, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 0 and "rest on the bank's signature" in result.stdout, result.stderr
    result = verify(path, "--bank-key", BANK_PUBLIC, "--register", str(bank.mirror))
    assert result.returncode == 1, result.stdout
    assert ("is not the cited one" if shift == 0 else "is not in the copy of the register") in result.stderr


def test_a_key_revoked_before_its_punches_arrived_fails_against_a_copy_of_the_register(bank, tmp_path):
    """The register's copy holds a revocation of the north key from before the bank received its punches."""
    kid = chain(bank.document, "north")["punches"][0]["key"]
    with bank.setup.store() as store:
        with store.transaction():
            store.execute("UPDATE gate_keys SET revoked_at = ? WHERE key_id = ?", ("2026-11-01T12:00:00.000Z", kid))
        register.sync(store, BANK_KEY)
    later = tmp_path / "register-later.json"
    bank.setup.run("register", "export", "--out", str(later))
    result = verify(bank.file, "--bank-key", BANK_PUBLIC, "--register", str(later))
    assert result.returncode == 1 and "revoked at 2026-11-01T12:00:00.000Z" in result.stderr, result.stderr
    assert verify(bank.file, "--bank-key", BANK_PUBLIC, "--register", str(bank.mirror)).returncode == 0


def test_manual_entries_are_listed_and_another_workers_void_is_not_carried(bank, tmp_path):
    setup = bank.setup
    setup.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-11-02T12:00:00+08:00",
              "--direction", "in", "--reason", "came back through the material gate", "--by", "ops-li")
    setup.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-11-02T13:00:00+08:00",
              "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    punch_id = next(p["id"] for p in setup.json("punches", "--site", "S1") if p.get("card") == W2
                    and p["direction"] == "out")
    setup.run("punch", "void", str(punch_id), "--reason", "card lent to colleague", "--by", "ops-wang")
    out = tmp_path / "w1-corrected.json"
    setup.run("evidence", "--worker", "W1", "--from", "2026-11-02", "--to", "2026-11-02", "--out", str(out))
    assert "card lent to colleague" not in out.read_text() and "ops-wang" not in out.read_text()
    result = verify(out, "--bank-key", BANK_PUBLIC)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum("manual entry manual#" in line and "ops-li" in line for line in lines) == 2
    assert any("came back through the material gate" in line for line in lines)
    summary = json.loads(cli("collector", "verify", str(out), "--bank-key", BANK_PUBLIC, "--json").stdout)
    assert [e["direction"] for e in summary["manual_entries"]] == ["in", "out"] and summary["voids"] == []
    assert summary["worked_minutes"] == 240


MALFORMED = {
    "not json": b"{nope",
    "not utf-8": b"\xff\xfe{}",
    "a list": b"[1, 2, 3]",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "gates not a list": None,
    "a punch not an object": None,
    "days not a list": None,
    "chain without received_at": None,
    "huge max_shift_ms": None,
    "fractional max_shift_ms": None,
    "bad period": None,
    "no chains": None,
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_one_line_and_exit_1_never_a_traceback(bank, tmp_path, case):
    data = MALFORMED[case]
    if data is None:
        document = copy.deepcopy(bank.document)
        signed = True
        if case == "gates not a list":
            document["gates"] = "north"
        elif case == "a punch not an object":
            chain(document, "north")["punches"][0] = 42
        elif case == "days not a list":
            document["days"] = {"x": 1}
        elif case == "chain without received_at":
            del chain(document, "north")["received_at"]
        elif case == "huge max_shift_ms":
            document["sites"]["S1"]["max_shift_ms"], signed = 2**64, False
        elif case == "fractional max_shift_ms":
            document["sites"]["S1"]["max_shift_ms"], signed = 1e308, False
        elif case == "bad period":
            document["period"] = {"from": "9999-99-99"}
        elif case == "no chains":
            document["gates"][0]["chains"] = []
        # Signed by the bank where it can be: the structure itself, not the signature, is what fails.
        data = json.dumps(format2.sign(document, BANK_KEY) if signed else document).encode()
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
