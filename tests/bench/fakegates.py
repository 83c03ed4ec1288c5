"""Many fake gates in one process: signed, chained punches published the way gates publish them.

Each gate keeps at most ``window`` unacknowledged punches in flight and sends more as the collector's
acks come back (the gate's own rule), so the broker's default queue limits are never the bottleneck and
nothing is dropped; like a gate, one that hears no ack for ``--ack-timeout`` seconds sends its
unacknowledged punches again (counted as ``resent``: the safety net, never the normal path). All punches are signed before ``go``, so signing does not count against ingest.

Run as a subprocess by run.py:  python -m tests.bench.fakegates --port P --site S[,S2...] --gates G ...
(``--gates`` gates on each site: several sites spread the load over the collectors' partitions).
It prints ``ready`` once connected and signed, publishes on a ``go`` line on stdin, and prints one JSON
line of figures when every gate's last punch has been acknowledged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_agent.protocol import (
    GENESIS,
    PUNCH_VERSION,
    Ack,
    GateTopics,
    Punch,
    encode_punch_bodies,
    format_time,
    parse_bank_keys,
    public_key_text,
    sign_punch,
)


def gate_key(seed: str, site: str, gate: str) -> Ed25519PrivateKey:
    """Deterministic keys, so run.py registers the same public keys without talking to this process."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}/{site}/{gate}".encode()).digest())


def gate_names(site: str, gates: int) -> list[str]:
    # Gate ids are unique across sites (a gate's certificate is named after its id alone).
    return [f"{site}-g{number:03d}" for number in range(gates)]


def public_keys(seed: str, site: str, gates: int) -> dict[str, str]:
    return {name: public_key_text(gate_key(seed, site, name).public_key()) for name in gate_names(site, gates)}


def signed_bodies(seed: str, site: str, gate: str, count: int, start: datetime, *,
                  version: int = PUNCH_VERSION) -> list[bytes]:
    """``count`` signed punches of one gate, a thousand cards in turn; ``version`` 2: a gate from before
    card links (its punches carry no ``cprev``)."""
    key = gate_key(seed, site, gate)
    prev, bodies, heads = GENESIS, [], {}
    for seq in range(1, count + 1):
        card = f"BE{seq % 1000:06X}"
        punch = sign_punch(Punch(
            v=version, site=site, gate=gate, seq=seq,
            time=format_time(start + timedelta(milliseconds=500 * seq)), mono_ms=500 * seq, boot="bench",
            synced=True, card=card, tech="iso14443a", reader="udp:bench", dir="in",
            roster="none", prev=prev, key="", sig="", cprev=heads.get(card, GENESIS) if version == 3 else "",
        ), key)
        prev = heads[card] = punch.digest()
        bodies.append(punch.to_json())
    return bodies


class Gate:
    def __init__(self, client: paho.Client, topics: GateTopics, bodies: list[bytes], batch: int, window: int):
        self.client, self.topics, self.bodies = client, topics, bodies
        self.batch, self.window = batch, window
        self.sent = 0  # punches published
        self.acked = 0
        self.progress_at = time.monotonic()  # when the last ack moved ``acked`` on
        self.resent = 0  # punches published again after an ack timeout
        self.lock = threading.Lock()

    def pump(self) -> None:
        with self.lock:
            limit = min(len(self.bodies), self.acked + self.window)
            while self.sent < limit:
                chunk = self.bodies[self.sent:min(limit, self.sent + self.batch)]
                self.client.publish(self.topics.punch, encode_punch_bodies(chunk), qos=1)
                self.sent += len(chunk)

    def resend(self) -> None:
        with self.lock:
            self.resent += self.sent - self.acked
            self.sent = self.acked
            self.progress_at = time.monotonic()
        self.pump()

    def overdue(self, timeout: float) -> bool:
        with self.lock:
            return self.acked < self.sent and time.monotonic() - self.progress_at > timeout

    def on_ack(self, ack: Ack) -> bool:
        with self.lock:
            if ack.seq > self.acked:
                self.acked, self.progress_at = ack.seq, time.monotonic()
        self.pump()
        return self.acked >= len(self.bodies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site", required=True, help="a site, or several separated by commas")
    parser.add_argument("--gates", type=int, default=20, help="per site")
    parser.add_argument("--punches", type=int, required=True, help="per gate")
    parser.add_argument("--batch", type=int, default=1, help="punches per message")
    parser.add_argument("--window", type=int, default=50, help="unacknowledged punches per gate")
    parser.add_argument("--seed", default="bench")
    parser.add_argument("--ack-timeout", type=float, default=30.0,
                        help="seconds without an ack before a gate sends its unacknowledged punches again")
    parser.add_argument("--bank-key", required=True, help="the bank's public key the gates trust (ed25519:...)")
    args = parser.parse_args(argv)

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sites = args.site.split(",")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"fakegates-{sites[0]}-{len(sites)}",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(0)  # no client-side cap: the per-gate windows are the limit
    client.max_queued_messages_set(0)
    gates = {name: Gate(client, GateTopics(site, name),
                        signed_bodies(args.seed, site, name, args.punches, start), args.batch, args.window)
             for site in sites for name in gate_names(site, args.gates)}
    site_of = {name: site for site in sites for name in gate_names(site, args.gates)}
    bank_keys = parse_bank_keys(args.bank_key)
    done = threading.Event()
    remaining = set(gates)
    subscribed = threading.Event()

    def on_message(client, userdata, message) -> None:
        gate = message.topic.split("/")[3]
        if gate not in gates:
            return
        ack = Ack.decode(message.payload, site=site_of[gate], gate=gate, keys=bank_keys)
        if gates[gate].on_ack(ack):
            remaining.discard(gate)
            if not remaining:
                done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    connections = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(f"attendance/v1/{site}/+/ack", 1) for site in sites])
        connections.append(reason_code)
        if len(connections) > 1:  # as a gate does after a reconnect: what is unacknowledged goes again
            for gate in gates.values():
                gate.resend()

    client.on_connect = on_connect
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("fakegates: could not subscribe")
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    for gate in gates.values():
        gate.pump()
        gate.progress_at = started
    # As a gate does: what is not acknowledged within the timeout goes again (the safety net for what a
    # broker or a partition's takeover drops; counted, since it must not be the normal path).
    deadline = started + 600
    while not done.wait(1.0) and time.monotonic() < deadline:
        for gate in gates.values():
            if gate.overdue(args.ack_timeout):
                gate.resend()
    finished = done.is_set()
    elapsed = time.monotonic() - started
    client.loop_stop()
    client.disconnect()
    total = len(gates) * args.punches
    print(json.dumps({"punches": total, "seconds": elapsed, "finished": finished,
                      "acked": sum(g.acked for g in gates.values()),
                      "resent": sum(g.resent for g in gates.values())}), flush=True)


if __name__ == "__main__":
    main()
