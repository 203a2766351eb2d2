"""Helpers shared by the calendar tests: UTC instants, lookups in a parsed calendar, a content-API body."""

from __future__ import annotations

from datetime import datetime, timezone

from scheduler_api.race_calendar import Calendar, Round, Session


def ts(*args: int) -> int:
    """:returns: UTC unix seconds for a UTC wall time given as (year, month, day[, hour[, minute[, second]]])."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def rnd(calendar: Calendar, number: int) -> Round:
    """:returns: the round numbered ``number``."""
    return next(r for r in calendar.rounds if r.round == number)


def sess(round_: Round, name: str) -> Session:
    """:returns: the round's session called ``name``."""
    return next(s for s in round_.sessions if s.name == name)


def content_body() -> dict:
    """A content-API body for 2026 Abu Dhabi (round 23), real session times."""
    sessions = [("practice_1", ts(2026, 12, 4, 9, 30)), ("practice_2", ts(2026, 12, 4, 13)),
                ("practice_3", ts(2026, 12, 5, 10, 30)), ("qualifying", ts(2026, 12, 5, 14)),
                ("race", ts(2026, 12, 6, 13))]
    return {"success": True, "result": {"rounds": [{
        "round_id": 23, "season": 2026, "first_date": ts(2026, 12, 4, 9, 30), "end_date": ts(2026, 12, 6, 13),
        "sessions": [{"type": name, "date": start, "is_live": False, "status": "scheduled"}
                     for name, start in sessions]}]}}

