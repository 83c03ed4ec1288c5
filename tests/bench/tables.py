"""What reading a table costs: the hostile workbooks of the security review (each must be refused, and
quickly) beside honest files of the largest size a wage sheet may have. Prints figures; asserts nothing.

    python tests/bench/tables.py [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from openpyxl import Workbook  # noqa: E402

from collector.tabular import TableError, read_table  # noqa: E402
from tests.test_hostile_tables import SHEET, edited, one_sheet, with_shared_strings  # noqa: E402

FIELDS = {"worker": ("工号",), "name": ("姓名",), "amount": ("金额",), "account": ("银行账号",)}


def attacks() -> dict[str, bytes]:
    small = one_sheet([["工号", "姓名"], ["W1", "王伟"]])
    xfd = b"".join(b'<row r="%d"><c r="XFD%d"><v>1</v></c></row>' % (n, n) for n in range(3, 19_993))
    return {
        "95 MB XML comment": edited(small, SHEET, lambda xml: xml.replace(
            b"<sheetData>", b"<!--" + b"x" * 95_000_000 + b"--><sheetData>", 1)),
        "column XFD on 19,990 rows": edited(small, SHEET, lambda xml: xml.replace(b"</sheetData>", xfd + b"</sheetData>")),
        "6 million shared strings": with_shared_strings(small, b"<si><t></t></si>" * 6_000_000),
    }


def honest(rows: int) -> dict[str, bytes]:
    header = ["工号", "姓名", "金额", "银行账号"]
    lines = [[f"W{n}", "王伟", f"{1000 + n % 9000}.50", f"6222021234{n:09d}"] for n in range(rows)]
    workbook = Workbook()
    workbook.active.append(header)
    for line in lines:
        workbook.active.append(line)
    out = io.BytesIO()
    workbook.save(out)
    text = "\r\n".join(",".join(line) for line in [header, *lines]).encode("gbk")
    return {f"{rows:,} rows, xlsx": out.getvalue(), f"{rows:,} rows, csv gbk": text}


def measure(name: str, data: bytes) -> dict:
    started = time.perf_counter()
    try:
        table = read_table(data, name="f", fields=FIELDS, identify=("worker", "name"), max_bytes=64 * 1024 * 1024)
        outcome = f"read {sum(1 for _ in table)} rows"
    except TableError as error:
        outcome = f"refused: {str(error)[:90]}"
    seconds = time.perf_counter() - started
    return {"case": name, "bytes": len(data), "seconds": round(seconds, 3), "outcome": outcome}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    results = [measure(name, data) for name, data in {**attacks(), **honest(20_000)}.items()]
    for result in results:
        print(f"{result['case']:28} {result['bytes']:>10,} bytes {result['seconds']:8.3f} s  {result['outcome']}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak memory of the process (building the files included): {peak} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": results, "peak_mb": peak}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
