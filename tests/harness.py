"""The one harness for tests that start a real ``python -m scheduler_api`` process.

Every process these tests start gets an allow-list environment built by
:func:`clean_env`: only what a Python process needs to run (``PATH``,
``HOME``, ``LANG``/``LC_*``, ``TMPDIR``, ``PYTHON*``) plus what the test
passes. Nothing an operator exported (``LOG_LEVEL``, ``SCHEDULER_PORT``,
``HTTP_PROXY``, ``NOTIFY_SOCKET``, ...) reaches the daemon, so it cannot
change a test's outcome.

Nothing here sleeps to let time pass: every wait polls a condition with a
deadline.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Iterator, Mapping

import pytest

from scheduler_api.standin import FetcherStandIn

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).parent / "data"
POLL_S = 0.02
ALLOWED_NAMES = frozenset({"PATH", "HOME", "LANG", "TMPDIR"})
ALLOWED_PREFIXES = ("LC_", "PYTHON")
LISTENING = re.compile(r"listening url=http://\S+:(\d+)\s*$", re.MULTILINE)


def clean_env(extra: Mapping[str, str] | None = None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Build the environment of a child process from an allow-list.

    ``REPO`` is put first on ``PYTHONPATH`` so the child imports this
    checkout, and ``PYTHONUNBUFFERED=1`` so its log reaches the file at once.

    :param extra: variables the test sets; they win over everything.
    :param environ: the environment to copy the allowed names from.
    :returns: a new dict; neither argument is modified.
    """
    env = {name: value for name, value in environ.items()
           if name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port() -> int:
    """:returns: a port that was free on 127.0.0.1 a moment ago (bound to port 0, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` every 20 ms until it returns something truthy.

    :param timeout_s: how long to poll, seconds.
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
    """One real daemon process, with stdout and stderr collected in a file.

    The daemon binds port 0 unless the test says otherwise; :attr:`port` is
    read from its ``listening url=...`` log line. Not thread-safe: one test
    thread drives it (:meth:`request` may be called from helper threads).

    :param log_path: the file that receives stdout and stderr.
    :param env: variables over :func:`clean_env`.
    :param args: command-line arguments after ``python -m scheduler_api``.
    :param command: the interpreter arguments instead of ``-m scheduler_api``
        (e.g. ``("-c", SCRIPT)``); ``args`` are appended.
    :param cwd: working directory of the process.
    """

    def __init__(self, log_path: pathlib.Path, env: Mapping[str, str], args: tuple[str, ...] = (),
                 command: tuple[str, ...] = ("-m", "scheduler_api"), cwd: pathlib.Path | None = None) -> None:
        self.log_path = log_path
        # STAGGER at 20 ms, not 1 s: catch-up syncs land within 60 ms, so waiting for them costs no 3 s per test.
        self.env = clean_env({"SCHEDULER_HOST": "127.0.0.1", "SCHEDULER_PORT": "0", "STAGGER": "20ms", **env})
        self.argv = [sys.executable, *command, *args]
        self.cwd = cwd or log_path.parent
        self.proc: subprocess.Popen | None = None
        self._port: int | None = None

    def start(self, wait: bool = True) -> "Daemon":
        """Start the process.

        :param wait: return only once ``/health`` answers.
        :raises AssertionError: if it exits or does not answer within 10 s.
        """
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(self._answers, what="/health of the daemon")
        return self

    def log(self) -> str:
        """:returns: everything the daemon wrote so far."""
        return self.log_path.read_text("utf-8", errors="replace")

    def _exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")

    def _listening(self) -> re.Match | None:
        found = LISTENING.search(self.log())
        if found is None:
            self._exited()
        return found

    @property
    def port(self) -> int:
        """The port the daemon listens on; waits up to 10 s for its ``listening`` log line."""
        if self._port is None:
            self._port = int(wait_for(self._listening, what="the 'listening' line").group(1))
        return self._port

    def _answers(self) -> bool:
        self._exited()
        if self._listening() is None:
            return False
        try:
            self.request("GET", "/health", timeout_s=1.0)
        except OSError:
            return False
        return True

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        """One request on a new connection.

        :param timeout_s: socket timeout, seconds.
        :returns: ``(status, decoded JSON body or None, response)``.
        :raises OSError: when the daemon does not answer.
        """
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
        if self.proc is None:
            raise RuntimeError("the daemon was not started")
        self.proc.send_signal(signum)

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, as ``systemctl stop`` does, and wait.

        :returns: the exit status.
        :raises subprocess.TimeoutExpired: if it is still running after ``timeout_s`` seconds.
        """
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; for teardown.

        :returns: the exit status, or None if it was never started.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def standin() -> Iterator[FetcherStandIn]:
    """A running FetcherStandIn on a free loopback port; stopped at the end."""
    fetcher = FetcherStandIn().start()
    yield fetcher
    try:
        fetcher.stop()
    except OSError:
        pass


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: pathlib.Path,
           standin: FetcherStandIn) -> Iterator[Callable[..., Daemon]]:
    """Start real daemons: ``daemon(env, args=(...), wait=True, command=..., log_path=...)``.

    Defaults: port 0 on 127.0.0.1, ``STATE_FILE`` in ``tmp_path``,
    ``FETCHER_URL`` at the stand-in, ``CALENDAR_FILE`` a copy of the calendar
    in ``tests/data`` that the test module names in ``DAEMON_CALENDAR`` (by
    default the 2023 calendar, all of it in the past, so the daemon runs in
    off-season mode with long intervals) and ``SHUTDOWN_GRACE=2s``. Every
    daemon started is stopped at the end.
    """
    started: list[Daemon] = []
    calendar = tmp_path / "calendar.json"
    shutil.copyfile(DATA / getattr(request.module, "DAEMON_CALENDAR", "ergast-2023.json"), calendar)
    numbers = itertools.count(1)

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = (), wait: bool = True,
              command: tuple[str, ...] = ("-m", "scheduler_api"), log_path: pathlib.Path | None = None) -> Daemon:
        full = {
            "STATE_FILE": str(tmp_path / "state.json"),
            "FETCHER_URL": standin.url,
            "CALENDAR_FILE": str(calendar),
            "SHUTDOWN_GRACE": "2s",
            **(env or {}),
        }
        proc = Daemon(log_path or tmp_path / f"daemon-{next(numbers)}.log", full, args, command)
        started.append(proc)
        return proc.start(wait)

    yield start
    for proc in started:
        proc.stop()


