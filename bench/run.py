"""Benchmark scheduler_api side by side with a floor, APScheduler and a bare ThreadingHTTPServer.

One command, from the repository root:

    .venv/bin/pip install '.[bench]' && .venv/bin/python bench/run.py

It starts a recording fetcher stand-in in its own process and, one after
the other on the same machine: fire accuracy of our daemon (a real
``python -m scheduler_api`` process), of the floor (``floor_peer.py``: one
bare thread per kind writing pre-built requests on raw sockets) and of
APScheduler (one ``requests.Session`` per job); HTTP throughput of our
/health and /status and of the bare server (wrk, 2 threads, 50
connections); fire accuracy of ours and APScheduler while wrk hammers their
/status; idle CPU, wake-ups and peak RSS; then, in-process, the cost of a
tick and of a /status answer as the calendar and history grow, and the
speed of ``plan`` (``costs.py``). Fire accuracy and HTTP are measured in
rounds, each scheduler or server in turn. It prints one table with the
ratios ours/floor and ours/peer and a verdict per goal. About five and a
half minutes; never part of the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from budget import budget, render as render_budget  # noqa: E402
from costs import growth, plan_timing  # noqa: E402
from measure import (  # noqa: E402
    Accuracy, Arrivals, HttpResult, fire_accuracy, have_wrk, median_http, peak_rss_mb, proc_sample, run_wrk,
)
from peers import StandIn, aps_peer, bare_server, daemon, floor_peer, write_calendar  # noqa: E402
from table import Table, cost_rows, fire_rows  # noqa: E402

LOAD_WARM_UP_S = 4.0  # seconds of wrk before a window under load opens (its 50 connections' start-up settles)
INTERVALS_S = {"rounds": 0.1, "results": 0.1, "standings": 0.25}
STATUS_HTTP_ROUNDS = 2  # wrk rounds on /status, which has no goal: the time goes to a third fire-accuracy round


def accuracy_run(standin: StandIn, start, run_s: float,
                 load_path: str | None) -> tuple[Arrivals, tuple[float, float], HttpResult | None]:
    """Run a scheduler for ``run_s``, optionally under wrk on ``load_path``; its window opens after 2 s warm-up.

    Under load, wrk starts before the window and the window opens once wrk
    has had ``LOAD_WARM_UP_S`` to open its connections: it measures the
    scheduler under steady load, not while 50 connections are being set up
    (in the first two to three seconds after 50 connections open at once,
    calls of both schedulers are sometimes tens of milliseconds late; see
    bench/README.md). A run under load lasts that much longer, so its
    window is as long as one without.

    :returns: the arrivals, the window ``(start, end)`` (monotonic seconds) and wrk's result under load.
    """
    with start() as (_proc, url):
        standin.dump()
        time.sleep(2.0)
        load: HttpResult | None = None
        if load_path is not None:
            result: dict[str, HttpResult] = {}
            wrk_s = int(run_s - 2 + LOAD_WARM_UP_S + 1)
            loader = threading.Thread(target=lambda: result.update(http=run_wrk(url + load_path, wrk_s)))
            loader.start()
            time.sleep(LOAD_WARM_UP_S)
            w0 = time.monotonic()
            time.sleep(run_s - 2)
            w1 = time.monotonic()
            loader.join()
            load = result["http"]
        else:
            w0 = time.monotonic()
            time.sleep(run_s - 2)
            w1 = time.monotonic()
        time.sleep(0.3)
        calls = standin.dump()
    return calls, (w0, w1), load


def accuracy_rounds(standin: StandIn, starts: dict, rounds: int, run_s: float, load_path: str | None,
                    say) -> dict[str, tuple[Accuracy, HttpResult | None]]:
    """Fire accuracy of each scheduler in ``starts`` over ``rounds`` runs of ``run_s`` each, taken in turn.

    :returns: name -> (the accuracy pooled over its runs, wrk's median result under load or None).
    """
    runs: dict[str, list] = {name: [] for name in starts}
    loads: dict[str, list[HttpResult]] = {name: [] for name in starts}
    for number in range(rounds):
        for name, start in starts.items():
            say(f"fire accuracy{' under HTTP load' if load_path else ''}: {name}, round {number + 1}")
            calls, window, load = accuracy_run(standin, start, run_s, load_path)
            runs[name].append((calls, window))
            if load is not None:
                loads[name].append(load)
    return {name: (fire_accuracy(runs[name], INTERVALS_S), median_http(loads[name]) if loads[name] else None)
            for name in starts}


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


def measure_all(args: argparse.Namespace, say) -> dict:
    """Run every measurement, one after the other. :returns: the figures by name."""
    tmp = tempfile.mkdtemp(prefix="scheduler_api_bench_")
    calendar = os.path.join(tmp, "calendar.json")
    season = write_calendar(calendar, time.time())
    standin = StandIn()
    fig: dict = {}
    ours = lambda hour_intervals=False: daemon(tmp, standin, calendar, hour_intervals)  # noqa: E731
    try:
        fire = accuracy_rounds(standin, {"ours": ours, "floor": lambda: floor_peer(standin, season),
                                         "aps": lambda: aps_peer(standin, season)},
                               args.rounds, args.run_s, None, say)
        for name, (accuracy, _) in fire.items():
            fig[name] = accuracy
        say("idle and HTTP: scheduler_api and the bare server, hour-long intervals")
        with ours(True) as (ours_proc, ours_url), bare_server() as (bare_proc, bare_url):
            time.sleep(3.0)
            fig["idle"] = idle_run({"ours": ours_proc.pid, "bare": bare_proc.pid}, args.idle_s)
            results: dict[tuple[str, str], list[HttpResult]] = {}
            for number in range(args.http_rounds):  # in turn, so a busy moment does not hit one side only
                paths = ("/health", "/status") if number < STATUS_HTTP_ROUNDS else ("/health",)
                for name, url in (("ours", ours_url), ("bare", bare_url)):
                    for path in paths:
                        say(f"wrk {name} {path}, round {number + 1}")
                        results.setdefault((name, path), []).append(run_wrk(url + path, args.http_s))
            fig["http"] = {key: median_http(runs) for key, runs in results.items()}
            fig["rss_after_load"] = {"ours": peak_rss_mb(ours_proc.pid), "bare": peak_rss_mb(bare_proc.pid)}
        loaded = accuracy_rounds(standin, {"ours": ours, "aps": lambda: aps_peer(standin, season)},
                                 args.load_rounds, args.run_s, "/status", say)
        for name, (accuracy, load) in loaded.items():
            fig[name + "_load"], fig[name + "_load_http"] = accuracy, load
    finally:
        standin.close()
    say("cost growth: tick and /status with 24, 240 and 2,400 rounds; plan")
    fig["costs"] = growth()
    fig["plan"] = plan_timing()
    return fig


def build_table(fig: dict) -> Table:
    """:returns: the table of every figure with its ratios, goals and verdicts."""
    table = Table()
    table.section("Fire accuracy (floor: bare threads; peer: APScheduler, session per job)")
    fire_rows(table, fig["ours"], fig["floor"], fig["aps"], goals=True)

    table.section("HTTP (peer: bare server)")
    http = fig["http"]
    oh, bh = http["ours", "/health"], http["bare", "/health"]
    ok_rps, ok_p99 = oh.rps >= bh.rps, oh.p99_ms <= bh.p99_ms
    table.add("  /health requests/s", oh.rps, None, bh.rps, ">= 1.0x", ok_rps, digits=0,
              name="/health requests/s >= 1.0x bare")
    table.add("  /health latency p50 (ms)", oh.p50_ms, None, bh.p50_ms, digits=2)
    table.add("  /health latency p99 (ms)", oh.p99_ms, None, bh.p99_ms, "<= 1.0x", ok_p99, digits=2,
              name="/health p99 not worse than bare")
    os_, bs = http["ours", "/status"], http["bare", "/status"]
    table.add("  /status requests/s", os_.rps, None, bs.rps, digits=0)
    table.add("  /status latency p50 (ms)", os_.p50_ms, None, bs.p50_ms, digits=2)
    table.add("  /status latency p99 (ms)", os_.p99_ms, None, bs.p99_ms, digits=2)
    errors = lambda who: str(sum(h.errors for k, h in http.items() if k[0] == who))  # noqa: E731
    table.add("  HTTP errors (all runs)", errors("ours"), None, errors("bare"))

    table.section("Fire accuracy, wrk on /status (peer: APScheduler)")
    fire_rows(table, fig["ours_load"], None, fig["aps_load"], goals=False)
    if fig["ours_load_http"] and fig["aps_load_http"]:
        table.add("  /status requests/s meanwhile", fig["ours_load_http"].rps, None, fig["aps_load_http"].rps,
                  digits=0)

    table.section("Idle, hour-long intervals (peer: bare server)")
    io, ib = fig["idle"]["ours"], fig["idle"]["bare"]
    table.add("  CPU seconds", io["cpu_s"], None, ib["cpu_s"], "~0 (<= 0.03)", io["cpu_s"] <= 0.03, digits=2,
              name="idle CPU ~0")
    table.add("  wake-ups/s (context switches)", io["wakeups_per_s"], None, ib["wakeups_per_s"], "<= 0.1",
              io["wakeups_per_s"] <= 0.1, digits=3, name="idle <= 0.1 wake-ups/s")
    table.add("  threads", io["threads"], None, ib["threads"], digits=0)
    table.add("  peak RSS idle (MiB)", io["rss_mb"], None, ib["rss_mb"], "<= 30", io["rss_mb"] <= 30.0,
              name="RSS <= 30 MiB")
    table.add("  peak RSS after HTTP load (MiB)", fig["rss_after_load"]["ours"], None, fig["rss_after_load"]["bare"])

    table.section("Cost growth, in-process on a simulated clock; plan")
    cost_rows(table, fig["costs"], fig["plan"])
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-s", type=float, default=12.0, help="seconds per fire-accuracy run (default 12)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fire-accuracy runs per scheduler, taken in turn and pooled (default 3: the p99 "
                             "of two runs' 480 calls moved by a third between runs)")
    parser.add_argument("--load-rounds", type=int, default=2,
                        help="fire-accuracy runs per scheduler under HTTP load (default 2)")
    parser.add_argument("--http-s", type=int, default=10,
                        help="seconds per wrk run (default 10: shorter runs measure the start-up of wrk's "
                             "50 new connections more than the steady state)")
    parser.add_argument("--http-rounds", type=int, default=3,
                        help="wrk runs per server on /health, taken in turn; the median counts (default 3; "
                             f"/status, which has no goal, gets at most {STATUS_HTTP_ROUNDS})")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds of idle measurement (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only fire accuracy of ours, the floor and APScheduler, without load (profiling aid)")
    args = parser.parse_args()
    started = time.monotonic()
    say = lambda text: print(f"[{time.monotonic() - started:5.0f}s] {text}", file=sys.stderr, flush=True)  # noqa: E731
    if not have_wrk():
        say("wrk not found (apt-get install -y wrk): using the bounded Python client instead")
    if args.accuracy_only:
        return accuracy_only(args)
    fig = measure_all(args, say)
    print(build_table(fig).render())
    logging.disable(logging.WARNING)  # the budget's simulated failures would log one line each
    print("\n" + render_budget(budget()))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nfire accuracy: {args.rounds} rounds of one run per scheduler in turn, {args.run_s - 2:.0f} s windows "
          f"after 2 s warm-up, pooled; HTTP: wrk 2 threads, 50 connections, {args.http_rounds} rounds of "
          f"{args.http_s} s per server on /health and {min(args.http_rounds, STATUS_HTTP_ROUNDS)} on /status, in "
          f"turn, medians; idle: {args.idle_s:.0f} s; under load: {args.load_rounds} rounds, windows open "
          f"{LOAD_WARM_UP_S:.0f} s after wrk starts; APScheduler under load shares its process with the bare "
          f"server, which wrk hammers")
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"HTTP load by {fig['http']['ours', '/health'].tool}; took {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(raw(fig), handle, indent=1)
    return 0


def accuracy_only(args: argparse.Namespace) -> int:
    """``--accuracy-only``: ours, the floor and APScheduler without load, one line each."""
    tmp = tempfile.mkdtemp(prefix="scheduler_api_bench_")
    calendar = os.path.join(tmp, "calendar.json")
    season = write_calendar(calendar, time.time())
    standin = StandIn()
    try:
        fire = accuracy_rounds(standin, {"ours": lambda: daemon(tmp, standin, calendar, False),
                                         "floor": lambda: floor_peer(standin, season),
                                         "APScheduler": lambda: aps_peer(standin, season)},
                               args.rounds, args.run_s, None, lambda text: None)
        for name, (accuracy, _) in fire.items():
            print(f"{name}: {accuracy}")
    finally:
        standin.close()
    return 0


def raw(fig: dict) -> dict:
    """:returns: the figures as plain JSON values."""
    out = {name: vars(fig[name]) for name in ("ours", "floor", "aps", "ours_load", "aps_load")}
    out["idle"] = fig["idle"]
    out["http"] = {f"{k[0]} {k[1]}": vars(v) for k, v in fig["http"].items()}
    out["costs"] = [cost._asdict() for cost in fig["costs"]]
    out["plan"] = fig["plan"]._asdict()
    return out


if __name__ == "__main__":
    sys.exit(main())
