"""Live streams of a real `collector serve` under a rush of concurrent connections: caps per token and in
all that no race can pass, a reserve that keeps the bank's own token in, and slots that come back."""

from __future__ import annotations

import http.client
import secrets
import threading
from types import SimpleNamespace
from urllib.parse import urlsplit

import anyio
import pytest

from tests.helpers import CollectorSetup, start_web, stop_process, wait_for

SITE1_A = "kq3V0c2m4r7yJ0bWQ1hO9tXx"
SITE1_B = "Vt2pQ9sLm4Xc7RwZ1aH8eNbK"
SITE2 = "p8Zt7Yc1eN5uLr2sD6gA0wFk"
BANK = "Jd6Hs1Qw9Ty3Ur5Io7Pa2SfG"
BANK2 = "Xm4Nb8Vc2Lk6Jh0Gf3Dq7Wz"
TOKENS = {SITE1_A: "S1", SITE1_B: "S1", SITE2: "S2", BANK: "*", BANK2: "*"}


class Streams:
    """Live-stream connections to one server; those answered 200 are held open until closed."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.open: list[http.client.HTTPConnection] = []

    def rush(self, requests: list[tuple[str, str]]) -> list[int]:
        """Send every (site, token) request at the same instant, each on its own connection; the status
        of each, in order."""
        connections = [http.client.HTTPConnection(self.host, self.port, timeout=30) for _ in requests]
        for connection in connections:
            connection.connect()
        barrier = threading.Barrier(len(requests))
        statuses: list[int | None] = [None] * len(requests)

        def one(index: int) -> None:
            site, token = requests[index]
            barrier.wait()
            connections[index].request("GET", f"/api/sites/{site}/live", headers={"Authorization": f"Bearer {token}"})
            response = connections[index].getresponse()
            statuses[index] = response.status
            if response.status == 200:
                assert response.readline() == b"retry: 3000\n"
            else:
                response.read()
                connections[index].close()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.open += [c for c, status in zip(connections, statuses, strict=True) if status == 200]
        assert None not in statuses
        return statuses

    def one(self, site: str, token: str) -> int:
        return self.rush([(site, token)])[0]

    def close(self) -> None:
        for connection in self.open:
            connection.close()
        self.open = []


@pytest.fixture
def serve(tmp_path):
    def start(tokens=TOKENS, **web):
        setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                      **{"web": web, "web.tokens": tokens})
        with setup.store() as store:
            for site in ("S1", "S2"):
                store.add_site(site, timezone="UTC")
        process, base = start_web(setup)
        started.append((process, Streams(base)))
        return started[-1][1]

    started: list = []
    yield start
    for process, streams in started:
        streams.close()
        stop_process(process)


def count(statuses: list[int]) -> tuple[int, int]:
    assert set(statuses) <= {200, 503}, statuses
    return statuses.count(200), statuses.count(503)


def test_a_rush_of_streams_gets_exactly_the_caps_and_the_bank_always_gets_in(serve):
    streams = serve(live_streams=6, live_streams_per_token=2)
    rush = [(site, token) for _ in range(10) for site, token in
            (("S1", SITE1_A), ("S1", SITE1_B), ("S2", SITE2), ("S2", BANK))]
    statuses = streams.rush(rush)
    by_token = {token: count([s for (_, t), s in zip(rush, statuses, strict=True) if t == token])
                for token in (SITE1_A, SITE1_B, SITE2, BANK)}
    # Site tokens together keep one token's share (2) free for bank tokens: 4 of 6; 2 per token at most.
    assert sum(by_token[t][0] for t in (SITE1_A, SITE1_B, SITE2)) == 4
    assert all(by_token[t][0] <= 2 for t in (SITE1_A, SITE1_B, SITE2))
    assert by_token[BANK] == (2, 8)
    assert count(statuses) == (6, 34)
    # Full: another site token, another bank token, a token at its own cap all wait.
    assert streams.one("S2", SITE2) == streams.one("S1", BANK2) == streams.one("S1", BANK) == 503

    # Clients gone: every slot comes back (the server notices a closed connection by itself).
    streams.close()
    house = [("S1", SITE1_A)] * 2 + [("S1", SITE1_B)] * 2 + [("S2", BANK)] * 2

    def all_free() -> bool:
        full = count(streams.rush(house)) == (6, 0)
        streams.close()
        return full

    wait_for(all_free, timeout=30, interval=0.5, message="every slot back after the clients left")


def test_one_site_token_cannot_lock_the_bank_out_at_the_default_caps(serve):
    streams = serve()
    assert count(streams.rush([("S1", SITE1_A)] * 20)) == (8, 12)  # 8 per token by default
    assert count(streams.rush([("S1", SITE1_B)] * 20)) == (8, 12)
    assert streams.one("S1", BANK) == 200


def test_a_rush_beyond_the_total_gets_exactly_the_total(serve):
    banks = [secrets.token_urlsafe(18) for _ in range(10)]
    streams = serve(tokens={token: "*" for token in banks})
    # 90 at once, 9 per token: 8 per token would be 80, the total of 64 stops them first.
    assert count(streams.rush([("S1", token) for _ in range(9) for token in banks])) == (64, 26)


def test_a_stream_that_fails_gives_its_slot_back():
    from collector.web.app import ApiError, StreamSlots, _SlotResponse

    slots = StreamSlots(total=2, per_token=1)

    async def failing():
        yield "retry: 3000\n\n"
        raise RuntimeError("the database went away")

    async def main() -> None:
        response = _SlotResponse(failing(), media_type="text/event-stream")
        response.release = slots.take(0, bank=False)
        with pytest.raises(ApiError):
            slots.take(0, bank=False)
        sent = []

        async def receive():
            await anyio.sleep_forever()

        async def send(message):
            sent.append(message)

        with pytest.raises(RuntimeError):
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        assert sent and (slots.held, slots.held_by_sites, dict(slots.by_token)) == (0, 0, {})
        slots.take(0, bank=False)()  # the slot is free again

    anyio.run(main)


def test_the_caps_are_checked_at_start(tmp_path):
    from tests.helpers import cli

    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web": {"live_streams": 4, "live_streams_per_token": 4}, "web.tokens": TOKENS})
    result = cli("collector", "serve", "--config", str(setup.config_path), check=False)
    assert result.returncode == 1 and "web.live_streams_per_token: 4 must be below live_streams (4)" in result.stderr
