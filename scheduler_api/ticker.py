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
from typing import Callable, NamedTuple

from .clock import Clock

logger = logging.getLogger(__name__)

#: The longest wait between two ticks, seconds: wall time is re-read at least this often.
MAX_WAIT_S = 60.0
#: After an exception in ``tick`` the loop waits this long, seconds, doubling with each one in a row ...
ERROR_WAIT_S = 1.0
#: ... up to this, seconds.
MAX_ERROR_WAIT_S = 60.0
#: This many exceptions in a row make the ticker unhealthy.
UNHEALTHY_ERRORS = 3
#: A loop that has not come round for longer than this, seconds, is wedged (it wakes at least once a minute).
WEDGED_AFTER_S = 150.0
#: With a ``near`` callback, the loop wakes this long before a wake-up further away, seconds, to say it is near.
NEAR_S = 0.2


def error_wait_s(consecutive_errors: int, first_s: float = ERROR_WAIT_S) -> float:
    """:returns: how long the loop waits after the ``consecutive_errors``-th exception in a row, seconds:
    1 s, 2 s, 4 s ... (from ``first_s``) up to 60 s, so a tick that raises every time never spins."""
    return min(MAX_ERROR_WAIT_S, first_s * 2.0 ** (max(1, consecutive_errors) - 1))


class TickerHealth(NamedTuple):
    """What ``/health`` needs to know about the ticker.

    :ivar running: the loop runs (started and not returned).
    :ivar consecutive_errors: exceptions from ``tick`` in a row (0 after a tick that returned).
    :ivar last_loop_mono: when the loop last came round (before each tick), monotonic seconds, or None.
    :ivar since_loop_s: seconds since then (0.0 before the first loop).
    """

    running: bool
    consecutive_errors: int
    last_loop_mono: float | None
    since_loop_s: float

    @property
    def ok(self) -> bool:
        """:returns: False when the ticker is dead, raised :data:`UNHEALTHY_ERRORS` times in a row,
        or has not come round for more than :data:`WEDGED_AFTER_S` (``/health`` then says unhealthy)."""
        return (self.running and self.consecutive_errors < UNHEALTHY_ERRORS
                and self.since_loop_s <= WEDGED_AFTER_S)


class Ticker:
    """Calls ``tick(now_mono)`` in a loop until :meth:`stop`.

    ``run`` is for the ticker thread only; :meth:`wake`, :meth:`stop` and
    :meth:`health` are thread-safe and never block for long. A ``tick``
    that raises is logged with its traceback and tried again after 1 s,
    2 s, 4 s ... up to 60 s (:func:`error_wait_s`; a wake-up does not cut
    that wait short, only :meth:`stop` does): a bug never ends the loop
    silently, and never makes it spin. :meth:`health` says how it fares.

    :param clock: the monotonic clock to measure waits with.
    :param on_loop: called after every tick, on the ticker thread (watchdog ping, readiness), or None.
    :param max_wait_s: the longest wait between two ticks, seconds.
    :param first_error_wait_s: the wait after a first exception, seconds (doubling up to 60 s).
    :param near: called after every tick with whether the next wake-up is at most :data:`NEAR_S`
        away (the loop first wakes that long before a wake-up further away, so each one is
        announced), or None. The daemon shortens the switch interval then.
    """

    def __init__(
        self, clock: Clock, *, on_loop: Callable[[], None] | None = None, max_wait_s: float = MAX_WAIT_S,
        first_error_wait_s: float = ERROR_WAIT_S, near: Callable[[bool], None] | None = None,
    ) -> None:
        self._clock = clock
        self._near = near
        self._on_loop = on_loop
        self._max_wait_s = max_wait_s
        self._first_error_wait_s = first_error_wait_s
        self._cond = threading.Condition(threading.Lock())
        self._woken = False
        self._stopping = False
        self._running = False
        self._errors = 0
        self._last_loop_mono: float | None = None

    def health(self, now_mono: float) -> TickerHealth:
        """:param now_mono: now, monotonic seconds.
        :returns: whether the loop runs, its exceptions in a row, and when it last came round."""
        with self._cond:
            last = self._last_loop_mono
            since_s = 0.0 if last is None else max(0.0, now_mono - last)
            return TickerHealth(self._running, self._errors, last, since_s)

    def run(self, tick: Callable[[float], float | None]) -> None:
        """Loop until :meth:`stop` (ticker thread only).

        :param tick: called with now, monotonic seconds; returns the next
            wake-up, monotonic seconds, or None for none (then the loop waits
            ``max_wait_s``).
        """
        with self._cond:
            self._running = True
        try:
            self._loop(tick)
        finally:
            with self._cond:
                self._running = False

    def _loop(self, tick: Callable[[float], float | None]) -> None:
        while True:
            try:
                now_mono = self._clock.monotonic()
                with self._cond:
                    self._last_loop_mono = now_mono
                next_mono = tick(now_mono)
                with self._cond:
                    self._errors = 0
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
                    if self._near is not None:
                        near = next_mono is not None and timeout_s <= NEAR_S
                        self._near(near)
                        if next_mono is not None and not near:
                            timeout_s -= NEAR_S  # wake that early to say it is near
                    self._cond.wait(timeout_s)
                    self._woken = False
            except Exception:
                logger.exception("ticker error")
                if self._wait_after_error():
                    return

    def _wait_after_error(self) -> bool:
        """Wait out the backoff after an exception; :returns: True if stopped meanwhile."""
        with self._cond:
            self._errors += 1
            wait_s = error_wait_s(self._errors, self._first_error_wait_s)
            end_mono = self._clock.monotonic() + wait_s
            while not self._stopping:
                left_s = min(wait_s, end_mono - self._clock.monotonic())
                if left_s <= 0 or not self._cond.wait(left_s):  # a wake-up only re-checks the time left
                    break
            self._woken = False
            return self._stopping

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
