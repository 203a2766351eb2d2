"""The fetcher budget: calls per hour each kind makes when fetcher_service fails every call.

In-process, on a simulated clock, calling nothing: the real
:class:`scheduler_api.scheduler.Scheduler` with the default configuration
and the real 2026 calendar, and a client that fails every call in one way:

- ``fast 500``: HTTP 500 at once (transient: retried);
- ``slow 500``: HTTP 500 after 40 s, like a seasons walk failing at its final
  write (transient: retried, but never sooner than 40 s after it ended);
- ``404``: a route the fetcher does not have (permanent: once per slot);
- ``timeout``: no answer within ``FETCHER_TIMEOUT`` (300 s; once per slot).

Each kind is run on its own (the others turned off), since kinds run on
their own workers and a slow call of one never delays another; each for the
first hour after start-up (catch-up included) in a race weekend (Saturday 2026-12-05 06:00Z, Abu Dhabi: rounds every 30 s, standings
every 5 min), in the Abu Dhabi race's live window (Sunday 2026-12-06 13:00Z:
results every 30 s too) and off-season (2026-11-30 12:00Z).

Run alone: ``python bench/budget.py``; ``bench/run.py`` prints it in its table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from scheduler_api.calendar_parse import parse_calendar  # noqa: E402
from scheduler_api.config import KINDS, Config  # noqa: E402
from scheduler_api.fetcher import Outcome  # noqa: E402
from scheduler_api.plan import GivenCalendar, SimClock, parse_instant  # noqa: E402
from scheduler_api.scheduler import Scheduler  # noqa: E402
from scheduler_api.state import State  # noqa: E402
from scheduler_api.workers import InlineExecutor  # noqa: E402

HOUR_S = 3600.0
MODES = {"live session": "2026-12-06T13:00:00Z", "race weekend": "2026-12-05T06:00:00Z",
         "off-season": "2026-11-30T12:00:00Z"}
FAILURES = {  # name -> (outcome, seconds the call takes)
    "fast 500": (Outcome("failed", 500, "HTTP 500: boom", 5), 0.005),
    "slow 500": (Outcome("failed", 500, "HTTP 500: Failed to fetch details for seasons", 40_000), 40.0),
    "404": (Outcome("failed", 404, "HTTP 404 POST /fetch/standings?season=2026: Not Found", 5), 0.005),
    "timeout": (Outcome("timeout", None, "no answer: deadline of 300s passed", 300_000, failure="timeout",
                        fetcher_called=True), 300.0),
}


class FailingClient:
    """Fails every call with one outcome, after advancing the simulated clock by the call's duration."""

    def __init__(self, clock: SimClock, outcome: Outcome, takes_s: float) -> None:
        self.clock, self.outcome, self.takes_s = clock, outcome, takes_s
        self.calls: list[tuple[str, float]] = []

    def sync(self, key, session_name=None, before_send=None) -> Outcome:
        if before_send is not None:
            before_send()
        self.calls.append((key.kind, self.clock.now))
        self.clock.now += self.takes_s
        return self.outcome

    def close(self) -> None:
        pass


def calls_per_hour(at: str, outcome: Outcome, takes_s: float) -> dict[str, int]:
    """:returns: kind -> fetcher calls in the first hour after start-up at ``at``."""
    return {kind: _one_kind(kind, at, outcome, takes_s) for kind in KINDS}


def _one_kind(kind: str, at: str, outcome: Outcome, takes_s: float) -> int:
    with open(os.path.join(ROOT, "tests", "data", "ergast-2026.json"), encoding="utf-8") as handle:
        calendar = parse_calendar(json.load(handle))
    paths = {other: ("off" if other != kind else path) for other, path in Config().fetch_paths.items()}
    config = dataclasses.replace(Config(), fetch_paths=paths)
    clock = SimClock(float(parse_instant(at)))
    client = FailingClient(clock, outcome, takes_s)
    scheduler = Scheduler(config, State(), clock, InlineExecutor(client), lambda: client, random.Random(0),
                          calendar_source=GivenCalendar(calendar, {}))
    start = clock.now
    scheduler.start()
    while clock.now < start + HOUR_S:
        next_mono = scheduler.tick(clock.now)
        if next_mono is None:
            break
        clock.now = max(clock.now, next_mono)
    return sum(1 for k, at_s in client.calls if k == kind and at_s < start + HOUR_S)


def budget() -> dict[tuple[str, str], dict[str, int]]:
    """:returns: (mode, failure) -> kind -> calls in the hour."""
    return {(mode, name): calls_per_hour(at, *FAILURES[name]) for mode, at in MODES.items() for name in FAILURES}


def render(figures: dict[tuple[str, str], dict[str, int]]) -> str:
    """:returns: the budget as a table: one row per mode and failure, calls in the hour per kind."""
    lines = ["Fetcher budget: calls in the first hour when fetcher_service fails every call",
             f"  {'mode':<14}{'failure':<10}" + "".join(f"{kind:>11}" for kind in KINDS)]
    for (mode, name), counts in figures.items():
        lines.append(f"  {mode:<14}{name:<10}" + "".join(f"{counts[kind]:>11}" for kind in KINDS))
    return "\n".join(lines)


def main() -> int:
    logging.disable(logging.WARNING)  # one line per failed attempt otherwise
    print(render(budget()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
