"""Several collectors, one ledger: leases, fair shares, takeover and fencing, and racing writers.

Each runs on both engines. The racing-writers tests force what partitioning normally prevents: two
processes ingesting one gate's consecutive punches at once. The outcome must be what one process gives.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from collector.ingest.cluster import LeaseKeeper, client_id, lease_name, partition_of
from collector.ingest.pipeline import Incoming, Ingestor, LeaseLost
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, format_time, utc_now_text
from tests.helpers import PunchFactory


@pytest.fixture
def store(database):
    with Store(database) as store:
        yield store


def keeper(database, name: str, partitions: int = 4, ttl: float = 30.0) -> LeaseKeeper:
    return LeaseKeeper(Store(database), partitions=partitions, ttl=ttl, instance=name)


def test_partitions_are_stable_and_spread():
    sites = [f"S{n}" for n in range(400)]
    assert [partition_of(s, 8) for s in sites] == [partition_of(s, 8) for s in sites]
    counts = [sum(partition_of(s, 8) == k for s in sites) for k in range(8)]
    assert min(counts) > 25, counts  # 50 each on average
    assert {partition_of(s, 1) for s in sites} == {0}
    assert client_id("collector", 0, 1) == "collector" and client_id("collector", 3, 8) == "collector-p03"


def test_one_process_holds_everything_and_two_share_fairly(database):
    first = keeper(database, "a")
    assert sorted(first.tick().gained) == [0, 1, 2, 3]
    second = keeper(database, "b")
    second.tick()  # b is alive now: a's share drops to 2
    change = first.tick()
    assert len(change.lost) == 2 and len(first.held) == 2
    second.tick()
    assert sorted(first.held) + sorted(second.held) != [] and set(first.held).isdisjoint(second.held)
    assert sorted([*first.held, *second.held]) == [0, 1, 2, 3]
    # A clean stop gives everything back at once; the other takes it all.
    second.leave()
    first.tick()
    assert sorted(first.held) == [0, 1, 2, 3]


def test_a_silent_process_is_taken_over_after_its_lease_and_cannot_write_after(database):
    silent = keeper(database, "silent", partitions=2, ttl=1.0)
    assert sorted(silent.tick().gained) == [0, 1]
    other = keeper(database, "other", partitions=2, ttl=1.0)
    other.tick()
    assert other.held == {}, "a live lease is not taken"
    time.sleep(1.3)  # silent stops renewing (paused, cut off)
    assert sorted(other.tick().gained) == [0, 1]
    # The silent one comes back: its fenced writes find the leases taken, and it lets them go.
    with silent.store.transaction():
        assert silent.fence([0, 1]) == [0, 1]
    change = silent.tick()
    assert sorted(change.lost) == [0, 1] and silent.held == {}
    epochs = {row["name"]: row["epoch"] for row in other.store.leases()}
    assert epochs[lease_name(0)] == 2 and epochs[lease_name(1)] == 2  # a new owner, a new epoch


def test_a_burst_whose_lease_was_lost_writes_nothing(database):
    """Ingest renews the burst's leases last, inside its transaction: a takeover in between wins."""
    gate = PunchFactory()
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", gate.public_key)
    holder = keeper(database, "holder", partitions=1, ttl=1.0)
    holder.tick()
    time.sleep(1.3)
    keeper(database, "successor", partitions=1, ttl=30).tick()
    ingestor = Ingestor(holder.store)
    message = Incoming(GateTopics("S1", "north").punch, encode_punches([gate.next()]), utc_now_text())
    with pytest.raises(LeaseLost):
        ingestor.ingest([message], fence=lambda: holder.fence([0]))
    assert holder.store.punch_count() == 0 and holder.store.counters() == {}


# ---------------------------------------------------------------------------------------------- racing writers


