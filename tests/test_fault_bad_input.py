"""Bad input, generated and mutated by the thousand: the decoder and ingest never crash, and every
message ends stored correctly or quarantined with a reason.

Hypothesis runs derandomised (a fixed seed derived from each test), so CI sees the same examples
every time; ``FAULT_HYPOTHESIS_EXAMPLES`` raises the count for a longer local hunt.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.protocol import (
    MAX_BATCH,
    Ack,
    GateTopics,
    ProtocolError,
    Punch,
    Resend,
    Roster,
    decode_punch_message,
    decode_status,
    encode_punches,
    encode_status,
    key_id,
    parse_gate_topic,
    parse_public_key,
    utc_now_text,
    verify_punch,
)
from tests.helpers import BANK_KEY, BANK_KEYS, PunchFactory, heartbeat

#: Every reason ingest may give (docs/bank-ops.md, "What ingest does with each message").
REASONS = {"malformed", "schema", "unsupported_version", "oversized", "topic", "topic_mismatch", "site_mismatch",
           "unknown_gate", "gate_inactive", "unknown_key", "key_revoked", "bad_signature"}

EXAMPLES = int(os.environ.get("FAULT_HYPOTHESIS_EXAMPLES", "0")) or None
FAST = settings(max_examples=EXAMPLES or 1500, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
INGEST = settings(max_examples=EXAMPLES or 300, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NORTH = PunchFactory(gate="north")
GENUINE = [NORTH.next(card=f"04A1B2C3{i:06X}", direction="in" if i % 2 else "out") for i in range(40)]
GENUINE_DIGESTS = {p.seq: p.digest() for p in GENUINE}
STRANGER = PunchFactory(gate="north")  # same gate id, a key the bank never registered
FORGED = [STRANGER.next() for _ in range(3)]
SOUTH = PunchFactory(gate="south")  # registered but deactivated
SOUTH_PUNCHES = [SOUTH.next() for _ in range(3)]

TOPICS = GateTopics("S1", "north")

# ---------------------------------------------------------------------------------------------- strategies

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False), st.text(max_size=80))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)


@st.composite
def genuine_message(draw) -> bytes:
    first = draw(st.integers(min_value=0, max_value=len(GENUINE) - 1))
    count = draw(st.integers(min_value=1, max_value=min(5, len(GENUINE) - first)))
    return encode_punches(GENUINE[first:first + count])


@st.composite
def byte_mutation(draw, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        where = draw(st.integers(min_value=0, max_value=len(data) - 1))
        operation = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "duplicate"]))
        if operation == "flip":
            data[where] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif operation == "set":
            data[where] = draw(st.integers(min_value=0, max_value=255))
        elif operation == "delete":
            del data[where:where + draw(st.integers(min_value=1, max_value=16))]
        elif operation == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "truncate":
            del data[where:]
        else:
            data[where:where] = data[where:where + draw(st.integers(min_value=1, max_value=200))]
    return bytes(data)


@st.composite
def json_mutation(draw, payload: bytes) -> bytes:
    """Change the message as a structure: a field's value or type, a missing or extra field, the envelope."""
    message = json.loads(payload)
    punches = message["punches"]
    operation = draw(st.sampled_from(["value", "drop", "extra", "envelope", "reformat", "swap", "nest", "copy",
                                      "copy", "hexedit", "hexedit"]))
    target = punches[draw(st.integers(min_value=0, max_value=len(punches) - 1))]
    field = draw(st.sampled_from(sorted(target)))
    if operation == "value":
        target[field] = draw(json_values)
    elif operation == "drop":
        del target[field]
    elif operation == "extra":
        target[draw(st.text(min_size=1, max_size=10))] = draw(json_scalars)
    elif operation == "envelope":
        key = draw(st.sampled_from(["v", "punches", "extra"]))
        message[key] = draw(json_values)
    elif operation == "swap" and len(punches) > 1:
        punches.reverse()  # order on the wire does not matter; each punch carries its seq
    elif operation == "nest":
        message["punches"] = [punches]
    elif operation == "copy":
        other = GENUINE[draw(st.integers(min_value=0, max_value=len(GENUINE) - 1))].to_dict()
        target[field] = other[field]  # a plausible value from another genuine punch
    elif operation == "hexedit":
        name = draw(st.sampled_from(["card", "prev", "sig", "key"]))
        text = target[name]
        where = draw(st.integers(min_value=0, max_value=len(text) - 1))
        alphabet = "0123456789ABCDEF" if name == "card" else "0123456789abcdef"
        target[name] = text[:where] + draw(st.sampled_from(alphabet)) + text[where + 1:]  # still well-formed
    # "reformat" (and a swap of one): the same content in another layout, which must still verify
    indent = draw(st.sampled_from([None, 0, 2]))
    return json.dumps(message, indent=indent, sort_keys=draw(st.booleans()),
                      ensure_ascii=draw(st.booleans())).encode()


