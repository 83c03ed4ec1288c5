"""Gate statuses are hostile until validated: a bad heartbeat is counted and quarantined, never stored,
the previous good one stays, and every read path (payroll, the attendance and gates API, the live
stream, /metrics) keeps answering with valid data."""

from __future__ import annotations

import json
import signal
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.attendance.health import gate_health
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import QuarantineLimits, Store
from collector.web.metrics import render_metrics
from gate_agent.protocol import (
    Ack,
    GateTopics,
    ProtocolError,
    Resend,
    Roster,
    decode_punch_message,
    decode_status,
    encode_punches,
    encode_status,
    utc_now_text,
)
from tests.helpers import (
    BANK_KEYS,
    CollectorSetup,
    Listener,
    PunchFactory,
    heartbeat,
    start_web,
    stop_process,
    wait_for,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BANK = "bank-ops-token-all-sites-0003"
TOPICS = GateTopics("S1", "north")
CARD = "04A1B2C3D4E5F6"


def strict_json(text: str | bytes):
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------------- the decoder


def test_a_heartbeat_and_a_last_will_as_the_gate_sends_them_decode():
    online = heartbeat(pending=3, acked_seq=5, last_seq=8, oldest_pending_at="2026-11-28T06:12:02.123Z",
                         roster_issued="2026-11-28T00:00:00.000Z", buffer_pct=81.5, buffer_warning=True)
    assert decode_status(encode_status("online", **online)) == {"v": 1, "state": "online", **online}
    offline = {"site": "S1", "gate": "north"}
    assert decode_status(encode_status("offline", **offline)) == {"v": 1, "state": "offline", **offline}


@pytest.mark.slow
def test_the_real_gate_agent_heartbeats_and_will_pass_the_checks(gate, broker):
    """What the gate agent really publishes, from its first heartbeat to its clean stop."""
    listener = Listener(broker.port, GateTopics(gate.site, gate.gate).status)
    agent = gate.start_agent()
    try:
        wait_for(lambda: len(listener.received("/status")) >= 2, message="two heartbeats")
    finally:
        assert stop_process(agent) == 0
        wait_for(lambda: json.loads(listener.received("/status")[-1].payload)["state"] == "offline",
                 message="the offline status of a clean stop")
        listener.close()
    statuses = [decode_status(message.payload) for message in listener.received("/status")]
    assert {s["state"] for s in statuses} == {"online", "offline"}
    assert all(s["site"] == "S1" and s["gate"] == "north" for s in statuses)


HOSTILE = [
    (b'{"v":1,"state":"online","pending":0,"synced":true,"time":"x"}', "schema"),
    (b'{"v":1,"state":"online","pending":NaN,"heartbeat_seconds":1e999}', "malformed"),
    (b'{"v":1,"state":"online","pending":true}', "schema"),
    (encode_status("online", **heartbeat(pending=True)), "schema"),
    (encode_status("online", **heartbeat(pending=-1)), "schema"),
    (encode_status("online", **heartbeat(pending=1, last_seq=2**63, acked_seq=2**63 - 1)), "schema"),
    (encode_status("online", **heartbeat(pending=5)), "schema"),  # last_seq - acked_seq is 0
    (encode_status("online", **heartbeat(acked_seq=3)), "schema"),  # acked beyond last
    (encode_status("online", **heartbeat(heartbeat_seconds=0)), "schema"),
    (encode_status("online", **heartbeat(heartbeat_seconds=10**9)), "schema"),
    (encode_status("online", **heartbeat(heartbeat_seconds="30")), "schema"),
    (encode_status("online", **heartbeat()).replace(b'"heartbeat_seconds": 1', b'"heartbeat_seconds": Infinity'),
     "malformed"),
    (encode_status("online", **heartbeat()).replace(b'"buffer_pct": 0.1', b'"buffer_pct": -Infinity'),
     "malformed"),
    (encode_status("online", **heartbeat(buffer_pct=-1)), "schema"),
    (encode_status("online", **heartbeat(time="2026-11-28 06:12:02")), "schema"),
    (encode_status("online", **heartbeat(time="2026-13-28T06:12:02.000Z")), "schema"),
    (encode_status("online", **heartbeat(oldest_pending_at=12)), "schema"),
    (encode_status("online", **heartbeat(roster_issued="yesterday")), "schema"),
    (encode_status("online", **heartbeat(synced="true")), "schema"),
    (encode_status("online", **heartbeat(synced=1)), "schema"),
    (encode_status("online", **heartbeat(buffer_warning=None)), "schema"),
    (encode_status("online", **heartbeat(reader="\x1b]0;owned\x07")), "schema"),
    (encode_status("online", **heartbeat(version="0.1.0\x1b[31m")), "schema"),
    (encode_status("online", **heartbeat(version="v" * 65)), "schema"),
    (encode_status("online", **heartbeat(boot="")), "schema"),
    (encode_status("online", **heartbeat(boot="\u202eboot")), "schema"),
    (encode_status("online", **heartbeat(mono_ms=-5)), "schema"),
    (encode_status("online", **heartbeat(bytes_on_disk=1.5)), "schema"),
    (encode_status("online", **heartbeat(site="S1/#")), "schema"),
    (encode_status("online", **heartbeat(counters={"recorded": "many"})), "schema"),
    (encode_status("online", **heartbeat(counters={"\x1b[2J": 1})), "schema"),
    (encode_status("online", **heartbeat(counters=[1, 2])), "schema"),
    (encode_status("online", **heartbeat(**{"\x1b]0;pwned\x07": 1})), "schema"),  # an unknown field
    (encode_status("online", **{k: v for k, v in heartbeat().items() if k != "pending"}), "schema"),
    (encode_status("offline", site="S1", gate="north", pending=0), "schema"),
    (encode_status("offline", site="S1"), "schema"),
    (b'{"v":1,"state":"sleeping","site":"S1","gate":"north"}', "schema"),
    (b'{"v":2,"state":"online"}', "unsupported_version"),
    (b'{"v":1,"state":"online","site":"S1","gate":"north","pad":"' + b"x" * 8000 + b'"}', "oversized"),
]


@pytest.mark.parametrize("payload, reason", HOSTILE)
def test_a_hostile_status_is_refused_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError) as raised:
        decode_status(payload)
    assert raised.value.reason == reason and raised.value.detail


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_no_message_kind_accepts_a_number_that_is_not_finite(number):
    """Python's json module accepts NaN, Infinity and 1e999 (as inf); none of them is JSON."""
    digest = b'"' + b"0" * 64 + b'"'
    gate = {"site": "S1", "gate": "north", "keys": BANK_KEYS}
    payloads = {
        decode_punch_message: b'{"v":1,"punches":[{"seq":%s}]}' % number,
        partial(Ack.decode, **gate): b'{"v":1,"seq":1,"digest":%s,"extra":%s}' % (digest, number),
        partial(Resend.decode, **gate): b'{"v":1,"type":"resend","from":1,"to":2,"extra":%s}' % number,
        partial(Roster.decode, site="S1", keys=BANK_KEYS):
            b'{"v":1,"site":"S1","issued":"2026-11-28T00:00:00.000Z","cards":[],"extra":%s}' % number,
        decode_status: b'{"v":1,"state":"offline","site":"S1","gate":"north","extra":%s}' % number,
    }
    for decode, payload in payloads.items():
        with pytest.raises(ProtocolError) as raised:
            decode(payload)
        assert raised.value.reason == "malformed", decode


