"""The whole-call deadline and body cap of every HTTP call, against loopback servers that stall or trickle."""

from __future__ import annotations

import socket
import threading
import time
import types

import pytest
import requests

from scheduler_api import httpcall
from scheduler_api.httpcall import CallTimeout, NoAnswer, exchange, is_loopback, make_session

from harness import wait_for

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class RawServer:
    """A loopback server that answers each connection with ``behave(conn)``; stops promptly."""

    def __init__(self, behave) -> None:
        self.behave = behave
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.connections = 0  # accepted so far
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            try:
                self.behave(conn, self.stop)
            except OSError:
                pass

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve():
    servers: list[RawServer] = []

    def start(behave) -> RawServer:
        server = RawServer(behave)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def trickle(data: bytes, every_s: float):
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(data)):
            if stop.wait(every_s):
                return
            conn.sendall(data[i:i + 1])
    return behave


def call(url: str, deadline_s: float, max_bytes: int = 1 << 20, method: str = "POST", session=None, hold=None):
    session = session or make_session(trust_env=False)
    prepared = session.prepare_request(requests.Request(method, url))
    return exchange(session, prepared, connect_timeout_s=3.0, deadline_s=deadline_s, max_bytes=max_bytes,
                    hold=hold)


def test_a_trickled_body_is_cut_off_at_the_deadline(serve):
    body = b"x" * 100_000
    server = serve(lambda conn, stop: (conn.sendall(HEAD % len(body)), trickle(body, 0.05)(conn, stop)))
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        call(server.url(), deadline_s=0.6)
    elapsed_s = time.monotonic() - started
    assert 0.55 <= elapsed_s < 1.6
    assert caught.value.sent is True


def test_a_trickled_head_is_cut_off_at_the_deadline(serve):
    server = serve(trickle(HEAD % 2 + b"{}", 0.05))
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        call(server.url(), deadline_s=0.6)
    assert time.monotonic() - started < 1.6
    assert caught.value.sent is True


def test_a_server_that_never_answers_times_out_with_the_request_sent(serve):
    server = serve(lambda conn, stop: stop.wait(30))
    with pytest.raises(CallTimeout) as caught:
        call(server.url(), deadline_s=0.3)
    assert caught.value.sent is True
    assert "0.3s" in caught.value.reason


def test_a_full_answer_is_read(serve):
    server = serve(lambda conn, stop: conn.sendall(HEAD % 16 + b'{"success":true}'))
    answer = call(server.url("/fetch/seasons"), deadline_s=5)
    assert (answer.status, answer.body, answer.truncated) == (200, b'{"success":true}', False)
    assert server.requests[0].startswith(b"POST /fetch/seasons HTTP/1.1\r\n")


def test_a_body_over_the_cap_is_cut_and_marked(serve):
    body = b"y" * 300_000
    server = serve(lambda conn, stop: conn.sendall(HEAD % len(body) + body))
    answer = call(server.url(), deadline_s=5, max_bytes=100_000)
    assert len(answer.body) == 100_000 and answer.truncated


def test_a_refused_connection_is_no_answer_and_not_sent():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NoAnswer) as caught:
        call(f"http://127.0.0.1:{port}/x", deadline_s=2)
    assert caught.value.reason == "connection refused"
    assert caught.value.sent is False


def test_a_connection_closed_without_answer_is_no_answer_but_sent(serve):
    server = serve(lambda conn, stop: None)
    with pytest.raises(NoAnswer) as caught:
        call(server.url(), deadline_s=2)
    assert caught.value.sent is True


def test_the_deadline_applies_on_a_kept_alive_connection(serve):
    answers = iter([HEAD % 2 + b"{}", None])

    def behave(conn, stop):
        conn.sendall(next(answers))
        data = conn.recv(65536)  # the second request on the same connection: never answered
        if data:
            stop.wait(30)
    server = serve(behave)
    session = make_session(trust_env=False)
    assert call(server.url(), deadline_s=2, session=session).status == 200
    started = time.monotonic()
    with pytest.raises(CallTimeout):
        call(server.url(), deadline_s=0.3, session=session)
    assert time.monotonic() - started < 1.3


def test_no_proxy_from_the_environment_for_a_loopback_url(serve, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    server = serve(lambda conn, stop: conn.sendall(HEAD % 2 + b"{}"))
    assert call(server.url(), deadline_s=5, method="GET", session=make_session(trust_env=True)).status == 200


def test_a_public_url_uses_the_environment_proxy(serve, monkeypatch):
    proxy = serve(lambda conn, stop: conn.sendall(HEAD % 2 + b"{}"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url(""))
    monkeypatch.setenv("http_proxy", proxy.url(""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    answer = call("http://calendar.example/ergast/f1/2026.json", deadline_s=5, method="GET",
                  session=make_session(trust_env=True))
    assert answer.status == 200
    assert proxy.requests[0].startswith(b"GET http://calendar.example/ergast/f1/2026.json HTTP/1.1")


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("10.0.0.1", False), ("api.jolpi.ca", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_trickled_body_over_tls_is_cut_off_at_the_deadline(serve):
    """The same deadline over TLS (a public calendar is https); the certificate is a test-only self-signed one."""
    import pathlib
    import ssl

    tls = pathlib.Path(__file__).parent / "data" / "tls"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve_tls() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls_conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls_conn.recv(4096)
            tls_conn.sendall(HEAD % 100_000)
            trickle(b"x" * 100_000, 0.05)(tls_conn, stop)

    threading.Thread(target=serve_tls, daemon=True).start()
    session = make_session(trust_env=False)
    session.verify = str(tls / "cert.pem")
    started = time.monotonic()
    try:
        with pytest.raises(CallTimeout):
            call(f"https://127.0.0.1:{listener.getsockname()[1]}/", deadline_s=0.6, method="GET", session=session)
        assert time.monotonic() - started < 1.6
    finally:
        stop.set()
        listener.close()


def test_a_hold_comes_once_the_connection_is_made_and_before_any_byte_is_written(serve):
    server = serve(lambda conn, stop: conn.sendall(HEAD % 2 + b"{}"))
    seen = []

    def hold() -> None:  # where the scheduler waits for the due time: only the write is left
        wait_for(lambda: server.connections == 1, what="the connection")
        seen.append(list(server.requests))

    answer = call(server.url("/fetch/rounds"), deadline_s=5, hold=hold)
    assert seen == [[]]  # connected, nothing sent yet
    assert answer.status == 200 and server.requests[0].startswith(b"POST /fetch/rounds HTTP/1.1\r\n")


def test_the_deadline_starts_again_when_the_hold_returns(serve, monkeypatch):
    server = serve(lambda conn, stop: conn.sendall(HEAD % 2 + b"{}"))
    offset_s = [0.0]
    monkeypatch.setattr(httpcall, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + offset_s[0]))

    def hold() -> None:  # a hold as long as the whole deadline: the call itself still has all of it
        offset_s[0] += 10.0

    assert call(server.url(), deadline_s=5, hold=hold).status == 200


def test_a_call_that_fails_before_writing_still_holds_first():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    holds = []
    with pytest.raises(NoAnswer):
        call(f"http://127.0.0.1:{port}/x", deadline_s=2, hold=lambda: holds.append("held"))
    assert holds == ["held"]  # so a refused call is not reported before its due time
