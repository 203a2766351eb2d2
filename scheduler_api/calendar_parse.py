"""Calendar parsing: Ergast/Jolpica and content-API bodies become the frozen calendar model.

Pure functions: no I/O, no HTTP, no clock. Every field is checked here, at the
edge, for type and range (the checks are in :mod:`scheduler_api.calendar_fields`);
the model in :mod:`scheduler_api.race_calendar` only ever holds valid values,
so nothing downstream can raise on a loaded calendar. Dates and times are UTC:
calendar strings become aware UTC datetimes, then ``int`` UTC unix seconds. A
session without a time lasts its whole UTC day. Malformed entries are skipped
with a warning naming the round and never stop the daemon; implausible rounds
load with a warning (see README, Failure behaviour). Also here: whether a
content-API ``is_live`` flag is still credible.

Warnings go to the ``scheduler_api.race_calendar`` logger, not this module's
name: it is the name operators already filter on, and parsing moved here from
that module without changing what it logs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from .calendar_fields import (
    FieldError,
    Notes,
    clean_name,
    emit,
    instant,
    make_session,
    round_number,
    season_number,
    show,
    unix_seconds,
)
from .race_calendar import SESSION_NAMES, Calendar, Round, Session, _session_order

_logger = logging.getLogger("scheduler_api.race_calendar")

#: A round whose sessions span more than this (first start to last expected end) is implausible.
MAX_ROUND_SPAN_S = 5 * 86400
#: A session flagged ``is_live`` stays credible this long past its expected end + LIVE_TAIL.
LIVE_FLAG_ALLOWANCE_S = 3 * 3600
#: The warning for a stale ``is_live`` flag; the caller logs it once per session (see :func:`credible_live_flag`).
LIVE_FLAG_IGNORED = ("calendar live flag ignored season=%d round=%d session=%s "
                     "reason=outside start - LIVE_LEAD to expected end + LIVE_TAIL + 3h")

_DAY_S = 86400
#: Ergast race-object keys of the sessions other than the race itself.
_ERGAST_KEYS: tuple[tuple[str, str], ...] = (
    ("FirstPractice", "practice_1"), ("SecondPractice", "practice_2"), ("ThirdPractice", "practice_3"),
    ("SprintQualifying", "sprint_qualifying"), ("SprintShootout", "sprint_qualifying"),
    ("Sprint", "sprint"), ("Qualifying", "qualifying"),
)
_CANCELLED = ("cancelled", "canceled")


class CalendarError(ValueError):
    """The body's shape is not recognised at all (neither Ergast/Jolpica nor content API)."""


