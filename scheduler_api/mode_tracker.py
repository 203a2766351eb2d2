"""The current mode of a calendar, re-evaluated only when a window boundary passes.

:class:`ModeTracker` caches the mode between two window edges of
:mod:`scheduler_api.race_calendar`, and an index of each round's reach
(:class:`_RoundIndex`) keeps an evaluation at a boundary to the few rounds
that can hold the instant, so its cost does not grow with the calendar
(see README, What it does). Every timestamp is UTC unix seconds.
"""

from __future__ import annotations

import bisect
import logging
import math

from .race_calendar import (
    Calendar, Mode, Round, Windows, first_after, live_flag_window, live_window, live_window_starts, mode_at,
    mode_ident, settle_window, weekend_window, window_edges,
)

logger = logging.getLogger(__name__)


def _reach(round_: Round, windows: Windows) -> tuple[float, float]:
    """:returns: ``[start, end)`` covering every window of ``round_`` (weekend, live, ``is_live`` span,
    settle), UTC unix seconds: outside it the round cannot affect the mode."""
    spans = [weekend_window(round_, windows)]
    for session in round_.sessions:
        spans.append(live_flag_window(session, windows) if session.is_live else live_window(session, windows))
        spans.append(settle_window(session, windows))
    return min(start for start, _ in spans), max(end for _, end in spans)


class _RoundIndex:
    """The rounds whose windows may hold an instant, found in O(log n + k) instead of a scan.

    Rounds are sorted by the start of their reach (:func:`_reach`); with the
    running maximum of the reaches' ends, a bisect finds the last round that
    may have begun and a walk back stops at the first point before which every
    reach has ended. ``k`` is the number of rounds walked over: the few whose
    reaches overlap the instant's neighbourhood.
    """

    def __init__(self, calendar: Calendar | None, windows: Windows) -> None:
        self._calendar = calendar
        rounds = () if calendar is None else calendar.rounds
        reaches = sorted((_reach(r, windows), position) for position, r in enumerate(rounds))
        self._starts = [start for (start, _), _ in reaches]
        self._ends = [end for (_, end), _ in reaches]
        self._positions = [position for _, position in reaches]
        self._ends_so_far: list[float] = []
        for end in self._ends:
            self._ends_so_far.append(max(end, self._ends_so_far[-1]) if self._ends_so_far else end)
        self.flagged = [s for r in rounds for s in r.sessions if s.is_live]

    def around(self, now_ts: float) -> Calendar | None:
        """:returns: the calendar cut to the rounds whose reach holds ``now_ts``, in calendar order
        (so :func:`mode_at` over it gives the whole calendar's answer), or None without a calendar."""
        if self._calendar is None:
            return None
        index = bisect.bisect_right(self._starts, now_ts) - 1
        positions = []
        while index >= 0 and self._ends_so_far[index] > now_ts:
            if self._ends[index] > now_ts:
                positions.append(self._positions[index])
            index -= 1
        rounds = self._calendar.rounds
        return Calendar(self._calendar.season, tuple(rounds[p] for p in sorted(positions)),
                        self._calendar.overrides_in_force)



class ModeTracker:
    """The current mode and the next window boundary, recomputed only when a boundary passes.

    The mode is constant between two consecutive window edges (live, settle,
    weekend and ``is_live`` span edges), so :meth:`update` evaluates the mode
    only when ``now_ts`` leaves the span between the edges around the last
    evaluation; otherwise it costs O(1). An evaluation looks only at the
    rounds whose windows may hold the instant (:class:`_RoundIndex`), and the
    boundary queries bisect the sorted edges: O(log n) each, so a tick at a
    boundary costs about the same with 24 rounds as with 2,400. The edges
    and the index are built once per calendar. The wall clock may step backward: any instant outside the
    cached span is simply evaluated afresh. An ``is_live`` flag found
    outside its span is warned about once per session (naming the round
    and session), not at every evaluation.

    Not thread-safe: the scheduler calls it under its lock.

    :param calendar: the calendar, or None (off_season, no boundaries).
    :param windows: window margins.
    :param now_ts: the instant of the first evaluation, UTC unix seconds.
    """

    def __init__(self, calendar: Calendar | None, windows: Windows, now_ts: float) -> None:
        self.windows = windows
        self._calendar = calendar
        self._edges = window_edges(calendar, windows)
        self._live_starts = live_window_starts(calendar, windows)
        self._index = _RoundIndex(calendar, windows)
        self._span = (math.inf, -math.inf)  # [from, until) in which ``mode`` holds; empty: evaluate
        self._warned: set[tuple[int, int, str, int]] = set()  # is_live flags already warned about
        self.mode = self._evaluate(now_ts)

    @property
    def calendar(self) -> Calendar | None:
        """:returns: the calendar in use, or None."""
        return self._calendar

    def set_calendar(self, calendar: Calendar | None) -> None:
        """Use ``calendar`` from now on; :attr:`mode` keeps its value until the next :meth:`update`."""
        self._calendar = calendar
        self._edges = window_edges(calendar, self.windows)
        self._live_starts = live_window_starts(calendar, self.windows)
        self._index = _RoundIndex(calendar, self.windows)
        self._span = (math.inf, -math.inf)

    def update(self, now_ts: float) -> Mode | None:
        """Re-evaluate the mode at ``now_ts``.

        :param now_ts: UTC unix seconds.
        :returns: the previous mode if the mode changed (by :func:`mode_ident`), else None.
        """
        if self._span[0] <= now_ts < self._span[1]:
            return None
        previous = self.mode
        self.mode = self._evaluate(now_ts)
        return previous if mode_ident(self.mode) != mode_ident(previous) else None

    def next_change_ts(self, now_ts: float) -> int | None:
        """:returns: as :func:`next_mode_change` for the tracked calendar, UTC unix seconds, or None."""
        if self._span[0] <= now_ts < self._span[1]:
            return None if self._span[1] == math.inf else math.ceil(self._span[1])
        return first_after(self._edges, now_ts)

    def next_live_start_ts(self, now_ts: float) -> int | None:
        """:returns: as :func:`next_live_window_start` for the tracked calendar, UTC unix seconds, or None."""
        return first_after(self._live_starts, now_ts)

    def _evaluate(self, now_ts: float) -> Mode:
        index = bisect.bisect_right(self._edges, now_ts)
        start = self._edges[index - 1] if index > 0 else -math.inf
        end = self._edges[index] if index < len(self._edges) else math.inf
        self._span = (start, end)
        for session in self._index.flagged:
            start, end = live_flag_window(session, self.windows)
            if start <= now_ts < end:
                continue
            ident = (session.season, session.round, session.name, session.start_ts)
            if ident not in self._warned:
                self._warned.add(ident)
                logger.warning("calendar is_live flag ignored season=%d round=%d session=%s: outside its "
                               "session's live window + 3h", session.season, session.round, session.name)
        return mode_at(self._index.around(now_ts), now_ts, self.windows)
