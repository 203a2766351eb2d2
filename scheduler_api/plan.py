"""plan: what the scheduler would do over a window, simulated on the real scheduler without calling anything."""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import itertools
import json
import logging
import math
import random
from typing import Any, Callable, NamedTuple

from .calendar_overrides import load_overrides, parse_corrected
from .config import KINDS, OFF, Config
from .durations import format_duration
from .fetcher import Outcome, SyncKey
from .race_calendar import Calendar, Windows, mode_at, next_live_window_start, next_mode_change
from .scheduler import Scheduler
from .state import ScheduleView, State
from .workers import InlineExecutor

DEFAULT_HOURS = 48.0
#: ``--limit``: how many entries of ``next_syncs`` the JSON plan lists by default.
DEFAULT_LIMIT = 100
#: How many due times of each kind the text plan shows.
PER_KIND = 10
#: One row of the text plan's phase table: span, mode, round, session, then an interval per kind.
#: The last instant ``--at`` accepts: 2100-12-31T23:59:59Z, UTC unix seconds.
_LAST_INSTANT_TS = 4133980799
_PHASE_ROW = "{:<44}  {:<17} {:<5} {:<17}  {:<7} {:<6} {:<7} {:<9}"


class SimClock:
    """A clock that stands still until told (``now``, seconds); monotonic time equals UTC wall time here."""

    def __init__(self, now_ts: float) -> None:
        self.now = now_ts

    def monotonic(self) -> float:
        return self.now

    def now_ts(self) -> float:
        return self.now


class GivenCalendar:
    """A calendar source handing the scheduler one calendar, parsed and corrected once by the caller.

    It names a file (``file_path``), so the scheduler reads it at start-up
    before it sets the first due times, as it reads a ``CALENDAR_FILE``;
    every refresh hands over the very same calendar, so none changes anything.

    :param calendar: the calendar to hand over.
    :param body: its decoded body (what the state keeps).
    """

    file_path = "plan"

    def __init__(self, calendar: Calendar, body: Any) -> None:
        self.calendar = calendar
        self.body = body

    def describe(self, season: int) -> str:
        """:returns: ``plan``."""
        return self.file_path

    def load(self, season: int) -> tuple[Calendar, Any]:
        """:returns: the calendar and its body, the same objects every time."""
        return self.calendar, self.body

    def parse(self, body: Any) -> Calendar:
        """:returns: the calendar (only its own body is ever persisted here)."""
        return self.calendar


class _Due(NamedTuple):
    """One recorded sync: its due time (UTC unix seconds, float) and parameters."""

    at: float
    season: int | None
    round: int | None


class _RecordingClient:
    """A :class:`SyncClient` standing in for FetcherClient: records each sync at its due time and succeeds."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.dues: list[_Due] = []

    def sync(
        self, key: SyncKey, session_name: str | None = None, before_send: Callable[[], None] | None = None
    ) -> Outcome:
        """Record the sync at the simulated instant; calls nothing.

        :returns: an ``ok`` :class:`Outcome` with status 200 and no duration.
        """
        self.dues.append(_Due(self.clock.now, key.season, key.round))
        return Outcome("ok", 200, None, 0)

    def close(self) -> None:
        """Nothing to close."""


@dataclasses.dataclass
class _Run:
    """What one simulated scheduler saw: its exact first due times, how many in all, and its views.

    :ivar dues: the first due times, exact (at least ``keep`` of them, or all there are).
    :ivar total: how many syncs fall in the window, the ones skipped ahead over included.
    :ivar views: ``(from_ts, view)`` read at the start and at each mode boundary.
    :ivar windows: the window margins the scheduler used.
    """

    dues: list[_Due]
    total: int
    views: list[tuple[float, ScheduleView]]
    windows: Windows


def iso(ts: float | None) -> str:
    """:returns: UTC unix seconds as ``2026-12-06T13:30:00Z``, or ``-`` for None."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> int:
    """Read ``--at``: ISO 8601 with ``Z`` or an offset, or UTC unix seconds, from 1970 to 2100.

    :returns: UTC unix seconds.
    :raises ValueError: when it is neither, has no time zone, or lies outside 1970-2100.
    """
    if text.isascii() and text.isdigit():
        at_ts = int(text) if len(text) <= 12 else _LAST_INSTANT_TS + 1
    else:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-06T13:30:00Z")
        at_ts = int(when.timestamp())
    if not 0 <= at_ts <= _LAST_INSTANT_TS:
        raise ValueError("give an instant from 1970 to 2100")
    return at_ts


