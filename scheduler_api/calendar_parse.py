"""Calendar parsing: Ergast/Jolpica and content-API bodies become the frozen calendar model.

Pure functions: no I/O, no HTTP, no clock. Every field is checked here, at the
edge; the model in :mod:`scheduler_api.race_calendar` only ever holds valid
values. Dates and times are UTC: calendar strings become aware UTC datetimes,
then ``int`` UTC unix seconds. A session without a time lasts its whole UTC
day. Malformed entries are skipped with a warning naming the round and never
stop the daemon (see README, Failure behaviour).

Warnings go to the ``scheduler_api.race_calendar`` logger, not this module's
name: it is the name operators already filter on, and parsing moved here from
that module without changing what it logs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from .race_calendar import (
    SESSION_DURATION_S,
    SESSION_NAMES,
    Calendar,
    Round,
    Session,
    _session_order,
)

_logger = logging.getLogger("scheduler_api.race_calendar")

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


def parse_calendar(body: object, logger: logging.Logger | None = None) -> Calendar:
    """Parse a decoded JSON calendar body, detecting its shape.

    Shapes: Ergast/Jolpica ``{"MRData": {"RaceTable": {"season", "Races": [...]}}}``
    or a bare list of race objects; content API ``{"result": {"rounds": [...]}}``
    or ``{"rounds": [...]}``. Malformed entries (bad round number, bad date or
    time, not an object, no sessions) are skipped with a warning
    ``calendar entry skipped round=… reason=…``; a malformed single session is
    skipped with ``calendar session skipped round=… session=… reason=…``.
    Neither ever raises. Original Ergast's 2023 quirk (Sprint Shootout stored
    under ``SecondPractice``) is undone: see :func:`_ergast_round`.

    :param body: the decoded JSON (``json.loads`` result), any type.
    :param logger: where warnings go; the ``scheduler_api.race_calendar`` logger if None.
    :returns: the calendar, rounds sorted by first session start; empty (season
        from ``RaceTable.season`` if valid, else None) when there are no rounds.
    :raises CalendarError: if the body matches neither shape.
    """
    log = logger if logger is not None else _logger
    if isinstance(body, list):
        return _build(_parse_entries(body, _ergast_round, None, log), None)
    if not isinstance(body, dict):
        raise CalendarError(f"calendar body must be a JSON object or list, got {type(body).__name__}")
    if "MRData" in body:
        mrdata = body["MRData"]
        table = mrdata.get("RaceTable") if isinstance(mrdata, dict) else None
        races = table.get("Races") if isinstance(table, dict) else None
        if not isinstance(table, dict) or not isinstance(races, list):
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
        label: object = "?"
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
    year, month, day = (int(g) for g in date_m.groups())
    hour = minute = second = 0
    has_time = time_s not in (None, "")
    if has_time:
        time_m = _TIME_RE.fullmatch(time_s) if isinstance(time_s, str) else None
        if time_m is None:
            raise _Skip(f"invalid time {time_s!r}")
        hour, minute, second = (int(g) for g in time_m.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
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