def parse_calendar(body: object, logger: logging.Logger | None = None, check: bool = True) -> Calendar:
    """Parse a decoded JSON calendar body, detecting its shape; never raises on a bad entry.

    Shapes: Ergast/Jolpica ``{"MRData": {"RaceTable": {"season", "Races": [...]}}}``
    or a bare list of race objects; content API ``{"result": {"rounds": [...]}}``
    or ``{"rounds": [...]}``. Each field is checked: season 1950–2100, round
    0–99, real dates and times between 1950 and 2100 (unix seconds in that
    range for the content API), the seven session types. A bad entry is skipped
    with ``calendar entry skipped round=… reason=…``; a bad single session with
    ``calendar session skipped round=… session=… reason=…``. The calendar's
    season is the body's declared season, else the most common one of its
    entries; an entry of another season is skipped. Duplicate rounds keep the
    first. At most 20 warnings are logged, then a count of the rest.
    Original Ergast's 2023 quirk (Sprint Shootout stored under
    ``SecondPractice``) is undone: see :func:`_ergast_round`.

    :param body: the decoded JSON, any type.
    :param logger: where warnings go; the ``scheduler_api.race_calendar`` logger if None.
    :param check: also warn about implausible rounds (:func:`check_plausibility`);
        callers that correct the calendar first pass False and check the result.
    :returns: the calendar, rounds sorted by first session start; empty (season
        from the declared season if valid, else None) when there are no rounds.
    :raises CalendarError: if the body matches neither shape.
    """
    log = logger if logger is not None else _logger
    notes: Notes = []
    if isinstance(body, list):
        entries, parse_one, declared = body, _ergast_round, None
    elif not isinstance(body, dict):
        raise CalendarError(f"calendar body must be a JSON object or list, got {type(body).__name__}")
    elif "MRData" in body:
        mrdata = body["MRData"]
        table = mrdata.get("RaceTable") if isinstance(mrdata, dict) else None
        entries = table.get("Races") if isinstance(table, dict) else None
        if not isinstance(entries, list):
            raise CalendarError("Ergast calendar body has no MRData.RaceTable.Races list")
        parse_one, declared = _ergast_round, _declared_season(table, notes)
    else:
        holder = body.get("result", body)
        entries = holder.get("rounds") if isinstance(holder, dict) else None
        if not isinstance(entries, list):
            keys = sorted(show(k) for k in list(body)[:50])[:5]
            raise CalendarError(
                "calendar body not recognised: expected MRData.RaceTable.Races (Ergast/Jolpica), "
                f"result.rounds or rounds (content API); top-level keys: {keys}")
        parse_one, declared = _content_round, _declared_season(holder, notes)
    calendar = _build(_parse_entries(entries, parse_one, declared, notes), declared, notes)
    emit(notes, log)
    if check:
        check_plausibility(calendar, log)
    return calendar


def _declared_season(holder: dict, notes: Notes) -> int | None:
    if holder.get("season") is None:
        return None
    try:
        return season_number(holder["season"])
    except FieldError as exc:
        notes.append(("calendar season ignored reason=%s", (exc,)))
        return None


def _build(parsed: list[Round], declared: int | None, notes: Notes) -> Calendar:
    """Keep the rounds of the calendar's season, first of each number; sort by first start."""
    seasons = Counter(r.season for r in parsed)
    season = declared
    if season is None and seasons:
        season = max(seasons, key=lambda s: (seasons[s], s))
    rounds: dict[int, Round] = {}
    for round_ in parsed:
        if round_.season != season:
            notes.append(("calendar entry skipped round=%s reason=%s",
                          (round_.round, f"season {round_.season} is not the calendar's season {season}")))
        elif round_.round in rounds:
            notes.append(("calendar entry skipped round=%s reason=%s", (round_.round, "duplicate round")))
        else:
            rounds[round_.round] = round_
    ordered = sorted(rounds.values(), key=lambda r: (r.first_start_ts, r.round))
    return Calendar(season=season, rounds=tuple(ordered))


_EntryParser = Callable[[dict, "int | None", Notes], "Round | None"]


def _parse_entries(entries: list, parse_one: _EntryParser, default_season: int | None,
                   notes: Notes) -> list[Round]:
    """:returns: the parsed rounds in body order; entries that raise ``FieldError`` are noted and
    dropped, entries for which ``parse_one`` returns None (a wholly cancelled round) silently."""
    rounds: list[Round] = []
    for entry in entries:
        label = _round_label(entry)
        try:
            if not isinstance(entry, dict):
                raise FieldError(f"not an object ({type(entry).__name__})")
            parsed = parse_one(entry, default_season, notes)
        except FieldError as skip:
            notes.append(("calendar entry skipped round=%s reason=%s", (label, skip)))
            continue
        if parsed is not None:
            rounds.append(parsed)
    return rounds


def _round_label(entry: object) -> str:
    """:returns: how a warning names an entry's round: its number, else its raw value shown safely, else ``?``."""
    if not isinstance(entry, dict):
        return "?"
    raw = entry.get("round_id", entry.get("round"))
    if raw is None:
        return "?"
    try:
        return str(round_number(raw))
    except FieldError:
        return show(raw)


