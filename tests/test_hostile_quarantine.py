"""A gate (or anyone on the broker) sending garbage cannot fill the bank's disk or its log: the
quarantine keeps the first refused messages of each topic and reason per hour with their bytes, counts
every one exactly, releases the oldest bytes first past its budget, and logs repeats as one line with a
count."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import QuarantineLimits, Store
from gate_agent.protocol import GateTopics
from tests.helpers import CollectorSetup, Listener, PunchFactory, stop_process, wait_for

NORTH, SOUTH = GateTopics("S1", "north"), GateTopics("S1", "south")
LOGGED = re.compile(r"quarantined (a|\d+ more) message(?:\(s\))? on (\S+?):? ")


def logged_counts(log: str) -> Counter:
    """Refused messages per topic as the log reports them (a first line, then lines with a count)."""
    counts: Counter = Counter()
    for line in log.splitlines():
        found = LOGGED.search(line)
        if found:
            counts[found.group(2)] += 1 if found.group(1) == "a" else int(found.group(1).split()[0])
    return counts


def database_bytes(setup: CollectorSetup) -> int:
    return sum(os.path.getsize(f"{setup.db_path}{suffix}") for suffix in ("", "-wal")
               if os.path.exists(f"{setup.db_path}{suffix}"))


@pytest.mark.slow
def test_a_flood_of_garbage_is_counted_exactly_and_kept_within_bounds(tmp_path, broker):
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", PunchFactory().public_key)
    collector.run("gate", "add", "south", "--site", "S1", "--public-key", PunchFactory(gate="south").public_key)
    before = database_bytes(collector)
    daemon = collector.start()
    publisher = None
    flood, neighbour, strangers = 2000, 5, 30
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        publisher = Listener(broker.port)
        for _ in range(flood):
            publisher.publish(NORTH.punch, os.urandom(5 * 1024))  # 5 KB of garbage from one gate
        for _ in range(neighbour):
            publisher.publish(SOUTH.punch, b"\x00not json from south")
        for number in range(strangers):  # nobody's topics
            publisher.publish(GateTopics(f"X{number}", "g").punch, b"garbage")
        total = flood + neighbour + strangers
        wait_for(lambda: collector.json("counters").get("quarantined") == total, timeout=60,
                 message=f"{total} messages quarantined")
    finally:
        if publisher is not None:
            publisher.close()
        assert stop_process(daemon) == 0  # SIGTERM: a clean stop logs what it still holds back

    # ~10 MB of raw bytes without limits; a few hundred kilobytes at most with them.
    growth = database_bytes(collector) - before
    assert growth < 1024 * 1024, f"the database grew by {growth} bytes"
    # The log: a line for the first refusal on each topic, then one line with the count of the rest.
    log = collector.log()
    lines = [line for line in log.splitlines() if "quarantined" in line]
    assert len(lines) <= 2 + 2 + strangers, f"{len(lines)} lines: " + "\n".join(lines[:10])
    assert logged_counts(log)[NORTH.punch] == flood
    assert logged_counts(log)[SOUTH.punch] == neighbour
    counters = collector.json("counters")
    rows = collector.json("quarantine")
    by_topic = Counter(row["topic"] for row in rows)
    # Every refused message is counted, by reason, whether or not it was kept.
    assert counters["quarantined"] == counters["quarantined_malformed"] == total
    assert counters["quarantine_not_kept"] == total - len(rows)
    # At most 20 per topic and reason per clock hour (the flood may straddle two hours); the neighbour's
    # few are all kept; strangers' topics share one allowance.
    assert 20 <= by_topic[NORTH.punch] <= 40
    assert by_topic[SOUTH.punch] == neighbour
    assert sum(n for topic, n in by_topic.items() if topic.startswith("attendance/v1/X")) <= 40
    assert all(row["size"] == 5 * 1024 and len(row["raw"]) > 0 for row in rows if row["topic"] == NORTH.punch)
    # What was not kept is listed per topic, so the bank knows who sent it.
    text = collector.run("quarantine").stdout
    assert re.search(rf"{re.escape(NORTH.punch)}.*malformed.*{flood - by_topic[NORTH.punch]} not kept", text), text


def test_the_oldest_bytes_and_rows_go_first_and_the_tally_keeps_every_count(tmp_path):
    store = Store(tmp_path / "collector.sqlite3")
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", PunchFactory().public_key)
    limits = QuarantineLimits(rows_per_hour=3, raw_rows=5, rows=8)
    ingestor = Ingestor(store, quarantine_limits=limits)
    sent = []
    for hour in range(4):
        for minute in range(5):
            payload = f"garbage {hour} {minute}".encode()
            sent.append(payload)
            ingestor.ingest([Incoming(NORTH.punch, payload, f"2026-11-28T0{hour}:{minute:02d}:00.000Z")])
    rows = store.quarantined()
    # 3 rows kept of each hour's 5; of those 12, the row cap keeps the newest 8, the raw budget the newest 5.
    assert [row["received_at"][11:16] for row in rows] == \
        ["01:01", "01:02", "02:00", "02:01", "02:02", "03:00", "03:01", "03:02"]
    assert [row["raw"] is not None for row in rows] == [False] * 3 + [True] * 5
    for row in rows:
        payload = f"garbage {int(row['received_at'][12])} {int(row['received_at'][15])}".encode()
        assert row["sha256"] == hashlib.sha256(payload).hexdigest() and row["size"] == len(payload)
        assert row["raw"] in (None, payload)
    tally = store.quarantine_tally()
    assert [(t["hour"], t["topic"], t["reason"], t["count"], t["kept"]) for t in tally] == \
        [(f"2026-11-28T0{hour}", NORTH.punch, "malformed", 5, 3) for hour in range(4)]
    counters = store.counters()
    assert counters["quarantined"] == 20 and counters["quarantine_not_kept"] == 8
    store.close()


def test_a_flood_of_unknown_topics_shares_one_allowance(tmp_path):
    """Topics nobody registered are unbounded in number: they share one allowance, so that varying the
    topic does not multiply what is kept."""
    store = Store(tmp_path / "collector.sqlite3")
    ingestor = Ingestor(store, quarantine_limits=QuarantineLimits(rows_per_hour=4))
    received = "2026-11-28T06:00:00.000Z"
    ingestor.ingest([Incoming(GateTopics(f"X{n}", f"g{n}").punch, b"junk", received) for n in range(200)])
    ingestor.ingest([Incoming(f"attendance/v1/X{n}/g/other", b"junk", received) for n in range(200)])
    reasons = Counter(row["reason"] for row in store.quarantined())
    assert reasons == {"malformed": 4, "topic": 4}
    assert store.counters()["quarantined"] == 400
    assert len(store.quarantine_tally()) == 2
    store.close()
