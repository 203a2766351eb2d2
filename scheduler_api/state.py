"""The in-memory state: sync records, the published schedule, the calendar record and frozen snapshots."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import KINDS
from .metrics import SyncMetrics

HISTORY_LIMIT = 500  # the history keeps the newest 500 sync records, in memory and on disk
#: A kind whose last this many attempts all failed is "failing" in ``/health``.
FAILING_AFTER = 3

COUNTERS = ("failed", "retried", "coalesced", "skipped", "caught_up")
JSON_SEPARATORS = (",", ":")  # compact JSON, as in the state file


@dataclass(frozen=True)
class SyncRecord:
    """One sync attempt, as kept in the history and answered by ``GET /history``.

    Times are UTC unix seconds (int); ``duration_ms`` is milliseconds.
    """

    kind: str
    season: int | None
    round: int | None
    session: str | None
    trigger: str
    outcome: str
    attempt: int
    http_status: int | None
    duration_ms: int
    started_at: int
    finished_at: int
    error: str | None

    @functools.cached_property
    def json_text(self) -> str:
        """:returns: :meth:`to_dict` as compact JSON, encoded once (the record is immutable)."""
        return json.dumps(self.to_dict(), separators=JSON_SEPARATORS)

    def to_dict(self) -> dict[str, Any]:
        """:returns: the JSON form, with ``parameters`` grouped as in the fetcher call."""
        params: dict[str, Any] = {}
        if self.season is not None:
            params["season"] = self.season
        if self.round is not None:
            params["round"] = self.round
        if self.session is not None:
            params["session"] = self.session
        return {
            "kind": self.kind,
            "parameters": params,
            "trigger": self.trigger,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "http_status": self.http_status,
            "duration_ms": self.duration_ms,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SyncRecord":
        """:raises KeyError, TypeError, ValueError: when ``data`` is not a record."""
        params = data["parameters"]
        return cls(
            kind=str(data["kind"]),
            season=_opt_int(params.get("season")),
            round=_opt_int(params.get("round")),
            session=params.get("session"),
            trigger=str(data["trigger"]),
            outcome=str(data["outcome"]),
            attempt=int(data["attempt"]),
            http_status=_opt_int(data.get("http_status")),
            duration_ms=int(data["duration_ms"]),
            started_at=int(data["started_at"]),
            finished_at=int(data["finished_at"]),
            error=data.get("error"),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class ScheduleView:
    """What the scheduler publishes for readers after each change.

    :ivar next_syncs: kind -> next due time, UTC unix seconds (int) or None.
    :ivar intervals_s: kind -> current interval, seconds, or None (paused).
    :ivar mode: ``race_weekend``, ``live_session``, ``results_settling`` or ``off_season``.
    :ivar mode_round: the race weekend's round, or None.
    :ivar live_session: the live session's type, or None.
    :ivar settling_session: the type of the session whose results settle (mode ``results_settling``), or None.
    :ivar next_mode_change_ts: UTC unix seconds, or None.
    :ivar season: the season scheduled syncs use.
    :ivar in_flight: ``kind[:season[:round]]`` of each sync under way.
    """

    next_syncs: Mapping[str, int | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    intervals_s: Mapping[str, float | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    mode: str = "off_season"
    mode_round: int | None = None
    live_session: str | None = None
    settling_session: str | None = None
    next_mode_change_ts: int | None = None
    season: int | None = None
    in_flight: tuple[str, ...] = ()
    calendar_loaded: bool = False
    calendar_rounds: int = 0
    overrides_in_force: int = 0


@dataclass(frozen=True)
class CalendarRecord:
    """The last good calendar: the raw body as fetched, where from and when (UTC unix s)."""

    body: Any
    source: str
    fetched_at: int

    @functools.cached_property
    def json_text(self) -> str:
        """:returns: the record as compact JSON, encoded once (the body is never changed in place)."""
        return json.dumps(dataclasses.asdict(self), separators=JSON_SEPARATORS)


@dataclass(frozen=True)
class Snapshot:
    """A frozen copy of the state for readers (never a live dict)."""

    last_syncs: Mapping[str, int | None]
    schedule: ScheduleView
    calendar: CalendarRecord | None
    history: tuple[SyncRecord, ...]
    counters: Mapping[str, int]
    last_failures: Mapping[str, SyncRecord | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    #: Kinds whose last :data:`FAILING_AFTER` attempts (scheduled or manual) all failed, in report order.
    failing: tuple[str, ...] = ()



@dataclass(frozen=True)
class Persisted:
    """The part of the state that outlives a restart: what the state file holds.

    The schedule is not in it: it is derived again at start.

    :ivar last_syncs: kind -> last successful scheduled sync, UTC unix seconds (int), or None.
    :ivar calendar: the last good calendar, or None.
    :ivar history: sync records, oldest first.
    :ivar counters: name -> count, for the names in :data:`COUNTERS`.
    """

    last_syncs: Mapping[str, int | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    calendar: CalendarRecord | None = None
    history: tuple[SyncRecord, ...] = ()
    counters: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))


class State:
    """The one shared in-memory record of last syncs, schedule, calendar, history and counters.

    It never touches the disk: the state file and the thread that writes it
    live in :mod:`scheduler_api.persist`. Each change to what is persisted
    moves a revision number on, so a saver can tell whether there is
    anything new to write, and :meth:`save_soon` is the change signal a
    saver waits on (:meth:`wait_for_save`).

    All methods are thread-safe; none blocks on anything but the private
    lock, except :meth:`wait_for_save`.

    :param restored: what a state file held at start, or None to start empty.
        Only the known kinds and counters are taken; the history keeps its
        newest :data:`HISTORY_LIMIT` records.
    """

    def __init__(self, restored: Persisted | None = None, metrics: SyncMetrics | None = None) -> None:
        restored = restored or Persisted()
        self.metrics = metrics or SyncMetrics()
        self._lock = threading.Lock()
        self._save_wanted = threading.Condition(self._lock)
        self._save_asked = False
        self._revision = 0
        self._schedule = ScheduleView()
        self._calendar = restored.calendar
        self._last_syncs = {kind: restored.last_syncs.get(kind) for kind in KINDS}
        self._counters = {name: restored.counters.get(name, 0) for name in COUNTERS}
        self._history: collections.deque[SyncRecord] = collections.deque(restored.history, maxlen=HISTORY_LIMIT)
        self._last_failures: dict[str, SyncRecord | None] = dict.fromkeys(KINDS)
        self._failures_in_row = dict.fromkeys(KINDS, 0)
        for record in restored.history:
            if record.kind in self._last_failures:
                self._note_outcome(record)

    def _note_outcome(self, record: SyncRecord) -> None:
        """Keep the kind's last failure and how many attempts in a row failed (caller holds the lock)."""
        if record.outcome == "ok":
            self._failures_in_row[record.kind] = 0
        else:
            self._last_failures[record.kind] = record
            self._failures_in_row[record.kind] += 1

    # -- mutation --------------------------------------------------------

    def record(self, record: SyncRecord, *, counts_as_last_sync: bool) -> None:
        """Append a sync attempt to the history; a success may set ``last_syncs``.

        A failure (any outcome but ``ok``) adds one to the ``failed`` counter
        and becomes the kind's last failure; it never moves the last sync.

        :param record: the attempt.
        :param counts_as_last_sync: True when it is the kind's scheduled sync.
            A manual trigger with other parameters than the scheduled ones
            does not count (see README, What it does).
        """
        self.metrics.sync_finished(record.kind, record.trigger, record.outcome, record.duration_ms / 1000)
        with self._lock:
            self._history.append(record)
            if record.outcome == "ok" and counts_as_last_sync:
                self._last_syncs[record.kind] = record.finished_at
            elif record.outcome != "ok":
                self._counters["failed"] += 1
            self._note_outcome(record)
            self._revision += 1

    def count(self, counter: str, amount: int = 1, kind: str | None = None) -> None:
        """Add ``amount`` to one of :data:`COUNTERS` (and, with ``kind``, to that kind's metric).

        :raises KeyError: for a name not in :data:`COUNTERS` (a bug).
        """
        if kind is not None:
            self.metrics.count(kind, counter, amount)
        with self._lock:
            self._counters[counter] += amount
            self._revision += 1

    def forget_last_sync(self, kind: str) -> None:
        """Drop a kind's last sync (used when a persisted one lies in the future)."""
        with self._lock:
            self._last_syncs[kind] = None
            self._revision += 1

    def publish_schedule(self, view: ScheduleView) -> None:
        """Replace the schedule readers see (not persisted: it is derived)."""
        with self._lock:
            self._schedule = view

    def set_calendar(self, record: CalendarRecord) -> None:
        """Keep a new good calendar; it is persisted, so a restart without network still has one."""
        with self._lock:
            self._calendar = record
            self._revision += 1

    # -- reading ---------------------------------------------------------

    def snapshot(self, history: bool = True) -> Snapshot:
        """:param history: False to leave the history out (it is the costly part to copy).
        :returns: a frozen :class:`Snapshot`; ``history`` newest last.
        """
        with self._lock:
            return Snapshot(
                last_syncs=dict(self._last_syncs),
                schedule=self._schedule,
                calendar=self._calendar,
                history=tuple(self._history) if history else (),
                counters=dict(self._counters),
                last_failures=dict(self._last_failures),
                failing=tuple(kind for kind in KINDS if self._failures_in_row[kind] >= FAILING_AFTER),
            )

    def to_persist(self) -> tuple[int, Persisted]:
        """:returns: ``(revision, persisted part)``, copied under the lock.

        The revision grows by one with each change to the persisted part, so
        a saver writes only when it moved and never lets an older copy
        overwrite a newer one.
        """
        with self._lock:
            return self._revision, Persisted(
                dict(self._last_syncs), self._calendar, tuple(self._history), dict(self._counters)
            )

    # -- the change signal -----------------------------------------------

    def save_soon(self) -> None:
        """Ask for a save after a change; returns at once.

        It only marks the state as wanting a save and wakes the thread
        blocked in :meth:`wait_for_save` (the persister), so a sync worker
        never waits on the disk, and changes made during one write are
        covered by the next. Nothing is written when no persister runs
        (``plan``, most tests): the daemon's shutdown saves once more.
        """
        with self._lock:
            self._save_asked = True
            self._save_wanted.notify_all()

    def wait_for_save(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`save_soon` was called since this last returned True.

        :param timeout_s: seconds to wait at most, or None for no limit.
        :returns: True when a save was asked for (the request is consumed),
            False after the timeout.
        """
        with self._lock:
            asked = self._save_wanted.wait_for(lambda: self._save_asked, timeout_s)
            self._save_asked = False
            return asked