# --------------------------------------------------------------------------- the two shapes


def _ergast_round(race: dict, default_season: int | None, notes: Notes) -> Round:
    """Build a Round from one Ergast race object; a bad race date/time skips the round.

    Quirk: original Ergast 2023 put the Sprint Shootout under ``SecondPractice``.
    It is renamed sprint_qualifying when the season is 2023, the race has
    ``Sprint`` but no ``ThirdPractice``/``SprintShootout``/``SprintQualifying``,
    and ``SecondPractice`` starts after ``Qualifying``. The season check matters:
    2021-22 sprint weekends have the same key pattern with a real Saturday FP2.
    """
    round_no = round_number(race.get("round"))
    season = _entry_season(race, default_season)
    start_ts, has_time = _ergast_start(race)
    sessions = {"race": make_session(season, round_no, "race", start_ts, has_time, False)}
    for key, name in _ERGAST_KEYS:
        if key not in race:
            continue
        try:
            if not isinstance(race[key], dict):
                raise FieldError(f"not an object ({type(race[key]).__name__})")
            start_ts, has_time = _ergast_start(race[key])
        except FieldError as skip:
            notes.append(("calendar session skipped round=%s session=%s reason=%s", (round_no, key, skip)))
            continue
        sessions[name] = make_session(season, round_no, name, start_ts, has_time, False)
    fp2, quali = sessions.get("practice_2"), sessions.get("qualifying")
    if (season == 2023 and "Sprint" in race and fp2 is not None and quali is not None
            and not any(k in race for k in ("ThirdPractice", "SprintShootout", "SprintQualifying"))
            and fp2.start_ts > quali.start_ts):
        del sessions["practice_2"]
        sessions["sprint_qualifying"] = make_session(
            season, round_no, "sprint_qualifying", fp2.start_ts, fp2.has_time, False)
    return _round(season, round_no, race.get("raceName"), sessions.values())


def _content_round(entry: dict, default_season: int | None, notes: Notes) -> Round | None:
    """Build a Round from one content-API round; cancelled sessions are dropped silently.

    :returns: None (no warning) when the round or every one of its sessions is cancelled.
    """
    round_no = round_number(entry.get("round_id", entry.get("round")))
    season = _entry_season(entry, default_season)
    raw_sessions = entry.get("sessions")
    if not isinstance(raw_sessions, list):
        raise FieldError(f"sessions is not a list ({type(raw_sessions).__name__})")
    if _is_cancelled(entry) or (raw_sessions and all(map(_is_cancelled, raw_sessions))):
        return None
    sessions: dict[str, Session] = {}
    for raw in raw_sessions:
        label = _session_label(raw)
        try:
            if not isinstance(raw, dict):
                raise FieldError(f"not an object ({type(raw).__name__})")
            if _is_cancelled(raw):
                continue
            name = raw.get("type")
            if not isinstance(name, str) or name not in SESSION_NAMES:
                raise FieldError(f"unknown session type {show(name)}")
            if name in sessions:
                raise FieldError("duplicate session type")
            start_ts = unix_seconds(raw.get("date"))
        except FieldError as skip:
            notes.append(("calendar session skipped round=%s session=%s reason=%s", (round_no, label, skip)))
            continue
        sessions[name] = make_session(season, round_no, name, start_ts, True, raw.get("is_live") is True)
    return _round(season, round_no, entry.get("race_name", entry.get("name", entry.get("raceName"))),
                  sessions.values())


def _session_label(raw: object) -> str:
    """:returns: how a warning names a content-API session: its type if a short plain string, else shown safely."""
    name = raw.get("type", "?") if isinstance(raw, dict) else "?"
    if isinstance(name, str) and len(name) <= 40 and name.isprintable() and " " not in name:
        return name
    return show(name)


