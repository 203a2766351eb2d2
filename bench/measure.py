"""Measurements for the benchmark: fire accuracy from arrival times, /proc counters, HTTP load with wrk."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- fire accuracy -----------------------------------------------------------

@dataclass
class Accuracy:
    """Fire accuracy of one scheduler over one window, pooled over its kinds.

    Lateness is measured against the ideal fixed-rate grid of each kind: the
    grid ``base + k * interval`` that no call beats (``base`` is the earliest
    offset seen), so the earliest call has lateness 0. Drift is the
    least-squares slope of lateness over time, times the window: how far the
    schedule wandered over the run.
    """

    made: int
    expected: int
    missed: int
    extra: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    drift_ms: float  # the kind with the largest |drift|


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q * (len(ordered) - 1)))))
    return ordered[rank]


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def kind_of(path: str) -> str:
    """:returns: the sync kind of a ``/fetch/<kind>?...`` path."""
    return path.split("?")[0].rsplit("/", 1)[-1]


Arrivals = list[tuple[str, str, float]]  # (method, path, arrived_mono) as the stand-in recorded them


def fire_accuracy(runs: list[tuple[Arrivals, tuple[float, float]]], intervals_s: dict[str, float]) -> Accuracy:
    """Score the arrivals of the kinds in ``intervals_s``, pooled over ``runs`` of ``(arrivals, window)``.

    Each run is scored against its own grids (a scheduler started anew has
    new ones); the lateness of every run goes into one pool for the
    percentiles, the counts add up, and the drift is the largest of any run.
    Rounds of a few runs each, taken in turn with the other schedulers,
    spread a busy moment of a shared machine over all of them.
    """
    lateness_all: list[float] = []
    made = expected = missed = extra = 0
    worst_drift = 0.0
    for calls, window in runs:
        score = _score_run(calls, intervals_s, window)
        lateness_all.extend(score[0])
        made, expected, missed, extra = (a + b for a, b in zip((made, expected, missed, extra), score[1:5]))
        if abs(score[5]) > abs(worst_drift):
            worst_drift = score[5]
    return Accuracy(made, expected, missed, extra, _percentile(lateness_all, 0.5) * 1e3,
                    _percentile(lateness_all, 0.99) * 1e3, max(lateness_all, default=float("nan")) * 1e3,
                    worst_drift * 1e3)


def _score_run(calls: Arrivals, intervals_s: dict[str, float],
               window: tuple[float, float]) -> tuple[list[float], int, int, int, int, float]:
    """:returns: one run's ``(lateness, made, expected, missed, extra, worst drift)``, seconds."""
    w0, w1 = window
    lateness_all: list[float] = []
    made = expected = missed = extra = 0
    worst_drift = 0.0
    for kind, interval_s in intervals_s.items():
        times = sorted(t for _m, p, t in calls if kind_of(p) == kind and w0 <= t <= w1)
        if not times:
            expected += int((w1 - w0) / interval_s)
            missed += int((w1 - w0) / interval_s)
            continue
        first = times[0]
        slots = [round((t - first) / interval_s) for t in times]
        offsets = [t - k * interval_s for t, k in zip(times, slots)]
        base = min(offsets)
        lateness = [o - base for o in offsets]
        lateness_all.extend(lateness)
        drift = _slope(times, lateness) * (w1 - w0)
        if abs(drift) > abs(worst_drift):
            worst_drift = drift
        # Grid slots whose due time lies in the window, with half an interval to arrive before it closes.
        k_lo = -int((base - w0) // interval_s) if base > w0 else 0
        while base + k_lo * interval_s < w0:
            k_lo += 1
        k_hi = int((w1 - interval_s / 2 - base) // interval_s)
        grid = set(range(k_lo, k_hi + 1))
        seen = set(slots)
        made += len(seen & grid)
        expected += len(grid)
        missed += len(grid - seen)
        extra += len(slots) - len(seen)
    return lateness_all, made, expected, missed, extra, worst_drift


# -- /proc -------------------------------------------------------------------

@dataclass
class ProcSample:
    cpu_s: float
    ctx_switches: int
    threads: int


def proc_sample(pid: int) -> ProcSample:
    """CPU seconds (user+system) and context switches summed over all threads of ``pid``."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14, 15
    switches = threads = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as handle:
                for line in handle:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
            threads += 1
        except FileNotFoundError:
            pass
    return ProcSample(cpu_s, switches, threads)


def peak_rss_mb(pid: int) -> float:
    """:returns: VmHWM of ``pid``, MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- HTTP load ---------------------------------------------------------------

@dataclass
class HttpResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


def median_http(results: list[HttpResult]) -> HttpResult:
    """:returns: the median requests/s, p50 and p99 of several runs (each figure on its own), errors summed."""
    return HttpResult(statistics.median(r.rps for r in results), statistics.median(r.p50_ms for r in results),
                      statistics.median(r.p99_ms for r in results), sum(r.errors for r in results), results[0].tool)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, duration_s: int, threads: int = 2, connections: int = 50) -> HttpResult:
    """Run ``wrk --latency``; fall back to :func:`run_python_client` when wrk is missing."""
    if not have_wrk():
        return run_python_client(url, duration_s, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if found:
        errors += sum(int(g) for g in found.groups())
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found:
        errors += int(found.group(1))
    return HttpResult(rps, p50, p99, errors, "wrk")


def run_python_client(url: str, duration_s: float, connections: int = 50) -> HttpResult:
    """A bounded keep-alive load generator (asyncio, one process) for machines without wrk."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    request = f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0

    async def one(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
                await reader.readexactly(length)
                latencies.append(time.monotonic() - started)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    async def all_() -> None:
        deadline = time.monotonic() + duration_s
        await asyncio.gather(*(one(deadline) for _ in range(connections)))

    started = time.monotonic()
    asyncio.run(all_())
    elapsed = time.monotonic() - started
    return HttpResult(len(latencies) / elapsed, _percentile(latencies, 0.5) * 1e3,
                      _percentile(latencies, 0.99) * 1e3, errors, "python")
