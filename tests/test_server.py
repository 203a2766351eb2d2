"""The transport in :mod:`scheduler_api.server`: the real ApiServer on a loopback port, its limits, the admission queue.

Process-level tests of the same layer (bad request lines, slow and hostile
clients, a burst of triggers) run a real daemon in ``test_proc_http.py`` and
``test_proc_http_isolation.py``.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import pytest
import responses

from scheduler_api.api import App
from scheduler_api.health import FetcherHealth
from scheduler_api.clock import SystemClock
from scheduler_api.server import COMBINE_MAX, Admission, ApiServer, ConnectionSlots

from conftest import FETCHER, FakeClock, load_calendar, ts
from harness import wait_for
from rawhttp import assert_error, raw, read_to_close, split, timed_get, trickle_once

T0 = ts("2026-11-30T12:00:00Z")  # the clock fixture
ORIGIN_OK = {"success": True, "source": "jolpica", "count": 24, "timestamp": 1732834567}


@pytest.fixture
def serve(harness, clock):
    """Start the real ApiServer over a real App on 127.0.0.1:0 in a thread; :returns: ``(server, port)``.

    Called as ``serve(http_timeout_s=..., max_connections=...)``; the
    sockets run on real time, the App on the fake clock.
    """
    started = harness(calendar=load_calendar("ergast-2026.json")).start()
    health = FetcherHealth(clock, 10.0, "/health", lambda probe: None)  # probes are never run
    app = App(started.config, started.state, started.scheduler, health, clock, lambda: True)
    running = []

    def start(http_timeout_s: float = 5.0, max_connections: int = 64) -> tuple[ApiServer, int]:
        server = ApiServer(("127.0.0.1", 0), app, http_timeout_s, max_connections, SystemClock())
        thread = threading.Thread(target=server.serve, name="test-http", daemon=True)
        thread.start()
        running.append((server, thread))
        return server, server.server_address[1]

    yield start
    for server, thread in running:
        server.stop_serving()
        thread.join(5)
        server.server_close()


@pytest.fixture
def served(serve):
    """One server as ``serve()`` starts it: 5 s HTTP timeout, 64 connections."""
    return serve()


def test_server_sends_the_seed_json_byte_for_byte(mocked, served):
    _, port = served
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    conn.request("POST", "/trigger/seasons")
    response = conn.getresponse()

    assert response.status == 200
    assert response.read() == (
        b'{"success": true, "message": "Season sync triggered", "fetcher_called": true, "timestamp": %d}' % T0
    )
    conn.close()


def test_server_head_sends_headers_without_body(served):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/status")
    get = conn.getresponse()
    get_body = get.read()

    conn.request("HEAD", "/status")
    head = conn.getresponse()

    assert head.status == 200
    assert head.getheader("Content-Type") == "application/json"
    assert head.getheader("Content-Length") == str(len(get_body))
    assert head.read() == b""
    conn.close()


def test_server_keeps_an_http11_connection_alive_for_two_requests(served):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    conn.request("GET", "/health")
    first = conn.getresponse()
    first_body = first.read()
    sock = conn.sock
    conn.request("GET", "/status")
    second = conn.getresponse()
    second_body = second.read()

    assert (first.status, second.status) == (200, 200)
    assert first.version == second.version == 11
    assert first.will_close is False and second.will_close is False
    assert conn.sock is sock  # the same TCP connection served both
    assert json.loads(first_body)["scheduler_running"] is True
    assert json.loads(second_body)["status"] == "running"
    conn.close()


def test_server_sends_content_type_and_length_on_every_answer(served):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    for method, path, expected in (("GET", "/status", 200), ("GET", "/nope", 404), ("POST", "/status", 405),
                                   ("GET", "/history?limit=0", 400)):
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == expected
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("Content-Length") == str(len(body))
        json.loads(body)
        if expected == 405:
            assert response.getheader("Allow") == "GET, HEAD"
    conn.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "FOO"])
def test_put_status_is_405_with_allow_get_head(served, method):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    conn.request(method, "/status", body=b"{}")
    response = conn.getresponse()
    body = json.loads(response.read())

    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"
    assert response.getheader("Content-Type") == "application/json"
    assert body == {"success": False, "message": f"method {method} not allowed on /status; use GET, HEAD",
                    "timestamp": T0}
    conn.request("GET", "/health")  # the body was read: the connection carries on
    assert conn.getresponse().status == 200
    conn.close()


def test_options_health_is_204_with_allow(served):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    for path, allow in (("/health", "GET, HEAD"), ("/trigger/seasons", "POST")):
        conn.request("OPTIONS", path)
        response = conn.getresponse()
        assert (response.status, response.getheader("Allow"), response.read()) == (204, allow, b"")
        assert response.getheader("Content-Length") is None
    conn.request("GET", "/health")  # still in step on the same connection
    assert conn.getresponse().status == 200
    conn.close()


def test_once_stopping_a_get_is_still_answered_and_closed_and_a_trigger_gets_503(served):
    # A client whose connection was accepted just before a restart gets its answer (under socket
    # activation the next instance takes the connections that come after); no trigger starts a call.
    server, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read()
    trigger = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    trigger.request("GET", "/health")
    assert trigger.getresponse().read()

    server.stop_serving()
    conn.request("GET", "/health")
    response = conn.getresponse()
    trigger.request("POST", "/trigger/seasons")
    refused = trigger.getresponse()

    assert response.status == 200 and response.getheader("Connection") == "close"
    assert json.loads(response.read())["scheduler_running"] in (True, False)
    assert refused.status == 503 and refused.getheader("Connection") == "close"
    assert json.loads(refused.read()) == {"success": False, "message": "shutting down", "timestamp": T0}
    assert server.wait_idle(5.0) is True
    conn.close()
    trigger.close()


def queue_behind_a_running_turn(admission: Admission, count: int) -> tuple[threading.Event, list, list]:
    """Start a turn that runs until released, then ``count`` threads whose turns queue behind it, one by one.

    :returns: the event that ends the first turn, the threads, and the list
        each turn appends ``(number, name of the thread it ran on)`` to.
    """
    release, ran, threads = threading.Event(), [], []

    def first() -> None:
        release.wait(5)
        ran.append((-1, threading.current_thread().name))

    def request(number: int) -> None:
        admission.run(lambda: ran.append((number, threading.current_thread().name)))

    threads.append(threading.Thread(target=admission.run, args=(first,), name="lead"))
    threads[0].start()
    while not admission._busy:
        pass
    for number in range(count):
        thread = threading.Thread(target=request, args=(number,), name=f"request-{number}")
        thread.start()
        threads.append(thread)
        while len(admission._queue) < number + 1:  # queued before the next one starts
            pass
    return release, threads, ran


def test_admission_runs_turns_in_arrival_order_on_the_leading_thread():
    admission = Admission()
    release, threads, ran = queue_behind_a_running_turn(admission, COMBINE_MAX)
    release.set()
    for thread in threads:
        thread.join(5)
    assert ran == [(-1, "lead")] + [(number, "lead") for number in range(COMBINE_MAX)]  # no wake-up in between
    assert admission._busy is False and not admission._queue


def test_after_combine_max_turns_the_lead_passes_to_the_next_waiter():
    admission = Admission()
    release, threads, ran = queue_behind_a_running_turn(admission, COMBINE_MAX + 2)
    release.set()
    for thread in threads:
        thread.join(5)
    numbers = list(range(COMBINE_MAX + 2))
    assert [number for number, _ in ran] == [-1] + numbers
    assert [name for _, name in ran] == ["lead"] * (COMBINE_MAX + 1) + [f"request-{COMBINE_MAX}"] * 2


def test_a_turn_run_on_another_thread_returns_its_result_and_raises_its_error_in_its_own_thread():
    admission = Admission()
    release, threads, _ = queue_behind_a_running_turn(admission, 0)
    got: dict[str, object] = {}

    def answer() -> None:
        got["answer"] = admission.run(lambda: 42)

    def failure() -> None:
        try:
            admission.run(lambda: 1 / 0)
        except ZeroDivisionError as exc:
            got["error"] = exc

    for target in (answer, failure):
        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)
        while len(admission._queue) < len(threads) - 1:
            pass
    release.set()
    for thread in threads:
        thread.join(5)
    assert got["answer"] == 42 and isinstance(got["error"], ZeroDivisionError)
    assert admission.run(lambda: "free") == "free"  # the failure did not leave the queue busy


def timed_exchange(port: int, data: bytes) -> tuple[float, bytes]:
    """Send ``data`` on a new connection; :returns: seconds until the server closed it, and what it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(data)
        answer = read_to_close(sock)
        return time.monotonic() - started, answer


