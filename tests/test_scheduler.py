"""The scheduler's rules (fixed rate, modes, retries, overlap, calendar refresh), driven by tick() on a fake clock."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import threading

import pytest
import responses

from scheduler_api.calendar_source import CalendarSource
from scheduler_api.fetcher import SyncKey
from scheduler_api.runner import Flight
from scheduler_api.handover import HANDOVER_GUARD_S
from scheduler_api.scheduler import Scheduler
from scheduler_api.state import State

from conftest import FETCHER, FakeClock, load_calendar, make_client, ts

FETCH_RE = re.compile(re.escape(FETCHER) + r"/fetch/.*")


class Recorder:
    """Answers fetcher calls and records (kind, query, wall time); optionally fails or takes time."""

    def __init__(self, clock: FakeClock, status: int = 200, takes_s: float = 0.0) -> None:
        self.clock = clock
        self.status = status
        self.takes_s = takes_s
        self.calls: list[tuple[str, str, float]] = []

    def __call__(self, request):
        path, _, query = request.url[len(FETCHER):].partition("?")
        self.calls.append((path.rsplit("/", 1)[-1], query, self.clock.now_ts()))
        self.clock.advance(self.takes_s)
        if self.status >= 400:
            return self.status, {}, json.dumps({"detail": "upstream down"})
        return 200, {}, json.dumps({"success": True, "source": "jolpica", "count": 1, "timestamp": 0})

    def times(self, kind: str) -> list[float]:
        return [at for k, _, at in self.calls if k == kind]


@pytest.fixture
def recorder(mocked, clock) -> Recorder:
    rec = Recorder(clock)
    mocked.assert_all_requests_are_fired = False
    mocked.add_callback(responses.POST, FETCH_RE, callback=rec)
    return rec


# -- start-up ------------------------------------------------------------------

def test_catch_up_at_start_runs_never_synced_kinds_once(harness, recorder, clock):
    h = harness().start()
    h.tick()
    assert sorted(k for k, _, _ in recorder.calls) == ["rounds", "seasons", "standings"]
    h.tick()
    assert len(recorder.calls) == 3


def test_catch_up_at_start_waits_for_kinds_synced_within_their_interval(tmp_path, harness, recorder, clock):
    now = clock.now_ts()
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "last_syncs": {
        "seasons": int(now) - 3600, "rounds": int(now) - 7200, "results": None, "standings": int(now) - 600}}))
    h = harness(state_path=str(path)).start()
    h.tick()
    assert [k for k, _, _ in recorder.calls] == ["rounds"]
    nxt = h.state.snapshot().schedule.next_syncs
    assert nxt["seasons"] == int(now) - 3600 + 21600
    assert nxt["standings"] == int(now) - 600 + 3600


def test_no_calendar_runs_off_season_with_current_utc_year(harness, recorder):
    h = harness().start()
    h.tick()
    view = h.state.snapshot().schedule
    assert view.mode == "off_season" and view.season == 2026
    assert view.intervals_s == {"seasons": 21600.0, "rounds": 1800.0, "results": None, "standings": 3600.0}
    assert ("rounds", "season=2026", clock_now(h)) in recorder.calls


def clock_now(h) -> float:
    return h.clock.now_ts()


# -- fixed rate and misfires ---------------------------------------------------

def test_fixed_rate_has_no_drift_when_syncs_take_time(harness, recorder, clock, config):
    recorder.takes_s = 7.0  # each sync takes 7 s of the 30 min interval
    start = clock.now_ts()
    daily = dataclasses.replace(config, seasons_interval_s=86400.0, standings_interval_off_season_s=86400.0)
    h = harness(config_=daily).start()
    h.run_until(clock.mono + 4 * 1800 + 1)
    rounds = recorder.times("rounds")
    # next due = previous due + interval, not finish + interval: no 7 s creep per run
    assert rounds[1:] == [start + 1800, start + 3600, start + 5400, start + 7200]


def test_misfire_coalesces_once(harness, recorder, clock):
    h = harness().start()
    h.tick()
    first = recorder.times("rounds")[0]
    clock.advance(3.5 * 1800)  # machine busy: three and a half slots pass without a tick
    h.tick()
    rounds = recorder.times("rounds")
    assert len(rounds) == 2  # one run for the three missed slots
    assert h.state.snapshot().counters["coalesced"] >= 2
    assert h.state.snapshot().schedule.next_syncs["rounds"] == int(first + 4 * 1800)


# -- calendar-driven modes -----------------------------------------------------

def test_mode_change_tightens_intervals_at_once(harness, recorder, clock):
    # Abu Dhabi 2026: FP1 2026-12-04T09:30Z, so the race weekend starts at 2026-12-03T21:30Z
    clock.wall = ts("2026-12-03T21:00:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    h.tick()  # start-up syncs at 21:00; next rounds 21:30, standings 22:00 (off-season)
    assert h.state.snapshot().schedule.next_syncs["standings"] == ts("2026-12-03T22:00:00Z")
    h.run_until(clock.mono + 29 * 60 + 59)
    assert len(recorder.times("standings")) == 1
    h.run_until(clock.mono + 1)  # 21:30:00: race weekend
    view = h.state.snapshot().schedule
    assert view.mode == "race_weekend" and view.mode_round == 23
    assert recorder.times("standings")[-1] == ts("2026-12-03T21:30:00Z")  # min(22:00, 21:00 + 5m) -> now
    assert view.intervals_s["rounds"] == 30.0 and view.intervals_s["standings"] == 300.0
    assert view.next_syncs["rounds"] == ts("2026-12-03T21:30:30Z")


def test_results_paused_until_live_window_then_sync_live_round(harness, recorder, clock):
    clock.wall = ts("2026-12-06T12:50:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    h.tick()
    view = h.state.snapshot().schedule
    assert view.intervals_s["results"] is None
    assert view.next_syncs["results"] == ts("2026-12-06T12:55:00Z")  # race 13:00 minus LIVE_LEAD 5m
    h.run_until(clock.mono + 5 * 60 + 61)
    results = [(q, at) for k, q, at in recorder.calls if k == "results"]
    assert results[0] == ("season=2026&round=23", ts("2026-12-06T12:55:00Z"))
    assert [at for _, at in results][:3] == [ts("2026-12-06T12:55:00Z") + 30 * i for i in range(3)]
    assert h.state.snapshot().schedule.live_session == "race"


def test_results_pause_again_after_live_tail_when_settling_is_off(harness, recorder, clock, config):
    clock.wall = ts("2026-12-06T16:29:00Z")  # race 13:00 + 3h expected + 30m LIVE_TAIL = 16:30
    no_settle = dataclasses.replace(config, results_settle_window_s=0.0)
    h = harness(calendar=load_calendar("ergast-2026.json"), config_=no_settle).start()
    h.run_until(clock.mono + 120)
    results = recorder.times("results")
    assert results and max(results) < ts("2026-12-06T16:30:00Z")
    view = h.state.snapshot().schedule
    assert view.mode == "race_weekend" and view.intervals_s["results"] is None


def test_qatar_to_abu_dhabi_transition_on_real_2026_calendar(harness, recorder, clock):
    clock.wall = ts("2026-11-29T18:58:00Z")  # Qatar race live (16:00 + 3h + 30m tail)
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    modes = []
    original = h.state.publish_schedule

    def spy(view):
        if not modes or modes[-1][0] != view.mode:
            modes.append((view.mode, view.mode_round, int(clock.now_ts())))
        original(view)

    h.state.publish_schedule = spy
    h.run_until(clock.mono + (ts("2026-12-03T21:31:00Z") - ts("2026-11-29T18:58:00Z")))
    assert modes == [
        ("live_session", 22, ts("2026-11-29T18:58:00Z")),
        ("results_settling", 22, ts("2026-11-29T19:30:00Z")),  # race 16:00 + 3h: settles until 01:00
        ("race_weekend", 22, ts("2026-11-30T01:00:00Z")),
        ("off_season", None, ts("2026-11-30T07:00:00Z")),  # race end 19:00 + 12h tail
        ("race_weekend", 23, ts("2026-12-03T21:30:00Z")),  # Abu Dhabi FP1 09:30 - 12h lead
    ]
    off_season_rounds = [t for t in recorder.times("rounds")
                         if ts("2026-11-30T07:00:00Z") < t < ts("2026-12-03T21:30:00Z")]
    gaps = {b - a for a, b in zip(off_season_rounds, off_season_rounds[1:])}
    assert gaps == {1800}
    assert all(q == "season=2026&round=22" for k, q, _ in recorder.calls if k == "results")


def test_las_vegas_saturday_night_race_is_live_across_utc_midnight(harness, recorder, clock):
    # Las Vegas 2026 round 21: race Saturday 20:00 PST = 2026-11-22T04:00Z (Sunday in UTC)
    clock.wall = ts("2026-11-22T03:54:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    h.run_until(clock.mono + 120)
    results = [(q, at) for k, q, at in recorder.calls if k == "results"]
    assert results[0] == ("season=2026&round=21", ts("2026-11-22T03:55:00Z"))
    assert h.state.snapshot().schedule.mode_round == 21


def test_sprint_weekend_syncs_results_during_sprint_qualifying(harness, recorder, clock):
    body = load_calendar("ergast-2026.json")
    china = next(r for r in body["MRData"]["RaceTable"]["Races"] if r["round"] == "2")
    sq = china["SprintQualifying"]
    start = ts(f"{sq['date']}T{sq['time']}")
    clock.wall = start + 600
    h = harness(calendar=body).start()
    h.tick()
    assert h.state.snapshot().schedule.live_session == "sprint_qualifying"
    assert [q for k, q, _ in recorder.calls if k == "results"] == ["season=2026&round=2"]


def test_session_without_time_is_live_all_utc_day_in_2021(harness, recorder, clock):
    # 2021 Bahrain: practice on 2021-03-26 has a date but no time
    clock.wall = ts("2021-03-26T15:00:00Z")
    h = harness(calendar=load_calendar("ergast-2021.json")).start()
    h.tick()
    view = h.state.snapshot().schedule
    assert view.mode == "live_session" and view.mode_round == 1 and view.season == 2021
    assert [q for k, q, _ in recorder.calls if k == "results"] == ["season=2021&round=1"]
    assert [q for k, q, _ in recorder.calls if k == "rounds"] == ["season=2021"]


# -- retries -------------------------------------------------------------------

def test_failed_sync_retries_with_backoff_never_past_next_slot(harness, recorder, clock, config):
    recorder.status = 500
    fast = dataclasses.replace(config, rounds_interval_off_season_s=5.0, standings_interval_off_season_s=3600.0,
                               seasons_interval_s=3600.0)
    h = harness(config_=fast).start()
    h.run_until(clock.mono + 4.999)
    rounds = recorder.times("rounds")
    start = rounds[0]
    assert 2 <= len(rounds) <= 4  # attempts 1..4 at most inside one 5 s slot
    assert all(t < start + 5 for t in rounds)
    attempts = [r.attempt for r in h.state.snapshot().history if r.kind == "rounds"]
    assert attempts == list(range(1, len(rounds) + 1))


def test_failed_manual_trigger_never_ends_or_delays_the_scheduled_retry_chain(harness, mocked, clock, config):
    calls: list[tuple[str, float]] = []
    h = None

    def fail(request):
        manual = threading.current_thread().name == "manual"
        calls.append(("manual" if manual else "schedule", clock.mono))
        if manual:
            clock.advance(5.0)
            h.tick()  # the scheduled retry falls due while the manual trigger still runs
        return 500, {}, json.dumps({"detail": "upstream down"})

    mocked.assert_all_requests_are_fired = False
    mocked.add_callback(responses.POST, re.compile(re.escape(FETCHER) + r"/fetch/rounds.*"), callback=fail)
    mocked.add(responses.POST, re.compile(re.escape(FETCHER) + r"/fetch/(seasons|standings).*"), json={})
    h = harness(config_=dataclasses.replace(config, seasons_interval_s=86400.0,
                                            standings_interval_off_season_s=86400.0)).start()
    h.tick()  # rounds attempt 1 fails: a retry is filed within a second or so
    start = clock.mono
    manual = threading.Thread(target=h.scheduler.trigger, args=(SyncKey("rounds", 2026),), name="manual")
    manual.start()
    manual.join(5)
    h.run_until(start + 60)
    kinds = [k for k, _ in calls]
    assert kinds[:3] == ["schedule", "manual", "schedule"]  # the retry ran right after the failed trigger
    assert calls[2][1] - start <= 6.0  # not at the next slot, 30 minutes later
    attempts = [r.attempt for r in h.state.snapshot().history if r.kind == "rounds" and r.trigger == "schedule"]
    assert attempts == [1, 2, 3]  # and the chain went on to RETRY_MAX_ATTEMPTS


# -- overlap: skip and join ----------------------------------------------------

class DeferredExecutor:
    """Holds work until the test runs it, so a sync stays in flight."""

    def __init__(self, client) -> None:
        self.client = client
        self.queue = []

    def submit(self, work) -> None:
        self.queue.append(work)

    def run_all(self) -> None:
        while self.queue:
            self.queue.pop(0)(self.client)


def deferred_scheduler(config, clock, rng, **scheduler_kwargs):
    state = State()
    executor = DeferredExecutor(make_client(config, clock))
    scheduler = Scheduler(config, state, clock, executor, lambda: make_client(config, clock), rng, **scheduler_kwargs)
    return scheduler, state, executor


def test_scheduled_slot_is_skipped_while_same_sync_runs(recorder, clock, rng, config):
    scheduler, state, executor = deferred_scheduler(config, clock, rng)
    scheduler.start()
    scheduler.tick(clock.mono)
    assert "rounds:2026" in state.snapshot().schedule.in_flight
    clock.advance(1800)  # the next rounds slot comes while the first rounds sync still runs
    scheduler.tick(clock.mono)
    assert state.snapshot().counters["skipped"] == 1
    executor.run_all()
    assert len(recorder.times("rounds")) == 1  # the slot was skipped, not queued behind the running sync
    assert state.snapshot().schedule.next_syncs["rounds"] == int(clock.now_ts()) + 1800


def test_manual_trigger_joins_running_sync_without_second_call(recorder, clock, rng, config, monkeypatch):
    waiting = threading.Event()
    wait = Flight.wait

    def noted_wait(flight):
        waiting.set()  # the joiner has joined the flight and now waits for its outcome
        return wait(flight)

    monkeypatch.setattr(Flight, "wait", noted_wait)
    scheduler, state, executor = deferred_scheduler(config, clock, rng)
    scheduler.start()
    scheduler.tick(clock.mono)  # scheduled rounds sync for 2026 now in flight
    results = []
    joiner = threading.Thread(target=lambda: results.append(scheduler.trigger(SyncKey("rounds", 2026))))
    joiner.start()
    assert waiting.wait(5), "the manual trigger never joined the flight"
    executor.run_all()
    joiner.join(5)
    (outcome, joined), = results
    assert joined is True and outcome.ok
    assert len(recorder.times("rounds")) == 1


def test_manual_trigger_with_scheduled_parameters_counts_as_sync(harness, recorder, clock):
    h = harness().start()
    h.tick()
    clock.advance(600)
    outcome, joined = h.scheduler.trigger(SyncKey("rounds", 2026))
    assert outcome.ok and not joined
    snap = h.state.snapshot()
    assert snap.last_syncs["rounds"] == int(clock.now_ts())
    assert snap.schedule.next_syncs["rounds"] == int(clock.now_ts()) + 1800


def test_manual_trigger_for_another_season_does_not_move_schedule(harness, recorder, clock):
    h = harness().start()
    h.tick()
    before = h.state.snapshot()
    clock.advance(600)
    outcome, _ = h.scheduler.trigger(SyncKey("rounds", 2025))
    assert outcome.ok
    after = h.state.snapshot()
    assert after.last_syncs["rounds"] == before.last_syncs["rounds"]
    assert after.schedule.next_syncs["rounds"] == before.schedule.next_syncs["rounds"]


# -- calendar refresh ------------------------------------------------------------

CALENDAR_URL = "http://calendar.test/{season}.json"


def refreshing_harness(harness, config, rng, clock, **config_changes):
    cfg = dataclasses.replace(config, calendar_url=CALENDAR_URL, **config_changes)
    return harness(config_=cfg, calendar_source=CalendarSource(CALENDAR_URL, None))


def test_calendar_loaded_at_start_and_refreshed_after_rounds_sync(mocked, recorder, harness, config, rng, clock):
    mocked.add(responses.GET, "http://calendar.test/2026.json", json=load_calendar("ergast-2026.json"))
    h = refreshing_harness(harness, config, rng, clock).start()
    h.tick()
    h.tick()
    assert len([c for c in mocked.calls if c.request.method == "GET"]) == 1  # the start-up refresh
    h.run_until(clock.mono + 300)  # the rounds sync asked for one: CALENDAR_MIN_REFRESH_INTERVAL later
    gets = [c for c in mocked.calls if c.request.method == "GET"]
    assert len(gets) == 2
    view = h.state.snapshot().schedule
    assert view.calendar_loaded and view.calendar_rounds == 23
    assert h.state.snapshot().calendar.source == "http://calendar.test/2026.json"


def test_last_good_calendar_kept_when_refresh_fails(mocked, recorder, harness, config, rng, clock, caplog):
    mocked.add(responses.GET, "http://calendar.test/2026.json", json=load_calendar("ergast-2026.json"))
    h = refreshing_harness(harness, config, rng, clock).start()
    h.tick()
    h.tick()
    mocked.replace(responses.GET, "http://calendar.test/2026.json", status=503)
    h.run_until(clock.mono + 3601)
    assert "calendar refresh failed" in caplog.text
    assert h.state.snapshot().schedule.calendar_rounds == 23
    assert h.state.snapshot().calendar.body["MRData"]["RaceTable"]["season"] == "2026"


def test_calendar_refresh_interval_is_one_hour(mocked, recorder, harness, config, rng, clock):
    mocked.add(responses.GET, "http://calendar.test/2026.json", json=load_calendar("ergast-2026.json"))
    h = refreshing_harness(harness, config, rng, clock, rounds_interval_off_season_s=86400.0)
    h.start()
    h.run_until(clock.mono + 2 * 3600 + 301)
    gets = [c for c in mocked.calls if c.request.method == "GET"]
    assert len(gets) == 4  # start, 5 min later (asked by the start-up rounds sync), then every hour: 1h05, 2h05


def test_calendar_file_is_read_before_catch_up_so_first_syncs_use_its_season(tmp_path, recorder, harness, config,
                                                                             clock):
    calendar_file = tmp_path / "calendar.json"
    calendar_file.write_text(json.dumps(load_calendar("ergast-2023.json")))
    h = harness(config_=dataclasses.replace(config, calendar_file=str(calendar_file)),
                calendar_source=CalendarSource(config.calendar_url, str(calendar_file)))
    h.start()
    h.tick()
    assert [q for k, q, _ in recorder.calls if k == "rounds"] == ["season=2023"]
    assert h.state.snapshot().last_syncs["rounds"] == int(clock.now_ts())


def test_due_sync_is_handed_to_a_worker_ahead_and_keeps_its_grid(recorder, clock, rng, config):
    scheduler, state, executor = deferred_scheduler(config, clock, rng, dispatch_lead_s=0.05)
    scheduler.start()
    scheduler.tick(clock.mono)
    executor.run_all()
    due = state.snapshot().schedule.next_syncs["rounds"]
    clock.advance(1800 - 0.03)  # 30 ms before the next rounds slot: inside the lead
    scheduler.tick(clock.mono)
    assert "rounds:2026" in state.snapshot().schedule.in_flight
    scheduler.release()  # as at shutdown: the worker sends at once instead of waiting 30 ms
    executor.run_all()
    assert len(recorder.times("rounds")) == 2
    assert state.snapshot().schedule.next_syncs["rounds"] == due + 1800  # the grid, not now + interval


def test_dispatch_lead_is_at_most_a_quarter_of_the_shortest_interval(harness, config):
    fast = dataclasses.replace(config, rounds_interval_off_season_s=0.1)
    h = harness(config_=fast, dispatch_lead_s=0.05).start()
    assert h.scheduler._lead_s() == pytest.approx(0.025)
    assert harness(config_=fast, dispatch_lead_s=0.0).start().scheduler._lead_s() == 0.0


def test_unchanged_calendar_is_not_parsed_or_saved_again(mocked, recorder, harness, config, rng, clock, caplog):
    caplog.set_level(logging.INFO, logger="scheduler_api")
    mocked.add(responses.GET, "http://calendar.test/2026.json", json=load_calendar("ergast-2026.json"))
    h = refreshing_harness(harness, config, rng, clock).start()
    h.tick()  # start-up refresh, then the rounds sync asks for another (5 minutes later)
    first = h.state.snapshot().calendar
    h.run_until(clock.mono + 300)
    assert len([c for c in mocked.calls if c.request.method == "GET"]) == 2
    assert h.state.snapshot().calendar is first
    assert "changed=yes" in caplog.text and "changed=no" in caplog.text


def test_refresh_asked_for_while_one_runs_happens_right_after_it(mocked, recorder, clock, rng, config):
    mocked.add(responses.GET, "http://calendar.test/2026.json", json=load_calendar("ergast-2026.json"))
    scheduler, state, executor = deferred_scheduler(config, clock, rng,
                                                    calendar_source=CalendarSource(CALENDAR_URL, None))
    scheduler.start()
    scheduler.tick(clock.mono)  # queues the start-up refresh and the catch-up syncs
    refresh, syncs = executor.queue[0], executor.queue[1:]
    executor.queue = syncs
    executor.run_all()
    scheduler.reload_calendar()  # SIGHUP while the refresh has not finished
    scheduler.tick(clock.mono)
    refresh(executor.client)
    scheduler.tick(clock.mono)  # the second refresh is due now, not in an hour
    executor.run_all()
    assert len([c for c in mocked.calls if c.request.method == "GET"]) == 2


# -- stagger -----------------------------------------------------------------------

ONE_SECOND = dict(seasons_interval_s=1.0, rounds_interval_off_season_s=1.0, rounds_interval_race_weekend_s=1.0,
                  results_interval_live_s=1.0, standings_interval_off_season_s=1.0,
                  standings_interval_race_weekend_s=1.0, stagger_s=1.0)


def _first_calls_after(recorder: Recorder, since_ts: float) -> dict[str, float]:
    first: dict[str, float] = {}
    for kind, _, at in recorder.calls:
        if at >= since_ts:
            first.setdefault(kind, at)
    return first


def _apart_by_at_least(times: dict[str, float], gap_s: float) -> bool:
    ordered = sorted(times.values())
    return all(later - earlier >= gap_s for earlier, later in zip(ordered, ordered[1:]))


def test_stagger_offsets_each_kind_first_calls_after_a_sixty_second_outage(harness, recorder, clock, config):
    clock.wall = ts("2026-12-06T13:30:00Z")  # Abu Dhabi race live: all four kinds run
    h = harness(calendar=load_calendar("ergast-2026.json"),
                config_=dataclasses.replace(config, **ONE_SECOND)).start()
    started = clock.now_ts()
    h.run_until(clock.mono + 5)
    first = _first_calls_after(recorder, started)
    assert sorted(first) == ["results", "rounds", "seasons", "standings"]
    assert {k: at - started for k, at in first.items()} == {
        "seasons": 0.0, "rounds": 0.25, "results": 0.5, "standings": 0.75}  # STAGGER capped at interval / 4
    recorder.status = 500  # fetcher_service down for 60 s
    h.run_until(clock.mono + 60)
    recorder.status = 200
    recovered = clock.now_ts()
    h.run_until(clock.mono + 5)
    first = _first_calls_after(recorder, recovered)
    assert len(first) == 4 and _apart_by_at_least(first, 0.05)


def test_stagger_spreads_catch_up_at_start_and_after_a_suspend(harness, recorder, clock, config):
    clock.wall = ts("2026-12-06T13:30:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json"),
                config_=dataclasses.replace(config, stagger_s=1.0)).start()
    started = clock.now_ts()
    h.run_until(clock.mono + 10)
    first = _first_calls_after(recorder, started)
    assert {k: at - started for k, at in first.items()} == {
        "seasons": 0.0, "rounds": 1.0, "results": 2.0, "standings": 3.0}
    assert h.state.snapshot().counters["caught_up"] == 4
    clock.jump_wall(3600.0)  # suspended an hour: every kind is overdue
    resumed = clock.now_ts()
    h.run_until(clock.mono + 10)
    assert _apart_by_at_least(_first_calls_after(recorder, resumed), 0.05)


# -- the calendar's refresh budget ---------------------------------------------------

class CountingSource:
    """A calendar source serving the real 2026 calendar and counting its loads."""

    file_path = None

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.body = load_calendar("ergast-2026.json")
        self.loads: list[float] = []

    def load(self, season: int):
        from scheduler_api.calendar_parse import parse_calendar

        self.loads.append(self.clock.now_ts())
        return parse_calendar(self.body), self.body

    def describe(self, season: int) -> str:
        return "counting"


def test_calendar_min_refresh_interval_keeps_race_weekend_to_twelve_gets_an_hour(harness, recorder, clock, config):
    clock.wall = ts("2026-12-05T06:00:00Z")  # Abu Dhabi race weekend, rounds every 30 s
    source = CountingSource(clock)
    h = harness(config_=config, calendar_source=source).start()
    start = clock.now_ts()
    h.run_until(clock.mono + 3 * 3600)
    assert h.state.snapshot().schedule.mode in ("race_weekend", "live_session")
    assert len(recorder.times("rounds")) > 300
    for hour_start in range(int(start), int(start) + 2 * 3600, 60):
        assert sum(1 for at in source.loads if hour_start <= at < hour_start + 3600) <= 12
    gaps = [b - a for a, b in zip(source.loads, source.loads[1:])]
    assert min(gaps) >= 300


# -- a kind turned off ---------------------------------------------------------------

def test_kind_turned_off_is_never_scheduled_and_shows_no_next_sync(harness, recorder, clock, config):
    clock.wall = ts("2026-12-06T13:30:00Z")
    off = dataclasses.replace(config, fetch_paths={**config.fetch_paths, "standings": "off", "results": "off"})
    h = harness(calendar=load_calendar("ergast-2026.json"), config_=off).start()
    h.run_until(clock.mono + 3600)
    assert not recorder.times("standings") and not recorder.times("results")
    view = h.scheduler.view()
    assert view.intervals_s["standings"] is None and view.next_syncs["standings"] is None
    assert view.intervals_s["results"] is None and view.next_syncs["results"] is None


# -- the schedule at request time ------------------------------------------------------

def test_view_follows_a_forward_wall_clock_step_at_once(harness, recorder, clock):
    h = harness().start()
    h.tick()
    clock.jump_wall(3 * 3600)  # a step forward: rounds and standings are overdue
    view = h.scheduler.view()
    now = int(clock.now_ts())
    assert view.next_syncs["rounds"] == now and view.next_syncs["standings"] == now
    clock.jump_wall(-3600)  # a step back moves nothing, and the view says so at once
    assert h.scheduler.view().next_syncs["rounds"] == now - 3600


# -- the concurrency bound ------------------------------------------------------------

class BlockingClient:
    """A SyncClient whose calls block until released; it measures how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.order: list[SyncKey] = []
        self.release = threading.Semaphore(0)  # each release lets one call finish

    def sync(self, key, session_name=None, before_send=None):
        if before_send is not None:
            before_send()
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.order.append(key)
        self.release.acquire(timeout=10)
        with self.lock:
            self.running -= 1
        from scheduler_api.fetcher import Outcome
        return Outcome("ok", 200, None, 1)

    def close(self) -> None:
        pass


