"""Cost growth: one ``tick`` and one ``/status`` answer as the calendar and the history grow; and ``plan``'s speed.

In-process, on a simulated clock, calling nothing: the real
:class:`scheduler_api.scheduler.Scheduler` and :class:`scheduler_api.api.App`
with a client that succeeds at once. The calendars repeat the real 2026
season (``tests/data/ergast-2026.json``), shifted by 52 weeks a pass and
numbered on, until they hold 24, 240 or 2,400 rounds (built as the calendar
model directly: the parser refuses round numbers over 99). Each history is
50 or 500 records.

- **tick**: a whole race weekend of the middle round, from 1 h before its
  weekend window to 1 h after, ticked at every due time (rounds and
  standings every 30 s and 5 min, results every 30 s while live, the mode
  changes between): seconds per tick. A tick at a window boundary also
  re-evaluates the mode (:class:`scheduler_api.mode_tracker.ModeTracker`,
  over the rounds near the instant), timed on its own.
- **/status**: one answer (route and JSON encoding, as the server does) while
  the middle round's race is live: seconds per answer.
- **plan**: ``python -m scheduler_api plan`` for 48 h inside a race weekend
  and off-season, the median wall time of five runs each, and the length of
  the race-weekend output.

Run alone: ``python bench/costs.py``; ``bench/run.py`` runs it too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from scheduler_api.api import App  # noqa: E402
from scheduler_api.calendar_parse import parse_calendar  # noqa: E402
from scheduler_api.config import Config  # noqa: E402
from scheduler_api.fetcher import Outcome  # noqa: E402
from scheduler_api.health import FetcherHealth  # noqa: E402
from scheduler_api.plan import GivenCalendar, SimClock  # noqa: E402
from scheduler_api.mode_tracker import ModeTracker  # noqa: E402
from scheduler_api.race_calendar import Calendar, Windows, weekend_window  # noqa: E402
from scheduler_api.scheduler import Scheduler  # noqa: E402
from scheduler_api.state import Persisted, State, SyncRecord  # noqa: E402
from scheduler_api.workers import InlineExecutor  # noqa: E402

ROUNDS = (24, 240, 2400)
HISTORIES = (50, 500)
WEEK_S = 7 * 86400
PLAN_RACE_WEEKEND = "2026-12-05T12:00:00Z"  # Abu Dhabi 2026, before qualifying
PLAN_OFF_SEASON = "2026-11-30T12:00:00Z"


class InstantClient:
    """A sync client that succeeds at once and calls nothing."""

    def sync(self, key, session_name=None, before_send=None) -> Outcome:
        return Outcome("ok", 200, None, 0)

    def close(self) -> None:
        pass


def grown_calendar(rounds: int) -> Calendar:
    """:returns: the real 2026 season repeated, 52 weeks later each pass, numbered 1..``rounds``."""
    with open(os.path.join(ROOT, "tests", "data", "ergast-2026.json"), encoding="utf-8") as handle:
        season = parse_calendar(json.load(handle))
    grown = []
    for number in range(rounds):
        base = season.rounds[number % len(season.rounds)]
        shift_s = (number // len(season.rounds)) * 52 * WEEK_S
        sessions = tuple(dataclasses.replace(s, round=number + 1, start_ts=s.start_ts + shift_s,
                                             end_ts=s.end_ts + shift_s) for s in base.sessions)
        grown.append(dataclasses.replace(base, round=number + 1, sessions=sessions))
    return Calendar(season.season, tuple(grown))


def history(records: int, at_ts: int) -> tuple[SyncRecord, ...]:
    """:returns: ``records`` sync records ending at ``at_ts``, one in ten a failure."""
    out = []
    for index in range(records):
        ok = index % 10
        started = at_ts - (records - index) * 30
        out.append(SyncRecord("rounds", 2026, None, None, "schedule", "ok" if ok else "failed", 1,
                              200 if ok else 500, 412, started, started + 1, None if ok else "HTTP 500: boom"))
    return tuple(out)


def build(calendar: Calendar, records: int, at_ts: float) -> tuple[Scheduler, App, SimClock]:
    """The real scheduler and API over a state holding ``records`` history records."""
    clock = SimClock(float(at_ts))
    state = State(Persisted(history=history(records, int(at_ts))))
    client = InstantClient()
    executor = InlineExecutor(client)
    scheduler = Scheduler(Config(), state, clock, executor, lambda: client, random.Random(0),
                          calendar_source=GivenCalendar(calendar, {}))
    health = FetcherHealth(clock, 10.0, "/health", executor.submit)
    app = App(Config(), state, scheduler, health, clock, lambda: True)
    scheduler.start()
    return scheduler, app, clock


class Cost(NamedTuple):
    """Best costs, microseconds: per tick over a race weekend, per mode re-evaluation at a window
    boundary (what a boundary tick runs once), and per /status answer."""

    rounds: int
    records: int
    tick_us: float
    boundary_us: float
    ticks: int
    status_us: float


def measure(calendar: Calendar, records: int) -> tuple[float, float, float, int]:
    """One pass: :returns: seconds per tick over the middle round's weekend, per mode re-evaluation at a
    boundary, per /status answer, and the number of ticks."""
    middle = calendar.rounds[len(calendar.rounds) // 2]
    config = Config()
    windows = Windows(config.race_weekend_lead_s, config.race_weekend_tail_s, config.live_lead_s, config.live_tail_s)
    start_ts, end_ts = weekend_window(middle, windows)
    scheduler, app, clock = build(calendar, records, start_ts - 3600)
    ticks = 0
    began = time.perf_counter()
    while clock.now <= end_ts + 3600:
        next_ts = scheduler.tick(clock.now)
        ticks += 1
        if next_ts is None:
            break
        clock.now = max(next_ts, clock.now + 0.001)
    tick_s = (time.perf_counter() - began) / ticks
    tracker = ModeTracker(calendar, windows, start_ts)
    either_side = (middle.race.start_ts - windows.live_lead_s - 1, middle.race.start_ts)
    began = time.perf_counter()
    for index in range(200):  # each instant lies across a boundary from the last: re-evaluated every time
        tracker.update(either_side[index % 2])
    boundary_s = (time.perf_counter() - began) / 200
    clock.now = float(middle.race.start_ts + 1800)
    scheduler.tick(clock.now)
    answers = 500
    began = time.perf_counter()
    for _ in range(answers):
        _status, body, _headers = app.handle("GET", "/status")
        json.dumps(body).encode("utf-8")
    return tick_s, boundary_s, (time.perf_counter() - began) / answers, ticks


def growth(repeats: int = 5) -> list[Cost]:
    """The costs for every calendar size and history length, each the best of ``repeats`` passes.

    The passes go round all sizes in turn, so a busy moment of a shared
    machine slows one pass of each rather than every pass of one size, and
    the best pass is the one least disturbed (as ``timeit`` advises).
    """
    import logging

    logging.getLogger("scheduler_api").setLevel(logging.ERROR)
    calendars = {rounds: grown_calendar(rounds) for rounds in ROUNDS}
    best: dict[tuple[int, int], list] = {}
    for _ in range(repeats):
        for records in HISTORIES:
            for rounds in ROUNDS:
                passed = measure(calendars[rounds], records)
                kept = best.setdefault((rounds, records), list(passed))
                kept[:3] = [min(a, b) for a, b in zip(kept[:3], passed[:3])]
    return [Cost(rounds, records, tick_s * 1e6, boundary_s * 1e6, ticks, status_s * 1e6)
            for (rounds, records), (tick_s, boundary_s, status_s, ticks) in best.items()]


class PlanTiming(NamedTuple):
    race_weekend_s: float
    off_season_s: float
    race_weekend_lines: int


def plan_timing(runs: int = 5) -> PlanTiming:
    """:returns: the median wall time of ``plan`` inside a race weekend and off-season, and the former's lines."""
    def once(at: str) -> tuple[float, int]:
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "scheduler_api", "plan", "--at", at, "--calendar",
                              "ergast-2026.json"], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT}).stdout
        return time.perf_counter() - began, len(out.splitlines())

    weekend, off = [], []
    lines = 0
    for _ in range(runs):  # interleaved, so a busy moment of the machine hits both
        elapsed_s, lines = once(PLAN_RACE_WEEKEND)
        weekend.append(elapsed_s)
        off.append(once(PLAN_OFF_SEASON)[0])
    return PlanTiming(statistics.median(weekend), statistics.median(off), lines)


def main() -> int:
    for cost in growth():
        print(f"rounds={cost.rounds:5d} history={cost.records:3d} tick={cost.tick_us:7.1f} us "
              f"({cost.ticks} ticks; at a boundary {cost.boundary_us:7.1f} us) /status={cost.status_us:7.1f} us")
    timing = plan_timing()
    print(f"plan race weekend {timing.race_weekend_s:.3f} s ({timing.race_weekend_lines} lines), "
          f"off-season {timing.off_season_s:.3f} s, ratio {timing.race_weekend_s / timing.off_season_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
