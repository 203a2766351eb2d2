"""Calendar fields: the type and range checks every calendar value passes, shared by bodies and overrides.

Pure functions: no I/O, no clock. A season is 1950–2100, a round 0–99, an
instant a real UTC date and time within 1950–2100; anything else raises
:class:`FieldError`, whose message shows the bad value safely (see
:func:`show`). :mod:`scheduler_api.calendar_parse` and
:mod:`scheduler_api.calendar_overrides` build the model only from values that
passed here, so nothing downstream can raise on a loaded calendar.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime, timedelta, timezone

from .race_calendar import SESSION_DURATION_S, Session

MIN_SEASON, MAX_SEASON = 1950, 2100
MAX_ROUND = 99
#: Calendar instants must lie in [1950-01-01T00:00Z, 2101-01-01T00:00Z), UTC unix seconds.
MIN_TS, END_TS = -631152000, 4133980800
#: Warnings one parse logs before it only counts the rest (a hostile body cannot flood the log).
MAX_WARNINGS = 20

_DAY_S = 86400
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME_RE = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?")
_UNIX_RE = re.compile(r"-?[0-9]{1,12}")
_MAX_NAME = 100

#: Collected warnings: ``(format, args)`` pairs, logged together by :func:`emit`.
Notes = list[tuple[str, tuple]]


class FieldError(ValueError):
    """One field of a calendar entry (or of an override) is malformed; the message says which and why."""


def decode_json(raw: bytes) -> object:
    """Decode a calendar (or overrides) file's bytes; safe on hostile input.

    UTF-8 with or without a byte-order mark. An integer literal longer than 50
    digits becomes a float (infinite if huge), so it fails the range checks
    like any bad value instead of failing the whole body; ``NaN`` and
    ``Infinity`` decode as floats and fail them too.

    :raises ValueError: when ``raw`` is not UTF-8, not JSON, or nested too deeply to decode.
    """
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_int=lambda s: int(s) if len(s) <= 50 else float(s))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def clean_name(value: object) -> str:
    """:returns: a race name safe for logs and answers: printable characters only, at most 100;
    ``""`` for anything not a string."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value[:4 * _MAX_NAME] if ch.isprintable())[:_MAX_NAME]


def make_session(season: int, round_no: int, name: str, start_ts: int, has_time: bool, is_live: bool) -> Session:
    """:returns: a Session whose expected end is its start plus its expected duration
    (:data:`SESSION_DURATION_S`), or the next 00:00Z when it has no time."""
    end_ts = start_ts + (SESSION_DURATION_S[name] if has_time else _DAY_S)
    return Session(season=season, round=round_no, name=name, start_ts=start_ts,
                   end_ts=end_ts, has_time=has_time, is_live=is_live)


def instant(date_s: object, time_s: object, has_time: bool = True) -> int:
    """Combine an ISO date ``YYYY-MM-DD`` and a time ``HH:MM:SS[.ffffff][Z|±HH:MM]`` (UTC without a zone).

    :param has_time: False to take 00:00Z and ignore ``time_s``.
    :returns: UTC unix seconds, within 1950-01-01 to 2100-12-31 inclusive.
    :raises FieldError: when the date or time is not a string of that form, not a
        real calendar date or time, or out of range.
    """
    date_m = _DATE_RE.fullmatch(date_s) if isinstance(date_s, str) else None
    if date_m is None:
        raise FieldError(f"invalid date {show(date_s)}")
    if not MIN_SEASON <= int(date_m.group(1)) <= MAX_SEASON:
        raise FieldError(f"date out of range (1950-2100) {show(date_s)}")
    hour = minute = second = 0
    zone = timezone.utc
    if has_time:
        time_m = _TIME_RE.fullmatch(time_s) if isinstance(time_s, str) else None
        if time_m is None:
            raise FieldError(f"invalid time {show(time_s)}")
        hour, minute, second = (int(g) for g in time_m.groups()[:3])
        offset = time_m.group(4)
        if offset and offset != "Z":
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise FieldError(f"invalid time {show(time_s)}")
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(*(int(g) for g in date_m.groups()), hour, minute, second, tzinfo=zone)
    except ValueError:
        raise FieldError(f"invalid date/time {show(date_s)} {show(time_s)}") from None
    return in_range(int(moment.timestamp()), f"{show(date_s)} {show(time_s)}")


def in_range(ts: int, text: str) -> int:
    """:returns: ``ts`` if it lies in 1950–2100 (:data:`MIN_TS` to :data:`END_TS`); :raises FieldError: otherwise."""
    if not MIN_TS <= ts < END_TS:
        raise FieldError(f"date out of range (1950-2100) {text}")
    return ts


def unix_seconds(value: object) -> int:
    """:returns: UTC unix seconds in 1950–2100 from an int, integral float or numeric string.
    :raises FieldError: otherwise (a bool, NaN, infinity, milliseconds, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError(f"invalid date {show(value)}")
    if isinstance(value, str):
        if len(value) > 20 or not _UNIX_RE.fullmatch(value.strip()):
            raise FieldError(f"invalid date {show(value)}")
        value = int(value)
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise FieldError(f"invalid date {show(value)}")
    if not MIN_TS <= value < END_TS:
        raise FieldError(f"date out of range (1950-2100) {show(value)}")
    return int(value)


def season_number(value: object) -> int:
    """:returns: a season 1950–2100 from an int or ASCII-digit string; :raises FieldError: otherwise."""
    return _bounded_int(value, MIN_SEASON, MAX_SEASON, "season")


def round_number(value: object) -> int:
    """:returns: a round number 0–99 from an int or ASCII-digit string; :raises FieldError: otherwise."""
    return _bounded_int(value, 0, MAX_ROUND, "round number")


def _bounded_int(value: object, low: int, high: int, what: str) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 6 and value.isascii() and value.isdigit():
        number = int(value)
    if number is None or not low <= number <= high:
        raise FieldError(f"missing or invalid {what} {show(value)} (expected {low}-{high})")
    return number


def show(value: object) -> str:
    """:returns: a short, safe text for a bad value in a warning: never raises, never recurses,
    never more than about 60 characters (a 5000-digit int or a deeply nested list included)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 128 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = repr(value[:40])
        return text if len(value) <= 40 else f"{text}... ({len(value)} characters)"
    return f"<{type(value).__name__}>"


def emit(notes: Notes, log: logging.Logger) -> None:
    """Log collected warnings: the first :data:`MAX_WARNINGS`, then one line with how many more."""
    for fmt, args in notes[:MAX_WARNINGS]:
        log.warning(fmt, *args)
    if len(notes) > MAX_WARNINGS:
        log.warning("calendar warnings not shown count=%d", len(notes) - MAX_WARNINGS)

