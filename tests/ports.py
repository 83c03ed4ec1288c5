"""Loopback ports for the tests' brokers, web servers and virtual cards, one range per pytest-xdist worker.

Asking the kernel for port 0 and releasing it races between parallel workers: two of them can be handed
the same port before either one's broker binds it. So each worker (``PYTEST_XDIST_WORKER`` = gw0, gw1...)
hands out ports from a range of its own, below the kernel's ephemeral range (where the client side of
every connection gets its port), and still checks that a port is free for TCP and UDP before handing it
out (another program, or another run of the suite on the same machine, may hold it), and passes over
ports that have a name in /etc/services (see has_service_name). Each process starts
at its own place in its range, so two runs of the suite at the same time rarely meet either.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket

#: Ports per worker: a worker starts a few brokers, web servers and cards per test, and a port comes round
#: again only after the range's others have been handed out (long after its test ended).
SPAN = 400
LOWEST = 10000
_FALLBACK_EPHEMERAL = (32768, 60999)


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports nobody asked for by number (Linux: ip_local_port_range)."""
    try:
        low, high = (int(n) for n in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL
    return low, high


def worker_number(worker: str | None = None) -> int:
    """0 for gw0 and for a run without xdist, n for gwn."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def worker_range(number: int, ephemeral: tuple[int, int] | None = None) -> range:
    """The worker's ports: below the ephemeral range if it leaves room, else above it; workers beyond the
    room share ranges round-robin (the check that a port is free still keeps them apart)."""
    low, high = ephemeral or ephemeral_range()
    if low - LOWEST >= 2 * SPAN:
        start, slots = LOWEST, (low - LOWEST) // SPAN
    else:
        start, slots = high + 1, max(1, (65536 - high - 1) // SPAN)
    first = start + (number % slots) * SPAN
    return range(first, min(first + SPAN, 65536))


def has_service_name(port: int) -> bool:
    """The port has a name in /etc/services. nfcpy's udp driver (the virtual cards and the gate's reader
    in the tests) turns its port into that name with getnameinfo and then fails to read it as a number
    (10080 is "amanda"), so such ports are never handed out."""
    for protocol in ("tcp", "udp"):
        try:
            socket.getservbyport(port, protocol)
        except OSError:
            continue
        return True
    return False


def is_free(port: int) -> bool:
    """Nothing holds the port on 127.0.0.1, neither for TCP nor for UDP (a port handed out serves either)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                    return False
                raise
    return True


class PortPool:
    """Hands out the free ports of one range in turn, from a starting point of this process's own."""

    def __init__(self, ports: range, start: int | None = None):
        self.ports = ports
        offset = (os.getpid() * 7919 if start is None else start) % len(ports)
        self._order = itertools.cycle([*ports[offset:], *ports[:offset]])

    def take(self) -> int:
        for _ in range(len(self.ports)):
            port = next(self._order)
            if not has_service_name(port) and is_free(port):
                return port
        raise RuntimeError(f"no free port in {self.ports.start}..{self.ports.stop - 1}")


_pool: PortPool | None = None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of this worker's range that is free now (for a broker, a web server or a udp virtual card;
    ``kind`` is accepted for the callers of collector.deploy.mosquitto.free_port: every port is checked for both)."""
    global _pool
    if _pool is None:
        _pool = PortPool(worker_range(worker_number()))
    return _pool.take()
