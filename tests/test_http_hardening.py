"""Hardening of the HTTP layer checked in-process: constant-time token check, one write per answer, backlog.

The same rules against a real daemon process are in ``test_proc_http.py``.
"""

from __future__ import annotations

import hmac
import io
import json
import threading

from scheduler_api import api as api_mod
from scheduler_api import server as server_mod
from scheduler_api.clock import SystemClock
from scheduler_api.config import Config
from scheduler_api.fetcher import Outcome
from scheduler_api.state import State

TOKEN = "s3cr$t-T0ken'x"


def test_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_mod.hmac, "compare_digest", spy)

    class Scheduler:
        def trigger(self, key):
            return Outcome("ok", 200, None, 1), False

    clock = SystemClock()
    app = api_mod.App(Config(token=TOKEN), State(), Scheduler(), None, clock, lambda: True)
    assert app.handle("POST", "/trigger/seasons", "Bearer nope")[0] == 401
    assert app.handle("POST", "/trigger/seasons", "Bearer " + TOKEN)[0] == 200
    assert len(compared) == 2


def test_headers_and_body_in_one_write_and_a_large_listen_backlog():
    assert server_mod.ApiServer.request_queue_size >= 128  # not socketserver's 5

    class Wfile:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def flush(self) -> None:
            pass

    class Server:
        app = api_mod.App(Config(), State(), None, None, SystemClock(), lambda: True)
        admission = threading.Lock()
        stopping = False

        def request_started(self) -> None:
            pass

        def request_finished(self) -> None:
            pass

    handler = server_mod.Handler.__new__(server_mod.Handler)
    handler.server, handler.wfile, handler.client_address = Server(), Wfile(), ("127.0.0.1", 1)
    handler.rfile = io.BytesIO(b"GET /history?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    handler.handle_one_request()
    assert len(handler.wfile.writes) == 1
    head, _, body = handler.wfile.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and json.loads(body) == {"records": [], "count": 0}
