"""The floor: what a bare thread achieves firing calls on a fixed-rate grid, standard library only.

One thread per kind. Each sleeps on the monotonic clock until the next
absolute due time ``start + k * interval`` (never "last send + interval",
so nothing drifts), writes a POST built once at start-up on its own
keep-alive socket, and reads the answer (head, then ``Content-Length``
bytes) before sleeping again. No HTTP library, no scheduler, no pool: the
lateness this process shows is the machine's own (the operating system's
wake-up and the interpreter's), the floor any scheduler in Python stands on.
All kinds start on the same instant, as the daemon's do at start-up.

``python bench/floor_peer.py FETCHER_URL SEASON ROUND``; prints ``ready``; SIGTERM stops it.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time

#: kind -> (interval, seconds; path): the same calls at the same intervals as the daemon in the benchmark.
JOBS = {
    "rounds": (0.1, "/fetch/rounds?season={season}"),
    "results": (0.1, "/fetch/results?season={season}&round={round}"),
    "standings": (0.25, "/fetch/standings?season={season}"),
}


def build_post(host_port: str, path: str) -> bytes:
    """:returns: the whole request, bytes, ready to write."""
    return f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 0\r\n\r\n".encode("ascii")


def read_answer(sock: socket.socket, pending: bytes) -> bytes:
    """Read one answer (head and ``Content-Length`` body). :returns: bytes read past it."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        pending += chunk
    head, _, rest = pending.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return rest[length:]


def fire(address: tuple[str, int], request: bytes, interval_s: float, start_mono: float,
         stop: threading.Event) -> None:
    """Send ``request`` at every slot of the grid from ``start_mono`` until ``stop``; a late slot fires once."""
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    slot = 0
    while not stop.is_set():
        due = start_mono + slot * interval_s
        wait_s = due - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        sock.sendall(request)
        pending = read_answer(sock, pending)
        slot = max(slot + 1, int((time.monotonic() - start_mono) / interval_s) + 1)  # coalesce a misfire
    sock.close()


def main() -> int:
    fetcher_url, season, round_ = sys.argv[1], sys.argv[2], sys.argv[3]
    host_port = fetcher_url.removeprefix("http://").rstrip("/")
    host, _, port = host_port.partition(":")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start_mono = time.monotonic() + 0.2
    threads = []
    for kind, (interval_s, path) in JOBS.items():
        request = build_post(host_port, path.format(season=season, round=round_))
        thread = threading.Thread(target=fire, name=kind, daemon=True,
                                  args=((host, int(port)), request, interval_s, start_mono, stop))
        thread.start()
        threads.append(thread)
    print("ready", flush=True)
    stop.wait()
    for thread in threads:
        thread.join(2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
