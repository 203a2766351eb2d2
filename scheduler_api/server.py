"""The HTTP/1.1 transport: the listening server, its admission lock and a thin request handler.

The handler only moves bytes: it reads a request head, hands it to the pure
parsers of :mod:`httphead`, drains any body and writes the answer that the
application (:class:`api.App`) computed. What the handler needs from its
server is spelled out in :class:`HandlerHost`, which :class:`ApiServer`
provides. The admission lock (:class:`FifoLock`) lives here rather than in a
module of its own because the server is its only user (see README, Design).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ContextManager, Mapping, Protocol

from .httphead import (
    MAX_HEADERS,
    MAX_LINE,
    HttpError,
    RequestHead,
    body_length,
    expects_continue,
    headers_follow,
    parse_head,
    parse_request_line,
)

logger = logging.getLogger(__name__)


class Application(Protocol):
    """The routes behind the transport; :class:`api.App` is the real one."""

    def handle(self, method: str, target: str, authorization: str | None = None) -> tuple[int, dict, dict]:
        """:returns: ``(status, JSON body, extra headers)`` for one request."""

    def error(self, status: int, message: str) -> tuple[int, dict]:
        """:returns: ``(status, JSON body)`` of an error answer."""


class HandlerHost(Protocol):
    """What a :class:`Handler` reads from ``self.server``; :class:`ApiServer` provides it.

    :ivar app: answers requests.
    :ivar admission: held while a request is parsed, routed and encoded; not
        while its head is read or its answer written, nor while a ``POST``
        (a trigger) waits. A body announced on a ``GET`` or ``HEAD`` is
        drained under it.
    :ivar http_timeout_s: per-connection socket timeout, seconds.
    """

    app: Application
    admission: ContextManager[Any]
    http_timeout_s: float

    @property
    def stopping(self) -> bool:
        """:returns: True once the server stopped accepting; requests are then answered 503."""

    def request_started(self) -> None:
        """Count a request being handled."""

    def request_finished(self) -> None:
        """Count a request answered."""


class FifoLock:
    """A lock handed to waiters in arrival order, so no request waits behind later ones.

    A plain ``threading.Lock`` lets a running thread take the lock ahead of
    threads already waiting, which under a burst leaves some requests waiting
    far longer than others. Waiters block on a lock of their own, never on
    the interpreter lock. Thread-safe; usable as a context manager.
    """

    def __init__(self) -> None:
        self._meta = threading.Lock()
        self._held = False
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def __enter__(self) -> "FifoLock":
        with self._meta:
            if not self._held:
                self._held = True
                return self
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder handing over
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._meta:
            if self._waiters:
                self._waiters.popleft().release()  # ownership passes on; still held
            else:
                self._held = False


class ApiServer(ThreadingHTTPServer):
    """The HTTP server: accepts connections and gives each a :class:`Handler` thread.

    It is the handler's :class:`HandlerHost`: ``app``, ``admission``,
    ``http_timeout_s``, ``stopping``, ``request_started`` and
    ``request_finished``. A large listen backlog (1024, not the standard
    library's 5) absorbs bursts; handler threads are daemonic. Thread-safe:
    :meth:`stop_serving` and :meth:`wait_idle` may be called from any thread
    while :meth:`serve` runs in another.

    :param address: ``(host, port)``; port 0 picks a free one, an IPv6 host listens on IPv6.
    :param app: answers the requests, e.g. :class:`api.App`.
    :param http_timeout_s: per-connection socket timeout, seconds: an idle
        or slow client is cut off after it.
    :param sock: a socket that is already bound and listening (socket
        activation: systemd passes it) to serve on instead of binding
        ``address``; the server owns it from then on and closes it.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: Application, http_timeout_s: float,
                 sock: socket.socket | None = None) -> None:
        self.app = app
        self.http_timeout_s = http_timeout_s
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._active = 0
        self._idle = threading.Condition()
        # Requests do their CPU work (parse, route, encode) one at a time; the
        # others wait on this lock, not for the interpreter lock, so a burst
        # of clients never outnumbers the ticker and the sync workers when
        # they need to run. Socket reads and writes, and triggers, stay outside.
        self.admission = FifoLock()
        if sock is None:
            super().__init__(address, Handler)
            return
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving`; blocks without polling.

        Unlike ``serve_forever``, which wakes twice a second to check for a
        shutdown request, this waits on the listening socket and a wake-up
        pipe only, so an idle daemon stays asleep.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _events in selector.select():
                    if key.fileobj == self._wake_r:
                        return
                    self._handle_request_noblock()

    def stop_serving(self) -> None:
        """Make :meth:`serve` return; safe from any thread.

        Requests that arrive afterwards on open keep-alive connections are
        answered 503; requests already being handled carry on.
        """
        self._stopping = True
        os.write(self._wake_w, b"x")

    @property
    def stopping(self) -> bool:
        """:returns: True once :meth:`stop_serving` was called."""
        return self._stopping

    def request_started(self) -> None:
        """Count a request being handled (a manual trigger may take minutes), for :meth:`wait_idle`."""
        with self._idle:
            self._active += 1

    def request_finished(self) -> None:
        """Count a request answered."""
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is being handled, so in-flight triggers get their answer at shutdown.

        :param timeout_s: seconds to wait at most.
        :returns: True when idle, False after the timeout.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, max(0.0, timeout_s))

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pipe."""
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler failure through ``logging``; a vanished client is not an error."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            logger.debug("http client %s went away: %s", client_address[0] if client_address else "?", exc)
            return
        logger.exception("http handler error")


class Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, JSON everywhere, one write per answer.

    Replaces ``BaseHTTPRequestHandler.handle_one_request`` and its
    ``email``-based header parsing with :mod:`httphead`, which gives the same
    answers (400, 414, 431, 501, 505) at a fraction of the cost. Each
    connection has its own handler on its own thread.
    """

    protocol_version = "HTTP/1.1"
    server_version = "scheduler_api"
    sys_version = ""
    server: HandlerHost

    def setup(self) -> None:
        """Apply the per-connection timeout and disable Nagle."""
        self.timeout = self.server.http_timeout_s
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle_one_request(self) -> None:
        """Read one request head, then parse and answer it under the server's admission lock.

        A ``POST`` (a trigger, which may wait minutes for fetcher_service) is
        answered after the lock is released. The answer is written in one
        write, after the lock too. A client that goes silent or away closes
        the connection.
        """
        self._out = b""
        try:
            raw_line = self.rfile.readline(MAX_LINE + 1)
            if not raw_line:
                self.close_connection = True
                return
            header_lines = self._read_header_lines() if headers_follow(raw_line) else []
            with self.server.admission:
                head = self._parse(raw_line, header_lines)
                if head is not None and head.method != "POST":
                    self._answer(head)
            if head is not None and head.method == "POST":
                self._answer(head)
            if self._out:
                self.wfile.write(self._out)
        except (TimeoutError, socket.timeout, ConnectionError):
            self.close_connection = True

    def _read_header_lines(self) -> list[bytes]:
        """Read header lines up to the blank line (I/O only; :func:`httphead.parse_head` checks them).

        :returns: the raw lines; reading stops early after a line over
            ``MAX_LINE`` bytes or the line beyond ``MAX_HEADERS``.
        """
        lines: list[bytes] = []
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                return lines
            lines.append(raw)
            if len(raw) > MAX_LINE or len(lines) > MAX_HEADERS:
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

    def _answer(self, head: RequestHead) -> None:
        """Drain the body, route the request and queue the answer; 503 once the server is stopping."""
        self.server.request_started()
        try:
            if self.server.stopping:
                self._queue_error(head.method, head.target, HttpError(503, "shutting down"))
                return
            try:
                self._drain_body(head)
            except HttpError as exc:
                self._queue_error(head.method, head.target, exc)
                return
            status, body, headers = self.server.app.handle(head.method, head.target, head.headers.get("Authorization"))
            self._queue(head.method, head.target, status, body, headers)
        finally:
            self.server.request_finished()

    def _drain_body(self, head: RequestHead) -> None:
        """Read and discard the body that ``Content-Length`` announces; no endpoint uses one.

        :raises HttpError: as :func:`httphead.body_length`, or 400 when the
            body ends (or the socket times out) before its announced length.
        """
        length = body_length(head.headers)
        if not length:
            return
        if expects_continue(head.headers):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        received = 0
        try:
            while received < length:
                chunk = self.rfile.read(min(65536, length - received))
                if not chunk:
                    break
                received += len(chunk)
        except (TimeoutError, socket.timeout, ConnectionError):
            pass
        if received < length:
            raise HttpError(400, f"body shorter than Content-Length ({received} of {length} bytes)")

    def _queue_error(self, method: str, target: str, error: HttpError) -> None:
        """Queue the JSON error answer for ``error`` and close the connection after it."""
        self.close_connection = True
        status, body = self.server.app.error(error.status, error.message)
        self._queue(method, target, status, body, {})

    def _queue(self, method: str, target: str, status: int, body: dict, headers: Mapping[str, str]) -> None:
        """Encode status line, headers and body, to be written in one write (no Nagle stall).

        :param method: the request's method (``HEAD`` gets no body) or "" when unknown.
        :param target: the request target, for the access line.
        """
        payload = json.dumps(body).encode("utf-8")  # the default separators (", ", ": "), cached encoder
        phrase = self.responses.get(status, ("",))[0]  # http.server's HTTPStatus phrases, without an enum lookup
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            "Server: scheduler_api",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._out += head if method == "HEAD" else head + payload
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "http method=%s path=%s status=%s bytes=%s client=%s",
                method, target[:200].split("?")[0], status, len(payload),
                self.client_address[0] if self.client_address else "-",
            )

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Route ``http.server``'s own messages through ``logging`` at debug."""
        logger.debug("http %s", format % args)
