"""The scheduler's rules under faults and time, on a FakeClock: retries, clock steps, suspend, catch-up.

These drive the real scheduler through the ``harness`` fixture of
``conftest.py`` with a :class:`FakeFetcher` that fails on command; nothing
sleeps and no process starts. They are kept apart from ``test_scheduler.py``
(the steady-state rules) because they share that fetcher. The same faults
against a real daemon process are in ``test_proc_faults.py``.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
import requests
import responses

from conftest import FETCHER, FakeClock, load_calendar, ts
from scheduler_api.config import Config
from scheduler_api.timetable import retry_delay_s

# STAGGER off: these tests pin the instants of one shared grid (the stagger has its own tests).
FAST = Config(fetcher_url=FETCHER, seasons_interval_s=5.0, rounds_interval_off_season_s=5.0,
              standings_interval_off_season_s=5.0, stagger_s=0.0)
SLOW = Config(fetcher_url=FETCHER, stagger_s=0.0)  # the defaults: seasons 6h, rounds 30m, standings 1h off-season


class FakeFetcher:
    """A ``responses`` callback for every ``POST /fetch/...``: records calls, fails on command."""

    def __init__(self, clock: FakeClock, mocked: responses.RequestsMock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []  # (kind, monotonic s)
        self.answer = "ok"  # ok | refused | timeout | an HTTP status such as "429", "500", "503"
        self.retry_after = "1"
        self.takes_s = 0.0  # each call advances the fake clock this much before it answers
        mocked.add_callback(responses.POST, re.compile(re.escape(FETCHER) + r"/fetch/.*"), callback=self)

    def __call__(self, request: requests.PreparedRequest):
        kind = urllib.parse.urlsplit(request.url).path.rsplit("/", 1)[1]
        self.calls.append((kind, self.clock.mono))
        self.clock.advance(self.takes_s)
        if self.answer == "timeout":
            return requests.ReadTimeout("read timed out")
        if self.answer == "refused":
            return requests.ConnectionError("[Errno 111] Connection refused")
        if self.answer.isdigit():
            headers = {"Retry-After": self.retry_after} if self.answer in ("429", "503") else {}
            return int(self.answer), headers, json.dumps({"detail": "slow down"})
        return 200, {}, json.dumps({"success": True})

    def count(self, kind: str, since_mono: float = float("-inf"), until_mono: float = float("inf")) -> int:
        return sum(1 for k, m in self.calls if k == kind and since_mono <= m < until_mono)


# -- retries ---------------------------------------------------------------


def test_retry_backoff_full_jitter_starts_at_one_second_and_doubles(rng):
    for attempt, backoff_s in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        delays = [retry_delay_s(attempt, 0.0, 30.0, rng, max_attempts=10) for _ in range(200)]
        assert all(0.0 <= d <= backoff_s for d in delays)
        assert max(delays) > backoff_s / 2 and min(delays) < backoff_s / 2  # full jitter, not fixed
    assert retry_delay_s(4, 0.0, 8.0, rng, max_attempts=10) is None  # backoff reached the interval
    assert retry_delay_s(3, 0.0, 3600.0, rng) is None  # RETRY_MAX_ATTEMPTS (3) attempts made

    class Highest:
        def uniform(self, low: float, high: float) -> float:
            return high

    assert retry_delay_s(2, 0.0, 30.0, Highest()) == 2.0  # the jitter comes from the injected source


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_is_honoured_and_retries_never_run_past_next_slot(harness, clock, mocked, status):
    fetcher = FakeFetcher(clock, mocked)
    fetcher.answer = status
    fetcher.retry_after = "3"
    h = harness(config_=FAST).start()
    start = clock.mono
    h.tick()
    assert fetcher.count("seasons") == 1
    h.run_until(start + 2.99)
    assert fetcher.count("seasons") == 1  # Retry-After: 3 is a floor on the delay
    h.run_until(start + 4.99)
    assert fetcher.count("seasons") == 2
    # A Retry-After beyond the next slot drops the retry: the slot runs as usual.
    fetcher.retry_after = "60"
    h.run_until(start + 14.99)
    assert [m - start for k, m in fetcher.calls if k == "seasons"][2:] == [5.0, 10.0]


@pytest.mark.parametrize("outage", ["refused", "500"])
def test_ten_second_outage_at_five_second_intervals_is_bounded_and_syncs_resume(harness, clock, mocked, outage):
    fetcher = FakeFetcher(clock, mocked)
    h = harness(config_=FAST).start()
    start = clock.mono
    down_mono, up_mono = start + 2.0, start + 12.0
    h.run_until(down_mono - 0.001)
    fetcher.answer = outage
    h.run_until(up_mono - 0.001)
    fetcher.answer = "ok"
    h.run_until(start + 30.0)
    for kind in ("seasons", "rounds", "standings"):
        attempts = fetcher.count(kind, down_mono, up_mono)
        assert 2 <= attempts <= 8, (kind, attempts)
        resumed = min(m for k, m in fetcher.calls if k == kind and m >= up_mono)
        assert resumed - up_mono <= 5.0, kind
    assert h.state.snapshot().counters["retried"] > 0


SIX_HOURS = 6 * 3600


def _seasons_calls_per_slot(harness, clock, mocked, answer: str, takes_s: float = 0.0, slots: int = 2):
    """Every seasons call answers ``answer`` after ``takes_s``; :returns: per 6 h slot, the calls' (start, end)."""
    fetcher = FakeFetcher(clock, mocked)
    fetcher.answer, fetcher.takes_s = answer, takes_s
    h = harness(config_=SLOW).start()
    start = clock.mono
    h.run_until(start + slots * SIX_HOURS - 1)
    seasons = [m for k, m in fetcher.calls if k == "seasons"]
    return [[(m, m + takes_s) for m in seasons if start + i * SIX_HOURS <= m < start + (i + 1) * SIX_HOURS]
            for i in range(slots)]


