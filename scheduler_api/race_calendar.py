"""Race calendar: parse Ergast/Jolpica and content-API bodies, then place an instant in its windows.

Pure functions on frozen values (SPEC.md §4): no I/O, no HTTP, no clock.
Every timestamp is UTC unix seconds (``int``); callers pass ``now_ts``.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType

SESSION_NAMES: tuple[str, ...] = (
    "practice_1", "practice_2", "practice_3", "sprint_qualifying", "sprint", "qualifying", "race",
)

#: Expected session durations, seconds (SPEC.md §4; the regulations cap a race at 3h).
#: Read-only mapping: no module-level mutable state (STYLE.md).
SESSION_DURATION_S: Mapping[str, int] = MappingProxyType({
    "practice_1": 3600, "practice_2": 3600, "practice_3": 3600,
    "sprint_qualifying": 3600, "sprint": 3600, "qualifying": 3600, "race": 10800,
})

MODE_LIVE = "live_session"
MODE_RACE_WEEKEND = "race_weekend"
MODE_OFF_SEASON = "off_season"

_DAY_S = 86400
#: Ergast race-object keys of the sessions other than the race itself.
_ERGAST_KEYS: tuple[tuple[str, str], ...] = (
    ("FirstPractice", "practice_1"), ("SecondPractice", "practice_2"), ("ThirdPractice", "practice_3"),
    ("SprintQualifying", "sprint_qualifying"), ("SprintShootout", "sprint_qualifying"),
    ("Sprint", "sprint"), ("Qualifying", "qualifying"),
)
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME_RE = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?(?:Z|\+00:00)?")
_UNIX_RE = re.compile(r"-?[0-9]+")
_CANCELLED = ("cancelled", "canceled")


class CalendarError(ValueError):
    """The body's shape is not recognised at all (neither Ergast/Jolpica nor content API)."""


class _Skip(Exception):
    """Internal: one calendar entry or session is malformed; carries the reason."""


@dataclass(frozen=True)
class Session:
    """One session of a round.

    ``end_ts`` is the *expected* end: ``start_ts + SESSION_DURATION_S[name]``;
    a session without a time (``has_time`` false) lasts its whole UTC day,
    00:00Z to the next 00:00Z (SPEC.md §4). ``is_live`` comes from the content
    API and makes the session live whatever the clock says.
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
    """A season's rounds sorted by ``first_start_ts``; ``season`` is None for an empty calendar."""

    season: int | None
    rounds: tuple[Round, ...]


@dataclass(frozen=True)
class Windows:
    """Window margins, seconds; the defaults are 12h, 12h, 5m and 30m (see README, Configuration).

    :raises ValueError: if a margin is negative or not finite.
    """

    race_weekend_lead_s: float = 43200
    race_weekend_tail_s: float = 43200
    live_lead_s: float = 300
    live_tail_s: float = 1800

    def __post_init__(self) -> None:
        for field_name, value in vars(self).items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field_name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Mode:
    """Where an instant falls: ``name`` is "live_session", "race_weekend" or "off_season".

    ``race_round`` is the race weekend's round (also set when live), ``live`` the live session.
    """

    name: str
    race_round: Round | None
    live: Session | None

    @property
    def is_race_weekend(self) -> bool:
        """:returns: True for race_weekend and live_session (a live session always counts)."""
        return self.name in (MODE_RACE_WEEKEND, MODE_LIVE)


# --------------------------------------------------------------------------- parsing


