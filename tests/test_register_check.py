"""Checking a copy of the register of gate keys, and a citation of one of its entries, as a labour bureau
does offline: every way a copy can be made to lie is caught, with the first problem in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence.canonical import jcs
from collector.evidence.register import (
    RegisterError,
    check_citation,
    check_register,
    citation,
    entry_digest,
    export_bytes,
    load_mirror,
    sign_entry,
    sync,
)
from collector.store import Store
from gate_agent.protocol import format_time, key_id, public_key_text
from tests.helpers import BANK_KEY, BANK_KEYS, BANK_PUBLIC, cli

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
FORGER = Ed25519PrivateKey.generate()


class Moment:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def new_key() -> str:
    return public_key_text(Ed25519PrivateKey.generate().public_key())


class Bank:
    """A bank's store with a clock the test moves, its register synced with the test bank key."""

    def __init__(self, path: Path):
        self.clock = Moment(T0)
        self.store = Store(path, clock=self.clock)
        self.store.add_site("S1", timezone="Asia/Shanghai")
        self.keys: dict[str, str] = {}

    def add(self, gate: str, *, at_once: bool = True) -> str:
        key = new_key()
        self.store.add_gate("S1", gate, key)
        self.keys[gate] = key
        if at_once:
            sync(self.store, BANK_KEY)
        return key_id(key)

    def revoke(self, gate: str) -> None:
        self.store.revoke_key("S1", gate, key_id(self.keys[gate]))
        sync(self.store, BANK_KEY)

    def later(self, **delta) -> str:
        self.clock.now += timedelta(**delta)
        return format_time(self.clock.now)

    def export(self) -> dict:
        return json.loads(export_bytes(self.store))

    def cite(self, gate: str) -> dict:
        return citation(self.store, "S1", gate, key_id(self.keys[gate]))


@pytest.fixture
def bank(tmp_path):
    bank = Bank(tmp_path / "collector.sqlite3")
    yield bank
    bank.store.close()


@pytest.fixture
def four(bank) -> dict:
    """A register of four entries: north, south and east added, north revoked."""
    for gate in ("north", "south", "east"):
        bank.add(gate)
        bank.later(hours=1)
    bank.revoke("north")
    return bank.export()