@st.composite
def punch_payload(draw) -> bytes:
    kind = draw(st.sampled_from(["genuine", "bytes_mutated", "json_mutated", "json_mutated", "json_mutated",
                                 "random_json",
                                 "random_bytes", "forged", "inactive", "oversized_batch"]))
    if kind == "genuine":
        return draw(genuine_message())
    if kind == "bytes_mutated":
        return draw(byte_mutation(draw(genuine_message())))
    if kind == "json_mutated":
        return draw(json_mutation(draw(genuine_message())))
    if kind == "random_json":
        return json.dumps(draw(json_values)).encode()
    if kind == "random_bytes":
        return draw(st.binary(max_size=300))
    if kind == "forged":
        return encode_punches(FORGED[:draw(st.integers(min_value=1, max_value=3))])
    if kind == "inactive":
        return encode_punches(SOUTH_PUNCHES)
    body = GENUINE[0].to_json()
    return b'{"v":1,"punches":[' + b",".join([body] * (MAX_BATCH + 1)) + b"]}"


topics = st.sampled_from(
    [TOPICS.punch] * 10 + [GateTopics("S1", "south").punch, GateTopics("S2", "north").punch,
                           GateTopics("S1", "ghost").punch, TOPICS.status, TOPICS.status, TOPICS.base + "/other", None]
).flatmap(lambda topic: st.text(max_size=60) if topic is None else st.just(topic))


@st.composite
def message(draw) -> tuple[str, bytes]:
    topic = draw(topics)
    if topic.endswith("/status") and draw(st.booleans()):
        seq = draw(st.integers())
        status = encode_status("online", **heartbeat(last_seq=seq, acked_seq=seq))
        return topic, draw(st.one_of(st.just(status), byte_mutation(status)))
    return topic, draw(punch_payload())


# ---------------------------------------------------------------------------------------------- the decoder


@FAST
@given(st.one_of(st.binary(max_size=600), json_values.map(lambda v: json.dumps(v).encode()),
                 genuine_message().flatmap(byte_mutation), genuine_message().flatmap(json_mutation)))
def test_the_decoders_raise_only_protocol_errors(payload):
    """Any bytes at all: a ProtocolError with a known reason, or a value; never another exception."""
    try:
        items = decode_punch_message(payload)
    except ProtocolError as error:
        assert error.reason in REASONS and error.detail
    else:
        assert 1 <= len(items) <= MAX_BATCH
        for item in items:
            try:
                punch = Punch.from_dict(item)
            except ProtocolError as error:
                assert error.reason in REASONS and error.detail
            else:
                # What the decoder accepts serialises back to something it accepts again, unchanged.
                assert Punch.from_dict(json.loads(punch.to_json())) == punch
    for decode in (lambda p: Ack.decode(p, site="S1", gate="north", keys=BANK_KEYS),
                   lambda p: Resend.decode(p, site="S1", gate="north", keys=BANK_KEYS),
                   lambda p: Roster.decode(p, site="S1", keys=BANK_KEYS), decode_status):
        try:
            decode(payload)
        except ProtocolError as error:
            assert error.reason in REASONS


#: What the bank sends a gate, signed as the collector signs it.
BANK_MESSAGES = [
    Ack(7, "ab" * 32).sign("S1", "north", "2026-11-28T06:00:00.000Z", BANK_KEY),
    Resend(3, 9).sign("S1", "north", "2026-11-28T06:00:00.000Z", BANK_KEY),
    Roster("S1", "2026-11-28T06:00:00.000Z", frozenset({"04A1B2C3D4E5F6", "DEADBEEF"})).sign(BANK_KEY),
]


@FAST
@given(st.sampled_from(BANK_MESSAGES).flatmap(byte_mutation))
def test_a_mutated_bank_message_is_refused_or_is_the_signed_message(payload):
    """A gate decodes bytes anyone can publish: a ProtocolError, or exactly what the bank signed."""
    genuine = {Ack: Ack(7, "ab" * 32), Resend: Resend(3, 9, "2026-11-28T06:00:00.000Z"),
               Roster: Roster("S1", "2026-11-28T06:00:00.000Z", frozenset({"04A1B2C3D4E5F6", "DEADBEEF"}))}
    for kind in (Ack, Resend, Roster):
        extra = {"gate": "north"} if kind is not Roster else {}
        try:
            value = kind.decode(payload, site="S1", keys=BANK_KEYS, **extra)
        except ProtocolError as error:
            assert error.reason in REASONS and error.detail
        else:
            assert value == genuine[kind]


