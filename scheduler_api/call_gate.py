"""The concurrency bound on fetcher calls: places handed out in arrival order, scheduled syncs first."""

from __future__ import annotations

import collections
import threading


#: At most this many manual triggers wait for a place at once; one more is refused (429).
MAX_WAITING_TRIGGERS = 32
#: The ``Retry-After`` a refused manual trigger is told, seconds.
BUSY_RETRY_AFTER_S = 5


class Busy(Exception):
    """A manual trigger found every place for a fetcher call taken and too many triggers waiting.

    Nothing was called; the api answers 429 with ``Retry-After``.

    :param retry_after_s: when to try again, seconds.
    """

    def __init__(self, retry_after_s: int = BUSY_RETRY_AFTER_S) -> None:
        super().__init__(f"fetcher_service is busy: try again in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class Ticket:
    """One place for a fetcher call, granted now or later by a :class:`CallGate`. Thread-safe."""

    __slots__ = ("_granted",)

    def __init__(self) -> None:
        self._granted = threading.Lock()
        self._granted.acquire()

    def grant(self) -> None:
        """Let the holder call (once)."""
        self._granted.release()

    def wait(self) -> None:
        """Block until the place is granted."""
        with self._granted:
            pass


class CallGate:
    """The concurrency bound: at most ``limit`` fetcher calls in flight, scheduled and manual together.

    A call that finds every place taken waits for one. Waiting scheduled
    syncs go first, in arrival order: there are at most four of them (one
    per kind), and a flood of manual triggers must not push a kind's slot
    back. Manual triggers then wait in arrival order, at most
    ``max_waiting`` of them; one more is refused with :class:`Busy` and
    calls nothing. A scheduled sync is never refused and never skipped
    because of the bound. Health probes and calendar GETs do not pass the
    gate (they are not fetcher syncs, and a probe must answer while syncs
    are busy). A freed place is handed straight to the first waiter.

    All methods are thread-safe; only :meth:`Ticket.wait` blocks.

    :param limit: ``FETCHER_MAX_CONCURRENCY`` (>= 1).
    :param max_waiting: how many manual triggers may wait.
    """

    def __init__(self, limit: int, max_waiting: int = MAX_WAITING_TRIGGERS) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._max_waiting = max_waiting
        self._busy = 0
        self._scheduled: collections.deque[Ticket] = collections.deque()
        self._manual: collections.deque[Ticket] = collections.deque()

    def ticket(self, manual: bool) -> Ticket:
        """Take a place, or a place in the queue; never blocks.

        :param manual: True for a manual trigger, False for a scheduled sync.
        :returns: a ticket to :meth:`Ticket.wait` on, then :meth:`release` after the call.
        :raises Busy: for a manual trigger when ``max_waiting`` triggers wait already.
        """
        ticket = Ticket()
        with self._lock:
            if self._busy < self._limit:
                self._busy += 1
                ticket.grant()
            elif not manual:
                self._scheduled.append(ticket)
            elif len(self._manual) < self._max_waiting:
                self._manual.append(ticket)
            else:
                raise Busy()
        return ticket

    def release(self) -> None:
        """Give a place back after a call: to the first waiter, if any."""
        with self._lock:
            queue = self._scheduled or self._manual
            if queue:
                queue.popleft().grant()
            else:
                self._busy -= 1

    def counts(self) -> tuple[int, int]:
        """:returns: ``(calls in flight, triggers and syncs waiting)``."""
        with self._lock:
            return self._busy, len(self._scheduled) + len(self._manual)
