"""``GET /metrics``: the daemon's state in the Prometheus text exposition format 0.0.4.

Written by hand (a few dozen lines) so the daemon keeps two runtime
dependencies; the tests parse every answer with ``prometheus_client``'s own
parser. Metric names, types and labels are listed in the README (Metrics).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "scheduler_api_"

#: Upper bounds of the sync duration histogram, seconds: a results sync takes about a second,
#: a seasons walk about 45 s, and FETCHER_TIMEOUT is 300 s by default.
DURATION_BUCKETS_S: tuple[float, ...] = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS_S))
    total: int = 0
    sum_s: float = 0.0


class SyncMetrics:
    """Counters since start-up that the state file does not keep: syncs by outcome, durations, retries.

    All methods are thread-safe; :meth:`frozen` copies under the lock so the
    answer is rendered outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._syncs: dict[tuple[str, str, str], int] = {}
        self._durations: dict[str, _Histogram] = {}
        self._events: dict[tuple[str, str], int] = {}

    def sync_finished(self, kind: str, trigger: str, outcome: str, duration_s: float) -> None:
        """Count one attempt's outcome and observe its duration (seconds)."""
        with self._lock:
            key = (kind, trigger, outcome)
            self._syncs[key] = self._syncs.get(key, 0) + 1
            histogram = self._durations.setdefault(kind, _Histogram())
            for index, bound in enumerate(DURATION_BUCKETS_S):
                if duration_s <= bound:
                    histogram.counts[index] += 1
            histogram.total += 1
            histogram.sum_s += duration_s

    def count(self, kind: str, event: str, amount: int = 1) -> None:
        """Count a ``retried``, ``skipped`` or ``coalesced`` event of ``kind``."""
        with self._lock:
            self._events[(kind, event)] = self._events.get((kind, event), 0) + amount

    def frozen(self) -> tuple[dict, dict, dict]:
        """:returns: copies of ``(syncs, durations, events)`` taken under the lock."""
        with self._lock:
            durations = {kind: _Histogram(list(h.counts), h.total, h.sum_s) for kind, h in self._durations.items()}
            return dict(self._syncs), durations, dict(self._events)


def _labels(pairs: Mapping[str, str]) -> str:
    """:returns: ``{name="value",...}`` with backslash, quote and newline escaped as the format asks, or ``""``."""
    if not pairs:
        return ""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for value in pairs.values())
    return "{" + ",".join(f'{name}="{value}"' for name, value in zip(pairs, escaped)) + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Builds one exposition text: families in order, each with HELP, TYPE and samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, str], float]], suffix: str = "") -> None:
        """Add a family ``scheduler_api_<name>`` of type ``kind`` (``counter``, ``gauge``, ``histogram``)."""
        full = PREFIX + name
        self._lines.append(f"# HELP {full} {help_text}")
        self._lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            self._lines.append(f"{full}{suffix}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, histograms: Mapping[str, _Histogram], label: str) -> None:
        """Add a histogram family with one series per ``label`` value."""
        full = PREFIX + name
        self._lines.append(f"# HELP {full} {help_text}")
        self._lines.append(f"# TYPE {full} histogram")
        for value, histogram in sorted(histograms.items()):
            for bound, count in zip(DURATION_BUCKETS_S, histogram.counts):
                self._lines.append(f"{full}_bucket{_labels({label: value, 'le': _number(bound)})} {count}")
            self._lines.append(f"{full}_bucket{_labels({label: value, 'le': '+Inf'})} {histogram.total}")
            self._lines.append(f"{full}_sum{_labels({label: value})} {_number(histogram.sum_s)}")
            self._lines.append(f"{full}_count{_labels({label: value})} {histogram.total}")

    def text(self) -> str:
        """:returns: the exposition, one line per sample, ending with a newline."""
        return "\n".join(self._lines) + "\n"


#: The mode names ``scheduler_api_mode`` reports, one series each (1 for the current one).
MODES: tuple[str, ...] = ("off_season", "race_weekend", "live_session", "results_settling")


@dataclass(frozen=True)
class Readings:
    """What one ``/metrics`` answer reports, gathered by the API from the state and the scheduler.

    :ivar kinds: the sync kinds, in report order.
    :ivar last_syncs: kind -> last success, UTC unix seconds, or None.
    :ivar next_syncs: kind -> next due time, UTC unix seconds, or None.
    :ivar intervals_s: kind -> interval in force, seconds, or None (paused or turned off).
    :ivar mode: the current mode's name (one of :data:`MODES`).
    :ivar fetcher_up: whether fetcher_service answered the last exchange (None: not known yet).
    :ivar calendar_rounds: rounds in the loaded calendar (0 without one).
    :ivar version: the daemon's version.
    """

    kinds: tuple[str, ...]
    last_syncs: Mapping[str, int | None]
    next_syncs: Mapping[str, int | None]
    intervals_s: Mapping[str, float | None]
    mode: str
    fetcher_up: bool | None
    calendar_rounds: int
    version: str


def render(readings: Readings, sync_metrics: SyncMetrics) -> str:
    """:returns: the exposition text of ``readings`` and the counters since start-up."""
    syncs, durations, events = sync_metrics.frozen()
    out = Exposition()
    out.family("syncs_total", "counter", "Sync attempts by kind, trigger and outcome since start-up.",
               (({"kind": k, "trigger": t, "outcome": o}, n) for (k, t, o), n in sorted(syncs.items())))
    out.histogram("sync_duration_seconds", "Duration of sync attempts, seconds.", durations, "kind")
    out.family("last_success_timestamp_seconds", "gauge", "Last successful sync of each kind, UTC unix seconds.",
               (({"kind": k}, readings.last_syncs[k]) for k in readings.kinds if readings.last_syncs.get(k) is not None))
    out.family("next_sync_timestamp_seconds", "gauge", "Next due time of each kind, UTC unix seconds.",
               (({"kind": k}, readings.next_syncs[k]) for k in readings.kinds if readings.next_syncs.get(k) is not None))
    out.family("interval_seconds", "gauge", "Interval in force for each kind, seconds (absent when paused or off).",
               (({"kind": k}, readings.intervals_s[k]) for k in readings.kinds
                if readings.intervals_s.get(k) is not None))
    out.family("mode", "gauge", "1 for the mode in force, 0 for the others.",
               (({"mode": m}, int(m == readings.mode)) for m in MODES))
    out.family("fetcher_up", "gauge", "1 when fetcher_service answered the last exchange or probe.",
               [({}, int(bool(readings.fetcher_up)))])
    out.family("calendar_rounds", "gauge", "Rounds in the loaded race calendar.", [({}, readings.calendar_rounds)])
    for event, name, help_text in (
        ("retried", "retries_total", "Retries of failed scheduled syncs since start-up."),
        ("skipped", "skipped_total", "Scheduled slots skipped because the same sync was still running."),
        ("coalesced", "coalesced_total", "Missed slots coalesced into one run since start-up."),
    ):
        out.family(name, "counter", help_text, (({"kind": k}, events.get((k, event), 0)) for k in readings.kinds))
    out.family("build_info", "gauge", "The daemon's version.", [({"version": readings.version}, 1)])
    return out.text()
