"""One connection in :mod:`scheduler_api.httphandler`: the total read deadline, answer encoding, one write.

The real server over loopback sockets is in ``test_server.py``; the same
rules against a daemon process in ``test_proc_http_isolation.py``.
"""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest

from scheduler_api.api import App
from scheduler_api.clock import SystemClock
from scheduler_api.config import Config
from scheduler_api.deadline_reader import DeadlineReader
from scheduler_api.server import Admission, ConnectionSlots
from scheduler_api.httphandler import READ_BUFFER, Handler, render_answer
from scheduler_api.state import State

from conftest import FakeClock, ts
from harness import wait_for

T0 = ts("2026-11-30T12:00:00Z")


@pytest.fixture
def pair():
    """A connected socket pair: ``(server side, client side)``."""
    server_side, client_side = socket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


def test_head_deadline_is_total_not_per_read(pair):
    server_side, client_side = pair
    clock = FakeClock(T0)
    reader = DeadlineReader(server_side, clock)
    reader.arm(2.0)  # SCHEDULER_HTTP_TIMEOUT=2s
    buffer = bytearray(16)
    for _ in range(3):  # a byte every 0.6 s: each read is quick, the total is not
        client_side.sendall(b"G")
        assert reader.readinto(buffer) == 1
        clock.advance(0.6)
    client_side.sendall(b"E")
    clock.advance(0.2)  # 2.0 s since arm: the deadline, although a byte is waiting
    with pytest.raises(TimeoutError):
        reader.readinto(buffer)
    assert reader.tell() == 3
    reader.arm(2.0)  # a new request gets a new budget
    assert reader.readinto(buffer) == 1 and reader.tell() == 4


def test_reader_waits_for_data_only_until_the_time_left(pair):
    server_side, _ = pair
    clock = FakeClock(T0)
    reader = DeadlineReader(server_side, clock)
    reader.arm(0.05)
    with pytest.raises(TimeoutError):  # nothing arrives: the socket wait itself ends at the deadline
        reader.readinto(bytearray(16))


def test_unarmed_reader_refuses_to_read(pair):
    server_side, client_side = pair
    client_side.sendall(b"GET")
    with pytest.raises(TimeoutError):
        DeadlineReader(server_side, FakeClock(T0)).readinto(bytearray(16))


def test_render_answer_204_has_no_body_nor_content_length():
    answer = render_answer(204, {}, {"Allow": "GET, HEAD"}, close=False)
    assert answer == b"HTTP/1.1 204 No Content\r\nServer: scheduler_api\r\nAllow: GET, HEAD\r\n\r\n"


def test_render_answer_sends_json_with_its_length_and_head_without_body():
    body = {"success": False, "message": "x", "timestamp": T0}
    full = render_answer(503, body, {"Retry-After": "1"}, close=True)
    head, _, payload = full.partition(b"\r\n\r\n")
    assert json.loads(payload) == body
    assert head.split(b"\r\n") == [b"HTTP/1.1 503 Service Unavailable", b"Server: scheduler_api",
                                   b"Content-Type: application/json", b"Content-Length: %d" % len(payload),
                                   b"Retry-After: 1", b"Connection: close"]
    assert render_answer(503, body, {"Retry-After": "1"}, close=True, with_body=False) == head + b"\r\n\r\n"


