"""The collector's inbox: bounded in bytes, so a flood of large batches cannot take its memory."""

from __future__ import annotations

import threading
import time

from collector.ingest.daemon import Inbox
from gate_agent.mqtt import Message


def message(size: int, mid: int = 1) -> Message:
    return Message("attendance/v1/S1/north/punch", b"x" * size, 1, False, mid)


def test_paho_waits_while_the_inbox_is_full_and_goes_on_when_ingest_is_done():
    inbox = Inbox(1000, threading.Event())
    inbox.put(message(600, 1), partition=3)
    inbox.put(message(600, 2))  # over the bound now: the next put waits
    third = threading.Thread(target=inbox.put, args=(message(600, 3),))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "a put past the bound should wait"
    taken = inbox.take(10, timeout=0.1)
    assert [a.message.mid for a in taken] == [1, 2]
    assert [a.partition for a in taken] == [3, 0]  # whose session received it, to ack it
    assert third.is_alive(), "taken messages stay counted until ingest is done with them"
    inbox.done(taken)
    third.join(5)
    assert not third.is_alive()
    assert [a.message.mid for a in inbox.take(10, timeout=0.1)] == [3]


def test_take_respects_the_limit_and_the_timeout():
    inbox = Inbox(10**6, threading.Event())
    for mid in range(5):
        inbox.put(message(10, mid))
    assert [a.message.mid for a in inbox.take(3, timeout=0.1)] == [0, 1, 2]
    assert [a.message.mid for a in inbox.take(3, timeout=0.1)] == [3, 4]
    started = time.monotonic()
    assert inbox.take(3, timeout=0.2) == []
    assert time.monotonic() - started >= 0.15


def test_stopping_releases_a_waiting_put():
    stop = threading.Event()
    inbox = Inbox(10, stop)
    inbox.put(message(20))
    waiting = threading.Thread(target=inbox.put, args=(message(20),))
    waiting.start()
    stop.set()
    waiting.join(5)
    assert not waiting.is_alive()


def test_a_burst_is_bounded_in_bytes_so_it_stays_well_inside_a_lease():
    inbox = Inbox(10_000, threading.Event())
    for mid in range(1, 6):
        inbox.put(message(400, mid))
    assert [a.message.mid for a in inbox.take(10, timeout=0.1, max_bytes=1000)] == [1, 2]
    assert [a.message.mid for a in inbox.take(1, timeout=0.1, max_bytes=1000)] == [3]
    # A message larger than the bound on its own is still taken, alone: nothing is ever stuck.
    inbox.put(message(5000, 6))
    assert [a.message.mid for a in inbox.take(10, timeout=0.1, max_bytes=1000)] == [4, 5]
    assert [a.message.mid for a in inbox.take(10, timeout=0.1, max_bytes=1000)] == [6]
