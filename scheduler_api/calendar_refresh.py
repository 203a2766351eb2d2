"""The calendar refresh policy: when a refresh runs, when the next is filed, how a loaded calendar is taken.

The scheduler owns the one lock: every field here is guarded by it, and the
scheduler files the refreshes in its heap. :meth:`CalendarRefresh.load` and
:meth:`CalendarRefresh.took` do the slow work (the fetch, the log line, the
state update) and are called without that lock.
"""

from __future__ import annotations

import logging
from typing import Callable

from .calendar_parse import parse_calendar
from .calendar_source import CalendarLoadError, CalendarSource
from .race_calendar import Calendar
from .state import CalendarRecord, State

logger = logging.getLogger(__name__)

#: With no calendar at all, a refresh is retried at least this often, seconds.
NO_CALENDAR_RETRY_S = 300.0


class CalendarRefresh:
    """Where the calendar comes from, whether a refresh runs, and when the next is filed.

    One refresh at a time: a refresh asked for while one runs is not
    started beside it: it runs once more right after. A refresh asked for by
    a successful rounds sync starts no sooner than ``min_interval_s``
    (``CALENDAR_MIN_REFRESH_INTERVAL``) after the previous refresh started,
    so 30 s rounds syncs on a race weekend read the calendar at most every
    5 minutes. After a refresh the next one is due ``refresh_interval_s``
    (``CALENDAR_REFRESH_INTERVAL``) later, at most :data:`NO_CALENDAR_RETRY_S`
    later while there is no calendar at all. A failed load keeps the last
    good calendar.

    Fields and :meth:`begin`, :meth:`end`, :meth:`after_rounds`,
    :meth:`next_mono`, :meth:`persisted`: under the scheduler's lock.
    :meth:`load`, :meth:`took`: without it.

    :param source: the calendar source, or None to keep what the state holds.
    :param state: told of every calendar loaded, so it is persisted.
    :param min_interval_s: least time between the start of a refresh and one asked for by a rounds sync, seconds.
    :param refresh_interval_s: time from the end of a refresh to the next, seconds.
    """

    def __init__(self, source: CalendarSource | None, state: State, min_interval_s: float = 0.0,
                 refresh_interval_s: float = 3600.0) -> None:
        self.source = source
        self._state = state
        self.min_interval_s = min_interval_s
        self.refresh_interval_s = refresh_interval_s
        self.started_mono: float | None = None
        self.filed_mono: float | None = None  # the refresh waiting in the heap, if any
        self._busy = False
        self._again = False
        self.stopped = False  # shutting down: no refresh starts any more

    def begin(self) -> bool:
        """The filed refresh is due. :returns: True if it should start now; False if one runs (it then
        runs again after) or the daemon is shutting down."""
        self.filed_mono = None
        if self.stopped:
            return False
        if self._busy:
            self._again = True
            return False
        self._busy = True
        return True

    def end(self) -> bool:
        """:returns: True if another refresh was asked for while this one ran."""
        again, self._busy, self._again = self._again, False, False
        return again

    def after_rounds(self, now_mono: float) -> float | None:
        """A rounds sync succeeded: when to refresh (monotonic seconds), or None when one is filed as early already."""
        due_mono = now_mono
        if self.started_mono is not None:
            due_mono = max(now_mono, self.started_mono + self.min_interval_s)
        if self.filed_mono is not None and self.filed_mono <= due_mono:
            return None
        return due_mono

    def next_mono(self, now_mono: float, again: bool, have_calendar: bool) -> float:
        """When the refresh after the one that just ended is due.

        :param now_mono: the end of the refresh, monotonic seconds.
        :param again: whether another refresh was asked for while it ran (it is then due now).
        :param have_calendar: whether any calendar is in force.
        :returns: monotonic seconds; never later than a refresh a rounds sync filed meanwhile.
        """
        refresh_s = self.refresh_interval_s if have_calendar else min(self.refresh_interval_s, NO_CALENDAR_RETRY_S)
        next_mono = now_mono if again else now_mono + refresh_s
        if self.filed_mono is not None:  # asked for by a rounds sync meanwhile
            next_mono = min(next_mono, self.filed_mono)
        return next_mono

    def persisted(self, body: object) -> Calendar | None:
        """The calendar persisted in the state file, parsed as a fresh load would be (overrides applied).

        :returns: the calendar, or None (with a warning) when the copy is unusable.
        """
        try:
            return parse_calendar(body) if self.source is None else self.source.parse(body)
        except ValueError as exc:
            logger.warning("calendar persisted copy unusable: %s", exc)
            return None

    def load(self, season: int, stopped: Callable[[], bool]) -> tuple[Calendar | None, object]:
        """Fetch the calendar of ``season``; a failure is logged (at debug once shutting down) and kept from the caller.

        :param stopped: whether the daemon is shutting down (takes the scheduler's lock).
        :returns: ``(calendar, body)``, or ``(None, None)`` when there is no source or the load failed.
        """
        if self.source is None:
            return None, None
        try:
            return self.source.load(season)
        except CalendarLoadError as exc:
            logger.log(logging.DEBUG if stopped() else logging.WARNING,
                       "calendar refresh failed reason=%s; keeping the last good calendar", exc)
            return None, None

    def took(self, calendar: Calendar, body: object, changed: bool, season: int, now_ts: float, quiet: bool) -> None:
        """Log a loaded calendar (at debug when ``quiet``: shutting down) and persist it if it ``changed``.

        :param season: the season it was loaded for.
        :param now_ts: when the refresh started, UTC unix seconds.
        """
        if self.source is None:
            return
        described = self.source.describe(season)
        logger.log(
            logging.DEBUG if quiet else logging.INFO,
            "calendar refreshed season=%s rounds=%d source=%s changed=%s", calendar.season,
            len(calendar.rounds), described, "yes" if changed else "no",
        )
        if changed:
            self._state.set_calendar(CalendarRecord(body, described, int(now_ts)))
            self._state.save_soon()
