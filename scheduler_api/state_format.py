"""The state file's format: encoding the persisted state, and decoding it back with every field checked.

The file is written only by this daemon, so anything in it that is not
exactly what :func:`encode` writes (a wrong type, a value out of range, a
calendar that is no calendar) means the file was damaged or edited: the whole
file is then refused with :class:`StateFormatError` and
:class:`scheduler_api.persist.StateFile` moves it aside (see README, Failure
behaviour). Unknown keys are ignored, so a file from a newer version with
more keys still loads. Pure functions: no I/O, no clock; thread-safe.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from .calendar_parse import CalendarError, parse_calendar
from .config import KINDS
from .race_calendar import SESSION_NAMES
from .state import COUNTERS, JSON_SEPARATORS, CalendarRecord, Persisted, SyncRecord

STATE_VERSION = 1
MAX_TS = 4102444800  # 2100-01-01T00:00:00Z: no timestamp this daemon writes lies beyond it
MAX_COUNT = 2**53  # counters stay exact in any JSON reader
SEASONS = (1950, 2100)
ROUNDS = (0, 99)
MAX_ATTEMPT = 1000
MAX_DURATION_MS = 366 * 86400 * 1000
MAX_TEXT = 4096  # error reasons are at most 300 characters; sources are URLs or paths
TRIGGERS = ("schedule", "manual")
OUTCOMES = ("ok", "failed", "timeout")

# Calendar entries that parse_calendar skips were skipped (and warned about) when the calendar was
# first read, and will be again when the scheduler loads it: checking the body here stays quiet.
_QUIET = logging.Logger("scheduler_api.state_format.quiet", logging.CRITICAL + 1)


class StateFormatError(ValueError):
    """A state file's content is not a state this version wrote; the message names the first bad field."""


def encode(persisted: Persisted) -> bytes:
    """The state file's bytes: the whole state as compact JSON.

    Records and the calendar are immutable and carry their own encoded JSON
    (``json_text``), so a save costs a join, not a walk of 500 records and
    the calendar.
    """
    calendar_text = "null" if persisted.calendar is None else persisted.calendar.json_text
    history_text = ",".join(record.json_text for record in persisted.history)
    return (
        f'{{"version":{STATE_VERSION},"last_syncs":{json.dumps(dict(persisted.last_syncs), separators=JSON_SEPARATORS)},'
        f'"calendar":{calendar_text},"history":[{history_text}],'
        f'"counters":{json.dumps(dict(persisted.counters), separators=JSON_SEPARATORS)}}}'
    ).encode("utf-8")


def decode(data: Any) -> Persisted:
    """Check a decoded state object field by field and build what it holds.

    Expected: an object with ``version`` 1; ``last_syncs`` an object of kind
    -> UTC unix seconds (int, 1970 to 2100) or null; ``calendar`` null or
    ``{"body", "source", "fetched_at"}`` whose body is a calendar with at
    least one round; ``history`` a list of sync records (kind, parameters
    with season 1950-2100, round 0-99 and a session name, trigger, outcome,
    attempt >= 1, HTTP status 100-599 or null, duration, start and end,
    error); ``counters`` an object of non-negative integers. ``calendar``,
    ``history`` and ``counters`` may be absent.

    :param data: the result of ``json.loads`` on the file, any type.
    :returns: the persisted state.
    :raises StateFormatError: naming the first field that is wrong.
    """
    if not isinstance(data, dict):
        raise StateFormatError(f"expected a JSON object, got {_kind_of(data)}")
    if data.get("version") != STATE_VERSION:
        raise StateFormatError(f"version: expected {STATE_VERSION}, got {_shown(data.get('version'))}")
    raw_last = _field(data, "last_syncs", dict, "an object")
    last_syncs = {kind: _ts(raw_last.get(kind), f"last_syncs.{kind}", optional=True) for kind in KINDS}
    raw_history = _field(data, "history", list, "a list", default=[])
    history = tuple(_record(item, f"history[{index}]") for index, item in enumerate(raw_history))
    raw_counters = _field(data, "counters", dict, "an object", default={})
    counters = {}
    for name in COUNTERS:
        if name in raw_counters:
            counters[name] = _int(raw_counters[name], f"counters.{name}", 0, MAX_COUNT)
    return Persisted(last_syncs, _calendar(data.get("calendar")), history, counters)


def _calendar(raw: Any) -> CalendarRecord | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StateFormatError(f"calendar: expected an object or null, got {_kind_of(raw)}")
    if "body" not in raw:
        raise StateFormatError("calendar.body: missing")
    try:
        rounds = parse_calendar(raw["body"], _QUIET).rounds
    except (CalendarError, RecursionError) as exc:
        raise StateFormatError(f"calendar.body: not a calendar ({exc})") from None
    if not rounds:
        raise StateFormatError("calendar.body: a calendar without rounds")
    source = _text(raw.get("source"), "calendar.source", optional=False)
    return CalendarRecord(raw["body"], source, _ts(raw.get("fetched_at"), "calendar.fetched_at", optional=False))


def _record(item: Any, where: str) -> SyncRecord:
    if not isinstance(item, dict):
        raise StateFormatError(f"{where}: expected a sync record object, got {_kind_of(item)}")
    params = _field(item, "parameters", dict, "an object", where=where)
    return SyncRecord(
        kind=_choice(item.get("kind"), f"{where}.kind", KINDS),
        season=_opt_int(params.get("season"), f"{where}.parameters.season", *SEASONS),
        round=_opt_int(params.get("round"), f"{where}.parameters.round", *ROUNDS),
        session=None if params.get("session") is None else _choice(
            params["session"], f"{where}.parameters.session", SESSION_NAMES),
        trigger=_choice(item.get("trigger"), f"{where}.trigger", TRIGGERS),
        outcome=_choice(item.get("outcome"), f"{where}.outcome", OUTCOMES),
        attempt=_int(item.get("attempt"), f"{where}.attempt", 1, MAX_ATTEMPT),
        http_status=_opt_int(item.get("http_status"), f"{where}.http_status", 100, 599),
        duration_ms=_int(item.get("duration_ms"), f"{where}.duration_ms", 0, MAX_DURATION_MS),
        started_at=_ts(item.get("started_at"), f"{where}.started_at", optional=False),
        finished_at=_ts(item.get("finished_at"), f"{where}.finished_at", optional=False),
        error=_text(item.get("error"), f"{where}.error", optional=True),
    )


# -- one value ------------------------------------------------------------


def _field(data: Mapping[str, Any], name: str, kind: type, expected: str, default: Any = None,
           where: str = "") -> Any:
    label = f"{where}.{name}" if where else name
    value = data.get(name, default)
    if not isinstance(value, kind):
        raise StateFormatError(f"{label}: expected {expected}, got {_kind_of(value)}")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StateFormatError(f"{where}: expected an integer from {low} to {high}, got {_shown(value)}")
    return value


def _opt_int(value: Any, where: str, low: int, high: int) -> int | None:
    return None if value is None else _int(value, where, low, high)


def _ts(value: Any, where: str, optional: bool) -> int | None:
    if value is None and optional:
        return None
    return _int(value, where, 0, MAX_TS)


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise StateFormatError(f"{where}: expected one of {', '.join(choices)}, got {_shown(value)}")
    return value


def _text(value: Any, where: str, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise StateFormatError(f"{where}: expected a string of at most {MAX_TEXT} characters, got {_shown(value)}")
    return value


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """:returns: a value for a log line: short, whatever its size (a 400-digit year stays one line)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else _kind_of(value)
    return text if len(text) <= 60 else text[:57] + "..."