@FAST
@given(st.text(max_size=120))
def test_any_topic_parses_or_is_refused_with_a_reason(topic):
    try:
        site, gate, kind = parse_gate_topic(topic)
    except ProtocolError as error:
        assert error.reason == "topic"
    else:
        assert topic == f"attendance/v1/{site}/{gate}/{kind}"


@FAST
@given(genuine_message().flatmap(json_mutation))
def test_a_mutated_punch_verifies_only_if_it_is_the_signed_punch(payload):
    """A structural change either leaves the signed content as it was or fails decoding or the signature."""
    key = parse_public_key(NORTH.public_key)
    try:
        items = decode_punch_message(payload)
    except ProtocolError:
        return
    for item in items:
        try:
            punch = Punch.from_dict(item)
            verify_punch(punch, key)
        except ProtocolError as error:
            assert error.reason in REASONS
        else:
            assert GENUINE_DIGESTS[punch.seq] == punch.digest()


# ---------------------------------------------------------------------------------------------- ingest


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One real collector database for all examples: state (stored, duplicates) builds up as in life."""
    path = tmp_path_factory.mktemp("bad-input") / "collector.sqlite3"
    store = Store(path)
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_site("S2", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", NORTH.public_key)
    store.add_gate("S1", "south", SOUTH.public_key)
    store.set_gate_active("S1", "south", False)
    yield store, Ingestor(store)
    store.close()


def expected_outcomes(topic: str, payload: bytes) -> int:
    """How many outcomes a message must have: one per punch in a decodable punch message, else one."""
    try:
        if parse_gate_topic(topic)[2] != "punch":
            return 1
        return len(decode_punch_message(payload))
    except ProtocolError:
        return 1


OUTCOMES = ("stored", "duplicates", "equivocations", "quarantined", "statuses", "status_unknown_gate")


@INGEST
@given(st.lists(message(), min_size=1, max_size=12))
def test_ingest_stores_correctly_or_quarantines_every_message(registry, messages):
    store, ingestor = registry
    quarantined_before = len(store.quarantined())
    received = utc_now_text()
    result = ingestor.ingest([Incoming(topic, payload, received) for topic, payload in messages])

    # Every message, and every punch in a decodable batch, has exactly one outcome.
    assert sum(result.counts[name] for name in OUTCOMES) == sum(expected_outcomes(t, p) for t, p in messages)
    new = store.quarantined()[quarantined_before:]
    # Each topic keeps its first refusals per reason and hour as rows; every one is counted by its reason.
    assert len(new) == result.counts["quarantined"] - result.counts["quarantine_not_kept"]
    assert {key.removeprefix("quarantined_") for key in result.counts if key.startswith("quarantined_")} <= REASONS
    for row in new:
        assert row["reason"] in REASONS, row  # never internal_error: that would be a bug caught late
        assert row["detail"] and row["received_at"] == received

    # What is stored is exactly what the gate signed, once per seq, and nothing else.
    rows = store.punches(site="S1")
    assert all(row["gate"] == "north" for row in rows)
    seqs = [row["seq"] for row in rows]
    assert len(seqs) == len(set(seqs))
    public = parse_public_key(NORTH.public_key)
    for row in rows:
        punch = Punch.from_dict(json.loads(row["body"]))
        verify_punch(punch, public)
        assert row["digest"] == punch.digest() == GENUINE_DIGESTS[row["seq"]]
        assert row["key_id"] == key_id(public)
    assert store.conflicts() == []
    acked = result.acks.get(("S1", "north"))
    if acked is not None:
        assert acked.digest == GENUINE_DIGESTS[acked.seq] and set(range(1, acked.seq + 1)) <= set(seqs)


@pytest.fixture(scope="module")
def twin_registries(tmp_path_factory):
    """Two identical collector databases: one verifies inline, the other always on worker threads."""
    made = []
    for name, parallel_from in (("inline", 10**9), ("threads", 0)):
        store = Store(tmp_path_factory.mktemp(name) / "collector.sqlite3")
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", NORTH.public_key)
        store.add_gate("S1", "south", SOUTH.public_key)
        store.set_gate_active("S1", "south", False)
        made.append((store, Ingestor(store, parallel_from=parallel_from)))
    yield made
    for store, _ in made:
        store.close()


@INGEST
@given(st.lists(message(), min_size=1, max_size=12))
def test_verifying_on_worker_threads_decides_exactly_as_inline(twin_registries, messages):
    received = utc_now_text()
    outcomes = []
    for store, ingestor in twin_registries:
        result = ingestor.ingest([Incoming(topic, payload, received) for topic, payload in messages])
        outcomes.append((dict(result.counts), result.acks,
                         [(r["reason"], r["detail"], r["raw"]) for r in store.quarantined()],
                         [(r["seq"], r["digest"], r["flags"]) for r in store.punches(site="S1")]))
    assert outcomes[0] == outcomes[1]
