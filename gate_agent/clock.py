"""What the gate knows about time: wall clock, monotonic clock, boot id, and whether NTP has synced.

A Raspberry Pi has no real-time clock: after a power cut it boots with a stale wall clock until NTP
answers. Every punch therefore carries the monotonic clock and boot id as well, and says honestly
whether the wall clock was synchronised; the collector flags, it never rewrites.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
import uuid
from datetime import UTC, datetime

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised
_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only the return value of adjtimex is read, but the kernel writes
    # the whole structure, so it must be full size (the trailing padding is part of the ABI).
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


class SystemClock:
    """The real clocks of this machine."""

    def __init__(self) -> None:
        self._libc = None
        name = ctypes.util.find_library("c")
        if name:
            try:
                self._libc = ctypes.CDLL(name, use_errno=True)
            except OSError:  # pragma: no cover - every Linux has a libc
                self._libc = None
        self.boot_id = _read_boot_id()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic_ms(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000

    def synchronised(self) -> bool:
        """The kernel's own NTP status (what timedatectl shows), or timesyncd's flag file."""
        if self._libc is not None:
            timex = _Timex()
            if self._libc.adjtimex(ctypes.byref(timex)) not in (-1, _TIME_ERROR):
                return True
        return os.path.exists(_TIMESYNCD_FLAG)


def _read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        # Without a kernel boot id the monotonic clock cannot be compared across processes;
        # a fresh id per process start says exactly that to the collector.
        fallback = f"proc-{uuid.uuid4()}"
        log.warning("no /proc/sys/kernel/random/boot_id; using %s", fallback)
        return fallback
