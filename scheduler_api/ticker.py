"""Ticker: the loop that calls the scheduler's tick, waiting on a condition until due or woken.

The loop never polls and never sleeps with ``time.sleep``: it waits on a
:class:`threading.Condition` for ``min(next due - now, max_wait_s)``, and
:meth:`Ticker.wake` (a trigger, a calendar change, shutdown) cuts the wait
short. The wait is capped so that wall time is re-read at least once a
minute (a clock jump is noticed by the next tick) and, under systemd, so
that the watchdog ping in ``on_loop`` goes out in time.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .clock import Clock

logger = logging.getLogger(__name__)

#: The longest wait between two ticks, seconds: wall time is re-read at least this often.
MAX_WAIT_S = 60.0
#: After an exception in ``tick`` the loop waits this long, seconds, before it tries again.
ERROR_WAIT_S = 1.0


class Ticker:
    """Calls ``tick(now_mono)`` in a loop until :meth:`stop`.

    ``run`` is for the ticker thread only; :meth:`wake` and :meth:`stop`
    are thread-safe and never block for long. A ``tick`` that raises is
    logged with its traceback and retried after :data:`ERROR_WAIT_S`: a
    bug never ends the loop silently.

    :param clock: the monotonic clock to measure waits with.
    :param on_loop: called after every tick, on the ticker thread (watchdog ping, readiness), or None.
    :param max_wait_s: the longest wait between two ticks, seconds.
    """

    def __init__(
        self, clock: Clock, *, on_loop: Callable[[], None] | None = None, max_wait_s: float = MAX_WAIT_S
    ) -> None:
        self._clock = clock
        self._on_loop = on_loop
        self._max_wait_s = max_wait_s
        self._cond = threading.Condition(threading.Lock())
        self._woken = False
        self._stopping = False

    def run(self, tick: Callable[[float], float | None]) -> None:
        """Loop until :meth:`stop` (ticker thread only).

        :param tick: called with now, monotonic seconds; returns the next
            wake-up, monotonic seconds, or None for none (then the loop waits
            ``max_wait_s``).
        """
        while True:
            try:
                next_mono = tick(self._clock.monotonic())
                if self._on_loop is not None:
                    self._on_loop()
                with self._cond:
                    if self._stopping:
                        return
                    if self._woken:  # woken while ticking: tick again at once
                        self._woken = False
                        continue
                    timeout_s = self._max_wait_s
                    if next_mono is not None:
                        timeout_s = min(timeout_s, max(0.0, next_mono - self._clock.monotonic()))
                    self._cond.wait(timeout_s)
                    self._woken = False
            except Exception:
                logger.exception("ticker error")
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(ERROR_WAIT_S)

    def wake(self) -> None:
        """Make :meth:`run` call ``tick`` again now."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Make :meth:`run` return after the current tick."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
