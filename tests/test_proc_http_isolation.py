"""Isolation between clients, against a real daemon process: no client can delay another's answer.

Hostile clients on raw sockets (``rawhttp.py``): a held body, trickled heads
and bodies, a client that never reads, a stalled pipelined request, a
thousand connections at once. The same rules in-process are in
``test_server.py``; the full minute of issue 10's acceptance run is
``python tests/rawhttp.py``.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness import daemon, standin, wait_for  # noqa: F401 - fixtures
from rawhttp import assert_error, isolation_scenario, read_to_close, split, timed_get, trickle_once

TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # tcpi_state values of <netinet/tcp.h>


def tcp_closed_by_peer(sock: socket.socket) -> bool:
    """:returns: True once the server has closed or reset ``sock``'s connection (read without reading data)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (TCP_CLOSE, TCP_CLOSE_WAIT)


def threads_of(proc) -> int:
    """:returns: the number of threads of a daemon process (Linux)."""
    with open(f"/proc/{proc.proc.pid}/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_held_body_and_50_trickling_heads_never_delay_health(daemon):
    proc = daemon({"SCHEDULER_HTTP_TIMEOUT": "2s"})
    proc.settle()

    result = isolation_scenario(proc.port, duration_s=10.0, tricklers=50)

    summary = result.summary()
    assert result.errors == [] and set(result.probe_status) == {200}, summary
    assert summary["probes"] >= 50 and summary["probe_max_ms"] < 100, summary  # every probe, not a percentile
    assert summary["trickling_connections_cut"] >= 50 * 4, summary  # each one cut, reconnected, cut again
    assert summary["trickle_cut_max_s"] <= 2 + 1, summary  # SCHEDULER_HTTP_TIMEOUT + 1 s
    assert summary["held_gets_cut"] >= 4 and summary["hold_cut_max_s"] <= 2 + 1, summary
    assert "Traceback" not in proc.log()


@pytest.fixture
def strict(daemon):
    """A settled daemon with a 1 s HTTP timeout and the default 64 connections."""
    proc = daemon({"SCHEDULER_HTTP_TIMEOUT": "1s", "LOG_LEVEL": "DEBUG"})
    proc.settle()
    return proc


def probe_while(port: int, busy: threading.Thread, at_least: int = 5) -> list[float]:
    """Probe ``/health`` until ``busy`` ends (and at least ``at_least`` times); :returns: the latencies."""
    latencies = []
    while busy.is_alive() or len(latencies) < at_least:
        latency_s, status = timed_get(port)
        assert status == 200
        latencies.append(latency_s)
    return latencies


def test_body_trickled_a_byte_at_a_time_is_cut_at_the_timeout(strict):
    results = []
    head = b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    trickler = threading.Thread(target=lambda: results.append(
        trickle_once(strict.port, b"x" * 1000, 0.05, threading.Event(), prefix=head)))
    trickler.start()
    latencies = probe_while(strict.port, trickler)
    trickler.join()

    lifetime_s, answer = results[0]
    assert 1.0 <= lifetime_s <= 1.0 + 1.0
    assert assert_error(answer, 408)["message"].startswith("request body not received within 1s (")
    assert max(latencies) < 0.1, max(latencies)


def test_client_that_never_reads_its_answers_is_cut_off_at_the_timeout(strict):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few answers
    sock.settimeout(5)
    sock.connect(("127.0.0.1", strict.port))
    started = time.monotonic()
    requests = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n" * 20000  # 30 MB of answers

    def send() -> None:
        try:
            sock.sendall(requests)
        except OSError:
            pass  # the server stopped reading, then hung up

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    closed = threading.Thread(target=wait_for, args=(lambda: tcp_closed_by_peer(sock), 5.0, "the server to hang up"))
    closed.start()
    latencies = probe_while(strict.port, closed)
    closed.join()
    assert time.monotonic() - started <= 1.0 + 1.0  # SCHEDULER_HTTP_TIMEOUT + 1 s
    assert read_to_close(sock).count(b"HTTP/1.1 200 OK") < 20000
    sock.close()
    assert max(latencies) < 0.1, max(latencies)


def test_pipelined_request_with_a_stalled_second_is_cut_after_the_first_answer(strict):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\n")
        answers = read_to_close(sock)
        elapsed_s = time.monotonic() - started
    first, _, second = answers.partition(b"HTTP/1.1 408 ")
    assert split(first)[0] == 200 and split(first)[2]["scheduler_running"] is True
    assert_error(b"HTTP/1.1 408 " + second, 408)
    assert 1.0 <= elapsed_s <= 1.0 + 1.0


def test_1000_silent_connections_at_once_never_keep_health_out(daemon):
    proc = daemon({"SCHEDULER_HTTP_TIMEOUT": "2s"})  # SCHEDULER_MAX_CONNECTIONS defaults to 64
    proc.settle()
    threads_before = threads_of(proc)
    socks = [socket.create_connection(("127.0.0.1", proc.port), timeout=5) for _ in range(1000)]
    try:
        # Each new connection takes the slot of the longest-waiting silent one, which is shut down.
        wait_for(lambda: sum(map(tcp_closed_by_peer, socks)) >= 1000 - 64, 5.0, "silent connections displaced")
        assert threads_of(proc) <= threads_before + 64 + 2  # never more threads than slots
        started = time.monotonic()
        assert proc.request("GET", "/health", timeout_s=1.0)[0] == 200  # while all 64 slots are taken
        assert time.monotonic() - started < 0.5
    finally:
        for sock in socks:
            sock.close()
    assert "http connections at limit" not in proc.log()  # nothing refused: every one was idle