def racing_result(database, punches, bursts_a, bursts_b) -> dict:
    """Two ingestors on connections of their own, each a thread, sending their bursts at the same time."""
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", punches.public_key)
    topic = GateTopics("S1", "north").punch
    start = threading.Barrier(2)
    errors = []

    def writer(bursts):
        with Store(database) as own:
            ingestor = Ingestor(own)
            start.wait()
            try:
                for burst in bursts:
                    ingestor.ingest([Incoming(topic, encode_punches([p]), format_time(datetime.now(UTC)))
                                     for p in burst])
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(bursts,)) for bursts in (bursts_a, bursts_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return outcome(database)


def outcome(database) -> dict:
    """What the ledger says, independent of which of two equivocating copies happened to arrive first."""
    with Store(database) as store:
        rows = [(r["seq"], r["digest"], r["flags"]) for r in store.punches() if r["gate"] == "north"]
        rows.sort()
        conflicts = store.execute("SELECT seq, kind, stored_digest, other_digest FROM conflicts "
                                  "ORDER BY seq, kind").fetchall()
        return {"punches": [(seq, flags) for seq, _, flags in rows],
                "digests": {seq: digest for seq, digest, _ in rows},
                "conflicts": [(seq, kind, frozenset({held, other})) for seq, kind, held, other in conflicts],
                "progress": store.gate_progress("S1", "north").contiguous_seq, "gaps": store.open_gaps("S1", "north"),
                "counters": {k: v for k, v in store.counters().items() if k != "messages"}}


def history(count: int = 40):
    """A gate's punches with what the checks must find: one punch dated an hour before its
    predecessor (clock_backwards), one re-signed with a wrong predecessor (a chain break), and two
    different punches under the last seq (an equivocation)."""
    now = datetime.now(UTC).replace(microsecond=0)
    gate = PunchFactory(start=now - timedelta(hours=3))
    punches = []
    for i in range(count):
        at = now - timedelta(hours=2) + timedelta(minutes=i)
        if i == 19:
            gate.prev = "ab" * 32  # seq 20 names a predecessor the gate never signed
        punches.append(gate.next(at=at - timedelta(hours=1) if i == 9 else at))
    twin = PunchFactory(start=now, key=gate.key)
    twin.seq, twin.prev = count - 1, punches[-2].digest()
    punches.append(twin.next(card="DEADBEEF", at=now - timedelta(minutes=1)))
    return gate, punches


@pytest.mark.parametrize("split", ["alternate", "interleaved_bursts"])
def test_racing_writers_give_what_one_writer_gives(database, postgres_or_sqlite_second, split):
    gate, everything = history()
    if split == "alternate":  # one gate's consecutive punches on different processes, as round robin does
        bursts_a = [[p] for p in everything[0::2]]
        bursts_b = [[p] for p in everything[1::2]]
    else:
        bursts_a = [everything[i:i + 5] for i in range(0, len(everything), 10)]
        bursts_b = [everything[i + 5:i + 10] for i in range(0, len(everything), 10)]
    raced = racing_result(database, gate, bursts_a, bursts_b)
    single = single_result(postgres_or_sqlite_second, gate, everything)
    assert raced["punches"] == single["punches"]
    assert raced["conflicts"] == single["conflicts"]
    assert {seq: d for seq, d in raced["digests"].items() if seq != 40} == \
        {seq: d for seq, d in single["digests"].items() if seq != 40}
    assert raced["progress"] == single["progress"] == 40 and raced["gaps"] == single["gaps"] == []
    assert raced["counters"] == single["counters"]
    # What the checks had to find, found by both:
    flags = dict(raced["punches"])
    assert "clock_backwards" in flags[10] and "chain_break" in flags[20] and "equivocated" in flags[40]
    assert [(seq, kind) for seq, kind, _ in raced["conflicts"]] == [(20, "chain_break"), (40, "equivocation")]


def single_result(database, gate, everything) -> dict:
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", gate.public_key)
        ingestor = Ingestor(store)
        topic = GateTopics("S1", "north").punch
        for punch in everything:
            ingestor.ingest([Incoming(topic, encode_punches([punch]), utc_now_text())])
    return outcome(database)


@pytest.fixture
def postgres_or_sqlite_second(request, tmp_path, database):
    """A second database of the same engine, for the one-writer reference run."""
    if isinstance(database, str):
        return request.getfixturevalue("postgres_db_second")
    return tmp_path / "reference.sqlite3"


@pytest.fixture
def postgres_db_second():
    from tests import postgres

    postgres.require_server()
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


def test_cluster_status_says_who_holds_what(tmp_path, database):
    from types import SimpleNamespace

    from tests.helpers import CollectorSetup

    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database,
                                  cluster={"partitions": 4})
    setup.run("db", "upgrade")
    first, second = keeper(setup.location, "host-a:1:aaaaaa"), keeper(setup.location, "host-b:2:bbbbbb")
    first.tick(), second.tick(), first.tick(), second.tick()
    status = setup.json("cluster", "status")
    owners = {row["partition"]: row["owner"] for row in status["partitions"] if row["held"]}
    assert sorted(owners) == [0, 1, 2, 3] and set(owners.values()) == {"host-a:1:aaaaaa", "host-b:2:bbbbbb"}
    assert [m["instance"] for m in status["members"]] == ["host-a:1:aaaaaa", "host-b:2:bbbbbb"]
    second.leave()
    text = setup.run("cluster", "status").stdout
    assert "NOT HELD" in text and "1 collector(s) alive: host-a:1:aaaaaa" in text
