"""Calendar overrides: an operator's corrections (CALENDAR_OVERRIDES) applied after every calendar load.

Real sources carry errors (Jolpica dates the 2023 and 2024 Las Vegas sessions
24 h early; rain-moved sessions keep their planned times). The overrides file
is a JSON list of corrections, each either a session's true start or a
cancellation::

    [{"season": 2024, "round": 22, "session": "race", "start": "2024-11-24T06:00:00Z",
      "note": "Jolpica has the local date"},
     {"season": 2026, "round": 4, "cancelled": true},
     {"season": 2026, "round": 5, "session": "sprint", "cancelled": true}]

A bad file or entry is a warning, never a crash: the calendar is then used as
it is, or without that entry. See README, Race calendar overrides.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .calendar_fields import (
    FieldError,
    Notes,
    decode_json,
    emit,
    instant,
    make_session,
    round_number,
    season_number,
    show,
)
from .calendar_parse import check_plausibility, parse_calendar
from .race_calendar import SESSION_NAMES, Calendar, Round, _session_order

logger = logging.getLogger(__name__)

#: The overrides file is read up to this size; a larger one is refused as a whole.
MAX_FILE_BYTES = 1 << 20
#: At most this many entries are used; the rest are warned about.
MAX_OVERRIDES = 200
_KEYS = frozenset({"season", "round", "session", "start", "cancelled", "canceled", "note"})


@dataclass(frozen=True)
class Override:
    """One correction: ``session`` None means the whole round; ``start_ts`` None means cancelled.

    ``entry`` is its 1-based position in the file, for messages; ``start_ts`` is UTC unix seconds.
    """

    entry: int
    season: int
    round: int
    session: str | None
    start_ts: int | None

    def target(self) -> str:
        """:returns: ``season=2024 round=22 session=race`` (no ``session=`` for a whole round)."""
        text = f"season={self.season} round={self.round}"
        return text if self.session is None else f"{text} session={self.session}"


@dataclass(frozen=True)
class Overrides:
    """The corrections read from ``path``, in file order; empty when there is no file or it is unusable.

    ``len(overrides)`` is how many were read (how many changed the calendar in
    use is :attr:`Calendar.overrides_in_force`).
    """

    path: str | None = None
    entries: tuple[Override, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)


def load_overrides(path: str | None, log: logging.Logger | None = None) -> Overrides:
    """Read the overrides file; never raises.

    Each entry is an object with ``season`` (1950–2100) and ``round`` (0–99),
    and either ``session`` (one of the seven session names) with ``start`` (an
    ISO 8601 UTC instant with ``Z`` or an offset, 1950–2100), or ``cancelled``
    ``true`` (with ``session``: that session; without: the whole round). An
    optional ``note`` is free text. A bad entry (unknown key, missing or bad
    field, both or neither action, the same target twice) is skipped with
    ``calendar override skipped entry=N reason=…``. A missing, unreadable,
    oversized (over 1 MiB), non-regular or non-JSON file, or one that is not a
    list, is one warning ``calendar overrides unusable path=… reason=…`` and
    no overrides: the calendar is used as it is.

    :param path: ``CALENDAR_OVERRIDES``, or None for no overrides (no warning).
    :param log: where messages go; this module's logger if None.
    :returns: the valid entries, at most :data:`MAX_OVERRIDES`.
    """
    log = log if log is not None else logger
    if path is None:
        return Overrides()
    try:
        body = decode_json(_read(path))
        if not isinstance(body, list):
            raise ValueError(f"expected a JSON list of overrides, got {type(body).__name__}")
    except (OSError, ValueError) as exc:
        log.warning("calendar overrides unusable path=%s reason=%s; the calendar is used as it is", path, exc)
        return Overrides(path)
    notes: Notes = []
    entries: list[Override] = []
    seen: dict[tuple, int] = {}
    for number, raw in enumerate(body, start=1):
        try:
            override = _entry(number, raw)
            target = (override.season, override.round, override.session)
            if target in seen:
                raise FieldError(f"same target as entry {seen[target]} ({override.target()})")
            if len(entries) >= MAX_OVERRIDES:
                raise FieldError(f"more than {MAX_OVERRIDES} overrides")
        except FieldError as exc:
            notes.append(("calendar override skipped entry=%d reason=%s", (number, exc)))
            continue
        seen[target] = number
        entries.append(override)
    emit(notes, log)
    log.info("calendar overrides loaded path=%s count=%d", path, len(entries))
    return Overrides(path, tuple(entries))


def _read(path: str) -> bytes:
    """:returns: the file's bytes; :raises OSError: when absent, unreadable, not a regular file
    (a FIFO is never waited on) or over :data:`MAX_FILE_BYTES`."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        handle = open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise OSError("larger than 1 MiB")
    return raw


