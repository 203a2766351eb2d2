"""Bad input, access control and connection handling, against a real daemon process.

Every daemon here is started by the ``daemon`` fixture of ``harness.py``
with an allow-list environment; in-process checks of the same hardening are
in ``test_http_hardening.py``.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import daemon, free_port, standin, wait_for  # noqa: F401 - fixtures
from rawhttp import assert_error, raw, split

TOKEN = "s3cr$t-T0ken'x"


@pytest.fixture
def quiet(daemon, standin):
    """A settled daemon with a short HTTP timeout; returns (daemon, number of fetch calls so far)."""
    proc = daemon({"SCHEDULER_HTTP_TIMEOUT": "300ms"})
    proc.settle()
    return proc


def no_new_fetch(standin, before: int) -> None:
    assert len(standin.fetch_calls()) == before, standin.fetch_calls()[before:]


# -- the HTTP layer ------------------------------------------------------------


def test_content_length_repeated_is_400(quiet, standin):
    before = len(standin.fetch_calls())
    answer = raw(quiet.port, b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                             b"Content-Length: 0\r\n\r\n")
    assert "repeated" in assert_error(answer, 400)["message"]
    no_new_fetch(standin, before)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"+5", b"1e3", b"99999999999999999999999"])
def test_content_length_not_a_number_is_400(quiet, standin, value):
    before = len(standin.fetch_calls())
    answer = raw(quiet.port, b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
    assert_error(answer, 400)
    no_new_fetch(standin, before)


def test_body_over_64_kib_is_413(quiet, standin):
    before = len(standin.fetch_calls())
    answer = raw(quiet.port, b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n")
    assert_error(answer, 413)
    exactly = raw(quiet.port, b"POST /trigger/rounds?season=2020 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              b"Content-Length: 65536\r\n\r\n" + b"x" * 65536)
    assert split(exactly)[0] == 200
    no_new_fetch(standin, before + 1)


def test_body_shorter_than_content_length_is_408_then_400_and_calls_nothing(quiet, standin):
    before = len(standin.fetch_calls())
    started = time.monotonic()
    answer = raw(quiet.port, b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert assert_error(answer, 408)["message"] == "request body not received within 0.3s (3 of 10 bytes)"
    assert time.monotonic() - started < 3.0  # SCHEDULER_HTTP_TIMEOUT, not forever
    half_closed = raw(quiet.port, b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
                      shut_write=True)
    assert_error(half_closed, 400)
    no_new_fetch(standin, before)


@pytest.mark.parametrize("line, status", [
    (b"GARBAGE\r\n", 400),
    (b"GET /health HTTP/1.x\r\n", 400),
    (b"GET /health HTTP/2.0\r\n", 505),
    (b"GET /health HTTP/1.1 extra\r\n", 400),
    (b"BREW /health HTTP/1.1\r\n", 405),
    (b"G(T /health HTTP/1.1\r\n", 400),
    (b"GET /health HTTP/0.9\r\n", 505),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n", 414),
], ids=["garbage", "bad-version-text", "version-2", "extra-word", "unknown-method", "not-a-token", "version-0.9",
        "too-long"])
def test_bad_request_line_answered_with_status_line_and_json(quiet, line, status):
    answer = raw(quiet.port, line + b"Host: x\r\n\r\n")
    assert_error(answer, status)
    assert quiet.get("/health")["scheduler_running"] is True


def test_client_disconnect_mid_answer_logs_no_traceback(daemon, standin):
    quiet = daemon({"LOG_LEVEL": "DEBUG"})
    quiet.settle()
    standin.set_fault("delay", delay_s=0.3)
    before = len(standin.fetch_calls("/fetch/seasons"))
    socks = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", quiet.port))
        sock.sendall(b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    wait_for(lambda: len(standin.fetch_calls("/fetch/seasons")) > before, what="the trigger under way")
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # reset: the answer will meet a dead socket
    # Many pipelined requests, then a reset while the answers are being written.
    sock = socket.create_connection(("127.0.0.1", quiet.port))
    sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
    sock.recv(100)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_for(lambda: quiet.log().count("sync kind=seasons trigger=manual") >= 1, what="the abandoned trigger")
    wait_for(lambda: quiet.log().count("http method=POST path=/trigger/seasons status=200") == 3,
             what="the three answers to be written")
    assert quiet.get("/health")["scheduler_running"] is True
    assert "Traceback" not in quiet.log()
    assert "ERROR" not in quiet.log()


def test_300_idle_connections_within_the_limit_do_not_stop_health(daemon):
    quiet = daemon({"SCHEDULER_MAX_CONNECTIONS": "400"})  # the default 10 s timeout: the idle ones stay open
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", quiet.port), timeout=5))
        started = time.monotonic()
        status, body, _ = quiet.request("GET", "/health", timeout_s=1.0)
        assert status == 200 and body["scheduler_running"] is True
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_100_concurrent_identical_triggers_make_one_fetcher_call(daemon, standin):
    quiet = daemon({"SCHEDULER_MAX_CONNECTIONS": "128"})  # 100 clients at once: over the default 64
    quiet.settle()
    standin.set_fault("delay", delay_s=0.5)
    target = "/fetch/rounds?season=2026"
    before = len(standin.fetch_calls(target))
    barrier = threading.Barrier(100)

    def trigger(_: int):
        barrier.wait()
        return quiet.request("POST", "/trigger/rounds?season=2026", timeout_s=10)

    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(trigger, range(100)))
    assert len(answers) == 100
    for status, body, response in answers:
        assert status == 200 and response.getheader("Content-Type") == "application/json"
        assert body == {"success": True, "message": "Rounds sync triggered for season 2026",
                        "fetcher_called": True, "timestamp": body["timestamp"]}
    assert 1 <= len(standin.fetch_calls(target)) - before <= 3


# -- parameters ----------------------------------------------------------------

BAD_QUERIES = [
    "/trigger/rounds?season=+2025",
    "/trigger/rounds?season=%2B2025",
    "/trigger/rounds?season=%202025",
    "/trigger/rounds?season=2025%20",
    "/trigger/rounds?season=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%95",  # fullwidth digits
    "/trigger/rounds?season=2025.0",
    "/trigger/rounds?season=02025",
    "/trigger/rounds?season=0000000000000000000002025",
    "/trigger/rounds?season=" + "9" * 5000,
    "/trigger/rounds?season=1949",
    "/trigger/rounds?season=2999",
    "/trigger/rounds?season=2025;round=1",
    "/trigger/rounds?season=2025&season=2025",
    "/trigger/rounds?season=",
    "/trigger/rounds?season",
    "/trigger/rounds?season=%FF",
    "/trigger/rounds?season=%C3%28",
    "/trigger/rounds?season=%",
    "/trigger/rounds?season=2025&",
    "/trigger/rounds?&season=2025",
    "/trigger/rounds?seasons=2025",
    "/trigger/rounds?season=2025&round=1",
    "/trigger/seasons?season=2025",
    "/trigger/seasons?x",
    "/trigger/results?season=2025&round=-1",
    "/trigger/results?season=2025&round=100",
    "/trigger/results?season=2025&round=1+",
    "/trigger/results?season=2025&round=%EF%BC%91",
    "/trigger/results?season=2025&round=0x1",
    "/trigger/standings?season=2025&season=2026",
    "/trigger/standings?season=-2025",
]


def test_invalid_parameters_are_400_and_call_nothing(quiet, standin):
    before = len(standin.fetch_calls())
    for target in BAD_QUERIES:
        status, body, _ = quiet.request("POST", target)
        assert status == 400, (target, body)
        assert body["success"] is False and isinstance(body["timestamp"], int), target
    bad_get = ["/status?x=1", "/health?x=1", "/history?kind=foo", "/history?limit=0", "/history?limit=501",
               "/history?limit=+5", "/history?kind=rounds&kind=rounds", "/history?limit=5;kind=rounds"]
    for target in bad_get:
        assert quiet.request("GET", target)[0] == 400, target
    no_new_fetch(standin, before)
    assert quiet.request("POST", "/trigger/results?season=2025&round=0")[0] == 200  # the valid edge


# -- token -----------------------------------------------------------------------


def test_triggers_need_the_bearer_token_else_401_and_nothing_called(daemon, standin):
    proc = daemon({"SCHEDULER_API_TOKEN": TOKEN})
    proc.settle()
    before = len(standin.fetch_calls())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": "Basic " + TOKEN}, {"Authorization": "Bearer " + TOKEN + "x"},
                    {"Authorization": "Bearer " + TOKEN[:-1]}):
        for target in ("/trigger/seasons", "/trigger/rounds?season=2025", "/trigger/results?season=2025&round=1",
                       "/trigger/standings?season=2025"):
            status, body, response = proc.request("POST", target, headers)
            assert status == 401 and body["success"] is False, (headers, target)
            assert response.getheader("WWW-Authenticate") == "Bearer"
    no_new_fetch(standin, before)
    assert proc.request("GET", "/status")[0] == 200  # GET endpoints need no token
    status, body, _ = proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer " + TOKEN})
    assert status == 200 and body["success"] is True


def test_token_never_appears_in_logs_status_or_history(daemon, standin):
    proc = daemon({"SCHEDULER_API_TOKEN": TOKEN, "LOG_LEVEL": "DEBUG"})
    proc.settle()
    proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer " + TOKEN})
    proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer " + TOKEN + "x"})
    standin.set_fault("error500")
    proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer " + TOKEN})
    wait_for(lambda: "HTTP 500" in proc.log(), what="the failed sync")
    for text in (proc.log(), json.dumps(proc.get("/status")), json.dumps(proc.get("/history?limit=500")),
                 json.dumps(proc.get("/health"))):
        assert TOKEN not in text and "s3cr" not in text


def test_non_loopback_bind_without_token_logs_a_warning(daemon):
    loopback = daemon()
    assert "without SCHEDULER_API_TOKEN" not in loopback.log()
    loopback.stop()
    exposed = daemon({"SCHEDULER_HOST": "0.0.0.0"})
    wait_for(lambda: "without SCHEDULER_API_TOKEN" in exposed.log(), what="the warning")
    exposed.stop()
    guarded = daemon({"SCHEDULER_HOST": "0.0.0.0", "SCHEDULER_API_TOKEN": TOKEN})
    assert "without SCHEDULER_API_TOKEN" not in guarded.log()


# -- environment ----------------------------------------------------------------


def test_proxies_from_the_environment_are_not_used_for_fetcher_calls(daemon, standin):
    dead = f"http://127.0.0.1:{free_port()}"
    proc = daemon({"HTTP_PROXY": dead, "http_proxy": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead})
    proc.settle()
    status, body, _ = proc.request("POST", "/trigger/seasons")
    assert status == 200 and body["success"] is True
    assert proc.get("/health")["fetcher_service_connected"] is True


def test_env_file_with_bom_export_quotes_and_dollar_loads_as_written(daemon, standin, tmp_path):
    env_file = tmp_path / "scheduler_api.env"
    env_file.write_bytes(
        "\ufeffexport SCHEDULER_API_TOKEN='a$b${HOME}c'\n"
        "# a comment\n"
        'export FETCH_PATH_SEASONS="/fetch/seasons?tag=$USER"\n'
        "SEASONS_INTERVAL=6h # six hours\n".encode("utf-8")
    )
    proc = daemon(args=("--env-file", str(env_file)))
    proc.settle()
    assert standin.fetch_calls("/fetch/seasons?tag=%24USER")  # "$USER" as written, not expanded
    assert proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer a$b${HOME}c"})[0] == 200
    assert proc.request("POST", "/trigger/seasons", {"Authorization": "Bearer ab"})[0] == 401


# -- connection handling -------------------------------------------------------


def test_idle_connection_is_closed_after_http_timeout(daemon):
    proc = daemon({"SCHEDULER_HTTP_TIMEOUT": "200ms"})
    with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # the server hung up on the silent client
        assert time.monotonic() - started < 2.0
    with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a slow client that never ends its headers
        started = time.monotonic()
        while sock.recv(65536):
            pass  # an error answer (408 or 400) at most, then the close
        assert time.monotonic() - started < 2.0


def test_health_reports_stale_data_but_a_failing_fetcher_stays_connected(daemon, standin):
    standin.set_fault("error500", paths=("/fetch/rounds",))
    proc = daemon({"ROUNDS_INTERVAL_OFF_SEASON": "100ms"})
    body = wait_for(lambda: (lambda b: b if b["stale"] else None)(proc.get("/health")),
                    what="/health to report stale rounds")
    assert body["status"] == "degraded" and body["failing"] == ["rounds"]
    assert "rounds" in body["stale"] and "seasons" not in body["stale"]
    assert body["fetcher_service_connected"] is True
    standin.set_fault("ok")
    wait_for(lambda: proc.get("/health")["status"] == "healthy", what="fresh data again")


def test_health_answers_while_a_manual_trigger_waits_for_a_hanging_fetcher(daemon, standin):
    proc = daemon()
    proc.settle()
    standin.set_fault("hang", paths=("/fetch/seasons",))
    answers = []
    trigger = threading.Thread(target=lambda: answers.append(proc.request("POST", "/trigger/seasons")))
    trigger.start()
    wait_for(lambda: len(standin.fetch_calls("/fetch/seasons")) >= 2, what="the manual seasons call to hang")
    started = time.monotonic()
    assert proc.get("/health")["scheduler_running"] is True  # the waiting trigger holds no lock /health needs
    assert proc.get("/status")["in_flight"] == ["seasons"]
    assert time.monotonic() - started < 0.5
    standin.set_fault("ok")  # the hanging call is dropped unanswered
    trigger.join(10)
    assert answers and answers[0][0] == 502


def test_metrics_of_a_running_daemon_parse_and_count_a_manual_trigger(daemon):
    from prometheus_client.parser import text_string_to_metric_families

    proc = daemon()
    proc.settle()
    assert proc.request("POST", "/trigger/seasons")[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode("utf-8")
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("scheduler_api_syncs_total", (("kind", "seasons"), ("outcome", "ok"), ("trigger", "manual")))] == 1
    assert samples[("scheduler_api_syncs_total", (("kind", "seasons"), ("outcome", "ok"), ("trigger", "schedule")))] == 1
    assert samples[("scheduler_api_fetcher_up", ())] == 1
