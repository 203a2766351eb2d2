"""A stand-in for the origin system's fetcher_service, where its behaviour matters to the scheduler.

The origin fetcher (FastAPI on port 8082, ``itsmrval/willitbemax``,
``fetcher_service/src/main.py``) implements only:

- ``POST /fetch/seasons``: walks the Ergast/Jolpica API (about 50 requests,
  about 45 s), answers ``{"success": true, "source": "ergast", "count": N,
  "timestamp": unix}`` or HTTP 500 ``{"detail": "<why>"}``;
- ``POST /fetch/rounds?season=Y[&round=R][&live=SESSION]``: scrapes the F1 web
  site with a browser; ``season`` is required (FastAPI answers 422 with a
  ``detail`` *list*), ``live`` needs ``round`` (400), an empty scrape is 404
  (with a round) or 500; with no answer from the browser it hangs for good;
- ``GET /`` and ``GET /status``.

Any other path is 404 ``{"detail": "Not Found"}``, a known path with another
method 405 ``{"detail": "Method Not Allowed"}`` with ``Allow``. Like the real
one it keeps working on a call after its client gave up: :attr:`busy` and
:attr:`max_busy` count calls being worked on, answered or not.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scheduler_api.standin import FetcherStandIn

#: A real Selenium failure of the origin's rounds scrape is long; its cause is at the end.
SELENIUM_ERROR = (
    "Message: unknown error: session deleted because of page crash\nfrom unknown error: cannot determine "
    "loading status\nfrom tab crashed\n  (Session info: chrome=120.0.6099.109)\nStacktrace:\n"
    + "#0 0x55d0c5a0d6e3 <unknown>\n" * 12
    + "Failed to fetch all rounds: timeout waiting for https://www.formula1.com/en/racing/2026.html"
)


@dataclass(frozen=True)
class OriginCall:
    """One call the stand-in received: method, path with query, monotonic arrival seconds."""

    method: str
    path: str
    arrived_mono: float


class OriginFetcher:
    """The origin fetcher's routes and answer shapes on a loopback port.

    Set per route how a call behaves: ``seasons`` and ``rounds`` are each
    ``"ok"``, ``"fail"`` (HTTP 500 with a ``detail`` string) or ``"hang"``
    (never answers until :meth:`stop`), after ``seasons_s`` / ``rounds_s``
    seconds of work.

    Thread-safe.
    """

    def __init__(self) -> None:
        self.seasons = "ok"
        self.rounds = "ok"
        self.seasons_s = 0.0
        self.rounds_s = 0.0
        self.calls: list[OriginCall] = []
        self.busy = 0
        self.max_busy = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                owner._route(self, "GET")

            def do_POST(self) -> None:
                owner._route(self, "POST")

            def do_PUT(self) -> None:
                owner._route(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """:returns: ``http://127.0.0.1:port``."""
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self) -> None:
        """Stop serving; hanging calls end."""
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def paths(self, prefix: str = "/") -> list[str]:
        """:returns: the paths (with query) of the calls received so far that start with ``prefix``."""
        with self._lock:
            return [call.path for call in self.calls if call.path.startswith(prefix)]

    def _route(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.calls.append(OriginCall(method, handler.path, time.monotonic()))
        split = urllib.parse.urlsplit(handler.path)
        routes = {"/": "GET", "/status": "GET", "/fetch/seasons": "POST", "/fetch/rounds": "POST"}
        if split.path not in routes:
            return self._reply(handler, 404, {"detail": "Not Found"})
        if method != routes[split.path]:
            return self._reply(handler, 405, {"detail": "Method Not Allowed"}, {"Allow": routes[split.path]})
        if split.path == "/":
            return self._reply(handler, 200, {"service": "fetcher_service", "status": "running"})
        if split.path == "/status":
            return self._reply(handler, 200, {"status": "ready", "ergast": True, "scheduler": True,
                                              "timestamp": int(time.time())})
        if split.path == "/fetch/seasons":
            return self._work(handler, self.seasons, self.seasons_s, "ergast",
                              "Failed to fetch details for seasons: [2019, 2020]")
        query = urllib.parse.parse_qs(split.query)
        problems = []
        for name, required in (("season", True), ("round", False)):
            values = query.get(name)
            if values is None:
                if required:
                    problems.append({"type": "missing", "loc": ["query", name], "msg": "Field required",
                                     "input": None})
            elif not values[-1].lstrip("-").isdigit():
                problems.append({"type": "int_parsing", "loc": ["query", name], "input": values[-1],
                                 "msg": "Input should be a valid integer, unable to parse string as an integer"})
        if problems:
            return self._reply(handler, 422, {"detail": problems})
        if "live" in query and "round" not in query:
            return self._reply(handler, 400, {"detail": "live parameter requires round parameter"})
        return self._work(handler, self.rounds, self.rounds_s, "f1_website", SELENIUM_ERROR)

    def _work(self, handler: BaseHTTPRequestHandler, behaviour: str, work_s: float, source: str, detail: str) -> None:
        with self._lock:
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
        try:
            self._stopped.wait(work_s)  # goes on whether or not the client is still there
            if behaviour == "hang":
                self._stopped.wait()
                return
        finally:
            with self._lock:
                self.busy -= 1
        if behaviour == "fail":
            return self._reply(handler, 500, {"detail": detail})
        self._reply(handler, 200, {"success": True, "source": source, "count": 24, "timestamp": int(time.time())})

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        FetcherStandIn._reply(handler, status, body, extra=headers)