def test_slow_transient_failure_is_retried_at_most_three_times_per_slot_and_paced_by_its_duration(
        harness, clock, mocked):
    # A seasons walk that fails with a 500 at its final write after 40 s, every time.
    for calls in _seasons_calls_per_slot(harness, clock, mocked, "500", takes_s=40.0):
        assert len(calls) == 3  # RETRY_MAX_ATTEMPTS
        gaps = [later[0] - earlier[1] for earlier, later in zip(calls, calls[1:])]
        assert all(gap >= 40.0 for gap in gaps), gaps  # never sooner than the attempt's duration after it ended


def test_permanent_failure_is_called_once_per_slot(harness, clock, mocked):
    for status in ("404", "405", "422", "501"):
        mocked.reset()
        assert [len(calls) for calls in _seasons_calls_per_slot(harness, clock, mocked, status)] == [1, 1], status


def test_timeout_is_not_retried_within_its_slot(harness, clock, mocked):
    calls = _seasons_calls_per_slot(harness, clock, mocked, "timeout", takes_s=300.0)
    assert [len(c) for c in calls] == [1, 1]


@pytest.mark.parametrize("status", ["408", "425", "429", "502", "503"])
def test_transient_statuses_are_retried_within_the_slot(harness, clock, mocked, status):
    assert [len(c) for c in _seasons_calls_per_slot(harness, clock, mocked, status, slots=1)] == [3]


def test_success_false_is_transient_and_retried(harness, clock, mocked):
    fetcher = FakeFetcher(clock, mocked)
    h = harness(config_=SLOW).start()
    mocked.replace(responses.POST, re.compile(re.escape(FETCHER) + r"/fetch/.*"),
                   json={"success": False, "message": "store busy"})
    h.run_until(clock.mono + 60)
    assert sum(1 for c in mocked.calls if "/fetch/seasons" in c.request.url) == 3


# The calls a 10-minute outage (connection refused) costs each kind, with the default intervals
# and RETRY_MAX_ATTEMPTS 3, on the real 2026 calendar: the fetcher budget of an outage.
OUTAGE_COST = {
    "off_season": ("2026-11-30T12:00:00Z", {"seasons": 0, "rounds": 3, "results": 0, "standings": 0}),
    "race_weekend": ("2026-12-05T06:00:00Z", {"seasons": 0, "rounds": 60, "results": 0, "standings": 6}),
    "live_session": ("2026-12-06T13:30:00Z", {"seasons": 0, "rounds": 60, "results": 60, "standings": 6}),
}


@pytest.mark.parametrize("mode", sorted(OUTAGE_COST))
def test_ten_minute_outage_costs_each_kind_a_bounded_number_of_calls(harness, clock, mocked, mode):
    at, expected = OUTAGE_COST[mode]
    clock.wall = ts(at)
    fetcher = FakeFetcher(clock, mocked)
    h = harness(config_=Config(fetcher_url=FETCHER), calendar=load_calendar("ergast-2026.json")).start()
    start = clock.mono
    h.run_until(start + 1500)  # start-up syncs succeed; the outage then covers an off-season rounds slot
    assert h.state.snapshot().schedule.mode == mode
    fetcher.answer = "refused"
    down_mono = clock.mono
    h.run_until(down_mono + 600 - 0.001)
    cost = {kind: fetcher.count(kind, down_mono, down_mono + 600) for kind in expected}
    assert cost == expected


