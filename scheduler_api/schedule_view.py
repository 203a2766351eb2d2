"""The schedule as readers see it (``/status``, ``plan``, the status line), built from the scheduler's timetable."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .fetcher import SyncKey
from .mode_tracker import ModeTracker
from .state import ScheduleView
from .timetable import KindTimetable


def schedule_view(
    kinds: Mapping[str, KindTimetable], modes: ModeTracker, in_flight: Iterable[SyncKey], season: int,
    is_off: Callable[[str], bool], now_mono: float, now_ts: float,
) -> ScheduleView:
    """The schedule at ``now``, with due times turned from the monotonic clock into wall time.

    A kind's next sync is its filed due time; a paused ``results`` kind
    (not turned off) shows the start of the next live window instead.
    Called once per tick and per attempt under the scheduler's lock, so
    kept lean: no calendar scan beyond the tracker's cached boundaries, no I/O.

    :param kinds: each kind's timetable, in report order.
    :param modes: the current mode and calendar.
    :param in_flight: the keys whose sync runs now.
    :param season: the season scheduled syncs use.
    :param is_off: whether a kind is turned off (``FETCH_PATH_<KIND>=off``).
    :param now_mono: now, monotonic seconds.
    :param now_ts: now, UTC unix seconds.
    :returns: the frozen view; next due times in UTC unix seconds, int.
    """
    next_syncs: dict[str, int | None] = {}
    intervals_s: dict[str, float | None] = {}
    for kind, kt in kinds.items():
        intervals_s[kind] = kt.interval_s
        if kt.due_mono is not None:
            next_syncs[kind] = int(round(now_ts + (kt.due_mono - now_mono)))
        elif kind == "results" and not is_off(kind):
            next_syncs[kind] = modes.next_live_start_ts(now_ts)
        else:
            next_syncs[kind] = None
    mode, calendar = modes.mode, modes.calendar
    return ScheduleView(
        next_syncs=next_syncs,
        intervals_s=intervals_s,
        mode=mode.name,
        mode_round=mode.race_round.round if mode.race_round else None,
        live_session=mode.live.name if mode.live else None,
        settling_session=mode.settling.name if mode.settling else None,
        next_mode_change_ts=modes.next_change_ts(now_ts),
        season=season,
        in_flight=tuple(sorted(map(flight_label, in_flight))),
        calendar_loaded=calendar is not None,
        calendar_rounds=len(calendar.rounds) if calendar else 0,
        overrides_in_force=calendar.overrides_in_force if calendar else 0,
    )


def flight_label(key: SyncKey) -> str:
    """:returns: ``kind[:season[:round]]``, how ``/status`` names a sync in flight."""
    return ":".join(str(p) for p in (key.kind, key.season, key.round) if p is not None)
