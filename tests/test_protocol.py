"""The wire contract: canonical bytes, signatures, chains, messages and topics."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_agent.protocol import (
    GENESIS,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    Ack,
    GateTopics,
    ProtocolError,
    Punch,
    Resend,
    Roster,
    check_link,
    decode_punch_message,
    encode_punches,
    format_time,
    key_id,
    normalise_uid,
    parse_bank_keys,
    parse_gate_topic,
    parse_public_key,
    parse_time,
    public_key_text,
    sign_punch,
    verify_chain,
    verify_punch,
)
from tests.helpers import PunchFactory


@pytest.fixture
def factory():
    return PunchFactory()


def test_round_trip_through_a_message(factory):
    punches = [factory.next(), factory.next(direction="out")]
    decoded = [Punch.from_dict(item) for item in decode_punch_message(encode_punches(punches))]
    assert decoded == punches
    key = parse_public_key(factory.public_key)
    verify_chain(decoded, {key_id(key): key})


def test_first_punch_links_to_genesis_and_each_next_to_its_predecessor(factory):
    first, second = factory.next(), factory.next()
    assert first.seq == 1 and first.prev == GENESIS
    assert second.prev == first.digest()
    check_link(first, second)


def test_canonical_bytes_ignore_wire_formatting(factory):
    punch = factory.next()
    spaced = json.dumps(punch.to_dict(), indent=3, sort_keys=False).encode()
    again = Punch.from_dict(json.loads(spaced))
    assert again.canonical_bytes() == punch.canonical_bytes()
    verify_punch(again, parse_public_key(factory.public_key))


# Every signed field, changed to another valid value, must break the signature.
TAMPERED = {
    "site": "S2", "gate": "south", "seq": 7, "time": "2026-01-01T00:00:00.000Z", "mono_ms": 5,
    "boot": "other-boot", "synced": False, "card": "DEADBEEF", "tech": "felica", "reader": "usb",
    "dir": "out", "roster": "unknown", "prev": "1" * 64,
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_changing_any_signed_field_breaks_the_signature(factory, name):
    factory.next()
    punch = factory.next()
    data = punch.to_dict()
    data[name] = TAMPERED[name]
    forged = Punch.from_dict(data)
    with pytest.raises(ProtocolError) as caught:
        verify_punch(forged, parse_public_key(factory.public_key))
    assert caught.value.reason == "bad_signature"


# Version 2 punches sign their card kind and SUN message too (each change keeps the punch well-formed).
TAMPERED_V2 = {"kind": {"kind": "uid", "sun": ""}, "sun": {"sun": "1" * 32 + ":" + "2" * 16}}


@pytest.mark.parametrize("name", sorted(TAMPERED_V2))
def test_changing_the_card_kind_or_sun_message_breaks_the_signature(name):
    key = Ed25519PrivateKey.generate()
    punch = sign_punch(Punch(v=2, site="S1", gate="north", seq=1, time="2026-01-01T08:00:00.000Z", mono_ms=1,
                             boot="b", synced=True, card="04DE5F1EACC040", tech="iso14443a", reader="usb",
                             dir="in", roster="known", prev=GENESIS, key="", sig="", kind="ntag424",
                             sun="a" * 32 + ":" + "b" * 16), key)
    verify_punch(Punch.from_dict(punch.to_dict()), key.public_key())
    data = punch.to_dict()
    data.update(TAMPERED_V2[name])
    with pytest.raises(ProtocolError) as caught:
        verify_punch(Punch.from_dict(data), key.public_key())
    assert caught.value.reason == "bad_signature"


def test_changing_the_card_link_breaks_the_signature():
    """Version 3 punches sign ``cprev``, the digest of the gate's previous punch of the same card."""
    key = Ed25519PrivateKey.generate()
    punch = sign_punch(Punch(v=3, site="S1", gate="north", seq=5, time="2026-01-01T08:00:00.000Z", mono_ms=1,
                             boot="b", synced=True, card="04DE5F1EACC040", tech="iso14443a", reader="usb",
                             dir="in", roster="known", prev="1" * 64, key="", sig="", cprev="2" * 64), key)
    verify_punch(Punch.from_dict(punch.to_dict()), key.public_key())
    for cprev in (GENESIS, "3" * 64):
        with pytest.raises(ProtocolError) as caught:
            verify_punch(Punch.from_dict(punch.to_dict() | {"cprev": cprev}), key.public_key())
        assert caught.value.reason == "bad_signature"


def test_every_field_but_the_signature_is_covered():
    signed = {f.name for f in fields(Punch)} - {"sig", "v", "key"}
    assert signed == set(TAMPERED) | set(TAMPERED_V2) | {"cprev"}


def test_a_flipped_signature_bit_and_a_wrong_key_fail(factory):
    punch = factory.next()
    data = punch.to_dict()
    data["sig"] = ("0" if data["sig"][0] != "0" else "1") + data["sig"][1:]
    with pytest.raises(ProtocolError, match="does not verify"):
        verify_punch(Punch.from_dict(data), parse_public_key(factory.public_key))
    with pytest.raises(ProtocolError, match="names key"):
        verify_punch(punch, Ed25519PrivateKey.generate().public_key())