def parse_calendar(body: object, logger: logging.Logger | None = None) -> Calendar:
    """Parse a decoded JSON calendar body, detecting its shape (SPEC.md §4).

    Shapes: Ergast/Jolpica ``{"MRData": {"RaceTable": {"season", "Races": [...]}}}``
    or a bare list of race objects; content API ``{"result": {"rounds": [...]}}``
    or ``{"rounds": [...]}``. Malformed entries (bad round number, bad date or
    time, not an object, no sessions) are skipped with a warning
    ``calendar entry skipped round=… reason=…``; a malformed single session is
    skipped with ``calendar session skipped round=… session=… reason=…``.
    Neither ever raises. Original Ergast's 2023 quirk (Sprint Shootout stored
    under ``SecondPractice``) is undone: see :func:`_ergast_round`.

    :param body: the decoded JSON (``json.loads`` result), any type.
    :param logger: where warnings go; ``logging.getLogger(__name__)`` if None.
    :returns: the calendar, rounds sorted by first session start; empty (season
        from ``RaceTable.season`` if valid, else None) when there are no rounds.
    :raises CalendarError: if the body matches neither shape.
    """
    log = logger if logger is not None else logging.getLogger(__name__)
    if isinstance(body, list):
        return _build(_parse_entries(body, _ergast_round, None, log), None)
    if not isinstance(body, dict):
        raise CalendarError(f"calendar body must be a JSON object or list, got {type(body).__name__}")
    if "MRData" in body:
        table = body["MRData"].get("RaceTable") if isinstance(body["MRData"], dict) else None
        races = table.get("Races") if isinstance(table, dict) else None
        if not isinstance(races, list):
            raise CalendarError("Ergast calendar body has no MRData.RaceTable.Races list")
        default_season = _opt_int(table.get("season"))
        return _build(_parse_entries(races, _ergast_round, default_season, log), default_season)
    holder = body.get("result", body)
    rounds = holder.get("rounds") if isinstance(holder, dict) else None
    if not isinstance(rounds, list):
        raise CalendarError(
            "calendar body not recognised: expected MRData.RaceTable.Races (Ergast/Jolpica), "
            f"result.rounds or rounds (content API); top-level keys: {sorted(map(str, body))[:5]}"
        )
    default_season = _opt_int(holder.get("season"))
    return _build(_parse_entries(rounds, _content_round, default_season, log), default_season)


def _build(rounds: list[Round], default_season: int | None) -> Calendar:
    rounds.sort(key=lambda r: (r.first_start_ts, r.round))
    season = rounds[0].season if rounds else default_season
    return Calendar(season=season, rounds=tuple(rounds))


_EntryParser = Callable[[dict, "int | None", logging.Logger], "Round | None"]


def _parse_entries(entries: list, parse_one: _EntryParser, default_season: int | None,
                   log: logging.Logger) -> list[Round]:
    """:returns: the parsed rounds; entries that raise ``_Skip`` are logged and dropped,
    entries for which ``parse_one`` returns None (a wholly cancelled round) are dropped silently."""
    rounds: list[Round] = []
    seen: set[tuple[int, int]] = set()
    for entry in entries:
        label = "?"
        if isinstance(entry, dict):
            label = entry.get("round", entry.get("round_id", "?"))
        try:
            if not isinstance(entry, dict):
                raise _Skip(f"not an object ({type(entry).__name__})")
            parsed = parse_one(entry, default_season, log)
            if parsed is None:
                continue
            if (parsed.season, parsed.round) in seen:
                raise _Skip("duplicate round")
        except _Skip as skip:
            log.warning("calendar entry skipped round=%s reason=%s", label, skip)
            continue
        seen.add((parsed.season, parsed.round))
        rounds.append(parsed)
    return rounds


