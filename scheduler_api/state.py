"""State: the lock-guarded record of syncs, schedule, calendar and history, persisted atomically."""

from __future__ import annotations

import collections
import dataclasses
import errno
import fcntl
import functools
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from .clock import Clock
from .config import KINDS

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 500  # SPEC.md §7
STATE_VERSION = 1
COUNTERS = ("failed", "retried", "coalesced", "skipped")
_COMPACT = (",", ":")  # JSON separators of the state file


class StateLockedError(Exception):
    """Another daemon already owns this state file (SPEC.md §8)."""


@dataclass(frozen=True)
class SyncRecord:
    """One sync attempt, as kept in the history (SPEC.md §5 ``/history``).

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
        return json.dumps(self.to_dict(), separators=_COMPACT)

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
    :ivar mode: ``race_weekend``, ``live_session`` or ``off_season``.
    :ivar mode_round: the race weekend's round, or None.
    :ivar live_session: the live session's type, or None.
    :ivar next_mode_change_ts: UTC unix seconds, or None.
    :ivar season: the season scheduled syncs use.
    :ivar in_flight: ``kind[:season[:round]]`` of each sync under way.
    """

    next_syncs: Mapping[str, int | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    intervals_s: Mapping[str, float | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    mode: str = "off_season"
    mode_round: int | None = None
    live_session: str | None = None
    next_mode_change_ts: int | None = None
    season: int | None = None
    in_flight: tuple[str, ...] = ()
    calendar_loaded: bool = False
    calendar_rounds: int = 0


@dataclass(frozen=True)
class CalendarRecord:
    """The last good calendar: the raw body as fetched, where from and when (UTC unix s)."""

    body: Any
    source: str
    fetched_at: int

    @functools.cached_property
    def json_text(self) -> str:
        """:returns: the record as compact JSON, encoded once (the body is never changed in place)."""
        return json.dumps(dataclasses.asdict(self), separators=_COMPACT)


@dataclass(frozen=True)
class Snapshot:
    """A frozen copy of the state for readers (never a live dict)."""

    last_syncs: Mapping[str, int | None]
    schedule: ScheduleView
    calendar: CalendarRecord | None
    history: tuple[SyncRecord, ...]
    counters: Mapping[str, int]
    last_failures: Mapping[str, SyncRecord | None] = field(default_factory=lambda: dict.fromkeys(KINDS))


class State:
    """The one shared record of last syncs, schedule, calendar and history.

    All methods are thread-safe. Mutators take the private lock only to
    change memory; :meth:`save` serialises outside that lock and writes the
    file atomically (temporary file, fsync, rename, fsync of the directory;
    SPEC.md §7), so a ``kill -9`` at any moment leaves either the old or the
    new file. Concurrent saves never let an older copy overwrite a newer one.

    :param path: the state file, or None to keep state in memory only.
    :param clock: for naming moved-aside files.
    """

    def __init__(self, path: str | None, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._version = 0
        self._saved_version = 0
        self._last_syncs: dict[str, int | None] = dict.fromkeys(KINDS)
        self._schedule = ScheduleView()
        self._calendar: CalendarRecord | None = None
        self._history: collections.deque[SyncRecord] = collections.deque(maxlen=HISTORY_LIMIT)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._last_failures: dict[str, SyncRecord | None] = dict.fromkeys(KINDS)
        self._lock_fd: int | None = None
        self._save_wanted = threading.Condition(self._lock)
        self._save_pending = False
        self._persister_running = False
        self._persister_stopping = False

    # -- ownership -------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take an exclusive ``flock`` on ``<path>.lock`` (SPEC.md §8).

        :raises StateLockedError: when another process holds it.
        :raises OSError: when the lock file cannot be created.
        """
        if self.path is None:
            return
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLockedError(
                    f"state file {self.path} is in use by another scheduler_api process "
                    f"(lock {self.path}.lock held); refusing to start"
                ) from None
            raise
        self._lock_fd = fd

    def release_lock(self) -> None:
        """Release the lock taken by :meth:`acquire_lock`."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- loading ---------------------------------------------------------

    def load(self) -> None:
        """Read the state file, if any.

        A corrupt, empty or unreadable file is moved aside to
        ``<path>.corrupt-<unix s>`` with a warning and the daemon starts
        fresh (SPEC.md §7); it is never overwritten. Invalid history records
        are dropped one by one.
        """
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("last_syncs"), dict):
                raise ValueError("not a scheduler_api state object")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._move_aside(f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            for kind in KINDS:
                value = data["last_syncs"].get(kind)
                self._last_syncs[kind] = value if isinstance(value, int) and not isinstance(value, bool) else None
            calendar = data.get("calendar")
            if isinstance(calendar, dict) and "body" in calendar:
                self._calendar = CalendarRecord(
                    calendar["body"], str(calendar.get("source", "")), int(calendar.get("fetched_at") or 0)
                )
            for item in data.get("history") or []:
                try:
                    record = SyncRecord.from_dict(item)
                except (KeyError, TypeError, ValueError, AttributeError):
                    logger.warning("state history record dropped: not a sync record")
                    continue
                self._history.append(record)
                if record.outcome != "ok" and record.kind in self._last_failures:
                    self._last_failures[record.kind] = record
            for name in COUNTERS:
                value = (data.get("counters") or {}).get(name)
                if isinstance(value, int):
                    self._counters[name] = value

    def _move_aside(self, reason: str) -> None:
        if self.path is None:
            return
        target = f"{self.path}.corrupt-{int(self._clock.now_ts())}"
        suffix = 0
        while os.path.lexists(target):  # never overwrite an earlier moved-aside file
            suffix += 1
            target = f"{self.path}.corrupt-{int(self._clock.now_ts())}.{suffix}"
        try:
            os.replace(self.path, target)
        except OSError as exc:
            logger.error(
                "state file %s is unreadable (%s) and could not be moved aside (%s); "
                "running without saving state", self.path, reason, exc,
            )
            self.path = None
            return
        logger.warning("state file %s unreadable (%s); moved aside to %s, starting fresh", self.path, reason, target)

    # -- mutation --------------------------------------------------------

    def record(self, record: SyncRecord, *, counts_as_last_sync: bool) -> None:
        """Append a sync attempt to the history; a success may set ``last_syncs``.

        :param record: the attempt.
        :param counts_as_last_sync: True when it is the kind's scheduled sync
            (SPEC.md §3: a manual trigger with other parameters does not count).
        """
        with self._lock:
            self._history.append(record)
            if record.outcome == "ok" and counts_as_last_sync:
                self._last_syncs[record.kind] = record.finished_at
            elif record.outcome != "ok":
                self._counters["failed"] += 1
                self._last_failures[record.kind] = record
            self._version += 1

    def count(self, counter: str, amount: int = 1) -> None:
        """Add ``amount`` to one of :data:`COUNTERS`."""
        with self._lock:
            self._counters[counter] += amount
            self._version += 1

    def forget_last_sync(self, kind: str) -> None:
        """Drop a kind's last sync (used when a persisted one lies in the future)."""
        with self._lock:
            self._last_syncs[kind] = None
            self._version += 1

    def publish_schedule(self, view: ScheduleView) -> None:
        """Replace the schedule readers see (not persisted: it is derived)."""
        with self._lock:
            self._schedule = view

    def set_calendar(self, record: CalendarRecord) -> None:
        """Keep a new good calendar (persisted, SPEC.md §4)."""
        with self._lock:
            self._calendar = record
            self._version += 1

    def snapshot(self, history: bool = True) -> Snapshot:
        """:returns: a frozen :class:`Snapshot`; ``history`` newest last."""
        with self._lock:
            return Snapshot(
                last_syncs=dict(self._last_syncs),
                schedule=self._schedule,
                calendar=self._calendar,
                history=tuple(self._history) if history else (),
                counters=dict(self._counters),
                last_failures=dict(self._last_failures),
            )

    # -- persistence -----------------------------------------------------

    def save_soon(self) -> None:
        """Ask for a save after a change (SPEC.md §7).

        When the persister thread runs (:meth:`run_persister`), it writes the
        file and this returns at once: a sync worker never waits on the disk,
        and changes made during one write are covered by the next. Without a
        persister (tests, ``plan``) this saves now.
        """
        with self._lock:
            if self._persister_running:
                self._save_pending = True
                self._save_wanted.notify()
                return
        self.save()

    def run_persister(self) -> None:
        """Write the file whenever :meth:`save_soon` asks (persister thread only).

        Returns after :meth:`stop_persister`, once a last save has been made.
        """
        with self._lock:
            self._persister_running = True
        try:
            while True:
                with self._lock:
                    while not self._save_pending and not self._persister_stopping:
                        self._save_wanted.wait()
                    self._save_pending = False
                    stopping = self._persister_stopping
                self.save()
                if stopping:
                    return
        finally:
            with self._lock:
                self._persister_running = False

    def stop_persister(self) -> None:
        """Make :meth:`run_persister` save once more and return."""
        with self._lock:
            self._persister_stopping = True
            self._save_wanted.notify()

    def save(self) -> None:
        """Write the state file atomically if anything changed since the last save.

        Errors are logged, never raised: a full disk must not stop syncing.
        """
        if self.path is None:
            return
        with self._lock:
            version = self._version
            if version == self._saved_version:
                return
            last_syncs, calendar = dict(self._last_syncs), self._calendar
            history, counters = tuple(self._history), dict(self._counters)
        payload = self._encode(last_syncs, calendar, history, counters)
        with self._save_lock:
            if version <= self._saved_version:
                return
            try:
                write_atomically(self.path, payload)
            except OSError as exc:
                logger.error("state save failed path=%s error=%s", self.path, exc)
                return
            with self._lock:
                self._saved_version = max(self._saved_version, version)

    def _encode(
        self, last_syncs: dict[str, int | None], calendar: CalendarRecord | None, history: tuple[SyncRecord, ...],
        counters: dict[str, int],
    ) -> bytes:
        """The state file's bytes, as ``json.dumps`` of the whole state with compact separators.

        Records and the calendar are immutable and carry their own encoded
        JSON (``json_text``), so a save costs a join, not a walk of 500
        records and the calendar. Thread-safe.
        """
        calendar_text = "null" if calendar is None else calendar.json_text
        history_text = ",".join(record.json_text for record in history)
        return (
            f'{{"version":{STATE_VERSION},"last_syncs":{json.dumps(last_syncs, separators=_COMPACT)},'
            f'"calendar":{calendar_text},"history":[{history_text}],'
            f'"counters":{json.dumps(counters, separators=_COMPACT)}}}'
        ).encode("utf-8")


def write_atomically(path: str, payload: bytes) -> None:
    """Replace ``path`` with ``payload``: temporary file, fsync, rename, fsync of the directory.

    :raises OSError: when any step fails; the old file is then left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