def _entry_season(entry: dict, default_season: int | None) -> int:
    """:returns: the entry's own season if it has one (it must be valid), else the body's.
    :raises FieldError: on an invalid season, or none at all."""
    if entry.get("season") is not None:
        return season_number(entry["season"])
    if default_season is None:
        raise FieldError("missing season")
    return default_season


def _is_cancelled(obj: object) -> bool:
    status = obj.get("status") if isinstance(obj, dict) else None
    return isinstance(status, str) and status.strip().lower() in _CANCELLED


def _round(season: int, round_no: int, race_name: object, sessions: Iterable[Session]) -> Round:
    ordered = sorted(sessions, key=_session_order)
    if not ordered:
        raise FieldError("no usable sessions")
    return Round(season=season, round=round_no, race_name=clean_name(race_name), sessions=tuple(ordered))


def _ergast_start(obj: dict) -> tuple[int, bool]:
    """:returns: (start, UTC unix seconds; has_time) from Ergast ``date`` + optional ``time``.

    No ``time`` key means "no time": the start is 00:00Z. A ``time`` that is
    present must be a real time (``null`` or ``""`` is not).
    :raises FieldError: on a missing or invalid date or time.
    """
    has_time = "time" in obj
    return instant(obj.get("date"), obj.get("time") if has_time else None, has_time), has_time


# --------------------------------------------------------------------------- plausibility and live flags


def check_plausibility(calendar: Calendar, logger: logging.Logger | None = None) -> list[str]:
    """Warn about rounds that load but look wrong; the calendar is used as it is.

    A round is implausible when its sessions span more than five days (first
    start to last expected end), when its race starts before another of its
    sessions, or when it overlaps another round (its first session starts
    before the other's last expected end). Each is one warning
    ``calendar round implausible season=… round=… reason=…``. Call it once per
    load that changes the calendar (not on an unchanged refresh).

    :param calendar: the calendar as it will be used (after any overrides).
    :param logger: where warnings go; the ``scheduler_api.race_calendar`` logger if None.
    :returns: the reasons, ``"round N: reason"``, in calendar order.
    """
    notes: Notes = []
    for index, round_ in enumerate(calendar.rounds):
        reasons = []
        span_s = round_.end_ts - round_.first_start_ts
        if span_s > MAX_ROUND_SPAN_S:
            reasons.append(f"sessions span {span_s / _DAY_S:.1f} days (more than 5)")
        race = round_.race
        early = [s.name for s in round_.sessions if race is not None and s.start_ts > race.start_ts]
        if early:
            reasons.append(f"race starts before {', '.join(early)}")
        reasons.extend(f"overlaps round {other.round}" for other in calendar.rounds[:index]
                       if round_.first_start_ts < other.end_ts)
        notes.extend(("calendar round implausible season=%s round=%s reason=%s",
                      (round_.season, round_.round, reason)) for reason in reasons)
    emit(notes, logger if logger is not None else _logger)
    return [f"round {args[1]}: {args[2]}" for _, args in notes]


def credible_live_flag(session: Session, now_ts: float, live_lead_s: float, live_tail_s: float) -> bool:
    """Whether a session's ``is_live`` flag counts at ``now_ts``.

    A flag counts only from the session's start − ``live_lead_s`` until its
    expected end + ``live_tail_s`` + 3 h (an allowance for delays and red
    flags), half-open; outside that window it is stale and ignored, so a flag
    left set in the store never keeps the daemon live for weeks. The caller
    logs :data:`LIVE_FLAG_IGNORED` (``% (season, round, name)``) once per
    session whose flag it ignores.

    :param session: the session.
    :param now_ts: the instant, UTC unix seconds.
    :param live_lead_s: ``LIVE_LEAD``, seconds.
    :param live_tail_s: ``LIVE_TAIL``, seconds.
    :returns: True when flagged and inside that window; False otherwise (unflagged included).
    """
    if not session.is_live:
        return False
    return session.start_ts - live_lead_s <= now_ts < session.end_ts + live_tail_s + LIVE_FLAG_ALLOWANCE_S
