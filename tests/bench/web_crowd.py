"""What one worker's crowd of page loads costs another worker, over a real `collector serve`: the attack of
the security review (10 concurrent loads by one worker made another worker's page take 154.5 s), with the
bounds of `[web]` as shipped and with them lifted. Builds a SQLite site of N workers x 22 working days
(tests/bench/worker_reads.py), then, while ATTACKERS threads load worker A's October page without pause,
loads worker B's page in turn (and once more with A waiting as Retry-After tells it). Prints figures;
asserts nothing.

    python tests/bench/web_crowd.py [--workers 300] [--attackers 10] [--loads 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.worker_reads import build  # noqa: E402
from tests.helpers import CollectorSetup, start_web, stop_process  # noqa: E402
from tests.test_web_worker_sessions import Client  # noqa: E402

PAGE = "/api/worker/record?month=2026-10"
TOKEN = "bench-bank-token-all-sites-0003"


def victim_loads(url: str, cookie: str, loads: int) -> list[float]:
    seconds = []
    for _ in range(loads):
        started = time.perf_counter()
        status, _, _ = Client(url).call("GET", PAGE, cookie=cookie)
        assert status == 200, status
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(setup: CollectorSetup, attackers: int, loads: int, *, polite: bool = False, **web) -> dict:
    setup.write_config(web=web)
    process, url = start_web(setup)
    try:
        def session(worker: str) -> str:
            link = setup.json("worker", "link", "--worker", worker, "--base-url", url, "--by", "bench")["url"]
            return Client(url).session(link)

        attacker, victim = session("W0000"), session("W0001")
        alone = victim_loads(url, victim, loads)
        answers: Counter[int] = Counter()
        stop = threading.Event()

        def attack() -> None:
            while not stop.is_set():
                status, headers, _ = Client(url).call("GET", PAGE, cookie=attacker)
                answers[status] += 1
                if polite and "Retry-After" in headers:
                    stop.wait(int(headers["Retry-After"]))

        threads = [threading.Thread(target=attack) for _ in range(attackers)]
        for thread in threads:
            thread.start()
        time.sleep(1)  # the crowd is at it
        crowded = victim_loads(url, victim, loads)
        stop.set()
        for thread in threads:
            thread.join()
        return {"alone": alone, "crowded": crowded, "answers": dict(answers)}
    finally:
        stop_process(process, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--attackers", type=int, default=10, help="concurrent loads of worker A's page")
    parser.add_argument("--loads", type=int, default=10, help="loads of worker B's page measured")
    parser.add_argument("--keep", help="build the database here (reused when it exists)")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="web-crowd-"))
    try:
        setup = CollectorSetup(folder, 1883, {"web.tokens": {TOKEN: "*"}})
        folder.mkdir(parents=True, exist_ok=True)
        if not setup.db_path.exists():
            started = time.perf_counter()
            build(setup.db_path, args.workers)
            print(f"built {args.workers} workers x 22 days in {time.perf_counter() - started:.1f} s")
        lifted = {"requests_per_credential": 10_000, "requests_per_site": 10_000}
        for name, polite, web in (("bounds as shipped", False, {}), ("... A waits as told", True, {}),
                                  ("bounds lifted", False, lifted)):
            figures = measure(setup, args.attackers, args.loads, polite=polite, **web)
            alone, crowded = figures["alone"], figures["crowded"]
            print(f"{name:20}  B alone: median {statistics.median(alone) * 1000:7.0f} ms  |  B beside {args.attackers} "
                  f"loads of A: median {statistics.median(crowded) * 1000:7.0f} ms, worst {max(crowded) * 1000:7.0f} ms"
                  f"  |  A's answers {dict(sorted(figures['answers'].items()))}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
