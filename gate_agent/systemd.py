"""systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING) over $NOTIFY_SOCKET.

A dozen lines of standard library do what a dependency would; outside systemd it does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False when not run by systemd (no socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(assignments).encode(), address)
        except OSError:
            return False
    return True

