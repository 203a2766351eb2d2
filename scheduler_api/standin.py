"""FetcherStandIn: a local stand-in for fetcher_service, for ``--demo``, tests and the benchmark."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

logger = logging.getLogger(__name__)

FAULTS = ("ok", "error500", "success_false", "non_json", "hang", "delay", "reset", "429", "503", "422")


def bundled_calendar() -> Any:
    """:returns: the bundled real 2026 calendar (Ergast/Jolpica shape, see data/SOURCES.md)."""
    text = resources.files("scheduler_api").joinpath("data/ergast-2026.json").read_text("utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Call:
    """One request the stand-in received: method, path with query, monotonic arrival seconds."""

    method: str
    path: str
    arrived_mono: float


class FetcherStandIn:
    """Answers like the origin system's fetcher_service, a FastAPI app.

    See README, The origin system's fetcher and content API.

    ``POST /fetch/...`` answers ``{"success": true, "source": "demo", "count":
    N, "timestamp": unix}``; ``GET /health`` answers ``{"status": "healthy"}``;
    ``GET /calendar/<season>.json`` serves ``calendar``. Faults are set with
    :meth:`set_fault` (one of :data:`FAULTS`): ``error500`` answers HTTP 500
    ``{"detail": ...}`` like FastAPI, ``hang`` never answers, ``delay`` waits
    ``delay_s`` first, ``reset`` closes the connection unanswered, ``429``
    and ``503`` send ``Retry-After``. :meth:`stop` then a new instance on the
    same port simulates a restart; a stopped one refuses connections.

    Thread-safe; records every call in :attr:`calls`.

    :param host: address to bind.
    :param port: port, 0 for a free one.
    :param calendar: the body served at ``/calendar/...``; default the bundled 2026 calendar.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, calendar: Any = None) -> None:
        self.calendar = bundled_calendar() if calendar is None else calendar
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.fault = "ok"
        self.fault_paths: tuple[str, ...] = ()
        self.delay_s = 0.0
        self.retry_after = "1"
        self._release = threading.Event()
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                logger.debug("standin %s", format % args)

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                owner._handle(self)

            def do_POST(self) -> None:
                owner._handle(self)

        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        # A short poll interval so that stop() returns at once in tests.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="standin", daemon=True)

    @property
    def url(self) -> str:
        """:returns: ``http://host:port`` of the stand-in."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FetcherStandIn":
        """Serve in a background thread. :returns: self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging calls, close the port and every open connection.

        Keep-alive connections are shut down too, as when the process dies:
        otherwise a client's pooled connection would still get answers.
        """
        self._release.set()
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_fault(self, fault: str, *, paths: tuple[str, ...] = (), delay_s: float = 0.0) -> None:
        """Answer the next calls with ``fault`` (one of :data:`FAULTS`).

        :param paths: only for request paths starting with one of these (all ``/fetch`` calls if empty).
        :param delay_s: for ``delay``, seconds to wait before answering.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self.fault, self.fault_paths, self.delay_s = fault, paths, delay_s
            if fault == "hang":
                self._release.clear()
            else:
                self._release.set()

    def fetch_calls(self, prefix: str = "/fetch") -> list[Call]:
        """:returns: the recorded calls whose path starts with ``prefix``."""
        with self._lock:
            return [c for c in self.calls if c.path.startswith(prefix)]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_mono = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        path = handler.path
        with self._lock:
            self.calls.append(Call(handler.command, path, arrived_mono))
            fault, fault_paths, delay_s = self.fault, self.fault_paths, self.delay_s
        route = urllib.parse.urlsplit(path).path
        if route == "/health" and handler.command == "GET":
            self._reply(handler, 200, {"status": "healthy"})
            return
        if route.startswith("/calendar/") and handler.command == "GET":
            self._reply(handler, 200, self.calendar)
            return
        if not route.startswith("/fetch/") or handler.command != "POST":
            self._reply(handler, 404, {"detail": "Not Found"})
            return
        if fault != "ok" and (not fault_paths or any(route.startswith(p) for p in fault_paths)):
            if self._fault(handler, fault, delay_s):
                return
        count = 23 if "rounds" in route else 1
        self._reply(handler, 200, {"success": True, "source": "demo", "count": count, "timestamp": int(time.time())})

    def _fault(self, handler: BaseHTTPRequestHandler, fault: str, delay_s: float) -> bool:
        """Apply a fault. :returns: True when it answered (or dropped) the request."""
        if fault == "hang":
            self._release.wait()
            handler.close_connection = True
            return True
        if fault == "delay":
            self._stopped.wait(delay_s)
            return False
        if fault == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            handler.close_connection = True
            return True
        if fault == "error500":
            self._reply(handler, 500, {"detail": "Failed to fetch rounds: upstream returned 503"})
        elif fault == "422":
            self._reply(handler, 422, {"detail": [{"loc": ["query", "season"], "msg": "field required",
                                                   "type": "value_error.missing"}]})
        elif fault == "success_false":
            self._reply(handler, 200, {"success": False, "message": "season not found"})
        elif fault == "non_json":
            self._reply(handler, 200, b"<html>ok</html>", content_type="text/html")
        elif fault in ("429", "503"):
            self._reply(handler, int(fault), {"detail": "slow down"}, extra={"Retry-After": self.retry_after})
        return True

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, body: Any, content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(payload)}", *(f"{name}: {value}" for name, value in (extra or {}).items())]
        try:
            # Head and body in one write: two small writes on a kept-alive connection stall for the
            # client's delayed ACK (about 40 ms each) under Nagle's algorithm.
            handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
            handler.log_request(status)
        except OSError:
            handler.close_connection = True
