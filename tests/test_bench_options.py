"""The benchmark's options, its scale-out arithmetic and the read side's bank builder (the runs themselves
take minutes: `./dev bench`, `./dev bench --reads`)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from collector.attendance import days
from collector.ingest.cluster import partition_of
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.protocol import (
    GENESIS,
    Punch,
    encode_punch_bodies,
    parse_public_key,
    utc_now_text,
    verify_punch,
)
from tests.bench import reads, run
from tests.bench.fakegates import public_keys, signed_bodies


def test_backend_and_collectors_options():
    args = run.parse_args([])
    assert (args.backend, args.collectors, args.quick, args.reads) == ("sqlite", [1], False, False)
    args = run.parse_args(["--quick", "--backend", "postgresql", "--collectors", "2,1,2"])
    assert (args.backend, args.collectors, args.quick) == ("postgresql", [1, 2], True)
    assert run.parse_args(["--collectors", "3"]).collectors == [3]


def test_the_read_side_measures_both_engines_at_a_month_s_size_unless_told():
    args = run.parse_args(["--reads"])
    assert (args.reads, args.backend) == (True, "both")
    assert reads.sizes(args) == reads.Size(20, 2000, 22) and reads.sizes(args).inside == 3000
    args = run.parse_args(["--reads", "--quick", "--backend", "sqlite"])
    assert (args.backend, reads.sizes(args)) == ("sqlite", reads.Size(2, 200, 5))
    args = run.parse_args(["--reads", "--quick", "--sites", "3", "--workers", "50", "--days", "4", "--json", "r.json"])
    assert (reads.sizes(args), args.json_file) == (reads.Size(3, 50, 4), "r.json")


@pytest.mark.parametrize("bad", [["--collectors", "0"], ["--collectors", "5"], ["--collectors", "one"],
                                 ["--collectors", ","], ["--backend", "mysql"], ["--backend", "both"],
                                 ["--sites", "2"], ["--reads", "--collectors", "2"], ["--reads", "--workers", "0"],
                                 ["--reads", "--days", "x"]])
def test_bad_options_are_refused(bad, capsys):
    with pytest.raises(SystemExit) as stopped:
        run.parse_args(bad)
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("counts, partitions", [([1], 1), ([2], 4), ([1, 2], 4), ([1, 2, 3], 6), ([1, 2, 4], 4)])
def test_partitions_give_every_collector_an_equal_share(counts, partitions):
    assert run.partitions_for(counts) == partitions
    assert all(partitions % n == 0 for n in counts)


@pytest.mark.parametrize("partitions", [1, 4, 6])
def test_each_partition_gets_one_site_of_a_phase(partitions):
    sites = run.balanced_sites("LIVE", partitions)
    assert len(set(sites)) == partitions
    assert sorted(partition_of(site, partitions) for site in sites) == list(range(partitions))


def phase(per_s: float, collectors: float, backends: float, *, bursts: int = 100, punches: int = 10_000) -> dict:
    return {"per_s": per_s, "n": punches, "cores_used": {"collectors": 1.0},
            "cpu_us_per_punch": {"collectors": collectors, "broker": 10.0, "postgresql_backends": backends,
                                 "postgresql_shared": 1.0, "fake_gates": 20.0},
            "punches_per_burst": punches / bursts, "lock_wait_ms_per_burst": 0.5, "resent": 0, "takeovers": 0}


def runs(collector_n2: float, backends: float, drain_per_s: float) -> dict:
    one = {"live": phase(1000, 200.0, backends), "backlog": phase(4000, 100.0, backends),
           "drain": phase(drain_per_s, 100, backends)}
    two = {"live": phase(1000, collector_n2 * 200, backends), "backlog": phase(4000, collector_n2 * 100, backends),
           "drain": phase(drain_per_s, 100, backends)}
    return {1: one, 2: two}


def test_scale_out_passes_what_meets_the_targets():
    scale = run.scale_out(runs(collector_n2=1.05, backends=20.0, drain_per_s=6000), "postgresql", cpus=2)
    assert {name: check["met"] for name, check in scale["targets"].items()} == {
        "collector_cpu_n2_vs_n1": True, "backend_cpu_share": True, "drain_postgresql": True}
    live = scale["phases"]["live"]
    # The same aggregate with twice the processes is half the efficiency by throughput; by CPU per punch
    # it is what two cores would give.
    assert live[2]["efficiency_throughput"] == 0.5
    assert live[2]["efficiency_cpu_collectors"] == round(1 / 1.05, 3)
    assert "2 CPUs" in scale["cores_note"] and "CPU per punch" in scale["cores_note"]


def test_scale_out_says_what_misses_and_where():
    scale = run.scale_out(runs(collector_n2=1.2, backends=60.0, drain_per_s=4000), "postgresql", cpus=2)
    targets = scale["targets"]
    assert not targets["collector_cpu_n2_vs_n1"]["met"]
    assert targets["collector_cpu_n2_vs_n1"]["ratios"] == {"live": 1.2, "backlog": 1.2}
    assert "200.0 -> 240.0 us/punch" in targets["collector_cpu_n2_vs_n1"]["where"]
    assert not targets["backend_cpu_share"]["met"] and targets["backend_cpu_share"]["shares"]["live N=1"] == 0.3
    assert not targets["drain_postgresql"]["met"] and targets["drain_postgresql"]["per_s"] == {1: 4000, 2: 4000}


def test_sqlite_and_a_single_count_judge_only_what_they_measured():
    scale = run.scale_out({1: runs(1.0, 0.0, 6000)[1]}, "sqlite", cpus=2)
    assert scale["targets"] == {"collector_cpu_n2_vs_n1": {"target": "needs --collectors 1,2", "met": None}}


def test_a_burst_reports_the_time_it_spent_taking_its_locks(tmp_path):
    with Store(tmp_path / "collector.sqlite3") as store:
        store.add_site("S", timezone="Asia/Shanghai")
        (gate, key), = public_keys("bench", "S", 1).items()
        store.add_gate("S", gate, key)
        bodies = signed_bodies("bench", "S", gate, 3, run.datetime.now(run.UTC) - run.timedelta(hours=1))
        messages = [Incoming(f"attendance/v1/S/{gate}/punch", encode_punch_bodies([body]), utc_now_text())
                    for body in bodies]
        started = time.perf_counter()
        result = Ingestor(store).ingest(messages)
        took = time.perf_counter() - started
        assert result.counts["stored"] == 3
        assert 0 < result.lock_wait < took


def test_the_read_side_s_bank_holds_gate_punches_signed_and_chained_and_their_kept_days(tmp_path):
    location = tmp_path / "collector.sqlite3"
    bank = reads.build_bank(location, tmp_path, reads.Size(1, 5, 2), processes=1, now=datetime.now(UTC))
    reads.build_days(bank)
    reads.settle_wages(bank)
    calendar, site = bank.calendar, bank.sites[0]
    with Store(location, readonly=True) as store:
        gate_punches = store.execute("SELECT COUNT(*) FROM punches WHERE source = 'mqtt'").fetchone()[0]
        manual = store.execute("SELECT COUNT(*) FROM punches WHERE source = 'manual'").fetchone()[0]
        assert (gate_punches, manual) == (bank.punches, bank.manual) and bank.punches >= 5 * 4
        for gate in store.gates(site):
            key = parse_public_key(store.public_keys(site, gate["gate"])[0]["public_key"])
            bodies = store.gate_punch_bodies(site, gate["gate"])
            assert gate["contiguous_seq"] == gate["max_seq"] == len(bodies) > 0
            previous = GENESIS
            for body in bodies:
                punch = Punch.from_dict(json.loads(body))
                verify_punch(punch, key)
                assert punch.prev == previous
                previous = punch.digest()
        assert store.pending_day_marks() == 0
        kept = store.stored_days(site=site)
        # Every worker taps on every working day of both months (an IN, an OUT or both): one kept day each.
        assert len(kept) == 5 * (len(calendar.days) + len(calendar.earlier_days))
        for first, last in ((calendar.earlier_first, calendar.earlier_last), (calendar.first, calendar.last)):
            assert days.differences(store, site, first, last, now=datetime.now(UTC)) == []
        # The only site is the late one: the month before approved and partly paid, the month measured not.
        assert [t["period"] for t in store.approved_wage_tables(site)] == [calendar.earlier]
        credits = store.wage_payments(site, calendar.earlier)
        paid = [p for p in credits if p["status"] == "paid"]
        assert credits and len(paid) == int(len(credits) * reads.PAID_SHARE)
        assert {p["status"] for p in credits if p not in paid} <= {"pending"}
    assert bank.notes == []