def test_chain_detects_deletion_reordering_and_substitution(factory):
    key = parse_public_key(factory.public_key)
    keys = {key_id(key): key}
    chain = [factory.next() for _ in range(4)]
    verify_chain(chain, keys)
    with pytest.raises(ProtocolError) as deleted:
        verify_chain([chain[0], chain[2], chain[3]], keys)
    assert deleted.value.reason == "chain_break"
    with pytest.raises(ProtocolError):
        verify_chain([chain[0], chain[2], chain[1], chain[3]], keys)
    # A validly signed different seq 2 (equivocation) does not link seq 3.
    other = PunchFactory(key=factory.key)
    other.next()
    substitute = other.next(card="DEADBEEF")
    with pytest.raises(ProtocolError, match="does not link"):
        verify_chain([chain[0], substitute, chain[2]], keys)


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.pop("card"), "schema"),
    (lambda d: d.update(extra=1), "schema"),
    (lambda d: d.update(seq="1"), "schema"),
    (lambda d: d.update(seq=True), "schema"),
    (lambda d: d.update(synced=1), "schema"),
    (lambda d: d.update(seq=0), "schema"),
    (lambda d: d.update(time="2026-11-28 06:00:00"), "schema"),
    (lambda d: d.update(time="2026-13-40T00:00:00.000Z"), "schema"),
    (lambda d: d.update(card="04a1b2"), "schema"),
    (lambda d: d.update(card="zz" * 4), "schema"),
    (lambda d: d.update(dir="sideways"), "schema"),
    (lambda d: d.update(tech="bluetooth"), "schema"),
    (lambda d: d.update(roster="maybe"), "schema"),
    (lambda d: d.update(site="a/b"), "schema"),
    (lambda d: d.update(gate="+"), "schema"),
    (lambda d: d.update(prev="x" * 64), "schema"),
    (lambda d: d.update(sig="ab"), "schema"),
    (lambda d: d.update(v=4), "unsupported_version"),
    (lambda d: d.update(v=2), "schema"),  # a version 2 punch names its card kind and SUN message
    (lambda d: d.update(v=3, kind="uid", sun=""), "schema"),  # a version 3 punch names its card link too
    (lambda d: d.update(cprev=GENESIS), "schema"),  # ... and a version 1 punch none
])
def test_malformed_punches_are_refused_with_a_reason(factory, mutate, reason):
    data = factory.next().to_dict()
    mutate(data)
    with pytest.raises(ProtocolError) as caught:
        Punch.from_dict(data)
    assert caught.value.reason == reason


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "malformed"),
    (b"not json", "malformed"),
    (b"[1,2]", "schema"),
    (b'{"punches": []}', "schema"),
    (b'{"v": 9, "punches": [{}]}', "unsupported_version"),
    (b'{"v": 1, "punches": []}', "schema"),
    (b'{"v": 1, "punches": {}}', "schema"),
    (b'{"v": 1, "punches": [{}], "x": 1}', "schema"),
    (b"[" * 100000, "malformed"),
])
def test_bad_messages_are_refused_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError) as caught:
        decode_punch_message(payload)
    assert caught.value.reason == reason


