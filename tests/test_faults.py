"""Faults of fetcher_service, restarts and time (issue 3; SPEC.md §2, §3, §5, §7, §8).

Pure scheduling rules run on a FakeClock through the ``harness`` fixture;
everything about processes, signals and sockets runs a real daemon against a
FetcherStandIn (see ``daemon.py``).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import requests
import responses

from conftest import FETCHER, FakeClock
from daemon import DATA, REPO, daemon, standin, wait_for  # noqa: F401 - fixtures
from scheduler_api.config import Config
from scheduler_api.health import FetcherHealth
from scheduler_api.timetable import retry_delay_s
from scheduler_api.standin import FetcherStandIn

FAST = Config(fetcher_url=FETCHER, seasons_interval_s=5.0, rounds_interval_off_season_s=5.0,
              standings_interval_off_season_s=5.0)
SLOW = Config(fetcher_url=FETCHER)  # SPEC defaults: seasons 6h, rounds 30m, standings 1h off-season


class FakeFetcher:
    """A ``responses`` callback for every ``POST /fetch/...``: records calls, fails on command."""

    def __init__(self, clock: FakeClock, mocked: responses.RequestsMock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []  # (kind, monotonic s)
        self.answer = "ok"  # ok | refused | an HTTP status such as "429", "500", "503"
        self.retry_after = "1"
        mocked.add_callback(responses.POST, re.compile(re.escape(FETCHER) + r"/fetch/.*"), callback=self)

    def __call__(self, request: requests.PreparedRequest):
        kind = urllib.parse.urlsplit(request.url).path.rsplit("/", 1)[1]
        self.calls.append((kind, self.clock.mono))
        if self.answer == "refused":
            return requests.ConnectionError("[Errno 111] Connection refused")
        if self.answer.isdigit():
            headers = {"Retry-After": self.retry_after} if self.answer in ("429", "503") else {}
            return int(self.answer), headers, json.dumps({"detail": "slow down"})
        return 200, {}, json.dumps({"success": True})

    def count(self, kind: str, since_mono: float = float("-inf"), until_mono: float = float("inf")) -> int:
        return sum(1 for k, m in self.calls if k == kind and since_mono <= m < until_mono)


# -- retries ---------------------------------------------------------------


def test_retry_backoff_full_jitter_capped_by_interval(rng):
    for attempt, backoff_s in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        delays = [retry_delay_s(attempt, 30.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= backoff_s for d in delays)
        assert max(delays) > backoff_s / 2 and min(delays) < backoff_s / 2  # full jitter, not fixed
    assert retry_delay_s(4, 8.0, rng) is None  # backoff reached the interval: the next slot will do
    assert retry_delay_s(6, 30.0, rng) is None

    class Highest:
        def uniform(self, low: float, high: float) -> float:
            return high

    assert retry_delay_s(3, 30.0, Highest()) == 4.0  # the jitter comes from the injected source


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


# -- /health probes ----------------------------------------------------------


def test_health_flood_makes_at_most_one_probe_per_ttl(clock):
    submitted = []
    health = FetcherHealth(clock, 10.0, "/health", submitted.append)
    for _ in range(1000):
        assert health.connected() is None
    assert len(submitted) == 1  # one probe in flight, the rest answered from the cache

    class Client:
        def probe(self, path: str) -> bool:
            return True

    submitted.pop()(Client())
    for _ in range(1000):
        assert health.connected() is True
    clock.advance(9.9)
    health.connected()
    assert submitted == []
    clock.advance(0.1)
    for _ in range(1000):
        health.connected()
    assert len(submitted) == 1


def test_health_flood_on_real_daemon_probes_at_most_once_per_ttl(daemon, standin):
    proc = daemon({"FETCHER_HEALTH_TTL": "500ms"})
    proc.settle()
    before = len(standin.fetch_calls("/health"))
    started = time.monotonic()
    answers = 0
    while time.monotonic() - started < 1.2:
        status, body, _ = proc.request("GET", "/health")
        assert status == 200 and body["status"] == "healthy"
        answers += 1
    elapsed = time.monotonic() - started
    probes = len(standin.fetch_calls("/health")) - before
    assert answers > 50
    assert 1 <= probes <= elapsed / 0.5 + 1


# -- faults of a real fetcher ----------------------------------------------


FAULT_CASES = [
    # fault, HTTP status of the trigger, fetcher_called, words of the reason
    ("error500", 502, True, "HTTP 500: Failed to fetch rounds"),
    ("success_false", 502, True, "success=false: season not found"),
    ("422", 502, True, "HTTP 422: query.season: field required"),
    ("429", 502, True, "HTTP 429: slow down"),
    ("503", 502, True, "HTTP 503: slow down"),
    ("reset", 502, False, "no answer"),
    ("hang", 504, False, "no answer: read timeout"),
]


def test_fetcher_faults_keep_daemon_up_and_failures_are_logged_with_reasons(daemon, standin):
    proc = daemon({"FETCHER_TIMEOUT": "500ms"})
    proc.settle()
    for fault, code, called, reason in FAULT_CASES:
        standin.set_fault(fault)
        status, body, _ = proc.request("POST", "/trigger/seasons")
        assert status == code, (fault, body)
        assert body["success"] is False and body["fetcher_called"] is called, fault
        assert reason in body["message"], (fault, body)
        wait_for(lambda: reason in proc.log(), what=f"log line for {fault}")
        started = time.monotonic()
        health_status, health, _ = proc.request("GET", "/health")
        assert time.monotonic() - started < 0.5
        assert health_status == 200
        # A fetcher that sends any HTTP answer is connected, merely failing.
        assert health["fetcher_service_connected"] is called, fault
        assert health["status"] == ("healthy" if called else "degraded"), (fault, health)
    standin.set_fault("ok")
    assert proc.request("POST", "/trigger/seasons")[0] == 200
    assert proc.get("/health")["status"] == "healthy"
    assert "outcome=timeout" in proc.log()
    assert "Traceback" not in proc.log()


def test_non_json_2xx_answer_counts_as_success_and_others_fail(daemon, standin):
    """SPEC §2: success is a 2xx whose body, *if* a JSON object with boolean success, says true."""
    proc = daemon()
    proc.settle()
    standin.set_fault("non_json")
    status, body, _ = proc.request("POST", "/trigger/seasons")
    assert (status, body["success"]) == (200, True)


def test_dead_fetcher_makes_health_degraded_and_restart_resumes_syncs(daemon, standin):
    proc = daemon({"SEASONS_INTERVAL": "500ms", "ROUNDS_INTERVAL_OFF_SEASON": "500ms",
                   "STANDINGS_INTERVAL_OFF_SEASON": "500ms"})
    proc.settle()
    port = int(standin.url.rsplit(":", 1)[1])
    standin.stop()
    wait_for(lambda: "connection refused" in proc.log(), what="a refused sync")
    status, body, _ = proc.request("POST", "/trigger/seasons")
    assert status == 502 and body["fetcher_called"] is False
    assert "connection refused" in body["message"]
    started = time.monotonic()
    health = proc.get("/health")
    assert time.monotonic() - started < 0.5
    assert health["status"] == "degraded" and health["fetcher_service_connected"] is False
    restarted = FetcherStandIn(port=port).start()
    try:
        back = time.monotonic()
        wait_for(lambda: {c.path.split("?")[0] for c in restarted.fetch_calls()}
                 >= {"/fetch/seasons", "/fetch/rounds", "/fetch/standings"}, what="syncs after restart")
        assert time.monotonic() - back < 0.5 + 1.0, proc.log()  # within one interval (plus process slack)
        wait_for(lambda: proc.get("/health")["status"] == "healthy", what="healthy again")
    finally:
        restarted.stop()


ROUNDS_2023 = "/fetch/rounds?season=2023"


def test_hanging_sync_of_one_kind_never_delays_another_or_takes_more_than_one_worker(daemon, standin):
    standin.set_fault("hang", paths=("/fetch/rounds",))
    proc = daemon({"SEASONS_INTERVAL": "100ms", "ROUNDS_INTERVAL_OFF_SEASON": "100ms",
                   "STANDINGS_INTERVAL_OFF_SEASON": "100ms"})
    # The first catch-up runs for the UTC year, before the calendar (season 2023) is read: wait for 2023.
    wait_for(lambda: standin.fetch_calls(ROUNDS_2023), what="the hanging rounds call")
    hung_at = standin.fetch_calls(ROUNDS_2023)[0].arrived_mono
    # Far more slots than workers pass: the others keep syncing, rounds slots are skipped and counted.
    wait_for(lambda: proc.get("/status")["counters"]["skipped"] >= 12, what="skipped rounds slots")
    for kind in ("seasons", "standings"):
        assert sum(1 for c in standin.fetch_calls(f"/fetch/{kind}") if c.arrived_mono > hung_at) >= 8, kind
    assert len(standin.fetch_calls(ROUNDS_2023)) == 1  # one sync per key in flight, one worker
    assert any(f.startswith("rounds") for f in proc.get("/status")["in_flight"])
    started = time.monotonic()
    assert proc.get("/health")["scheduler_running"] is True
    assert time.monotonic() - started < 0.5  # /health never waits on the fetcher
    # A manual trigger for the running sync joins it: no second fetcher call, the same outcome.
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(r=proc.request("POST", "/trigger/rounds")))
    thread.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert len(standin.fetch_calls(ROUNDS_2023)) == 1
        time.sleep(0.02)
    standin.set_fault("ok")  # releases the hung call without an answer
    thread.join(10)
    status, body, _ = answer["r"]
    assert status == 502 and body["fetcher_called"] is False, body


# -- restarts and state ------------------------------------------------------

WRITER = """
import sys
from scheduler_api.state import write_atomically
path = sys.argv[1]
i = 0
while True:
    i += 1
    write_atomically(path, ('{"i": %d, "pad": "%s"}' % (i, "x" * (i * 7919 % 200000))).encode())
    print(i, flush=True)
