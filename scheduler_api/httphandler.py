"""One HTTP connection: read each request within its deadline, answer it, write the answer in one go.

:class:`Handler` moves bytes only: it reads a request head through a
:class:`deadline_reader.DeadlineReader` (so a head, or a body, must arrive within
``SCHEDULER_HTTP_TIMEOUT`` in all, not per read), hands it to the pure
parsers of :mod:`httphead` in its admission turn, discards any body outside
it and writes the answer the application computed in one write bounded by
the same time. What it needs from its server is :class:`HandlerHost`, which
:class:`server.ApiServer` provides (see README, HTTP API, Limits).
"""

from __future__ import annotations

import io
import json
import logging
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any, Mapping, Protocol

from .clock import Clock
from .deadline_reader import DeadlineReader
from .httphead import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_LINE,
    HttpError,
    RawBody,
    RequestHead,
    expects_continue,
    headers_follow,
    parse_head,
    parse_request_line,
)

logger = logging.getLogger(__name__)

READ_BUFFER = 65536  # bytes the handler reads from its socket at a time
PHRASES = BaseHTTPRequestHandler.responses  # http.server's HTTPStatus phrases, without an enum lookup


class Application(Protocol):
    """The routes behind the transport; :class:`api.App` is the real one."""

    def handle(self, method: str, target: str, authorization: str | None = None) -> tuple[int, dict, dict]:
        """:returns: ``(status, JSON body, extra headers)`` for one request."""

    def error(self, status: int, message: str) -> tuple[int, dict]:
        """:returns: ``(status, JSON body)`` of an error answer."""


class HandlerHost(Protocol):
    """What a :class:`Handler` reads from ``self.server``; :class:`ApiServer` provides it.

    :ivar app: answers requests.
    :ivar admission: ``run(work)`` runs ``work`` in its turn, one at a time
        (:class:`server.Admission`): parsing a request head and routing and
        encoding a request other than a ``POST``, with a send that never
        waits; never the reading of a head or body, a write that waits, nor a
        ``POST`` (a trigger) waiting for fetcher_service.
    :ivar http_timeout_s: how long a request head, a body, or the writing of
        an answer may take in all, seconds.
    :ivar clock: its monotonic clock bounds those reads.
    """

    app: Application
    admission: Any  # server.Admission
    http_timeout_s: float
    clock: Clock
    slots: Any  # server.ConnectionSlots: told when a connection waits for a head and when it works

    @property
    def stopping(self) -> bool:
        """:returns: True once the server stopped accepting; triggers are then answered 503,
        other requests with their answer and ``Connection: close``."""

    def request_started(self) -> None:
        """Count a request being handled."""

    def request_finished(self) -> None:
        """Count a request answered."""


def render_answer(status: int, body: dict | RawBody, headers: Mapping[str, str], close: bool,
                  with_body: bool = True) -> bytes:
    """Encode one answer, status line, headers and JSON body, to be sent in one write (no Nagle stall).

    A :class:`RawBody` (the Prometheus text of ``/metrics``) is sent as is, with its own content type.

    A 204 has neither body nor ``Content-Type``/``Content-Length`` (RFC 9110
    forbids ``Content-Length`` on it); every other answer has both.

    :param headers: extra header fields, e.g. ``Allow``.
    :param close: add ``Connection: close``.
    :param with_body: False for an answer to ``HEAD``: the headers only.
    """
    lines = [f"HTTP/1.1 {status} {PHRASES.get(status, ('',))[0]}", "Server: scheduler_api"]
    payload = b""
    if isinstance(body, RawBody):
        payload = body.payload
        lines += [f"Content-Type: {body.content_type}", f"Content-Length: {len(payload)}"]
    elif status != 204:
        payload = json.dumps(body).encode("utf-8")  # the default separators (", ", ": "), cached encoder
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + payload if with_body else head


class Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, JSON everywhere, one write per answer.

    Replaces ``BaseHTTPRequestHandler.handle_one_request`` and its
    ``email``-based header parsing with :mod:`httphead`, which gives the same
    answers (400, 414, 431, 505) at a fraction of the cost, and reads through
    a :class:`DeadlineReader`, so a head or a body must arrive within the
    server's ``http_timeout_s`` in all. Each connection has its own handler
    on its own thread.
    """

    protocol_version = "HTTP/1.1"
    server_version = "scheduler_api"
    sys_version = ""
    server: HandlerHost

    def setup(self) -> None:
        """Read through a deadline, write straight to the socket, and disable Nagle."""
        self.connection = self.request
        self._reader = DeadlineReader(self.connection, self.server.clock)
        self.rfile = io.BufferedReader(self._reader, READ_BUFFER)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def finish(self) -> None:
        """Drop the read buffer; the server closes the socket."""
        self.rfile.close()

    def handle_one_request(self) -> None:
        """Read one request, answer it, and write the answer in one write.

        The head is read outside the server's admission queue, then parsed in
        a turn of it; a ``GET`` or ``HEAD`` without a body is answered and
        sent in that same turn. A body is discarded after the turn, and a
        ``POST`` (a trigger, which may wait minutes for fetcher_service) is
        answered outside the queue. A client that goes silent, trickles, does not
        read its answer or goes away only closes its own connection.
        """
        self._out = b""
        try:
            raw = self._read_head()
            if raw is None:
                return
            head = self.server.admission.run(lambda: self._turn(*raw))
            if head is not None:
                self._answer_after_body(head)
            if self._out:
                self._send(self._out)
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _turn(self, raw_line: bytes, header_lines: list[bytes]) -> RequestHead | None:
        """The admission turn: parse the head and, in the common case (no body, not a ``POST``), answer it.

        The answer goes out in the same turn as far as the socket's send
        buffer takes it, never waiting (see :meth:`_send_ready`); what is left
        is written after the turn.

        :returns: the head when it is still to be answered after the turn, else None.
        """
        head = self._parse(raw_line, header_lines)
        if head is None or head.body_length or head.method == "POST":
            return head
        self._answer(head)
        if self._out:
            self._out = self._out[self._send_ready(self._out):]
        return None

    def _read_head(self) -> tuple[bytes, list[bytes]] | None:
        """Read a request line and its header lines within ``http_timeout_s`` from now, in all.

        The connection may be shut down to make room for a new one while it
        waits for the head and, when the client pipelines (this head came
        before the previous answer was written), while the request other than
        a trigger is answered: a client that sends faster than it reads keeps
        no slot from others (see :class:`server.ConnectionSlots`).

        :returns: the raw request line and header lines, or None when the
            connection is to close: the client closed it, or the time ran out
            (answered 408 when part of a head had arrived, else silently).
        """
        start = self.rfile.tell()  # bytes of earlier requests
        pipelined = self._reader.tell() > start  # bytes of this head arrived before the last answer left
        self._reader.arm(self.server.http_timeout_s)
        self.server.slots.waiting(self.connection)
        try:
            raw_line = self.rfile.readline(MAX_LINE + 1)
            if not raw_line:
                self.close_connection = True
                return None
            head = raw_line, self._read_header_lines() if headers_follow(raw_line) else []
            if not pipelined or raw_line.startswith(b"POST "):
                self.server.slots.working(self.connection)
            return head
        except TimeoutError:
            self.close_connection = True
            if self._reader.tell() > start:  # part of this head came, perhaps with the one before
                message = f"request head not received within {self.server.http_timeout_s:g}s"
                self._send_nowait(self._error_answer(408, message))
            return None

    def _read_header_lines(self) -> list[bytes]:
        """Read header lines up to the blank line (I/O only; :func:`httphead.parse_head` checks them).

        :returns: the raw lines; reading stops early after a line over
            ``MAX_LINE`` bytes, the line beyond ``MAX_HEADERS``, or once the
            lines pass ``MAX_HEADER_BYTES`` together.
        """
        lines: list[bytes] = []
        total = 0
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                return lines
            lines.append(raw)
            total += len(raw)
            if len(raw) > MAX_LINE or len(lines) > MAX_HEADERS or total > MAX_HEADER_BYTES:
                return lines

    def _parse(self, raw_line: bytes, header_lines: list[bytes]) -> RequestHead | None:
        """Parse the head and decide whether the connection stays open.

        :returns: the head, or None when there is nothing more to do (an
            error answer was queued, or the line was blank).
        """
        self.close_connection = True
        line = None
        try:
            line = parse_request_line(raw_line)
            if line is None:
                return None
            head = parse_head(line, header_lines)
        except HttpError as exc:
            self._queue_error(line.method if line else "", line.target if line else "", exc)
            return None
        self.close_connection = not head.keep_alive
        return head

    def _answer_after_body(self, head: RequestHead) -> None:
        """Discard the body outside the admission queue, then answer: a ``POST`` outside it, others in a turn."""
        try:
            self._discard_body(head)
        except HttpError as exc:
            self._queue_error(head.method, head.target, exc)
            return
        if head.method == "POST":
            self._answer(head)
            return
        self.server.admission.run(lambda: self._answer(head))

    def _answer(self, head: RequestHead) -> None:
        """Route the request and queue the answer.

        Once the server is stopping, a ``POST`` (a trigger, which would start
        a fetcher call) gets 503; any other request is still answered, with
        ``Connection: close``, so a client whose connection was accepted just
        before a restart gets its answer (under socket activation the next
        instance takes the connections that come after).
        """
        self.server.request_started()
        try:
            if self.server.stopping:
                self.close_connection = True
                if head.method == "POST":
                    self._queue_error(head.method, head.target, HttpError(503, "shutting down"))
                    return
            status, body, headers = self.server.app.handle(head.method, head.target, head.headers.get("Authorization"))
            self._queue(head.method, head.target, status, body, headers)
        finally:
            self.server.request_finished()

    def _discard_body(self, head: RequestHead) -> None:
        """Read and discard the body the head announced, within ``http_timeout_s`` in all; no endpoint uses one.

        While it waits for the body, the connection may be shut down to make
        room for a new one, as while it waits for a head (see
        :class:`server.ConnectionSlots`); the client then sees its connection close.

        :raises HttpError: 408 when it has not all arrived in time, 400 when
            the client ends it before its announced length.
        """
        length = head.body_length
        if not length:
            return
        if expects_continue(head.headers):
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._reader.arm(self.server.http_timeout_s)
        self.server.slots.waiting(self.connection)  # waiting for the client, as for a head: it may make room
        received = 0
        try:
            while received < length:
                chunk = self.rfile.read1(min(READ_BUFFER, length - received))
                if not chunk:
                    raise HttpError(400, f"body shorter than Content-Length ({received} of {length} bytes)")
                received += len(chunk)
        except TimeoutError:
            raise HttpError(408, f"request body not received within {self.server.http_timeout_s:g}s "
                                 f"({received} of {length} bytes)") from None
        finally:
            self.server.slots.working(self.connection)

    def _send(self, data: bytes) -> None:
        """Write ``data``, giving up after ``http_timeout_s`` in all.

        What fits in the socket's send buffer, nearly every answer, goes in
        one ``send`` that never waits; the rest, for a large answer or a
        client slow to read, with a ``sendall`` whose Python timeout bounds
        the whole call, after which the socket is back in blocking mode (as
        the :class:`DeadlineReader` needs it). While that waits for the
        client to read, the connection may be shut down to make room for a
        new one (see :class:`server.ConnectionSlots`).

        :raises TimeoutError: when the client does not read it in time.
        """
        sent = self._send_ready(data)
        if sent == len(data):
            return
        self.connection.settimeout(self.server.http_timeout_s)  # sendall's timeout bounds the whole call
        self.server.slots.waiting(self.connection)  # waiting for the client to read: it may make room
        try:
            self.connection.sendall(memoryview(data)[sent:])
        finally:
            self.server.slots.working(self.connection)
            self.connection.settimeout(None)

    def _send_ready(self, data: bytes) -> int:
        """Send what of ``data`` fits in the socket's send buffer now, in one ``send`` that never waits.

        :returns: the bytes sent (0 when the buffer is full).
        :raises ConnectionError: when the client has gone.
        """
        try:
            return self.connection.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    def _send_nowait(self, data: bytes) -> None:
        """Send what fits in the socket buffer now, never waiting; for a last word before closing."""
        try:
            self.connection.setblocking(False)
            self.connection.send(data)
        except OSError:
            pass

    def _error_answer(self, status: int, message: str) -> bytes:
        """:returns: the encoded JSON error answer, with ``Connection: close``."""
        status, body = self.server.app.error(status, message)
        return render_answer(status, body, {}, close=True)

    def _queue_error(self, method: str, target: str, error: HttpError) -> None:
        """Queue the JSON error answer for ``error`` and close the connection after it."""
        self.close_connection = True
        status, body = self.server.app.error(error.status, error.message)
        self._queue(method, target, status, body, {})

    def _queue(self, method: str, target: str, status: int, body: dict, headers: Mapping[str, str]) -> None:
        """Encode an answer (see :func:`render_answer`), to be written with the others of this turn.

        :param method: the request's method (``HEAD`` gets no body) or "" when unknown.
        :param target: the request target, for the access line.
        """
        answer = render_answer(status, body, headers, self.close_connection, method != "HEAD")
        self._out += answer
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "http method=%s path=%s status=%s bytes=%s client=%s",
                method[:20], target[:200].split("?")[0], status, len(answer),
                self.client_address[0] if self.client_address else "-",
            )

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Route ``http.server``'s own messages through ``logging`` at debug."""
        logger.debug("http %s", format % args)