def _ergast_round(race: dict, default_season: int | None, log: logging.Logger) -> Round:
    """Build a Round from one Ergast race object; a bad race date/time skips the round.

    Quirk: original Ergast 2023 put the Sprint Shootout under ``SecondPractice``.
    It is renamed sprint_qualifying when the season is 2023, the race has
    ``Sprint`` but no ``ThirdPractice``/``SprintShootout``/``SprintQualifying``,
    and ``SecondPractice`` starts after ``Qualifying``. The season check matters:
    2021-22 sprint weekends have the same key pattern with a real Saturday FP2.
    """
    round_no = _round_number(race.get("round"))
    season = _opt_int(race.get("season"), default_season)
    if season is None:
        raise _Skip("missing or invalid season")
    start_ts, has_time = _ergast_start(race)
    sessions = {"race": _session(season, round_no, "race", start_ts, has_time, False)}
    for key, name in _ERGAST_KEYS:
        if key not in race:
            continue
        try:
            if not isinstance(race[key], dict):
                raise _Skip("not an object")
            start_ts, has_time = _ergast_start(race[key])
        except _Skip as skip:
            log.warning("calendar session skipped round=%s session=%s reason=%s", round_no, key, skip)
            continue
        sessions[name] = _session(season, round_no, name, start_ts, has_time, False)
    fp2, quali = sessions.get("practice_2"), sessions.get("qualifying")
    if (season == 2023 and "Sprint" in race and fp2 is not None and quali is not None
            and not any(k in race for k in ("ThirdPractice", "SprintShootout", "SprintQualifying"))
            and fp2.start_ts > quali.start_ts):
        del sessions["practice_2"]
        sessions["sprint_qualifying"] = _session(
            season, round_no, "sprint_qualifying", fp2.start_ts, fp2.has_time, False)
    return _round(season, round_no, str(race.get("raceName", "")), sessions.values())


def _content_round(entry: dict, default_season: int | None, log: logging.Logger) -> Round | None:
    """Build a Round from one content-API round; cancelled sessions are dropped silently.

    :returns: None (no warning) when the round or every one of its sessions is cancelled.
    """
    round_no = _round_number(entry.get("round_id", entry.get("round")))
    season = _opt_int(entry.get("season"), default_season)
    if season is None:
        raise _Skip("missing or invalid season")
    raw_sessions = entry.get("sessions")
    if not isinstance(raw_sessions, list):
        raise _Skip("sessions is not a list")
    if _is_cancelled(entry) or (raw_sessions and all(map(_is_cancelled, raw_sessions))):
        return None
    sessions: dict[str, Session] = {}
    for raw in raw_sessions:
        label = raw.get("type", "?") if isinstance(raw, dict) else "?"
        try:
            if not isinstance(raw, dict):
                raise _Skip("not an object")
            if _is_cancelled(raw):
                continue
            name = raw.get("type")
            if name not in SESSION_NAMES:
                raise _Skip(f"unknown session type {name!r}")
            if name in sessions:
                raise _Skip("duplicate session type")
            start_ts = _unix_seconds(raw.get("date"))
        except _Skip as skip:
            log.warning("calendar session skipped round=%s session=%s reason=%s", round_no, label, skip)
            continue
        sessions[name] = _session(season, round_no, name, start_ts, True, raw.get("is_live") is True)
    name = entry.get("race_name", entry.get("name", entry.get("raceName", "")))
    return _round(season, round_no, str(name), sessions.values())


def _is_cancelled(obj: object) -> bool:
    status = obj.get("status") if isinstance(obj, dict) else None
    return isinstance(status, str) and status.strip().lower() in _CANCELLED


def _session_order(session: Session) -> tuple[int, int]:
    """Sort key: start, then weekend order (untimed sessions of one day share a start)."""
    return session.start_ts, SESSION_NAMES.index(session.name)


def _round(season: int, round_no: int, race_name: str, sessions: Iterable[Session]) -> Round:
    ordered = sorted(sessions, key=_session_order)
    if not ordered:
        raise _Skip("no usable sessions")
    return Round(season=season, round=round_no, race_name=race_name, sessions=tuple(ordered))


def _session(season: int, round_no: int, name: str, start_ts: int, has_time: bool, is_live: bool) -> Session:
    end_ts = start_ts + (SESSION_DURATION_S[name] if has_time else _DAY_S)
    return Session(season=season, round=round_no, name=name, start_ts=start_ts,
                   end_ts=end_ts, has_time=has_time, is_live=is_live)


