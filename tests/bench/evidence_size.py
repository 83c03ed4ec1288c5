"""What one worker's year of evidence costs on a busy gate: the file's bytes and its build time.

    PYTHONPATH=. python -m tests.bench.evidence_size [--workers 300] [--every 5] [--protocol 3]

One gate, ``--workers`` workers each working one day in ``--every`` (IN at 07:00 + a few minutes, OUT at
17:00 + a few, site time) through 2026: punches signed as a gate of ``--protocol`` signs them (1: one chain
of the gate; 3: each card's punches chained too), ingested in batches as a gate sends a backlog, then the
first worker's evidence for the year built and signed. Prints one JSON line: punches held, file bytes,
punches in the file, build seconds, and the file's format. Protocol 1 gives a file whose chain is the
gate's segment between the worker's first and last punch (what format 1 carried for every gate); protocol
3 the worker's card chain. Run with an older checkout on PYTHONPATH to measure its format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence.document import build_evidence
from collector.evidence.signer import document_bytes
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.protocol import (
    GENESIS,
    GateTopics,
    Punch,
    encode_punch_bodies,
    format_time,
    public_key_text,
    sign_punch,
)


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"evidence-size/{name}".encode()).digest())


def taps(workers: int, every: int) -> list[tuple[datetime, str, str]]:
    """(time, card, direction) of every tap of 2026, in time order."""
    found = []
    day = date(2026, 1, 1)
    while day.year == 2026:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=8)  # 00:00 in UTC+8
        for worker in range(workers):
            if (worker + day.toordinal()) % every == 0:
                card = f"04{worker:012X}"
                found.append((start + timedelta(hours=7, seconds=7 * worker), card, "in"))
                found.append((start + timedelta(hours=17, seconds=11 * worker), card, "out"))
        day += timedelta(days=1)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--every", type=int, default=5, help="each worker works one day in EVERY")
    parser.add_argument("--protocol", type=int, choices=(1, 3), default=3)
    options = parser.parse_args()
    bank, gate = key("bank"), key("gate")
    folder = Path(tempfile.mkdtemp(prefix="evidence-size-"))
    clock = [datetime(2025, 12, 1, tzinfo=UTC)]
    with Store(folder / "bank.sqlite3", clock=lambda: clock[0]) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "main", public_key_text(gate.public_key()))
        for worker in range(options.workers):
            store.add_worker(f"W{worker:04d}", name=f"工人{worker}", employer="建安劳务", cards=[f"04{worker:012X}"],
                             sites=["S1"])
        prev, heads, bodies = GENESIS, {}, []
        for seq, (moment, card, direction) in enumerate(taps(options.workers, options.every), start=1):
            linked = {"cprev": heads.get(card, GENESIS)} if options.protocol == 3 else {}
            punch = sign_punch(Punch(v=options.protocol, site="S1", gate="main", seq=seq, time=format_time(moment),
                                     mono_ms=seq * 1000, boot="bench", synced=True, card=card, tech="iso14443a",
                                     reader="usb:072f:2200", dir=direction, roster="known", prev=prev, key="",
                                     sig="", **linked), gate)
            prev = punch.digest()
            heads[card] = prev
            bodies.append((punch.to_json(), format_time(moment + timedelta(seconds=2))))
        ingestor = Ingestor(store)
        for first in range(0, len(bodies), 500):
            chunk = bodies[first:first + 500]
            ingestor.ingest([Incoming(GateTopics("S1", "main").punch, encode_punch_bodies([b for b, _ in chunk]),
                                      chunk[-1][1])])
        clock[0] = datetime(2027, 1, 10, tzinfo=UTC)
        started = time.monotonic()
        document = build_evidence(store, "W0000", date(2026, 1, 1), date(2026, 12, 31), key=bank, now=clock[0])
        seconds = time.monotonic() - started
        text = document_bytes(document)
    chains = [c for g in document["gates"] for c in g.get("chains", [g])]
    print(json.dumps({"workers": options.workers, "protocol": options.protocol, "punches_held": len(bodies),
                      "format": document["version"], "file_bytes": len(text.encode()),
                      "punches_in_file": sum(len(c["punches"]) for c in chains), "days": len(document["days"]),
                      "build_seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
