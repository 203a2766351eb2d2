"""Benchmark scheduler_api side by side with APScheduler and a bare ThreadingHTTPServer (issue 5).

One command, from the repository root:

    .venv/bin/pip install '.[bench]' && .venv/bin/python bench/run.py

It starts a recording fetcher stand-in in its own process and, one after
the other on the same machine: fire accuracy of our daemon (a real
``python -m scheduler_api`` process) and of APScheduler; HTTP throughput of
our /health and /status and of the bare server (wrk, 2 threads, 50
connections); fire accuracy of both while wrk hammers their /status; idle
CPU, wake-ups and peak RSS. It prints one table with the ratio ours/peer
and a verdict per goal. Takes about three minutes; never part of the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from measure import (  # noqa: E402
    Accuracy, HttpResult, fire_accuracy, have_wrk, peak_rss_mb, proc_sample, run_wrk,
)

LOAD_WARM_UP_S = 2.0  # seconds of wrk before a window under load opens
INTERVALS_S = {"rounds": 0.1, "results": 0.1, "standings": 0.25}
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


def accuracy_run(standin: StandIn, start, run_s: float, load_path: str | None) -> tuple[Accuracy, HttpResult | None]:
    """Run a scheduler for ``run_s``, optionally under wrk on ``load_path``; score the window after 2 s warm-up.

    Under load, wrk starts before the window and the window opens once wrk
    has had ``LOAD_WARM_UP_S`` to open its connections: it measures the
    scheduler under steady load, not while 50 connections are being set up.
    """
    with start() as (_proc, url):
        standin.dump()
        time.sleep(2.0)
        load: HttpResult | None = None
        if load_path is not None:
            result: dict[str, HttpResult] = {}
            loader = threading.Thread(target=lambda: result.update(http=run_wrk(url + load_path, int(run_s))))
            loader.start()
            time.sleep(LOAD_WARM_UP_S)
            w0 = time.monotonic()
            time.sleep(run_s - LOAD_WARM_UP_S - 1.0)
            w1 = time.monotonic()
            loader.join()
            load = result["http"]
        else:
            w0 = time.monotonic()
            time.sleep(run_s - 2)
            w1 = time.monotonic()
        time.sleep(0.3)
        calls = standin.dump()
    return fire_accuracy(calls, INTERVALS_S, (w0, w1)), load


def idle_run(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    before = {name: proc_sample(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    after = {name: proc_sample(pid) for name, pid in pids.items()}
    return {
        name: {
            "cpu_s": after[name].cpu_s - before[name].cpu_s,
            "wakeups_per_s": (after[name].ctx_switches - before[name].ctx_switches) / seconds,
            "threads": after[name].threads,
            "rss_mb": peak_rss_mb(pid),
        }
        for name, pid in pids.items()
    }


# -- the table -----------------------------------------------------------------

def fmt(value: float | str | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def ratio(ours: float, peer: float) -> str:
    if peer == 0:
        return "-" if ours == 0 else "inf"
    return f"{ours / peer:.2f}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-s", type=float, default=22.0, help="seconds per fire-accuracy run (default 22)")
    parser.add_argument("--http-s", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds of idle measurement (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    parser.add_argument("--load-only", action="store_true", help="only the fire-accuracy-under-load pair (profiling aid)")
    args = parser.parse_args()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="scheduler_api_bench_")
    calendar = os.path.join(tmp, "calendar.json")
    season = write_calendar(calendar, time.time())
    standin = StandIn()
    say = lambda text: print(f"[{time.monotonic() - started:5.0f}s] {text}", file=sys.stderr, flush=True)  # noqa: E731
    if not have_wrk():
        say("wrk not found (apt-get install -y wrk): using the bounded Python client instead")
    if args.load_only:
        try:
            for name, start in (("ours", lambda: daemon(tmp, standin, calendar, False)),
                                ("APScheduler", lambda: aps_peer(standin, season))):
                acc, load = accuracy_run(standin, start, args.run_s, "/status")
                print(f"{name}: {acc} /status {load.rps:.0f} req/s")
        finally:
            standin.close()
        return 0
    try:
        say("fire accuracy: scheduler_api")
        ours_acc, _ = accuracy_run(standin, lambda: daemon(tmp, standin, calendar, False), args.run_s, None)
        say("fire accuracy: APScheduler")
        aps_acc, _ = accuracy_run(standin, lambda: aps_peer(standin, season), args.run_s, None)

        say("idle and HTTP: scheduler_api and the bare server, hour-long intervals")
        with daemon(tmp, standin, calendar, True) as (ours_proc, ours_url), bare_server() as (bare_proc, bare_url):
            time.sleep(3.0)
            idle = idle_run({"ours": ours_proc.pid, "bare": bare_proc.pid}, args.idle_s)
            http = {}
            for name, url in (("ours", ours_url), ("bare", bare_url)):
                for path in ("/health", "/status"):
                    say(f"wrk {name} {path}")
                    http[name, path] = run_wrk(url + path, args.http_s)
            rss_after_load = {"ours": peak_rss_mb(ours_proc.pid), "bare": peak_rss_mb(bare_proc.pid)}

        say("fire accuracy under HTTP load: scheduler_api")
        ours_load, ours_load_http = accuracy_run(
            standin, lambda: daemon(tmp, standin, calendar, False), args.run_s, "/status")
        say("fire accuracy under HTTP load: APScheduler")
        aps_load, aps_load_http = accuracy_run(standin, lambda: aps_peer(standin, season), args.run_s, "/status")
    finally:
        standin.close()

    rows: list[tuple[str, str, str, str, str, str]] = []

    def add(label: str, ours, peer, goal: str = "", ok: bool | None = None, digits: int = 1,
            show_ratio: bool = True) -> None:
        r = ratio(ours, peer) if show_ratio and isinstance(ours, (int, float)) else "-"
        rows.append((label, fmt(ours, digits), fmt(peer, digits), r, goal, "" if ok is None else verdict(ok)))

    goals: list[tuple[str, bool]] = []

    def section(title: str) -> None:
        rows.append((title, "", "", "", "", ""))

    section("Fire accuracy (peer: APScheduler)")
    ok = ours_acc.missed == 0 and ours_acc.extra == 0
    goals.append(("no missed calls", ok))
    add("  calls made / expected", f"{ours_acc.made}/{ours_acc.expected}", f"{aps_acc.made}/{aps_acc.expected}",
        "no missed", ok)
    add("  lateness p50 (ms)", ours_acc.p50_ms, aps_acc.p50_ms, digits=2)
    ok = ours_acc.p99_ms <= 0.6 * aps_acc.p99_ms
    goals.append(("ticker lateness p99 <= 0.6x APScheduler", ok))
    add("  lateness p99 (ms)", ours_acc.p99_ms, aps_acc.p99_ms, "<= 0.6x", ok, digits=2)
    add("  lateness max (ms)", ours_acc.max_ms, aps_acc.max_ms, digits=2)
    ok = abs(ours_acc.drift_ms) <= 5.0
    goals.append(("drift within +-5 ms", ok))
    add("  drift over the run (ms)", ours_acc.drift_ms, aps_acc.drift_ms, "within +-5", ok, digits=2,
        show_ratio=False)

    section("HTTP (peer: bare server)")
    oh, bh = http["ours", "/health"], http["bare", "/health"]
    ok_rps = oh.rps >= 1.0 * bh.rps
    add("  /health requests/s", oh.rps, bh.rps, ">= 1.0x", ok_rps, digits=0)
    add("  /health latency p50 (ms)", oh.p50_ms, bh.p50_ms, digits=2)
    ok_p99 = oh.p99_ms <= bh.p99_ms
    add("  /health latency p99 (ms)", oh.p99_ms, bh.p99_ms, "<= 1.0x", ok_p99, digits=2)
    goals.append(("/health requests/s >= 1.0x bare, p99 not worse", ok_rps and ok_p99))
    os_, bs = http["ours", "/status"], http["bare", "/status"]
    add("  /status requests/s", os_.rps, bs.rps, digits=0)
    add("  /status latency p50 (ms)", os_.p50_ms, bs.p50_ms, digits=2)
    add("  /status latency p99 (ms)", os_.p99_ms, bs.p99_ms, digits=2)
    add("  HTTP errors (all runs)", f"{sum(h.errors for k, h in http.items() if k[0] == 'ours')}",
        f"{sum(h.errors for k, h in http.items() if k[0] == 'bare')}")

    section("Fire accuracy, wrk on /status (peer: APScheduler)")
    add("  calls made / expected", f"{ours_load.made}/{ours_load.expected}", f"{aps_load.made}/{aps_load.expected}")
    add("  lateness p50 (ms)", ours_load.p50_ms, aps_load.p50_ms, digits=2)
    ok = ours_load.p99_ms <= aps_load.p99_ms
    goals.append(("ticker lateness p99 under load <= APScheduler's", ok))
    add("  lateness p99 (ms)", ours_load.p99_ms, aps_load.p99_ms, "<= 1.0x", ok, digits=2)
    add("  lateness max (ms)", ours_load.max_ms, aps_load.max_ms, digits=2)
    add("  drift over the run (ms)", ours_load.drift_ms, aps_load.drift_ms, digits=2, show_ratio=False)
    if ours_load_http and aps_load_http:
        add("  /status requests/s meanwhile", ours_load_http.rps, aps_load_http.rps, digits=0)

    section("Idle, hour-long intervals (peer: bare server)")
    io, ib = idle["ours"], idle["bare"]
    ok_cpu = io["cpu_s"] <= 0.03
    add("  CPU seconds", io["cpu_s"], ib["cpu_s"], "~0 (<= 0.03)", ok_cpu, digits=2)
    ok_wake = io["wakeups_per_s"] <= 0.1
    add("  wake-ups/s (context switches)", io["wakeups_per_s"], ib["wakeups_per_s"], "<= 0.1", ok_wake, digits=3)
    add("  threads", io["threads"], ib["threads"], digits=0)
    ok_rss = io["rss_mb"] <= 30.0
    add("  peak RSS idle (MiB)", io["rss_mb"], ib["rss_mb"], "<= 30", ok_rss)
    add("  peak RSS after HTTP load (MiB)", rss_after_load["ours"], rss_after_load["bare"])
    goals.append(("idle <= 0.1 wake-ups/s, ~0 CPU, RSS <= 30 MiB", ok_cpu and ok_wake and ok_rss))

    header = ("figure", "ours", "peer", "ours/peer", "goal", "verdict")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(6)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
    for name, ok in goals:
        print(f"- {verdict(ok)}: {name}")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nfire accuracy: {args.run_s - 2:.0f} s windows after 2 s warm-up; HTTP: wrk 2 threads, 50 connections, "
          f"{args.http_s} s per run; idle: {args.idle_s:.0f} s; under load: windows open {LOAD_WARM_UP_S:.0f} s after "
          f"wrk starts; APScheduler under load shares its process with the bare server, which wrk hammers")
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"HTTP load by {oh.tool}; took {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"ours": vars(ours_acc), "aps": vars(aps_acc), "ours_load": vars(ours_load),
                       "aps_load": vars(aps_load), "idle": idle,
                       "http": {f"{k[0]} {k[1]}": vars(v) for k, v in http.items()}}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
