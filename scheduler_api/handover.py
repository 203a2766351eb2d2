"""When due syncs are handed to workers: a lead before their due time, never on another sync's due time.

Plain code on monotonic seconds, no threads, no locks: the scheduler calls
:class:`HandOver` under its own lock (see README, Design).
"""

from __future__ import annotations

from typing import Iterable


#: A hand-over never falls within this long of the due time of a sync handed over before it, seconds.
HANDOVER_GUARD_S = 0.002


class HandOver:
    """When due syncs are handed to workers: a lead before their due time, never on another's due time.

    A due sync is handed to its worker up to the lead early; the worker
    readies the request and waits for the due time itself, so the ticker's
    wake-up and tick are off the path between due time and send. A
    hand-over holds the interpreter for a fraction of a millisecond (the
    tick, the request being built); one falling on the due time of a sync
    handed over before it would delay that send by as much (kinds whose grids
    sit one lead apart do this at every slot). So a hand-over that would
    fall within :data:`HANDOVER_GUARD_S` of such a due time is moved earlier,
    to that long before it, and the ticker then pops syncs due up to the lead
    plus twice the guard ahead. Not thread-safe: the scheduler calls it under
    its lock.

    :param lead_s: the longest lead, seconds (0 for none: syncs are handed
        over on their due time, as in tests and ``plan``).
    """

    def __init__(self, lead_s: float) -> None:
        self.lead_s = lead_s
        self._pending: list[float] = []  # due times of syncs handed over and not yet due, monotonic seconds

    def lead(self, intervals_s: Iterable[float]) -> float:
        """:returns: the lead, seconds: at most a quarter of the shortest interval (so the overlap
        check stays meaningful), 0.0 without a lead."""
        if not self.lead_s:
            return 0.0
        return min([self.lead_s] + [interval_s / 4 for interval_s in intervals_s])

    def horizon_s(self, lead_s: float) -> float:
        """:returns: how far ahead of now a tick pops due syncs, seconds, for ``lead_s`` from :meth:`lead`."""
        return lead_s + 2 * HANDOVER_GUARD_S if lead_s else 0.0

    def handed(self, due_monos: Iterable[float | None], now_mono: float) -> None:
        """Remember the due times of syncs just handed over (those still ahead of ``now_mono``)."""
        if not self.lead_s:
            return
        self._pending = [d for d in self._pending if d > now_mono]
        self._pending.extend(d for d in due_monos if d is not None and d > now_mono)

    def wake_at(self, handover_mono: float, now_mono: float) -> float:
        """:returns: ``handover_mono`` (monotonic seconds), or earlier when it would fall within the
        guard of a pending due time: then the guard before the earliest such due time."""
        pending = [d for d in self._pending if d > now_mono]
        self._pending = pending
        for due_mono in sorted(pending, reverse=True):
            if due_mono - HANDOVER_GUARD_S <= handover_mono <= due_mono + HANDOVER_GUARD_S:
                handover_mono = due_mono - HANDOVER_GUARD_S
        return max(now_mono, handover_mono)
