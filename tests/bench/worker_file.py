"""What a worker file costs to read at its bound: the 700,000-row file of the security review (accepted
before, 55 s and 903 MB to import) beside an honest file at the bound (20,000 workers). Each case runs in
a child process of its own, so its peak memory is its own. Prints figures; asserts nothing.

    python tests/bench/worker_file.py [--rows 700000] [--unbounded]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def write(path: Path, rows: int) -> Path:
    lines = ["工号,姓名,卡号,单位,工地,身份证号,手机号"]
    lines += [f"W{n:07d},王伟{n % 100},{n:014X},华建劳务,S1,11010519491231002X,138{n:08d}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def child(path: str, bound: int) -> None:
    """One read, as `collector worker import` reads: its outcome, seconds and peak memory as JSON."""
    from collector.workers.registry import TooManyWorkers, read_worker_file

    started = time.perf_counter()
    try:
        outcome = f"read {len(read_worker_file(path, max_workers=bound).rows)} workers"
    except TooManyWorkers as error:
        outcome = "refused: " + str(error).split(": ", 1)[1][:70]
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "outcome": outcome,
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=700_000, help="rows of the attacking file")
    parser.add_argument("--bound", type=int, default=20_000, help="[limits] max_workers_per_file")
    parser.add_argument("--unbounded", action="store_true", help="also read the attacking file whole (before)")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        cases = [(f"{options.rows:,} rows, bound {options.bound:,}", write(Path(directory) / "attack.csv", options.rows),
                  options.bound),
                 (f"{options.bound:,} rows (at the bound)", write(Path(directory) / "honest.csv", options.bound),
                  options.bound)]
        if options.unbounded:
            cases.append((f"{options.rows:,} rows, no bound", cases[0][1], 10**8))
        for name, path, bound in cases:
            result = subprocess.run([sys.executable, __file__, "--child", str(path), str(bound)], capture_output=True,
                                    text=True, check=True, cwd=ROOT)
            figures = json.loads(result.stdout)
            print(f"{name:<34} {path.stat().st_size / 1e6:7.1f} MB  {figures['seconds']:6.2f} s  "
                  f"peak {figures['peak_mb']:5d} MB  {figures['outcome']}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
