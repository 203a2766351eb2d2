"""Race calendar: the frozen calendar model, then where an instant falls in its windows.

Pure functions on frozen values: no I/O, no HTTP, no clock. Every timestamp
is UTC unix seconds (``int``); callers pass ``now_ts``. Bodies become this
model in :mod:`scheduler_api.calendar_parse`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

SESSION_NAMES: tuple[str, ...] = (
    "practice_1", "practice_2", "practice_3", "sprint_qualifying", "sprint", "qualifying", "race",
)

#: Expected session durations, seconds: practice, qualifying, sprint qualifying and
#: sprint 1h each, the race 3h (the regulations cap a race at three hours).
#: Read-only mapping: the module holds no mutable state.
SESSION_DURATION_S: Mapping[str, int] = MappingProxyType({
    "practice_1": 3600, "practice_2": 3600, "practice_3": 3600,
    "sprint_qualifying": 3600, "sprint": 3600, "qualifying": 3600, "race": 10800,
})

MODE_LIVE = "live_session"
MODE_RACE_WEEKEND = "race_weekend"
MODE_OFF_SEASON = "off_season"
MODE_SETTLING = "results_settling"

#: Sessions whose results keep changing after they end (penalties, disqualifications): they settle.
SETTLING_SESSIONS = frozenset({"qualifying", "sprint_qualifying", "sprint", "race"})
#: A session flagged ``is_live`` counts as live at most this long past its live window, seconds
#: (an allowance for delays and red flags); a stale flag never keeps the daemon live for weeks.
LIVE_FLAG_ALLOWANCE_S = 10800


@dataclass(frozen=True)
class Session:
    """One session of a round.

    ``end_ts`` is the *expected* end: ``start_ts + SESSION_DURATION_S[name]``;
    a session without a time (``has_time`` false) lasts its whole UTC day,
    00:00Z to the next 00:00Z. ``is_live`` comes from the content API and
    makes the session live from its start − ``LIVE_LEAD`` until its expected
    end + ``LIVE_TAIL`` + 3 h, whatever the clock says within that span;
    outside it the flag is ignored (:func:`live_flag_window`).
    """

    season: int
    round: int
    name: str
    start_ts: int
    end_ts: int
    has_time: bool
    is_live: bool = False


@dataclass(frozen=True)
class Round:
    """One event (race weekend); ``sessions`` is sorted by ``start_ts`` and never empty."""

    season: int
    round: int
    race_name: str
    sessions: tuple[Session, ...]

    @property
    def first_start_ts(self) -> int:
        """:returns: earliest session start, UTC unix seconds."""
        return min(s.start_ts for s in self.sessions)

    @property
    def end_ts(self) -> int:
        """:returns: latest expected session end, UTC unix seconds."""
        return max(s.end_ts for s in self.sessions)

    @property
    def race(self) -> Session | None:
        """:returns: the race session, or None if the round has none (e.g. it was cancelled)."""
        return next((s for s in self.sessions if s.name == "race"), None)


@dataclass(frozen=True)
class Calendar:
    """A season's rounds sorted by ``first_start_ts``; ``season`` is None for an empty calendar.

    ``overrides_in_force`` counts the ``CALENDAR_OVERRIDES`` corrections that
    changed this calendar (0 when none did).
    """

    season: int | None
    rounds: tuple[Round, ...]
    overrides_in_force: int = 0


def _session_order(session: Session) -> tuple[int, int]:
    """Sort key: start, then weekend order (untimed sessions of one day share a start)."""
    return session.start_ts, SESSION_NAMES.index(session.name)


@dataclass(frozen=True)
class Windows:
    """Window margins, seconds; the defaults are 12h, 12h, 5m and 30m (see README, Configuration).

    ``settle_window_s`` is ``RESULTS_SETTLE_WINDOW``: how long after a
    qualifying's, sprint qualifying's, sprint's or race's expected end its
    results keep settling (0, the default here, turns settling off).

    :raises ValueError: if a margin is negative or not finite.
    """

    race_weekend_lead_s: float = 43200
    race_weekend_tail_s: float = 43200
    live_lead_s: float = 300
    live_tail_s: float = 1800
    settle_window_s: float = 0

    def __post_init__(self) -> None:
        for field_name, value in vars(self).items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field_name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Mode:
    """Where an instant falls: ``name`` is "live_session", "results_settling", "race_weekend" or "off_season".

    ``race_round`` is the race weekend's round (also set when live; set when
    settling inside a weekend window), ``live`` the live session,
    ``settling`` the session whose results settle.
    """

    name: str
    race_round: Round | None
    live: Session | None
    settling: Session | None = None

    @property
    def is_race_weekend(self) -> bool:
        """:returns: True inside a race weekend (a live session always counts)."""
        return self.race_round is not None


# --------------------------------------------------------------------------- windows


def weekend_window(round_: Round, windows: Windows) -> tuple[float, float]:
    """:returns: the race weekend ``[start, end)``, UTC unix seconds: lead before the first
    session to tail after the race's expected end (the round's end if it has no race)."""
    race = round_.race
    end_ts = race.end_ts if race is not None else round_.end_ts
    return round_.first_start_ts - windows.race_weekend_lead_s, end_ts + windows.race_weekend_tail_s


def live_window(session: Session, windows: Windows) -> tuple[float, float]:
    """:returns: the session's live window ``[start - live lead, expected end + live tail)``, UTC unix seconds."""
    return session.start_ts - windows.live_lead_s, session.end_ts + windows.live_tail_s