def test_oversized_messages_and_batches_are_refused():
    with pytest.raises(ProtocolError) as caught:
        decode_punch_message(b" " * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.reason == "oversized"
    with pytest.raises(ProtocolError) as caught:
        decode_punch_message(json.dumps({"v": 1, "punches": [{}] * (MAX_BATCH + 1)}).encode())
    assert caught.value.reason == "oversized"


BANK = Ed25519PrivateKey.generate()
TRUSTED = {key_id(BANK.public_key()): BANK.public_key()}
ISSUED = "2026-11-28T06:00:00.000Z"


def test_bank_messages_round_trip_when_signed_by_the_pinned_key():
    ack = Ack(12, "ab" * 32)
    assert Ack.decode(ack.sign("S1", "north", ISSUED, BANK), site="S1", gate="north", keys=TRUSTED) == ack
    resend = Resend(3, 9, ISSUED)
    assert Resend.decode(resend.sign("S1", "north", ISSUED, BANK), site="S1", gate="north", keys=TRUSTED) == resend
    roster = Roster("S1", ISSUED, frozenset({"04A1B2C3D4E5F6", "DEADBEEF"}))
    assert Roster.decode(roster.sign(BANK), site="S1", keys=TRUSTED) == roster
    assert Roster.load(roster.encode()) == roster


def test_bank_messages_signed_by_anyone_else_or_altered_are_refused():
    """The broker's owner (or anyone on an open broker) can publish on a gate's topics; only the bank's
    pinned key makes a gate act."""
    stranger = Ed25519PrivateKey.generate()
    forged = [
        (Ack, Ack(12, "ab" * 32).sign("S1", "north", ISSUED, stranger)),
        (Resend, Resend(1, 2000).sign("S1", "north", ISSUED, stranger)),
    ]
    for kind, payload in forged:
        with pytest.raises(ProtocolError) as caught:
            kind.decode(payload, site="S1", gate="north", keys=TRUSTED)
        assert caught.value.reason == "bad_signature"
    with pytest.raises(ProtocolError) as caught:
        Roster.decode(Roster("S1", ISSUED, frozenset()).sign(stranger), site="S1", keys=TRUSTED)
    assert caught.value.reason == "bad_signature"
    # Unsigned messages of the old form, and signed ones with one field changed.
    with pytest.raises(ProtocolError):
        Ack.decode(b'{"v":1,"seq":12,"digest":"' + b"ab" * 32 + b'"}', site="S1", gate="north", keys=TRUSTED)
    genuine = json.loads(Ack(2, "ab" * 32).sign("S1", "north", ISSUED, BANK))
    for field, value in (("seq", 3000), ("digest", "cd" * 32), ("issued", "2026-11-28T06:00:01.000Z")):
        with pytest.raises(ProtocolError) as caught:
            Ack.decode(genuine | {field: value}, site="S1", gate="north", keys=TRUSTED)
        assert caught.value.reason == "bad_signature", field


def test_a_bank_message_for_one_gate_or_kind_does_not_pass_for_another():
    ack = Ack(12, "ab" * 32).sign("S1", "north", ISSUED, BANK)
    for site, gate in (("S1", "south"), ("S2", "north")):
        with pytest.raises(ProtocolError, match="not"):
            Ack.decode(ack, site=site, gate=gate, keys=TRUSTED)
    with pytest.raises(ProtocolError):
        Roster.decode(Roster("S1", ISSUED, frozenset()).sign(BANK), site="S2", keys=TRUSTED)
    # The same signed bytes offered as another kind of message: the type and fields differ.
    with pytest.raises(ProtocolError):
        Resend.decode(ack, site="S1", gate="north", keys=TRUSTED)
    with pytest.raises(ProtocolError):
        Roster.decode(ack, site="S1", keys=TRUSTED)


def test_bank_message_fields_are_checked_before_use():
    for payload, reason in (
        (Ack(-1, "ab" * 32).sign("S1", "north", ISSUED, BANK), "schema"),
        (Ack(1, "00").sign("S1", "north", ISSUED, BANK), "schema"),
        (Resend(5, 2).sign("S1", "north", ISSUED, BANK), "schema"),
        (Ack(1, "ab" * 32).sign("S1", "north", "9999-99-99T00:00:00.000Z", BANK), "schema"),
    ):
        kind = Resend if b'"resend"' in payload else Ack
        with pytest.raises(ProtocolError) as caught:
            kind.decode(payload, site="S1", gate="north", keys=TRUSTED)
        assert caught.value.reason == reason
    with pytest.raises(ProtocolError):
        Roster.decode(Roster("S1", ISSUED, frozenset({"lower"})).sign(BANK), site="S1", keys=TRUSTED)
    with pytest.raises(ProtocolError):
        Roster.load(b'{"v":1,"site":"S1","issued":"2026-11-28T06:00:00.000Z","cards":["lower"]}')


def test_bank_keys_parse_from_lines():
    text = public_key_text(BANK.public_key())
    other = public_key_text(Ed25519PrivateKey.generate().public_key())
    assert set(parse_bank_keys(f"# the bank\n{text}\n\n{other}\n")) == {key_id(text), key_id(other)}
    with pytest.raises(ValueError):
        parse_bank_keys("# nothing here\n")


def test_topics():
    topics = GateTopics("S1", "north")
    assert topics.punch == "attendance/v1/S1/north/punch"
    assert topics.status == "attendance/v1/S1/north/status"
    assert topics.ack == "attendance/v1/S1/north/ack"
    assert topics.cmd == "attendance/v1/S1/north/cmd"
    assert topics.roster == "attendance/v1/S1/roster"
    assert parse_gate_topic(topics.punch) == ("S1", "north", "punch")
    for bad in ("attendance/v1/S1/punch", "other/v1/S1/g/punch", "attendance/v1/S 1/g/punch"):
        with pytest.raises(ProtocolError):
            parse_gate_topic(bad)
    with pytest.raises(ProtocolError):
        GateTopics("S1", "a/b")


def test_public_key_text_round_trip_and_errors():
    key = Ed25519PrivateKey.generate().public_key()
    text = public_key_text(key)
    assert text.startswith("ed25519:")
    assert key_id(parse_public_key(text)) == key_id(key)
    for bad in ("rsa:AAAA", "ed25519:not-base64!", "ed25519:AAAA"):
        with pytest.raises(ValueError):
            parse_public_key(bad)


def test_uid_normalisation():
    assert normalise_uid("04:a1:b2:c3") == "04A1B2C3"
    for bad in ("04A1B2", "04A1B2C3D", "hello!!!"):
        with pytest.raises(ValueError):
            normalise_uid(bad)


def test_wire_times_of_any_year_round_trip():
    """A gate whose clock reads an absurd year still signs a time the bank can parse (and flag)."""
    for moment in (datetime(1, 1, 1, tzinfo=UTC), datetime(999, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
                   datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        text = format_time(moment)
        assert len(text) == 24 and parse_time(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