def _only(config: Config, kind: str | None) -> Config:
    """:returns: ``config`` with every kind but ``kind`` turned off (all of them for None)."""
    paths = {k: (path if k == kind else OFF) for k, path in config.fetch_paths.items()}
    return dataclasses.replace(config, fetch_paths=paths)


def _skip_to(last_ts: float, interval_s: float, boundary_ts: float, end_ts: float) -> float | None:
    """The latest slot of the grid through ``last_ts`` before the next mode boundary, within the window.

    :returns: that slot, UTC unix seconds, or None when it is the very next one (nothing to skip).
    """
    slots = math.floor((end_ts - last_ts) / interval_s)
    if boundary_ts != math.inf:
        slots = min(slots, math.ceil((boundary_ts - last_ts) / interval_s) - 1)
    return last_ts + slots * interval_s if slots >= 2 else None


def _simulate(config: Config, kind: str | None, source: GivenCalendar | None, at_ts: int, end_ts: float,
              keep: int) -> _Run:
    """Run the real scheduler for one kind alone (the others off) from a fresh start at ``at_ts``.

    Between two mode boundaries a kind's due times are a fixed-rate grid and
    nothing else changes, so once ``keep`` due times are recorded the clock
    skips ahead to the grid's last slot before the next boundary (or the
    window's end): the scheduler coalesces the slots in between into one sync
    there and counts them, and carries on exactly as if it had run each one.
    Kinds never depend on each other here (every sync succeeds at once).

    :param kind: the kind to simulate, or None for none (the mode boundaries only).
    :param source: the calendar, or None for none.
    :param keep: how many due times to record exactly before skipping ahead.
    """
    clock = SimClock(float(at_ts))
    state = State()
    client = _RecordingClient(clock)
    scheduler = Scheduler(_only(config, kind), state, clock, InlineExecutor(client), lambda: client, random.Random(0),
                          calendar_source=source)
    scheduler.start()
    views: list[tuple[float, ScheduleView]] = []
    boundary_ts = -math.inf
    exact = None
    while True:
        now_ts = clock.now
        next_ts = scheduler.tick(now_ts)
        if now_ts >= boundary_ts:
            view = state.snapshot(history=False).schedule
            views.append((max(boundary_ts, at_ts), view))
            boundary_ts = math.inf if view.next_mode_change_ts is None else view.next_mode_change_ts
        if next_ts is None or next_ts > end_ts:
            break
        dues = client.dues
        interval_s = views[-1][1].intervals_s.get(kind) if kind else None
        if interval_s and len(dues) >= keep and dues[-1].at == now_ts:
            skip_ts = _skip_to(now_ts, interval_s, boundary_ts, end_ts)
            if skip_ts is not None and skip_ts > next_ts:
                exact = len(dues) if exact is None else exact
                next_ts = skip_ts
        clock.now = max(next_ts, now_ts + 0.001)
    coalesced = state.snapshot(history=False).counters["coalesced"]
    dues = client.dues if exact is None else client.dues[:exact]
    return _Run(dues, len(client.dues) + coalesced, views, scheduler.windows)


def _intervals_text(intervals_s: dict[str, float | None]) -> dict[str, str]:
    """:returns: kind -> ``"30s"`` or ``"paused"``, as ``current_intervals`` in ``/status``."""
    return {kind: ("paused" if value is None else format_duration(value)) for kind, value in intervals_s.items()}


