"""Hardening of the HTTP layer checked in-process: constant-time token check, listen backlog.

The same rules against a real daemon process are in ``test_proc_http.py``.
"""

from __future__ import annotations

import hmac

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


def test_listen_backlog_is_large():
    assert server_mod.ApiServer.request_queue_size >= 128  # not socketserver's 5; one write per answer: test_httphandler
