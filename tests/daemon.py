"""Helpers for tests that run a real ``python -m scheduler_api`` process against a FetcherStandIn.

Nothing here sleeps to let time pass: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from scheduler_api.standin import FetcherStandIn

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).parent / "data"
POLL_S = 0.02


def free_port() -> int:
    """:returns: a port that was free on 127.0.0.1 a moment ago (bound to port 0, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` every 20 ms until it returns something truthy.

    :returns: that value.
    :raises AssertionError: after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_S)


class Daemon:
    """One real daemon process; stderr goes to a file the test can read.

    :param env: extra environment variables (over a copy of ``os.environ``
        without proxies or scheduler variables).
    :param args: extra command-line arguments.
    """

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.port = int(env.get("SCHEDULER_PORT") or free_port())
        self.env = {k: v for k, v in os.environ.items() if not _scrubbed(k)}
        self.env.update({"SCHEDULER_PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        self.env.update(env)
        self.args = args
        self.log_path = tmp_path / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Daemon":
        """Start the process; with ``wait``, return once ``/health`` answers."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler_api", *self.args], cwd=REPO, env=self.env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self._answers, what="/health of the daemon")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            self.request("GET", "/health", timeout_s=1.0)
        except OSError:
            return False
        return True

    def log(self) -> str:
        """:returns: everything the daemon wrote so far."""
        return self.log_path.read_text("utf-8", errors="replace")

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        """One request on a new connection. :returns: ``(status, decoded JSON body, response)``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, target, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, (json.loads(raw) if raw else None), response

    def get(self, target: str) -> Any:
        """:returns: the JSON body of a GET."""
        return self.request("GET", target)[1]

    def settle(self, kinds: tuple[str, ...] = ("seasons", "rounds", "standings")) -> None:
        """Wait until the catch-up syncs at start have all succeeded and nothing is in flight."""

        def settled() -> bool:
            status = self.get("/status")
            return not status["in_flight"] and all(status["last_syncs"][k] for k in kinds)

        wait_for(settled, what="catch-up syncs to finish")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s. :returns: the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _scrubbed(name: str) -> bool:
    upper = name.upper()
    return upper.endswith("_PROXY") or upper in (
        "SCHEDULER_API_TOKEN", "SCHEDULER_HOST", "JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC",
        "STATE_DIRECTORY",
    ) or upper.startswith(("FETCH_PATH_", "SCHEDULER_", "STATE_", "CALENDAR_"))


@pytest.fixture
def standin() -> FetcherStandIn:
    """A running FetcherStandIn on a free loopback port; stopped at the end."""
    fetcher = FetcherStandIn().start()
    yield fetcher
    try:
        fetcher.stop()
    except OSError:
        pass


@pytest.fixture
def daemon(tmp_path: pathlib.Path, standin: FetcherStandIn) -> Callable[..., Daemon]:
    """Start real daemons: ``daemon(EXTRA_ENV=..., args=(...), wait=True)``; all stopped at the end.

    Defaults: a free port, ``STATE_FILE`` in ``tmp_path``, ``FETCHER_URL`` at
    the stand-in, ``CALENDAR_FILE`` a copy of the 2023 calendar (all of it in
    the past, so the daemon runs in off-season mode with long intervals).
    """
    started: list[Daemon] = []
    calendar = tmp_path / "calendar.json"
    calendar.write_bytes((DATA / "ergast-2023.json").read_bytes())

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = (), wait: bool = True) -> Daemon:
        full = {
            "STATE_FILE": str(tmp_path / "state.json"),
            "FETCHER_URL": standin.url,
            "CALENDAR_FILE": str(calendar),
            "SHUTDOWN_GRACE": "2s",
        }
        full.update(env or {})
        proc = Daemon(tmp_path, full, args)
        started.append(proc)
        return proc.start(wait)

    yield start
    for proc in started:
        proc.stop()