def write(tmp_path: Path, name: str, document: dict | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(document if isinstance(document, bytes) else json.dumps(document).encode())
    return str(path)


def check(tmp_path, document, *extra: str):
    bank_pub = tmp_path / "bank.pub"
    bank_pub.write_text(BANK_PUBLIC + "\n")
    return cli("collector", "register", "check", write(tmp_path, "register.json", document),
               "--bank-key", str(bank_pub), *extra, check=False)


def failed(result) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "FAILED" in lines[0] and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def resigned(entry: dict, key: Ed25519PrivateKey = BANK_KEY, **changes) -> dict:
    return sign_entry({**entry, **changes}, key)


def test_the_banks_export_checks_and_says_what_it_holds(tmp_path, bank, four):
    result = check(tmp_path, export_bytes(bank.store))
    assert result.returncode == 0, result.stderr
    assert "OK: 4 entries (the last written " in result.stdout and key_id(BANK_PUBLIC) in result.stdout
    summary = json.loads(check(tmp_path, four, "--json").stdout)
    assert summary["ok"] and summary["entries"] == 4 and summary["bank_keys"] == [key_id(BANK_PUBLIC)]


def test_an_edited_entry_is_caught(tmp_path, four):
    four["entries"][1]["gate"] = "west"
    assert "entry #2: the signature of bank key" in failed(check(tmp_path, four))
    four["entries"][1]["gate"] = "south"
    four["entries"][1]["since"] = "2026-01-01T00:00:00.000Z"  # "the key was ours long before"
    assert "entry #2: the signature of bank key" in failed(check(tmp_path, four))


def test_an_entry_the_bank_re_signed_breaks_the_next_link(tmp_path, four):
    key = new_key()  # entry 2 re-signed by the bank for another key: valid alone, but entry 3 names the old one
    four["entries"][1] = resigned(four["entries"][1], public_key=key, key_id=key_id(key))
    assert "entry 3: prev does not name entry 2's digest" in failed(check(tmp_path, four))


def test_a_removed_entry_is_caught(tmp_path, four):
    del four["entries"][1]
    assert "entry #2 says it is entry 3" in failed(check(tmp_path, four))


def test_a_reordered_pair_is_caught(tmp_path, four):
    entries = four["entries"]
    entries[1], entries[2] = entries[2], entries[1]
    assert "entry #2 says it is entry 3" in failed(check(tmp_path, four))


def test_a_forged_signature_is_caught(tmp_path, four):
    forged = dict(four)
    forged["entries"] = [*four["entries"][:3], resigned(four["entries"][3], FORGER)]
    problem = failed(check(tmp_path, forged))
    assert "entry #4: is signed by bank key" in problem and "not a bank key you trust" in problem
    flipped = dict(four["entries"][3])
    flipped["sig"] = ("0" if flipped["sig"][0] != "0" else "1") + flipped["sig"][1:]
    forged["entries"] = [*four["entries"][:3], flipped]
    assert "entry #4: the signature of bank key" in failed(check(tmp_path, forged))


def test_an_upper_case_signature_is_refused(tmp_path, four):
    four["entries"][0]["sig"] = four["entries"][0]["sig"].upper()
    assert "entry #1: sig is not 128 lower-case hex digits" in failed(check(tmp_path, four))


def test_duplicate_names_and_a_byte_order_mark_are_refused(tmp_path, four):
    text = json.dumps(four)
    sig = four["entries"][2]["sig"]
    twice = text.replace(f'"sig": "{sig}"', f'"sig": "{sig}", "sig": "{sig}"').encode()
    assert twice != text.encode()
    assert "the name 'sig' appears twice" in failed(check(tmp_path, twice))
    assert "byte order mark" in failed(check(tmp_path, b"\xef\xbb\xbf" + text.encode()))


def test_an_added_key_twice_and_a_revoke_without_its_add_are_refused(bank):
    bank.add("north")
    document = bank.export()
    first = document["entries"][0]
    again = resigned(first, index=2, prev=entry_digest(first), gate="south")
    with pytest.raises(RegisterError, match="adds key .* which entry 1 added already"):
        check_register({**document, "entries": [first, again]}, BANK_KEYS)
    revoke = resigned(first, index=2, prev=entry_digest(first), action="revoke", gate="south")
    with pytest.raises(RegisterError, match="revokes key .* of S1/south, which no earlier entry added"):
        check_register({**document, "entries": [first, revoke]}, BANK_KEYS)
    key = new_key()
    back = resigned(first, index=2, prev=entry_digest(first), gate="south", public_key=key, key_id=key_id(key),
                    at="2026-01-01T00:00:00.000Z", since="2026-01-01T00:00:00.000Z")
    with pytest.raises(RegisterError, match="times never go back"):
        check_register({**document, "entries": [first, back]}, BANK_KEYS)


def test_a_copy_must_extend_the_older_one(tmp_path, bank):
    bank.add("north")
    bank.add("south")
    older = write(tmp_path, "older.json", export_bytes(bank.store))
    bank.later(days=1)
    bank.add("east")
    newer = export_bytes(bank.store)
    result = check(tmp_path, newer, "--older", older)
    assert result.returncode == 0 and "extends" in result.stdout and "(2 entries" in result.stdout, result.stderr
    # The bank rewrote its history: a second register, signed by the same key, with another entry 2.
    rewritten = Bank(tmp_path / "rewritten.sqlite3")
    try:
        rewritten.store.add_gate("S1", "north", bank.keys["north"])
        sync(rewritten.store, BANK_KEY)
        rewritten.add("west")
        rewritten.add("east")
        problem = failed(check(tmp_path, export_bytes(rewritten.store), "--older", older))
        assert "entry 2 differs from entry 2 of the older copy" in problem
    finally:
        rewritten.store.close()
    shorter = json.loads(newer)
    shorter["entries"] = shorter["entries"][:1]
    assert "the older copy holds 2 entries, this one only 1" in failed(check(tmp_path, shorter, "--older", older))
    as_json = check(tmp_path, shorter, "--older", older, "--json")
    assert as_json.returncode == 1 and not json.loads(as_json.stdout)["ok"]


def test_export_is_public_and_replaces_only_with_an_extension(tmp_path, bank):
    bank.add("north")
    config = tmp_path / "collector.toml"
    key = tmp_path / "bank.key"
    from tests.helpers import write_bank_key

    write_bank_key(key)
    config.write_text(f'db = "{tmp_path / "collector.sqlite3"}"\nsigning_key = "{key}"\n'
                      '[mqtt]\nhost = "127.0.0.1"\nport = 1883\n')
    out = tmp_path / "public" / "register.json"
    out.parent.mkdir()
    cli("collector", "register", "export", "--out", str(out), "--config", str(config), umask=0o077)
    assert out.stat().st_mode & 0o777 == 0o644
    assert load_mirror(out, BANK_KEYS).length == 1
    again = cli("collector", "register", "export", "--out", str(out), "--config", str(config), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    bank.add("south")
    cli("collector", "register", "export", "--out", str(out), "--replace", "--config", str(config))
    assert load_mirror(out, BANK_KEYS).length == 2
    # A published copy the new export does not extend is left as it is.
    other = Bank(tmp_path / "other.sqlite3")
    try:
        other.add("east")
        out.write_bytes(export_bytes(other.store))
    finally:
        other.store.close()
    refused = cli("collector", "register", "export", "--out", str(out), "--replace", "--config", str(config),
                  check=False)
    assert refused.returncode == 1 and "is not replaced: entry 1 differs" in refused.stderr
    assert load_mirror(out, BANK_KEYS).length == 1


# ---------------------------------------------------------------------------------------------- citations


def test_a_citation_without_a_mirror_rests_on_the_banks_signature(bank):
    bank.add("north")
    received = bank.later(minutes=5)
    verdict = check_citation(bank.cite("north"), BANK_KEYS, received_at=[received])
    assert verdict.ok and not verdict.mirrored and verdict.index == 1
    assert any("rests on the bank's signature only" in note for note in verdict.notes)
    assert verdict.digest == entry_digest(bank.cite("north"))


def test_a_citation_in_the_mirror_and_revoked_after_the_punches_is_good(bank):
    bank.add("north")
    received = [bank.later(minutes=5), bank.later(hours=3)]
    bank.later(days=1)
    bank.revoke("north")
    mirror = load_mirror(export_bytes(bank.store), BANK_KEYS)
    verdict = check_citation(bank.cite("north"), BANK_KEYS, mirror=mirror, received_at=received,
                             gate_key=("S1", "north", bank.keys["north"]))
    assert verdict.ok and verdict.mirrored, verdict
    assert any("revoked at" in note and "after every punch here" in note for note in verdict.notes)
    assert not any("rests on the bank's signature only" in note for note in verdict.notes)


def test_a_citation_revoked_before_a_punch_is_refused(bank):
    bank.add("north")
    first = bank.later(minutes=5)
    bank.later(hours=1)
    bank.revoke("north")
    after = bank.later(minutes=1)
    mirror = load_mirror(export_bytes(bank.store), BANK_KEYS)
    verdict = check_citation(bank.cite("north"), BANK_KEYS, mirror=mirror, received_at=[first, after])
    assert not verdict.ok and "was revoked at" in verdict.problem and after in verdict.problem
    revoked_at = mirror.revocation("S1", "north", key_id(bank.keys["north"]))["since"]
    at_the_moment = check_citation(bank.cite("north"), BANK_KEYS, mirror=mirror, received_at=[revoked_at])
    assert not at_the_moment.ok  # at or before: the moment of revocation is already too late


def test_a_key_published_after_its_punches_is_noted(bank):
    bank.add("north", at_once=False)  # a change made without the bank's key, published by a later sync
    received = bank.later(minutes=5)
    bank.later(days=2)
    sync(bank.store, BANK_KEY)
    cited = bank.cite("north")
    assert cited["since"] < received < cited["at"]
    for mirror in (None, load_mirror(export_bytes(bank.store), BANK_KEYS)):
        verdict = check_citation(cited, BANK_KEYS, mirror=mirror, received_at=[received])
        assert verdict.ok
        assert any(f"was published in the register at {cited['at']}, after the bank received punches" in note
                   for note in verdict.notes)


def test_a_citation_the_mirror_does_not_hold_or_holds_otherwise_is_refused(bank, tmp_path):
    bank.add("north")
    mirror = load_mirror(export_bytes(bank.store), BANK_KEYS)  # taken before the gate below existed
    bank.add("south")
    late = check_citation(bank.cite("south"), BANK_KEYS, mirror=mirror, received_at=[bank.later(minutes=1)])
    assert not late.ok and "is not in the copy of the register, which holds entries 1 to 1" in late.problem
    # The bank signed another entry 1 for a made-up gate after the copy was taken: a fork.
    made_up = resigned(bank.cite("north"), gate="ghost")
    fork = check_citation(made_up, BANK_KEYS, mirror=mirror, received_at=[bank.later(minutes=1)])
    assert not fork.ok and "the bank signed two different entries 1" in fork.problem
    assert check_citation(made_up, BANK_KEYS, received_at=[bank.later(minutes=1)]).ok  # without a mirror: undetectable


def test_a_citation_that_does_not_fit_is_refused(bank):
    bank.add("north")
    cited = bank.cite("north")
    received = bank.later(minutes=1)
    cases = {
        "not a bank key you trust": resigned(cited, FORGER),
        "the signature of bank key": {**cited, "since": "2026-01-01T00:00:00.000Z"},
        "lacks sig": {k: v for k, v in cited.items() if k != "sig"},
        "index 0 is not 1 or more": resigned(cited, index=0),
        "version True is not an integer": {**cited, "version": True},
        "prev 'ABC' is not 64 lower-case hex": {**cited, "prev": "ABC"},
    }
    for problem, entry in cases.items():
        verdict = check_citation(entry, BANK_KEYS, received_at=[received])
        assert not verdict.ok and problem in verdict.problem, (problem, verdict)
    other = check_citation(cited, BANK_KEYS, received_at=[received], gate_key=("S1", "north", new_key()))
    assert not other.ok and "not the key the punches of S1/north use" in other.problem
    early = check_citation(cited, BANK_KEYS, received_at=[format_time(T0 - timedelta(days=1))])
    assert not early.ok and "after the bank received a punch signed by it" in early.problem
    assert not check_citation(cited, BANK_KEYS, received_at=["yesterday"]).ok
    bank.revoke("north")
    revoke = json.loads(bank.store.register_entries()[-1]["entry"])
    assert "a key is cited by the entry that added it" in check_citation(revoke, BANK_KEYS).problem


def test_jcs_bytes_are_what_is_signed(bank):
    """A verifier in another language rebuilds the signed bytes with RFC 8785 alone."""
    bank.add("north")
    entry = bank.cite("north")
    unsigned = {k: v for k, v in entry.items() if k != "sig"}
    BANK_KEY.public_key().verify(bytes.fromhex(entry["sig"]), jcs(unsigned))
    text = jcs(unsigned).decode()
    assert text.startswith('{"action":"add","at":"') and " " not in text
    assert bank.store.register_entries()[0]["entry"] == jcs(entry).decode()
