"""The state file (checks, owner lock, load, move aside, atomic write) and the persister thread.

The file's format, and the check of every field when it is read back, live
in :mod:`scheduler_api.state_format`; the in-memory record it holds is
:class:`scheduler_api.state.State`, which knows nothing of the disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import tempfile
import threading

from .clock import Clock
from .state import Persisted, State
from .state_format import STATE_VERSION, StateFormatError, decode, encode

__all__ = ["STATE_VERSION", "Persister", "StateFile", "StateFileError", "StateLockedError", "encode",
           "write_atomically"]

logger = logging.getLogger(__name__)

MAX_STATE_BYTES = 64 * 1024 * 1024  # 500 records and an 8 MiB calendar are far less; more is not ours
#: Least time between two state file writes, seconds: a burst of changes is written once (see Persister).
SAVE_MIN_GAP_S = 1.0


class StateLockedError(Exception):
    """Another daemon already owns this state file; the second one must not start."""


class StateFileError(Exception):
    """The state file cannot be used at all (not a regular file, or its directory cannot be written).

    A restart cannot fix it: the daemon stops with exit status 2 and this one line.
    """


class StateFile:
    """One state file on disk: its checks, its owner lock, reading it back and replacing it atomically.

    A symlinked path is followed once, when the object is built: the lock is
    taken on, the file read from, and each save replaces, the file the link
    points to (:attr:`target`), so the link stays a link and two daemons
    given two paths to one file still see one lock. Only one process may own
    a state file: :meth:`lock` takes an exclusive ``flock`` on
    ``<target>.lock`` beside it. A damaged file is moved aside, never
    overwritten (see README, Failure behaviour).

    Not thread-safe on its own: the daemon's main thread locks and loads it
    before other threads start, and :class:`Persister` serialises writes.

    :param path: the state file as configured (``STATE_FILE``), or None to
        keep state in memory only (every method then does nothing).
    :param clock: UTC wall time for naming moved-aside files.
    """

    def __init__(self, path: str | None, clock: Clock) -> None:
        self.path = path
        self.target = None if path is None else os.path.realpath(path)
        self._clock = clock
        self._lock_fd: int | None = None

    # -- ownership -------------------------------------------------------

    def lock(self) -> None:
        """Check the file and its directory, then take an exclusive ``flock`` on ``<target>.lock``.

        The lock is kept until :meth:`unlock` or exit.

        :raises StateFileError: when the state file exists but is not a
            regular file (a FIFO, a device, a directory), cannot be looked
            at, or its directory is missing or cannot be written.
        :raises StateLockedError: when another process holds the lock.
        """
        if self.target is None:
            return
        self._check_target()
        self._check_directory()
        lock_path = self.target + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise StateFileError(f"state lock file {lock_path} cannot be opened: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StateFileError(f"state lock file {lock_path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLockedError(
                    f"state file {self._shown()} is in use by another scheduler_api process "
                    f"(lock {lock_path} held); refusing to start"
                ) from None
            raise StateFileError(f"state lock file {lock_path} cannot be locked: {exc.strerror or exc}") from None
        self._lock_fd = fd

    def _shown(self) -> str:
        """:returns: the configured path, and where it leads when that is elsewhere."""
        return self.path if self.target == os.path.abspath(str(self.path)) else f"{self.path} (-> {self.target})"

    def _check_target(self) -> None:
        """:raises StateFileError: unless the state file is absent or a regular file."""
        try:
            mode = os.stat(str(self.target)).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateFileError(f"STATE_FILE {self._shown()} cannot be read: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise StateFileError(
                f"STATE_FILE {self._shown()} is {_file_type(mode)}, not a regular file; "
                "point STATE_FILE at a file (it is created when absent)"
            )

    def _check_directory(self) -> None:
        """Create and remove a temporary file beside the state file, as every save will.

        :raises StateFileError: naming the directory when that fails.
        """
        directory = os.path.dirname(str(self.target))
        try:
            fd, probe = tempfile.mkstemp(prefix=".scheduler_api-probe-", dir=directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StateFileError(
                f"state directory {directory} cannot be written ({exc.strerror or exc}); "
                "STATE_FILE must lie in a writable directory"
            ) from None

    def unlock(self) -> None:
        """Release the lock taken by :meth:`lock`; does nothing if it is not held."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reading ---------------------------------------------------------

    def load(self) -> Persisted | None:
        """Read the state file back, every field checked (see :func:`state_format.decode`).

        A damaged file (unreadable, empty, not UTF-8 JSON, larger than 64 MiB,
        or valid JSON of the wrong shape: a field of the wrong type or out of
        range, a calendar that is not a calendar) is moved aside to
        ``<target>.corrupt-<UTC unix s>`` with a warning naming what is wrong,
        and the daemon starts fresh. It never raises for the file's content.

        :returns: what the file holds, or None when there is no file (or it
            was moved aside).
        :raises StateFileError: when the path is not a regular file (checked
            again here: :meth:`lock` may not have run).
        """
        if self.target is None:
            return None
        try:
            raw = self._read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._move_aside(f"{type(exc).__name__}: {exc}")
            return None
        try:
            return decode(json.loads(raw.decode("utf-8")))
        except (ValueError, RecursionError) as exc:  # StateFormatError, JSON and UTF-8 errors are ValueErrors
            kind = "wrong shape" if isinstance(exc, StateFormatError) else type(exc).__name__
            self._move_aside(f"{kind}: {exc}")
            return None

    def _read(self) -> bytes:
        """:returns: the file's bytes; opened without blocking, so a FIFO put in its place never hangs."""
        fd = os.open(str(self.target), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateFileError(f"STATE_FILE {self._shown()} is not a regular file")
            raw = handle.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_STATE_BYTES} bytes")
        return raw

    def _move_aside(self, reason: str) -> None:
        """Rename the damaged file out of the way; if that fails, stop saving (``target`` = None)."""
        if self.target is None:
            return
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        stamp = int(self._clock.now_ts())
        aside = f"{self.target}.corrupt-{stamp}"
        suffix = 0
        while os.path.lexists(aside):  # never overwrite an earlier moved-aside file
            suffix += 1
            aside = f"{self.target}.corrupt-{stamp}.{suffix}"
        try:
            os.replace(self.target, aside)
        except OSError as exc:
            logger.error(
                "state file %s is unreadable (%s) and could not be moved aside (%s); "
                "running without saving state", self._shown(), reason, exc,
            )
            self.path = self.target = None
            return
        logger.warning("state file %s cannot be used (%s); moved aside to %s, starting fresh", self._shown(), reason, aside)

    # -- writing ---------------------------------------------------------

    def write(self, payload: bytes) -> None:
        """Replace the target file with ``payload`` atomically (see :func:`write_atomically`).

        :raises OSError: when a step fails; the old file is then left as it was.
        """
        if self.target is not None:
            write_atomically(self.target, payload)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