def live_flag_window(session: Session, windows: Windows) -> tuple[float, float]:
    """:returns: where an ``is_live`` flag counts, ``[start - live lead, expected end + live tail + 3 h)``,
    UTC unix seconds."""
    return session.start_ts - windows.live_lead_s, session.end_ts + windows.live_tail_s + LIVE_FLAG_ALLOWANCE_S


def settle_window(session: Session, windows: Windows) -> tuple[float, float]:
    """:returns: when the session's results settle, ``[end of its live window, expected end + settle window)``,
    UTC unix seconds; empty (start >= end) when settling is off or the session does not settle."""
    start = session.end_ts + windows.live_tail_s
    if session.name not in SETTLING_SESSIONS or not windows.settle_window_s:
        return start, start
    return start, session.end_ts + windows.settle_window_s


def _is_live(session: Session, now_ts: float, windows: Windows) -> bool:
    if _contains(live_window(session, windows), now_ts):
        return True
    return session.is_live and _contains(live_flag_window(session, windows), now_ts)


def mode_at(calendar: Calendar | None, now_ts: float, windows: Windows) -> Mode:
    """Place an instant in the calendar. Windows are half-open ``[start, end)``.

    A session is live inside its live window, or when flagged ``is_live``
    within :func:`live_flag_window`; if several are live the one that
    started last wins. Otherwise, when a qualifying, sprint qualifying,
    sprint or race ended its live window less than the settle window after
    its expected end, its results settle (live wins over settling; if
    several settle, the one that ended last). Otherwise the instant is a
    race weekend if it lies in a round's weekend window (overlapping
    windows: the round that started last). With no calendar the mode is
    off_season. See README, What it does, for the windows' defaults.

    Scans the whole calendar; :class:`ModeTracker` caches the answer between boundaries.

    :param calendar: the calendar, or None when none was ever loaded.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: the mode; ``race_round`` is set for live_session and race_weekend.
    """
    if calendar is None:
        return Mode(MODE_OFF_SEASON, None, None)
    live = [(r, s) for r in calendar.rounds for s in r.sessions if _is_live(s, now_ts, windows)]
    if live:
        round_, session = max(live, key=lambda pair: _started_last(pair[1]))
        return Mode(MODE_LIVE, round_, session)
    weekends = [r for r in calendar.rounds if _contains(weekend_window(r, windows), now_ts)]
    weekend = max(weekends, key=lambda r: (r.first_start_ts, r.round)) if weekends else None
    if windows.settle_window_s:
        settling = [s for r in calendar.rounds for s in r.sessions if _contains(settle_window(s, windows), now_ts)]
        if settling:
            return Mode(MODE_SETTLING, weekend, None, max(settling, key=lambda s: (s.end_ts, _started_last(s))))
    if weekend is not None:
        return Mode(MODE_RACE_WEEKEND, weekend, None)
    return Mode(MODE_OFF_SEASON, None, None)