def _phases(runs: dict[str | None, _Run], end_ts: float) -> list[dict[str, Any]]:
    """Join the views of the runs (one per kind) into the phases of the window.

    Every run sees the same boundaries (they come from the calendar); each
    contributes its own kind's interval. A boundary that changes nothing
    (a live window ending inside another) does not start a phase.

    :returns: ``[{"from", "to", "mode", "round", "session", "current_intervals"}...]``,
        times in UTC unix seconds (int); ``current_intervals`` includes ``seasons``.
    """
    starts: dict[float, dict[str, Any]] = {}
    for kind, run in runs.items():
        for from_ts, view in run.views:
            phase = starts.setdefault(from_ts, {
                "mode": view.mode, "round": view.mode_round, "session": view.live_session or view.settling_session,
                "intervals": dict.fromkeys(KINDS),
            })
            if kind is not None:
                phase["intervals"][kind] = view.intervals_s.get(kind)
    phases: list[dict[str, Any]] = []
    for from_ts in sorted(starts):
        phase = starts[from_ts]
        entry = {"from": int(from_ts), "to": None, "mode": phase["mode"], "round": phase["round"],
                 "session": phase["session"], "current_intervals": _intervals_text(phase["intervals"])}
        if phases and all(phases[-1][k] == entry[k] for k in ("mode", "round", "session", "current_intervals")):
            continue
        if phases:
            phases[-1]["to"] = entry["from"]
        phases.append(entry)
    if phases:
        phases[-1]["to"] = int(end_ts)
    return phases


def _simulate_all(config: Config, source: GivenCalendar | None, at_ts: int, end_ts: float,
                  keep: int) -> dict[str | None, _Run]:
    """:returns: one run per kind not turned off (one run for none, ``None``, if all are), the log quiet meanwhile."""
    quiet = logging.getLogger("scheduler_api")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        kinds = [kind for kind in KINDS if not config.is_off(kind)] or [None]
        return {kind: _simulate(config, kind, source, at_ts, end_ts, keep) for kind in kinds}
    finally:
        quiet.setLevel(level)


def _mode_now(calendar: Calendar | None, at_ts: int, windows: Windows) -> dict[str, Any]:
    """:returns: the plan's keys about the instant itself: race weekend, live session, next changes."""
    mode = mode_at(calendar, at_ts, windows)
    live = None
    if mode.live is not None:
        live = {"season": mode.live.season, "round": mode.live.round, "session": mode.live.name,
                "starts_at": mode.live.start_ts, "ends_at": mode.live.end_ts}
    return {
        "is_race_weekend": mode.is_race_weekend,
        "race_weekend": None if mode.race_round is None else {
            "season": mode.race_round.season, "round": mode.race_round.round, "race_name": mode.race_round.race_name},
        "live_session": live,
        "next_mode_change": next_mode_change(calendar, at_ts, windows),
        "next_live_window": next_live_window_start(calendar, at_ts, windows),
    }