# -- systemd's side: the notify socket and the journal stream -------------------


class NotifySocket:
    """Plays systemd's side of sd_notify(3): a bound ``AF_UNIX`` datagram socket.

    Not thread-safe: the test thread alone receives and reads :attr:`messages`.

    :param address: a filesystem path, or ``@name`` for an abstract socket.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[tuple[float, str]] = []  # (arrival, monotonic s; one assignment)

    def _receive(self, timeout_s: float) -> None:
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            datagram = self.sock.recv(4096)
        except socket.timeout:
            return
        arrived_mono = time.monotonic()
        for line in datagram.decode("utf-8").split("\n"):
            if line:
                self.messages.append((arrived_mono, line))

    def wait_for(self, assignment: str, timeout_s: float = 10.0, count: int = 1) -> float:
        """Receive until ``assignment`` (e.g. ``READY=1``, or ``STATUS=`` as a prefix) arrived ``count`` times.

        :returns: when the last of them arrived, monotonic seconds.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.arrivals(assignment)
            if len(found) >= count:
                return found[count - 1]
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError(f"{assignment!r} x{count} did not arrive within {timeout_s}s: {self.messages}")
            self._receive(remaining_s)

    def listen(self, duration_s: float) -> None:
        """Receive whatever arrives during ``duration_s`` seconds (to prove that something does not)."""
        deadline = time.monotonic() + duration_s
        while (remaining_s := deadline - time.monotonic()) > 0:
            self._receive(remaining_s)

    def arrivals(self, assignment: str) -> list[float]:
        """:returns: arrival times of messages equal to ``assignment``, or starting with it if it ends in ``=``."""
        return [at for at, line in self.messages
                if line == assignment or (assignment.endswith("=") and line.startswith(assignment))]

    def close(self) -> None:
        """Close the socket; later notifications from the daemon fail to send, and it carries on."""
        self.sock.close()


def notify_path(tmp_path: pathlib.Path) -> str:
    """A socket path in ``tmp_path``, or in a short temporary directory when that is too long for AF_UNIX."""
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) < 100:
        return str(path)
    return os.path.join(tempfile.mkdtemp(prefix="sa-"), "notify.sock")  # pragma: no cover - long tmp dirs


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path: pathlib.Path) -> Iterator[NotifySocket]:
    """systemd's notify socket, as a path (``/run/...``-like) and as an abstract (``@...``) one."""
    address = notify_path(tmp_path) if request.param == "path" else f"@scheduler_api-test-{uuid.uuid4().hex}"
    sock = NotifySocket(address)
    yield sock
    sock.close()


def journal_stream_of(path: pathlib.Path) -> str:
    """The ``JOURNAL_STREAM`` value systemd would set for a stderr connected to ``path``."""
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"
