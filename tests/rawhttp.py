"""Raw-socket HTTP clients for the isolation tests: plain exchanges, and the hostile ones.

The hostile clients pace themselves by waiting on their socket (``select``)
or on a stop event, never by sleeping: a trickler sends one byte, then waits
up to its gap for the server to answer or hang up. :func:`isolation_scenario`
is issue 10's acceptance run: while one client holds a ``GET`` whose
announced body never comes and many others trickle header bytes, another
client probes ``/health``; ``tests/test_proc_http_isolation.py`` runs it for seconds,
``python tests/rawhttp.py`` against a real daemon for a full minute.
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

HOLD = b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"  # a body announced, never sent
TRICKLE = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000 + b"\r\n\r\n"  # never done at 10 bytes/s


def raw(port: int, data: bytes, timeout_s: float = 5.0, shut_write: bool = False) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    """:returns: everything until the server closes (a reset after its last word counts as a close)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def split(answer: bytes) -> tuple[int, dict[str, str], dict]:
    """:returns: status, headers (lower-case names) and the JSON body of one HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_error(answer: bytes, status: int) -> dict:
    """Check a JSON error answer of ``status``; :returns: its body."""
    code, _, body = split(answer)
    assert code == status, body
    assert body["success"] is False and body["message"] and isinstance(body["timestamp"], int)
    return body


def timed_get(port: int, target: str = "/health", timeout_s: float = 5.0) -> tuple[float, int]:
    """One ``GET`` on a new connection, read to the end of its body.

    :returns: ``(seconds from connect to the last byte, status)``.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_to_close(sock)
    return time.monotonic() - started, int(answer.split(b" ", 2)[1])


def trickle_once(port: int, data: bytes, gap_s: float, stop: threading.Event,
                 prefix: bytes = b"") -> tuple[float, bytes] | None:
    """Send ``prefix`` at once, then ``data`` one byte per ``gap_s``, on a new connection, until the server
    answers or hangs up.

    :returns: ``(seconds from connect until the server's first word or close, what it sent)``,
        or None when ``stop`` was set first.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        started = time.monotonic()
        sock.sendall(prefix)
        for index in range(len(data)):
            try:
                sock.send(data[index:index + 1])
            except OSError:
                return time.monotonic() - started, b""
            readable, _, _ = select.select([sock], [], [], gap_s)
            if readable:
                return time.monotonic() - started, read_to_close(sock)
            if stop.is_set():
                return None
        return time.monotonic() - started, read_to_close(sock)


@dataclass
class Scenario:
    """What one run of :func:`isolation_scenario` measured; lists are appended to by its threads."""

    probe_s: list[float] = field(default_factory=list)  # /health latencies
    probe_status: list[int] = field(default_factory=list)
    trickle_s: list[float] = field(default_factory=list)  # connect to cut-off, per trickling connection
    hold_s: list[float] = field(default_factory=list)  # connect to cut-off, per held GET
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """:returns: the figures to report (seconds, counts)."""
        probes = sorted(self.probe_s)
        return {
            "probes": len(probes),
            "probe_p50_ms": round(statistics.median(probes) * 1000, 2) if probes else -1,
            "probe_p99_ms": round(probes[int(len(probes) * 0.99) - 1] * 1000, 2) if probes else -1,
            "probe_max_ms": round(probes[-1] * 1000, 2) if probes else -1,
            "trickling_connections_cut": len(self.trickle_s),
            "trickle_cut_max_s": round(max(self.trickle_s, default=-1), 3),
            "held_gets_cut": len(self.hold_s),
            "hold_cut_max_s": round(max(self.hold_s, default=-1), 3),
        }


def _repeat(name: str, scenario: Scenario, stop: threading.Event, once) -> None:
    """Call ``once()`` until ``stop``; an exception is recorded, not raised."""
    while not stop.is_set():
        try:
            once()
        except OSError as exc:
            scenario.errors.append(f"{name}: {exc!r}")
            stop.wait(0.05)


def isolation_scenario(port: int, duration_s: float, tricklers: int = 50, gap_s: float = 0.1,
                       probe_gap_s: float = 0.05) -> Scenario:
    """Run issue 10's acceptance scenario against a server on ``127.0.0.1:port``.

    One client holds ``GET /status`` with ``Content-Length: 10`` and no body,
    ``tricklers`` clients send a long head one byte per ``gap_s`` (each
    reconnects when cut off), and one client asks ``GET /health`` on a new
    connection every ``probe_gap_s`` for ``duration_s`` seconds.
    """
    scenario, stop = Scenario(), threading.Event()

    def hold() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60.0) as sock:
            started = time.monotonic()
            sock.sendall(HOLD)
            read_to_close(sock)
            scenario.hold_s.append(time.monotonic() - started)

    def trickle() -> None:
        result = trickle_once(port, TRICKLE, gap_s, stop)
        if result is not None:
            scenario.trickle_s.append(result[0])

    threads = [threading.Thread(target=_repeat, args=("hold", scenario, stop, hold), daemon=True)]
    threads += [threading.Thread(target=_repeat, args=("trickle", scenario, stop, trickle), daemon=True)
                for _ in range(tricklers)]
    for thread in threads:
        thread.start()
    stop.wait(min(1.0, duration_s / 4))  # let the hostile clients get going
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        latency_s, status = timed_get(port)
        scenario.probe_s.append(latency_s)
        scenario.probe_status.append(status)
        stop.wait(probe_gap_s)
    stop.set()
    for thread in threads:
        thread.join(10)
    return scenario


if __name__ == "__main__":  # the full acceptance run, by hand: python tests/rawhttp.py [seconds] [timeout]
    import pathlib
    import sys
    import tempfile

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from harness import DATA, Daemon  # noqa: E402 - only the hand run needs a daemon
    from scheduler_api.standin import FetcherStandIn  # noqa: E402

    seconds, timeout = (sys.argv[1:] + ["60", "10s"][len(sys.argv) - 1:])[:2]
    with tempfile.TemporaryDirectory() as tmp:
        fetcher = FetcherStandIn().start()
        daemon = Daemon(pathlib.Path(tmp) / "daemon.log", {
            "STATE_FILE": f"{tmp}/state.json", "CALENDAR_FILE": str(DATA / "ergast-2023.json"),
            "FETCHER_URL": fetcher.url, "SCHEDULER_HTTP_TIMEOUT": timeout,
        }).start()
        try:
            result = isolation_scenario(daemon.port, float(seconds))
        finally:
            daemon.stop()
            fetcher.stop()
    print(json.dumps({"duration_s": float(seconds), "http_timeout": timeout, **result.summary(),
                      "statuses": sorted(set(result.probe_status)), "errors": result.errors[:5]}, indent=1))