class Persister:
    """Writes the state file whenever :class:`State` asks for a save, from a thread of its own.

    :meth:`run` is the persister thread's loop; the daemon names, starts and
    joins that thread. :meth:`save` writes at once and may be called from
    any thread; it writes only when the state's revision moved, and never
    lets an older copy overwrite a newer one when two saves overlap. Write
    errors are logged, never raised: a full disk must not stop syncing, and
    the change stays pending for the next save.

    Writes are at least ``min_gap_s`` apart: changes asked to be saved
    within that gap of a write are saved together when it ends (so a daemon
    syncing many times a second writes once a second, not once a sync, and
    its file writes stay out of the way of its due times). A stop saves at
    once. A crash loses at most the changes of the last ``min_gap_s``.

    All methods are thread-safe.

    :param state: the in-memory state to save.
    :param state_file: where to save it.
    :param min_gap_s: least time between two writes by :meth:`run`, seconds (README, State file).
    """

    def __init__(self, state: State, state_file: StateFile, min_gap_s: float = SAVE_MIN_GAP_S) -> None:
        self._state = state
        self._file = state_file
        self._min_gap_s = min_gap_s
        self._lock = threading.Lock()  # guards _saved_revision
        self._write_lock = threading.Lock()  # one write at a time
        self._saved_revision = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        """Save after :meth:`State.save_soon` (persister thread only); returns after :meth:`stop`.

        After each write it waits ``min_gap_s`` (cut short by :meth:`stop`);
        every save asked for meanwhile is covered by one write after it. An
        unexpected error is logged and the loop carries on.
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
            self._stopping.wait(self._min_gap_s)  # the gap between writes; a stop ends it at once

    def stop(self) -> None:
        """Make :meth:`run` save once more and return; returns at once."""
        self._stopping.set()
        self._state.save_soon()  # the wake-up: run() waits on the state's save signal only

    def save(self) -> None:
        """Write the state file now if anything persisted changed since the last save."""
        if self._file.target is None:
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