def _ergast_start(obj: dict) -> tuple[int, bool]:
    """:returns: (start, UTC unix seconds; has_time) from Ergast ``date`` + optional ``time``.

    A missing, null or empty ``time`` means "no time": the start is 00:00Z.
    :raises _Skip: on a missing or invalid date or an invalid time.
    """
    date_s, time_s = obj.get("date"), obj.get("time")
    date_m = _DATE_RE.fullmatch(date_s) if isinstance(date_s, str) else None
    if date_m is None:
        raise _Skip(f"invalid date {date_s!r}")
    hms = (0, 0, 0)
    has_time = time_s not in (None, "")
    if has_time:
        time_m = _TIME_RE.fullmatch(time_s) if isinstance(time_s, str) else None
        if time_m is None:
            raise _Skip(f"invalid time {time_s!r}")
        hms = tuple(int(g) for g in time_m.groups())
    try:
        moment = datetime(*(int(g) for g in date_m.groups()), *hms, tzinfo=timezone.utc)
    except ValueError:
        raise _Skip(f"invalid date/time {date_s!r} {time_s!r}") from None
    return int(moment.timestamp()), has_time


def _round_number(value: object) -> int:
    number = _opt_int(value)
    if number is None:
        raise _Skip(f"missing or invalid round number {value!r}")
    return number


