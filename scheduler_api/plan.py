"""plan: what the scheduler would do over a window, simulated on the real scheduler without calling anything."""

from __future__ import annotations

import datetime
import json
import logging
import random
from typing import Any, Callable

from .config import KINDS, Config
from .durations import format_duration
from .fetcher import Outcome, SyncKey
from .calendar_parse import parse_calendar
from .race_calendar import mode_at, next_live_window_start, next_mode_change
from .scheduler import Scheduler
from .state import CalendarRecord, State
from .workers import InlineExecutor

DEFAULT_HOURS = 48.0


class _SimClock:
    """A clock that stands still until told; monotonic time equals wall time here."""

    def __init__(self, now_ts: float) -> None:
        self.now = now_ts

    def monotonic(self) -> float:
        return self.now

    def now_ts(self) -> float:
        return self.now


class _RecordingClient:
    """A :class:`SyncClient` standing in for FetcherClient: records each sync with its due time and succeeds."""

    def __init__(self, clock: _SimClock) -> None:
        self.clock = clock
        self.syncs: list[dict[str, Any]] = []

    def sync(
        self, key: SyncKey, session_name: str | None = None, before_send: Callable[[], None] | None = None
    ) -> Outcome:
        """Record the sync at the simulated instant; calls nothing.

        :returns: an ``ok`` :class:`Outcome` with status 200 and no duration.
        """
        self.syncs.append({"kind": key.kind, "due_at": int(self.clock.now), "season": key.season, "round": key.round})
        return Outcome("ok", 200, None, 0)

    def close(self) -> None:
        """Nothing to close."""


def iso(ts: float | None) -> str:
    """:returns: UTC unix seconds as ``2026-12-06T13:30:00Z``, or ``-`` for None."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> int:
    """Read ``--at``: ISO 8601 with ``Z`` or an offset, or UTC unix seconds.

    :returns: UTC unix seconds.
    :raises ValueError: when it is neither, or has no time zone.
    """
    if text.isascii() and text.isdigit():
        return int(text)
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-12-06T13:30:00Z")
    return int(when.timestamp())


def build_plan(config: Config, calendar_body: Any | None, at_ts: int, hours: float = DEFAULT_HOURS) -> dict[str, Any]:
    """Simulate the scheduler from a fresh start at ``at_ts`` for ``hours``, calling nothing.

    Uses the real :class:`Scheduler` with a simulated clock and a client that
    succeeds at once, so the plan follows exactly the daemon's rules (catch-up
    at start, fixed rate, mode changes). Nothing is called.

    :param config: intervals, leads and tails.
    :param calendar_body: a decoded calendar (Ergast or content-API shape), or None.
    :param at_ts: UTC unix seconds.
    :param hours: the window, hours.
    :returns: ``{"at", "is_race_weekend", "live_session", "current_intervals",
        "next_syncs": [{"kind", "due_at", "season", "round"}...], ...}``.
    :raises ValueError: when the calendar's shape is not recognised.
    """
    clock = _SimClock(float(at_ts))
    state = State()
    calendar = None
    if calendar_body is not None:
        calendar = parse_calendar(calendar_body)
        state.set_calendar(CalendarRecord(calendar_body, "plan", at_ts))
    client = _RecordingClient(clock)
    scheduler = Scheduler(
        config, state, clock, InlineExecutor(client), lambda: client, random.Random(0)
    )
    windows = scheduler.windows
    quiet = logging.getLogger("scheduler_api")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        scheduler.start()
        end_ts = at_ts + hours * 3600
        view = state.snapshot(history=False).schedule
        while clock.now <= end_ts:
            next_mono = scheduler.tick(clock.now)
            if clock.now == at_ts:
                view = state.snapshot(history=False).schedule
            if next_mono is None or next_mono > end_ts:
                break
            clock.now = max(next_mono, clock.now + 0.001)
    finally:
        quiet.setLevel(level)
    mode = mode_at(calendar, at_ts, windows)
    live = None
    if mode.live is not None:
        live = {"season": mode.live.season, "round": mode.live.round, "session": mode.live.name,
                "starts_at": mode.live.start_ts, "ends_at": mode.live.end_ts}
    intervals = {kind: config.interval_s(kind, mode.is_race_weekend, mode.live is not None) for kind in KINDS}
    return {
        "at": at_ts,
        "hours": hours,
        "mode": mode.name,
        "is_race_weekend": mode.is_race_weekend,
        "race_weekend": None if mode.race_round is None else {
            "season": mode.race_round.season, "round": mode.race_round.round, "race_name": mode.race_round.race_name},
        "live_session": live,
        "current_intervals": {k: ("paused" if v is None else format_duration(v)) for k, v in intervals.items()
                              if k != "seasons"},
        "seasons_interval": format_duration(config.seasons_interval_s),
        "next_mode_change": next_mode_change(calendar, at_ts, windows),
        "next_live_window": next_live_window_start(calendar, at_ts, windows),
        "season": view.season,
        "calendar_loaded": calendar is not None,
        "next_syncs": client.syncs,
    }


def render_text(plan: dict[str, Any], per_kind: int = 5) -> str:
    """:returns: the plan for a terminal: mode, intervals, then the first due times of each kind."""
    lines = [f"at {iso(plan['at'])} (window {plan['hours']:g}h)"]
    weekend = plan["race_weekend"]
    lines.append(
        f"mode: {plan['mode']}  race weekend: {'yes' if plan['is_race_weekend'] else 'no'}"
        + (f"  (season {weekend['season']} round {weekend['round']}, {weekend['race_name']})" if weekend else "")
    )
    live = plan["live_session"]
    if live:
        lines.append(f"live session: round {live['round']} {live['session']} "
                     f"{iso(live['starts_at'])} to {iso(live['ends_at'])}")
    else:
        lines.append("live session: none")
    intervals = plan["current_intervals"]
    lines.append(f"intervals: seasons {plan['seasons_interval']}, rounds {intervals['rounds']}, "
                 f"results {intervals['results']}, standings {intervals['standings']}")
    lines.append(f"next mode change: {iso(plan['next_mode_change'])}")
    if not plan["calendar_loaded"]:
        lines.append("calendar: none (off-season mode)")
    lines.append(f"next syncs (season {plan['season']}):")
    for kind in KINDS:
        dues = [s for s in plan["next_syncs"] if s["kind"] == kind]
        shown = ", ".join(_short_times([s["due_at"] for s in dues[:per_kind]]))
        more = f" ... {len(dues)} in the window" if len(dues) > per_kind else ""
        if not shown and kind == "results":
            shown = f"none in the window (paused; next live window {iso(plan['next_live_window'])})"
        lines.append(f"  {kind:<10} {shown or 'none in the window'}{more}")
    return "\n".join(lines)


def _short_times(dues: list[int]) -> list[str]:
    """:returns: ISO times, the date left out where it repeats the previous one."""
    shown, last_date = [], None
    for due in dues:
        text = iso(due)
        shown.append(text[11:] if text[:10] == last_date else text)
        last_date = text[:10]
    return shown


def render_json(plan: dict[str, Any]) -> str:
    """:returns: the plan as one JSON object."""
    return json.dumps(plan)
