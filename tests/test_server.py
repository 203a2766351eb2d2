"""The transport in :mod:`scheduler_api.server`: the real ApiServer on a loopback port, and the admission lock.

Process-level tests of the same layer (bad request lines, slow clients, a
burst of triggers) run a real daemon in ``test_http_hardening.py``.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from scheduler_api.api import App
from scheduler_api.health import FetcherHealth
from scheduler_api.server import ApiServer, FifoLock

from conftest import FETCHER, load_calendar, ts

T0 = ts("2026-11-30T12:00:00Z")  # the clock fixture
ORIGIN_OK = {"success": True, "source": "jolpica", "count": 24, "timestamp": 1732834567}


@pytest.fixture
def served(harness, clock):
    """The real ApiServer over a real App on 127.0.0.1:0 in a thread; yields ``(server, port)``."""
    started = harness(calendar=load_calendar("ergast-2026.json")).start()
    health = FetcherHealth(clock, 10.0, "/health", lambda probe: None)  # probes are never run
    app = App(started.config, started.state, started.scheduler, health, clock, lambda: True)
    server = ApiServer(("127.0.0.1", 0), app, 5.0)
    thread = threading.Thread(target=server.serve, name="test-http", daemon=True)
    thread.start()
    try:
        yield server, server.server_address[1]
    finally:
        server.stop_serving()
        thread.join(5)
        server.server_close()


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


def test_server_answers_501_for_put_as_json(served):
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    conn.request("PUT", "/status", body=b"{}")
    response = conn.getresponse()
    body = json.loads(response.read())

    assert response.status == 501
    assert response.getheader("Content-Type") == "application/json"
    assert body == {"success": False, "message": "Unsupported method ('PUT')", "timestamp": T0}
    conn.close()


def test_server_answers_503_on_an_open_connection_once_stopping(served):
    server, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read()

    server.stop_serving()
    conn.request("GET", "/health")
    response = conn.getresponse()

    assert response.status == 503
    assert response.getheader("Connection") == "close"
    assert json.loads(response.read()) == {"success": False, "message": "shutting down", "timestamp": T0}
    assert server.wait_idle(5.0) is True
    conn.close()


def test_admission_lock_hands_over_in_arrival_order():
    lock, order = FifoLock(), []
    lock.__enter__()  # held: the workers below queue up one by one

    def worker(number: int) -> None:
        with lock:
            order.append(number)

    threads = []
    for number in range(5):
        thread = threading.Thread(target=worker, args=(number,))
        thread.start()
        threads.append(thread)
        while len(lock._waiters) < number + 1:  # wait until this one is queued before starting the next
            pass
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