def _opt_int(value: object, default: int | None = None) -> int | None:
    """:returns: a non-negative int from an int or ASCII-digit string, else ``default``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return default


def _unix_seconds(value: object) -> int:
    """:returns: UTC unix seconds from an int, integral float or numeric string; :raises _Skip: otherwise."""
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value == int(value)) or (isinstance(value, str) and _UNIX_RE.fullmatch(value.strip())):
        return int(value)
    raise _Skip(f"invalid date {value!r}")


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


def mode_at(calendar: Calendar | None, now_ts: float, windows: Windows) -> Mode:
    """Place an instant in the calendar. Windows are half-open ``[start, end)``.

    A session is live inside its live window or whenever it is flagged ``is_live``;
    if several are live the one that started last wins. Otherwise the instant is a
    race weekend if it lies in a round's weekend window (overlapping windows: the
    round that started last). With no calendar the mode is off_season. See README,
    What it does, for the windows' defaults.

    Scans the whole calendar; :class:`ModeTracker` caches the answer between boundaries.

    :param calendar: the calendar, or None when none was ever loaded.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: the mode; ``race_round`` is set for live_session and race_weekend.
    """
    if calendar is None:
        return Mode(MODE_OFF_SEASON, None, None)
    live = [(r, s) for r in calendar.rounds for s in r.sessions
            if s.is_live or _contains(live_window(s, windows), now_ts)]
    if live:
        round_, session = max(live, key=lambda pair: _started_last(pair[1]))
        return Mode(MODE_LIVE, round_, session)
    weekends = [r for r in calendar.rounds if _contains(weekend_window(r, windows), now_ts)]
    if weekends:
        return Mode(MODE_RACE_WEEKEND, max(weekends, key=lambda r: (r.first_start_ts, r.round)), None)
    return Mode(MODE_OFF_SEASON, None, None)


def _started_last(session: Session) -> tuple[int, int]:
    """Sort key: start, then weekend order (untimed sessions of one day share a start)."""
    return session.start_ts, SESSION_NAMES.index(session.name)


def _contains(window: tuple[float, float], now_ts: float) -> bool:
    return window[0] <= now_ts < window[1]


def _boundaries(calendar: Calendar | None, windows: Windows) -> list[float]:
    """:returns: every weekend and live window edge, UTC unix seconds, sorted, without repeats."""
    if calendar is None:
        return []
    edges: set[float] = set()
    for round_ in calendar.rounds:
        edges.update(weekend_window(round_, windows))
        for session in round_.sessions:
            edges.update(live_window(session, windows))
    return sorted(edges)


def _live_starts(calendar: Calendar | None, windows: Windows) -> list[float]:
    """:returns: every live window start, UTC unix seconds, sorted."""
    if calendar is None:
        return []
    return sorted(live_window(s, windows)[0] for r in calendar.rounds for s in r.sessions)


def _first_after(sorted_edges: list[float], now_ts: float) -> int | None:
    """:returns: the first edge strictly after ``now_ts``, rounded up to a whole second, or None."""
    index = bisect.bisect_right(sorted_edges, now_ts)
    return math.ceil(sorted_edges[index]) if index < len(sorted_edges) else None


def next_mode_change(calendar: Calendar | None, now_ts: float, windows: Windows) -> int | None:
    """The earliest weekend or live window boundary strictly after ``now_ts``.

    A boundary may not change the mode (e.g. a live window ending inside another);
    callers simply re-evaluate :func:`mode_at` then. ``is_live`` flags have no boundary.

    :param calendar: the calendar, or None.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: UTC unix seconds (rounded up to a whole second), or None if no boundary lies ahead.
    """
    return _first_after(_boundaries(calendar, windows), now_ts)


def next_live_window_start(calendar: Calendar | None, now_ts: float, windows: Windows) -> int | None:
    """The start of the next live window (session start - live lead) strictly after ``now_ts``.

    :param calendar: the calendar, or None.
    :param now_ts: the instant, UTC unix seconds.
    :param windows: window margins.
    :returns: UTC unix seconds (rounded up to a whole second), or None if no session lies ahead.
    """
    return _first_after(_live_starts(calendar, windows), now_ts)


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
    )


class ModeTracker:
    """The current mode and the next window boundary, recomputed only when a boundary passes.

    The mode is constant between two consecutive window edges (``is_live``
    flags do not depend on the clock), so :meth:`update` scans the calendar
    (:func:`mode_at`) only when ``now_ts`` leaves the span between the edges
    around the last evaluation; otherwise it costs O(1). The boundary
    queries bisect the sorted edges, O(log n). The edges are sorted once per
    calendar. The wall clock may step backward: any instant outside the
    cached span is simply evaluated afresh.

    Not thread-safe: the scheduler calls it under its lock.

    :param calendar: the calendar, or None (off_season, no boundaries).
    :param windows: window margins.
    :param now_ts: the instant of the first evaluation, UTC unix seconds.
    """

    def __init__(self, calendar: Calendar | None, windows: Windows, now_ts: float) -> None:
        self.windows = windows
        self._calendar = calendar
        self._edges = _boundaries(calendar, windows)
        self._live_starts = _live_starts(calendar, windows)
        self._span = (math.inf, -math.inf)  # [from, until) in which ``mode`` holds; empty: evaluate
        self.mode = self._evaluate(now_ts)

    @property
    def calendar(self) -> Calendar | None:
        """:returns: the calendar in use, or None."""
        return self._calendar

    def set_calendar(self, calendar: Calendar | None) -> None:
        """Use ``calendar`` from now on; :attr:`mode` keeps its value until the next :meth:`update`."""
        self._calendar = calendar
        self._edges = _boundaries(calendar, self.windows)
        self._live_starts = _live_starts(calendar, self.windows)
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
        return _first_after(self._edges, now_ts)

    def next_live_start_ts(self, now_ts: float) -> int | None:
        """:returns: as :func:`next_live_window_start` for the tracked calendar, UTC unix seconds, or None."""
        return _first_after(self._live_starts, now_ts)

    def _evaluate(self, now_ts: float) -> Mode:
        index = bisect.bisect_right(self._edges, now_ts)
        start = self._edges[index - 1] if index > 0 else -math.inf
        end = self._edges[index] if index < len(self._edges) else math.inf
        self._span = (start, end)
        return mode_at(self._calendar, now_ts, self.windows)