def _entry(number: int, raw: object) -> Override:
    """:returns: one validated entry; :raises FieldError: naming what is wrong."""
    if not isinstance(raw, dict):
        raise FieldError(f"not an object ({type(raw).__name__})")
    unknown = sorted(show(k) for k in raw if k not in _KEYS)
    if unknown:
        raise FieldError(f"unknown key {', '.join(unknown[:3])} (expected {', '.join(sorted(_KEYS))})")
    season, round_no = season_number(raw.get("season")), round_number(raw.get("round"))
    session = raw.get("session")
    if session is not None and (not isinstance(session, str) or session not in SESSION_NAMES):
        raise FieldError(f"unknown session {show(session)} (expected one of {', '.join(SESSION_NAMES)})")
    flags = [raw[key] for key in ("cancelled", "canceled") if key in raw]
    if flags and flags != [True] * len(flags):
        raise FieldError(f"cancelled must be true, got {show(flags[0])}")
    if flags and "start" in raw:
        raise FieldError("give either start or cancelled, not both")
    if flags:
        return Override(number, season, round_no, session, None)
    if "start" not in raw or session is None:
        raise FieldError("give session and start, or cancelled: true")
    return Override(number, season, round_no, session, _start(raw["start"]))


def _start(value: object) -> int:
    """:returns: UTC unix seconds of ``2024-11-24T06:00:00Z`` (or with ``+HH:MM``); the zone is required."""
    date_s, sep, time_s = value.partition("T") if isinstance(value, str) else ("", "", "")
    if not sep or not (time_s.endswith("Z") or time_s[-6:-5] in ("+", "-")):
        raise FieldError(f"start must be an ISO 8601 instant with Z or an offset, got {show(value)}")
    return instant(date_s, time_s)


def apply(calendar: Calendar, overrides: Overrides, log: logging.Logger | None = None) -> Calendar:
    """Apply the overrides in file order; call it at each load that changes the calendar.

    A start override moves the session to that start (it then has a time; its
    expected end follows its expected duration); a cancellation removes the
    session, or the round (a round left with no session is removed too). Each
    one applied is logged at info (``calendar override applied entry=N …``);
    one whose round or session is not in the calendar is a warning
    ``calendar override matches nothing entry=N …``; one the calendar already
    agrees with is logged as unneeded and not counted.

    :param calendar: the calendar as parsed.
    :param overrides: from :func:`load_overrides`.
    :param log: where messages go; this module's logger if None.
    :returns: the corrected calendar, rounds re-sorted, ``overrides_in_force``
        counting the overrides that changed it; ``calendar`` itself when there are none.
    """
    if not overrides.entries:
        return calendar
    log = log if log is not None else logger
    rounds = {(r.season, r.round): r for r in calendar.rounds}
    applied = 0
    for override in overrides.entries:
        round_ = rounds.get((override.season, override.round))
        session = next((s for s in round_.sessions if s.name == override.session), None) if round_ else None
        if round_ is None or (override.session is not None and session is None):
            log.warning("calendar override matches nothing entry=%d %s", override.entry, override.target())
            continue
        if override.start_ts is None:
            kept = tuple(s for s in round_.sessions if s is not session) if session is not None else ()
            _put(rounds, round_, kept)
            log.info("calendar override applied entry=%d %s cancelled", override.entry, override.target())
        elif session.has_time and session.start_ts == override.start_ts:
            log.info("calendar override unneeded entry=%d %s start=%s: the calendar already says so",
                     override.entry, override.target(), _iso(override.start_ts))
            continue
        else:
            moved = make_session(session.season, session.round, session.name, override.start_ts, True,
                                 session.is_live)
            _put(rounds, round_, tuple(moved if s is session else s for s in round_.sessions))
            log.info("calendar override applied entry=%d %s start=%s was=%s", override.entry,
                     override.target(), _iso(override.start_ts), _iso(session.start_ts))
        applied += 1
    ordered = sorted(rounds.values(), key=lambda r: (r.first_start_ts, r.round))
    return Calendar(calendar.season, tuple(ordered), calendar.overrides_in_force + applied)


def _put(rounds: dict[tuple[int, int], Round], round_: Round, sessions: tuple) -> None:
    """Replace ``round_`` by one with ``sessions`` (sorted), or remove it when there are none."""
    key = (round_.season, round_.round)
    if sessions:
        rounds[key] = replace(round_, sessions=tuple(sorted(sessions, key=_session_order)))
    else:
        del rounds[key]


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_corrected(body: object, overrides: Overrides, log: logging.Logger | None = None) -> Calendar:
    """Parse a calendar body, apply the overrides, then warn about implausible rounds.

    The one way to turn a body into the calendar the daemon uses; call it only
    when the body changed (its warnings are meant once per change).

    :param body: the decoded JSON body.
    :param overrides: from :func:`load_overrides` (may be empty).
    :param log: where parse and plausibility warnings go; the ``scheduler_api.race_calendar``
        logger if None (override messages go to this module's logger).
    :returns: the corrected calendar.
    :raises CalendarError: if the body matches no calendar shape.
    """
    calendar = apply(parse_calendar(body, log, check=False), overrides)
    check_plausibility(calendar, log)
    return calendar