# -- clock jumps, suspend, catch-up ---------------------------------------------


def _synced_at_start(harness, clock, mocked, config: Config = SLOW, **kwargs):
    fetcher = FakeFetcher(clock, mocked)
    h = harness(config_=config, **kwargs).start()
    h.tick()
    return fetcher, h


def test_suspend_causes_no_burst_and_no_stall(harness, clock, mocked):
    fetcher, h = _synced_at_start(harness, clock, mocked)
    assert [fetcher.count(k) for k in ("seasons", "rounds", "standings")] == [1, 1, 1]
    clock.advance(60)
    h.tick()
    clock.jump_wall(5 * 3600)  # suspended five hours: the monotonic clock stood still
    resumed = clock.mono
    h.tick()
    # rounds (30m) and standings (1h) were overdue: each runs once, not once per missed slot.
    assert fetcher.count("rounds", resumed) == 1
    assert fetcher.count("standings", resumed) == 1
    assert fetcher.count("seasons", resumed) == 0  # 5h01m < 6h: not yet due
    h.run_until(resumed + 3600)
    assert fetcher.count("rounds", resumed) == 3  # then the usual 30-minute cadence
    assert fetcher.count("seasons", resumed) == 1  # and seasons comes due an hour later, not 6h later


def test_wall_clock_step_forward_causes_no_burst(harness, clock, mocked):
    fetcher, h = _synced_at_start(harness, clock, mocked)
    clock.advance(10)
    h.tick()
    clock.jump_wall(86400)
    stepped = clock.mono
    h.run_until(stepped + 1)
    assert [fetcher.count(k, stepped) for k in ("seasons", "rounds", "standings")] == [1, 1, 1]
    h.run_until(stepped + 1800)
    assert fetcher.count("rounds", stepped) == 2


def test_wall_clock_step_backward_causes_no_stall(harness, clock, mocked):
    fetcher, h = _synced_at_start(harness, clock, mocked)
    clock.advance(10)
    h.tick()
    clock.jump_wall(-3 * 3600)
    stepped = clock.mono
    h.run_until(stepped + 3600)
    assert fetcher.count("rounds", stepped) == 2  # every 30 minutes on the monotonic clock
    assert fetcher.count("standings", stepped) == 1
    assert fetcher.count("seasons", stepped) == 0
    # A forward step that only undoes the backward one is not a suspend: no extra runs.
    clock.jump_wall(3 * 3600)
    again = clock.mono
    h.tick()
    assert fetcher.count("rounds", again) == 0


def test_future_last_sync_is_ignored_and_catch_up_runs_each_kind_once(harness, clock, mocked, tmp_path):
    path = tmp_path / "state.json"
    future_ts = int(clock.now_ts()) + 86400
    path.write_text(json.dumps({"version": 1, "last_syncs": {"seasons": future_ts, "rounds": future_ts,
                                                             "standings": future_ts, "results": None}}))
    fetcher, h = _synced_at_start(harness, clock, mocked, state_path=str(path))
    assert [fetcher.count(k) for k in ("seasons", "rounds", "standings", "results")] == [1, 1, 1, 0]
    last = h.state.snapshot().last_syncs
    assert all(last[k] is not None and last[k] <= clock.now_ts() for k in ("seasons", "rounds", "standings"))
    h.tick()
    assert len(fetcher.calls) == 3


def test_catch_up_at_start_runs_only_overdue_kinds_once(harness, clock, mocked, tmp_path):
    path = tmp_path / "state.json"
    now_ts = int(clock.now_ts())
    path.write_text(json.dumps({"version": 1, "last_syncs": {"seasons": None, "rounds": now_ts - 7200,
                                                             "standings": now_ts - 600, "results": None}}))
    fetcher, h = _synced_at_start(harness, clock, mocked, state_path=str(path))
    assert [fetcher.count(k) for k in ("seasons", "rounds", "standings")] == [1, 1, 0]
    start = clock.mono
    h.run_until(start + 3000 - 1)
    assert fetcher.count("standings") == 0
    h.run_until(start + 3000)
    assert fetcher.count("standings") == 1  # due at last sync + 1h, i.e. 50 minutes after start