class Connection:
    """A socket stand-in that records what is written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def settimeout(self, timeout_s: float | None) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def send(self, data: bytes, flags: int = 0) -> int:
        self.writes.append(bytes(data))
        return len(data)


class Host:
    """The least a handler needs from its server (see ``HandlerHost``)."""

    app = App(Config(), State(), None, None, SystemClock(), lambda: True)
    http_timeout_s = 10.0
    clock = SystemClock()
    stopping = False

    def __init__(self) -> None:
        self.admission = Admission()
        self.slots = ConnectionSlots(64, SystemClock())

    def request_started(self) -> None:
        pass

    def request_finished(self) -> None:
        pass


def handle(data: bytes) -> tuple[Handler, Connection]:
    """Run one ``handle_one_request`` over ``data``; :returns: the handler and what it wrote."""
    handler = Handler.__new__(Handler)
    connection = Connection()
    handler.server, handler.connection, handler.client_address = Host(), connection, ("127.0.0.1", 1)
    handler._reader = DeadlineReader(connection, handler.server.clock)  # armed, never read: rfile is in memory
    handler.rfile = io.BufferedReader(io.BytesIO(data))
    handler.handle_one_request()
    return handler, connection


def test_a_pipelining_client_may_make_room_while_its_requests_other_than_triggers_are_answered(pair):
    server_side, client_side = pair
    handler = Handler.__new__(Handler)
    handler.server, handler.connection = Host(), server_side
    handler._reader = DeadlineReader(server_side, handler.server.clock)
    handler.rfile = io.BufferedReader(handler._reader, READ_BUFFER)
    slots = handler.server.slots
    get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

    client_side.sendall(get)
    assert handler._read_head() is not None and slots.idle == 0  # one request at a time: it keeps its slot
    client_side.sendall(get + get + b"POST /trigger/seasons HTTP/1.1\r\nHost: x\r\n\r\n")
    assert handler._read_head() is not None and slots.idle == 0  # nothing was waiting before this head
    assert handler._read_head() is not None and slots.idle == 1  # sent before the last answer: may make room
    assert handler._read_head()[0].startswith(b"POST") and slots.idle == 0  # a trigger keeps its slot


def test_headers_and_body_in_one_write():
    _, connection = handle(b"GET /history?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(connection.writes) == 1
    head, _, body = connection.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and json.loads(body) == {"records": [], "count": 0}


def test_body_announced_on_a_get_is_discarded_and_the_connection_kept():
    handler, connection = handle(b"GET /history HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET")
    assert connection.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert handler.close_connection is False
    assert handler.rfile.read() == b"GET"  # the next request starts right after the body


def test_body_ended_before_its_length_is_400():
    handler, connection = handle(b"GET /history HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert b"body shorter than Content-Length (3 of 10 bytes)" in connection.writes[0]
    assert connection.writes[0].startswith(b"HTTP/1.1 400 ") and handler.close_connection is True


def sending_handler(connection: socket.socket, http_timeout_s: float) -> Handler:
    """A handler over a real socket, as far as :meth:`Handler._send` needs one."""
    handler = Handler.__new__(Handler)
    handler.server, handler.connection = Host(), connection
    handler.server.http_timeout_s = http_timeout_s
    return handler


def test_answer_larger_than_the_send_buffer_arrives_whole_and_leaves_the_socket_blocking(pair):
    # Most answers go in one send that never waits; one that does not fit is finished by a sendall
    # bounded by the timeout, and the socket must be back in blocking mode for the next head's read.
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    answer = bytes(range(256)) * 4096  # 1 MiB
    received = bytearray()

    def read_all() -> None:
        while len(received) < len(answer):
            received.extend(client_side.recv(65536))

    reader = threading.Thread(target=read_all)
    reader.start()
    sending_handler(server_side, 10.0)._send(answer)
    reader.join(10)
    assert bytes(received) == answer
    assert server_side.gettimeout() is None
    deadline_reader = DeadlineReader(server_side, FakeClock(T0))
    deadline_reader.arm(0.05)
    with pytest.raises(TimeoutError):  # the read wait is the reader's deadline, not the send timeout
        deadline_reader.readinto(bytearray(16))


def test_while_its_client_does_not_read_an_answer_the_connection_may_make_room(pair):
    server_side, _ = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    handler = sending_handler(server_side, 5.0)
    slots = handler.server.slots = ConnectionSlots(1, SystemClock())
    assert slots.take() is True
    failed: list[OSError] = []

    def send() -> None:
        try:
            handler._send(b"x" * (4 << 20))
        except OSError as exc:
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: slots.idle == 1, what="the send to wait for its client")

    assert slots.take() is True  # a new connection takes the slot of the one its client does not read
    sender.join(5)
    assert len(failed) == 1 and isinstance(failed[0], BrokenPipeError)  # shut down, not 5 s later


def test_answer_a_client_never_reads_is_given_up_after_the_timeout(pair):
    server_side, _ = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with pytest.raises(TimeoutError):
        sending_handler(server_side, 0.05)._send(b"x" * (4 << 20))
    assert server_side.gettimeout() is None
