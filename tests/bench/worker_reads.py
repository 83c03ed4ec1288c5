"""What one worker's reads cost on a site of many: the worker's month (`/api/worker/record`), one wage
slip, and `wages run` for the site's month. Builds a SQLite site of N workers x 22 working days through
the real ingest, then times each read. Prints figures; asserts nothing.

    python tests/bench/worker_reads.py [--workers 300] [--repeat 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collector.attendance import days as kept_days  # noqa: E402
from collector.ingest.pipeline import Incoming, Ingestor  # noqa: E402
from collector.store import Store  # noqa: E402
from collector.wages.slip import render, slip  # noqa: E402
from collector.wages.table import run  # noqa: E402
from collector.workers.record import record  # noqa: E402
from gate_agent.protocol import GateTopics, encode_punches, format_time  # noqa: E402
from tests.helpers import PunchFactory, heartbeat, resident_id  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-10"
#: After October's pay day (15 November): its wages are past due on the worker's page.
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def build(path: Path, workers: int) -> None:
    store = Store(str(path))
    north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_gate("S1", "north", north.public_key)
    store.add_gate("S1", "south", south.public_key)
    store.set_site_pay("S1", pay_day=15, effective_from="2026-01-01", by="ops", payer_account="110000000001",
                       payer_name="总包", payer_bank="建行")
    names = [f"W{n:04d}" for n in range(workers)]
    with store.transaction():
        for n, worker in enumerate(names):
            store.add_worker(worker, name=f"工人{n}", employer="华建劳务", cards=[f"04{n:012X}"], sites=["S1"])
            store.set_payee(worker, id_number=resident_id(n + 1), phone="13812345678",
                            bank_account=f"6222021234{n:09d}", bank_name="中国工商银行")
            store.set_wage_terms(worker, basis="day" if n % 2 else "hour", rate_fen=35000 if n % 2 else 4501,
                                 effective_from="2026-01-01", by="ops")
    ingestor = Ingestor(store)
    day = date(2026, 10, 1)
    working = 0
    while working < 22:
        if day.weekday() < 5:
            working += 1
            for direction, gate, hour in (("in", north, 7), ("out", south, 16)):
                batch = []
                for n in range(len(names)):
                    at = datetime(day.year, day.month, day.day, hour, n % 60, tzinfo=SHANGHAI).astimezone(UTC)
                    batch.append(gate.next(card=f"04{n:012X}", direction=direction, at=at))
                batch.sort(key=lambda p: p.seq)
                for start in range(0, len(batch), 200):
                    chunk = batch[start:start + 200]
                    ingestor.ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches(chunk),
                                              format_time(datetime.fromisoformat(chunk[-1].time.replace("Z", "+00:00"))
                                                          + timedelta(seconds=2)))])
        day += timedelta(days=1)
    with store.transaction():
        for gate in ("north", "south"):
            store.save_status("S1", gate, {"v": 1, "state": "online", **heartbeat(
                gate=gate, time=format_time(NOW - timedelta(hours=1)), pending=0, oldest_pending_at=None)},
                format_time(NOW - timedelta(hours=1)))
    kept_days.refresh(store)
    store.close()


def timed(action, repeat: int) -> dict[str, float]:
    """Best, median and worst wall seconds of ``repeat`` calls, and the median CPU seconds of this
    process (what a busy machine inflates less)."""
    wall, cpu = [], []
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    wall.sort()
    cpu.sort()
    return {"best": wall[0], "median": wall[len(wall) // 2], "worst": wall[-1], "cpu": cpu[len(cpu) // 2]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5, help="times each read is made (the month: ten times that)")
    parser.add_argument("--keep", help="build the database here (reused when it exists)")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="worker-reads-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "collector.db"
    try:
        if not path.exists():
            started = time.perf_counter()
            build(path, args.workers)
            print(f"built {args.workers} workers x 22 days in {time.perf_counter() - started:.1f} s")
        store = Store(str(path))
        worker = store.db.value("SELECT MAX(worker) FROM workers")
        figures = {"worker's month (record)": timed(lambda: record(store, worker, PERIOD, now=NOW), 10 * args.repeat)}
        figures["wages run (draft) for the site"] = timed(
            lambda: run(store, "S1", PERIOD, by="bench", draft=True, now=NOW), 1)
        figures["one wage slip"] = timed(lambda: render(slip(store, worker, PERIOD, site="S1", now=NOW)), args.repeat)
        for name, seconds in figures.items():
            print(f"{name:32}" + "".join(f"  {k} {v * 1000:8.1f} ms" for k, v in seconds.items()))
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