def test_get_with_an_unsent_body_delays_only_itself(serve):
    server, port = serve(http_timeout_s=1.0)
    held = []
    holder = threading.Thread(target=lambda: held.append(
        timed_exchange(port, b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")))
    holder.start()
    probes = []
    while holder.is_alive() or not probes:
        probes.append(timed_get(port, "/health")[0])
    holder.join()

    lifetime_s, answer = held[0]
    assert 1.0 <= lifetime_s <= 2.0  # SCHEDULER_HTTP_TIMEOUT, plus at most 1 s
    assert assert_error(answer, 408)["message"] == "request body not received within 1s (0 of 10 bytes)"
    assert len(probes) >= 10 and max(probes) < 0.1, (len(probes), max(probes))


def test_trickled_head_is_cut_off_at_the_total_deadline(serve):
    _, port = serve(http_timeout_s=1.0)
    lifetime_s, answer = trickle_once(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" * 10, 0.05, threading.Event())
    assert 1.0 <= lifetime_s <= 2.0  # 20 bytes a second: a per-read timeout would never fire
    assert assert_error(answer, 408)["message"] == "request head not received within 1s"


def test_at_the_limit_a_new_connection_takes_the_slot_of_the_longest_idle_one(serve):
    server, port = serve(max_connections=2)
    held = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(2)]
    for conn in held:
        conn.request("GET", "/health")
        assert conn.getresponse().read()  # kept alive and idle: each holds a slot
        wait_for(lambda: server.slots.idle == held.index(conn) + 1, what="the handler waiting for its next head")
    oldest = held[0].sock

    assert timed_get(port, "/health")[1] == 200  # not refused: the longest idle connection made room

    assert oldest.recv(1) == b""  # it was shut down
    for conn in held:
        conn.close()


def test_at_the_limit_a_connection_holding_back_its_body_makes_room(serve):
    server, port = serve(max_connections=2)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for sock in held:  # a head whose announced body never comes: waiting for its client, as for a head
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    wait_for(lambda: server.slots.open == 2 and server.slots.idle == 2, what="both heads to be read")

    assert timed_get(port, "/health")[1] == 200  # not refused: the one waiting longest made room

    assert held[0].recv(1) == b""  # it was shut down
    for sock in held:
        sock.close()


def test_connection_over_the_limit_gets_503_json_when_every_one_has_a_request_in_progress(serve, mocked):
    server, port = serve(max_connections=2)
    release = threading.Event()
    mocked.add_callback(responses.POST, f"{FETCHER}/fetch/seasons",
                        callback=lambda request: (release.wait(5), (200, {}, json.dumps(ORIGIN_OK)))[1])
    busy = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for sock in busy:  # triggers waiting for fetcher_service: requests in progress
        sock.sendall(b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: server.slots.open == 2 and server.slots.idle == 0, what="both triggers to start")

    code, headers, body = split(raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))

    assert (code, headers["connection"], headers["retry-after"]) == (503, "close", "1")
    assert body == {"success": False, "message": "too many connections: at most 2 at once; retry later",
                    "timestamp": T0}
    release.set()
    for sock in busy:
        assert split(sock.recv(65536))[0] == 200
        sock.close()
    wait_for(lambda: server.slots.open == 0, what="the closed connections' slots")
    assert timed_get(port, "/health")[1] == 200


def test_refusals_are_logged_at_most_once_a_minute(caplog):
    clock = FakeClock(T0)
    slots = ConnectionSlots(1, clock)
    assert slots.take() is True
    with caplog.at_level(logging.WARNING, logger="scheduler_api.server"):
        assert [slots.take() for _ in range(5)] == [False] * 5
        clock.advance(59.0)
        assert slots.take() is False
        clock.advance(1.0)
        assert slots.take() is False
    assert [record.getMessage() for record in caplog.records] == [
        "http connections at limit max=1 refused=1: every connection has a request in progress; "
        "further connections get 503 until one closes",
        "http connections at limit max=1 refused=6: every connection has a request in progress; "
        "further connections get 503 until one closes",
    ]
    slots.give_back()
    assert slots.take() is True and slots.open == 1


def test_refusals_of_the_last_minute_of_a_flood_are_logged_once_it_has_passed_or_at_close(caplog):
    clock = FakeClock(T0)
    slots = ConnectionSlots(1, clock)
    assert slots.take() is True
    with caplog.at_level(logging.WARNING, logger="scheduler_api.server"):
        assert [slots.take() for _ in range(4)] == [False] * 4  # the first is logged, three wait
        slots.give_back()
        clock.advance(30.0)
        assert slots.take() is True  # within the minute: still nothing
        slots.give_back()
        clock.advance(30.0)
        assert slots.take() is True  # the minute has passed: the three are logged
        assert slots.take() is False  # a new flood: counted, logged by close
        slots.close()
    assert [record.getMessage() for record in caplog.records] == [
        "http connections at limit max=1 refused=1: every connection has a request in progress; "
        "further connections get 503 until one closes",
        "http connections refused at the limit max=1 refused=3 since the last warning",
        "http connections refused at the limit max=1 refused=1 since the last warning",
    ]
