"""The HTTP/1.1 transport of the API: server subclass, request handler and request-head parsing."""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping

from .api import App, BadRequest

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # SPEC.md §8
MAX_LINE = 65536  # as http.server: longer request lines get 414, longer header lines 431
MAX_HEADERS = 100  # as http.client


class Headers:
    """Request headers: names case-insensitive, repeated names kept in order (RFC 9110 §5.3)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        """:returns: the first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str] | None:
        """:returns: every value of ``name`` in order, or None if absent."""
        name = name.lower()
        values = [value for key, value in self._items if key == name]
        return values or None


def parse_head(lines: list[bytes]) -> Headers:
    """Parse raw header lines (without the request line or the blank line) (RFC 9112 §5).

    :raises BadRequest: for a line without a colon, white space before the
        colon, or obsolete line folding.
    """
    items: list[tuple[str, str]] = []
    for raw in lines:
        text = raw.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            raise BadRequest("obsolete header line folding is not accepted")
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(f"malformed header line {text[:40]!r}")
        items.append((name.lower(), value.strip(" \t")))
    return Headers(items)


def _http_version(version: str) -> tuple[int, int] | None:
    """:returns: ``(major, minor)`` of ``HTTP/x.y``, or None when malformed (as http.server checks)."""
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() and len(p) <= 10 for p in parts):
        return None
    return int(parts[0]), int(parts[1])


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
    """The HTTP server; the handler reads ``self.server.app`` (SPEC.md §5, §8).

    A large listen backlog absorbs bursts; handler threads are daemonic.

    :param address: ``(host, port)``; port 0 picks a free one.
    :param app: the :class:`App`.
    :param http_timeout_s: per-connection socket timeout, seconds.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: App, http_timeout_s: float) -> None:
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
        super().__init__(address, Handler)

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
        """Count a request being handled (a manual trigger may take minutes)."""
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
    """One connection: HTTP/1.1 keep-alive, JSON everywhere, one write per response."""

    protocol_version = "HTTP/1.1"
    server_version = "scheduler_api"
    sys_version = ""
    server: ApiServer

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

        Replaces ``BaseHTTPRequestHandler.handle_one_request`` and its
        ``email``-based header parsing with :func:`parse_head`, which keeps
        the same answers (400, 414, 431, 501, 505) at a fraction of the cost.
        The answer is written in one write, after the lock is released.
        """
        self._out = b""
        try:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                self.close_connection = True
                return
            self.raw_requestline = line
            if len(line) > MAX_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            else:
                lines, problem = self._read_head_lines()
                run_after = None
                with self.server.admission:
                    if self._parse(line, lines, problem):
                        handler = getattr(self, "do_" + self.command, None)
                        if handler is None:
                            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
                        elif self.command in ("GET", "HEAD"):
                            handler()
                        else:
                            run_after = handler  # a trigger may wait minutes for fetcher_service
                if run_after is not None:
                    run_after()
            if self._out:
                self.wfile.write(self._out)
        except (TimeoutError, socket.timeout):
            self.close_connection = True
        except ConnectionError:
            self.close_connection = True

    def _read_head_lines(self) -> tuple[list[bytes], tuple[int, str] | None]:
        """Read header lines up to the blank line (I/O only; parsed later).

        :returns: the raw lines, and ``(status, reason)`` if they break a limit.
        """
        if len(self.raw_requestline.split()) < 3:
            return [], None  # HTTP/0.9 style: no headers follow
        lines: list[bytes] = []
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if len(raw) > MAX_LINE:
                return lines, (431, "Line too long")
            if raw in (b"\r\n", b"\n", b""):
                return lines, None
            lines.append(raw)
            if len(lines) > MAX_HEADERS:
                return lines, (431, "Too many headers")

    def _parse(self, line: bytes, lines: list[bytes], problem: tuple[int, str] | None) -> bool:
        """Parse the request line and headers as ``BaseHTTPRequestHandler.parse_request`` would.

        :returns: False when an error answer was queued.
        """
        self.command = ""
        self.request_version = "HTTP/0.9"
        self.close_connection = True
        self.requestline = requestline = str(line, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _http_version(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1):
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if problem is not None:
            self.send_error(problem[0], problem[1])
            return False
        try:
            self.headers = parse_head(lines)
        except BadRequest as exc:
            self.send_error(exc.status, exc.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        return True

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Serve a HEAD: the GET's headers, no body."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch()

    def _dispatch(self) -> None:
        self.server.request_started()
        try:
            if self.server.stopping:
                self.close_connection = True
                self._send(*self.server.app.error(503, "shutting down"), {})
                return
            self._dispatch_one()
        finally:
            self.server.request_finished()

    def _dispatch_one(self) -> None:
        try:
            self._read_body()
        except BadRequest as exc:
            self.close_connection = True
            status, body = self.server.app.error(exc.status, exc.message)
            self._send(status, body, {})
            return
        status, body, headers = self.server.app.handle(self.command, self.path, self.headers.get("Authorization"))
        self._send(status, body, headers)

    def _read_body(self) -> None:
        """Check ``Content-Length`` and drain the body (SPEC.md §5, §8)."""
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest("Transfer-Encoding is not supported; send Content-Length", 411)
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return
        if len(values) > 1:
            raise BadRequest("Content-Length is repeated")
        value = values[0].strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise BadRequest("Content-Length is not a number")
        length = int(value)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"body too large: {length} bytes, limit {MAX_BODY_BYTES}", 413)
        if length and (self.headers.get("Expect") or "").lower() == "100-continue":
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
            raise BadRequest(f"body shorter than Content-Length ({received} of {length} bytes)")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer errors raised by ``http.server`` itself (400, 414, 431, 501, 505) as JSON."""
        phrase = self.responses.get(code, ("Error",))[0]
        if code >= 400:
            self.close_connection = True
        if not getattr(self, "request_version", None) or not self.request_version.startswith("HTTP/"):
            self.request_version = "HTTP/1.1"
        if not getattr(self, "command", None):
            self.command = ""
        status, body = self.server.app.error(code, message or phrase)
        self._send(status, body, {})

    def _send(self, status: int, body: dict, headers: Mapping[str, str]) -> None:
        """Write status line, headers and body in one write (no Nagle stall)."""
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
        data = head if self.command == "HEAD" else head + payload
        self.log_request(status, len(payload))
        self._out = getattr(self, "_out", b"") + data  # written in one go after the admission lock

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines at debug level."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        logger.debug(
            "http method=%s path=%s status=%s bytes=%s client=%s",
            getattr(self, "command", "-"), (getattr(self, "path", "") or "")[:200].split("?")[0], code, size,
            self.client_address[0] if self.client_address else "-",
        )

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Route ``http.server``'s own messages through ``logging`` at debug."""
        logger.debug("http %s", format % args)
