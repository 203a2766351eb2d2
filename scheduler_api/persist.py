"""The state file (owner lock, load and validate, move aside, atomic write) and the persister thread.

The file format lives here too (:func:`encode`, :func:`decode`): it is what
makes the file safe to read back, so it belongs with the file. The in-memory
record it holds is :class:`scheduler_api.state.State`, which knows nothing of
the disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
from typing import Any

from .clock import Clock
from .config import KINDS
from .state import COUNTERS, JSON_SEPARATORS, CalendarRecord, Persisted, State, SyncRecord

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class StateLockedError(Exception):
    """Another daemon already owns this state file; the second one must not start."""


class StateFile:
    """One state file on disk: its owner lock, reading it back and replacing it atomically.

    Only one process may own a state file: :meth:`lock` takes an exclusive
    ``flock`` on ``<path>.lock`` beside it. A corrupt, empty or unreadable
    file is moved aside, never overwritten (see README, Failure behaviour).

    Not thread-safe on its own: the daemon's main thread locks and loads it
    before other threads start, and :class:`Persister` serialises writes.

    :param path: the state file, or None to keep state in memory only (every
        method then does nothing).
    :param clock: UTC wall time for naming moved-aside files.
    """

    def __init__(self, path: str | None, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._lock_fd: int | None = None

    # -- ownership -------------------------------------------------------

    def lock(self) -> None:
        """Take an exclusive ``flock`` on ``<path>.lock``, kept until :meth:`unlock` or exit.

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

    def unlock(self) -> None:
        """Release the lock taken by :meth:`lock`; does nothing if it is not held."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reading ---------------------------------------------------------

    def load(self) -> Persisted | None:
        """Read the state file back.

        A corrupt, empty or unreadable file (not UTF-8 JSON, or not an object
        with a ``last_syncs`` object) is moved aside to
        ``<path>.corrupt-<UTC unix s>`` with a warning, and the daemon starts
        fresh. Invalid values inside a good file are dropped one by one.

        :returns: what the file holds, or None when there is no file (or it
            was moved aside).
        """
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("last_syncs"), dict):
                raise ValueError("not a scheduler_api state object")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._move_aside(f"{type(exc).__name__}: {exc}")
            return None
        return decode(data)

    def _move_aside(self, reason: str) -> None:
        """Rename the unreadable file out of the way; if that fails, stop saving (``path`` = None)."""
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

    # -- writing ---------------------------------------------------------

    def write(self, payload: bytes) -> None:
        """Replace the file with ``payload`` atomically (see :func:`write_atomically`).

        :raises OSError: when a step fails; the old file is then left as it was.
        """
        if self.path is not None:
            write_atomically(self.path, payload)


class Persister:
    """Writes the state file whenever :class:`State` asks for a save, from a thread of its own.

    :meth:`run` is the persister thread's loop; the daemon names, starts and
    joins that thread. :meth:`save` writes at once and may be called from
    any thread; it writes only when the state's revision moved, and never
    lets an older copy overwrite a newer one when two saves overlap. Write
    errors are logged, never raised: a full disk must not stop syncing, and
    the change stays pending for the next save.

    All methods are thread-safe.

    :param state: the in-memory state to save.
    :param state_file: where to save it.
    """

    def __init__(self, state: State, state_file: StateFile) -> None:
        self._state = state
        self._file = state_file
        self._lock = threading.Lock()  # guards _saved_revision
        self._write_lock = threading.Lock()  # one write at a time
        self._saved_revision = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        """Save after each :meth:`State.save_soon` (persister thread only); returns after :meth:`stop`.

        A burst of requests during one write costs one more write, not one
        each. An unexpected error is logged and the loop carries on.
        """
        while True:
            self._state.wait_for_save()
            stopping = self._stopping.is_set()
            try:
                self.save()
            except Exception:
                logger.exception("persister error")
            if stopping:
                return

    def stop(self) -> None:
        """Make :meth:`run` save once more and return; returns at once."""
        self._stopping.set()
        self._state.save_soon()  # the wake-up: run() waits on the state's save signal only

    def save(self) -> None:
        """Write the state file now if anything persisted changed since the last save."""
        if self._file.path is None:
            return
        revision, persisted = self._state.to_persist()
        with self._lock:
            if revision == self._saved_revision:
                return
        payload = encode(persisted)
        with self._write_lock:
            with self._lock:
                if revision <= self._saved_revision:
                    return  # a newer copy was written meanwhile
            try:
                self._file.write(payload)
            except OSError as exc:
                logger.error("state save failed path=%s error=%s", self._file.path, exc)
                return
            with self._lock:
                self._saved_revision = max(self._saved_revision, revision)


def encode(persisted: Persisted) -> bytes:
    """The state file's bytes: ``json.dumps`` of the whole state with compact separators.

    Records and the calendar are immutable and carry their own encoded JSON
    (``json_text``), so a save costs a join, not a walk of 500 records and
    the calendar. Thread-safe.
    """
    calendar_text = "null" if persisted.calendar is None else persisted.calendar.json_text
    history_text = ",".join(record.json_text for record in persisted.history)
    return (
        f'{{"version":{STATE_VERSION},"last_syncs":{json.dumps(dict(persisted.last_syncs), separators=JSON_SEPARATORS)},'
        f'"calendar":{calendar_text},"history":[{history_text}],'
        f'"counters":{json.dumps(dict(persisted.counters), separators=JSON_SEPARATORS)}}}'
    ).encode("utf-8")


def decode(data: dict[str, Any]) -> Persisted:
    """Take what is valid from a decoded state object, value by value.

    A last sync that is not an integer becomes None; a history record that
    does not parse is dropped with a warning; a counter that is not an
    integer starts at 0; a calendar without a ``body`` is left out.

    :param data: a JSON object with a ``last_syncs`` object.
    """
    last_syncs: dict[str, int | None] = {}
    for kind in KINDS:
        value = data["last_syncs"].get(kind)
        last_syncs[kind] = value if isinstance(value, int) and not isinstance(value, bool) else None
    calendar = None
    raw_calendar = data.get("calendar")
    if isinstance(raw_calendar, dict) and "body" in raw_calendar:
        calendar = CalendarRecord(
            raw_calendar["body"], str(raw_calendar.get("source", "")), int(raw_calendar.get("fetched_at") or 0)
        )
    history: list[SyncRecord] = []
    for item in data.get("history") or []:
        try:
            history.append(SyncRecord.from_dict(item))
        except (KeyError, TypeError, ValueError, AttributeError):
            logger.warning("state history record dropped: not a sync record")
    raw_counters = data.get("counters") or {}
    counters = {name: value for name in COUNTERS if isinstance(value := raw_counters.get(name), int)}
    return Persisted(last_syncs, calendar, tuple(history), counters)


def write_atomically(path: str, payload: bytes) -> None:
    """Replace ``path`` with ``payload``: temporary file, fsync, rename, fsync of the directory.

    A ``kill -9`` at any moment leaves either the old or the new file, whole.

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