"""


def test_kill_9_mid_state_write_loop_leaves_a_file_that_always_parses(tmp_path):
    path = tmp_path / "state.json"
    last = 0
    for round_ in range(12):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE)
        try:
            for _ in range(1 + round_ * 3):
                assert child.stdout.readline()
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        data = json.loads(path.read_text())  # never torn, never empty
        assert data["i"] >= 1
        last = data["i"]
    assert last >= 1


def test_kill_9_loses_no_recorded_last_sync(daemon, standin, tmp_path):
    proc = daemon()
    proc.settle()
    before = proc.get("/status")["last_syncs"]
    wait_for(lambda: json.loads((tmp_path / "state.json").read_text())["last_syncs"] == before,
             what="the last syncs on disk")
    proc.proc.kill()
    proc.proc.wait()
    again = daemon()
    assert again.get("/status")["last_syncs"] == before


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage", b'["a list"]'],
                         ids=["corrupt", "empty", "not-utf8", "wrong-shape"])
def test_unreadable_state_file_is_moved_aside_and_daemon_starts_fresh(daemon, tmp_path, content):
    (tmp_path / "state.json").write_bytes(content)
    proc = daemon()
    proc.settle()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert "moved aside" in proc.log()
    wait_for(lambda: (tmp_path / "state.json").exists()
             and json.loads((tmp_path / "state.json").read_text())["last_syncs"]["seasons"], what="a fresh state file")


def test_second_daemon_on_same_state_file_refuses_to_start(daemon):
    first = daemon()
    second = daemon(wait=False)
    assert second.proc.wait(10) == 1
    assert "in use by another scheduler_api process" in second.log()
    assert first.get("/health")["scheduler_running"] is True


def test_sigterm_while_sync_hangs_exits_0_within_shutdown_grace(daemon, standin, tmp_path):
    standin.set_fault("hang")
    proc = daemon({"SHUTDOWN_GRACE": "1s"})
    wait_for(lambda: standin.fetch_calls(), what="a hanging sync")
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.proc.wait(10) == 0
    assert time.monotonic() - started < 1.0 + 1.5
    assert "abandoned" in proc.log()
    json.loads((tmp_path / "state.json").read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_lets_in_flight_sync_finish_persists_and_exits_0(daemon, standin, tmp_path, signum):
    proc = daemon()
    proc.settle()
    standin.set_fault("delay", delay_s=0.5)
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(r=proc.request("POST", "/trigger/standings?season=2020")))
    thread.start()
    wait_for(lambda: standin.fetch_calls("/fetch/standings?season=2020"), what="the manual sync")
    proc.signal(signum)
    assert proc.proc.wait(10) == 0
    thread.join(10)
    assert answer["r"][0] == 200
    history = json.loads((tmp_path / "state.json").read_text())["history"]
    assert any(r["parameters"].get("season") == 2020 and r["outcome"] == "ok" for r in history)


def test_sighup_reloads_calendar(daemon, tmp_path):
    proc = daemon()
    proc.settle()
    assert proc.get("/status")["calendar"]["rounds"] == 22
    (tmp_path / "calendar.json").write_bytes((DATA / "ergast-2021.json").read_bytes())
    proc.signal(signal.SIGHUP)
    wait_for(lambda: "calendar refreshed season=2021" in proc.log(), what="calendar refreshed after SIGHUP")
    wait_for(lambda: proc.get("/status")["mode"]["season"] == 2021, what="the new calendar in /status")
    assert proc.get("/health")["scheduler_running"] is True


def test_a_burst_of_signals_never_wedges_the_daemon(daemon):
    proc = daemon()
    proc.settle()
    for _ in range(300):  # signals landing while a handler runs must not deadlock the main thread
        proc.signal(signal.SIGHUP)
    wait_for(lambda: proc.get("/health")["scheduler_running"], what="the daemon after 300 SIGHUPs")
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        proc.signal(signum)
    assert proc.proc.wait(15) == 0
    assert "stopped" in proc.log()
