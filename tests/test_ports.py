"""The tests' own port ranges: parallel workers never hand out the same port, none of them in the kernel's
ephemeral range, and a port something holds is passed over."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.ports import SPAN, PortPool, has_service_name, is_free, worker_number, worker_range


def test_worker_ids_give_their_numbers():
    assert [worker_number(w) for w in ("gw0", "gw1", "gw17", "", "master")] == [0, 1, 17, 0, 0]


@given(st.tuples(st.integers(1024, 40000), st.integers(0, 24000)).map(lambda t: (t[0], t[0] + t[1])))
def test_the_workers_ranges_are_apart_and_outside_the_ephemeral_range(ephemeral):
    low, high = ephemeral
    ranges = [worker_range(n, ephemeral) for n in range(8)]
    for ports in ranges:
        assert 0 < len(ports) <= SPAN and ports.stop <= 65536
        assert ports.stop <= low or ports.start > high
    slots = len({r.start for r in ranges})
    taken = [port for r in ranges[:slots] for port in r]
    assert len(taken) == len(set(taken))  # as many workers as there is room for never share a port


def test_a_named_port_is_never_handed_out():
    """nfcpy's udp driver reads a port's /etc/services name as its number (and fails): 10080 is amanda's."""
    assert has_service_name(10080) and not has_service_name(10084)
    for port in (10080, 10081):
        with pytest.raises(RuntimeError):
            PortPool(range(port, port + 1)).take()


def test_a_held_port_is_passed_over():
    ports = worker_range(worker_number())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        for port in (port for port in ports if not has_service_name(port)):
            try:
                held.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        held.listen()
        assert not is_free(port)
        with pytest.raises(RuntimeError, match=f"no free port in {port}..{port}"):
            PortPool(range(port, port + 1)).take()
    assert is_free(port) and PortPool(range(port, port + 1)).take() == port