def _started_last(session: Session) -> tuple[int, int]:
    """Sort key: start, then weekend order (untimed sessions of one day share a start)."""
    return session.start_ts, SESSION_NAMES.index(session.name)


def _contains(window: tuple[float, float], now_ts: float) -> bool:
    return window[0] <= now_ts < window[1]


def window_edges(calendar: Calendar | None, windows: Windows) -> list[float]:
    """:returns: every weekend and live window edge, UTC unix seconds, sorted, without repeats."""
    if calendar is None:
        return []
    edges: set[float] = set()
    for round_ in calendar.rounds:
        edges.update(weekend_window(round_, windows))
        for session in round_.sessions:
            edges.update(live_window(session, windows))
            start, end = settle_window(session, windows)
            if start < end:
                edges.add(end)
            if session.is_live:
                edges.add(live_flag_window(session, windows)[1])
    return sorted(edges)


def live_window_starts(calendar: Calendar | None, windows: Windows) -> list[float]:
    """:returns: every live window start, UTC unix seconds, sorted."""
    if calendar is None:
        return []
    return sorted(live_window(s, windows)[0] for r in calendar.rounds for s in r.sessions)


def first_after(sorted_edges: list[float], now_ts: float) -> int | None:
    """:returns: the first edge strictly after ``now_ts``, rounded up to a whole second, or None."""
    index = bisect.bisect_right(sorted_edges, now_ts)
    return math.ceil(sorted_edges[index]) if index < len(sorted_edges) else None


def next_mode_change(calendar: Calendar | None, now_ts: float, windows: Windows) -> int | None:
    """The earliest weekend or live window boundary strictly after ``now_ts``.

    A boundary may not change the mode (e.g. a live window ending inside another);
    callers simply re-evaluate :func:`mode_at` then. Settle windows and the end of
    an ``is_live`` flag's span are boundaries too.

    :param calendar: the calendar, or None.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: UTC unix seconds (rounded up to a whole second), or None if no boundary lies ahead.
    """
    return first_after(window_edges(calendar, windows), now_ts)


def next_live_window_start(calendar: Calendar | None, now_ts: float, windows: Windows) -> int | None:
    """The start of the next live window (session start - live lead) strictly after ``now_ts``.

    :param calendar: the calendar, or None.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: UTC unix seconds (rounded up to a whole second), or None if no session lies ahead.
    """
    return first_after(live_window_starts(calendar, windows), now_ts)


def latest_round(calendar: Calendar | None, now_ts: float, windows: Windows) -> Round | None:
    """The round results syncs should target.

    :param calendar: the calendar, or None.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: the live session's round if any, else the most recent round whose first
        session has started (``first_start_ts <= now_ts``), else None.
    """
    mode = mode_at(calendar, now_ts, windows)
    if mode.live is not None:
        return mode.race_round
    if calendar is None:
        return None
    started = [r for r in calendar.rounds if r.first_start_ts <= now_ts]
    return max(started, key=lambda r: (r.first_start_ts, r.round)) if started else None


def mode_ident(mode: Mode) -> tuple:
    """:returns: what makes two modes the same mode: name, (season, round) and the live session's
    (name, start). Two parses of one calendar give equal idents though their objects differ."""
    return (
        mode.name,
        (mode.race_round.season, mode.race_round.round) if mode.race_round else None,
        (mode.live.name, mode.live.start_ts) if mode.live else None,
        (mode.settling.round, mode.settling.name, mode.settling.start_ts) if mode.settling else None,
    )
