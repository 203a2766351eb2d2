"""Clock protocol: the monotonic clock for scheduling and the UTC wall clock for reporting."""

from __future__ import annotations

import datetime
import time
from typing import Protocol


class Clock(Protocol):
    """The two clocks every component takes as an argument; never mixed.

    ``monotonic()`` drives due times, waits, timeouts and backoff; it never
    jumps but does not advance while the machine is suspended.
    ``now_ts()`` is UTC wall time, used for everything reported, persisted or
    logged; it may step forward or backward.
    """

    def monotonic(self) -> float:
        """:returns: monotonic seconds, float."""
        ...

    def now_ts(self) -> float:
        """:returns: UTC unix seconds, float."""
        ...


def utc_year(now_ts: float) -> int:
    """:returns: the UTC calendar year of ``now_ts`` (UTC unix seconds)."""
    return datetime.datetime.fromtimestamp(now_ts, tz=datetime.timezone.utc).year


class SystemClock:
    """The real clocks: :func:`time.monotonic` and :func:`time.time`. Thread-safe."""

    def monotonic(self) -> float:
        """:returns: monotonic seconds, float."""
        return time.monotonic()

    def now_ts(self) -> float:
        """:returns: UTC unix seconds, float."""
        return time.time()