def test_concurrency_bound_150_parallel_triggers_never_exceed_four_calls(clock, rng, config):
    from scheduler_api.call_gate import Busy
    from scheduler_api.workers import InlineExecutor

    client = BlockingClient()
    scheduler = Scheduler(config, State(), clock, InlineExecutor(client), lambda: client, rng)
    keys = [SyncKey("results", 2000 + i // 100, i % 100) for i in range(150)]
    answers: dict[SyncKey, str] = {}

    def trigger(key):
        try:
            outcome, _ = scheduler.trigger(key)
            answers[key] = outcome.result
        except Busy:
            answers[key] = "busy"

    threads = []
    for key in keys:  # one after the other, so arrival order is known
        thread = threading.Thread(target=trigger, args=(key,))
        thread.start()
        threads.append(thread)
        deadline = threading.Event()
        for _ in range(500):
            running, waiting = scheduler.call_counts()
            if key in answers or running + waiting >= min(len(threads), 36):
                break
            deadline.wait(0.002)
    assert scheduler.call_counts() == (4, 32)
    for started in range(5, 37):  # finish one call at a time: its place goes to the first waiter
        client.release.release()
        for _ in range(500):
            if len(client.order) >= started:
                break
            threading.Event().wait(0.002)
        assert client.running <= 4
    for _ in range(4):
        client.release.release()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 150  # none lost
    assert client.most == 4
    assert sorted(answers.values()).count("busy") == 150 - 4 - 32
    assert client.order == keys[:36]  # the waiting 32 were served in arrival order
    assert all(answers[key] == "ok" for key in keys[:36])


# -- results settle ----------------------------------------------------------------------

def test_results_settle_every_ten_minutes_for_six_hours_after_the_abu_dhabi_race(harness, recorder, clock):
    # Abu Dhabi 2026 (round 23 in tests/data/ergast-2026.json), race 2026-12-06T13:00Z, expected end
    # 16:00Z: live until 16:30 (LIVE_TAIL 30m), then results settle every 10 minutes until 22:00.
    clock.wall = ts("2026-12-06T16:00:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    h.run_until(clock.mono + (ts("2026-12-07T00:00:00Z") - ts("2026-12-06T16:00:00Z")))
    results = [(q, at) for k, q, at in recorder.calls if k == "results"]
    settling = [at for _, at in results if at >= ts("2026-12-06T16:30:00Z")]
    assert {q for q, _ in results} == {"season=2026&round=23"}
    assert settling[0] == ts("2026-12-06T16:30:00Z")
    assert {b - a for a, b in zip(settling, settling[1:])} == {600}
    assert settling[-1] == ts("2026-12-06T21:50:00Z")  # the last one before 16:00 + 6h
    assert h.state.snapshot().schedule.intervals_s["results"] is None  # paused again after 22:00


def test_results_settling_mode_names_the_session_and_reads_ten_minutes(harness, recorder, clock):
    clock.wall = ts("2026-12-06T18:00:00Z")
    h = harness(calendar=load_calendar("ergast-2026.json")).start()
    h.tick()
    view = h.scheduler.view()
    assert (view.mode, view.mode_round, view.settling_session, view.live_session) == (
        "results_settling", 23, "race", None)
    assert view.intervals_s["results"] == 600.0 and view.intervals_s["rounds"] == 30.0  # still a race weekend


def test_sprint_weekend_settle_after_the_sprint_then_qualifying_goes_live(harness, recorder, clock):
    body = load_calendar("ergast-2026.json")
    china = next(r for r in body["MRData"]["RaceTable"]["Races"] if r["round"] == "2")
    sprint = ts(f"{china['Sprint']['date']}T{china['Sprint']['time']}")
    quali = ts(f"{china['Qualifying']['date']}T{china['Qualifying']['time']}")
    assert quali - 300 < sprint + 3600 + 6 * 3600  # qualifying goes live inside the sprint's settle window
    clock.wall = sprint + 3600 + 1800  # the sprint's live window just ended
    h = harness(calendar=body).start()
    h.tick()
    assert h.scheduler.view().settling_session == "sprint"
    h.run_until(clock.mono + (quali - 300) - clock.now_ts())
    view = h.scheduler.view()
    assert (view.mode, view.live_session) == ("live_session", "qualifying")  # live wins
    assert view.intervals_s["results"] == 30.0
    h.run_until(clock.mono + (quali + 3600 + 1800) - clock.now_ts())
    assert h.scheduler.view().settling_session == "qualifying"  # then qualifying's results settle


def test_no_calendar_refresh_starts_or_is_logged_after_shutdown_begins(harness, clock, config, caplog):
    source = CountingSource(clock)
    h = harness(config_=config, calendar_source=source).start()
    h.run_until(clock.mono + 1)
    loads = len(source.loads)
    h.scheduler.release()  # shutdown requested
    with caplog.at_level(logging.INFO, logger="scheduler_api"):
        h.scheduler.reload_calendar()  # a SIGHUP during the grace period
        h.run_until(clock.mono + 2 * 3600)  # and the hourly refresh falls due
    assert len(source.loads) == loads
    assert "calendar refreshed" not in caplog.text


def test_a_hand_over_never_falls_on_the_due_time_of_a_sync_handed_over_before(recorder, clock, rng, config):
    # seasons and rounds every 100 ms, rounds' grid 25 ms after seasons' (STAGGER=25ms), a 25 ms lead:
    # each rounds hand-over would fall on a seasons due time, where it would hold up that send.
    fast = dataclasses.replace(config, seasons_interval_s=0.1, rounds_interval_off_season_s=0.1,
                               standings_interval_off_season_s=3600.0, stagger_s=0.025)
    scheduler, state, executor = deferred_scheduler(fast, clock, rng, dispatch_lead_s=0.025)
    scheduler.start()
    scheduler.release()  # the handed-over syncs are sent at once when run: the fake clock does not move
    handed: list[float] = []
    wakes: list[float] = []
    wake = scheduler.tick(clock.mono)
    for _ in range(60):
        handed += [work.attempt.due_mono for work in executor.queue if work.attempt.due_mono is not None]
        executor.run_all()
        clock.advance(wake - clock.mono)
        wakes.append(wake)
        wake = scheduler.tick(clock.mono)
    too_close = [(w, d) for w in wakes for d in handed if d - HANDOVER_GUARD_S < w < d + HANDOVER_GUARD_S]
    assert len(handed) > 40 and too_close == []
    assert len(recorder.times("seasons")) > 20 and len(recorder.times("rounds")) > 20  # each on its grid