def build_plan(
    config: Config, calendar_body: Any | None, at_ts: int, hours: float = DEFAULT_HOURS, limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Simulate the scheduler from a fresh start at ``at_ts`` for ``hours``, calling nothing.

    Uses the real :class:`Scheduler` with a simulated clock and a client that
    succeeds at once, so the plan follows exactly the daemon's rules (catch-up
    at start, fixed rate, mode changes). The calendar is corrected by
    ``CALENDAR_OVERRIDES`` as the daemon's is (their warnings go to the log);
    ``overrides_in_force`` says how many changed it. Each kind is simulated on its own
    and skips ahead over the stretches of its grid nobody will read (see
    :func:`_simulate`), so a race weekend's thousands of due times cost about
    as much as an off-season's few: only their number is kept.

    :param config: intervals, leads and tails; kinds turned off stay off.
    :param calendar_body: a decoded calendar (Ergast or content-API shape), or None.
    :param at_ts: UTC unix seconds.
    :param hours: the window, hours.
    :param limit: how many entries of ``next_syncs`` to list (>= 0); ``next_syncs_total`` counts them all.
    :returns: ``{"at", "is_race_weekend", "live_session", "current_intervals",
        "next_syncs": [{"kind", "due_at", "season", "round"}...] (time order), "next_syncs_total",
        "per_kind": {kind: {"total", "first"}}, "phases", ...}``.
    :raises ValueError: when the calendar's shape is not recognised, or ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    calendar = None
    if calendar_body is not None:
        calendar = parse_corrected(calendar_body, load_overrides(config.calendar_overrides))
    source = None if calendar is None else GivenCalendar(calendar, calendar_body)
    end_ts = at_ts + hours * 3600
    runs = _simulate_all(config, source, at_ts, end_ts, max(limit, PER_KIND))
    first_view = next(iter(runs.values())).views[0][1]
    phases = _phases(runs, end_ts)
    listed = heapq.merge(*(
        [(due.at, KINDS.index(kind), due) for due in run.dues] for kind, run in runs.items() if kind is not None
    ))
    next_syncs = [{"kind": KINDS[index], "due_at": int(at), "season": due.season, "round": due.round}
                  for at, index, due in itertools.islice(listed, limit)]
    intervals = dict(phases[0]["current_intervals"])
    seasons_interval = intervals.pop("seasons")
    return {
        "at": at_ts,
        "hours": hours,
        "mode": first_view.mode,
        **_mode_now(calendar, at_ts, next(iter(runs.values())).windows),
        "current_intervals": intervals,
        "seasons_interval": seasons_interval,
        "season": first_view.season,
        "calendar_loaded": calendar is not None,
        "calendar_rounds": 0 if calendar is None else len(calendar.rounds),
        "overrides_in_force": 0 if calendar is None else calendar.overrides_in_force,
        "phases": phases,
        "next_syncs_total": sum(run.total for kind, run in runs.items() if kind is not None),
        "per_kind": {kind: {"total": runs[kind].total if kind in runs else 0,
                            "first": [int(due.at) for due in runs[kind].dues[:PER_KIND]] if kind in runs else []}
                     for kind in KINDS},
        "next_syncs": next_syncs,
    }


def render_text(plan: dict[str, Any]) -> str:
    """:returns: the plan for people: the mode now, the phases of the window, then per kind
    its first due times and how many follow."""
    lines = [f"plan at {iso(plan['at'])} for {plan['hours']:g}h, season {plan['season']}; "
             + (f"calendar of {plan['calendar_rounds']} rounds, overrides in force: {plan['overrides_in_force']}"
                if plan["calendar_loaded"] else "no calendar (off-season mode)")]
    weekend, live = plan["race_weekend"], plan["live_session"]
    lines.append(
        f"now: {plan['mode']}"
        + (f", round {weekend['round']} ({weekend['race_name']})" if weekend else "")
        + (f", {live['session']} {iso(live['starts_at'])} to {iso(live['ends_at'])}" if live else "")
    )
    lines.append(f"next mode change: {iso(plan['next_mode_change'])}")
    lines.append("")
    lines.append(_PHASE_ROW.format("phases (UTC)", "mode", "round", "session", *KINDS).rstrip())
    for phase in plan["phases"]:
        intervals = phase["current_intervals"]
        lines.append(_PHASE_ROW.format(
            f"{iso(phase['from'])} .. {iso(phase['to'])}", phase["mode"], _dash(phase["round"]),
            _dash(phase["session"]), *(intervals[kind] for kind in KINDS),
        ).rstrip())
    lines.append("")
    lines.append(f"next syncs: {plan['next_syncs_total']} in the window")
    for kind in KINDS:
        entry = plan["per_kind"][kind]
        shown = _short_times(entry["first"])
        if not shown:
            nothing = "none in the window"
            if kind == "results":
                nothing += f" (next live window {iso(plan['next_live_window'])})"
            lines.append(f"  {kind:<10} {nothing}")
            continue
        for start in range(0, len(shown), 5):
            label = kind if start == 0 else ""
            lines.append(f"  {label:<10} {', '.join(shown[start:start + 5])}")
        more = entry["total"] - len(shown)
        if more > 0:
            lines.append(f"  {'':<10} ... and {more} more")
    return "\n".join(lines)


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


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
