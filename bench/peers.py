"""The processes the benchmark measures: the fetcher stand-in, our daemon and its peers (APScheduler, the floor, a bare server).

Each runs in its own process so that none shares an interpreter lock with
what measures it; each context manager yields ``(process, base url)`` once
the process is ready and stops it on the way out.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUND = 1
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                answer.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s}s")
            time.sleep(0.05)


def write_calendar(path: str, now_ts: float) -> int:
    """An Ergast-shaped calendar of one round whose race started five minutes ago. :returns: the season."""
    def at(offset_s: float) -> dict[str, str]:
        moment = datetime.datetime.fromtimestamp(now_ts + offset_s, tz=datetime.timezone.utc)
        return {"date": moment.strftime("%Y-%m-%d"), "time": moment.strftime("%H:%M:%SZ")}

    race = at(-300)
    season = int(race["date"][:4])
    body = {"MRData": {"RaceTable": {"season": str(season), "Races": [{
        "season": str(season), "round": str(ROUND), "raceName": "Benchmark Grand Prix",
        "Circuit": {"circuitId": "bench", "circuitName": "Bench"},
        **race,
        "FirstPractice": at(-2 * 86400), "SecondPractice": at(-2 * 86400 + 14400),
        "ThirdPractice": at(-86400), "Qualifying": at(-86400 + 14400),
    }]}}}
    with open(path, "w") as handle:
        json.dump(body, handle)
    return season


class StandIn:
    """The recording fetcher stand-in, in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "standin_proc.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.url = self.proc.stdout.readline().split()[1]

    def dump(self) -> list[tuple[str, str, float]]:
        self.proc.stdin.write("dump\n")
        self.proc.stdin.flush()
        return [tuple(c) for c in json.loads(self.proc.stdout.readline())]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(10)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def daemon(tmp: str, standin: StandIn, calendar: str, hour_intervals: bool) -> Iterator[tuple[subprocess.Popen, str]]:
    """Our daemon as a real process. :yields: ``(process, base url)``."""
    port = free_port()
    state_dir = tempfile.mkdtemp(dir=tmp)
    # An allow-list, as in the tests' harness: nothing else exported in the shell reaches the daemon.
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "LANG", "TMPDIR") or k.startswith(("LC_", "PYTHON"))}
    fast = not hour_intervals
    env.update(
        ROUNDS_INTERVAL_RACE_WEEKEND="100ms" if fast else "1h",
        RESULTS_INTERVAL_LIVE="100ms" if fast else "1h",
        STANDINGS_INTERVAL_RACE_WEEKEND="250ms" if fast else "1h",
        CALENDAR_FILE=calendar, FETCHER_URL=standin.url, STATE_FILE=os.path.join(state_dir, "state.json"),
        LOG_LEVEL="WARNING", SCHEDULER_HOST="127.0.0.1", SCHEDULER_PORT=str(port), PYTHONPATH=ROOT,
    )
    log = open(os.path.join(state_dir, "daemon.log"), "w")
    proc = subprocess.Popen([PY, "-m", "scheduler_api"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/status")
        yield proc, url
    finally:
        stop(proc)
        log.close()


@contextmanager
def aps_peer(standin: StandIn, season: int) -> Iterator[tuple[subprocess.Popen, str]]:
    """APScheduler (plus a bare HTTP server) as a real process. :yields: ``(process, base url)``."""
    port = free_port()
    proc = subprocess.Popen([PY, os.path.join(HERE, "aps_peer.py"), standin.url, str(port), str(season), str(ROUND)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE)
    try:
        proc.stdout.readline()
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def bare_server() -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    proc = subprocess.Popen([PY, os.path.join(HERE, "bare_server.py"), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=HERE)
    try:
        proc.stdout.readline()
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


@contextmanager
def floor_peer(standin: StandIn, season: int) -> Iterator[tuple[subprocess.Popen, str]]:
    """The floor (raw sockets, one thread per kind) as a real process. :yields: ``(process, "")``: it serves nothing."""
    proc = subprocess.Popen([PY, os.path.join(HERE, "floor_peer.py"), standin.url, str(season), str(ROUND)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE)
    try:
        proc.stdout.readline()
        yield proc, ""
    finally:
        stop(proc)