# ---------------------------------------------------------------------------------------------- ingest on a real file


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "collector.sqlite3")
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", PunchFactory().public_key)
    store.add_gate("S1", "south", PunchFactory(gate="south").public_key)
    yield store
    store.close()


def test_a_bad_status_is_quarantined_and_the_good_one_stays(store):
    ingestor = Ingestor(store, quarantine_limits=QuarantineLimits(rows_per_hour=len(HOSTILE)))
    good = encode_status("online", **heartbeat())
    hostile = [payload for payload, _ in HOSTILE]
    mislabelled = encode_status("online", **heartbeat(gate="south"))  # south's status on north's topic
    result = ingestor.ingest([Incoming(TOPICS.status, p, utc_now_text()) for p in [good, *hostile, mislabelled]])
    assert result.counts["statuses"] == 1 and result.counts["quarantined"] == len(hostile) + 1
    assert store.gate_status("S1", "north") == decode_status(good)
    assert store.gate_status("S1", "south") is None
    reasons = [row["reason"] for row in store.quarantined()]
    assert reasons == [reason for _, reason in HOSTILE] + ["topic_mismatch"]
    counters = store.counters()
    assert counters["quarantined"] == len(hostile) + 1 and counters["statuses"] == 1


def test_an_upgrade_quarantines_a_hostile_status_stored_before(tmp_path):
    """A database written by a collector that did not validate statuses: the first start of this one moves
    each stored status that would now be refused into the quarantine."""
    path = tmp_path / "collector.sqlite3"
    with Store(path) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", PunchFactory().public_key)
        store.add_gate("S1", "south", PunchFactory(gate="south").public_key)
        with store.transaction():
            store.save_status("S1", "north", {"v": 1, "state": "online", "pending": float("nan"),
                                              "heartbeat_seconds": float("inf")}, utc_now_text())
            store.save_status("S1", "south", {"v": 1, "state": "online", **heartbeat(gate="south")},
                              utc_now_text())
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM schema_migrations WHERE name = 'statuses_checked'")
    conn.close()
    with Store(path) as store:
        assert store.gate_status("S1", "north") is None
        assert store.gate_status("S1", "south")["gate"] == "south"
        rows = store.quarantined()
        assert [(r["topic"], r["reason"]) for r in rows] == [("attendance/v1/S1/north/status", "malformed")]
        assert store.counters()["quarantined_malformed"] == 1
        strict_json(json.dumps(gate_health(store)))


# ---------------------------------------------------------------------------------------------- /metrics


