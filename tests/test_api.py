"""The routes of :class:`App`: the seed's answers, /status, /health, /history, triggers and errors.

Every test calls :meth:`App.handle` directly over a scheduler harness and a
mocked fetcher, without sockets; the transport is tested in ``test_server.py``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest
import requests
import responses

from scheduler_api.api import App
from scheduler_api.config import Config
from scheduler_api.health import FetcherHealth
from scheduler_api.ticker import Ticker, TickerHealth

from conftest import FETCHER, load_calendar, ts

T0 = ts("2026-11-30T12:00:00Z")  # the clock fixture: off-season between Qatar and Abu Dhabi 2026
ABU_DHABI_RACE = ts("2026-12-06T13:30:00Z")  # the race of round 23 is live
ORIGIN_OK = {"success": True, "source": "jolpica", "count": 24, "timestamp": 1732834567}
ORIGIN_500_DETAIL = "Failed to fetch rounds: 503 Server Error: Service Unavailable for url: https://api.jolpi.ca/"
ORIGIN_PATHS = {
    "seasons": "/fetch/seasons",
    "rounds": "/fetch/rounds?season={season}",
    "results": "/fetch/rounds?season={season}&round={round}&live={session}",
    "standings": "/fetch/standings?season={season}",
}
SEED_STATUS_KEYS = {"status", "is_race_weekend", "last_syncs", "next_syncs", "current_intervals"}
SEED_HEALTH_KEYS = {"status", "uptime_seconds", "fetcher_service_connected", "scheduler_running"}
KINDS = {"seasons", "rounds", "results", "standings"}


class Api:
    """An :class:`App` over a started harness; probes are recorded, not run."""

    def __init__(self, build_harness, clock, ticker_alive: bool = True, ticker_health=None) -> None:
        self.clock = clock
        self.probes: list[Any] = []
        self.health = FetcherHealth(clock, 10.0, "/health", self.probes.append)
        self.harness = harness = build_harness(health=self.health)
        self.alive = ticker_alive
        harness.start()
        self.app = App(harness.config, harness.state, harness.scheduler, self.health, clock, lambda: self.alive,
                       ticker_health, "0.2.0")

    def get(self, target: str) -> tuple[int, dict]:
        status, body, _headers = self.app.handle("GET", target)
        return status, body

    def post(self, target: str) -> tuple[int, dict]:
        status, body, _headers = self.app.handle("POST", target)
        return status, body


@pytest.fixture
def api(harness, clock) -> Callable[..., Api]:
    """``api(calendar=..., config_=..., at=...)``: an App on a started harness."""

    def build(calendar: Any = "ergast-2026.json", config_: Config | None = None, at: int | None = None,
              ticker_alive: bool = True, ticker_health=None) -> Api:
        if at is not None:
            clock.wall = float(at)
        body = load_calendar(calendar) if isinstance(calendar, str) else calendar
        return Api(lambda **kw: harness(calendar=body, config_=config_, **kw), clock, ticker_alive, ticker_health)

    return build


def assert_error_body(body: dict, message: str) -> None:
    assert body == {"success": False, "message": message, "timestamp": body["timestamp"]}
    assert type(body["timestamp"]) is int


# -- the seed's triggers ------------------------------------------------------------------


def test_trigger_seasons_answers_exactly_the_seed_shape(mocked, api):
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)
    a = api()

    status, body = a.post("/trigger/seasons")

    assert status == 200
    assert body == {"success": True, "message": "Season sync triggered", "fetcher_called": True, "timestamp": T0}
    assert list(body) == ["success", "message", "fetcher_called", "timestamp"]
    assert [type(v) for v in body.values()] == [bool, str, bool, int]


@pytest.mark.parametrize(
    ("target", "url", "message"),
    [
        ("/trigger/rounds?season=2025", "/fetch/rounds?season=2025", "Rounds sync triggered for season 2025"),
        ("/trigger/results?season=2025&round=0", "/fetch/results?season=2025&round=0",
         "Results sync triggered for round 0"),
        ("/trigger/standings?season=2025", "/fetch/standings?season=2025", "Standings sync triggered"),
    ],
)
def test_trigger_messages_are_the_seed_texts(mocked, api, target, url, message):
    mocked.post(FETCHER + url, json=ORIGIN_OK)
    a = api()

    status, body = a.post(target)

    assert status == 200
    assert body == {"success": True, "message": message, "fetcher_called": True, "timestamp": T0}
    assert type(body["timestamp"]) is int
    assert mocked.calls[0].request.url == FETCHER + url


def test_trigger_rounds_defaults_to_the_calendar_season(mocked, api):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2026", json=ORIGIN_OK)

    status, body = api().post("/trigger/rounds")

    assert (status, body["message"]) == (200, "Rounds sync triggered for season 2026")


def test_trigger_standings_defaults_to_the_calendar_season(mocked, api):
    mocked.post(f"{FETCHER}/fetch/standings?season=2026", json=ORIGIN_OK)

    status, body = api().post("/trigger/standings")

    assert (status, body["message"]) == (200, "Standings sync triggered")


def test_trigger_results_defaults_to_the_most_recent_round(mocked, api):
    # 2026-11-30: Qatar (round 22) is over, Abu Dhabi (round 23) has not started.
    mocked.post(f"{FETCHER}/fetch/results?season=2026&round=22", json=ORIGIN_OK)

    status, body = api().post("/trigger/results")

    assert (status, body["message"]) == (200, "Results sync triggered for round 22")


def test_trigger_results_defaults_to_the_live_round(mocked, api):
    mocked.post(f"{FETCHER}/fetch/results?season=2026&round=23", json=ORIGIN_OK)

    status, body = api(at=ABU_DHABI_RACE).post("/trigger/results")

    assert (status, body["message"]) == (200, "Results sync triggered for round 23")


def test_trigger_results_with_origin_mapping_passes_the_live_session(mocked, api):
    config = Config(fetcher_url=FETCHER, fetch_paths=ORIGIN_PATHS)
    url = f"{FETCHER}/fetch/rounds?season=2026&round=23&live=race"
    mocked.post(url, json=ORIGIN_OK)

    status, body = api(config_=config, at=ABU_DHABI_RACE).post("/trigger/results?season=2026&round=23")

    assert (status, body["message"]) == (200, "Results sync triggered for round 23")
    assert mocked.calls[0].request.url == url


def test_trigger_results_with_origin_mapping_leaves_out_live_for_another_round(mocked, api):
    config = Config(fetcher_url=FETCHER, fetch_paths=ORIGIN_PATHS)
    url = f"{FETCHER}/fetch/rounds?season=2026&round=22"
    mocked.post(url, json=ORIGIN_OK)

    status, _ = api(config_=config, at=ABU_DHABI_RACE).post("/trigger/results?round=22")

    assert status == 200
    assert mocked.calls[0].request.url == url


def test_trigger_results_without_calendar_and_round_is_400(mocked, api):
    status, body = api(calendar=None).post("/trigger/results")

    assert status == 400
    assert_error_body(body, "round unknown: no live or past round of season 2026 in the calendar; pass round=")
    assert len(mocked.calls) == 0


def test_trigger_results_for_a_season_outside_the_calendar_without_round_is_400(mocked, api):
    status, body = api().post("/trigger/results?season=2025")

    assert status == 400
    assert_error_body(body, "round unknown: no live or past round of season 2025 in the calendar; pass round=")
    assert len(mocked.calls) == 0


def test_trigger_results_before_the_first_round_without_round_is_400(mocked, api):
    status, body = api(at=ts("2026-01-15T12:00:00Z")).post("/trigger/results")

    assert status == 400
    assert body["message"].startswith("round unknown")
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(
    "target",
    [
        "/trigger/rounds?season=%2B2025",  # +2025
        "/trigger/rounds?season=+2025",  # a space after decoding
        "/trigger/rounds?season=%202025",
        "/trigger/rounds?season=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%95",  # fullwidth digits
        "/trigger/rounds?season=2025.0",
        "/trigger/rounds?season=-2025",
        "/trigger/rounds?season=02025",
        "/trigger/rounds?season=1949",
        "/trigger/rounds?season=2028",  # current UTC year + 2
        "/trigger/rounds?season=2025&season=2025",
        "/trigger/rounds?season=",
        "/trigger/rounds?season",
        "/trigger/rounds?year=2025",
        "/trigger/rounds?season=2025&round=1",
        "/trigger/rounds?season=2025;round=1",
        "/trigger/seasons?season=2025",
        "/trigger/results?season=2025&round=100",
        "/trigger/results?season=2025&round=-1",
        "/trigger/results?season=2025&round=",
        "/trigger/standings?season=abc",
    ],
)
def test_invalid_trigger_parameters_are_400_and_call_nothing(mocked, api, target):
    status, body = api().post(target)

    assert status == 400
    assert set(body) == {"success", "message", "timestamp"}
    assert body["success"] is False
    assert body["message"]
    assert len(mocked.calls) == 0


def test_season_next_year_and_round_99_are_valid(mocked, api):
    mocked.post(f"{FETCHER}/fetch/results?season=2027&round=99", json=ORIGIN_OK)

    status, body = api().post("/trigger/results?season=2027&round=99")

    assert (status, body["message"]) == (200, "Results sync triggered for round 99")


def test_season_1950_is_valid(mocked, api):
    mocked.post(f"{FETCHER}/fetch/rounds?season=1950", json=ORIGIN_OK)

    assert api().post("/trigger/rounds?season=1950")[0] == 200


def test_trigger_needs_the_bearer_token_when_set(mocked, api):
    config = Config(fetcher_url=FETCHER, token="s3cr$t")
    a = api(config_=config)

    status, body, headers = a.app.handle("POST", "/trigger/seasons", None)
    wrong = a.app.handle("POST", "/trigger/seasons", "Bearer nope")

    assert status == wrong[0] == 401
    assert_error_body(body, "missing or wrong bearer token")
    assert headers == {"WWW-Authenticate": "Bearer"}
    assert len(mocked.calls) == 0
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)
    assert a.app.handle("POST", "/trigger/seasons", "Bearer s3cr$t")[0] == 200
    assert a.get("/status")[0] == 200  # GET endpoints need no token


# -- failures ----------------------------------------------------------------------------


def test_fetcher_500_detail_is_a_502_and_shows_in_history_status_and_log(mocked, api, caplog):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2026", json={"detail": ORIGIN_500_DETAIL}, status=500)
    a = api()

    with caplog.at_level(logging.INFO, logger="scheduler_api.runner"):
        status, body = a.post("/trigger/rounds")

    assert status == 502
    assert body == {
        "success": False,
        "message": f"Rounds sync failed: HTTP 500: {ORIGIN_500_DETAIL}",
        "fetcher_called": True,
        "timestamp": T0,
    }
    record = a.get("/history")[1]["records"][0]
    assert record == {
        "kind": "rounds", "parameters": {"season": 2026}, "trigger": "manual", "outcome": "failed",
        "attempt": 1, "http_status": 500, "duration_ms": 0, "started_at": T0, "finished_at": T0,
        "error": f"HTTP 500: {ORIGIN_500_DETAIL}",
    }
    status_body = a.get("/status")[1]
    assert status_body["last_failures"]["rounds"] == {
        "at": T0, "trigger": "manual", "outcome": "failed", "http_status": 500,
        "error": f"HTTP 500: {ORIGIN_500_DETAIL}",
    }
    assert status_body["counters"]["failed"] == 1
    assert status_body["last_syncs"]["rounds"] is None
    assert (
        "sync kind=rounds season=2026 trigger=manual outcome=failed attempt=1 status=500 duration_ms=0 "
        f"error='HTTP 500: {ORIGIN_500_DETAIL}'"
    ) in caplog.messages


def test_fetcher_success_false_is_a_502(mocked, api):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"success": False, "message": "rate limited upstream"})

    status, body = api().post("/trigger/seasons")

    assert status == 502
    assert body["message"] == "Season sync failed: HTTP 200 success=false: rate limited upstream"
    assert body["fetcher_called"] is True


def test_fetcher_timeout_is_a_504(mocked, api):
    mocked.post(f"{FETCHER}/fetch/standings?season=2026", body=requests.ReadTimeout("read timed out"))
    a = api()

    status, body = a.post("/trigger/standings")

    assert status == 504
    assert body == {
        "success": False,
        "message": "Standings sync failed: no answer: deadline of 300s passed",
        "fetcher_called": True,  # the request went out: the fetcher may still be working on it
        "timestamp": T0,
    }
    assert a.get("/history?kind=standings")[1]["records"][0]["outcome"] == "timeout"


def test_fetcher_unreachable_is_a_502_without_fetcher_called(mocked, api):
    mocked.post(f"{FETCHER}/fetch/seasons", body=requests.ConnectionError("[Errno 111] Connection refused"))
    a = api()

    status, body = a.post("/trigger/seasons")

    assert status == 502
    assert body["message"] == "Season sync failed: no answer: connection refused"
    assert body["fetcher_called"] is False
    health_status, health = a.get("/health")
    assert (health_status, health["status"], health["fetcher_service_connected"]) == (200, "degraded", False)


# -- manual triggers and the schedule -------------------------------------------------------


def test_manual_trigger_with_scheduled_parameters_moves_last_and_next(mocked, api, clock):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2026", json=ORIGIN_OK)
    a = api()
    clock.advance(100)

    assert a.post("/trigger/rounds?season=2026")[0] == 200

    body = a.get("/status")[1]
    assert body["last_syncs"]["rounds"] == T0 + 100
    assert body["next_syncs"]["rounds"] == T0 + 100 + 1800


def test_manual_trigger_for_another_season_does_not_move_the_schedule(mocked, api, clock):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2025", json=ORIGIN_OK)
    a = api()
    before = a.get("/status")[1]
    clock.advance(100)

    assert a.post("/trigger/rounds?season=2025")[0] == 200

    body = a.get("/status")[1]
    assert body["last_syncs"] == before["last_syncs"] == dict.fromkeys(KINDS)
    assert body["next_syncs"]["rounds"] == before["next_syncs"]["rounds"] == T0
    assert a.get("/history")[1]["records"][0]["parameters"] == {"season": 2025}


def test_failed_manual_trigger_does_not_move_the_schedule(mocked, api, clock):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2026", json={"detail": "boom"}, status=500)
    a = api()
    clock.advance(100)

    a.post("/trigger/rounds")

    body = a.get("/status")[1]
    assert body["last_syncs"]["rounds"] is None
    assert body["next_syncs"]["rounds"] == T0


# -- /status -------------------------------------------------------------------------------


def sync_start_up(mocked, a, season: int = 2026) -> None:
    """Run the start-up catch-up of seasons, rounds and standings."""
    for path in ("/fetch/seasons", f"/fetch/rounds?season={season}", f"/fetch/standings?season={season}"):
        mocked.post(FETCHER + path, json=ORIGIN_OK)
    a.harness.tick()


def assert_seed_status_types(body: dict) -> None:
    assert SEED_STATUS_KEYS <= set(body)
    assert type(body["status"]) is str
    assert type(body["is_race_weekend"]) is bool
    assert set(body["last_syncs"]) == KINDS
    assert set(body["next_syncs"]) == KINDS
    assert set(body["current_intervals"]) == {"rounds", "results", "standings"}
    for value in (*body["last_syncs"].values(), *body["next_syncs"].values()):
        assert value is None or type(value) is int
    for value in body["current_intervals"].values():
        assert type(value) is str


def test_status_has_the_seed_keys_and_types_off_season(mocked, api):
    a = api()
    sync_start_up(mocked, a)

    status, body = a.get("/status")

    assert status == 200
    assert_seed_status_types(body)
    assert body["status"] == "running"
    assert body["is_race_weekend"] is False
    assert body["last_syncs"] == {"seasons": T0, "rounds": T0, "results": None, "standings": T0}
    assert body["next_syncs"] == {
        "seasons": T0 + 6 * 3600,
        "rounds": T0 + 1800,
        "results": ts("2026-12-04T09:25:00Z"),  # Abu Dhabi FP1 less the 5-minute live lead
        "standings": T0 + 3600,
    }
    assert body["current_intervals"] == {"rounds": "30m", "results": "paused", "standings": "1h"}
    assert body["mode"] == {"name": "off_season", "season": 2026, "round": None, "session": None}
    assert body["next_mode_change"] == ts("2026-12-03T21:30:00Z")  # FP1 less the 12-hour lead
    assert body["last_failures"] == dict.fromkeys(KINDS)


def test_status_during_the_abu_dhabi_race_has_30s_results(mocked, api):
    a = api(at=ABU_DHABI_RACE)
    for path in ("/fetch/seasons", "/fetch/rounds?season=2026", "/fetch/results?season=2026&round=23",
                 "/fetch/standings?season=2026"):
        mocked.post(FETCHER + path, json=ORIGIN_OK)
    a.harness.tick()

    status, body = a.get("/status")

    assert status == 200
    assert_seed_status_types(body)
    assert body["is_race_weekend"] is True
    assert body["current_intervals"] == {"rounds": "30s", "results": "30s", "standings": "5m"}
    now = ABU_DHABI_RACE
    assert body["last_syncs"] == {"seasons": now, "rounds": now, "results": now, "standings": now}
    assert body["next_syncs"] == {"seasons": now + 21600, "rounds": now + 30, "results": now + 30,
                                  "standings": now + 300}
    assert body["mode"] == {"name": "live_session", "season": 2026, "round": 23, "session": "race"}
    assert a.get("/history?kind=results")[1]["records"][0]["parameters"] == {
        "season": 2026, "round": 23, "session": "race"}


def test_status_without_calendar_says_off_season(api):
    body = api(calendar=None).get("/status")[1]

    assert_seed_status_types(body)
    assert body["is_race_weekend"] is False
    assert body["current_intervals"]["results"] == "paused"
    assert body["next_syncs"]["results"] is None
    assert body["calendar"]["loaded"] is False
    assert body["note"] == "no race calendar loaded: running in off-season mode"


def test_status_reports_stopped_when_the_ticker_is_dead(api):
    assert api(ticker_alive=False).get("/status")[1]["status"] == "stopped"


def test_status_takes_no_parameters(api):
    status, body = api().get("/status?verbose=1")

    assert status == 400
    assert_error_body(body, "unknown parameter 'verbose'; none allowed")


# -- /health ----------------------------------------------------------------------------------


def test_health_is_healthy_with_the_seed_keys(api, clock):
    a = api()
    a.health.record(True)
    clock.advance(90)
    a.health.record(True)

    status, body = a.get("/health")

    assert status == 200
    assert set(body) == SEED_HEALTH_KEYS | {"stale", "failing"}
    assert body == {"status": "healthy", "uptime_seconds": 90, "fetcher_service_connected": True,
                    "scheduler_running": True, "stale": [], "failing": []}
    assert type(body["uptime_seconds"]) is int


def test_health_is_degraded_when_the_fetcher_sends_no_answer(api):
    a = api()
    a.health.record(False)

    status, body = a.get("/health")

    assert (status, body["status"], body["fetcher_service_connected"]) == (200, "degraded", False)
    assert body["scheduler_running"] is True


def test_health_stays_healthy_when_the_fetcher_answers_500(mocked, api):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": "boom"}, status=500)
    a = api()
    a.post("/trigger/seasons")

    status, body = a.get("/health")

    assert (status, body["status"], body["fetcher_service_connected"]) == (200, "healthy", True)


def test_health_is_unhealthy_503_when_the_ticker_is_dead(api):
    a = api(ticker_alive=False)
    a.health.record(True)

    status, body = a.get("/health")

    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["scheduler_running"] is False


def test_health_is_unhealthy_when_the_ticker_has_not_come_round_for_150s(api, clock):
    entered, release = threading.Event(), threading.Event()

    def wedged_tick(now_mono: float) -> float | None:
        entered.set()
        release.wait(30)  # stuck inside tick: its thread lives, its loop does not come round
        return None

    ticker = Ticker(clock)
    thread = threading.Thread(target=ticker.run, args=(wedged_tick,), daemon=True)
    thread.start()
    try:
        assert entered.wait(5)
        a = api(ticker_health=ticker.health)
        a.health.record(True)
        clock.advance(150)
        assert a.get("/health")[1]["status"] == "healthy"
        clock.advance(1)
        status, body = a.get("/health")
        assert (status, body["status"], body["scheduler_running"]) == (503, "unhealthy", False)
    finally:
        ticker.stop()
        release.set()
        thread.join(5)


def test_health_is_unhealthy_after_three_ticker_errors_in_a_row(api):
    errors = {"n": 2}
    a = api(ticker_health=lambda now_mono: TickerHealth(True, errors["n"], now_mono, 0.0))
    a.health.record(True)
    assert a.get("/health")[0] == 200
    errors["n"] = 3
    status, body = a.get("/health")
    assert (status, body["status"]) == (503, "unhealthy")


def test_health_uptime_follows_the_monotonic_clock_not_wall_steps(api, clock):
    a = api()
    a.health.record(True)
    clock.advance(73)
    clock.jump_wall(-3600)
    assert a.get("/health")[1]["uptime_seconds"] == 73
    clock.jump_wall(+86400)
    assert a.get("/health")[1]["uptime_seconds"] == 73


def test_health_names_a_kind_whose_last_three_attempts_failed(mocked, api):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": "Not Found"}, status=404)
    a = api()
    a.health.record(True)
    for expected in ([], [], ["seasons"]):
        a.post("/trigger/seasons")
        assert a.get("/health")[1]["failing"] == expected
    assert a.get("/health")[1]["status"] == "degraded"
    mocked.replace(responses.POST, f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)
    a.post("/trigger/seasons")
    assert a.get("/health")[1]["failing"] == []


def test_status_follows_a_wall_clock_step_at_once(mocked, api, clock):
    a = api()
    before = a.get("/status")[1]["next_syncs"]["rounds"]
    clock.jump_wall(3600)  # a step forward (or a suspend): overdue syncs are due now, shown at once
    after = a.get("/status")[1]["next_syncs"]["rounds"]
    assert after == int(clock.wall) and before < after


def test_health_names_the_stale_kind_and_is_degraded(mocked, api, clock):
    a = api()
    sync_start_up(mocked, a)
    clock.advance(3 * 1800 + 1)  # rounds (30m) missed three intervals; standings (1h) did not
    a.health.record(True)

    status, body = a.get("/health")

    assert (status, body["status"], body["stale"]) == (200, "degraded", ["rounds"])
    assert body["fetcher_service_connected"] is True


def test_health_probes_at_most_once_per_ttl(api, clock):
    a = api()

    for _ in range(50):
        a.get("/health")
    assert len(a.probes) == 1
    clock.advance(10)
    a.get("/health")
    assert len(a.probes) == 1  # the first probe has not finished: never two at once


# -- /history -----------------------------------------------------------------------------------


def test_history_is_newest_first_and_filters_by_kind_and_limit(mocked, api, clock):
    for path in ("/fetch/seasons", "/fetch/rounds?season=2026", "/fetch/rounds?season=2025"):
        mocked.post(FETCHER + path, json=ORIGIN_OK)
    a = api()
    a.post("/trigger/seasons")
    clock.advance(10)
    a.post("/trigger/rounds")
    clock.advance(10)
    a.post("/trigger/rounds?season=2025")

    status, body = a.get("/history")

    assert status == 200
    assert body["count"] == 3
    assert [(r["kind"], r["parameters"], r["started_at"]) for r in body["records"]] == [
        ("rounds", {"season": 2025}, T0 + 20), ("rounds", {"season": 2026}, T0 + 10), ("seasons", {}, T0)]
    assert set(body["records"][0]) == {"kind", "parameters", "trigger", "outcome", "attempt", "http_status",
                                       "duration_ms", "started_at", "finished_at", "error"}
    assert [r["parameters"] for r in a.get("/history?kind=rounds&limit=1")[1]["records"]] == [{"season": 2025}]
    assert a.get("/history?kind=rounds")[1]["count"] == 2
    assert a.get("/history?kind=standings")[1] == {"records": [], "count": 0}
    assert a.get("/history?limit=500")[1]["count"] == 3


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/history?limit=0", "limit must be from 1 to 500, got 0"),
        ("/history?limit=501", "limit must be from 1 to 500, got 501"),
        ("/history?limit=x", "limit must be plain digits from 1 to 500, got 'x'"),
        ("/history?limit=00050", "limit must be from 1 to 500, at most 4 digits, got '00050'"),
        ("/history?limit=", "parameter 'limit' is empty"),
        ("/history?kind=laps", "kind must be one of seasons, rounds, results, standings"),
        ("/history?kind=Rounds", "kind must be one of seasons, rounds, results, standings"),
        ("/history?kind=rounds&kind=results", "parameter 'kind' is repeated"),
        ("/history?since=1", "unknown parameter 'since'; allowed: kind, limit"),
    ],
)
def test_history_rejects_bad_kind_and_limit(api, target, message):
    status, body = api().get(target)

    assert status == 400
    assert_error_body(body, message)


# -- routing -------------------------------------------------------------------------------------


def test_unknown_path_is_404_json(api):
    status, body, headers = api().app.handle("GET", "/nope?x=1")

    assert status == 404
    assert_error_body(body, "no such endpoint: /nope")
    assert headers == {}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/trigger/seasons", "POST"),
        ("HEAD", "/trigger/results", "POST"),
        ("POST", "/status", "GET, HEAD"),
        ("POST", "/health", "GET, HEAD"),
        ("POST", "/history", "GET, HEAD"),
        ("PUT", "/status", "GET, HEAD"),
        ("DELETE", "/trigger/seasons", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(mocked, api, method, path, allow):
    status, body, headers = api().app.handle(method, path)

    assert status == 405
    assert headers == {"Allow": allow}
    assert_error_body(body, f"method {method} not allowed on {path}; use {allow}")
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(("path", "allow"), [("/health", "GET, HEAD"),
                                             ("/trigger/seasons", "POST")])
def test_options_on_a_known_path_is_204_with_allow(mocked, api, path, allow):
    assert api().app.handle("OPTIONS", path) == (204, {}, {"Allow": allow})
    assert api().app.handle("OPTIONS", "/nope")[0] == 404
    assert len(mocked.calls) == 0


def test_head_is_routed_as_get(api):
    a = api()

    assert a.app.handle("HEAD", "/status")[:2] == a.app.handle("GET", "/status")[:2]


# -- a kind turned off, a full concurrency bound ------------------------------------------

def test_trigger_of_a_kind_turned_off_is_409_and_calls_nothing(mocked, api):
    off = Config(fetcher_url=FETCHER, stagger_s=0.0, fetch_paths={**Config().fetch_paths, "standings": "off"})
    a = api(config_=off)
    status, body = a.post("/trigger/standings?season=2026")
    assert status == 409
    assert_error_body(body, "standings syncs are turned off (FETCH_PATH_STANDINGS=off)")
    assert not [c for c in mocked.calls if "/fetch/standings" in c.request.url]
    assert a.get("/status")[1]["current_intervals"]["standings"] == "off"


def test_trigger_finding_the_concurrency_bound_full_is_429_with_retry_after(api, monkeypatch):
    from scheduler_api.call_gate import Busy

    a = api()

    def busy(key):
        raise Busy()

    monkeypatch.setattr(a.harness.scheduler, "trigger", busy)
    status, body, headers = a.app.handle("POST", "/trigger/seasons")
    assert status == 429 and headers == {"Retry-After": "5"}
    assert_error_body(body, "fetcher_service is busy: try again in 5s")
