"""Faults of fetcher_service, restarts and signals, against a real daemon process and a FetcherStandIn.

Every daemon here is started by the ``daemon`` fixture of ``harness.py``
with an allow-list environment. The scheduling rules behind these faults,
on a FakeClock, are in ``test_faults.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness import DATA, REPO, clean_env, daemon, standin, wait_for  # noqa: F401 - fixtures
from scheduler_api.standin import FetcherStandIn


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
    # fault, HTTP status of the trigger, fetcher_called (the request reached it), answered, words of the reason
    ("error500", 502, True, True, "HTTP 500: Failed to fetch rounds"),
    ("success_false", 502, True, True, "success=false: season not found"),
    ("422", 502, True, True, "HTTP 422: query.season: field required"),
    ("429", 502, True, True, "HTTP 429: slow down"),
    ("503", 502, True, True, "HTTP 503: slow down"),
    ("reset", 502, True, False, "no answer"),
    ("hang", 504, True, False, "no answer: deadline of 0.5s passed"),
]


def test_fetcher_faults_keep_daemon_up_and_failures_are_logged_with_reasons(daemon, standin):
    proc = daemon({"FETCHER_TIMEOUT": "500ms"})
    proc.settle()
    for in_row, (fault, code, called, answered, reason) in enumerate(FAULT_CASES, start=1):
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
        assert health["fetcher_service_connected"] is answered, fault
        # From the third failed attempt in a row on, seasons is "failing" and the daemon degraded.
        assert health["failing"] == (["seasons"] if in_row >= 3 else []), (fault, health)
        assert health["status"] == ("healthy" if answered and in_row < 3 else "degraded"), (fault, health)
    standin.set_fault("ok")
    assert proc.request("POST", "/trigger/seasons")[0] == 200
    assert proc.get("/health")["status"] == "healthy"
    assert "outcome=timeout" in proc.log()
    assert "Traceback" not in proc.log()


def test_non_json_2xx_answer_counts_as_success_and_others_fail(daemon, standin):
    """A 2xx answer is a success unless its body is a JSON object whose boolean ``success`` is false."""
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
    assert status == 502 and body["fetcher_called"] is True, body  # it reached the fetcher, which closed it


# -- restarts and state ------------------------------------------------------

WRITER = """
import sys
from scheduler_api.persist import write_atomically
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
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, env=clean_env(),
                                 stdout=subprocess.PIPE)
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