def test_metrics_stay_valid_exposition_format_whatever_is_stored(store):
    with store.transaction():
        store.save_status("S1", "north", {"v": 1, "state": "online", "pending": True, "synced": True},
                          utc_now_text())
        store.save_status("S1", "south", {"v": 1, "state": "online", "pending": float("nan")}, utc_now_text())
        store.add_counters({'quarantined_a"b\\c\nd': 2, "stored": 3})
        store.set_gauges({"ingest_lag_seconds_last": float("inf")}, utc_now_text())
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(store))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families.values() for s in family.samples}
    assert samples[("collector_quarantined_total", (("reason", 'a"b\\c\nd'),))] == 2
    assert samples[("collector_punches_ingested_total", ())] == 3
    assert samples[("collector_ingest_lag_last_seconds", ())] == float("inf")
    assert ("collector_gate_pending", (("gate", "north"), ("site", "S1"))) not in samples  # not a count
    assert ("collector_gate_pending", (("gate", "south"), ("site", "S1"))) not in samples


# ---------------------------------------------------------------------------------------------- the attack, end to end


class Web:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {BANK}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.headers.get_content_type() == "text/event-stream":
                    return response.status, first_update(response)
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def first_update(response) -> bytes:
    event = None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "update":
            return line[len("data: "):].encode()
    raise AssertionError("the stream ended without an update")


@pytest.mark.slow
def test_hostile_statuses_on_the_broker_break_no_read_path(tmp_path, broker):
    north = PunchFactory()
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, **{"web.tokens": {BANK: "*"}})
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", north.public_key)
    collector.run("worker", "add", "W1", "--name", "Zhang Wei", "--card", CARD, "--site", "S1")
    day = (datetime.now(SHANGHAI) - timedelta(days=2)).date()  # a day that can be final
    shift = [datetime.combine(day, time(hour), SHANGHAI).astimezone(UTC) for hour in (8, 17)]
    punches = [north.next(CARD, "in", at=shift[0]), north.next(CARD, "out", at=shift[1])]
    daemon = collector.start()
    web_process = publisher = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        web_process, url = start_web(collector)
        web = Web(url)
        publisher = Listener(broker.port)
        publisher.publish(TOPICS.punch, encode_punches(punches))
        publisher.publish(TOPICS.status, encode_status("online", **heartbeat()), retain=True)

        def processed() -> int:
            counters = collector.json("counters")
            return counters.get("statuses", 0) + counters.get("quarantined", 0)

        wait_for(lambda: processed() == 1 and collector.json("counters").get("stored") == 2,
                 message="the punches and the good heartbeat stored")
        hostile = [b'{"v":1,"state":"online","pending":0,"synced":true,"time":"x"}',
                   b'{"v":1,"state":"online","pending":NaN,"heartbeat_seconds":1e999}',
                   b'{"v":1,"state":"online","pending":true}']
        for number, payload in enumerate(hostile, start=2):
            publisher.publish(TOPICS.status, payload, retain=True)
            wait_for(lambda n=number: processed() == n, message=f"status {payload!r} processed")
            check_read_paths(collector, web, day)

        counters = collector.json("counters")
        assert counters["statuses"] == 1
        assert (counters["quarantined_schema"], counters["quarantined_malformed"]) == (2, 1)
        rows = collector.json("quarantine")
        assert [(r["topic"], r["raw"]) for r in rows] == [(TOPICS.status, p.decode()) for p in hostile]
        # No heartbeat since the good one: the gate must fall silent, whatever the hostile statuses said.
        wait_for(lambda: strict_json(web.get("/api/gates")[1])[0]["state"] == "silent", timeout=15,
                 message="the dead gate shown silent")
        check_read_paths(collector, web, day)
    finally:
        if publisher is not None:
            publisher.close()
        for process in (web_process, daemon):
            if process is not None:
                stop_process(process, signal.SIGKILL)


def check_read_paths(collector: CollectorSetup, web: Web, day) -> None:
    payroll = collector.run("payroll", "--site", "S1", "--from", day.isoformat(), "--to", day.isoformat(),
                            "--json", check=False)
    assert payroll.returncode == 0, payroll.stderr
    assert [(r["worker"], r["worked_minutes"]) for r in json.loads(payroll.stdout)] == [("W1", 540)]
    status, body = web.get(f"/api/sites/S1/attendance?date={day.isoformat()}")
    assert status == 200, body
    assert [r["final"] for r in strict_json(body)] == [True]  # the good heartbeat, made after the day
    status, body = web.get("/api/gates")
    assert status == 200, body
    (gate,) = strict_json(body)
    assert (gate["reported_pending"], gate["reported_last_seq"], gate["version"]) == (0, 2, "0.1.0")
    status, body = web.get("/api/sites/S1/live")
    assert status == 200, body
    assert strict_json(body)["gates"][0]["reported_pending"] == 0
    status, body = web.get("/metrics")
    assert status == 200, body
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (pending,) = families["collector_gate_pending"].samples
    assert pending.value == 0 and pending.labels == {"site": "S1", "gate": "north"}
    assert collector.run("gates").returncode == 0
